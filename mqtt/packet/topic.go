package packet

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// Topic names and filters.
//
// Levels are the strings between '/'. They are compared byte for byte:
// no normalization, no case folding, no BOM stripping, ".." is literal,
// and an empty level is a level like any other ("/a", "a/", "a//b" and
// "a/b" are four different topics). Nothing here recurses, and nothing
// walks more than MaxLevels levels.

// ValidTopicName reports whether t may be used as a PUBLISH or Will topic:
// non-empty, valid UTF-8, no U+0000, no '+' or '#', at most MaxLevels
// levels.
func ValidTopicName(t []byte) bool { return checkTopicName(t) == nil }

// checkTopicName is ValidTopicName with the reason: ErrUTF8 for bad UTF-8
// or U+0000, ErrTopicName otherwise.
func checkTopicName(t []byte) error {
	if len(t) == 0 { // [MQTT-4.7.3-1]
		return ErrTopicName
	}
	levels := 1
	var all byte // OR of every byte: < 0x80 means ASCII, valid UTF-8
	for _, c := range t {
		all |= c
		switch topicByte[c] {
		case tbPlain:
		case tbSlash:
			levels++
		case tbWildcard: // [MQTT-3.3.2-2]
			return ErrTopicName
		case tbNUL:
			return ErrUTF8
		}
	}
	if all >= utf8.RuneSelf && !utf8.Valid(t) {
		return ErrUTF8
	}
	if levels > MaxLevels {
		return ErrTopicName
	}
	return nil
}

// topicByte classifies the bytes checkTopicName looks for. None of them
// occurs inside a multi-byte UTF-8 sequence.
var topicByte = [256]uint8{'/': tbSlash, '+': tbWildcard, '#': tbWildcard, 0: tbNUL}

const (
	tbPlain = iota
	tbSlash
	tbWildcard
	tbNUL
)

// ValidFilter reports whether f is a valid topic filter: non-empty, valid
// UTF-8, no U+0000, '#' only as the whole last level, '+' only as a whole
// level, at most MaxLevels levels. "$share/..." is syntactically a plain
// filter here; shared subscriptions are the server's decision.
func ValidFilter(f string) bool {
	if len(f) == 0 || !utf8.ValidString(f) {
		return false
	}
	levels := 1
	start := 0 // index of the current level's first byte
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case 0:
			return false
		case '/':
			if levels++; levels > MaxLevels {
				return false
			}
			start = i + 1
		case '+':
			if i != start || (i+1 < len(f) && f[i+1] != '/') {
				return false
			}
		case '#':
			if i != start || i != len(f)-1 {
				return false
			}
		}
	}
	return true
}

// checkFilter is ValidFilter for a decoded field: ErrUTF8 for bad UTF-8 or
// U+0000, ErrFilter otherwise.
func checkFilter(f []byte) error {
	if !validString(f) {
		return ErrUTF8
	}
	if !ValidFilter(string(f)) { // no allocation: the conversion does not escape
		return ErrFilter
	}
	return nil
}

// Match reports whether topic name t matches filter f, level by level:
// '+' matches exactly one level (possibly empty), a final '#' matches the
// parent level and any number of levels below it, every other level must
// be equal byte for byte. A topic beginning with '$' is never matched by a
// filter beginning with a wildcard [MQTT-4.7.2-1].
//
// Match is iterative and walks at most MaxLevels levels: a topic it would
// have to walk further matches nothing (only a '#' reached earlier matches
// a longer one; decoded topic names never have more than MaxLevels). It is meant for a valid filter and a valid topic name;
// given anything else it never panics and errs on the side of no match:
// a '#' level that is not last matches nothing, and '+' or '#' inside a
// level are plain characters (which no valid topic name contains).
func Match[T string | []byte](f string, t T) bool {
	if len(f) == 0 || len(t) == 0 {
		return false
	}
	if t[0] == '$' && (f[0] == '+' || f[0] == '#') {
		return false
	}
	fi, ti := 0, 0 // start of the current level in f and t
	for range MaxLevels {
		fe := len(f)
		if i := strings.IndexByte(f[fi:], '/'); i >= 0 {
			fe = fi + i
		}
		fl := f[fi:fe]
		if fl == "#" {
			return fe == len(f)
		}
		te := len(t)
		if i := indexByte(t[ti:], '/'); i >= 0 {
			te = ti + i
		}
		if fl != "+" && fl != string(t[ti:te]) {
			return false
		}
		fDone, tDone := fe == len(f), te == len(t)
		switch {
		case tDone && fDone:
			return true
		case tDone:
			// "a/#" matches "a" [MQTT-4.7.1-2]; nothing else longer does.
			return f[fe:] == "/#"
		case fDone:
			return false
		}
		fi, ti = fe+1, te+1
	}
	return false
}

// indexByte is bytes.IndexByte or strings.IndexByte, as T is.
func indexByte[T string | []byte](s T, c byte) int {
	switch v := any(s).(type) {
	case string:
		return strings.IndexByte(v, c)
	case []byte:
		return bytes.IndexByte(v, c)
	}
	return -1
}
