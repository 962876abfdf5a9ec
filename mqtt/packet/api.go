// Package packet is pushring's MQTT codec: 3.1, 3.1.1 and 5.0.
// Standard library only. Decoders are strict (every bound checked, every
// flag validated, trailing bytes refused) and do not allocate for PUBLISH:
// Topic and Payload alias the input buffer. Encoders append to a caller's
// buffer so the hot path reuses memory.
//
// This file holds the types, constants and error values the router codes
// against. The functions live in:
//
//	reader.go    Reader: whole packets from a stream, bounded memory; ParseFixedHeader
//	decode.go    Decode*: client → server packets (plus CONNACK/SUBACK/UNSUBACK for test clients),
//	             ValidClientPacketType
//	encode.go    Append*: server → client packets (plus CONNECT/SUBSCRIBE/... for test clients),
//	             PublishLen, SetPacketID/SetDup/PublishIDOffset to patch an encoded PUBLISH
//	topic.go     ValidTopicName, ValidFilter, Match
//	tpackets.go  TPackets: the expected-bytes table the codec's and the server's tests
//	             read, and the classes of hostile input its entries are named after
//
// Every function is safe for concurrent use; a Reader is not.
//
// # Aliasing
//
// The body returned by Reader.ReadPacket is valid until the next
// ReadPacket. Publish.Topic and Publish.Payload alias it, and so do the
// codes of DecodeSuback: copy (or encode the outgoing PUBLISH, which
// copies) before reading the next packet. Connect, Subscribe and
// Unsubscribe hold copies and may be kept.
//
// # Protocol levels
//
// Every decoder takes the connection's protocol level (from its CONNECT).
// Levels 3 (MQTT 3.1, "MQIsdp") and 4 (3.1.1) share one wire format. Level 5
// (MQTT 5.0) adds properties (props.go) and reason codes: the decoders read
// and check them, and the *V5 encoders write them.
//
// # Errors
//
// Every decode error is one of the *Error sentinels below, never wrapped;
// compare with == or errors.Is, and read Code for the reason. The Reader
// also returns I/O errors (io.EOF between packets, io.ErrUnexpectedEOF
// inside one): use errors.As(err, new(*Error)) to tell a protocol fault.
// On a 3.1.1 connection every *Error means "close the connection without a
// reply", with one exception: DecodeConnect's Code 0x84
// (ErrUnsupportedLevel) is answered with CONNACK 0x01 (ConnBadProtocol)
// before closing. On a 5.0 connection the server sends DISCONNECT (or,
// for CONNECT, CONNACK) with Code before closing [MQTT-4.13.1-1].
//
// # Left to the server
//
// The codec checks form, not policy. The server still must: refuse a first
// packet that is not CONNECT and a second CONNECT (Reader.SetCheck can do
// the first without reading the body), refuse types a client may not send
// (ValidClientPacketType), answer an empty client id with clean session 0
// with CONNACK 0x02, check that an identity is one topic level without
// wildcards before it goes into a topic, apply the ACL to decoded topics
// and filters (Will topics included) level by level, and cap packet sizes,
// subscription counts and inflight state.
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
	V31  byte = 3 // MQTT 3.1, protocol name "MQIsdp"; decoded like 3.1.1
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

// Limits.
const (
	// MaxRemainingLength is the largest Remaining Length that fits the
	// 4-byte encoding (256 MiB - 1).
	MaxRemainingLength = 268435455
	// MaxLevels caps the number of levels of a topic name or filter
	// (mosquitto uses 200), so that no topic costs more than that many
	// levels to walk. Longer ones are invalid.
	MaxLevels = 128
	// MaxStringLen is the longest UTF-8 string or binary field (2-byte length).
	MaxStringLen = 65535
)

// Error is a decode or protocol error. Code is the MQTT 5.0 reason code
// that describes it (0x81 malformed, 0x82 protocol error, 0x84
// unsupported protocol version, 0x95 packet too large, ...); 3.1.1
// connections are closed instead. Errors are comparable values.
type Error struct {
	Code byte
	Msg  string
}

func (e *Error) Error() string { return "mqtt: " + e.Msg }

