package fanout

import (
	"bytes"
	"testing"

	"github.com/pushring/pushring/message"
)

// FuzzDecodeEnvelope feeds arbitrary bytes to DecodeEnvelope. It must
// never panic, and whatever it accepts must be canonical: re-encoding the
// decoded envelope gives back exactly the input (there is one encoding per
// envelope), and decoding that again gives the same envelope
// (decode(encode(x)) == x).
func FuzzDecodeEnvelope(f *testing.F) {
	for _, tt := range envelopeTests {
		f.Add(unhex(f, tt.Hex))
	}
	for _, tt := range badEnvelopes {
		f.Add(unhex(f, tt.Hex))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := DecodeEnvelope(data)
		if err != nil {
			if e != nil {
				t.Fatal("envelope and error")
			}
			return
		}
		enc, err := AppendEnvelope(nil, e)
		if err != nil {
			t.Fatalf("decoded envelope does not encode: %v\n%s", err, fmtEnvelope(e))
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("not canonical:\n  in %x\n out %x", data, enc)
		}
		if n := EnvelopeSize(e); n != len(data) {
			t.Fatalf("EnvelopeSize = %d, want %d", n, len(data))
		}
		e2, err := DecodeEnvelope(enc)
		if err != nil || !equalEnvelope(e, e2) {
			t.Fatalf("round trip: %v\n%s\n%s", err, fmtEnvelope(e), fmtEnvelope(e2))
		}
	})
}

// FuzzEnvelopeRoundTrip builds envelopes from fuzzed fields: whatever
// AppendEnvelope accepts, DecodeEnvelope must give back unchanged, and
// whatever it refuses must not be encoded.
func FuzzEnvelopeRoundTrip(f *testing.F) {
	for _, tt := range envelopeTests {
		e := tt.Envelope
		var rcpts []byte
		for _, r := range append(e.Recipients, e.Principals...) {
			rcpts = append(rcpts, r...)
			rcpts = append(rcpts, 0)
		}
		var acks []byte
		for _, a := range e.Acks {
			acks = append(acks, byte(a.ID), byte(a.N), 0)
			if a.Expect {
				acks[len(acks)-1] = 1
			}
		}
		f.Add(byte(e.Kind), e.Hops, e.Sender, e.Msg.ID, e.Msg.Seq, byte(e.Msg.Kind), e.Msg.QoS, e.Msg.From, e.Msg.To, e.Msg.Payload, rcpts, e.Principal, e.Node,
			e.AckNode, e.AckID, acks)
	}
	f.Fuzz(func(t *testing.T, kind, hops byte, sender string, id, seq uint64, mkind, qos byte,
		from, to string, payload, rcpts []byte, principal, node string, ackNode string, ackID uint64, acks []byte) {
		e := &Envelope{Kind: EnvelopeKind(kind), Hops: hops, Sender: sender, Principal: principal, Node: node,
			AckNode: ackNode, AckID: ackID}
		// Ack entries from byte triples: id, n, expect (low bit).
		for ; len(acks) >= 3; acks = acks[3:] {
			e.Acks = append(e.Acks, Ack{ID: uint64(acks[0]) << 20, N: uint32(acks[1]) << 24, Expect: acks[2]&1 == 1})
		}
		if e.Kind == KindResolve || e.Kind == KindDeliver || e.Kind == KindTopic {
			e.Msg = message.Message{ID: id, Seq: seq, Kind: message.Kind(mkind &^ 0x40), QoS: qos, From: from, To: to, Payload: payload}
			if mkind&0x40 != 0 { // the extension: an expiry from the id, properties from the payload's first half
				e.Msg.Expires = int64(id >> 1)
				e.Msg.Payload, e.Msg.Props = payload[len(payload)/2:], payload[:len(payload)/2]
			}
		}
		if e.Kind == KindPresence || e.Kind == KindPresenceAnswer {
			// The query id from the ack id, the group from the node,
			// the count from the sequence.
			e.Query, e.Group, e.Count = ackID, node, seq
			e.AckID, e.Node = 0, ""
			if e.Kind == KindPresenceAnswer {
				e.Group = ""
			}
		}
		if e.Kind == KindDeliver || e.Kind == KindAttachMany || e.Kind == KindPresence || e.Kind == KindPresenceAnswer {
			// NUL-separated recipients (or principals); a trailing NUL
			// ends the last one.
			var ids []string
			for len(rcpts) > 0 {
				i := bytes.IndexByte(rcpts, 0)
				if i < 0 {
					i = len(rcpts)
				}
				ids = append(ids, string(rcpts[:i]))
				rcpts = rcpts[min(i+1, len(rcpts)):]
			}
			if e.Kind == KindDeliver {
				e.Recipients = ids
			} else {
				e.Principals = ids
			}
		}
		enc, err := AppendEnvelope(nil, e)
		if err != nil {
			if len(enc) != 0 {
				t.Fatal("bytes and error")
			}
			return
		}
		if len(enc) != EnvelopeSize(e) {
			t.Fatalf("EnvelopeSize = %d, encoded %d", EnvelopeSize(e), len(enc))
		}
		got, err := DecodeEnvelope(enc)
		if err != nil {
			t.Fatalf("decode(encode(x)): %v\n%s\n%x", err, fmtEnvelope(e), enc)
		}
		if !equalEnvelope(got, e) {
			t.Fatalf("decode(encode(x)) != x\n got %s\nwant %s", fmtEnvelope(got), fmtEnvelope(e))
		}
	})
}
