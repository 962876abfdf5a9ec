package packet

import (
	"bytes"
	"encoding/hex"
	"strings"
	"sync"
)

// Decoded forms of the packets that have no struct of their own.
type (
	// TAck is a PUBACK, PUBREC, PUBREL or PUBCOMP.
	TAck struct {
		Type byte
		ID   uint16
	}
	// TEmpty is a PINGREQ, DISCONNECT or PINGRESP.
	TEmpty   struct{ Type byte }
	TConnack struct {
		SessionPresent bool
		Code           byte
	}
	TSuback struct {
		ID    uint16
		Codes []byte
	}
	TUnsuback struct{ ID uint16 }

	// MQTT 5.0 forms: an ack with its reason code, a CONNACK with its
	// properties, an UNSUBACK with its reason codes.
	TAck5 struct {
		Type byte
		ID   uint16
		Code byte
	}
	TConnack5 struct {
		SessionPresent bool
		Code           byte
		Props          Properties
	}
	TUnsuback5 struct {
		ID    uint16
		Codes []byte
	}
)

// TPacket is one entry of TPackets.
type TPacket struct {
	Name   string
	Hex    string // whole packet; spaces ignored
	Raw    []byte // instead of Hex, for generated packets
	Level  byte   // protocol level to decode with; 0 means V311
	Server bool   // sent by the server (decoded with the client-side decoders)
	Want   any    // *Connect, *Publish, *Subscribe, *Unsubscribe, *Disconnect, TAck, TAck5, TEmpty, TConnack, TConnack5, TSuback, TUnsuback, TUnsuback5
	Err    *Error // expected error; nil means Want
	NoEnc  bool   // valid, but the encoder writes other bytes for Want
	Ref    string // class of hostile input (see TPackets)
}

// Bytes returns the whole packet.
func (tp *TPacket) Bytes() []byte {
	if tp.Raw != nil {
		return tp.Raw
	}
	return hexBytes(tp.Hex)
}

// ProtocolLevel is the level to decode the packet with.
func (tp *TPacket) ProtocolLevel() byte {
	if tp.Level == 0 {
		return V311
	}
	return tp.Level
}

// TPacketNamed returns the entry of TPackets called name; it panics if
// there is none, as a test that names a missing entry is wrong.
func TPacketNamed(name string) TPacket {
	for _, tp := range TPackets() {
		if tp.Name == name {
			return tp
		}
	}
	panic("packet: no TPackets entry " + name)
}