// MQTT 5.0 reason codes (section 2.4). Error carries those of decode
// faults; the server sends the others in CONNACK, the acks and DISCONNECT.
const (
	CodeSuccess                 byte = 0x00 // also Normal disconnection, Granted QoS 0
	CodeGrantedQoS1             byte = 0x01
	CodeGrantedQoS2             byte = 0x02
	CodeDisconnectWithWill      byte = 0x04
	CodeNoMatchingSubscribers   byte = 0x10
	CodeNoSubscriptionExisted   byte = 0x11
	CodeUnspecified             byte = 0x80
	CodeMalformed               byte = 0x81
	CodeProtocolError           byte = 0x82
	CodeImplementationSpecific  byte = 0x83
	CodeUnsupportedVersion      byte = 0x84
	CodeClientIDNotValid        byte = 0x85
	CodeBadCredentials          byte = 0x86
	CodeNotAuthorized           byte = 0x87
	CodeServerUnavailable       byte = 0x88
	CodeServerBusy              byte = 0x89
	CodeServerShuttingDown      byte = 0x8B
	CodeBadAuthMethod           byte = 0x8C
	CodeKeepAliveTimeout        byte = 0x8D
	CodeSessionTakenOver        byte = 0x8E
	CodeTopicFilterInvalid      byte = 0x8F
	CodeTopicNameInvalid        byte = 0x90
	CodePacketIDInUse           byte = 0x91
	CodePacketIDNotFound        byte = 0x92
	CodeReceiveMaximumExceeded  byte = 0x93
	CodeTopicAliasInvalid       byte = 0x94
	CodePacketTooLarge          byte = 0x95
	CodeMessageRateTooHigh      byte = 0x96
	CodeQuotaExceeded           byte = 0x97
	CodeAdministrativeAction    byte = 0x98
	CodePayloadFormatInvalid    byte = 0x99
	CodeRetainNotSupported      byte = 0x9A
	CodeQoSNotSupported         byte = 0x9B
	CodeUseAnotherServer        byte = 0x9C
	CodeServerMoved             byte = 0x9D
	CodeSharedSubNotSupported   byte = 0x9E
	CodeConnectionRateExceeded  byte = 0x9F
	CodeMaximumConnectTime      byte = 0xA0
	CodeSubIDsNotSupported      byte = 0xA1
	CodeWildcardSubNotSupported byte = 0xA2
)

