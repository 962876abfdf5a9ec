package packet

import (
	"bytes"
	"strings"
	"testing"
)

// Fuzz targets (make test runs each for a few seconds, scripts/fuzz.sh).
// Run one at a time, for example:
//
//	go test ./mqtt/packet/ -run '^$' -fuzz '^FuzzReader$' -fuzztime 20s -fuzzminimizetime 2s
//
// (the default minimization time of 60s stalls short runs on new inputs.)
//
// Properties checked beyond "never panics":
//   - the Reader's buffer never exceeds max(initial size, maxSize+5);
//   - whatever decodes re-encodes to exactly the bytes it came from, so a
//     decoder cannot accept a packet it would not itself produce;
//   - decoded topics and filters satisfy ValidTopicName / ValidFilter;
//   - Match agrees with a split-based reference implementation.

// seedPackets splits the table into (header, body) pairs.
func seedPackets(f *testing.F, add func(header byte, body []byte)) {
	f.Helper()
	for _, tp := range TPackets() {
		b := tp.Bytes()
		hl, rl, err := parseFixedHeader(b)
		if err != nil || hl == 0 || hl+rl != len(b) || len(b) > 4096 {
			continue
		}
		add(b[0], b[hl:])
	}
}

// wholePacket rebuilds the bytes a (header, body) pair was read from; the
// Reader accepts only minimal length encodings, so this is exact.
func wholePacket(header byte, body []byte) []byte {
	return append(appendVarint([]byte{header}, len(body)), body...)
}

// checkReencode fails t unless v encodes back to exactly pkt.
func checkReencode(t *testing.T, v any, pkt []byte) {
	t.Helper()
	if got := encodeAny(nil, v); !bytes.Equal(got, pkt) {
		t.Fatalf("decoded %#v from\n% X\nbut it encodes to\n% X", v, pkt, got)
	}
}

func FuzzReader(f *testing.F) {
	var all []byte
	for _, tp := range TPackets() {
		b := tp.Bytes()
		if len(b) < 1000 {
			f.Add(b, []byte{1, 7, 0, 200}, uint32(TMaxSize))
			all = append(all, b...)
		}
	}
	f.Add(all, []byte{3, 255, 17}, uint32(100))
	f.Add(all, []byte{}, uint32(1<<20))
	f.Fuzz(func(t *testing.T, stream, cuts []byte, maxSize uint32) {
		const bufSize = 32
		ms := int(maxSize % (1 << 20))
		sizes := make([]int, len(cuts))
		for i, c := range cuts {
			sizes[i] = int(c)
		}
		r := NewReaderSize(&chunkReader{b: stream, sizes: sizes}, ms, bufSize)
		limit := max(bufSize, r.maxSize+5)
		for range 10_000 {
			header, body, err := r.ReadPacket()
			if cap(r.buf) > limit {
				t.Fatalf("buffer %d > %d", cap(r.buf), limit)
			}
			if err != nil {
				if _, _, err2 := r.ReadPacket(); err2 != err {
					t.Fatalf("error not sticky: %v then %v", err, err2)
				}
				return
			}
			if len(body) > r.maxSize {
				t.Fatalf("body %d > maxSize %d", len(body), r.maxSize)
			}
			pkt := wholePacket(header, body)
			for _, server := range []bool{false, true} {
				v, err := decodeAny(header, body, V311, server)
				if err == nil {
					checkReencode(t, v, pkt)
				} else if _, ok := err.(*Error); !ok {
					t.Fatalf("error %T %v is not an *Error", err, err)
				}
			}
		}
	})
}

func FuzzDecodeConnect(f *testing.F) {
	seedPackets(f, func(header byte, body []byte) {
		if header>>4 == CONNECT {
			f.Add(header, body)
		}
	})
	f.Fuzz(func(t *testing.T, header byte, body []byte) {
		var c Connect
		err := DecodeConnect(header, body, &c)
		if err != nil {
			if e, ok := err.(*Error); ok && e.Code == CodeUnsupportedVersion && c.ProtocolName == "" {
				t.Fatal("0x84 without the protocol name")
			}
			return
		}
		if !validString([]byte(c.ClientID)) || !validString([]byte(c.Username)) ||
			(c.WillFlag && !ValidTopicName([]byte(c.WillTopic))) {
			t.Fatalf("accepted %+v", c)
		}
		checkReencode(t, &c, wholePacket(header, body))
	})
}

