// Package message holds the one value that crosses every boundary of a node:
// a message accepted from a publisher (MQTT or HTTP) on its way to sessions.
// It is a leaf package so that router and fanout can share it without
// importing each other.
package message

import (
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"time"

	"hash/fnv"
)

// Kind says how a message is addressed.
type Kind uint8

const (
	// Direct messages go to one principal's private topic, /private/<To>.
	Direct Kind = 1
	// Group messages go to every member of group To, on
	// /private/<member>/group/<To> (or /group/<To> for members that
	// subscribed to the group topic itself).
	Group Kind = 2
	// Topic messages go to topic To as it is, a topic outside
	// pushring's own namespaces that the operator's topic rules open: to
	// every session with a matching subscription, as a plain broker
	// would.
	Topic Kind = 3
)

func (k Kind) String() string {
	switch k {
	case Direct:
		return "direct"
	case Group:
		return "group"
	case Topic:
		return "topic"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Message is immutable once handed to a Forwarder or Deliverer: every
// receiver shares the same value and the same Payload bytes.
//
// The fields are ordered for size: Kind and QoS share the word after the
// two uint64s and Expires, the only padding, so a Message is 112 bytes on
// 64-bit platforms (pinned by a test).
type Message struct {
	ID uint64 // cluster-unique, see IDSource
	// Seq is the message's sequence in the cluster's message stream, where
	// every QoS 1 message is stored once before it is forwarded between
	// nodes; a delivering node tracks each persistent session's position
	// by it. 0 when the message is not stored (QoS 0).
	Seq uint64
	// Expires is when the message stops being delivered, in Unix
	// milliseconds (MQTT 5.0's Message Expiry Interval, an HTTP publish's
	// ttl); 0: never. It stays a deadline on its way through the cluster,
	// so every receiver sees what is left of the interval.
	Expires int64
	Kind    Kind
	QoS     byte   // 0, 1 or 2: the publisher's QoS, capped per subscription at delivery; 1 and 2 are stored alike
	From    string // principal id of the publisher ("" for admin over HTTP)
	To      string // principal id (Direct), group id (Group) or topic name (Topic)
	Payload []byte
	// Props are the MQTT 5.0 properties that travel with the message to
	// its receivers (a property block without its length: payload format,
	// content type, response topic, correlation data, user properties),
	// already checked by the codec; empty for most messages. Receivers on
	// 3.1.1 connections get the payload alone.
	Props []byte
}

// HasExtension reports whether m carries Expires or Props: the wire forms
// of a message (fanout's envelopes, the journal's records) then write
// its extension after the payload, and flag that they do.
func (m *Message) HasExtension() bool { return m.Expires != 0 || len(m.Props) > 0 }

// AppendExtension appends m's extension, in the encoding both wire forms
// share: Expires as an unsigned varint, then Props' length as an unsigned
// varint and its bytes. Call it only when HasExtension.
func (m *Message) AppendExtension(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(m.Expires))
	dst = binary.AppendUvarint(dst, uint64(len(m.Props)))
	return append(dst, m.Props...)
}

// ExtensionSize is the length AppendExtension appends, 0 without one.
func (m *Message) ExtensionSize() int {
	if !m.HasExtension() {
		return 0
	}
	return uvarintLen(uint64(m.Expires)) + uvarintLen(uint64(len(m.Props))) + len(m.Props)
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// Size is what m's bytes weigh against a queue's byte bound: its payload
// and its properties.
func (m *Message) Size() int { return len(m.Payload) + len(m.Props) }

// Expired reports whether m's expiry has passed at now.
func (m *Message) Expired(now time.Time) bool {
	return m.Expires != 0 && now.UnixMilli() >= m.Expires
}

// ExpiryLeft returns what is left of m's expiry interval at now, in whole
// seconds rounded up (at least 1 while not expired), and whether m expires
// at all.
func (m *Message) ExpiryLeft(now time.Time) (seconds uint32, ok bool) {
	if m.Expires == 0 {
		return 0, false
	}
	left := m.Expires - now.UnixMilli()
	if left <= 0 {
		return 0, true
	}
	return uint32(min((left+999)/1000, 1<<32-1)), true
}

// IDSource makes cluster-unique message ids without coordination: the top
// 16 bits come from a hash of the node id, the low 48 bits from a counter
// that starts at the current time in microseconds, so a restarted node does
// not reuse the ids of its previous life.
type IDSource struct {
	prefix  uint64
	counter atomic.Uint64
}

// NewIDSource returns an IDSource for the node with the given id.
func NewIDSource(nodeID string) *IDSource {
	h := fnv.New64a()
	h.Write([]byte(nodeID))
	s := &IDSource{prefix: h.Sum64() << 48}
	s.counter.Store(uint64(time.Now().UnixMicro()) & (1<<48 - 1))
	return s
}

// Next returns a new id. It is goroutine-safe and never blocks.
func (s *IDSource) Next() uint64 {
	return s.prefix | (s.counter.Add(1) & (1<<48 - 1))
}

// FormatID renders an id as 16 lower-case hex digits, the form the HTTP API
// returns.
func FormatID(id uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	return hex.EncodeToString(b[:])
}
