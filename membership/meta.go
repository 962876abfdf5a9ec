package membership

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Node metadata travels in memberlist's NodeMeta, at most metaMaxSize
// bytes (memberlist.MetaMaxSize). Format, version 1:
//
//	byte     format version (1)
//	byte     flags: bit 0 = leaving (the node is leaving the cluster)
//	uvarint  virtual nodes the sender builds its ring with
//	string   node id (must equal the memberlist node name)
//	string   HTTP address
//	string   software version
//	uvarint  number of MQTT addresses (at most metaMaxMQTT)
//	string…  MQTT addresses
//	uvarint  number of MQTT-over-TLS addresses (at most metaMaxMQTT),
//	         written only when there are some (no bytes left: none)
//	string…  MQTT-over-TLS addresses
//
// where string is a uvarint length and that many bytes of UTF-8.
// Readers ignore bytes after the fields they know, so a later version may
// append fields without breaking older nodes during a rolling upgrade;
// the version byte changes only for an incompatible format. Unknown flag
// bits are ignored for the same reason.
const (
	metaVersion   = 1
	metaMaxSize   = 512
	metaMaxMQTT   = 16
	metaMaxString = 255
	metaMaxID     = 64

	// maxVirtualNodes is the most virtual nodes a peer may advertise.
	maxVirtualNodes = 1 << 20

	flagLeaving = 1 << 0
)

// ErrBadMeta is wrapped by every metadata decoding error.
var ErrBadMeta = errors.New("membership: malformed node metadata")

// meta is what a node tells the others about itself.
type meta struct {
	ID           string
	HTTP         string
	Version      string
	MQTT         []string
	MQTTTLS      []string
	VirtualNodes int
	Leaving      bool
}

func (m *meta) node() Node {
	return Node{ID: m.ID, MQTT: m.MQTT, MQTTTLS: m.MQTTTLS, HTTP: m.HTTP, Version: m.Version}
}

// appendMeta encodes m after b. It fails if a field breaks the limits the
// decoder enforces or the result would not fit in metaMaxSize.
func appendMeta(b []byte, m *meta) ([]byte, error) {
	if err := validID(m.ID); err != nil {
		return nil, err
	}
	if len(m.MQTT) > metaMaxMQTT || len(m.MQTTTLS) > metaMaxMQTT {
		return nil, fmt.Errorf("%w: %d MQTT and %d MQTT-over-TLS addresses, at most %d each", ErrBadMeta, len(m.MQTT), len(m.MQTTTLS), metaMaxMQTT)
	}
	if m.VirtualNodes < 0 {
		return nil, fmt.Errorf("%w: negative virtual nodes", ErrBadMeta)
	}
	start := len(b)
	var flags byte
	if m.Leaving {
		flags |= flagLeaving
	}
	b = append(b, metaVersion, flags)
	b = binary.AppendUvarint(b, uint64(m.VirtualNodes))
	for _, s := range []string{m.ID, m.HTTP, m.Version} {
		if err := validString(s); err != nil {
			return nil, err
		}
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	lists := [][]string{m.MQTT, m.MQTTTLS}
	if len(m.MQTTTLS) == 0 {
		lists = lists[:1] // the metadata of a node without TLS is unchanged
	}
	for _, list := range lists {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, s := range list {
			if err := validString(s); err != nil {
				return nil, err
			}
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	if n := len(b) - start; n > metaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadMeta, n, metaMaxSize)
	}
	return b, nil
}

// decodeMeta parses metadata received from a peer. It never panics and
// returns an error wrapping ErrBadMeta for anything it does not accept.
func decodeMeta(b []byte) (meta, error) {
	var m meta
	if len(b) > metaMaxSize {
		return m, fmt.Errorf("%w: %d bytes", ErrBadMeta, len(b))
	}
	if len(b) < 2 {
		return m, fmt.Errorf("%w: %d bytes", ErrBadMeta, len(b))
	}
	if b[0] != metaVersion {
		return m, fmt.Errorf("%w: format version %d", ErrBadMeta, b[0])
	}
	m.Leaving = b[1]&flagLeaving != 0
	b = b[2:]
	vn, n := binary.Uvarint(b)
	if n <= 0 || vn > maxVirtualNodes {
		return m, fmt.Errorf("%w: virtual nodes", ErrBadMeta)
	}
	m.VirtualNodes, b = int(vn), b[n:]

	str := func(field string) (string, error) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > metaMaxString || l > uint64(len(b)-n) {
			return "", fmt.Errorf("%w: %s length", ErrBadMeta, field)
		}
		s := string(b[n : n+int(l)])
		b = b[n+int(l):]
		if err := validString(s); err != nil {
			return "", fmt.Errorf("%s: %w", field, err)
		}
		return s, nil
	}
	var err error
	if m.ID, err = str("id"); err != nil {
		return m, err
	}
	if err = validID(m.ID); err != nil {
		return m, err
	}
	if m.HTTP, err = str("http"); err != nil {
		return m, err
	}
	if m.Version, err = str("version"); err != nil {
		return m, err
	}
	list := func(field string) ([]string, error) {
		cnt, n := binary.Uvarint(b)
		if n <= 0 || cnt > metaMaxMQTT {
			return nil, fmt.Errorf("%w: %s address count", ErrBadMeta, field)
		}
		b = b[n:]
		if cnt == 0 {
			return nil, nil
		}
		out := make([]string, cnt)
		for i := range out {
			if out[i], err = str(field); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if m.MQTT, err = list("mqtt"); err != nil {
		return m, err
	}
	if len(b) > 0 { // nodes of an older version end here
		if m.MQTTTLS, err = list("mqtt_tls"); err != nil {
			return m, err
		}
	}
	return m, nil
}

// validID accepts node ids of 1 to metaMaxID printable ASCII bytes, no
// spaces.
func validID(id string) error {
	if id == "" || len(id) > metaMaxID {
		return fmt.Errorf("%w: node id %q: want 1 to %d bytes", ErrBadMeta, id, metaMaxID)
	}
	for i := 0; i < len(id); i++ {
		// A node id is also a NATS subject token (fanout delivers on
		// pushring.<cluster>.node.<id>): '.', '*' and '>' would put a
		// peer on the ring that nobody can reach.
		if c := id[i]; c <= ' ' || c > '~' || c == '.' || c == '*' || c == '>' {
			return fmt.Errorf("%w: node id %q: byte %#x", ErrBadMeta, id, c)
		}
	}
	return nil
}

// validString accepts UTF-8 without control characters, at most
// metaMaxString bytes.
func validString(s string) error {
	if len(s) > metaMaxString {
		return fmt.Errorf("%w: %d-byte string", ErrBadMeta, len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: invalid UTF-8", ErrBadMeta)
	}
	for _, r := range s {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("%w: control character %#x", ErrBadMeta, r)
		}
	}
	return nil
}
