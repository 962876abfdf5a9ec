package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection: Read peeks on
// the server end.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// v2 builds a version 2 header.
func v2(cmd, fam byte, addrs []byte, tlvs []byte) []byte {
	b := append([]byte(nil), v2sig[:]...)
	b = append(b, cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(addrs)+len(tlvs)))
	return append(append(b, addrs...), tlvs...)
}

func v4addrs() []byte {
	return []byte{203, 0, 113, 7, 10, 0, 0, 1, 0xc3, 0x50, 0x07, 0x5b} // 203.0.113.7:50000 → 10.0.0.1:1883
}

func v6addrs() []byte {
	src := netip.MustParseAddr("2001:db8::7").As16()
	dst := netip.MustParseAddr("2001:db8::1").As16()
	b := append(src[:], dst[:]...)
	return append(b, 0xc3, 0x50, 0x22, 0xb3) // 50000 → 8883
}

var good = []struct {
	name   string
	header []byte
	want   Header
}{
	{"v1 tcp4", []byte("PROXY TCP4 203.0.113.7 10.0.0.1 50000 1883\r\n"),
		Header{Version: 1, Source: netip.MustParseAddrPort("203.0.113.7:50000"), Dest: netip.MustParseAddrPort("10.0.0.1:1883")}},
	{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 50000 8883\r\n"),
		Header{Version: 1, Source: netip.MustParseAddrPort("[2001:db8::7]:50000"), Dest: netip.MustParseAddrPort("[2001:db8::1]:8883")}},
	{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}},
	{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"), Header{Version: 1, Local: true}},
	{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		Header{Version: 1, Source: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Dest: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
	{"v2 tcp4", v2(cmdProxy, tcpOverV4, v4addrs(), nil),
		Header{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:50000"), Dest: netip.MustParseAddrPort("10.0.0.1:1883")}},
	{"v2 tcp4 with TLVs", v2(cmdProxy, tcpOverV4, v4addrs(), []byte{0xea, 0, 3, 'v', 'p', 'c', 0x04, 0, 0}),
		Header{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:50000"), Dest: netip.MustParseAddrPort("10.0.0.1:1883")}},
	{"v2 tcp6", v2(cmdProxy, tcpOverV6, v6addrs(), nil),
		Header{Version: 2, Source: netip.MustParseAddrPort("[2001:db8::7]:50000"), Dest: netip.MustParseAddrPort("[2001:db8::1]:8883")}},
	{"v2 local", v2(cmdLocal, 0x00, nil, nil), Header{Version: 2, Local: true}},
	{"v2 local with addresses", v2(cmdLocal, tcpOverV4, v4addrs(), nil), Header{Version: 2, Local: true}},
	{"v2 unspec", v2(cmdProxy, 0x00, nil, nil), Header{Version: 2, Local: true}},
	{"v2 unix", v2(cmdProxy, 0x31, make([]byte, 216), nil), Header{Version: 2, Local: true}},
}

// TestReadLeavesWhatFollows: each header is read whole and the bytes
// after it (the client's first MQTT packet) are left for the next reader,
// however the header is split across TCP segments.
func TestReadLeavesWhatFollows(t *testing.T) {
	after := []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			for split := 1; split <= len(tc.header); split++ {
				client, server := tcpPair(t)
				server.SetReadDeadline(time.Now().Add(10 * time.Second))
				go func() {
					client.Write(tc.header[:split])
					client.Write(append(append([]byte(nil), tc.header[split:]...), after...))
				}()
				h, err := Read(server)
				if err != nil || h != tc.want {
					t.Fatalf("split %d: Read = %+v, %v; want %+v", split, h, err, tc.want)
				}
				rest := make([]byte, len(after))
				if _, err := io.ReadFull(server, rest); err != nil || !bytes.Equal(rest, after) {
					t.Fatalf("split %d: after the header: %q, %v; want %q", split, rest, err, after)
				}
			}
		})
	}
}

// TestReadByteWise: a connection that cannot be peeked (no socket) is
// read a byte a call, with the same results.
func TestReadByteWise(t *testing.T) {
	for _, tc := range good {
		client, server := net.Pipe()
		go func() { client.Write(append(append([]byte(nil), tc.header...), 'M')); client.Close() }()
		h, err := Read(server)
		if err != nil || h != tc.want {
			t.Fatalf("%s: Read = %+v, %v; want %+v", tc.name, h, err, tc.want)
		}
		if rest, _ := io.ReadAll(server); string(rest) != "M" {
			t.Fatalf("%s: after the header: %q", tc.name, rest)
		}
	}
}

func TestReadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		input []byte
	}{
		{"mqtt connect", []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 0}},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"v1 lower case", []byte("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n")},
		{"v1 short", []byte("PROXY \r\n123456789")},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n")},
		{"v1 tcp6 with v4", []byte("PROXY TCP6 10.0.0.2 10.0.0.1 1 2\r\n")},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n")},
		{"v1 port too big", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n")},
		{"v1 port signed", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n")},
		{"v1 port empty", []byte("PROXY TCP4 1.2.3.4 5.6.7.8  2\r\n")},
		{"v1 too few fields", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n")},
		{"v1 too many fields", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n")},
		{"v1 udp", []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n")},
		{"v1 no crlf within 107", append([]byte("PROXY UNKNOWN "), bytes.Repeat([]byte("x"), 200)...)},
		{"v1 lf only", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + string(bytes.Repeat([]byte("x"), 100)))},
		{"v2 version 1", v2(0x11, tcpOverV4, v4addrs(), nil)},
		{"v2 command 2", v2(0x22, tcpOverV4, v4addrs(), nil)},
		{"v2 family 4", v2(cmdProxy, 0x41, v4addrs(), nil)},
		{"v2 protocol 3", v2(cmdProxy, 0x13, v4addrs(), nil)},
		{"v2 tcp4 short", v2(cmdProxy, tcpOverV4, v4addrs()[:11], nil)},
		{"v2 tcp6 short", v2(cmdProxy, tcpOverV6, v6addrs()[:35], nil)},
	} {
		client, server := tcpPair(t)
		server.SetReadDeadline(time.Now().Add(10 * time.Second))
		go func() { client.Write(tc.input); client.(*net.TCPConn).CloseWrite() }()
		h, err := Read(server)
		if err == nil {
			t.Errorf("%s: Read = %+v, want an error", tc.name, h)
			continue
		}
		if !errors.Is(err, ErrHeader) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Errorf("%s: error %v, want ErrHeader or an early end", tc.name, err)
		}
	}
}

// TestReadDeadline: a peer that sends part of a header and stops is cut
// off by the caller's deadline, in both reading modes.
func TestReadDeadline(t *testing.T) {
	for _, part := range []string{"PRO", "PROXY TCP4 1.2.3.4", string(v2sig[:]) + "\x21\x11\x00\x0c\x01"} {
		client, server := tcpPair(t)
		client.Write([]byte(part))
		server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := Read(server); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%q then silence: %v, want the deadline", part, err)
		}
	}
}

// readerConn is a net.Conn over bytes, for the fuzzer.
type readerConn struct {
	net.Conn
	r *bytes.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// FuzzRead: no input panics or reads past its header; a version 1 header
// read ends at its first CRLF, a version 2 one at its length.
func FuzzRead(f *testing.F) {
	for _, tc := range good {
		f.Add(append(tc.header, 'M'))
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		h, err := Read(readerConn{r: r})
		if err != nil {
			return
		}
		used := in[:len(in)-r.Len()]
		switch h.Version {
		case 1:
			if i := bytes.Index(used, crlf); i != len(used)-2 || len(used) > maxV1 {
				t.Fatalf("version 1 read %q", used)
			}
			if !h.Local && (!h.Source.IsValid() || !h.Dest.IsValid()) {
				t.Fatalf("version 1 without addresses: %+v", h)
			}
		case 2:
			if len(used) != 16+int(binary.BigEndian.Uint16(used[14:16])) {
				t.Fatalf("version 2 read %d bytes of %x", len(used), used)
			}
		default:
			t.Fatalf("version %d", h.Version)
		}
	})
}
