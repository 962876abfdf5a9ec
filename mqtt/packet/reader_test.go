package packet

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// countingReader counts the bytes handed out by r.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// zeros is an endless stream of zero bytes ("100 MB of junk").
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestReaderHugeDeclaredLength(t *testing.T) {
	// A huge declared length is refused after the fixed header, before
	// any body byte is buffered beyond the first read, with nothing
	// allocated but the initial buffer.
	for _, hdr := range [][]byte{{0x10, 0xFF, 0xFF, 0xFF, 0x7F}, {0x30, 0x80, 0x80, 0x80, 0x74}} {
		src := &countingReader{r: io.MultiReader(bytes.NewReader(hdr), zeros{})}
		r := NewReaderSize(src, 1<<20, 64)
		if _, _, err := r.ReadPacket(); err != ErrTooLarge {
			t.Fatalf("% X: %v, want ErrTooLarge", hdr, err)
		}
		if src.n > 64 || cap(r.buf) > 64 {
			t.Fatalf("% X: read %d bytes, buffer %d", hdr, src.n, cap(r.buf))
		}
		if _, _, err := r.ReadPacket(); err != ErrTooLarge {
			t.Fatalf("error not sticky: %v", err)
		}
	}
}

func TestReaderSlowloris(t *testing.T) {
	// Slowloris (NanoMQ CVE-2026-25627): a declared length within maxSize with
	// only 3 bytes of body costs no more than the initial buffer.
	pkt := []byte{0x10, 0xC0, 0x84, 0x3D, 1, 2, 3} // declares 1,000,000
	r := NewReaderSize(bytes.NewReader(pkt), 4<<20, 256)
	if _, _, err := r.ReadPacket(); err != io.ErrUnexpectedEOF {
		t.Fatalf("%v, want io.ErrUnexpectedEOF", err)
	}
	if cap(r.buf) > 256 {
		t.Fatalf("buffer %d for 7 bytes received", cap(r.buf))
	}
}

func TestReaderGrowthFollowsData(t *testing.T) {
	// The buffer grows only as bytes arrive, by doubling, never beyond the
	// packet's size.
	payload := bytes.Repeat([]byte{'x'}, 100_000)
	pkt := AppendPublish(nil, 0, false, false, 0, payload, "t")
	for _, cut := range []int{10, 1000, 50_000, len(pkt) - 1} {
		src := &chunkReader{b: pkt[:cut]}
		r := NewReaderSize(src, 1<<20, 64)
		if _, _, err := r.ReadPacket(); err != io.ErrUnexpectedEOF {
			t.Fatal(err)
		}
		if c := cap(r.buf); c > max(64, 2*cut) || c > len(pkt) {
			t.Fatalf("%d bytes received, buffer %d", cut, c)
		}
	}
	r := NewReaderSize(bytes.NewReader(pkt), 1<<20, 64)
	_, body, err := r.ReadPacket()
	if err != nil || len(body) != len(pkt)-4 {
		t.Fatal(err)
	}
	if cap(r.buf) > len(pkt) {
		t.Fatalf("buffer %d for a %d-byte packet", cap(r.buf), len(pkt))
	}
}

func TestReaderShrinksAfterLargePacket(t *testing.T) {
	big := AppendPublish(nil, 0, false, false, 0, make([]byte, 10_000), "t")
	small := AppendPingreq(nil)
	var stream []byte
	stream = append(stream, big...)
	stream = append(stream, big...)
	stream = append(stream, small...)
	stream = append(stream, small...)
	r := NewReaderSize(&chunkReader{b: stream, sizes: []int{len(big), len(big), 2, 2}}, 1<<20, 64)
	r.ReadPacket()
	bigBuf := cap(r.buf)
	r.ReadPacket() // another big one: the big buffer is kept
	if cap(r.buf) != bigBuf {
		t.Fatalf("buffer reallocated between large packets: %d → %d", bigBuf, cap(r.buf))
	}
	r.ReadPacket() // small, read into the big buffer
	r.ReadPacket() // after a small packet with nothing buffered: dropped
	if cap(r.buf) != 64 {
		t.Fatalf("buffer %d after small packets, want 64", cap(r.buf))
	}
}

func TestReaderBufferedCoalesces(t *testing.T) {
	a := AppendPublish(nil, 1, false, false, 1, []byte("a"), "t")
	b := AppendAck(nil, PUBACK, 1)
	r := NewReader(bytes.NewReader(append(append([]byte{}, a...), b...)), 1024)
	if _, _, err := r.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() != len(b) {
		t.Fatalf("Buffered %d, want %d", r.Buffered(), len(b))
	}
	if _, _, err := r.ReadPacket(); err != nil || r.Buffered() != 0 {
		t.Fatal(err, r.Buffered())
	}
	if _, _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("%v, want io.EOF", err)
	}
}

