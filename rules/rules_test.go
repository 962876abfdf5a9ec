package rules

import (
	"errors"
	"strings"
	"testing"

	"github.com/pushring/pushring/mqtt/packet"
	"github.com/pushring/pushring/store"
)

// pushring's namespaces, as the node would pass them.
var reserved = []string{"/private/#", "/group/#", "/service/#"}

type members map[string]bool // "gid/id"

func (m members) IsMember(gid, id string) bool { return m[gid+"/"+id] }

const example = `{"rules": [
  {"pattern": "telemetry/%u/#", "publish": ["devices"], "subscribe": ["devices"]},
  {"pattern": "telemetry/+/#", "subscribe": ["group:ops"]},
  {"pattern": "public/news", "publish": ["group:editors"], "subscribe": ["all"]},
  {"pattern": "chat/+/room", "publish": ["users"], "subscribe": ["users"]},
  {"pattern": "/feeds/#", "subscribe": ["all"]}
]}`

func TestExample(t *testing.T) {
	r, err := Parse([]byte(example), reserved)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 5 {
		t.Fatalf("%d rules", r.Len())
	}
	d1 := Actor{ID: "d1", Device: true}
	alice := Actor{ID: "alice"}
	bob := Actor{ID: "bob"}
	m := members{"ops/alice": true, "editors/bob": true}
	for _, c := range []struct {
		a     Actor
		topic string
		want  bool
	}{
		{d1, "telemetry/d1/temp", true},
		{d1, "telemetry/d1", true}, // '#' also matches the parent level
		{d1, "telemetry/d2/temp", false},
		{alice, "telemetry/alice/temp", false}, // users do not publish telemetry
		{bob, "public/news", true},             // an editor
		{alice, "public/news", false},
		{alice, "public/news/x", false},
		{alice, "chat/x/room", true},
		{d1, "chat/x/room", false},
		{alice, "chat/x/y/room", false},
		{alice, "/feeds/a", false}, // subscribe only
		{alice, "elsewhere", false},
		{alice, "/private/alice", false},
	} {
		if got := r.CanPublish(c.a, []byte(c.topic), m); got != c.want {
			t.Errorf("%s publish %q: %v, want %v", c.a.ID, c.topic, got, c.want)
		}
	}
	for _, c := range []struct {
		a      Actor
		filter string
		want   bool
	}{
		{alice, "telemetry/+/#", true}, // ops reads every device's telemetry
		{alice, "telemetry/d1/temp", true},
		{alice, "telemetry/#", false}, // covers "telemetry" itself, which no rule does
		{bob, "telemetry/d1/temp", false},
		{d1, "telemetry/d1/#", true}, // its own tree
		{d1, "telemetry/d2/#", false},
		{d1, "telemetry/+/#", false},
		{alice, "public/news", true},
		{d1, "public/news", true},
		{alice, "public/+", false},
		{alice, "chat/+/room", true},
		{alice, "chat/#", false},
		{d1, "chat/a/room", false},
		{alice, "/feeds/#", true},
		{alice, "/feeds/a/+", true},
		{alice, "/#", false},
		{alice, "#", false},
	} {
		if got := r.CanSubscribe(c.a, c.filter, m); got != c.want {
			t.Errorf("%s subscribe %q: %v, want %v", c.a.ID, c.filter, got, c.want)
		}
	}
	if r.CanSubscribe(Actor{}, "public/news", m) || r.CanPublish(Actor{ID: "a/b"}, []byte("chat/x/room"), m) {
		t.Fatal("an invalid actor id is allowed")
	}
	var none *Rules
	if none.CanPublish(alice, []byte("a"), m) || none.CanSubscribe(alice, "a", m) || none.Len() != 0 {
		t.Fatal("nil Rules allow something")
	}
	empty, err := Parse([]byte(`{"rules": []}`), reserved)
	if err != nil || empty.CanSubscribe(alice, "telemetry/d1/temp", m) {
		t.Fatalf("empty rules: %v", err)
	}
}

