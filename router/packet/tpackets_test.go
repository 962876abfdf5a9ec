package packet

import (
	"bytes"
	"encoding/hex"
	"strings"
)

// The expected-bytes table (STYLE.md §6, after mochi-mqtt packets/tpackets.go).
// Each entry is one whole packet, fixed header included. Valid entries give
// the decoded value, and the encoders must write exactly these bytes back
// (unless noEnc); bad entries give the sentinel error the Reader or decoder
// must return. Decode, encode, round-trip and Reader tests and the fuzz seed
// corpora all read this table; the server's tests may reuse it too.
//
// ref names the BAD_INPUTS.md entry a packet comes from; the hex is copied
// from there where it gives one.

// Decoded forms of the packets that have no struct of their own.
type (
	tAck struct {
		typ byte
		id  uint16
	} // PUBACK, PUBREC, PUBREL, PUBCOMP
	tEmpty   struct{ typ byte } // PINGREQ, DISCONNECT, PINGRESP
	tConnack struct {
		sp   bool
		code byte
	}
	tSuback struct {
		id    uint16
		codes []byte
	}
	tUnsuback struct{ id uint16 }
)

type tpacket struct {
	name   string
	hex    string // whole packet; spaces ignored
	raw    []byte // instead of hex, for generated packets
	level  byte   // protocol level to decode with; 0 means V311
	server bool   // sent by the server (decoded with the client-side decoders)
	want   any    // *Connect, *Publish, *Subscribe, *Unsubscribe, tAck, tEmpty, tConnack, tSuback, tUnsuback
	err    *Error // expected error; nil means want
	noEnc  bool   // valid, but the encoder writes other bytes for want
	ref    string // BAD_INPUTS.md entry
}

func (tp *tpacket) bytes() []byte {
	if tp.raw != nil {
		return tp.raw
	}
	b, err := hex.DecodeString(strings.ReplaceAll(tp.hex, " ", ""))
	if err != nil {
		panic(tp.name + ": " + err.Error())
	}
	return b
}

func (tp *tpacket) lvl() byte {
	if tp.level == 0 {
		return V311
	}
	return tp.level
}

// tMaxSize is the Reader limit the table is decoded with.
const tMaxSize = 1 << 17

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