func TestReaderCheck(t *testing.T) {
	// The server refuses a first packet that is not CONNECT without
	// reading its body.
	errNotConnect := errors.New("first packet is not CONNECT")
	pub := AppendPublish(nil, 0, false, false, 0, make([]byte, 5000), "t")
	src := &countingReader{r: bytes.NewReader(pub)}
	r := NewReaderSize(src, 1<<20, 64)
	var seen int
	r.SetCheck(func(header byte, remaining int) error {
		seen = remaining
		if header>>4 != CONNECT {
			return errNotConnect
		}
		return nil
	})
	if _, _, err := r.ReadPacket(); err != errNotConnect {
		t.Fatal(err)
	}
	if seen != len(pub)-3 || src.n > 64 {
		t.Fatalf("remaining %d, read %d bytes", seen, src.n)
	}
}

func TestReaderSetMaxSize(t *testing.T) {
	pkt := AppendPublish(nil, 0, false, false, 0, make([]byte, 100), "t")
	stream := append(append([]byte{}, pkt...), pkt...)
	r := NewReader(bytes.NewReader(stream), 1000)
	if _, _, err := r.ReadPacket(); err != nil {
		t.Fatal(err)
	}
	r.SetMaxSize(50)
	if _, _, err := r.ReadPacket(); err != ErrTooLarge {
		t.Fatalf("%v, want ErrTooLarge", err)
	}
	for in, want := range map[int]int{0: DefaultMaxSize, -1: DefaultMaxSize, 1 << 30: MaxRemainingLength, 5: 5} {
		r.SetMaxSize(in)
		if r.maxSize != want {
			t.Errorf("SetMaxSize(%d): %d", in, r.maxSize)
		}
	}
}

func TestReaderEOF(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want error
	}{
		{nil, io.EOF},
		{[]byte{0x30}, io.ErrUnexpectedEOF},
		{[]byte{0x30, 0x85}, io.ErrUnexpectedEOF},
		{[]byte{0x30, 0x05, 0x00}, io.ErrUnexpectedEOF},
	} {
		r := NewReader(bytes.NewReader(tc.in), 100)
		if _, _, err := r.ReadPacket(); err != tc.want {
			t.Errorf("% X: %v, want %v", tc.in, err, tc.want)
		}
	}
	// Data and an error in one Read: the data first, then the error.
	r := NewReader(&dataThenErr{b: AppendPingreq(nil), err: io.ErrClosedPipe}, 100)
	if h, _, err := r.ReadPacket(); err != nil || h != 0xC0 {
		t.Fatal(h, err)
	}
	if _, _, err := r.ReadPacket(); err != io.ErrClosedPipe {
		t.Fatal(err)
	}
	// A reader that never makes progress.
	r = NewReader(&chunkReader{b: []byte{0x30}, sizes: []int{0}}, 100)
	if _, _, err := r.ReadPacket(); err != io.ErrNoProgress {
		t.Fatal(err)
	}
	// A reader that lies about its count.
	r = NewReader(liar{}, 100)
	if _, _, err := r.ReadPacket(); err == nil {
		t.Fatal("accepted a bad count")
	}
}

type dataThenErr struct {
	b   []byte
	err error
}

func (d *dataThenErr) Read(p []byte) (int, error) {
	if len(d.b) == 0 {
		return 0, d.err
	}
	n := copy(p, d.b)
	d.b = d.b[n:]
	return n, d.err
}

type liar struct{}

func (liar) Read(p []byte) (int, error) { return len(p) + 1, nil }

