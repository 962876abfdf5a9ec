package packet_test

// Benchmarks of the codec. pushring keeps a codec of its own because it
// beat github.com/mochi-mqtt/server/v2/packets (v2.7.9), a well-kept MQTT
// codec library, in benchmarks this file held until 2026-12-04 (git
// history: BenchmarkMochi*); mochi is no longer a dependency, since the
// module proxy here marks that release as not approved.
//
//	go test ./mqtt/packet/ -run '^$' -bench . -benchmem
//
// Both sides did what a server does per message: decode = fixed header flags
// + body + validation (mochi: FixedHeader.Decode, PublishDecode,
// PublishValidate); encode = one QoS 1 PUBLISH of a 64-byte payload to
// "/private/<id>/group/<gid>", where id and gid vary per receiver (mochi
// needs the topic as one string, so it pays for the concatenation; the
// FixedTopic variant shows mochi without it).
//
// Result (go1.26.8, 2 shared cores, -cpu 1, benchPacket's PUBLISH; all 0 allocs/op):
//
//	DecodePublish              20 ns/op   mochi 51 ns/op
//	EncodePublish              20 ns/op   mochi 72 ns/op (55 ns/op with a fixed topic)
//	ReadDecodePublish (Reader) 27 ns/op
//	WriteManyPatchID            5 ns/op
//
// Our codec is 2.5–3.5× faster, and stricter (see the TPackets table,
// tpackets.go), so it stays.

import (
	"bytes"
	"testing"

	"github.com/pushring/pushring/mqtt/packet"
)

var (
	benchPayload = bytes.Repeat([]byte("x"), 64)
	benchID      = "alice" // variables, so the topic is not a constant
	benchGID     = "g1"
	benchSink    []byte
)

const benchTopic = "/private/alice/group/g1"

func benchPacket(b *testing.B) (header byte, body []byte) {
	pkt := packet.AppendPublish(nil, 1, false, false, 7, benchPayload, benchTopic)
	h, body, err := packet.NewReader(bytes.NewReader(pkt), 0).ReadPacket()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	return h, body
}

func BenchmarkDecodePublish(b *testing.B) {
	header, body := benchPacket(b)
	var p packet.Publish
	for b.Loop() {
		if err := packet.DecodePublish(header, body, packet.V311, &p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodePublish(b *testing.B) {
	buf := make([]byte, 0, 256)
	b.SetBytes(int64(packet.PublishLen(1, nil, len(benchPayload), benchTopic)))
	b.ReportAllocs()
	for b.Loop() {
		buf = packet.AppendPublish(buf[:0], 1, false, false, 7, benchPayload, "/private/", benchID, "/group/", benchGID)
	}
	benchSink = buf
}

// BenchmarkWriteManyPatchID is the fan-out path (encode once, write many):
// one encoded PUBLISH copied into a connection's write buffer with its packet id patched.
func BenchmarkWriteManyPatchID(b *testing.B) {
	shared := packet.AppendPublish(nil, 1, false, false, 0, benchPayload, benchTopic)
	off := packet.PublishIDOffset(shared)
	w := make([]byte, 0, 4096)
	b.SetBytes(int64(len(shared)))
	b.ReportAllocs()
	id := uint16(0)
	for b.Loop() {
		if len(w)+len(shared) > cap(w) {
			w = w[:0]
		}
		start := len(w)
		w = append(w, shared...)
		id++
		w[start+off], w[start+off+1] = byte(id>>8), byte(id)
	}
	benchSink = w
}

// BenchmarkReadDecodePublish reads a stream of PUBLISH packets through a
// Reader and decodes each: the inbound hot path minus the socket.
func BenchmarkReadDecodePublish(b *testing.B) {
	pkt := packet.AppendPublish(nil, 1, false, false, 7, benchPayload, benchTopic)
	src := &loop{b: bytes.Repeat(pkt, 64)}
	r := packet.NewReader(src, 0)
	var p packet.Publish
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		header, body, err := r.ReadPacket()
		if err != nil {
			b.Fatal(err)
		}
		if err := packet.DecodePublish(header, body, packet.V311, &p); err != nil {
			b.Fatal(err)
		}
	}
}

type loop struct {
	b   []byte
	off int
}

func (l *loop) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

func BenchmarkMatch(b *testing.B) {
	topic := []byte(benchTopic)
	b.ReportAllocs()
	for b.Loop() {
		if !packet.Match("/private/alice/#", topic) || packet.Match("/private/bob/#", topic) {
			b.Fatal("match")
		}
	}
}
