package membership

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

// metaCases are the expected bytes of the metadata format, reused by the
// encode, decode and fuzz tests.
var metaCases = []struct {
	name string
	meta meta
	raw  []byte
}{
	{
		name: "minimal",
		meta: meta{ID: "n1", VirtualNodes: 128},
		raw: []byte{
			1, 0, // version, flags
			0x80, 0x01, // 128 virtual nodes (uvarint)
			2, 'n', '1', // id
			0, // http
			0, // version
			0, // no MQTT addresses
		},
	},
	{
		name: "full",
		meta: meta{ID: "node-a", HTTP: "10.0.0.1:8080", Version: "v1.2", MQTT: []string{"10.0.0.1:1883", "h:8883"}, VirtualNodes: 16},
		raw: bytes.Join([][]byte{
			{1, 0, 16},
			{6}, []byte("node-a"),
			{13}, []byte("10.0.0.1:8080"),
			{4}, []byte("v1.2"),
			{2},
			{13}, []byte("10.0.0.1:1883"),
			{6}, []byte("h:8883"),
		}, nil),
	},
	{
		name: "tls",
		meta: meta{ID: "n", MQTT: []string{"h:1883"}, MQTTTLS: []string{"h:8883", "[::1]:8883"}, VirtualNodes: 1},
		raw: bytes.Join([][]byte{
			{1, 0, 1, 1, 'n', 0, 0},
			{1, 6}, []byte("h:1883"),
			{2, 6}, []byte("h:8883"),
			{10}, []byte("[::1]:8883"),
		}, nil),
	},
	{
		name: "leaving",
		meta: meta{ID: "x", VirtualNodes: 1, Leaving: true},
		raw:  []byte{1, 1, 1, 1, 'x', 0, 0, 0},
	},
}

func TestMetaEncode(t *testing.T) {
	for _, tc := range metaCases {
		got, err := appendMeta(nil, &tc.meta)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, tc.raw) {
			t.Errorf("%s:\n got % x\nwant % x", tc.name, got, tc.raw)
		}
	}
}

func TestMetaDecode(t *testing.T) {
	for _, tc := range metaCases {
		got, err := decodeMeta(tc.raw)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !reflect.DeepEqual(got, tc.meta) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.meta)
		}
		// Later versions may append fields; unknown flags are ignored.
		ext := append([]byte{}, tc.raw...)
		if len(tc.meta.MQTTTLS) == 0 {
			ext = append(ext, 0) // an empty TLS address list, then more
		}
		ext = append(ext, 0xff, 0x00)
		ext[1] |= 0x80
		if got, err := decodeMeta(ext); err != nil || !reflect.DeepEqual(got, tc.meta) {
			t.Errorf("%s with trailing bytes: %+v, %v", tc.name, got, err)
		}
	}
}

func TestMetaDecodeErrors(t *testing.T) {
	full := metaCases[1].raw
	bad := map[string][]byte{
		"empty":           nil,
		"one byte":        {1},
		"version 2":       {2, 0, 1, 1, 'x', 0, 0, 0},
		"no vnodes":       {1, 0},
		"empty id":        {1, 0, 1, 0, 0, 0, 0},
		"space in id":     {1, 0, 1, 2, 'a', ' ', 0, 0, 0},
		"id too long":     append([]byte{1, 0, 1, 65}, bytes.Repeat([]byte{'a'}, 65)...),
		"length past end": {1, 0, 1, 9, 'x'},
		"truncated":       full[:len(full)-1],
		"bad utf8":        {1, 0, 1, 1, 'x', 2, 0xff, 0xfe, 0, 0},
		"control char":    {1, 0, 1, 1, 'x', 1, '\n', 0, 0},
		"17 mqtt":         {1, 0, 1, 1, 'x', 0, 0, 17},
		"17 mqtt_tls":     {1, 0, 1, 1, 'x', 0, 0, 0, 17},
		"tls truncated":   {1, 0, 1, 1, 'x', 0, 0, 0, 1, 3, 'h', ':'},
		"huge varint":     {1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"too big":         bytes.Repeat([]byte{1}, metaMaxSize+1),
	}
	for name, raw := range bad {
		if _, err := decodeMeta(raw); !errors.Is(err, ErrBadMeta) {
			t.Errorf("%s: err = %v, want ErrBadMeta", name, err)
		}
	}
}

// TestMetaMaxSizeIsMemberlists pins metaMaxSize, written out in meta.go, to
// the limit memberlist puts on NodeMeta.
func TestMetaMaxSizeIsMemberlists(t *testing.T) {
	if metaMaxSize != memberlist.MetaMaxSize {
		t.Fatalf("metaMaxSize %d, memberlist.MetaMaxSize %d", metaMaxSize, memberlist.MetaMaxSize)
	}
}

func TestMetaEncodeLimits(t *testing.T) {
	long := strings.Repeat("a", 200) + ":1883"
	for name, m := range map[string]meta{
		"no id":        {},
		"bad id":       {ID: "a b"},
		"dotted id":    {ID: "x.y"},
		"star id":      {ID: "x*"},
		"gt id":        {ID: ">"},
		"17 mqtt":      {ID: "x", MQTT: make([]string, 17)},
		"17 mqtt_tls":  {ID: "x", MQTTTLS: make([]string, 17)},
		"over 512":     {ID: "x", MQTT: []string{long, long, long}},
		"long string":  {ID: "x", HTTP: strings.Repeat("h", 256)},
		"control char": {ID: "x", Version: "v\x00"},
	} {
		if _, err := appendMeta(nil, &m); !errors.Is(err, ErrBadMeta) {
			t.Errorf("%s: err = %v, want ErrBadMeta", name, err)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, tc := range metaCases {
		f.Add(tc.raw)
	}
	f.Add([]byte{1, 0, 1, 1, 'x', 0, 0, 16})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := decodeMeta(raw)
		if err != nil {
			if !errors.Is(err, ErrBadMeta) {
				t.Fatalf("error %v does not wrap ErrBadMeta", err)
			}
			return
		}
		// Whatever decodes re-encodes, within the limits, to the same meta.
		enc, err := appendMeta(nil, &m)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		if len(enc) > metaMaxSize {
			t.Fatalf("%d bytes", len(enc))
		}
		m2, err := decodeMeta(enc)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip: %+v → %+v, %v", m, m2, err)
		}
	})
}