func TestParseFixedHeader(t *testing.T) {
	for _, tc := range []struct {
		in     []byte
		hl, rl int
		err    error
	}{
		{[]byte{0x30}, 0, 0, nil},
		{[]byte{0x30, 0x00}, 2, 0, nil},
		{[]byte{0x30, 0x7F}, 2, 127, nil},
		{[]byte{0x30, 0x80, 0x01}, 3, 128, nil},
		{[]byte{0x30, 0xFF, 0x7F}, 3, 16383, nil},
		{[]byte{0x30, 0x80, 0x80, 0x01}, 4, 16384, nil},
		{[]byte{0x30, 0xFF, 0xFF, 0xFF, 0x7F}, 5, MaxRemainingLength, nil},
		{[]byte{0x30, 0xFF, 0xFF, 0xFF}, 0, 0, nil},
		{[]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF}, 0, 0, ErrRemainingLength},
		{[]byte{0x30, 0x80, 0x80, 0x80, 0x80, 0x01}, 0, 0, ErrRemainingLength},
		{[]byte{0x30, 0x80, 0x00}, 0, 0, ErrRemainingLength},
		{[]byte{0x30, 0xFF, 0x80, 0x00}, 0, 0, ErrRemainingLength},
	} {
		hl, rl, err := parseFixedHeader(tc.in)
		if hl != tc.hl || rl != tc.rl || err != tc.err {
			t.Errorf("% X: %d %d %v, want %d %d %v", tc.in, hl, rl, err, tc.hl, tc.rl, tc.err)
		}
	}
	// appendVarint and parseFixedHeader agree at every boundary.
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, MaxRemainingLength} {
		b := appendVarint([]byte{0x30}, n)
		hl, rl, err := parseFixedHeader(b)
		if err != nil || rl != n || hl != len(b) || hl-1 != varintLen(n) {
			t.Errorf("%d: % X → %d %d %v", n, b, hl, rl, err)
		}
	}
}

func TestReaderSetPartial(t *testing.T) {
	// A packet whose bytes come one at a time reports itself started
	// once, at its first byte (before the fixed header is whole); whole
	// packets already buffered never do.
	pub := append([]byte{0x30, 0x80, 0x01}, make([]byte, 128)...)
	stream := append(append(append([]byte{}, pub...), 0xC0, 0x00), 0xC0, 0x00)
	calls := 0
	var atCall []int // bytes buffered when partial was called
	r := NewReader(iotestOneByte{bytes.NewReader(stream)}, 1<<20)
	r.SetPartial(func() { calls++; atCall = append(atCall, r.Buffered()) })
	for i := range 3 {
		if _, _, err := r.ReadPacket(); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if calls != i+1 || atCall[i] != 1 {
			t.Fatalf("packet %d: %d calls, buffered %v", i, calls, atCall)
		}
	}
	calls = 0
	r = NewReader(bytes.NewReader(stream), 1<<20)
	r.SetPartial(func() { calls++ })
	for range 3 {
		if _, _, err := r.ReadPacket(); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 0 {
		t.Fatalf("%d calls for whole packets", calls)
	}
	// "30 80" then EOF: started once, then io.ErrUnexpectedEOF
	r = NewReader(bytes.NewReader([]byte{0x30, 0x80}), 1<<20)
	r.SetPartial(func() { calls++ })
	if _, _, err := r.ReadPacket(); err != io.ErrUnexpectedEOF || calls != 1 {
		t.Fatalf("%v, %d calls", err, calls)
	}
}

// iotestOneByte hands out one byte per Read.
type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

// timeoutErr is what a read past its deadline returns.
type timeoutErr struct{}

func (timeoutErr) Error() string { return "i/o timeout" }
func (timeoutErr) Timeout() bool { return true }

// stepReader hands out one chunk per Read, and an error where a chunk is
// nil.
type stepReader struct{ chunks [][]byte }

func (s *stepReader) Read(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		return 0, io.EOF
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	if c == nil {
		return 0, timeoutErr{}
	}
	return copy(p, c), nil
}

// TestReaderResume: after a timeout in the middle of a packet, Resume lets
// the next ReadPacket finish that packet; other errors stay.
func TestReaderResume(t *testing.T) {
	tp := TPacketNamed("PUBLISH QoS 1")
	pkt := tp.Bytes()
	r := NewReader(&stepReader{chunks: [][]byte{pkt[:3], nil, pkt[3:]}}, 1<<10)
	if _, _, err := r.ReadPacket(); !errors.As(err, new(timeoutErr)) {
		t.Fatalf("first read: %v, want the timeout", err)
	}
	if _, _, err := r.ReadPacket(); err == nil {
		t.Fatal("a timeout is sticky until Resume")
	}
	if !r.Resume() {
		t.Fatal("Resume after a timeout: false")
	}
	h, body, err := r.ReadPacket()
	if err != nil || h != pkt[0] || !bytes.Equal(body, pkt[2:]) {
		t.Fatalf("after Resume: %#x % x %v", h, body, err)
	}
	if _, _, err := r.ReadPacket(); err != io.EOF {
		t.Fatalf("at the end: %v", err)
	}
	if r.Resume() {
		t.Fatal("Resume cleared EOF")
	}
}