// Error sentinels. Decoders return exactly these values (never wrapped), so
// they can be compared with ==; they carry no per-packet detail so that
// failing never allocates.
var (
	// Framing (Reader).
	ErrRemainingLength = &Error{CodeMalformed, "malformed remaining length"} // 5th length byte, or a non-minimal encoding
	ErrTooLarge        = &Error{CodePacketTooLarge, "packet too large"}      // remaining length > maxSize
	ErrPacketType      = &Error{CodeProtocolError, "unexpected packet type"} // a decoder given another type's header; see ValidClientPacketType

	// Structure (all packets).
	ErrFlags        = &Error{CodeMalformed, "invalid fixed header flags"}        // reserved bits of the first byte wrong for the type
	ErrShort        = &Error{CodeMalformed, "field runs past end of packet"}     // a length or field past the end of the body
	ErrTrailing     = &Error{CodeMalformed, "trailing bytes after last field"}   // bytes after the last field
	ErrPacketIDZero = &Error{CodeProtocolError, "packet identifier 0"}           // a packet id of 0 where one is required
	ErrQoS          = &Error{CodeMalformed, "invalid QoS"}                       // PUBLISH QoS 3, SUBSCRIBE QoS 3
	ErrUTF8         = &Error{CodeMalformed, "invalid UTF-8 or U+0000 in string"} // topics, filters, client id, username, will topic

	// CONNECT.
	ErrProtocolName     = &Error{CodeMalformed, "unknown protocol name"}               // neither "MQTT" nor "MQIsdp": close, no CONNACK
	ErrUnsupportedLevel = &Error{CodeUnsupportedVersion, "unsupported protocol level"} // a level the name does not go with: CONNACK 0x01
	ErrConnectFlags     = &Error{CodeMalformed, "invalid CONNECT flags"}               // reserved flag, will QoS 3, will or password flags that do not go together

	// Topics.
	ErrTopicName = &Error{CodeTopicNameInvalid, "invalid topic name"} // empty, wildcard, > MaxLevels (PUBLISH and will topics)
	ErrFilter    = &Error{CodeMalformed, "invalid topic filter"}      // see ValidFilter

	// SUBSCRIBE / UNSUBSCRIBE.
	ErrNoFilters  = &Error{CodeProtocolError, "no topic filters"}              // [MQTT-3.8.3-3], [MQTT-3.10.3-2]
	ErrSubOptions = &Error{CodeMalformed, "reserved subscription option bits"} // [MQTT-3.8.3-4], 5.0 [MQTT-3.8.3-5]

	// MQTT 5.0.
	ErrVarint         = &Error{CodeMalformed, "malformed variable byte integer"}            // 5th byte, or a padded encoding
	ErrPropertyID     = &Error{CodeMalformed, "property not valid for this packet"}         // unknown identifier, or another packet's
	ErrPropertyDup    = &Error{CodeProtocolError, "property given more than once"}          // any but User Property
	ErrPropertyValue  = &Error{CodeProtocolError, "property value out of range"}            // a 0/1 byte that is neither, Receive Maximum, Maximum Packet Size or Subscription Identifier 0
	ErrTopicAlias     = &Error{CodeTopicAliasInvalid, "topic alias 0 or above the maximum"} // the maximum is the server's check
	ErrNoTopic        = &Error{CodeProtocolError, "empty topic without a topic alias"}      // [MQTT-3.3.2-1] with 3.3.2.3.4
	ErrResponseTopic  = &Error{CodeTopicNameInvalid, "invalid response topic"}              // [MQTT-3.3.2-14]
	ErrPayloadFormat  = &Error{CodePayloadFormatInvalid, "payload is not UTF-8"}            // Payload Format Indicator 1 [MQTT-3.3.2-4]
	ErrRetainHandling = &Error{CodeProtocolError, "retain handling 3"}                      // [MQTT-3.8.3-5]
	ErrSharedNoLocal  = &Error{CodeProtocolError, "no local on a shared subscription"}      // [MQTT-3.8.3-4]
	ErrReasonCode     = &Error{CodeProtocolError, "reason code not valid for this packet"}  // acks, DISCONNECT
)

// Connect is a decoded CONNECT. It holds no reference to the decoded body:
// strings and byte slices are copies, so it may be kept.
//
// In 5.0 CleanSession is the Clean Start flag, and Props and WillProps
// hold the CONNECT's and the Will's properties.
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
	Props         Properties
	WillProps     Properties
}

// Publish is a decoded PUBLISH. Topic, Payload and Props alias the body
// buffer given to DecodePublish: copy them before the buffer is reused.
//
// In 5.0 Props is the property block (without its length; empty, not
// nil, when there is none), checked but kept as bytes so that a PUBLISH
// decodes without allocating; TopicAlias and the Message Expiry Interval
// are read out of it. Topic is empty when a Topic Alias stands for it.
type Publish struct {
	Dup       bool
	QoS       byte
	Retain    bool
	HasExpiry bool // a Message Expiry Interval was given (5.0)
	Topic     []byte
	PacketID  uint16
	// TopicAlias is 0 when none was given (0 itself is refused).
	TopicAlias uint16
	Expiry     uint32 // Message Expiry Interval, seconds
	Props      []byte
	Payload    []byte
}

// Subscription is one filter of a SUBSCRIBE. The options after QoS are
// 5.0's (always zero in 3.1.1).
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte // 0 send retained on subscribe, 1 only if new, 2 never
}

// Subscribe is a decoded SUBSCRIBE. Props is 5.0's.
type Subscribe struct {
	PacketID uint16
	Filters  []Subscription
	Props    Properties
}

// Unsubscribe is a decoded UNSUBSCRIBE. Props is 5.0's.
type Unsubscribe struct {
	PacketID uint16
	Filters  []string
	Props    Properties
}

// Disconnect is a decoded DISCONNECT: in 3.1.1 always the zero value.
type Disconnect struct {
	Code  byte
	Props Properties
}
