package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/pushring/pushring/message"
)

// The stored record of a message (all integers big-endian or unsigned
// varints of their shortest form):
//
//	version  1 byte   1, or 2 when prev follows id
//	kind     1 byte   message.Direct (1) or message.Group (2), plus 0x80
//	                  when the extension follows the payload
//	qos      1 byte   0, 1 or 2
//	id       8 bytes  message.Message.ID
//	prev     8 bytes  version 2 only, never 0: see below
//	from     uvarint length (0..64), bytes: "" or a valid id
//	to       uvarint length (1..64), bytes: a valid id
//	payload  uvarint length, bytes
//	expires  extension only: uvarint, Unix milliseconds, 0 for never
//	props    extension only: uvarint length, bytes (MQTT 5.0 properties)
//
// The extension carries message.Message's Expires and Props and is there
// only when one of them is set, so records without them read as before,
// and a release that does not know it refuses such a record (an unknown
// kind) rather than deliver the message without them.

// prev is the id of the message appended to the same subject just before
// this one, when that one's result was not reported yet: if it was lost
// on the way, this one may be withdrawn (see settleAge). A
// record without one is version 1, so version 1 records (all records of
// earlier releases) read as before.
//
// Decoding is strict: one byte string decodes to at most one message and
// re-encodes to itself, so a record never means two things (a padded
// varint, trailing bytes, an id the subjects could not carry, a version 2
// record with prev 0 are refused).
const (
	recordVersion     = 1
	recordVersionPrev = 2
)

// maxIDLen is the longest principal or group id (store.ValidID).
const maxIDLen = 64

// ErrBadRecord is matched by every error DecodeRecord returns.
var ErrBadRecord = errors.New("journal: bad record")

// AppendRecord appends the record of m, with prev (0: none), to dst and
// returns the extended slice. m must be valid (ValidMessage);
// AppendRecord does not check it.
func AppendRecord(dst []byte, m *message.Message, prev uint64) []byte {
	version := byte(recordVersion)
	if prev != 0 {
		version = recordVersionPrev
	}
	kind := byte(m.Kind)
	ext := m.HasExtension()
	if ext {
		kind |= recordExt
	}
	dst = append(dst, version, kind, m.QoS)
	dst = binary.BigEndian.AppendUint64(dst, m.ID)
	if prev != 0 {
		dst = binary.BigEndian.AppendUint64(dst, prev)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.From)))
	dst = append(dst, m.From...)
	dst = binary.AppendUvarint(dst, uint64(len(m.To)))
	dst = append(dst, m.To...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Payload)))
	dst = append(dst, m.Payload...)
	if ext {
		dst = m.AppendExtension(dst)
	}
	return dst
}

// recordExt flags a kind whose record carries the extension.
const recordExt = 0x80

