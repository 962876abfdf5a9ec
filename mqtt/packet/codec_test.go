package packet

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"testing/iotest"
)

// decodeAny decodes one packet the way the server dispatches it (clients
// may send only ValidClientPacketType types), or with the client-side
// decoders when server is set. Level 5 acks, CONNACKs and UNSUBACKs
// decode to their 5.0 forms.
func decodeAny(header byte, body []byte, level byte, server bool) (any, error) {
	typ := header >> 4
	if server {
		switch typ {
		case CONNACK:
			if level == V5 {
				var v TConnack5
				sp, code, err := DecodeConnackProps(header, body, level, &v.Props)
				v.SessionPresent, v.Code = sp, code
				return v, err
			}
			sp, code, err := DecodeConnack(header, body, level)
			return TConnack{sp, code}, err
		case SUBACK:
			id, codes, err := DecodeSuback(header, body, level)
			return TSuback{id, codes}, err
		case UNSUBACK:
			if level == V5 {
				id, codes, err := DecodeUnsubackCodes(header, body, level)
				return TUnsuback5{id, codes}, err
			}
			id, err := DecodeUnsuback(header, body, level)
			return TUnsuback{id}, err
		case PINGRESP:
			if header != PINGRESP<<4 || len(body) != 0 {
				return nil, ErrFlags
			}
			return TEmpty{PINGRESP}, nil
		case DISCONNECT:
			if level != V5 {
				return nil, ErrPacketType
			}
		case PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP:
		default:
			return nil, ErrPacketType
		}
	} else if !ValidClientPacketType(typ, level) || typ == AUTH {
		return nil, ErrPacketType
	}
	switch typ {
	case CONNECT:
		c := new(Connect)
		return c, DecodeConnect(header, body, c)
	case PUBLISH:
		p := new(Publish)
		return p, DecodePublish(header, body, level, p)
	case SUBSCRIBE:
		s := new(Subscribe)
		return s, DecodeSubscribe(header, body, level, s)
	case UNSUBSCRIBE:
		u := new(Unsubscribe)
		return u, DecodeUnsubscribe(header, body, level, u)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		if level == V5 {
			id, code, err := DecodeAckCode(header, body, level)
			return TAck5{typ, id, code}, err
		}
		id, err := DecodeAck(header, body, level)
		return TAck{typ, id}, err
	case DISCONNECT:
		if level == V5 {
			d := new(Disconnect)
			return d, DecodeDisconnect(header, body, level, d)
		}
		return TEmpty{typ}, DecodeEmpty(header, body, level)
	case PINGREQ:
		return TEmpty{typ}, DecodeEmpty(header, body, level)
	}
	return nil, ErrPacketType
}

// encodeAny encodes a decoded value with the package's encoders, those of
// level (5.0 or earlier) where they differ.
func encodeAny(dst []byte, v any, level byte) []byte {
	switch v := v.(type) {
	case *Connect:
		return AppendConnect(dst, v)
	case *Publish:
		if level == V5 {
			return AppendPublishV5(dst, v.QoS, v.Dup, v.Retain, v.PacketID, &PublishProps{Raw: v.Props}, v.Payload, string(v.Topic))
		}
		return AppendPublish(dst, v.QoS, v.Dup, v.Retain, v.PacketID, v.Payload, string(v.Topic))
	case *Subscribe:
		if level == V5 {
			return AppendSubscribeV5(dst, v)
		}
		return AppendSubscribe(dst, v)
	case *Unsubscribe:
		if level == V5 {
			return AppendUnsubscribeV5(dst, v)
		}
		return AppendUnsubscribe(dst, v)
	case *Disconnect:
		return AppendDisconnectV5(dst, v.Code, &v.Props)
	case TAck:
		return AppendAck(dst, v.Type, v.ID)
	case TAck5:
		return AppendAckV5(dst, v.Type, v.ID, v.Code, "")
	case TEmpty:
		switch v.Type {
		case PINGREQ:
			return AppendPingreq(dst)
		case DISCONNECT:
			return AppendDisconnect(dst)
		case PINGRESP:
			return AppendPingresp(dst)
		}
	case TConnack:
		return AppendConnack(dst, v.SessionPresent, v.Code)
	case TConnack5:
		return AppendConnackV5(dst, v.SessionPresent, v.Code, &v.Props)
	case TSuback:
		if level == V5 {
			return AppendSubackV5(dst, v.ID, v.Codes, "")
		}
		return AppendSuback(dst, v.ID, v.Codes)
	case TUnsuback:
		return AppendUnsuback(dst, v.ID)
	case TUnsuback5:
		return AppendUnsubackV5(dst, v.ID, v.Codes, "")
	}
	panic("encodeAny: no encoder for " + reflect.TypeOf(v).String())
}

