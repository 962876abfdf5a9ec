package fanout

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pushring/pushring/message"
)

// envelopeTests is the table of expected bytes: TestAppendEnvelope encodes
// each Envelope and compares with Hex, TestDecodeEnvelope decodes Hex and
// compares with Envelope, and FuzzDecodeEnvelope starts from them.
var envelopeTests = []struct {
	Name     string
	Envelope Envelope
	Hex      string // spaces are ignored
}{
	{
		Name:     "presence of a group's members",
		Envelope: Envelope{Kind: KindPresence, Sender: "n1", Query: 300, Group: "g1"},
		Hex:      "02 0b 00 02 6e31 ac02 02 6731 00",
	},
	{
		Name:     "presence of two principals",
		Envelope: Envelope{Kind: KindPresence, Sender: "n1", Query: 1, Principals: []string{"alice", "b"}},
		Hex:      "02 0b 00 02 6e31 01 00 02 05 616c696365 01 62",
	},
	{
		Name:     "presence answer: three connected, two listed",
		Envelope: Envelope{Kind: KindPresenceAnswer, Sender: "n2", Query: 300, Count: 3, Principals: []string{"a", "b"}},
		Hex:      "02 0c 00 02 6e32 ac02 03 02 01 61 01 62",
	},
	{
		Name:     "presence answer: nobody",
		Envelope: Envelope{Kind: KindPresenceAnswer, Sender: "n2", Query: 1},
		Hex:      "02 0c 00 02 6e32 01 00 00",
	},
	{
		Name: "deliver direct (the example in envelope.go)",
		Envelope: Envelope{Kind: KindDeliver, Sender: "n1",
			Msg:        message.Message{ID: 0x0102030405060708, Seq: 0x1234, Kind: message.Direct, From: "a", To: "b", QoS: 1, Payload: []byte("hi")},
			Recipients: []string{"b"}},
		Hex: "02 02 00 02 6e31 0102030405060708 0000000000001234 01 01 01 61 01 62 02 6869 01 01 62",
	},
	{
		Name: "deliver group, three recipients, hops 2, empty from and payload",
		Envelope: Envelope{Kind: KindDeliver, Hops: 2, Sender: "n3",
			Msg:        message.Message{ID: 0xffffffffffffffff, Kind: message.Group, To: "g1", QoS: 0},
			Recipients: []string{"alice", "bob", "c"}},
		Hex: "02 02 02 02 6e33 ffffffffffffffff 0000000000000000 02 00 00 02 6731 00" +
			" 03 05 616c696365 03 626f62 01 63",
	},
	{
		Name: "deliver direct with the extension: expires 1000 ms, MQTT 5.0 properties",
		Envelope: Envelope{Kind: KindDeliver, Sender: "n1",
			Msg: message.Message{ID: 1, Seq: 2, Kind: message.Direct, To: "b", QoS: 1, Payload: []byte("hi"),
				Expires: 1000, Props: []byte{0x03, 0, 1, 't'}},
			Recipients: []string{"b"}},
		Hex: "02 02 00 02 6e31 0000000000000001 0000000000000002 81 01 00 01 62 02 6869 e807 04 03000174 01 01 62",
	},
	{
		Name: "resolve with the extension: props only",
		Envelope: Envelope{Kind: KindResolve, Sender: "n1",
			Msg: message.Message{ID: 1, Kind: message.Group, To: "g", Props: []byte{0x01, 0x01}}},
		Hex: "02 01 00 02 6e31 0000000000000001 0000000000000000 82 00 00 01 67 00 00 02 0101",
	},
	{
		Name: "resolve",
		Envelope: Envelope{Kind: KindResolve, Hops: 0, Sender: "node-a",
			Msg: message.Message{ID: 42, Seq: 7, Kind: message.Group, From: "dev1", To: "g", QoS: 1, Payload: []byte{0, 1, 2}}},
		Hex: "02 01 00 06 6e6f64652d61 000000000000002a 0000000000000007 02 01 04 64657631 01 67 03 000102",
	},
	{
		Name: "resolve, hops 255, 200-byte payload (two-byte length)",
		Envelope: Envelope{Kind: KindResolve, Hops: 255, Sender: "n",
			Msg: message.Message{ID: 1, Kind: message.Group, To: "g", Payload: bytes.Repeat([]byte{'x'}, 200)}},
		Hex: "02 01 ff 01 6e 0000000000000001 0000000000000000 02 00 00 01 67 c801" + strings.Repeat("78", 200),
	},
	{
		Name:     "attach",
		Envelope: Envelope{Kind: KindAttach, Sender: "n2", Principal: "alice", Node: "n2"},
		Hex:      "02 03 00 02 6e32 05 616c696365 02 6e32",
	},
	{
		Name:     "detach",
		Envelope: Envelope{Kind: KindDetach, Hops: 1, Sender: "n1", Principal: "bob", Node: "n3"},
		Hex:      "02 04 01 02 6e31 03 626f62 02 6e33",
	},
	{
		Name:     "attach many",
		Envelope: Envelope{Kind: KindAttachMany, Sender: "n2", Node: "n2", Principals: []string{"alice", "bob"}},
		Hex:      "02 05 00 02 6e32 02 6e32 02 05 616c696365 03 626f62",
	},
	{
		Name: "deliver awaiting an ack, largest sequence",
		Envelope: Envelope{Kind: KindDeliver, Sender: "n1", AckNode: "n2", AckID: 5,
			Msg:        message.Message{ID: 0x0102030405060708, Seq: 1<<64 - 1, Kind: message.Direct, From: "a", To: "b", QoS: 1, Payload: []byte("hi")},
			Recipients: []string{"b"}},
		Hex: "02 07 00 02 6e31 02 6e32 05 0102030405060708 ffffffffffffffff 01 01 01 61 01 62 02 6869 01 01 62",
	},
	{
		Name: "resolve awaiting an ack, ack id 300, sequence 2^56",
		Envelope: Envelope{Kind: KindResolve, Hops: 1, Sender: "n1", AckNode: "n1", AckID: 300,
			Msg: message.Message{ID: 9, Seq: 1 << 56, Kind: message.Group, From: "a", To: "g", QoS: 1}},
		Hex: "02 06 01 02 6e31 02 6e31 ac02 0000000000000009 0100000000000000 02 01 01 61 01 67 00",
	},
	{
		Name:     "ack",
		Envelope: Envelope{Kind: KindAck, Sender: "n3", Acks: []Ack{{ID: 1, N: 1}, {ID: 300, N: 3, Expect: true}, {ID: 0, N: 0}}},
		Hex:      "02 08 00 02 6e33 03 01 02 ac02 07 00 00",
	},
	{
		Name:     "dropped",
		Envelope: Envelope{Kind: KindDropped, Sender: "n3"},
		Hex:      "02 09 00 02 6e33",
	},
	{
		Name: "topic",
		Envelope: Envelope{Kind: KindTopic, Sender: "n1",
			Msg: message.Message{ID: 5, Seq: 6, Kind: message.Topic, From: "d", To: "t/a.b", QoS: 1, Payload: []byte("hi")}},
		Hex: "02 0a 00 02 6e31 0000000000000005 0000000000000006 03 01 01 64 05 742f612e62 02 6869",
	},
	{
		Name: "topic with the extension, QoS 2",
		Envelope: Envelope{Kind: KindTopic, Sender: "n1",
			Msg: message.Message{ID: 1, Kind: message.Topic, To: "t", QoS: 2, Expires: 1000}},
		Hex: "02 0a 00 02 6e31 0000000000000001 0000000000000000 83 02 00 01 74 00 e807 00",
	},
}

