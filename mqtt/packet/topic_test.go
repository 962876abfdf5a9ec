package packet

import (
	"strings"
	"testing"
)

func TestValidTopicName(t *testing.T) {
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"a", true}, {"/", true}, {"//", true}, {"/private/alice", true}, {"/group/g1/", true},
		{"/group//g1", true}, {"/group/g1/../g2", true}, {"$SYS/x", true}, {"$share/g/x", true},
		{"\uFEFF/private/alice", true}, {"／private", true}, {"\U0002A6D4", true}, {"a b", true},
		{deepTopic(MaxLevels), true},
		{"", false}, {"+", false}, {"#", false}, {"/group/+", false}, {"/group/#", false},
		{"a+", false}, {"a#b", false}, {"a\x00", false}, {"\xed\xa0\x80", false}, {"\xc0\xaf", false},
		{"\xff", false}, {deepTopic(MaxLevels + 1), false}, {strings.Repeat("/", 32767), false},
	} {
		if got := ValidTopicName([]byte(tc.topic)); got != tc.ok {
			t.Errorf("ValidTopicName(%q) = %v", tc.topic, got)
		}
	}
}

func TestValidFilter(t *testing.T) {
	for _, tc := range []struct {
		filter string
		ok     bool
	}{
		{"#", true}, {"+", true}, {"/", true}, {"/#", true}, {"+/+", true}, {"/private/+", true},
		{"/private/alice/#", true}, {"a/+/b", true}, {"+/#", true}, {"//", true}, {"$SYS/#", true},
		{"$share/g/#", true}, {"$share/", true}, {strings.Repeat("+/", MaxLevels-1) + "#", true},
		{"", false}, {"a/#/b", false}, {"#/", false}, {"a#", false}, {"a+", false}, {"+a", false},
		{"#a", false}, {"a/b#", false}, {"++", false}, {"##", false}, {"a\x00", false},
		{"\xed\xa0\x80", false}, {"\xc0\xaf", false}, {strings.Repeat("+/", MaxLevels) + "+", false},
		{strings.Repeat("+/", 9999) + "+", false},
	} {
		if got := ValidFilter(tc.filter); got != tc.ok {
			t.Errorf("ValidFilter(%q) = %v", tc.filter, got)
		}
		if got := ValidFilter(tc.filter); got != refValidFilter(tc.filter) {
			t.Errorf("ValidFilter(%q) disagrees with the reference", tc.filter)
		}
	}
}

// matchTests: the spec's examples (3.1.1 section 4.7), then wildcards,
// level boundaries and $ topics.
var matchTests = []struct {
	filter, topic string
	match         bool
}{
	// [MQTT-4.7.1-2] multi-level wildcard.
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/#", "sport", true},
	{"#", "a/b/c", true},
	{"#", "/", true},
	// [MQTT-4.7.1-3] single-level wildcard.
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	{"+", "a", true},
	{"+/tennis/#", "sport/tennis", true},
	// Case, exactness.
	{"ACCOUNTS", "Accounts", false},
	{"a/b", "a/b", true},
	{"a/b", "a/b/", false},
	// [MQTT-4.7.2-1] $ topics.
	{"#", "$SYS/x", false},
	{"+/x", "$SYS/x", false},
	{"+", "$SYS", false},
	{"$SYS/#", "$SYS/x", true},
	{"$SYS/+", "$SYS/x", true},
	{"$SYS", "$SYS", true},
	{"a/#", "a/$x", true},
	{"#", "$share/g/x", false},
	{"+/private/alice", "$private/alice", false},
	// Level boundaries, with /group/g1 and /private/alice allowed.
	{"/group/g1", "/group/g1", true},
	{"/group/g1", "/group/g1x", false},
	{"/group/g1", "/group/g1/secret", false},
	{"/group/g1", "/group/g1/", false},
	{"/group/g1", "/group//g1", false},
	{"/group/g1", "//group/g1", false},
	{"/group/g1", "/group/g1/../g2", false},
	{"/group/+", "/group/g1x", true},
	{"/group/+", "/group/", true},
	{"/group/+", "/group", false},
	{"/private/alice", "/private/alice2", false},
	{"/private/alice", "/private/alicebob", false},
	{"/private/alice", "/private/alic", false},
	{"/private/alice/#", "/private/alice", true},
	{"/private/alice/#", "/private/alice/group/g1", true},
	{"/private/alice/#", "/private/alice2/x", false},
	{"/private/alice/#", "/private/alicebob", false},
	// No normalization.
	{"/private/alice", "\uFEFF/private/alice", false},
	{"/private/alice", "/private/ALICE", false},
	{"/private/alice", "／private/alice", false},
	// Wildcards.
	{"/private/+", "/private/bob", true},
	{"/+/alice", "/private/alice", true},
	{"/private/+/x", "/private/bob/x", true},
	// Empty levels.
	{"/", "/", true},
	{"//", "/", false},
	{"+/+", "/", true},
	{"+/+/+", "/", false},
	{"a//b", "a/b", false},
	{"a/+/b", "a//b", true},
	// Invalid filters match nothing they should not.
	{"a/#/b", "a/x/b", false},
	{"a#", "a", false},
	{"a+/b", "a/b", false},
	{"", "", false},
	{"a", "", false},
	{"", "a", false},
}

func TestMatch(t *testing.T) {
	for _, tc := range matchTests {
		if got := Match(tc.filter, []byte(tc.topic)); got != tc.match {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.match)
		}
		if ValidFilter(tc.filter) && ValidTopicName([]byte(tc.topic)) {
			if ref := refMatch(tc.filter, tc.topic); ref != tc.match {
				t.Errorf("refMatch(%q, %q) = %v, want %v", tc.filter, tc.topic, ref, tc.match)
			}
		}
	}
}

func TestMatchDeep(t *testing.T) {
	// No recursion, at most MaxLevels levels walked.
	deep := []byte(deepTopic(MaxLevels))
	if !Match(strings.Repeat("+/", MaxLevels-1)+"+", deep) || !Match("#", deep) || !Match("a/#", deep) {
		t.Error("no match at MaxLevels")
	}
	deeper := []byte(deepTopic(100_000))
	if Match(strings.Repeat("+/", 100_000-1)+"+", deeper) || Match(string(deeper), deeper) {
		t.Error("matched beyond MaxLevels")
	}
	slashes := []byte(strings.Repeat("/", 32767))
	if Match(string(slashes), slashes) {
		t.Error("matched 32768 empty levels")
	}
}

// refValidFilter is the obvious split-based definition, for comparison.
func refValidFilter(f string) bool {
	if f == "" || !validString([]byte(f)) {
		return false
	}
	levels := strings.Split(f, "/")
	if len(levels) > MaxLevels {
		return false
	}
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && l != "+" && l != "#" {
			return false
		}
		if l == "#" && i != len(levels)-1 {
			return false
		}
	}
	return true
}

// refMatch is the spec's algorithm on split levels, for a valid filter and
// topic name.
func refMatch(f, t string) bool {
	if strings.HasPrefix(t, "$") && (strings.HasPrefix(f, "+") || strings.HasPrefix(f, "#")) {
		return false
	}
	fl, tl := strings.Split(f, "/"), strings.Split(t, "/")
	for i, l := range fl {
		if l == "#" {
			return true
		}
		if i >= len(tl) {
			return false
		}
		if l != "+" && l != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}