// recordSize is len(AppendRecord(nil, m, prev)).
func recordSize(m *message.Message, prev uint64) int {
	n := 0
	if prev != 0 {
		n = 8
	}
	n += m.ExtensionSize()
	return n + 3 + 8 + uvarintLen(uint64(len(m.From))) + len(m.From) +
		uvarintLen(uint64(len(m.To))) + len(m.To) +
		uvarintLen(uint64(len(m.Payload))) + len(m.Payload)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// DecodeRecord decodes a record AppendRecord made, and its prev (0:
// none). The message owns its bytes (nothing aliases data), so it may be
// kept. An empty payload decodes as nil.
func DecodeRecord(data []byte) (m *message.Message, prev uint64, err error) {
	fixed := 11
	if len(data) > 0 && data[0] == recordVersionPrev {
		fixed += 8
	}
	if len(data) < fixed {
		return nil, 0, fmt.Errorf("%w: %d bytes, shorter than the fixed fields", ErrBadRecord, len(data))
	}
	if data[0] != recordVersion && data[0] != recordVersionPrev {
		return nil, 0, fmt.Errorf("%w: version %d", ErrBadRecord, data[0])
	}
	ext := data[1]&recordExt != 0
	m = &message.Message{Kind: message.Kind(data[1] &^ recordExt), QoS: data[2], ID: binary.BigEndian.Uint64(data[3:11])}
	maxTo := maxIDLen
	switch m.Kind {
	case message.Direct, message.Group:
	case message.Topic:
		maxTo = maxTopicLen
	default:
		return nil, 0, fmt.Errorf("%w: kind %d", ErrBadRecord, data[1])
	}
	if m.QoS > 2 {
		return nil, 0, fmt.Errorf("%w: qos %d", ErrBadRecord, m.QoS)
	}
	if fixed > 11 {
		if prev = binary.BigEndian.Uint64(data[11:19]); prev == 0 {
			return nil, 0, fmt.Errorf("%w: version %d without prev", ErrBadRecord, data[0])
		}
	}
	rest := data[fixed:]
	from, rest, err := field(rest, maxIDLen, "from")
	if err != nil {
		return nil, 0, err
	}
	to, rest, err := field(rest, maxTo, "to")
	if err != nil {
		return nil, 0, err
	}
	payload, rest, err := field(rest, len(rest), "payload")
	if err != nil {
		return nil, 0, err
	}
	var props []byte
	if ext {
		exp, k := binary.Uvarint(rest)
		if k <= 0 || k != uvarintLen(exp) || exp > math.MaxInt64 {
			return nil, 0, fmt.Errorf("%w: bad expires", ErrBadRecord)
		}
		if props, rest, err = field(rest[k:], len(rest), "props"); err != nil {
			return nil, 0, err
		}
		if exp == 0 && len(props) == 0 {
			return nil, 0, fmt.Errorf("%w: empty extension", ErrBadRecord)
		}
		m.Expires = int64(exp)
	}
	if len(rest) != 0 {
		return nil, 0, fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(rest))
	}
	if len(from) > 0 && !validID(from) {
		return nil, 0, fmt.Errorf("%w: bad from id", ErrBadRecord)
	}
	m.From, m.To = string(from), string(to)
	if m.Kind == message.Topic && !validTopic(m.To) || m.Kind != message.Topic && !validID(to) {
		return nil, 0, fmt.Errorf("%w: bad to", ErrBadRecord)
	}
	if len(payload) > 0 {
		m.Payload = append([]byte(nil), payload...)
	}
	if len(props) > 0 {
		m.Props = append([]byte(nil), props...)
	}
	return m, prev, nil
}

// field reads one length-prefixed field of at most max bytes.
func field(b []byte, max int, name string) (v, rest []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || k != uvarintLen(n) {
		return nil, nil, fmt.Errorf("%w: bad %s length", ErrBadRecord, name)
	}
	b = b[k:]
	if n > uint64(max) || n > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %s length %d", ErrBadRecord, name, n)
	}
	return b[:n], b[n:], nil
}

// validID is store.ValidID without a regexp (it runs on every Append): 1
// to 64 of [A-Za-z0-9_.-], not "." or "..". Such an id has no '=', so the
// subject token encodeID makes of it decodes back to it; and none of
// NATS's wildcards or separators but '.', which encodeID replaces.
func validID[T string | []byte](id T) bool {
	if len(id) == 0 || len(id) > maxIDLen || string(id) == "." || string(id) == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// ValidMessage reports whether m can be stored: a known kind, QoS 0, 1
// or 2, To a valid id (a topic name for a Topic message), From empty or
// a valid id.
func ValidMessage(m *message.Message) bool {
	if m.QoS > 2 || m.From != "" && !validID(m.From) {
		return false
	}
	switch m.Kind {
	case message.Direct, message.Group:
		return validID(m.To)
	case message.Topic:
		return validTopic(m.To)
	}
	return false
}

// maxTopicLen is MQTT's bound on a topic name.
const maxTopicLen = 65535

// validTopic reports whether t can be a topic name: 1 to 65535 bytes,
// no wildcard and no NUL (the codec checked the rest where it came in).
func validTopic(t string) bool {
	return len(t) > 0 && len(t) <= maxTopicLen && !strings.ContainsAny(t, "+#\x00")
}
