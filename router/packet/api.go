// Package packet is pushring's MQTT codec: 3.1.1 now, laid out for 5.0.
// Standard library only. Decoders are strict (every bound checked, every
// flag validated, trailing bytes refused) and do not allocate for PUBLISH:
// Topic and Payload alias the input buffer. Encoders append to a caller's
// buffer so the hot path reuses memory.
//
// THIS FILE IS THE CONTRACT the router codes against. Implementations live
// in the other files of this package.
package packet

// Packet types (the high nibble of the first byte).
const (
	CONNECT     byte = 1
	CONNACK     byte = 2
	PUBLISH     byte = 3
	PUBACK      byte = 4
	PUBREC      byte = 5
	PUBREL      byte = 6
	PUBCOMP     byte = 7
	SUBSCRIBE   byte = 8
	SUBACK      byte = 9
	UNSUBSCRIBE byte = 10
	UNSUBACK    byte = 11
	PINGREQ     byte = 12
	PINGRESP    byte = 13
	DISCONNECT  byte = 14
	AUTH        byte = 15
)

// Protocol levels.
const (
	V311 byte = 4
	V5   byte = 5
)

// 3.1.1 CONNACK return codes.
const (
	ConnAccepted          byte = 0x00
	ConnBadProtocol       byte = 0x01
	ConnIDRejected        byte = 0x02
	ConnServerUnavailable byte = 0x03
	ConnBadCredentials    byte = 0x04
	ConnNotAuthorized     byte = 0x05
)

// SubackFailure is the 3.1.1 SUBACK failure code.
const SubackFailure byte = 0x80

// Error is a decode or protocol error. Code is the MQTT 5.0 reason code
// that describes it (0x81 malformed, 0x82 protocol error, 0x84
// unsupported protocol version, 0x95 packet too large, ...); 3.1.1
// connections are closed instead. Errors are comparable values.
type Error struct {
	Code byte
	Msg  string
}

func (e *Error) Error() string { return "mqtt: " + e.Msg }

// Connect is a decoded CONNECT.
type Connect struct {
	ProtocolName  string
	ProtocolLevel byte
	CleanSession  bool
	KeepAlive     uint16
	ClientID      string
	WillFlag      bool
	WillQoS       byte
	WillRetain    bool
	WillTopic     string
	WillPayload   []byte
	UsernameFlag  bool
	Username      string
	PasswordFlag  bool
	Password      []byte
}

// Publish is a decoded PUBLISH. Topic and Payload alias the body buffer
// given to DecodePublish: copy them before the buffer is reused.
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    []byte
	PacketID uint16
	Payload  []byte
}

// Subscription is one filter of a SUBSCRIBE.
type Subscription struct {
	Filter string
	QoS    byte
}

// Subscribe is a decoded SUBSCRIBE.
type Subscribe struct {
	PacketID uint16
	Filters  []Subscription
}

// Unsubscribe is a decoded UNSUBSCRIBE.
type Unsubscribe struct {
	PacketID uint16
	Filters  []string
}

// Reading (see reader.go):
//
//	// Reader reads whole packets from r. It never allocates from a declared
//	// length: a packet whose remaining length exceeds maxSize is refused with
//	// an *Error{Code: 0x95} before its body is read.
//	type Reader struct{ ... }
//	func NewReader(r io.Reader, maxSize int) *Reader
//	// ReadPacket returns the first byte (type and flags) and the body
//	// (the remaining-length bytes). body is only valid until the next call.
//	func (r *Reader) ReadPacket() (header byte, body []byte, err error)
//	// Buffered reports bytes already read but not returned (for coalescing).
//	func (r *Reader) Buffered() int
//
// Decoding (see decode.go): each validates the header flags of its type
// and the whole body, and returns *Error on any fault.
//
//	func DecodeConnect(header byte, body []byte, c *Connect) error
//	func DecodePublish(header byte, body []byte, level byte, p *Publish) error
//	func DecodeSubscribe(header byte, body []byte, level byte, s *Subscribe) error
//	func DecodeUnsubscribe(header byte, body []byte, level byte, u *Unsubscribe) error
//	// DecodeAck decodes PUBACK, PUBREC, PUBREL, PUBCOMP (header checked
//	// against its type): the packet id, never 0.
//	func DecodeAck(header byte, body []byte, level byte) (packetID uint16, err error)
//	// DecodeEmpty checks PINGREQ and DISCONNECT (3.1.1: empty body).
//	func DecodeEmpty(header byte, body []byte, level byte) error
//
// Encoding (see encode.go): each appends one whole packet to dst.
//
//	func AppendConnack(dst []byte, sessionPresent bool, code byte) []byte
//	func AppendSuback(dst []byte, packetID uint16, codes []byte) []byte
//	func AppendUnsuback(dst []byte, packetID uint16) []byte
//	func AppendAck(dst []byte, typ byte, packetID uint16) []byte // PUBACK/PUBREC/PUBREL/PUBCOMP
//	func AppendPingresp(dst []byte) []byte
//	// AppendPublish appends a PUBLISH whose topic is the concatenation of
//	// topicParts (so "/private/"+id+"/group/"+gid needs no allocation).
//	// packetID is written only when qos > 0.
//	func AppendPublish(dst []byte, qos byte, dup, retain bool, packetID uint16, payload []byte, topicParts ...string) []byte
//	func AppendConnect(dst []byte, c *Connect) []byte         // for tests and clients
//	func AppendSubscribe(dst []byte, s *Subscribe) []byte     // for tests and clients
//
// Topics (see topic.go):
//
//	// ValidTopicName: non-empty, valid UTF-8, no NUL, no '+' or '#', at most maxLevels levels.
//	func ValidTopicName(t []byte) bool
//	// ValidFilter: non-empty, valid UTF-8, no NUL, '#' only as the whole last level,
//	// '+' only as a whole level, at most maxLevels levels.
//	func ValidFilter(f string) bool
//	// Match reports whether topic name t matches filter f (no recursion; '$' rule of [MQTT-4.7.2-1]).
//	func Match(f string, t []byte) bool
