package journal

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

func TestRecordBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    message.Message
		prev uint64
		want []byte
	}{
		{"direct", message.Message{ID: 0x0102030405060708, Kind: message.Direct, From: "dev.1", To: "alice", QoS: 1, Payload: []byte("hi")}, 0,
			[]byte("\x01\x01\x01" + "\x01\x02\x03\x04\x05\x06\x07\x08" + "\x05dev.1" + "\x05alice" + "\x02hi")},
		{"group", message.Message{ID: 0xfedcba9876543210, Kind: message.Group, To: "team.a", QoS: 0, Payload: bytes.Repeat([]byte("x"), 130)}, 0,
			[]byte("\x01\x02\x00" + "\xfe\xdc\xba\x98\x76\x54\x32\x10" + "\x00" + "\x06team.a" + "\x82\x01" + strings.Repeat("x", 130))},
		{"prev", message.Message{ID: 0x0102030405060708, Kind: message.Direct, From: "dev.1", To: "alice", QoS: 1, Payload: []byte("hi")}, 0x1112131415161718,
			[]byte("\x02\x01\x01" + "\x01\x02\x03\x04\x05\x06\x07\x08" + "\x11\x12\x13\x14\x15\x16\x17\x18" + "\x05dev.1" + "\x05alice" + "\x02hi")},
		{"extension", message.Message{ID: 0x0102030405060708, Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte("hi"),
			Expires: 1000, Props: []byte{0x01, 0x01}}, 0,
			[]byte("\x01\x81\x01" + "\x01\x02\x03\x04\x05\x06\x07\x08" + "\x00" + "\x05alice" + "\x02hi" + "\xe8\x07" + "\x02\x01\x01")},
		{"extension, expiry only", message.Message{ID: 1, Kind: message.Group, To: "g", Expires: 1}, 0,
			[]byte("\x01\x82\x00" + "\x00\x00\x00\x00\x00\x00\x00\x01" + "\x00" + "\x01g" + "\x00" + "\x01" + "\x00")},
	} {
		got := AppendRecord([]byte("prefix"), &tc.m, tc.prev)
		if !bytes.Equal(got[6:], tc.want) || string(got[:6]) != "prefix" {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		if n := recordSize(&tc.m, tc.prev); n != len(tc.want) {
			t.Errorf("%s: recordSize %d, want %d", tc.name, n, len(tc.want))
		}
		m, prev, err := DecodeRecord(tc.want)
		if err != nil || !sameMessage(m, &tc.m) || prev != tc.prev {
			t.Errorf("%s: decoded %+v prev %x, %v", tc.name, m, prev, err)
		}
		// The message owns its bytes.
		buf := bytes.Clone(tc.want)
		m, _, _ = DecodeRecord(buf)
		clear(buf)
		if !sameMessage(m, &tc.m) {
			t.Errorf("%s: the decoded message aliases its record", tc.name)
		}
	}
}

func sameMessage(a, b *message.Message) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.From == b.From && a.To == b.To && a.QoS == b.QoS &&
		bytes.Equal(a.Payload, b.Payload) && a.Expires == b.Expires && bytes.Equal(a.Props, b.Props)
}