var tpackets = []tpacket{
	// ---- Framing (Reader) ----
	{name: "A1 remaining length in 5 bytes", hex: "30 80 80 80 80 01", err: ErrRemainingLength, ref: "A1"},
	{name: "remaining length not minimal", hex: "30 80 00", err: ErrRemainingLength},
	{name: "A2 huge declared CONNECT, no body", hex: "10 FF FF FF 7F", err: ErrTooLarge, ref: "A2"},
	{name: "A2 huge declared PUBLISH, some junk", hex: "30 80 80 80 74 00 00 00 00", err: ErrTooLarge, ref: "A2"},
	{name: "body just over the limit", raw: rawPublish("t", strings.Repeat("x", tMaxSize-3+1)), err: ErrTooLarge, ref: "E5"},
	{name: "body exactly at the limit", raw: rawPublish("t", strings.Repeat("x", tMaxSize-3)),
		want: &Publish{Topic: []byte("t"), Payload: []byte(strings.Repeat("x", tMaxSize-3))}},

	// ---- Packet types a client may not send (A6) ----
	{name: "A6 reserved type 0", hex: "00 00", err: ErrPacketType, ref: "A6"},
	{name: "A6 AUTH from a 3.1.1 client", hex: "F0 00", err: ErrPacketType, ref: "A6"},
	{name: "A6 CONNACK from a client", hex: "20 02 00 00", err: ErrPacketType, ref: "A6"},
	{name: "A6 SUBACK from a client", hex: "90 03 00 01 00", err: ErrPacketType, ref: "A6"},
	{name: "A6 UNSUBACK from a client", hex: "B0 02 00 01", err: ErrPacketType, ref: "A6"},
	{name: "A6 PINGRESP from a client", hex: "D0 00", err: ErrPacketType, ref: "A6"},

	// ---- CONNECT ----
	{name: "CONNECT minimal", hex: "10 0D 00 04 4D 51 54 54 04 02 00 0A 00 01 70",
		want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "p"}},
	{name: "CONNECT B5 empty client id, clean 0", hex: "10 0C 00 04 4D 51 54 54 04 00 00 0A 00 00",
		want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, KeepAlive: 10}, ref: "B5"},
	{name: "CONNECT C5 username +", hex: "10 15 00 04 4D 51 54 54 04 C2 00 0A 00 01 70 00 01 2B 00 03 74 6F 6B",
		want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "p",
			UsernameFlag: true, Username: "+", PasswordFlag: true, Password: []byte("tok")}, ref: "C5"},
	{name: "CONNECT will, username, password", hex: "10 2A 00 04 4D 51 54 54 04 EE 00 3C 00 02 63 31" +
		" 00 09 2F 67 72 6F 75 70 2F 67 31 00 03 62 79 65 00 05 61 6C 69 63 65 00 03 74 6F 6B",
		want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 60, ClientID: "c1",
			WillFlag: true, WillQoS: 1, WillRetain: true, WillTopic: "/group/g1", WillPayload: []byte("bye"),
			UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("tok")}},
	{name: "CONNECT will with empty payload", hex: "10 12 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 01 74 00 00",
		want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "p",
			WillFlag: true, WillTopic: "t", WillPayload: []byte{}}},
	{name: "CONNECT 3.1 MQIsdp level 3", hex: "10 0F 00 06 4D 51 49 73 64 70 03 02 00 0A 00 01 70",
		want: &Connect{ProtocolName: "MQIsdp", ProtocolLevel: 3, CleanSession: true, KeepAlive: 10, ClientID: "p"}},
	{name: "CONNECT B4 empty password", hex: "10 12 00 04 4D 51 54 54 04 C2 00 0A 00 01 70 00 01 75 00 00",
		want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "p",
			UsernameFlag: true, Username: "u", PasswordFlag: true, Password: []byte{}}, ref: "B4"},
	{name: "CONNECT C3 4-byte UTF-8 client id", hex: "10 10 00 04 4D 51 54 54 04 02 00 0A 00 04 F0 AA 9B 94",
		want: &Connect{ProtocolName: "MQTT", ProtocolLevel: 4, CleanSession: true, KeepAlive: 10, ClientID: "\U0002A6D4"}, ref: "C3"},
	{name: "CONNECT A4 trailing byte", hex: "10 0E 00 04 4D 51 54 54 04 02 00 0A 00 01 70 00", err: ErrTrailing, ref: "A4"},
	{name: "CONNECT A3 client id past end", hex: "10 0D 00 04 4D 51 54 54 04 02 00 0A 00 05 70", err: ErrShort, ref: "A3"},
	{name: "CONNECT A3 truncated after name", hex: "10 06 00 04 4D 51 54 54", err: ErrShort, ref: "A3"},
	{name: "CONNECT A3 no keep alive", hex: "10 08 00 04 4D 51 54 54 04 02", err: ErrShort, ref: "A3"},
	{name: "CONNECT empty body", hex: "10 00", err: ErrShort},
	{name: "CONNECT header flags", hex: "11 0D 00 04 4D 51 54 54 04 02 00 0A 00 01 70", err: ErrFlags, ref: "A5"},
	{name: "CONNECT B3 reserved flag", hex: "10 0D 00 04 4D 51 54 54 04 03 00 0A 00 01 70", err: ErrConnectFlags, ref: "B3"},
	{name: "CONNECT B3 password without username", hex: "10 10 00 04 4D 51 54 54 04 42 00 0A 00 01 70 00 01 70", err: ErrConnectFlags, ref: "B3"},
	{name: "CONNECT B3 will QoS without will", hex: "10 0D 00 04 4D 51 54 54 04 0A 00 0A 00 01 70", err: ErrConnectFlags, ref: "B3"},
	{name: "CONNECT B3 will retain without will", hex: "10 0D 00 04 4D 51 54 54 04 22 00 0A 00 01 70", err: ErrConnectFlags, ref: "B3"},
	{name: "CONNECT B3 will QoS 3", hex: "10 12 00 04 4D 51 54 54 04 1E 00 0A 00 01 70 00 01 74 00 00", err: ErrConnectFlags, ref: "B3"},
	{name: "CONNECT B3 will flag, no will topic", hex: "10 0D 00 04 4D 51 54 54 04 06 00 0A 00 01 70", err: ErrShort, ref: "B3"},
	{name: "CONNECT B3 will topic, no will message", hex: "10 10 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 01 74", err: ErrShort, ref: "B3"},
	{name: "CONNECT B3 username flag, no username", hex: "10 0D 00 04 4D 51 54 54 04 82 00 0A 00 01 70", err: ErrShort, ref: "B3"},
	{name: "CONNECT B3 protocol level 6", hex: "10 0D 00 04 4D 51 54 54 06 02 00 0A 00 01 70", err: ErrUnsupportedLevel, ref: "B3"},
	{name: "CONNECT B3 protocol name hj", hex: "10 0B 00 02 68 6A 04 02 00 0A 00 01 70", err: ErrProtocolName, ref: "B3"},
	{name: "CONNECT protocol name mqtt (case)", hex: "10 0D 00 04 6D 71 74 74 04 02 00 0A 00 01 70", err: ErrProtocolName},
	{name: "CONNECT MQTT level 3", hex: "10 0D 00 04 4D 51 54 54 03 02 00 0A 00 01 70", err: ErrUnsupportedLevel},
	{name: "CONNECT MQIsdp level 4", hex: "10 0F 00 06 4D 51 49 73 64 70 04 02 00 0A 00 01 70", err: ErrUnsupportedLevel},
	{name: "CONNECT level 5 (not yet)", hex: "10 0E 00 04 4D 51 54 54 05 02 00 0A 00 00 01 70", err: ErrV5NotSupported},
	{name: "CONNECT B4 username with NUL", hex: "10 16 00 04 4D 51 54 54 04 82 00 0A 00 01 70 00 07 61 6C 69 63 65 00 78", err: ErrUTF8, ref: "B4"},
	{name: "CONNECT C3 client id U+D800", hex: "10 0F 00 04 4D 51 54 54 04 02 00 0A 00 03 ED A0 80", err: ErrUTF8, ref: "C3"},
	{name: "CONNECT C3 client id overlong /", hex: "10 0E 00 04 4D 51 54 54 04 02 00 0A 00 02 C0 AF", err: ErrUTF8, ref: "C3"},
	{name: "CONNECT C3 client id NUL", hex: "10 0D 00 04 4D 51 54 54 04 02 00 0A 00 01 00", err: ErrUTF8, ref: "C3"},
	{name: "CONNECT D1 will topic with #", hex: "10 12 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 01 23 00 00", err: ErrTopicName, ref: "D1"},
	{name: "CONNECT D1 empty will topic", hex: "10 11 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 00 00 00", err: ErrTopicName, ref: "D1"},
	{name: "CONNECT C3 will topic NUL", hex: "10 12 00 04 4D 51 54 54 04 06 00 0A 00 01 70 00 01 00 00 00", err: ErrUTF8, ref: "C3"},

	// ---- PUBLISH ----
	{name: "PUBLISH QoS 0", hex: "30 0E 00 05 74 6F 70 69 63 70 61 79 6C 6F 61 64",
		want: &Publish{Topic: []byte("topic"), Payload: []byte("payload")}},
	{name: "PUBLISH QoS 1", hex: "32 10 00 05 74 6F 70 69 63 00 01 70 61 79 6C 6F 61 64",
		want: &Publish{QoS: 1, Topic: []byte("topic"), PacketID: 1, Payload: []byte("payload")}},
	{name: "PUBLISH QoS 2 dup retain", hex: "3D 10 00 05 74 6F 70 69 63 FF FE 70 61 79 6C 6F 61 64",
		want: &Publish{Dup: true, QoS: 2, Retain: true, Topic: []byte("topic"), PacketID: 0xFFFE, Payload: []byte("payload")}},
	{name: "PUBLISH empty payload retain", hex: "31 07 00 05 74 6F 70 69 63",
		want: &Publish{Retain: true, Topic: []byte("topic"), Payload: []byte{}}},
	{name: "PUBLISH private group topic", hex: "32 1D 00 17 2F 70 72 69 76 61 74 65 2F 61 6C 69 63 65 2F 67 72 6F 75 70 2F 67 31 00 07 68 69",
		want: &Publish{QoS: 1, Topic: []byte("/private/alice/group/g1"), PacketID: 7, Payload: []byte("hi")}},
	{name: "PUBLISH C7 trailing empty level", hex: "30 0C 00 0A 2F 67 72 6F 75 70 2F 67 31 2F",
		want: &Publish{Topic: []byte("/group/g1/"), Payload: []byte{}}, ref: "C7"},
	{name: "PUBLISH C7 dot-dot is literal", hex: "30 11 00 0F 2F 67 72 6F 75 70 2F 67 31 2F 2E 2E 2F 67 32",
		want: &Publish{Topic: []byte("/group/g1/../g2"), Payload: []byte{}}, ref: "C7"},
	{name: "PUBLISH C8 $SYS topic decodes", hex: "30 08 00 06 24 53 59 53 2F 78",
		want: &Publish{Topic: []byte("$SYS/x"), Payload: []byte{}}, ref: "C8"},
	{name: "PUBLISH C4 BOM kept", hex: "30 08 00 06 EF BB BF 2F 70 31",
		want: &Publish{Topic: []byte("\uFEFF/p1"), Payload: []byte{}}, ref: "C4"},
	{name: "PUBLISH C3 4-byte UTF-8 accepted", hex: "30 06 00 04 F0 AA 9B 94",
		want: &Publish{Topic: []byte("\U0002A6D4"), Payload: []byte{}}, ref: "C3"},
	{name: "PUBLISH C3 U+FFFF accepted", hex: "30 05 00 03 EF BF BF",
		want: &Publish{Topic: []byte("\uFFFF"), Payload: []byte{}}, ref: "C3"},
	{name: "PUBLISH C11 topic of MaxLevels levels", raw: rawPublish(deepTopic(MaxLevels), "x"),
		want: &Publish{Topic: []byte(deepTopic(MaxLevels)), Payload: []byte("x")}, ref: "C11"},
	{name: "PUBLISH C11 topic of MaxLevels+1 levels", raw: rawPublish(deepTopic(MaxLevels+1), "x"), err: ErrTopicName, ref: "C11"},
	{name: "PUBLISH C11 topic of 32767 slashes", raw: rawPublish(strings.Repeat("/", 32767), ""), err: ErrTopicName, ref: "C11"},
	{name: "PUBLISH C11 65535-byte topic", raw: rawPublish(strings.Repeat("t", 65535), ""),
		want: &Publish{Topic: bytes.Repeat([]byte("t"), 65535), Payload: []byte{}}, ref: "C11"},
	{name: "PUBLISH A3 topic length past end", hex: "30 07 FF FF 41 42 43 44 45", err: ErrShort, ref: "A3"},
	{name: "PUBLISH A3 empty body", hex: "30 00", err: ErrShort, ref: "A3"},
	{name: "PUBLISH A3 QoS 1 without packet id", hex: "32 07 00 05 74 6F 70 69 63", err: ErrShort, ref: "A3"},
	{name: "PUBLISH A5 QoS 3", hex: "36 0E 00 05 74 6F 70 69 63 70 61 79 6C 6F 61 64", err: ErrQoS, ref: "A5"},
	{name: "PUBLISH A5 QoS 0 with DUP", hex: "38 0E 00 05 74 6F 70 69 63 70 61 79 6C 6F 61 64", err: ErrFlags, ref: "A5"},
	{name: "PUBLISH A7 QoS 1 packet id 0", hex: "32 10 00 05 74 6F 70 69 63 00 00 70 61 79 6C 6F 61 64", err: ErrPacketIDZero, ref: "A7"},
	{name: "PUBLISH A7 QoS 2 packet id 0", hex: "34 10 00 05 74 6F 70 69 63 00 00 70 61 79 6C 6F 61 64", err: ErrPacketIDZero, ref: "A7"},
	{name: "PUBLISH C1 /group/+", hex: "30 0B 00 08 2F 67 72 6F 75 70 2F 2B 78", err: ErrTopicName, ref: "C1"},
	{name: "PUBLISH C1 /group/#", hex: "30 0A 00 08 2F 67 72 6F 75 70 2F 23", err: ErrTopicName, ref: "C1"},
	{name: "PUBLISH C1 /group/g1/#", hex: "30 0D 00 0B 2F 67 72 6F 75 70 2F 67 31 2F 23", err: ErrTopicName, ref: "C1"},
	{name: "PUBLISH C1 +", hex: "30 03 00 01 2B", err: ErrTopicName, ref: "C1"},
	{name: "PUBLISH C1 + inside a level", hex: "30 04 00 02 61 2B", err: ErrTopicName, ref: "C1"},
	{name: "PUBLISH C2 empty topic", hex: "30 09 00 00 70 61 79 6C 6F 61 64", err: ErrTopicName, ref: "C2"},
	{name: "PUBLISH C3 NUL in topic", hex: "30 07 00 05 74 6F 70 00 00", err: ErrUTF8, ref: "C3"},
	{name: "PUBLISH C3 U+D800", hex: "30 05 00 03 ED A0 80", err: ErrUTF8, ref: "C3"},
	{name: "PUBLISH C3 overlong /", hex: "30 04 00 02 C0 AF", err: ErrUTF8, ref: "C3"},
	{name: "PUBLISH C3 truncated UTF-8", hex: "30 04 00 02 61 E2", err: ErrUTF8, ref: "C3"},

	// ---- PUBACK, PUBREC, PUBREL, PUBCOMP ----
	{name: "PUBACK", hex: "40 02 00 01", want: tAck{PUBACK, 1}},
	{name: "PUBREC", hex: "50 02 01 00", want: tAck{PUBREC, 256}},
	{name: "PUBREL", hex: "62 02 FF FF", want: tAck{PUBREL, 0xFFFF}},
	{name: "PUBCOMP", hex: "70 02 00 07", want: tAck{PUBCOMP, 7}},
	{name: "PUBACK A7 id 0", hex: "40 02 00 00", err: ErrPacketIDZero, ref: "A7"},
	{name: "PUBREC A7 id 0", hex: "50 02 00 00", err: ErrPacketIDZero, ref: "A7"},
	{name: "PUBREL A7 id 0", hex: "62 02 00 00", err: ErrPacketIDZero, ref: "A7"},
	{name: "PUBCOMP A7 id 0", hex: "70 02 00 00", err: ErrPacketIDZero, ref: "A7"},
	{name: "PUBREL A5 flags 0", hex: "60 02 00 01", err: ErrFlags, ref: "A5"},
	{name: "PUBACK A5 flags 2", hex: "42 02 00 01", err: ErrFlags, ref: "A5"},
	{name: "PUBCOMP A5 flags 1", hex: "71 02 00 01", err: ErrFlags, ref: "A5"},
	{name: "PUBACK A4 trailing byte", hex: "40 03 00 01 00", err: ErrTrailing, ref: "A4"},
	{name: "PUBACK A3 short", hex: "40 01 00", err: ErrShort, ref: "A3"},
	{name: "PUBREC A3 empty", hex: "50 00", err: ErrShort, ref: "A3"},

	// ---- SUBSCRIBE ----
	{name: "SUBSCRIBE one filter", hex: "82 0A 00 01 00 05 74 6F 70 69 63 01",
		want: &Subscribe{PacketID: 1, Filters: []Subscription{{"topic", 1}}}},
	{name: "SUBSCRIBE two filters", hex: "82 1B 00 02 00 03 61 2F 2B 00 00 10 2F 70 72 69 76 61 74 65 2F 61 6C 69 63 65 2F 23 02",
		want: &Subscribe{PacketID: 2, Filters: []Subscription{{"a/+", 0}, {"/private/alice/#", 2}}}},
	{name: "SUBSCRIBE C5 /private/+ decodes (ACL refuses)", hex: "82 0F 00 01 00 0A 2F 70 72 69 76 61 74 65 2F 2B 01",
		want: &Subscribe{PacketID: 1, Filters: []Subscription{{"/private/+", 1}}}, ref: "C5"},
	{name: "SUBSCRIBE C9 $share decodes (server decides)", hex: "82 0F 00 03 00 0A 24 73 68 61 72 65 2F 67 2F 23 00",
		want: &Subscribe{PacketID: 3, Filters: []Subscription{{"$share/g/#", 0}}}, ref: "C9"},
	{name: "SUBSCRIBE C11 filter of MaxLevels + levels", raw: rawSubscribe(strings.Repeat("+/", MaxLevels-1)+"+", 0),
		want: &Subscribe{PacketID: 1, Filters: []Subscription{{strings.Repeat("+/", MaxLevels-1) + "+", 0}}}, ref: "C11"},
	{name: "SUBSCRIBE C11 filter of 10000 + levels", raw: rawSubscribe(strings.Repeat("+/", 9999)+"+", 0), err: ErrFilter, ref: "C11"},
	{name: "SUBSCRIBE A3 no options byte", hex: "82 09 00 01 00 05 74 6F 70 69 63", err: ErrShort, ref: "A3"},
	{name: "SUBSCRIBE A3 filter length past end", hex: "82 06 00 01 00 09 74 6F", err: ErrShort, ref: "A3"},
	{name: "SUBSCRIBE A3 no packet id", hex: "82 01 00", err: ErrShort, ref: "A3"},
	{name: "SUBSCRIBE A4 trailing byte", hex: "82 0B 00 01 00 05 74 6F 70 69 63 00 00", err: ErrShort, ref: "A4"},
	{name: "SUBSCRIBE A5 flags 0", hex: "80 0A 00 01 00 05 74 6F 70 69 63 00", err: ErrFlags, ref: "A5"},
	{name: "SUBSCRIBE A5 flags 3", hex: "83 0A 00 01 00 05 74 6F 70 69 63 00", err: ErrFlags, ref: "A5"},
	{name: "SUBSCRIBE A7 packet id 0", hex: "82 0A 00 00 00 05 74 6F 70 69 63 00", err: ErrPacketIDZero, ref: "A7"},
	{name: "SUBSCRIBE C10 no filters", hex: "82 02 00 01", err: ErrNoFilters, ref: "C10"},
	{name: "SUBSCRIBE C10 QoS 3", hex: "82 0A 00 01 00 05 74 6F 70 69 63 03", err: ErrQoS, ref: "C10"},
	{name: "SUBSCRIBE C10 reserved option bit 2", hex: "82 0A 00 01 00 05 74 6F 70 69 63 04", err: ErrSubOptions, ref: "C10"},
	{name: "SUBSCRIBE C10 reserved option bit 7", hex: "82 0A 00 01 00 05 74 6F 70 69 63 80", err: ErrSubOptions, ref: "C10"},
	{name: "SUBSCRIBE C10 a/#/b", hex: "82 0A 00 01 00 05 61 2F 23 2F 62 00", err: ErrFilter, ref: "C10"},
	{name: "SUBSCRIBE C10 a#", hex: "82 07 00 01 00 02 61 23 00", err: ErrFilter, ref: "C10"},
	{name: "SUBSCRIBE C10 a+", hex: "82 07 00 01 00 02 61 2B 00", err: ErrFilter, ref: "C10"},
	{name: "SUBSCRIBE C10 +a", hex: "82 07 00 01 00 02 2B 61 00", err: ErrFilter, ref: "C10"},
	{name: "SUBSCRIBE C10 empty filter", hex: "82 05 00 01 00 00 00", err: ErrFilter, ref: "C10"},
	{name: "SUBSCRIBE C10 NUL in filter", hex: "82 07 00 01 00 02 61 00 00", err: ErrUTF8, ref: "C10"},
	{name: "SUBSCRIBE C3 U+D800 in filter", hex: "82 08 00 01 00 03 ED A0 80 00", err: ErrUTF8, ref: "C3"},
	{name: "SUBSCRIBE second filter bad", hex: "82 0C 00 01 00 01 61 00 00 03 61 2F 23 03", err: ErrQoS},

	// ---- UNSUBSCRIBE ----
	{name: "UNSUBSCRIBE one filter", hex: "A2 09 00 01 00 05 74 6F 70 69 63",
		want: &Unsubscribe{PacketID: 1, Filters: []string{"topic"}}},
	{name: "UNSUBSCRIBE two filters", hex: "A2 0C 00 05 00 01 23 00 05 2F 61 2F 2B 2F",
		want: &Unsubscribe{PacketID: 5, Filters: []string{"#", "/a/+/"}}},
	{name: "UNSUBSCRIBE A5 flags 0", hex: "A0 09 00 01 00 05 74 6F 70 69 63", err: ErrFlags, ref: "A5"},
	{name: "UNSUBSCRIBE A7 packet id 0", hex: "A2 09 00 00 00 05 74 6F 70 69 63", err: ErrPacketIDZero, ref: "A7"},
	{name: "UNSUBSCRIBE no filters", hex: "A2 02 00 01", err: ErrNoFilters, ref: "C10"},
	{name: "UNSUBSCRIBE A3 filter past end", hex: "A2 05 00 01 00 05 74", err: ErrShort, ref: "A3"},
	{name: "UNSUBSCRIBE A4 trailing byte", hex: "A2 0A 00 01 00 05 74 6F 70 69 63 00", err: ErrShort, ref: "A4"},
	{name: "UNSUBSCRIBE C10 a#b", hex: "A2 07 00 01 00 03 61 23 62", err: ErrFilter, ref: "C10"},
	{name: "UNSUBSCRIBE C10 empty filter", hex: "A2 04 00 01 00 00", err: ErrFilter, ref: "C10"},

	// ---- PINGREQ, DISCONNECT ----
	{name: "PINGREQ", hex: "C0 00", want: tEmpty{PINGREQ}},
	{name: "DISCONNECT", hex: "E0 00", want: tEmpty{DISCONNECT}},
	{name: "PINGREQ A4 trailing byte", hex: "C0 01 00", err: ErrTrailing, ref: "A4"},
	{name: "DISCONNECT A4 trailing byte", hex: "E0 01 00", err: ErrTrailing, ref: "A4"},
	{name: "PINGREQ A5 flags", hex: "C1 00", err: ErrFlags, ref: "A5"},
	{name: "DISCONNECT A5 flags", hex: "E2 00", err: ErrFlags, ref: "A5"},

	// ---- Level 5 is refused for now ----
	{name: "PUBLISH on a level 5 connection", hex: "30 0E 00 05 74 6F 70 69 63 70 61 79 6C 6F 61 64", level: V5, err: ErrV5NotSupported},
	{name: "PUBACK on a level 9 connection", hex: "40 02 00 01", level: 9, err: ErrUnsupportedLevel},

	// ---- Sent by the server ----
	{name: "CONNACK accepted", hex: "20 02 00 00", server: true, want: tConnack{false, ConnAccepted}},
	{name: "CONNACK session present", hex: "20 02 01 00", server: true, want: tConnack{true, ConnAccepted}},
	{name: "CONNACK B3 bad protocol", hex: "20 02 00 01", server: true, want: tConnack{false, ConnBadProtocol}, ref: "B3"},
	{name: "CONNACK B5 identifier rejected", hex: "20 02 00 02", server: true, want: tConnack{false, ConnIDRejected}, ref: "B5"},
	{name: "CONNACK not authorized", hex: "20 02 00 05", server: true, want: tConnack{false, ConnNotAuthorized}},
	{name: "CONNACK reserved ack flag", hex: "20 02 02 00", server: true, err: ErrFlags},
	{name: "CONNACK trailing byte", hex: "20 03 00 00 00", server: true, err: ErrTrailing},
	{name: "SUBACK one", hex: "90 03 00 01 01", server: true, want: tSuback{1, []byte{1}}},
	{name: "SUBACK C6 granted and failed", hex: "90 05 00 02 00 80 02", server: true, want: tSuback{2, []byte{0, SubackFailure, 2}}, ref: "C6"},
	{name: "SUBACK bad code", hex: "90 03 00 01 03", server: true, err: ErrQoS},
	{name: "UNSUBACK", hex: "B0 02 00 09", server: true, want: tUnsuback{9}},
	{name: "PINGRESP", hex: "D0 00", server: true, want: tEmpty{PINGRESP}},
}