// badEnvelopes must all be refused by DecodeEnvelope with an error that
// matches Err.
var badEnvelopes = []struct {
	Name string
	Hex  string
	Err  error
}{
	{"empty", "", ErrMalformed},
	{"message extension flagged but empty", "02 02 00 02 6e31 0000000000000001 0000000000000002 81 01 00 01 62 00 00 00 01 01 62", ErrMalformed},
	{"message extension expiry past int64", "02 02 00 02 6e31 0000000000000001 0000000000000002 81 01 00 01 62 00 ffffffffffffffffff01 00 01 01 62", ErrMalformed},
	{"version only", "02", ErrMalformed},
	{"no hops", "02 02", ErrMalformed},
	{"version 0", "00 02 00 02 6e31", ErrEnvelopeVersion},
	// The version-1 encoding of the example in envelope.go: without the
	// stream sequence, refused whole rather than misread.
	{"version 1", "01 02 00 02 6e31 0102030405060708 01 01 01 61 01 62 02 6869 01 01 62", ErrEnvelopeVersion},
	{"version 3", "03 02 00 02 6e31", ErrEnvelopeVersion},
	{"kind 0", "02 00 00 02 6e31", ErrEnvelopeKind},
	{"kind 13", "02 0d 00 02 6e31", ErrEnvelopeKind},
	{"presence without a query id", "02 0b 00 02 6e31 00 01 67 00", ErrMalformed},
	{"presence with group and principals", "02 0b 00 02 6e31 01 01 67 01 01 61", ErrMalformed},
	{"presence with neither", "02 0b 00 02 6e31 01 00 00", ErrMalformed},
	{"presence with hops", "02 0b 01 02 6e31 01 01 67 00", ErrMalformed},
	{"presence with an empty principal", "02 0b 00 02 6e31 01 00 01 00", ErrMalformed},
	{"presence answer listing more than its count", "02 0c 00 02 6e32 07 01 02 01 61 01 62", ErrMalformed},
	{"presence answer without a query id", "02 0c 00 02 6e32 00 00 00", ErrMalformed},
	{"presence answer truncated", "02 0c 00 02 6e32 07 02 02 01 61", ErrMalformed},
	{"topic of a direct message", "02 0a 00 01 6e 0000000000000001 0000000000000000 01 00 00 01 74 00", ErrMalformed},
	{"topic of a group message", "02 0a 00 01 6e 0000000000000001 0000000000000000 02 00 00 01 74 00", ErrMalformed},
	{"topic empty to", "02 0a 00 01 6e 0000000000000001 0000000000000000 03 00 00 00 00", ErrMalformed},
	{"topic with a recipient", "02 0a 00 01 6e 0000000000000001 0000000000000000 03 00 00 01 74 00 01 01 62", ErrMalformed},
	{"topic truncated", "02 0a 00 01 6e 0000000000000001 0000000000000000 03 00 00 01 74", ErrMalformed},
	{"resolve of a topic message", "02 01 00 01 6e 0000000000000001 0000000000000000 03 00 00 01 74 00", ErrMalformed},
	{"dropped with a field", "02 09 00 02 6e31 01 61", errTrailing},
	{"ack zero entries", "02 08 00 02 6e33 00", ErrMalformed},
	{"ack without entries", "02 08 00 02 6e33", ErrMalformed},
	{"ack count larger than data", "02 08 00 02 6e33 02 01 02", ErrMalformed},
	{"ack n over 32 bits", "02 08 00 02 6e33 01 01 8080808020", ErrMalformed},
	{"ack trailing byte", "02 08 00 02 6e33 01 01 02 00", ErrMalformed},
	{"deliver acked empty ack node", "02 07 00 01 6e 00 05 0000000000000001 0000000000000000 02 00 00 01 67 00 01 01 62", ErrMalformed},
	{"deliver acked truncated ack id", "02 07 00 01 6e 01 6e", ErrMalformed},
	{"deliver acked ack node with a dot", "02 07 00 01 6e 03 6e2e32 05 0000000000000001 0000000000000000 02 00 00 01 67 00 01 01 62", ErrMalformed},
	{"resolve acked ack node with '>'", "02 06 00 01 6e 01 3e 05 0000000000000001 0000000000000000 02 00 00 01 67 00", ErrMalformed},
	{"kind ff", "02 ff", ErrEnvelopeKind},
	{"empty sender", "02 03 00 00 05 616c696365 02 6e32", ErrMalformed},
	{"sender not UTF-8", "02 03 00 02 6eff 05 616c696365 02 6e32", ErrMalformed},
	{"sender with a dot", "02 03 00 03 6e2e32 05 616c696365 02 6e32", ErrMalformed},
	{"attach node not UTF-8", "02 03 00 02 6e32 05 616c696365 02 6eff", ErrMalformed},
	{"attach many node with '*'", "02 05 00 02 6e32 02 6e2a 01 01 61", ErrMalformed},
	{"sender runs past end", "02 03 00 09 6e32", ErrMalformed},
	{"padded uvarint", "02 03 00 8200 6e32 05 616c696365 02 6e32", ErrMalformed},
	{"uvarint over 64 bits", "02 03 00 ffffffffffffffffff02", ErrMalformed},
	{"uvarint of 11 bytes", "02 03 00 8080808080808080808001", ErrMalformed},
	{"huge length", "02 03 00 ffffffffffffffff7f 6e", ErrMalformed},
	{"attach without node", "02 03 00 02 6e32 05 616c696365", ErrMalformed},
	{"attach empty node", "02 03 00 02 6e32 05 616c696365 00", ErrMalformed},
	{"attach empty principal", "02 03 00 02 6e32 00 02 6e32", ErrMalformed},
	{"attach trailing byte", "02 03 00 02 6e32 05 616c696365 02 6e32 00", ErrMalformed},
	{"attach many without principals", "02 05 00 02 6e32 02 6e32", ErrMalformed},
	{"attach many zero principals", "02 05 00 02 6e32 02 6e32 00", ErrMalformed},
	{"attach many empty node", "02 05 00 02 6e32 00 01 01 61", ErrMalformed},
	{"attach many empty principal", "02 05 00 02 6e32 02 6e32 02 01 61 00", ErrMalformed},
	{"attach many count larger than data", "02 05 00 02 6e32 02 6e32 03 01 61 01 62", ErrMalformed},
	{"attach many trailing byte", "02 05 00 02 6e32 02 6e32 01 01 61 00", ErrMalformed},
	{"resolve truncated id", "02 01 00 01 6e 00000000", ErrMalformed},
	{"resolve truncated sequence", "02 01 00 01 6e 0000000000000001 00000000000000", ErrMalformed},
	{"deliver without sequence", "02 02 00 01 6e 0000000000000001 02 00 00 01 67 00 01 01 62", ErrMalformed},
	{"resolve of a direct message", "02 01 00 01 6e 0000000000000001 0000000000000000 01 00 00 01 67 00", ErrMalformed},
	{"message kind 0", "02 02 00 01 6e 0000000000000001 0000000000000000 00 00 00 01 67 00 01 01 62", ErrMalformed},
	{"message kind 3", "02 02 00 01 6e 0000000000000001 0000000000000000 03 00 00 01 67 00 01 01 62", ErrMalformed},
	{"QoS 3", "02 01 00 01 6e 0000000000000001 0000000000000000 02 03 00 01 67 00", ErrMalformed},
	{"empty to", "02 01 00 01 6e 0000000000000001 0000000000000000 02 00 00 00 00", ErrMalformed},
	{"payload runs past end", "02 01 00 01 6e 0000000000000001 0000000000000000 02 00 00 01 67 05 6869", ErrMalformed},
	{"resolve trailing byte", "02 01 00 01 6e 0000000000000001 0000000000000000 02 00 00 01 67 00 00", ErrMalformed},
	{"deliver without recipients", "02 02 00 01 6e 0000000000000001 0000000000000000 02 00 00 01 67 00", ErrMalformed},
	{"deliver zero recipients", "02 02 00 01 6e 0000000000000001 0000000000000000 02 00 00 01 67 00 00", ErrMalformed},
	{"deliver empty recipient", "02 02 00 01 6e 0000000000000001 0000000000000000 02 00 00 01 67 00 01 00", ErrMalformed},
	{"deliver count larger than data", "02 02 00 01 6e 0000000000000001 0000000000000000 02 00 00 01 67 00 02 01 62", ErrMalformed},
	{"deliver huge count", "02 02 00 01 6e 0000000000000001 0000000000000000 02 00 00 01 67 00 ffffffff0f 01 62", ErrMalformed},
	{"deliver trailing byte", "02 02 00 01 6e 0000000000000001 0000000000000000 02 00 00 01 67 00 01 01 62 62", ErrMalformed},
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// equalEnvelope compares two envelopes, treating nil and empty payloads as
// equal (the wire cannot tell them apart).
func equalEnvelope(a, b *Envelope) bool {
	if a.Kind != b.Kind || a.Hops != b.Hops || a.Sender != b.Sender ||
		a.Principal != b.Principal || a.Node != b.Node || len(a.Recipients) != len(b.Recipients) ||
		len(a.Principals) != len(b.Principals) || a.AckNode != b.AckNode || a.AckID != b.AckID ||
		len(a.Acks) != len(b.Acks) || a.Query != b.Query || a.Group != b.Group || a.Count != b.Count {
		return false
	}
	for i := range a.Acks {
		if a.Acks[i] != b.Acks[i] {
			return false
		}
	}
	for i := range a.Principals {
		if a.Principals[i] != b.Principals[i] {
			return false
		}
	}
	for i := range a.Recipients {
		if a.Recipients[i] != b.Recipients[i] {
			return false
		}
	}
	am, bm := a.Msg, b.Msg
	return am.ID == bm.ID && am.Seq == bm.Seq && am.Kind == bm.Kind && am.From == bm.From && am.To == bm.To &&
		am.QoS == bm.QoS && bytes.Equal(am.Payload, bm.Payload) && am.Expires == bm.Expires && bytes.Equal(am.Props, bm.Props)
}

func fmtEnvelope(e *Envelope) string {
	return fmt.Sprintf("%+v payload=%q", *e, e.Msg.Payload)
}

func TestAppendEnvelope(t *testing.T) {
	for _, tt := range envelopeTests {
		t.Run(tt.Name, func(t *testing.T) {
			want := unhex(t, tt.Hex)
			got, err := AppendEnvelope(nil, &tt.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded\n got %x\nwant %x", got, want)
			}
			if n := EnvelopeSize(&tt.Envelope); n != len(want) {
				t.Errorf("EnvelopeSize = %d, want %d", n, len(want))
			}
			// Appends after what is there.
			got, _ = AppendEnvelope([]byte("xyz"), &tt.Envelope)
			if !bytes.Equal(got, append([]byte("xyz"), want...)) {
				t.Errorf("append after a prefix: %x", got)
			}
		})
	}
}

func TestDecodeEnvelope(t *testing.T) {
	for _, tt := range envelopeTests {
		t.Run(tt.Name, func(t *testing.T) {
			data := unhex(t, tt.Hex)
			got, err := DecodeEnvelope(data)
			if err != nil {
				t.Fatal(err)
			}
			if !equalEnvelope(got, &tt.Envelope) {
				t.Fatalf("decoded\n got %s\nwant %s", fmtEnvelope(got), fmtEnvelope(&tt.Envelope))
			}
			// The envelope owns a copy: the caller may reuse data.
			want := fmtEnvelope(got)
			for i := range data {
				data[i] ^= 0xff
			}
			if after := fmtEnvelope(got); after != want {
				t.Fatalf("decoded envelope changed with its input:\n%s\n%s", want, after)
			}
			// Every strict prefix is refused.
			data = unhex(t, tt.Hex)
			for n := range len(data) {
				if e, err := DecodeEnvelope(data[:n]); err == nil {
					t.Fatalf("prefix of %d bytes decoded: %s", n, fmtEnvelope(e))
				}
			}
		})
	}
}

func TestDecodeEnvelopeRefuses(t *testing.T) {
	for _, tt := range badEnvelopes {
		t.Run(tt.Name, func(t *testing.T) {
			e, err := DecodeEnvelope(unhex(t, tt.Hex))
			if err == nil {
				t.Fatalf("decoded: %s", fmtEnvelope(e))
			}
			if !errors.Is(err, tt.Err) {
				t.Fatalf("err = %v, want %v", err, tt.Err)
			}
		})
	}
}

func TestAppendEnvelopeRefuses(t *testing.T) {
	msg := message.Message{ID: 1, Kind: message.Group, To: "g"}
	topic := message.Message{ID: 1, Kind: message.Topic, To: "a/b"}
	for name, e := range map[string]Envelope{
		"unknown kind":            {Kind: 10, Sender: "n"},
		"no sender":               {Kind: KindAttach, Principal: "a", Node: "n"},
		"resolve of direct":       {Kind: KindResolve, Sender: "n", Msg: message.Message{ID: 1, Kind: message.Direct, To: "a"}},
		"resolve with recipient":  {Kind: KindResolve, Sender: "n", Msg: msg, Recipients: []string{"a"}},
		"QoS 3":                   {Kind: KindResolve, Sender: "n", Msg: message.Message{Kind: message.Group, To: "g", QoS: 3}},
		"empty to":                {Kind: KindResolve, Sender: "n", Msg: message.Message{Kind: message.Group}},
		"deliver no recipients":   {Kind: KindDeliver, Sender: "n", Msg: msg},
		"deliver empty recipient": {Kind: KindDeliver, Sender: "n", Msg: msg, Recipients: []string{"a", ""}},
		"deliver with principal":  {Kind: KindDeliver, Sender: "n", Msg: msg, Recipients: []string{"a"}, Principal: "p"},
		"attach with message":     {Kind: KindAttach, Sender: "n", Principal: "a", Node: "n", Msg: msg},
		"attach without node":     {Kind: KindAttach, Sender: "n", Principal: "a"},
		"detach with recipients":  {Kind: KindDetach, Sender: "n", Principal: "a", Node: "n", Recipients: []string{"a"}},
		"attach with principals":  {Kind: KindAttach, Sender: "n", Principal: "a", Node: "n", Principals: []string{"b"}},
		"attach many, none":       {Kind: KindAttachMany, Sender: "n", Node: "n"},
		"attach many, empty id":   {Kind: KindAttachMany, Sender: "n", Node: "n", Principals: []string{"a", ""}},
		"attach many, no node":    {Kind: KindAttachMany, Sender: "n", Principals: []string{"a"}},
		"attach many, principal":  {Kind: KindAttachMany, Sender: "n", Node: "n", Principal: "a", Principals: []string{"a"}},
		"deliver with principals": {Kind: KindDeliver, Sender: "n", Msg: msg, Recipients: []string{"a"}, Principals: []string{"a"}},
		// A sequence where no message travels would be lost on the wire.
		"attach with sequence": {Kind: KindAttach, Sender: "n", Principal: "a", Node: "n", Msg: message.Message{Seq: 1}},
		"ack with sequence":    {Kind: KindAck, Sender: "n", Acks: []Ack{{ID: 1, N: 1}}, Msg: message.Message{Seq: 1}},
		"dropped with a node":  {Kind: KindDropped, Sender: "n", Node: "m"},
		// A topic message has no recipients and no ack request; the other
		// kinds carry none.
		"topic of a group":          {Kind: KindTopic, Sender: "n", Msg: msg},
		"topic with recipients":     {Kind: KindTopic, Sender: "n", Msg: topic, Recipients: []string{"a"}},
		"topic awaiting an ack":     {Kind: KindTopic, Sender: "n", Msg: topic, AckNode: "n", AckID: 1},
		"topic with a node":         {Kind: KindTopic, Sender: "n", Msg: topic, Node: "m"},
		"deliver of a topic":        {Kind: KindDeliver, Sender: "n", Msg: topic, Recipients: []string{"a"}},
		"resolve of a topic":        {Kind: KindResolve, Sender: "n", Msg: topic},
		"topic message kind 4":      {Kind: KindTopic, Sender: "n", Msg: message.Message{Kind: 4, To: "t"}},
		"topic with an empty topic": {Kind: KindTopic, Sender: "n", Msg: message.Message{Kind: message.Topic}},
	} {
		if b, err := AppendEnvelope(nil, &e); !errors.Is(err, ErrInvalidEnvelope) || len(b) != 0 {
			t.Errorf("%s: got %x, %v; want ErrInvalidEnvelope", name, b, err)
		}
	}
}

// deliver1000 is the benchmark envelope: 1,000 recipients of 11 bytes and
// a 64-byte payload.
func deliver1000() *Envelope {
	rcpts := make([]string, 1000)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("user-%06d", i)
	}
	return &Envelope{Kind: KindDeliver, Sender: "node-1",
		Msg: message.Message{ID: 7, Kind: message.Group, From: "device-1", To: "group-1", QoS: 1,
			Payload: bytes.Repeat([]byte("p"), 64)},
		Recipients: rcpts}
}

func TestEnvelopeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	e := deliver1000()
	buf, _ := AppendEnvelope(nil, e)
	if n := testing.AllocsPerRun(100, func() { buf, _ = AppendEnvelope(buf[:0], e) }); n != 0 {
		t.Errorf("AppendEnvelope with a reused buffer: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeEnvelope(buf) }); n > 3 {
		t.Errorf("DecodeEnvelope of %d recipients: %v allocs, want at most 3", len(e.Recipients), n)
	}
	bad := unhex(t, badEnvelopes[len(badEnvelopes)-1].Hex)
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeEnvelope(bad) }); n > 3 {
		t.Errorf("refusing an envelope: %v allocs", n)
	}
}

func BenchmarkEnvelopeEncodeDeliver1000(b *testing.B) {
	e := deliver1000()
	buf, _ := AppendEnvelope(nil, e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = AppendEnvelope(buf[:0], e)
	}
}

func BenchmarkEnvelopeDecodeDeliver1000(b *testing.B) {
	buf, _ := AppendEnvelope(nil, deliver1000())
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEnvelope(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// The stream sequence sits at a fixed offset (header, ack request, message
// id) and has a fixed width, so a sender can write it into an envelope it
// has already encoded: the result is the envelope encoded with the
// sequence from the start.
func TestEnvelopeSeqPatchable(t *testing.T) {
	for _, tt := range envelopeTests {
		if tt.Envelope.Kind != KindResolve && tt.Envelope.Kind != KindDeliver && tt.Envelope.Kind != KindTopic {
			continue
		}
		t.Run(tt.Name, func(t *testing.T) {
			e := tt.Envelope
			e.Msg.Seq = 0
			b, err := AppendEnvelope(nil, &e)
			if err != nil {
				t.Fatal(err)
			}
			off := headerSize(e.Sender) + ackReq{e.AckNode, e.AckID}.size() + 8
			const seq = 0x0a0b0c0d0e0f1011
			binary.BigEndian.PutUint64(b[off:], seq)
			e.Msg.Seq = seq
			want, _ := AppendEnvelope(nil, &e)
			if !bytes.Equal(b, want) {
				t.Fatalf("patched\n got %x\nwant %x", b, want)
			}
			got, err := DecodeEnvelope(b)
			if err != nil {
				t.Fatal(err)
			}
			if got.Msg.Seq != seq {
				t.Fatalf("decoded sequence %x, want %x", got.Msg.Seq, uint64(seq))
			}
		})
	}
}
