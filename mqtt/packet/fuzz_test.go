package packet

import (
	"bytes"
	"reflect"
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
//     decoder cannot accept a packet it would not itself produce (5.0
//     packets, whose properties may come in any order, re-encode to bytes
//     that decode to the same value);
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

// checkReencode fails t unless v, decoded from pkt at level, encodes back
// to exactly pkt; at level 5, unless it encodes to bytes that decode to v.
func checkReencode(t *testing.T, v any, pkt []byte, level byte, server bool) {
	t.Helper()
	got := encodeAny(nil, v, level)
	if level != V5 {
		if !bytes.Equal(got, pkt) {
			t.Fatalf("decoded %#v from\n% X\nbut it encodes to\n% X", v, pkt, got)
		}
		return
	}
	header, body, err := readOne(got, MaxRemainingLength)
	if err != nil {
		t.Fatalf("decoded %#v from\n% X\nbut its encoding % X does not read: %v", v, pkt, got, err)
	}
	again, err := decodeAny(header, body, level, server)
	if err != nil || !reflect.DeepEqual(again, v) {
		t.Fatalf("decoded %#v from\n% X\nbut its encoding % X decodes to %#v, %v", v, pkt, got, again, err)
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
			for _, level := range []byte{V311, V5} {
				for _, server := range []bool{false, true} {
					v, err := decodeAny(header, body, level, server)
					if err == nil {
						checkReencode(t, v, pkt, level, server)
					} else if _, ok := err.(*Error); !ok {
						t.Fatalf("error %T %v is not an *Error", err, err)
					}
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
		if c.ProtocolLevel == V5 && !validProps(&c.Props) {
			t.Fatalf("accepted properties %+v", c.Props)
		}
		checkReencode(t, &c, wholePacket(header, body), c.ProtocolLevel, false)
	})
}

func FuzzDecodePublish(f *testing.F) {
	seedPackets(f, func(header byte, body []byte) {
		if header>>4 == PUBLISH {
			f.Add(header, body)
		}
	})
	f.Fuzz(func(t *testing.T, header byte, body []byte) {
		level := V311
		if header&0x80 != 0 { // the type bits are overwritten: the high one picks the level
			level = V5
		}
		header = PUBLISH<<4 | header&0x0f
		var p Publish
		if err := DecodePublish(header, body, level, &p); err != nil {
			return
		}
		validTopic := ValidTopicName(p.Topic) || (level == V5 && len(p.Topic) == 0 && p.TopicAlias != 0)
		if !validTopic || p.QoS > 2 || (p.QoS > 0) != (p.PacketID != 0) {
			t.Fatalf("accepted %+v", p)
		}
		if level == V5 {
			var all Properties
			if err := decodeProps(p.Props, propsPublish, &all); err != nil || all.TopicAlias != p.TopicAlias ||
				all.Is(PropMessageExpiry) != p.HasExpiry || all.MessageExpiry != p.Expiry {
				t.Fatalf("properties % X read as %+v, decode as %+v, %v", p.Props, p, all, err)
			}
			// What is forwarded is a valid block without alias or expiry.
			fw := ForwardProps(nil, p.Props)
			var f Properties
			if err := decodeProps(fw, propsForward, &f); err != nil {
				t.Fatalf("forwarded block % X: %v", fw, err)
			}
		}
		pkt := wholePacket(header, body)
		checkReencode(t, &p, pkt, level, false)
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
		for _, level := range []byte{V311, V5} {
			var s Subscribe
			if err := DecodeSubscribe(SUBSCRIBE<<4|header&0x0f, body, level, &s); err == nil {
				for _, sub := range s.Filters {
					if !ValidFilter(sub.Filter) || sub.QoS > 2 || sub.RetainHandling > 2 {
						t.Fatalf("accepted %+v", s)
					}
				}
				checkReencode(t, &s, wholePacket(SUBSCRIBE<<4|header&0x0f, body), level, false)
			}
			var u Unsubscribe
			if err := DecodeUnsubscribe(UNSUBSCRIBE<<4|header&0x0f, body, level, &u); err == nil {
				for _, f := range u.Filters {
					if !ValidFilter(f) {
						t.Fatalf("accepted %+v", u)
					}
				}
				checkReencode(t, &u, wholePacket(UNSUBSCRIBE<<4|header&0x0f, body), level, false)
			}
		}
	})
}

// FuzzProperties decodes arbitrary property blocks against every
// packet's set: what decodes has values in range and re-encodes to a
// block that decodes to the same.
func FuzzProperties(f *testing.F) {
	for _, tp := range TPackets() {
		if tp.ProtocolLevel() == V5 || tp.Level == 0 && len(tp.Hex) > 0 {
			b := tp.Bytes()
			for i := 1; i < len(b) && i < 40; i += 7 {
				f.Add(b[i:], uint8(i))
			}
		}
	}
	sets := []uint64{propsConnect, propsWill, propsConnack, propsPublish, propsAck, propsSubscribe, propsUnsubscribe, propsDisconnect}
	f.Fuzz(func(t *testing.T, block []byte, which uint8) {
		allowed := sets[int(which)%len(sets)]
		var p Properties
		if err := decodeProps(block, allowed, &p); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T", err)
			}
			if checkProps(block, allowed) == nil {
				t.Fatalf("checkProps accepts % X that decodeProps refuses: %v", block, err)
			}
			return
		}
		if checkProps(block, allowed) != nil {
			t.Fatalf("checkProps refuses % X that decodeProps accepts", block)
		}
		if p.Has&^allowed != 0 || !validProps(&p) {
			t.Fatalf("accepted %+v", p)
		}
		n := propsLen(&p)
		enc := appendProps(nil, &p, n)
		got, next, err := readProps(enc, 0)
		if err != nil || next != len(enc) || len(got) != n {
			t.Fatalf("encoded % X: %v", enc, err)
		}
		var again Properties
		if err := decodeProps(got, allowed, &again); err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("%+v re-encodes to % X, which decodes to %+v, %v", p, got, again, err)
		}
	})
}

// validProps checks the value bounds decoded properties must keep.
func validProps(p *Properties) bool {
	for _, b := range []byte{p.PayloadFormat, p.RequestProblemInfo, p.RequestResponseInfo, p.MaximumQoS,
		p.RetainAvailable, p.WildcardSubAvailable, p.SubIDAvailable, p.SharedSubAvailable} {
		if b > 1 {
			return false
		}
	}
	switch {
	case p.Is(PropReceiveMaximum) && p.ReceiveMaximum == 0,
		p.Is(PropMaximumPacketSize) && p.MaximumPacketSize == 0,
		p.Is(PropSubscriptionID) && (p.SubscriptionID == 0 || p.SubscriptionID > MaxRemainingLength),
		p.Is(PropTopicAlias) && p.TopicAlias == 0,
		p.Is(PropResponseTopic) && !ValidTopicName([]byte(p.ResponseTopic)):
		return false
	}
	return true
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