// Bad files are refused with an error that names the rule and the
// problem.
func TestParseRefuses(t *testing.T) {
	long := strings.Repeat("a/", MaxPatternLen/2) + "b"
	for _, c := range []struct{ name, file, want string }{
		{"not JSON", `rules`, "invalid"},
		{"unknown field", `{"rules": [], "extra": 1}`, "unknown field"},
		{"unknown rule field", `{"rules": [{"pattern": "a", "who": ["all"]}]}`, "unknown field"},
		{"trailing data", `{"rules": []} {}`, "data after"},
		{"trailing brace", `{"rules": []}}`, "invalid"},
		{"empty pattern", `{"rules": [{"pattern": ""}]}`, "rule 1"},
		{"long pattern", `{"rules": [{"pattern": "` + long + `"}]}`, "1 to 256 bytes"},
		{"bad filter", `{"rules": [{"pattern": "a/#/b"}]}`, "not a valid MQTT topic filter"},
		{"partial %u", `{"rules": [{"pattern": "a/x%u"}]}`, `"%u"`},
		{"wildcard first", `{"rules": [{"pattern": "+/a"}]}`, "first level"},
		{"all topics", `{"rules": [{"pattern": "#"}]}`, "first level"},
		{"$ topic", `{"rules": [{"pattern": "$SYS/#"}]}`, "first level"},
		{"private", `{"rules": [{"pattern": "/private/x"}]}`, "/private/#"},
		{"under the root", `{"rules": [{"pattern": "/+/x"}]}`, "overlaps"},
		{"root wildcard", `{"rules": [{"pattern": "/#"}]}`, "overlaps"},
		{"user id as group", `{"rules": [{"pattern": "/%u/x"}]}`, "overlaps"},
		{"bad who", `{"rules": [{"pattern": "a", "publish": ["everyone"]}]}`, `"everyone"`},
		{"bad group", `{"rules": [{"pattern": "a", "subscribe": ["group:a b"]}]}`, "group:a b"},
		{"second rule", `{"rules": [{"pattern": "a"}, {"pattern": "b/#/c"}]}`, "rule 2"},
	} {
		_, err := Parse([]byte(c.file), reserved)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an ErrInvalid saying %q", c.name, err, c.want)
		}
	}
}