// TestDecodeRecordStrict: every way a record can be malformed is refused.
func TestDecodeRecordStrict(t *testing.T) {
	good := "\x01\x01\x01" + "\x01\x02\x03\x04\x05\x06\x07\x08" + "\x05dev.1" + "\x05alice" + "\x02hi"
	if _, _, err := DecodeRecord([]byte(good)); err != nil {
		t.Fatal(err)
	}
	prev := "\x02" + good[1:11] + "\x00\x00\x00\x00\x00\x00\x00\x09" + good[11:]
	if _, p, err := DecodeRecord([]byte(prev)); err != nil || p != 9 {
		t.Fatal(p, err)
	}
	topic := good[:1] + "\x03" + good[2:11] + "\x05dev.1" + "\x0c/a b/c.d/\xc3\xa9/" + "\x02hi"
	if m, _, err := DecodeRecord([]byte(topic)); err != nil || m.Kind != message.Topic || m.To != "/a b/c.d/\u00e9/" {
		t.Fatalf("topic record: %+v, %v", m, err)
	}
	for name, rec := range map[string]string{
		"empty":              "",
		"short":              good[:10],
		"version 0":          "\x00" + good[1:],
		"version 3":          "\x03" + good[1:],
		"version 2 prev 0":   "\x02" + good[1:11] + "\x00\x00\x00\x00\x00\x00\x00\x00" + good[11:],
		"version 2 short":    prev[:18],
		"version 2 no prev":  "\x02" + good[1:],
		"kind 0":             good[:1] + "\x00" + good[2:],
		"kind 4":             good[:1] + "\x04" + good[2:],
		"topic with +":       good[:1] + "\x03" + good[2:11] + "\x05dev.1" + "\x03a/+" + "\x02hi",
		"topic with #":       good[:1] + "\x03" + good[2:11] + "\x05dev.1" + "\x03a/#" + "\x02hi",
		"topic with NUL":     good[:1] + "\x03" + good[2:11] + "\x05dev.1" + "\x03a\x00b" + "\x02hi",
		"empty topic":        good[:1] + "\x03" + good[2:11] + "\x05dev.1" + "\x00" + "\x02hi",
		"qos 3":              good[:2] + "\x03" + good[3:],
		"trailing byte":      good + "!",
		"truncated payload":  good[:len(good)-1],
		"padded from len":    good[:11] + "\x85\x00dev.1" + "\x05alice" + "\x02hi",
		"padded payload":     good[:11] + "\x05dev.1" + "\x05alice" + "\x82\x00hi",
		"long from":          good[:11] + "\x41" + strings.Repeat("a", 65) + "\x05alice" + "\x02hi",
		"empty to":           good[:11] + "\x05dev.1" + "\x00" + "\x02hi",
		"to with =":          good[:11] + "\x05dev.1" + "\x05al=ce" + "\x02hi",
		"to with *":          good[:11] + "\x05dev.1" + "\x05al*ce" + "\x02hi",
		"to ..":              good[:11] + "\x05dev.1" + "\x02.." + "\x02hi",
		"from with space":    good[:11] + "\x05dev 1" + "\x05alice" + "\x02hi",
		"huge payload len":   good[:11] + "\x05dev.1" + "\x05alice" + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01hi",
		"varint overflow":    good[:11] + "\x05dev.1" + "\x05alice" + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
		"empty extension":    good[:1] + "\x81" + good[2:] + "\x00\x00",
		"no extension":       good[:1] + "\x81" + good[2:],
		"short extension":    good[:1] + "\x81" + good[2:] + "\x01\x05ab",
		"padded expires":     good[:1] + "\x81" + good[2:] + "\x81\x00\x00",
		"expires past int64": good[:1] + "\x81" + good[2:] + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x00",
		"extension kind 4":   good[:1] + "\x84" + good[2:] + "\x01\x00",
	} {
		if m, _, err := DecodeRecord([]byte(rec)); err == nil || !errors.Is(err, ErrBadRecord) {
			t.Errorf("%s: decoded %+v, %v", name, m, err)
		}
	}
}

// TestValidIDIsStores: the journal's id check is the store's.
func TestValidIDIsStores(t *testing.T) {
	ids := []string{"", ".", "..", "...", "a", "a.b", "a=b", "a*", ">", "a b", "a/b", "é", "a\x00",
		strings.Repeat("a", 64), strings.Repeat("a", 65), "A-Z_0.9", "-", "_"}
	for c := 0; c < 256; c++ {
		ids = append(ids, "x"+string(rune(c)), string([]byte{byte(c)}))
	}
	for _, id := range ids {
		if validID(id) != store.ValidID(id) || validID([]byte(id)) != store.ValidID(id) {
			t.Errorf("validID(%q) = %v, store.ValidID = %v", id, validID(id), store.ValidID(id))
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add(AppendRecord(nil, &message.Message{ID: 1, Kind: message.Direct, From: "a", To: "b", QoS: 1, Payload: []byte("x")}, 0))
	f.Add(AppendRecord(nil, &message.Message{ID: 1 << 63, Kind: message.Group, To: "g.1", Payload: bytes.Repeat([]byte{0}, 300)}, 0))
	f.Add(AppendRecord(nil, &message.Message{ID: 2, Kind: message.Direct, From: "a", To: "b", QoS: 1, Payload: []byte("x")}, 1))
	f.Add([]byte("\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01a\x00"))
	f.Add(AppendRecord(nil, &message.Message{ID: 3, Kind: message.Direct, To: "b", QoS: 1, Expires: 1 << 40, Props: []byte{1, 1}}, 2))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, prev, err := DecodeRecord(data)
		if err != nil {
			return
		}
		if !ValidMessage(m) {
			t.Fatalf("decoded an invalid message %+v", m)
		}
		// One record per message: it re-encodes to the same bytes.
		enc := AppendRecord(nil, m, prev)
		if !bytes.Equal(enc, data) {
			t.Fatalf("re-encoded %q, was %q", enc, data)
		}
		m2, prev2, err := DecodeRecord(enc)
		if err != nil || !sameMessage(m, m2) || prev2 != prev {
			t.Fatalf("round trip: %+v, %v, want %+v", m2, err, m)
		}
	})
}