// readOne reads the single packet in b through a Reader.
func readOne(b []byte, maxSize int) (byte, []byte, error) {
	return NewReader(bytes.NewReader(b), maxSize).ReadPacket()
}

func TestTableDecode(t *testing.T) {
	for _, tp := range TPackets() {
		t.Run(tp.Name, func(t *testing.T) {
			pkt := tp.Bytes()
			header, body, err := readOne(pkt, TMaxSize)
			var got any
			if err == nil {
				got, err = decodeAny(header, body, tp.ProtocolLevel(), tp.Server)
			}
			if tp.Err != nil {
				if err != tp.Err {
					t.Fatalf("error %v, want %v", err, tp.Err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if !reflect.DeepEqual(got, tp.Want) {
				t.Fatalf("decoded\n%#v\nwant\n%#v", got, tp.Want)
			}
		})
	}
}

func TestTableErrorCodes(t *testing.T) {
	// Every error is an *Error with the MQTT 5.0 reason code that
	// describes it.
	want := map[*Error]byte{
		ErrRemainingLength: 0x81, ErrTooLarge: 0x95, ErrPacketType: 0x82, ErrFlags: 0x81,
		ErrShort: 0x81, ErrTrailing: 0x81, ErrPacketIDZero: 0x82, ErrQoS: 0x81, ErrUTF8: 0x81,
		ErrProtocolName: 0x81, ErrUnsupportedLevel: 0x84,
		ErrConnectFlags: 0x81, ErrTopicName: 0x90, ErrFilter: 0x81, ErrNoFilters: 0x82, ErrSubOptions: 0x81,
		ErrVarint: 0x81, ErrPropertyID: 0x81, ErrPropertyDup: 0x82, ErrPropertyValue: 0x82, ErrTopicAlias: 0x94,
		ErrNoTopic: 0x82, ErrResponseTopic: 0x90, ErrPayloadFormat: 0x99, ErrRetainHandling: 0x82,
		ErrSharedNoLocal: 0x82, ErrReasonCode: 0x82,
	}
	for e, code := range want {
		if e.Code != code {
			t.Errorf("%v: code %#x, want %#x", e, e.Code, code)
		}
		var target *Error
		if !errors.As(error(e), &target) || target != e {
			t.Errorf("%v: errors.As failed", e)
		}
	}
	for _, tp := range TPackets() {
		if tp.Err != nil {
			if _, ok := want[tp.Err]; !ok {
				t.Errorf("%s: sentinel %v missing from the code map", tp.Name, tp.Err)
			}
		}
	}
}

func TestTableEncode(t *testing.T) {
	for _, tp := range TPackets() {
		if tp.Err != nil || tp.NoEnc {
			continue
		}
		t.Run(tp.Name, func(t *testing.T) {
			want := tp.Bytes()
			if got := encodeAny(nil, tp.Want, tp.ProtocolLevel()); !bytes.Equal(got, want) {
				t.Fatalf("encoded\n% X\nwant\n% X", got, want)
			}
			// Appending keeps what dst held.
			prefix := []byte{0xAA, 0xBB}
			if got := encodeAny(prefix, tp.Want, tp.ProtocolLevel()); !bytes.Equal(got[:2], prefix) || !bytes.Equal(got[2:], want) {
				t.Fatalf("append to prefix\n% X", got)
			}
		})
	}
}

func TestTableRoundTrip(t *testing.T) {
	for _, tp := range TPackets() {
		if tp.Err != nil {
			continue
		}
		t.Run(tp.Name, func(t *testing.T) {
			enc := encodeAny(nil, tp.Want, tp.ProtocolLevel())
			header, body, err := readOne(enc, TMaxSize)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeAny(header, body, tp.ProtocolLevel(), tp.Server)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tp.Want) {
				t.Fatalf("round trip\n%#v\nwant\n%#v", got, tp.Want)
			}
		})
	}
}

// TestTableStream feeds every valid packet of the table, back to back, through
// one Reader in pieces of every size from 1 byte up, as a socket would.
func TestTableStream(t *testing.T) {
	var stream []byte
	var want []TPacket
	for _, tp := range TPackets() {
		if tp.Err == nil {
			stream = append(stream, tp.Bytes()...)
			want = append(want, tp)
		}
	}
	for _, chunk := range []int{1, 2, 3, 5, 7, 64, 1000, 5000, len(stream)} {
		r := NewReaderSize(&chunkReader{b: stream, sizes: []int{chunk}}, TMaxSize, 64)
		for _, tp := range want {
			header, body, err := r.ReadPacket()
			if err != nil {
				t.Fatalf("chunk %d, %s: %v", chunk, tp.Name, err)
			}
			got, err := decodeAny(header, body, tp.ProtocolLevel(), tp.Server)
			if err != nil || !reflect.DeepEqual(got, tp.Want) {
				t.Fatalf("chunk %d, %s: got %#v, %v", chunk, tp.Name, got, err)
			}
		}
		if _, _, err := r.ReadPacket(); err != io.EOF {
			t.Fatalf("chunk %d: end of stream: %v, want io.EOF", chunk, err)
		}
		if c := cap(r.buf); c > 64+TMaxSize+5 {
			t.Fatalf("buffer grew to %d", c)
		}
	}
	r := NewReader(iotest.OneByteReader(bytes.NewReader(stream)), TMaxSize)
	for range want {
		if _, _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}
}

// chunkReader returns b in reads of the given sizes (cycled); a size of 0
// is a (0, nil) read.
type chunkReader struct {
	b     []byte
	sizes []int
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := len(c.b)
	if len(c.sizes) > 0 {
		n = c.sizes[c.i%len(c.sizes)]
		c.i++
	}
	n = min(n, len(p), len(c.b))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

func TestPublishRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
	var p Publish
	for i := range 2000 {
		qos := byte(rng.IntN(3))
		id := uint16(0)
		if qos > 0 {
			id = uint16(1 + rng.IntN(65535))
		}
		parts := []string{"/private/", string(rune('a' + i%26)), "/group/", string(make([]byte, 0)), "g"}
		topic := ""
		for _, s := range parts {
			topic += s
		}
		payload := make([]byte, rng.IntN(300))
		for j := range payload {
			payload[j] = byte(rng.IntN(256))
		}
		dup, retain := qos > 0 && rng.IntN(2) == 0, rng.IntN(2) == 0
		buf = AppendPublish(buf[:0], qos, dup, retain, id, payload, parts...)
		if n := PublishLen(qos, nil, len(payload), parts...); n != len(buf) {
			t.Fatalf("PublishLen %d, encoded %d", n, len(buf))
		}
		header, body, err := readOne(buf, MaxRemainingLength)
		if err != nil {
			t.Fatal(err)
		}
		if err := DecodePublish(header, body, V311, &p); err != nil {
			t.Fatal(err)
		}
		want := Publish{Dup: dup, QoS: qos, Retain: retain, Topic: []byte(topic), PacketID: id, Payload: payload}
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("got %+v, want %+v", p, want)
		}
	}
}

func TestAppendPublishLimits(t *testing.T) {
	dst := []byte{1, 2, 3}
	long := string(make([]byte, MaxStringLen))
	if got := AppendPublish(dst, 3, false, false, 1, nil, "t"); len(got) != 3 {
		t.Error("QoS 3 encoded")
	}
	if got := AppendPublish(dst, 0, false, false, 0, nil, long, "x"); len(got) != 3 {
		t.Error("topic over 65535 bytes encoded")
	}
	if got := AppendPublish(dst, 0, false, false, 0, nil, long); len(got) != 3+1+3+2+MaxStringLen {
		t.Errorf("65535-byte topic: %d bytes", len(got))
	}
	if PublishLen(0, nil, MaxRemainingLength, "t") != -1 || PublishLen(3, nil, 0, "t") != -1 {
		t.Error("PublishLen accepted an unencodable packet")
	}
	if n := PublishLen(0, nil, MaxRemainingLength-2-1, "t"); n != 1+4+MaxRemainingLength {
		t.Errorf("PublishLen at the limit: %d", n)
	}
	// DUP is never set at QoS 0.
	if got := AppendPublish(nil, 0, true, false, 0, nil, "t"); got[0] != 0x30 {
		t.Errorf("QoS 0 dup: header %#x", got[0])
	}
	if got := AppendAck(dst, SUBACK, 1); len(got) != 3 {
		t.Error("AppendAck encoded a SUBACK")
	}
}

func TestSetPacketID(t *testing.T) {
	for _, topic := range []string{"t", "/private/alice/group/g1", string(make([]byte, 300))} {
		payload := bytes.Repeat([]byte("p"), 200)
		shared := AppendPublish(nil, 1, false, false, 0, payload, topic)
		off := PublishIDOffset(shared)
		for _, id := range []uint16{1, 0x1234, 0xFFFF} {
			w := append([]byte("prev"), shared...) // a connection's write buffer
			if !SetPacketID(w[4:], id) {
				t.Fatal("SetPacketID refused a QoS 1 PUBLISH")
			}
			if want := AppendPublish([]byte("prev"), 1, false, false, id, payload, topic); !bytes.Equal(w, want) {
				t.Fatalf("patched % X\nwant % X", w[:20], want[:20])
			}
			if w[4+off] != byte(id>>8) || w[4+off+1] != byte(id) {
				t.Fatal("PublishIDOffset points elsewhere")
			}
			if !SetDup(w[4:]) || w[4] != 0x3A {
				t.Fatalf("SetDup: header %#x", w[4])
			}
		}
		if shared[off] != 0 || shared[off+1] != 0 {
			t.Fatal("shared bytes modified")
		}
	}
	for _, bad := range [][]byte{
		nil, {0x30}, AppendPublish(nil, 0, false, false, 0, []byte("pp"), "t"),
		{0x32, 0x05, 0x00, 0x01, 't', 0x00}, // id cut short
		{0x32, 0x80}, {0x36, 0x04, 0, 1, 't', 0, 1}, AppendAck(nil, PUBACK, 1),
		{0x32, 0x04, 0xFF, 0xFF, 't', 0}, // topic length past end
	} {
		if PublishIDOffset(bad) != -1 || SetPacketID(bad, 1) || SetDup(bad) {
			t.Errorf("accepted % X", bad)
		}
	}
}

func TestDecodeConnectLevelReported(t *testing.T) {
	var c Connect
	pkt := AppendConnect(nil, &Connect{ProtocolLevel: 6, ClientID: "x", WillTopic: "w", Username: "u"})
	header, body, _ := readOne(pkt, TMaxSize)
	if err := DecodeConnect(header, body, &c); err != ErrUnsupportedLevel || c.ProtocolLevel != 6 || c.ProtocolName != "MQTT" {
		t.Fatalf("level 6: %v, %+v", err, c)
	}
	// A malformed level 5 CONNECT still says its level, so the server
	// answers with a 5.0 CONNACK.
	pkt = AppendConnect(nil, &Connect{ProtocolLevel: V5, ClientID: "x"})
	pkt = append(pkt, 0)
	pkt[1]++
	header, body, _ = readOne(pkt, TMaxSize)
	if err := DecodeConnect(header, body, &c); err != ErrTrailing || c.ProtocolLevel != V5 {
		t.Fatalf("level 5 with a trailing byte: %v, %+v", err, c)
	}
}

func TestDecodeReusesSlices(t *testing.T) {
	var s Subscribe
	pkt := AppendSubscribe(nil, &Subscribe{PacketID: 1, Filters: []Subscription{{Filter: "a"}, {Filter: "b", QoS: 1}, {Filter: "c", QoS: 2}}})
	header, body, _ := readOne(pkt, TMaxSize)
	if err := DecodeSubscribe(header, body, V311, &s); err != nil || len(s.Filters) != 3 {
		t.Fatal(err)
	}
	p := &s.Filters[0]
	pkt = AppendSubscribe(nil, &Subscribe{PacketID: 2, Filters: []Subscription{{Filter: "d", QoS: 1}}})
	header, body, _ = readOne(pkt, TMaxSize)
	if err := DecodeSubscribe(header, body, V311, &s); err != nil || len(s.Filters) != 1 || &s.Filters[0] != p {
		t.Fatalf("filters not reused: %v %+v", err, s)
	}
}

func TestValidClientPacketType(t *testing.T) {
	allowed := map[byte]bool{CONNECT: true, PUBLISH: true, PUBACK: true, PUBREC: true, PUBREL: true,
		PUBCOMP: true, SUBSCRIBE: true, UNSUBSCRIBE: true, PINGREQ: true, DISCONNECT: true}
	for typ := range byte(16) {
		if got := ValidClientPacketType(typ, V311); got != allowed[typ] {
			t.Errorf("type %d level 4: %v", typ, got)
		}
		if got := ValidClientPacketType(typ, V5); got != (allowed[typ] || typ == AUTH) {
			t.Errorf("type %d level 5: %v", typ, got)
		}
	}
}

// Allocation tests: the hot paths allocate nothing.

var (
	allocSink []byte
	idVar     = "alice"
	gidVar    = "g1"
)

func TestAllocsDecodePublish(t *testing.T) {
	pkt := AppendPublish(nil, 1, false, false, 7, make([]byte, 64), "/private/alice/group/g1")
	header, body, _ := readOne(pkt, TMaxSize)
	var p Publish
	if n := testing.AllocsPerRun(1000, func() {
		if err := DecodePublish(header, body, V311, &p); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("DecodePublish: %v allocs", n)
	}
	bad := []byte{0, 1, '#'}
	if n := testing.AllocsPerRun(1000, func() {
		if DecodePublish(0x30, bad, V311, &p) == nil {
			t.Fatal("accepted")
		}
	}); n != 0 {
		t.Fatalf("DecodePublish error path: %v allocs", n)
	}
}

func TestAllocsAppendPublish(t *testing.T) {
	payload := make([]byte, 64)
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(1000, func() {
		buf = AppendPublish(buf[:0], 1, false, false, 7, payload, "/private/", idVar, "/group/", gidVar)
	}); n != 0 {
		t.Fatalf("AppendPublish: %v allocs", n)
	}
	if want := AppendPublish(nil, 1, false, false, 7, payload, "/private/alice/group/g1"); !bytes.Equal(buf, want) {
		t.Fatal("parts encode differently from the whole topic")
	}
	w := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(1000, func() {
		w = append(w[:0], buf...)
		SetPacketID(w, 9)
		w = AppendAck(w, PUBACK, 3)
		w = AppendConnack(w, false, 0)
		w = AppendSuback(w, 3, []byte{1})
		w = AppendUnsuback(w, 3)
		w = AppendPingresp(w)
	}); n != 0 {
		t.Fatalf("server encoders: %v allocs", n)
	}
	allocSink = w
}

func TestAllocsReaderAndMatch(t *testing.T) {
	pkt := AppendPublish(nil, 1, false, false, 7, make([]byte, 64), "/private/alice/group/g1")
	src := &loopReader{b: bytes.Repeat(pkt, 10)}
	r := NewReader(src, TMaxSize)
	var p Publish
	r.ReadPacket() // allocates the buffer
	if n := testing.AllocsPerRun(1000, func() {
		header, body, err := r.ReadPacket()
		if err != nil {
			t.Fatal(err)
		}
		if err := DecodePublish(header, body, V311, &p); err != nil {
			t.Fatal(err)
		}
		if !Match("/private/+/group/#", p.Topic) || !ValidTopicName(p.Topic) || !ValidFilter("/private/alice/#") {
			t.Fatal("no match")
		}
	}); n != 0 {
		t.Fatalf("ReadPacket+DecodePublish+Match: %v allocs", n)
	}
}

// loopReader returns b over and over, in reads of at most len(b).
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

func TestDecodersCheckTypeAndLevel(t *testing.T) {
	// Each decoder refuses another type's header (the server dispatched
	// wrongly) and a level it does not implement, before reading the body.
	decoders := map[string]struct {
		typ    byte
		flags  byte
		decode func(header byte, level byte) error
	}{
		"Connect":     {CONNECT, 0, func(h, _ byte) error { return DecodeConnect(h, nil, new(Connect)) }},
		"Publish":     {PUBLISH, 0, func(h, l byte) error { return DecodePublish(h, nil, l, new(Publish)) }},
		"Subscribe":   {SUBSCRIBE, 2, func(h, l byte) error { return DecodeSubscribe(h, nil, l, new(Subscribe)) }},
		"Unsubscribe": {UNSUBSCRIBE, 2, func(h, l byte) error { return DecodeUnsubscribe(h, nil, l, new(Unsubscribe)) }},
		"Ack":         {PUBACK, 0, func(h, l byte) error { _, err := DecodeAck(h, nil, l); return err }},
		"Empty":       {PINGREQ, 0, func(h, l byte) error { return DecodeEmpty(h, nil, l) }},
		"Connack":     {CONNACK, 0, func(h, l byte) error { _, _, err := DecodeConnack(h, nil, l); return err }},
		"Suback":      {SUBACK, 0, func(h, l byte) error { _, _, err := DecodeSuback(h, nil, l); return err }},
		"Unsuback":    {UNSUBACK, 0, func(h, l byte) error { _, err := DecodeUnsuback(h, nil, l); return err }},
	}
	for name, d := range decoders {
		for typ := range byte(16) {
			if typ == d.typ || (name == "Ack" && typ >= PUBACK && typ <= PUBCOMP) ||
				(name == "Empty" && typ == DISCONNECT) {
				continue
			}
			if err := d.decode(typ<<4|d.flags, V311); err != ErrPacketType {
				t.Errorf("%s given type %d: %v", name, typ, err)
			}
		}
		if name == "Connect" {
			continue // the level is in the body
		}
		h := d.typ<<4 | d.flags
		if err := d.decode(h, 0); err != ErrUnsupportedLevel {
			t.Errorf("%s level 0: %v", name, err)
		}
		if err := d.decode(h|0x01, V311); err != ErrFlags && !(d.typ == PUBLISH) {
			t.Errorf("%s flags: %v", name, err)
		}
	}
	if (&Error{0x81, "x"}).Error() != "mqtt: x" {
		t.Error("Error()")
	}
}

// The 5.0 hot path allocates nothing either: a PUBLISH with properties
// decodes, its forwarded properties are copied into a reused buffer, and
// it encodes again with an expiry, as the server does per message.
func TestAllocsV5Publish(t *testing.T) {
	pp := &PublishProps{Raw: hexBytes("01 01 03 00 04 74 65 78 74 26 00 01 6B 00 01 76"), Expiry: 60, HasExpiry: true, TopicAlias: 3}
	pkt := AppendPublishV5(nil, 1, false, false, 7, pp, make([]byte, 64), "/group/g1")
	header, body, _ := readOne(pkt, TMaxSize)
	var p Publish
	fw := make([]byte, 0, 64)
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(1000, func() {
		if err := DecodePublish(header, body, V5, &p); err != nil || p.TopicAlias != 3 || p.Expiry != 60 {
			t.Fatal(err)
		}
		fw = ForwardProps(fw[:0], p.Props)
		out := PublishProps{Raw: fw, Expiry: 59, HasExpiry: true}
		buf = AppendPublishV5(buf[:0], 1, false, false, 9, &out, p.Payload, "/private/", idVar, "/group/", gidVar)
	}); n != 0 {
		t.Fatalf("5.0 PUBLISH decode, forward, encode: %v allocs", n)
	}
	if !bytes.Equal(fw, hexBytes("01 01 03 00 04 74 65 78 74 26 00 01 6B 00 01 76")) {
		t.Fatalf("forwarded % X", fw)
	}
	allocSink = buf
}