// matches, covers and overlap against packet.Match, on hand-picked
// cases; FuzzMatchers checks them on any input.
func TestMatchers(t *testing.T) {
	for _, c := range []struct {
		p, topic string
	}{
		{"a/#", "a"}, {"a/#", "a/b/c"}, {"a/+", "a/"}, {"a/+", "a"}, {"+/+", "/"}, {"/a", "/a"},
		{"a/%u/b", "a/me/b"}, {"a/%u/b", "a/you/b"}, {"a", "a/b"}, {"a/b", "a"}, {"a//b", "a//b"},
	} {
		want := packet.Match(strings.ReplaceAll(c.p, userLevel, "me"), []byte(c.topic))
		if got := matches(strings.Split(c.p, "/"), "me", []byte(c.topic)); got != want {
			t.Errorf("matches(%q, %q) = %v, want %v", c.p, c.topic, got, want)
		}
	}
	for _, c := range []struct {
		p, f string
		want bool
	}{
		{"a/#", "a/#", true}, {"a/#", "a", true}, {"a/#", "a/+/c", true}, {"a/+", "a/#", false},
		{"a/+", "a/b", true}, {"a/b", "a/+", false}, {"a", "a/b", false}, {"a/b", "a", false},
		{"+/b", "x/b", true}, {"a/%u", "a/me", true}, {"a/%u", "a/+", false},
	} {
		if got := covers(strings.Split(c.p, "/"), "me", c.f); got != c.want {
			t.Errorf("covers(%q, %q) = %v, want %v", c.p, c.f, got, c.want)
		}
	}
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"a/#", "a", true}, {"a/+", "a/b/c", false}, {"+/x", "/private/#", false}, {"+/private/a", "/private/#", true}, {"/x/#", "/private/#", false},
		{"a", "a", true}, {"a", "b", false}, {"a/b", "a", false},
	} {
		if got := overlap(strings.Split(c.a, "/"), strings.Split(c.b, "/")); got != c.want {
			t.Errorf("overlap(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// FuzzParse: any file either parses or is refused with ErrInvalid, and
// what parses answers questions without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(example), "telemetry/d1/x", "telemetry/+/#")
	f.Add([]byte(`{"rules": [{"pattern": "a/%u/#", "publish": ["all"]}]}`), "a/b", "a/#")
	f.Fuzz(func(t *testing.T, data []byte, topic, filter string) {
		r, err := Parse(data, reserved)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		a := Actor{ID: "d1", Device: true}
		if packet.ValidTopicName([]byte(topic)) {
			r.CanPublish(a, []byte(topic), members{})
		}
		if packet.ValidFilter(filter) {
			r.CanSubscribe(a, filter, members{})
		}
	})
}

// FuzzMatchers: matches agrees with packet.Match; a pattern that covers a
// filter matches every topic the filter matches; filters that do not
// overlap match no topic together.
func FuzzMatchers(f *testing.F) {
	f.Add("a/+/c", "a/b/#", "a/b/c")
	f.Add("a/#", "a", "a")
	f.Add("+/x", "/private/#", "/private/x")
	f.Add("a/%u/b", "a/me/b", "a/me/b")
	f.Fuzz(func(t *testing.T, p, q, topic string) {
		pl := strings.Split(p, "/")
		for _, l := range pl {
			if l != userLevel && strings.Contains(l, "%") {
				return // Parse refuses it: "%" only as a whole level
			}
		}
		pf := strings.Join(splitAs(pl, "me"), "/")
		if !packet.ValidFilter(pf) || !packet.ValidFilter(q) || !packet.ValidTopicName([]byte(topic)) {
			return
		}
		mp := packet.Match(pf, []byte(topic))
		if got := matches(pl, "me", []byte(topic)); got != mp {
			t.Fatalf("matches(%q, %q) = %v, packet.Match %v", p, topic, got, mp)
		}
		mq := packet.Match(q, []byte(topic))
		if covers(pl, "me", q) && mq && !mp {
			t.Fatalf("%q covers %q, which matches %q, which %q does not", p, q, topic, p)
		}
		if mp && mq && !overlap(strings.Split(pf, "/"), strings.Split(q, "/")) {
			t.Fatalf("%q and %q both match %q, yet do not overlap", pf, q, topic)
		}
	})
}

// splitAs is levels with %u as id.
func splitAs(levels []string, id string) []string {
	out := make([]string, len(levels))
	for i, l := range levels {
		out[i] = level(l, id)
	}
	return out
}

// TestSubscribeByGroup: Subscribe says when only a group rule admits a
// filter (a membership that can end), and not when another rule admits
// the principal as what it is.
func TestSubscribeByGroup(t *testing.T) {
	r, err := Parse([]byte(example), reserved)
	if err != nil {
		t.Fatal(err)
	}
	m := members{"ops/alice": true, "ops/d1": true}
	for _, c := range []struct {
		a           Actor
		filter      string
		ok, byGroup bool
	}{
		{Actor{ID: "alice"}, "telemetry/+/#", true, true},
		{Actor{ID: "alice"}, "telemetry/d9/temp", true, true},
		{Actor{ID: "d1", Device: true}, "telemetry/d1/#", true, false}, // its own tree: as a device
		{Actor{ID: "d1", Device: true}, "telemetry/+/#", true, true},   // everyone's: as a member of ops
		{Actor{ID: "bob"}, "telemetry/+/#", false, false},
		{Actor{ID: "bob"}, "public/news", true, false},
	} {
		ok, byGroup := r.Subscribe(c.a, c.filter, m)
		if ok != c.ok || byGroup != c.byGroup {
			t.Errorf("%+v %s: %v %v, want %v %v", c.a, c.filter, ok, byGroup, c.ok, c.byGroup)
		}
	}
}

// TestSubscribeAllocs: the check a delivery repeats for a subscription a
// group rule admits allocates nothing.
func TestSubscribeAllocs(t *testing.T) {
	r, err := Parse([]byte(example), reserved)
	if err != nil {
		t.Fatal(err)
	}
	m := members{"ops/alice": true}
	a := Actor{ID: "alice"}
	if n := testing.AllocsPerRun(100, func() {
		if !r.CanSubscribe(a, "telemetry/+/#", m) {
			t.Fatal("refused")
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

// TestValidIDIsStores: the rules' id check is the store's.
func TestValidIDIsStores(t *testing.T) {
	ids := []string{"", ".", "..", "...", "a", "a.b", "a=b", "a*", ">", "a b", "a/b", "a+", "#", "%u", "é", "a\x00",
		strings.Repeat("a", 64), strings.Repeat("a", 65), "A-Z_0.9", "-", "_"}
	for c := 0; c < 256; c++ {
		ids = append(ids, "x"+string(rune(c)), string([]byte{byte(c)}))
	}
	for _, id := range ids {
		if validID(id) != store.ValidID(id) {
			t.Errorf("validID(%q) = %v, store.ValidID = %v", id, validID(id), store.ValidID(id))
		}
	}
}