// hexBytes decodes a hex string with spaces, for table values.
func hexBytes(h string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// TMaxSize is the Reader limit the table is decoded with.
const TMaxSize = 1 << 17

// deepTopic returns a topic of n levels: "a/a/.../a".
func deepTopic(n int) string { return strings.Repeat("a/", n-1) + "a" }

// rawPublish builds a QoS 0 PUBLISH of topic (any length) by hand, so
// generated entries do not depend on the encoder under test.
func rawPublish(topic string, payload string) []byte {
	rl := 2 + len(topic) + len(payload)
	b := []byte{0x30}
	for rl > 0x7f {
		b = append(b, byte(rl)|0x80)
		rl >>= 7
	}
	b = append(b, byte(rl), byte(len(topic)>>8), byte(len(topic)))
	return append(append(b, topic...), payload...)
}

// rawSubscribe builds a SUBSCRIBE of one filter (any length) by hand.
func rawSubscribe(filter string, opts byte) []byte {
	rl := 2 + 2 + len(filter) + 1
	b := []byte{0x82}
	for rl > 0x7f {
		b = append(b, byte(rl)|0x80)
		rl >>= 7
	}
	b = append(b, byte(rl), 0, 1, byte(len(filter)>>8), byte(len(filter)))
	return append(append(b, filter...), opts)
}

// TPackets returns the expected-bytes table: one whole packet per entry, fixed
// header included, with what decoding it must give. Valid entries give the
// decoded value, and the encoders must write exactly these bytes back
// (unless NoEnc); bad entries give the sentinel error the Reader or a
// decoder must return. The codec's decode, encode, round-trip and Reader
// tests and its fuzz seed corpora read this table, and so do the server's
// bad-input tests: a packet's bytes are written down once, here.
//
// Entry names start with the class of hostile input they stand for (Ref):
// A framing (A1 remaining length, A2 size, A3 short, A4 trailing bytes,
// A5 flags, A6 packet types a client may not send, A7 packet id 0),
// B CONNECT (B1 packet before CONNECT, B2 second CONNECT, B3 bad fields,
// B4 credentials, B5 client ids), C topics and filters (C1 wildcards in
// a topic name, C2 empty, C3 UTF-8, C4 BOM, C5 identities that are
// wildcards, C6 partial SUBACK, C7 odd levels, C8 $ topics, C9 shared
// subscriptions, C10 filters, C11 depth and length), D1 wills, E5 the
// packet size limit, F MQTT 5.0 (F1 properties: unknown, of another
// packet, repeated, out of range, malformed; F2 topic aliases; F3
// reason codes; F4 subscription options; F5 payload format).
//
// The table is built on first use, so a program that links the codec but
// never calls TPackets pays no memory or start-up time for it (its text
// is in the binary). Callers must not modify it.
var TPackets = sync.OnceValue(func() []TPacket {
	return []TPacket{
		// ---- Framing (Reader) ----
		{Name: "A1 remaining length in 5 bytes", Hex: "30 80 80 80 80 01", Err: ErrRemainingLength, Ref: "A1"},
		{Name: "A1 CONNECT remaining length in 5 bytes", Hex: "10 80 80 80 80 01", Err: ErrRemainingLength, Ref: "A1"},
		{Name: "remaining length not minimal", Hex: "30 80 00", Err: ErrRemainingLength},
		{Name: "A2 huge declared CONNECT, no body", Hex: "10 FF FF FF 7F", Err: ErrTooLarge, Ref: "A2"},
		{Name: "A2 largest declared PUBLISH, no body", Hex: "30 FF FF FF 7F", Err: ErrTooLarge, Ref: "A2"},
		{Name: "A2 huge declared PUBLISH, some junk", Hex: "30 80 80 80 74 00 00 00 00", Err: ErrTooLarge, Ref: "A2"},
		{Name: "body just over the limit", Raw: rawPublish("t", strings.Repeat("x", TMaxSize-3+1)), Err: ErrTooLarge, Ref: "E5"},
		{Name: "body exactly at the limit", Raw: rawPublish("t", strings.Repeat("x", TMaxSize-3)),
			Want: &Publish{Topic: []byte("t"), Payload: []byte(strings.Repeat("x", TMaxSize-3))}},

		// ---- Packet types a client may not send ----
		{Name: "A6 reserved type 0", Hex: "00 00", Err: ErrPacketType, Ref: "A6"},
		{Name: "A6 AUTH from a 3.1.1 client", Hex: "F0 00", Err: ErrPacketType, Ref: "A6"},
		{Name: "A6 CONNACK from a client", Hex: "20 02 00 00", Err: ErrPacketType, Ref: "A6"},
		{Name: "A6 SUBACK from a client", Hex: "90 03 00 01 00", Err: ErrPacketType, Ref: "A6"},
		{Name: "A6 UNSUBACK from a client", Hex: "B0 02 00 01", Err: ErrPacketType, Ref: "A6"},
		{Name: "A6 PINGRESP from a client", Hex: "D0 00", Err: ErrPacketType, Ref: "A6"},

		// ---- CONNECT ----
		{Name: "CONNECT minimal", Hex: "10 0D 00 04 4D 51 54 54 04 02 00 0A 00 01 70",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "p"}},
		{Name: "CONNECT B5 empty client id, clean 0", Hex: "10 0C 00 04 4D 51 54 54 04 00 00 0A 00 00",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, KeepAlive: 10}, Ref: "B5"},
		{Name: "CONNECT C5 username +", Hex: "10 15 00 04 4D 51 54 54 04 C2 00 0A 00 01 70 00 01 2B 00 03 74 6F 6B",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "p",
				UsernameFlag: true, Username: "+", PasswordFlag: true, Password: []byte("tok")}, Ref: "C5"},
		{Name: "CONNECT will, username, password", Hex: "10 2A 00 04 4D 51 54 54 04 EE 00 3C 00 02 63 31" +
			" 00 09 2F 67 72 6F 75 70 2F 67 31 00 03 62 79 65 00 05 61 6C 69 63 65 00 03 74 6F 6B",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: "c1",
				WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: "/group/g1", WillPayload: []byte("bye"),
				UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("tok")}},
		{Name: "CONNECT will with empty payload", Hex: "10 12 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 01 74 00 00",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "p",
				WillFlag: true, WillTopic: "t", WillPayload: []byte{}}},
		{Name: "CONNECT 3.1 MQIsdp level 3", Hex: "10 0F 00 06 4D 51 49 73 64 70 03 02 00 0A 00 01 70",
			Want: &Connect{ProtocolName: "MQIsdp", ProtocolLevel: 3, CleanSession: true, KeepAlive: 10, ClientID: "p"}},
		{Name: "CONNECT B4 empty password", Hex: "10 12 00 04 4D 51 54 54 04 C2 00 0A 00 01 70 00 01 75 00 00",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "p",
				UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte{}}, Ref: "B4"},
		{Name: "CONNECT C3 4-byte UTF-8 client id", Hex: "10 10 00 04 4D 51 54 54 04 02 00 0A 00 04 F0 AA 9B 94",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "\U0002A6D4"}, Ref: "C3"},
		{Name: "CONNECT A4 trailing byte", Hex: "10 0E 00 04 4D 51 54 54 04 02 00 0A 00 01 70 00", Err: ErrTrailing, Ref: "A4"},
		{Name: "CONNECT A3 client id past end", Hex: "10 0D 00 04 4D 51 54 54 04 02 00 0A 00 05 70", Err: ErrShort, Ref: "A3"},
		{Name: "CONNECT A3 truncated after name", Hex: "10 06 00 04 4D 51 54 54", Err: ErrShort, Ref: "A3"},
		{Name: "CONNECT A3 no keep alive", Hex: "10 08 00 04 4D 51 54 54 04 02", Err: ErrShort, Ref: "A3"},
		{Name: "CONNECT empty body", Hex: "10 00", Err: ErrShort},
		{Name: "CONNECT header flags", Hex: "11 0D 00 04 4D 51 54 54 04 02 00 0A 00 01 70", Err: ErrFlags, Ref: "A5"},
		{Name: "CONNECT B3 reserved flag", Hex: "10 0D 00 04 4D 51 54 54 04 03 00 0A 00 01 70", Err: ErrConnectFlags, Ref: "B3"},
		{Name: "CONNECT B3 password without username", Hex: "10 10 00 04 4D 51 54 54 04 42 00 0A 00 01 70 00 01 70", Err: ErrConnectFlags, Ref: "B3"},
		{Name: "CONNECT B3 will QoS without will", Hex: "10 0D 00 04 4D 51 54 54 04 0A 00 0A 00 01 70", Err: ErrConnectFlags, Ref: "B3"},
		{Name: "CONNECT B3 will retain without will", Hex: "10 0D 00 04 4D 51 54 54 04 22 00 0A 00 01 70", Err: ErrConnectFlags, Ref: "B3"},
		{Name: "CONNECT B3 will QoS 3", Hex: "10 12 00 04 4D 51 54 54 04 1E 00 0A 00 01 70 00 01 74 00 00", Err: ErrConnectFlags, Ref: "B3"},
		{Name: "CONNECT B3 will flag, no will topic", Hex: "10 0D 00 04 4D 51 54 54 04 06 00 0A 00 01 70", Err: ErrShort, Ref: "B3"},
		{Name: "CONNECT B3 will topic, no will message", Hex: "10 10 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 01 74", Err: ErrShort, Ref: "B3"},
		{Name: "CONNECT B3 username flag, no username", Hex: "10 0D 00 04 4D 51 54 54 04 82 00 0A 00 01 70", Err: ErrShort, Ref: "B3"},
		{Name: "CONNECT B3 protocol level 6", Hex: "10 0D 00 04 4D 51 54 54 06 02 00 0A 00 01 70", Err: ErrUnsupportedLevel, Ref: "B3"},
		{Name: "CONNECT B3 protocol name hj", Hex: "10 0B 00 02 68 6A 04 02 00 0A 00 01 70", Err: ErrProtocolName, Ref: "B3"},
		{Name: "CONNECT protocol name mqtt (case)", Hex: "10 0D 00 04 6D 71 74 74 04 02 00 0A 00 01 70", Err: ErrProtocolName},
		{Name: "CONNECT MQTT level 3", Hex: "10 0D 00 04 4D 51 54 54 03 02 00 0A 00 01 70", Err: ErrUnsupportedLevel},
		{Name: "CONNECT MQIsdp level 4", Hex: "10 0F 00 06 4D 51 49 73 64 70 04 02 00 0A 00 01 70", Err: ErrUnsupportedLevel},
		{Name: "CONNECT B4 username with NUL", Hex: "10 16 00 04 4D 51 54 54 04 82 00 0A 00 01 70 00 07 61 6C 69 63 65 00 78", Err: ErrUTF8, Ref: "B4"},
		{Name: "CONNECT C3 client id U+D800", Hex: "10 0F 00 04 4D 51 54 54 04 02 00 0A 00 03 ED A0 80", Err: ErrUTF8, Ref: "C3"},
		{Name: "CONNECT C3 client id overlong /", Hex: "10 0E 00 04 4D 51 54 54 04 02 00 0A 00 02 C0 AF", Err: ErrUTF8, Ref: "C3"},
		{Name: "CONNECT C3 client id NUL", Hex: "10 0D 00 04 4D 51 54 54 04 02 00 0A 00 01 00", Err: ErrUTF8, Ref: "C3"},
		{Name: "CONNECT D1 will topic with #", Hex: "10 12 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 01 23 00 00", Err: ErrTopicName, Ref: "D1"},
		{Name: "CONNECT D1 empty will topic", Hex: "10 11 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 00 00 00", Err: ErrTopicName, Ref: "D1"},
		{Name: "CONNECT C3 will topic NUL", Hex: "10 12 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 01 00 00 00", Err: ErrUTF8, Ref: "C3"},

		// ---- PUBLISH ----
		{Name: "PUBLISH QoS 0", Hex: "30 0E 00 05 74 6F 70 69 63 70 61 79 6C 6F 61 64",
			Want: &Publish{Topic: []byte("topic"), Payload: []byte("payload")}},
		{Name: "PUBLISH QoS 1", Hex: "32 10 00 05 74 6F 70 69 63 00 01 70 61 79 6C 6F 61 64",
			Want: &Publish{QoS: 1, Topic: []byte("topic"), PacketID: 1, Payload: []byte("payload")}},
		{Name: "PUBLISH QoS 2 dup retain", Hex: "3D 10 00 05 74 6F 70 69 63 FF FE 70 61 79 6C 6F 61 64",
			Want: &Publish{Dup: true, QoS: 2, Retain: true, Topic: []byte("topic"), PacketID: 0xFFFE, Payload: []byte("payload")}},
		{Name: "PUBLISH empty payload retain", Hex: "31 07 00 05 74 6F 70 69 63",
			Want: &Publish{Retain: true, Topic: []byte("topic"), Payload: []byte{}}},
		{Name: "PUBLISH private group topic", Hex: "32 1D 00 17 2F 70 72 69 76 61 74 65 2F 61 6C 69 63 65 2F 67 72 6F 75 70 2F 67 31 00 07 68 69",
			Want: &Publish{QoS: 1, Topic: []byte("/private/alice/group/g1"), PacketID: 7, Payload: []byte("hi")}},
		{Name: "PUBLISH C7 trailing empty level", Hex: "30 0C 00 0A 2F 67 72 6F 75 70 2F 67 31 2F",
			Want: &Publish{Topic: []byte("/group/g1/"), Payload: []byte{}}, Ref: "C7"},
		{Name: "PUBLISH C7 dot-dot is literal", Hex: "30 11 00 0F 2F 67 72 6F 75 70 2F 67 31 2F 2E 2E 2F 67 32",
			Want: &Publish{Topic: []byte("/group/g1/../g2"), Payload: []byte{}}, Ref: "C7"},
		{Name: "PUBLISH C8 $SYS topic decodes", Hex: "30 08 00 06 24 53 59 53 2F 78",
			Want: &Publish{Topic: []byte("$SYS/x"), Payload: []byte{}}, Ref: "C8"},
		{Name: "PUBLISH C4 BOM kept", Hex: "30 08 00 06 EF BB BF 2F 70 31",
			Want: &Publish{Topic: []byte("\uFEFF/p1"), Payload: []byte{}}, Ref: "C4"},
		{Name: "PUBLISH C3 4-byte UTF-8 accepted", Hex: "30 06 00 04 F0 AA 9B 94",
			Want: &Publish{Topic: []byte("\U0002A6D4"), Payload: []byte{}}, Ref: "C3"},
		{Name: "PUBLISH C3 U+FFFF accepted", Hex: "30 05 00 03 EF BF BF",
			Want: &Publish{Topic: []byte("\uFFFF"), Payload: []byte{}}, Ref: "C3"},
		{Name: "PUBLISH C11 topic of MaxLevels levels", Raw: rawPublish(deepTopic(MaxLevels), "x"),
			Want: &Publish{Topic: []byte(deepTopic(MaxLevels)), Payload: []byte("x")}, Ref: "C11"},
		{Name: "PUBLISH C11 topic of MaxLevels+1 levels", Raw: rawPublish(deepTopic(MaxLevels+1), "x"), Err: ErrTopicName, Ref: "C11"},
		{Name: "PUBLISH C11 topic of 32767 slashes", Raw: rawPublish(strings.Repeat("/", 32767), ""), Err: ErrTopicName, Ref: "C11"},
		{Name: "PUBLISH C11 65535-byte topic", Raw: rawPublish(strings.Repeat("t", 65535), ""),
			Want: &Publish{Topic: bytes.Repeat([]byte("t"), 65535), Payload: []byte{}}, Ref: "C11"},
		{Name: "PUBLISH A3 topic length past end", Hex: "30 07 FF FF 41 42 43 44 45", Err: ErrShort, Ref: "A3"},
		{Name: "PUBLISH A3 empty body", Hex: "30 00", Err: ErrShort, Ref: "A3"},
		{Name: "PUBLISH A3 QoS 1 without packet id", Hex: "32 07 00 05 74 6F 70 69 63", Err: ErrShort, Ref: "A3"},
		{Name: "PUBLISH A5 QoS 3", Hex: "36 0E 00 05 74 6F 70 69 63 70 61 79 6C 6F 61 64", Err: ErrQoS, Ref: "A5"},
		{Name: "PUBLISH A5 QoS 0 with DUP", Hex: "38 0E 00 05 74 6F 70 69 63 70 61 79 6C 6F 61 64", Err: ErrFlags, Ref: "A5"},
		{Name: "PUBLISH A7 QoS 1 packet id 0", Hex: "32 10 00 05 74 6F 70 69 63 00 00 70 61 79 6C 6F 61 64", Err: ErrPacketIDZero, Ref: "A7"},
		{Name: "PUBLISH A7 QoS 2 packet id 0", Hex: "34 10 00 05 74 6F 70 69 63 00 00 70 61 79 6C 6F 61 64", Err: ErrPacketIDZero, Ref: "A7"},
		{Name: "PUBLISH C1 /group/+", Hex: "30 0B 00 08 2F 67 72 6F 75 70 2F 2B 78", Err: ErrTopicName, Ref: "C1"},
		{Name: "PUBLISH C1 /group/#", Hex: "30 0A 00 08 2F 67 72 6F 75 70 2F 23", Err: ErrTopicName, Ref: "C1"},
		{Name: "PUBLISH C1 /group/g1/#", Hex: "30 0D 00 0B 2F 67 72 6F 75 70 2F 67 31 2F 23", Err: ErrTopicName, Ref: "C1"},
		{Name: "PUBLISH C1 +", Hex: "30 03 00 01 2B", Err: ErrTopicName, Ref: "C1"},
		{Name: "PUBLISH C1 + inside a level", Hex: "30 04 00 02 61 2B", Err: ErrTopicName, Ref: "C1"},
		{Name: "PUBLISH C2 empty topic", Hex: "30 09 00 00 70 61 79 6C 6F 61 64", Err: ErrTopicName, Ref: "C2"},
		{Name: "PUBLISH C3 NUL in topic", Hex: "30 07 00 05 74 6F 70 00 00", Err: ErrUTF8, Ref: "C3"},
		{Name: "PUBLISH C3 U+D800", Hex: "30 05 00 03 ED A0 80", Err: ErrUTF8, Ref: "C3"},
		{Name: "PUBLISH C3 overlong /", Hex: "30 04 00 02 C0 AF", Err: ErrUTF8, Ref: "C3"},
		{Name: "PUBLISH C3 truncated UTF-8", Hex: "30 04 00 02 61 E2", Err: ErrUTF8, Ref: "C3"},

		// ---- PUBACK, PUBREC, PUBREL, PUBCOMP ----
		{Name: "PUBACK", Hex: "40 02 00 01", Want: TAck{PUBACK, 1}},
		{Name: "PUBREC", Hex: "50 02 01 00", Want: TAck{PUBREC, 256}},
		{Name: "PUBREL", Hex: "62 02 FF FF", Want: TAck{PUBREL, 0xFFFF}},
		{Name: "PUBCOMP", Hex: "70 02 00 07", Want: TAck{PUBCOMP, 7}},
		{Name: "PUBACK A7 id 0", Hex: "40 02 00 00", Err: ErrPacketIDZero, Ref: "A7"},
		{Name: "PUBREC A7 id 0", Hex: "50 02 00 00", Err: ErrPacketIDZero, Ref: "A7"},
		{Name: "PUBREL A7 id 0", Hex: "62 02 00 00", Err: ErrPacketIDZero, Ref: "A7"},
		{Name: "PUBCOMP A7 id 0", Hex: "70 02 00 00", Err: ErrPacketIDZero, Ref: "A7"},
		{Name: "PUBREL A5 flags 0", Hex: "60 02 00 01", Err: ErrFlags, Ref: "A5"},
		{Name: "PUBACK A5 flags 2", Hex: "42 02 00 01", Err: ErrFlags, Ref: "A5"},
		{Name: "PUBCOMP A5 flags 1", Hex: "71 02 00 01", Err: ErrFlags, Ref: "A5"},
		{Name: "PUBACK A4 trailing byte", Hex: "40 03 00 01 00", Err: ErrTrailing, Ref: "A4"},
		{Name: "PUBACK A3 short", Hex: "40 01 00", Err: ErrShort, Ref: "A3"},
		{Name: "PUBREC A3 empty", Hex: "50 00", Err: ErrShort, Ref: "A3"},

		// ---- SUBSCRIBE ----
		{Name: "SUBSCRIBE one filter", Hex: "82 0A 00 01 00 05 74 6F 70 69 63 01",
			Want: &Subscribe{PacketID: 1, Filters: []Subscription{{Filter: "topic", QoS: 1}}}},
		{Name: "SUBSCRIBE two filters", Hex: "82 1B 00 02 00 03 61 2F 2B 00 00 10 2F 70 72 69 76 61 74 65 2F 61 6C 69 63 65 2F 23 02",
			Want: &Subscribe{PacketID: 2, Filters: []Subscription{{Filter: "a/+", QoS: 0}, {Filter: "/private/alice/#", QoS: 2}}}},
		{Name: "SUBSCRIBE C5 /private/+ decodes (ACL refuses)", Hex: "82 0F 00 01 00 0A 2F 70 72 69 76 61 74 65 2F 2B 01",
			Want: &Subscribe{PacketID: 1, Filters: []Subscription{{Filter: "/private/+", QoS: 1}}}, Ref: "C5"},
		{Name: "SUBSCRIBE C9 $share decodes (server decides)", Hex: "82 0F 00 03 00 0A 24 73 68 61 72 65 2F 67 2F 23 00",
			Want: &Subscribe{PacketID: 3, Filters: []Subscription{{Filter: "$share/g/#", QoS: 0}}}, Ref: "C9"},
		{Name: "SUBSCRIBE C11 filter of MaxLevels + levels", Raw: rawSubscribe(strings.Repeat("+/", MaxLevels-1)+"+", 0),
			Want: &Subscribe{PacketID: 1, Filters: []Subscription{{Filter: strings.Repeat("+/", MaxLevels-1) + "+", QoS: 0}}}, Ref: "C11"},
		{Name: "SUBSCRIBE C11 filter of 10000 + levels", Raw: rawSubscribe(strings.Repeat("+/", 9999)+"+", 0), Err: ErrFilter, Ref: "C11"},
		{Name: "SUBSCRIBE A3 no options byte", Hex: "82 09 00 01 00 05 74 6F 70 69 63", Err: ErrShort, Ref: "A3"},
		{Name: "SUBSCRIBE A3 filter length past end", Hex: "82 06 00 01 00 09 74 6F", Err: ErrShort, Ref: "A3"},
		{Name: "SUBSCRIBE A3 no packet id", Hex: "82 01 00", Err: ErrShort, Ref: "A3"},
		{Name: "SUBSCRIBE A4 trailing byte", Hex: "82 0B 00 01 00 05 74 6F 70 69 63 00 00", Err: ErrShort, Ref: "A4"},
		{Name: "SUBSCRIBE A5 flags 0", Hex: "80 0A 00 01 00 05 74 6F 70 69 63 00", Err: ErrFlags, Ref: "A5"},
		{Name: "SUBSCRIBE A5 flags 3", Hex: "83 0A 00 01 00 05 74 6F 70 69 63 00", Err: ErrFlags, Ref: "A5"},
		{Name: "SUBSCRIBE A7 packet id 0", Hex: "82 0A 00 00 00 05 74 6F 70 69 63 00", Err: ErrPacketIDZero, Ref: "A7"},
		{Name: "SUBSCRIBE C10 no filters", Hex: "82 02 00 01", Err: ErrNoFilters, Ref: "C10"},
		{Name: "SUBSCRIBE C10 QoS 3", Hex: "82 0A 00 01 00 05 74 6F 70 69 63 03", Err: ErrQoS, Ref: "C10"},
		{Name: "SUBSCRIBE C10 reserved option bit 2", Hex: "82 0A 00 01 00 05 74 6F 70 69 63 04", Err: ErrSubOptions, Ref: "C10"},
		{Name: "SUBSCRIBE C10 reserved option bit 7", Hex: "82 0A 00 01 00 05 74 6F 70 69 63 80", Err: ErrSubOptions, Ref: "C10"},
		{Name: "SUBSCRIBE C10 a/#/b", Hex: "82 0A 00 01 00 05 61 2F 23 2F 62 00", Err: ErrFilter, Ref: "C10"},
		{Name: "SUBSCRIBE C10 a#", Hex: "82 07 00 01 00 02 61 23 00", Err: ErrFilter, Ref: "C10"},
		{Name: "SUBSCRIBE C10 a+", Hex: "82 07 00 01 00 02 61 2B 00", Err: ErrFilter, Ref: "C10"},
		{Name: "SUBSCRIBE C10 +a", Hex: "82 07 00 01 00 02 2B 61 00", Err: ErrFilter, Ref: "C10"},
		{Name: "SUBSCRIBE C10 empty filter", Hex: "82 05 00 01 00 00 00", Err: ErrFilter, Ref: "C10"},
		{Name: "SUBSCRIBE C10 NUL in filter", Hex: "82 07 00 01 00 02 61 00 00", Err: ErrUTF8, Ref: "C10"},
		{Name: "SUBSCRIBE C3 U+D800 in filter", Hex: "82 08 00 01 00 03 ED A0 80 00", Err: ErrUTF8, Ref: "C3"},
		{Name: "SUBSCRIBE second filter bad", Hex: "82 0C 00 01 00 01 61 00 00 03 61 2F 23 03", Err: ErrQoS},

		// ---- UNSUBSCRIBE ----
		{Name: "UNSUBSCRIBE one filter", Hex: "A2 09 00 01 00 05 74 6F 70 69 63",
			Want: &Unsubscribe{PacketID: 1, Filters: []string{"topic"}}},
		{Name: "UNSUBSCRIBE two filters", Hex: "A2 0C 00 05 00 01 23 00 05 2F 61 2F 2B 2F",
			Want: &Unsubscribe{PacketID: 5, Filters: []string{"#", "/a/+/"}}},
		{Name: "UNSUBSCRIBE A5 flags 0", Hex: "A0 09 00 01 00 05 74 6F 70 69 63", Err: ErrFlags, Ref: "A5"},
		{Name: "UNSUBSCRIBE A7 packet id 0", Hex: "A2 09 00 00 00 05 74 6F 70 69 63", Err: ErrPacketIDZero, Ref: "A7"},
		{Name: "UNSUBSCRIBE no filters", Hex: "A2 02 00 01", Err: ErrNoFilters, Ref: "C10"},
		{Name: "UNSUBSCRIBE A3 filter past end", Hex: "A2 05 00 01 00 05 74", Err: ErrShort, Ref: "A3"},
		{Name: "UNSUBSCRIBE A4 trailing byte", Hex: "A2 0A 00 01 00 05 74 6F 70 69 63 00", Err: ErrShort, Ref: "A4"},
		{Name: "UNSUBSCRIBE C10 a#b", Hex: "A2 07 00 01 00 03 61 23 62", Err: ErrFilter, Ref: "C10"},
		{Name: "UNSUBSCRIBE C10 empty filter", Hex: "A2 04 00 01 00 00", Err: ErrFilter, Ref: "C10"},

		// ---- PINGREQ, DISCONNECT ----
		{Name: "PINGREQ", Hex: "C0 00", Want: TEmpty{PINGREQ}},
		{Name: "DISCONNECT", Hex: "E0 00", Want: TEmpty{DISCONNECT}},
		{Name: "PINGREQ A4 trailing byte", Hex: "C0 01 00", Err: ErrTrailing, Ref: "A4"},
		{Name: "DISCONNECT A4 trailing byte", Hex: "E0 01 00", Err: ErrTrailing, Ref: "A4"},
		{Name: "PINGREQ A5 flags", Hex: "C1 00", Err: ErrFlags, Ref: "A5"},
		{Name: "DISCONNECT A5 flags", Hex: "E2 00", Err: ErrFlags, Ref: "A5"},

		{Name: "PUBACK on a level 9 connection", Hex: "40 02 00 01", Level: 9, Err: ErrUnsupportedLevel},

		// ---- MQTT 5.0: CONNECT ----
		{Name: "CONNECT 5.0 minimal", Hex: "10 0E 00 04 4D 51 54 54 05 02 00 0A 00 00 01 70",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 5, CleanSession: true, KeepAlive: 10, ClientID: "p"}},
		{Name: "CONNECT 5.0 specification example (Figure 3-6)",
			Hex: "10 20 00 04 4D 51 54 54 05 CE 00 0A 05 11 00 00 00 0A 00 01 63 00 00 01 77 00 01 78 00 01 75 00 01 70",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 5, CleanSession: true, KeepAlive: 10, ClientID: "c",
				WillFlag: true, WillQoS: 1, WillTopic: "w", WillPayload: []byte("x"),
				UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("p"),
				Props: Properties{Has: 1 << PropSessionExpiry, SessionExpiry: 10}}},
		{Name: "CONNECT 5.0 properties",
			Hex: "10 2C 00 04 4D 51 54 54 05 C2 00 3C 17 11 00 00 0E 10 21 00 14 22 00 0A 27 00 00 10 00 26 00 01 6B 00 01 76 00 01 70 00 01 75 00 02 70 77",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 5, CleanSession: true, KeepAlive: 60, ClientID: "p",
				UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte("pw"),
				Props: Properties{Has: 1<<PropSessionExpiry | 1<<PropReceiveMaximum | 1<<PropTopicAliasMaximum | 1<<PropMaximumPacketSize,
					SessionExpiry: 3600, ReceiveMaximum: 20, TopicAliasMaximum: 10, MaximumPacketSize: 4096,
					User: []UserProperty{{"k", "v"}}}}},
		{Name: "CONNECT 5.0 will properties",
			Hex: "10 23 00 04 4D 51 54 54 05 0E 00 0A 00 00 01 70 0C 01 01 02 00 00 00 3C 18 00 00 00 05 00 01 77 00 03 62 79 65",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 5, CleanSession: true, KeepAlive: 10, ClientID: "p",
				WillFlag: true, WillQoS: 1, WillTopic: "w", WillPayload: []byte("bye"),
				WillProps: Properties{Has: 1<<PropPayloadFormat | 1<<PropMessageExpiry | 1<<PropWillDelay,
					PayloadFormat: 1, MessageExpiry: 60, WillDelay: 5}}},
		{Name: "CONNECT 5.0 password without username", Hex: "10 13 00 04 4D 51 54 54 05 42 00 0A 00 00 01 70 00 03 74 6F 6B",
			Want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 5, CleanSession: true, KeepAlive: 10, ClientID: "p", PasswordFlag: true, Password: []byte("tok")}},
		{Name: "CONNECT F1 5.0 unknown property", Hex: "10 10 00 04 4D 51 54 54 05 02 00 0A 02 7F 00 00 01 70", Err: ErrPropertyID, Ref: "F1"},
		{Name: "CONNECT F1 5.0 topic alias property", Hex: "10 11 00 04 4D 51 54 54 05 02 00 0A 03 23 00 01 00 01 70", Err: ErrPropertyID, Ref: "F1"},
		{Name: "CONNECT F1 5.0 topic alias 0 property", Hex: "10 11 00 04 4D 51 54 54 05 02 00 0A 03 23 00 00 00 01 70", Err: ErrPropertyID, Ref: "F1"},
		{Name: "CONNECT F1 5.0 session expiry twice", Hex: "10 18 00 04 4D 51 54 54 05 02 00 0A 0A 11 00 00 00 01 11 00 00 00 02 00 01 70", Err: ErrPropertyDup, Ref: "F1"},
		{Name: "CONNECT F1 5.0 receive maximum 0", Hex: "10 11 00 04 4D 51 54 54 05 02 00 0A 03 21 00 00 00 01 70", Err: ErrPropertyValue, Ref: "F1"},
		{Name: "CONNECT F1 5.0 maximum packet size 0", Hex: "10 13 00 04 4D 51 54 54 05 02 00 0A 05 27 00 00 00 00 00 01 70", Err: ErrPropertyValue, Ref: "F1"},
		{Name: "CONNECT F1 5.0 request problem information 2", Hex: "10 10 00 04 4D 51 54 54 05 02 00 0A 02 17 02 00 01 70", Err: ErrPropertyValue, Ref: "F1"},
		{Name: "CONNECT F1 5.0 property length past end", Hex: "10 0E 00 04 4D 51 54 54 05 02 00 0A 20 00 01 70", Err: ErrShort, Ref: "F1"},
		{Name: "CONNECT F1 5.0 padded property length", Hex: "10 0F 00 04 4D 51 54 54 05 02 00 0A 80 00 00 01 70", Err: ErrVarint, Ref: "F1"},
		{Name: "CONNECT F1 5.0 truncated property", Hex: "10 11 00 04 4D 51 54 54 05 02 00 0A 03 11 00 00 00 01 70", Err: ErrShort, Ref: "F1"},
		{Name: "CONNECT F1 5.0 user property not UTF-8", Hex: "10 16 00 04 4D 51 54 54 05 02 00 0A 08 26 00 02 C0 AF 00 01 76 00 01 70", Err: ErrUTF8, Ref: "F1"},
		{Name: "CONNECT F1 5.0 will topic alias", Hex: "10 18 00 04 4D 51 54 54 05 0E 00 0A 00 00 01 70 03 23 00 01 00 01 77 00 01 78", Err: ErrPropertyID, Ref: "F1"},
		{Name: "CONNECT F5 5.0 UTF-8 will that is not", Hex: "10 17 00 04 4D 51 54 54 05 0E 00 0A 00 00 01 70 02 01 01 00 01 77 00 01 FF", Err: ErrPayloadFormat, Ref: "F5"},

		// ---- MQTT 5.0: PUBLISH ----
		{Name: "PUBLISH 5.0 QoS 0", Hex: "30 0F 00 05 74 6F 70 69 63 00 70 61 79 6C 6F 61 64", Level: V5,
			Want: &Publish{Topic: []byte("topic"), Props: []byte{}, Payload: []byte("payload")}},
		{Name: "PUBLISH 5.0 QoS 1 properties", Level: V5,
			Hex: "32 33 00 05 74 6F 70 69 63 00 01 27 01 01 02 00 00 00 3C 03 00 04 74 65 78 74 08 00 03 72 2F 31 09 00 02 01 02 26 00 01 61 00 01 62 26 00 01 61 00 01 63 68 69",
			Want: &Publish{QoS: 1, Topic: []byte("topic"), PacketID: 1, HasExpiry: true, Expiry: 60, Payload: []byte("hi"),
				Props: hexBytes("01 01 02 00 00 00 3C 03 00 04 74 65 78 74 08 00 03 72 2F 31 09 00 02 01 02 26 00 01 61 00 01 62 26 00 01 61 00 01 63")}},
		{Name: "PUBLISH F2 5.0 topic alias with topic", Hex: "30 0C 00 05 74 6F 70 69 63 03 23 00 01 78", Level: V5,
			Want: &Publish{Topic: []byte("topic"), TopicAlias: 1, Props: hexBytes("23 00 01"), Payload: []byte("x")}, Ref: "F2"},
		{Name: "PUBLISH F2 5.0 topic alias only", Hex: "30 07 00 00 03 23 00 01 78", Level: V5,
			Want: &Publish{Topic: []byte{}, TopicAlias: 1, Props: hexBytes("23 00 01"), Payload: []byte("x")}, Ref: "F2"},
		{Name: "PUBLISH F2 5.0 topic alias 0", Hex: "30 0C 00 05 74 6F 70 69 63 03 23 00 00 78", Level: V5, Err: ErrTopicAlias, Ref: "F2"},
		{Name: "PUBLISH F2 5.0 empty topic without alias", Hex: "30 04 00 00 00 78", Level: V5, Err: ErrNoTopic, Ref: "F2"},
		{Name: "PUBLISH F1 5.0 subscription identifier from a client", Hex: "30 0B 00 05 74 6F 70 69 63 02 0B 01 78", Level: V5, Err: ErrPropertyID, Ref: "F1"},
		{Name: "PUBLISH F1 5.0 message expiry twice", Hex: "30 13 00 05 74 6F 70 69 63 0A 02 00 00 00 01 02 00 00 00 01 78", Level: V5, Err: ErrPropertyDup, Ref: "F1"},
		{Name: "PUBLISH F1 5.0 payload format 2", Hex: "30 0B 00 05 74 6F 70 69 63 02 01 02 78", Level: V5, Err: ErrPropertyValue, Ref: "F1"},
		{Name: "PUBLISH F1 5.0 response topic with wildcard", Hex: "30 0F 00 05 74 6F 70 69 63 06 08 00 03 72 2F 23 78", Level: V5, Err: ErrResponseTopic, Ref: "F1"},
		{Name: "PUBLISH F1 5.0 session expiry property", Hex: "30 0E 00 05 74 6F 70 69 63 05 11 00 00 00 01 78", Level: V5, Err: ErrPropertyID, Ref: "F1"},
		{Name: "PUBLISH F1 5.0 properties past end", Hex: "30 09 00 05 74 6F 70 69 63 10 02", Level: V5, Err: ErrShort, Ref: "F1"},
		{Name: "PUBLISH F1 5.0 identifier 0x80", Hex: "30 0B 00 05 74 6F 70 69 63 02 80 01 78", Level: V5, Err: ErrPropertyID, Ref: "F1"},
		{Name: "PUBLISH F5 5.0 UTF-8 payload that is not", Hex: "30 0B 00 05 74 6F 70 69 63 02 01 01 FF", Level: V5, Err: ErrPayloadFormat, Ref: "F5"},

		// ---- MQTT 5.0: acks ----
		{Name: "PUBACK 5.0 short form", Hex: "40 02 00 01", Level: V5, Want: TAck5{PUBACK, 1, CodeSuccess}},
		{Name: "PUBACK F3 5.0 code", Hex: "40 03 00 01 10", Level: V5, Want: TAck5{PUBACK, 1, CodeNoMatchingSubscribers}, Ref: "F3"},
		{Name: "PUBACK F3 5.0 reason string", Hex: "40 0A 00 01 87 06 1F 00 03 62 61 64", Level: V5, Want: TAck5{PUBACK, 1, CodeNotAuthorized}, NoEnc: true, Ref: "F3"},
		{Name: "PUBACK 5.0 empty properties", Hex: "40 04 00 01 00 00", Level: V5, Want: TAck5{PUBACK, 1, CodeSuccess}, NoEnc: true},
		{Name: "PUBREL 5.0 packet identifier not found", Hex: "62 03 00 01 92", Level: V5, Want: TAck5{PUBREL, 1, CodePacketIDNotFound}},
		{Name: "PUBACK F3 5.0 session taken over", Hex: "40 03 00 01 8E", Level: V5, Err: ErrReasonCode, Ref: "F3"},
		{Name: "PUBREL F3 5.0 code 0x10", Hex: "62 03 00 01 10", Level: V5, Err: ErrReasonCode, Ref: "F3"},
		{Name: "PUBACK F1 5.0 message expiry property", Hex: "40 09 00 01 00 05 02 00 00 00 01", Level: V5, Err: ErrPropertyID, Ref: "F1"},
		{Name: "PUBACK A4 5.0 trailing after properties", Hex: "40 05 00 01 00 00 00", Level: V5, Err: ErrTrailing, Ref: "A4"},

		// ---- MQTT 5.0: SUBSCRIBE, UNSUBSCRIBE ----
		{Name: "SUBSCRIBE F4 5.0 options", Hex: "82 0B 00 01 00 00 05 74 6F 70 69 63 2D", Level: V5,
			Want: &Subscribe{PacketID: 1, Filters: []Subscription{{Filter: "topic", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}}, Ref: "F4"},
		{Name: "SUBSCRIBE 5.0 subscription identifier", Hex: "82 0B 00 02 02 0B 05 00 03 61 2F 2B 01", Level: V5,
			Want: &Subscribe{PacketID: 2, Filters: []Subscription{{Filter: "a/+", QoS: 1}}, Props: Properties{Has: 1 << PropSubscriptionID, SubscriptionID: 5}}},
		{Name: "SUBSCRIBE F4 5.0 retain handling 3", Hex: "82 0B 00 01 00 00 05 74 6F 70 69 63 30", Level: V5, Err: ErrRetainHandling, Ref: "F4"},
		{Name: "SUBSCRIBE F4 5.0 reserved option bit 6", Hex: "82 0B 00 01 00 00 05 74 6F 70 69 63 40", Level: V5, Err: ErrSubOptions, Ref: "F4"},
		{Name: "SUBSCRIBE F4 5.0 no local on $share", Hex: "82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 74 04", Level: V5, Err: ErrSharedNoLocal, Ref: "F4"},
		{Name: "SUBSCRIBE F1 5.0 subscription identifier 0", Hex: "82 0D 00 01 02 0B 00 00 05 74 6F 70 69 63 00", Level: V5, Err: ErrPropertyValue, Ref: "F1"},
		{Name: "SUBSCRIBE F1 5.0 two subscription identifiers", Hex: "82 0F 00 01 04 0B 01 0B 02 00 05 74 6F 70 69 63 00", Level: V5, Err: ErrPropertyDup, Ref: "F1"},
		{Name: "SUBSCRIBE F1 5.0 padded subscription identifier", Hex: "82 0E 00 01 03 0B 81 00 00 05 74 6F 70 69 63 00", Level: V5, Err: ErrVarint, Ref: "F1"},
		{Name: "SUBSCRIBE C10 5.0 properties, no filters", Hex: "82 03 00 01 00", Level: V5, Err: ErrNoFilters, Ref: "C10"},
		{Name: "UNSUBSCRIBE 5.0 user property", Hex: "A2 11 00 03 07 26 00 01 6B 00 01 76 00 05 74 6F 70 69 63", Level: V5,
			Want: &Unsubscribe{PacketID: 3, Filters: []string{"topic"}, Props: Properties{User: []UserProperty{{"k", "v"}}}}},
		{Name: "UNSUBSCRIBE F1 5.0 subscription identifier", Hex: "A2 0C 00 03 02 0B 01 00 05 74 6F 70 69 63", Level: V5, Err: ErrPropertyID, Ref: "F1"},

		// ---- MQTT 5.0: PINGREQ, DISCONNECT ----
		{Name: "PINGREQ 5.0", Hex: "C0 00", Level: V5, Want: TEmpty{PINGREQ}},
		{Name: "DISCONNECT 5.0 short form", Hex: "E0 00", Level: V5, Want: &Disconnect{}},
		{Name: "DISCONNECT 5.0 with will", Hex: "E0 01 04", Level: V5, Want: &Disconnect{Code: CodeDisconnectWithWill}},
		{Name: "DISCONNECT 5.0 session expiry", Hex: "E0 07 00 05 11 00 00 00 00", Level: V5,
			Want: &Disconnect{Props: Properties{Has: 1 << PropSessionExpiry}}},
		{Name: "DISCONNECT F3 5.0 code 0x03", Hex: "E0 01 03", Level: V5, Err: ErrReasonCode, Ref: "F3"},
		{Name: "DISCONNECT F1 5.0 topic alias property", Hex: "E0 05 00 03 23 00 01", Level: V5, Err: ErrPropertyID, Ref: "F1"},

		// ---- MQTT 5.0: sent by the server ----
		{Name: "CONNACK 5.0 properties", Level: V5, Server: true,
			Hex: "20 1D 00 00 1A 12 00 02 63 31 21 00 64 22 00 0A 24 01 25 00 27 00 10 00 00 28 01 29 00 2A 00",
			Want: TConnack5{false, CodeSuccess, Properties{
				Has: 1<<PropAssignedClientID | 1<<PropReceiveMaximum | 1<<PropTopicAliasMaximum | 1<<PropMaximumQoS | 1<<PropRetainAvailable |
					1<<PropMaximumPacketSize | 1<<PropWildcardSubAvailable | 1<<PropSubIDAvailable | 1<<PropSharedSubAvailable,
				AssignedClientID: "c1", ReceiveMaximum: 100, TopicAliasMaximum: 10, MaximumQoS: 1, MaximumPacketSize: 1 << 20, WildcardSubAvailable: 1}}},
		{Name: "CONNACK 5.0 use another server", Level: V5, Server: true,
			Hex:  "20 14 00 9C 11 1C 00 0E 31 32 37 2E 30 2E 30 2E 32 3A 31 38 38 33",
			Want: TConnack5{false, CodeUseAnotherServer, Properties{Has: 1 << PropServerReference, ServerReference: "127.0.0.2:1883"}}},
		{Name: "SUBACK 5.0 granted and not authorized", Hex: "90 05 00 01 00 01 87", Level: V5, Server: true, Want: TSuback{1, []byte{1, CodeNotAuthorized}}},
		{Name: "SUBACK 5.0 reason string", Hex: "90 09 00 01 05 1F 00 02 6E 6F 87", Level: V5, Server: true, Want: TSuback{1, []byte{CodeNotAuthorized}}, NoEnc: true},
		{Name: "UNSUBACK 5.0", Hex: "B0 05 00 01 00 00 11", Level: V5, Server: true, Want: TUnsuback5{1, []byte{0, CodeNoSubscriptionExisted}}},
		{Name: "DISCONNECT 5.0 session taken over", Hex: "E0 01 8E", Level: V5, Server: true, Want: &Disconnect{Code: CodeSessionTakenOver}},
		{Name: "DISCONNECT 5.0 use another server", Level: V5, Server: true,
			Hex:  "E0 13 9C 11 1C 00 0E 31 32 37 2E 30 2E 30 2E 32 3A 31 38 38 33",
			Want: &Disconnect{Code: CodeUseAnotherServer, Props: Properties{Has: 1 << PropServerReference, ServerReference: "127.0.0.2:1883"}}},
		{Name: "PUBLISH 5.0 from the server", Level: V5, Server: true,
			Hex: "32 21 00 0E 2F 70 72 69 76 61 74 65 2F 61 6C 69 63 65 00 07 0C 02 00 00 00 1E 26 00 01 6B 00 01 76 68 69",
			Want: &Publish{QoS: 1, Topic: []byte("/private/alice"), PacketID: 7, HasExpiry: true, Expiry: 30,
				Props: hexBytes("02 00 00 00 1E 26 00 01 6B 00 01 76"), Payload: []byte("hi")}},

		// ---- Sent by the server ----
		{Name: "CONNACK accepted", Hex: "20 02 00 00", Server: true, Want: TConnack{false, ConnAccepted}},
		{Name: "CONNACK session present", Hex: "20 02 01 00", Server: true, Want: TConnack{true, ConnAccepted}},
		{Name: "CONNACK B3 bad protocol", Hex: "20 02 00 01", Server: true, Want: TConnack{false, ConnBadProtocol}, Ref: "B3"},
		{Name: "CONNACK B5 identifier rejected", Hex: "20 02 00 02", Server: true, Want: TConnack{false, ConnIDRejected}, Ref: "B5"},
		{Name: "CONNACK not authorized", Hex: "20 02 00 05", Server: true, Want: TConnack{false, ConnNotAuthorized}},
		{Name: "CONNACK reserved ack flag", Hex: "20 02 02 00", Server: true, Err: ErrFlags},
		{Name: "CONNACK trailing byte", Hex: "20 03 00 00 00", Server: true, Err: ErrTrailing},
		{Name: "SUBACK one", Hex: "90 03 00 01 01", Server: true, Want: TSuback{1, []byte{1}}},
		{Name: "SUBACK C6 granted and failed", Hex: "90 05 00 02 00 80 02", Server: true, Want: TSuback{2, []byte{0, SubackFailure, 2}}, Ref: "C6"},
		{Name: "SUBACK bad code", Hex: "90 03 00 01 03", Server: true, Err: ErrQoS},
		{Name: "UNSUBACK", Hex: "B0 02 00 09", Server: true, Want: TUnsuback{9}},
		{Name: "PINGRESP", Hex: "D0 00", Server: true, Want: TEmpty{PINGRESP}},
	}
})