func FuzzDecodePublish(f *testing.F) {
	seedPackets(f, func(header byte, body []byte) {
		if header>>4 == PUBLISH {
			f.Add(header, body)
		}
	})
	f.Fuzz(func(t *testing.T, header byte, body []byte) {
		header = PUBLISH<<4 | header&0x0f
		var p Publish
		if err := DecodePublish(header, body, V311, &p); err != nil {
			return
		}
		if !ValidTopicName(p.Topic) || p.QoS > 2 || (p.QoS > 0) != (p.PacketID != 0) {
			t.Fatalf("accepted %+v", p)
		}
		pkt := wholePacket(header, body)
		checkReencode(t, &p, pkt)
		off := PublishIDOffset(pkt)
		switch {
		case p.QoS == 0 && off != -1:
			t.Fatal("id offset in a QoS 0 PUBLISH")
		case p.QoS > 0 && (off < 0 || uint16(pkt[off])<<8|uint16(pkt[off+1]) != p.PacketID):
			t.Fatalf("PublishIDOffset %d", off)
		}
	})
}

func FuzzDecodeSubscribe(f *testing.F) {
	seedPackets(f, func(header byte, body []byte) {
		if t := header >> 4; t == SUBSCRIBE || t == UNSUBSCRIBE {
			f.Add(header, body)
		}
	})
	f.Fuzz(func(t *testing.T, header byte, body []byte) {
		var s Subscribe
		if err := DecodeSubscribe(SUBSCRIBE<<4|header&0x0f, body, V311, &s); err == nil {
			for _, sub := range s.Filters {
				if !ValidFilter(sub.Filter) || sub.QoS > 2 {
					t.Fatalf("accepted %+v", s)
				}
			}
			checkReencode(t, &s, wholePacket(SUBSCRIBE<<4|header&0x0f, body))
		}
		var u Unsubscribe
		if err := DecodeUnsubscribe(UNSUBSCRIBE<<4|header&0x0f, body, V311, &u); err == nil {
			for _, f := range u.Filters {
				if !ValidFilter(f) {
					t.Fatalf("accepted %+v", u)
				}
			}
			checkReencode(t, &u, wholePacket(UNSUBSCRIBE<<4|header&0x0f, body))
		}
	})
}

func FuzzMatch(f *testing.F) {
	for _, tc := range matchTests {
		f.Add(tc.filter, []byte(tc.topic))
	}
	f.Fuzz(func(t *testing.T, filter string, topic []byte) {
		got := Match(filter, topic)
		if ValidFilter(filter) && ValidTopicName(topic) {
			if want := refMatch(filter, string(topic)); got != want {
				t.Fatalf("Match(%q, %q) = %v, reference %v", filter, topic, got, want)
			}
		}
		if got && len(topic) > 0 && topic[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
			t.Fatalf("wildcard %q matched $ topic %q", filter, topic)
		}
	})
}

func FuzzValidFilter(f *testing.F) {
	for _, tc := range matchTests {
		f.Add(tc.filter)
		f.Add(tc.topic)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidFilter(s), refValidFilter(s); got != want {
			t.Fatalf("ValidFilter(%q) = %v, reference %v", s, got, want)
		}
		wantTopic := s != "" && validString([]byte(s)) && !strings.ContainsAny(s, "+#") &&
			strings.Count(s, "/") < MaxLevels
		if got := ValidTopicName([]byte(s)); got != wantTopic {
			t.Fatalf("ValidTopicName(%q) = %v, reference %v", s, got, wantTopic)
		}
		// A valid topic name is a valid filter that matches itself.
		if wantTopic && (!ValidFilter(s) || !Match(s, []byte(s))) {
			t.Fatalf("topic %q is not a filter matching itself", s)
		}
	})
}
