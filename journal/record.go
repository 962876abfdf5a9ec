package journal

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pushring/pushring/message"
)

// The stored record of a message, version 1 (all integers big-endian or
// unsigned varints of their shortest form):
//
//	version  1 byte   recordVersion
//	kind     1 byte   message.Direct (1) or message.Group (2)
//	qos      1 byte   0 or 1
//	id       8 bytes  message.Message.ID
//	from     uvarint length (0..64), bytes: "" or a valid id
//	to       uvarint length (1..64), bytes: a valid id
//	payload  uvarint length, bytes: up to the end of the record
//
// Decoding is strict: one byte string decodes to at most one message and
// re-encodes to itself, so a record never means two things (a padded
// varint, trailing bytes, an id the subjects could not carry are
// refused).
const recordVersion = 1

// maxIDLen is the longest principal or group id (store.ValidID).
const maxIDLen = 64

// ErrBadRecord is matched by every error DecodeRecord returns.
var ErrBadRecord = errors.New("journal: bad record")

// AppendRecord appends the record of m to dst and returns the extended
// slice. m must be valid (ValidMessage); AppendRecord does not check it.
func AppendRecord(dst []byte, m *message.Message) []byte {
	dst = append(dst, recordVersion, byte(m.Kind), m.QoS)
	dst = binary.BigEndian.AppendUint64(dst, m.ID)
	dst = binary.AppendUvarint(dst, uint64(len(m.From)))
	dst = append(dst, m.From...)
	dst = binary.AppendUvarint(dst, uint64(len(m.To)))
	dst = append(dst, m.To...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Payload)))
	return append(dst, m.Payload...)
}

// recordSize is len(AppendRecord(nil, m)).
func recordSize(m *message.Message) int {
	return 3 + 8 + uvarintLen(uint64(len(m.From))) + len(m.From) +
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

// DecodeRecord decodes a record AppendRecord made. The message owns its
// bytes (nothing aliases data), so it may be kept. An empty payload
// decodes as nil.
func DecodeRecord(data []byte) (*message.Message, error) {
	if len(data) < 11 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than the fixed fields", ErrBadRecord, len(data))
	}
	if data[0] != recordVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadRecord, data[0])
	}
	m := &message.Message{Kind: message.Kind(data[1]), QoS: data[2], ID: binary.BigEndian.Uint64(data[3:11])}
	if m.Kind != message.Direct && m.Kind != message.Group {
		return nil, fmt.Errorf("%w: kind %d", ErrBadRecord, data[1])
	}
	if m.QoS > 1 {
		return nil, fmt.Errorf("%w: qos %d", ErrBadRecord, m.QoS)
	}
	rest := data[11:]
	from, rest, err := field(rest, maxIDLen, "from")
	if err != nil {
		return nil, err
	}
	to, rest, err := field(rest, maxIDLen, "to")
	if err != nil {
		return nil, err
	}
	payload, rest, err := field(rest, len(rest), "payload")
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadRecord, len(rest))
	}
	if len(from) > 0 && !validID(from) {
		return nil, fmt.Errorf("%w: bad from id", ErrBadRecord)
	}
	if !validID(to) {
		return nil, fmt.Errorf("%w: bad to id", ErrBadRecord)
	}
	m.From, m.To = string(from), string(to)
	if len(payload) > 0 {
		m.Payload = append([]byte(nil), payload...)
	}
	return m, nil
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

// ValidMessage reports whether m can be stored: a known kind, QoS 0 or
// 1, To a valid id, From empty or a valid id.
func ValidMessage(m *message.Message) bool {
	return (m.Kind == message.Direct || m.Kind == message.Group) && m.QoS <= 1 &&
		validID(m.To) && (m.From == "" || validID(m.From))
}
