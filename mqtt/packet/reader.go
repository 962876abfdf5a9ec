package packet

import (
	"errors"
	"io"
)

// Reader memory rules (a declared length is not a reason to allocate, and
// a slow or partial packet holds no more than the initial buffer):
//
//   - The buffer is allocated on the first read, DefaultReadBufferSize bytes
//     unless NewReaderSize says otherwise.
//   - Nothing is ever allocated from a declared Remaining Length. The fixed
//     header is checked against maxSize before any body byte is read, and
//     the buffer then grows by doubling only when it is full of bytes
//     actually received, never beyond the size of the packet being read.
//     A client that declares 1 MiB and sends 3 bytes costs no more than the
//     initial buffer.
//   - After a packet larger than the initial size, the big buffer is kept
//     while large packets keep coming and dropped at the first call that
//     finds nothing buffered after a small packet.

// DefaultReadBufferSize is the initial buffer size of NewReader. It is also
// the most a single Read from the underlying reader asks for while the
// buffer has not grown, so several small packets arrive per syscall.
const DefaultReadBufferSize = 2048

// DefaultMaxSize is the maximum Remaining Length used when NewReader is
// given maxSize <= 0.
const DefaultMaxSize = 1 << 20

const minReadBufferSize = 16 // holds any fixed header (at most 5 bytes)

// Reader reads whole packets from r. It never allocates from a declared
// length: a packet whose remaining length exceeds maxSize is refused with
// an *Error{Code: 0x95} (ErrTooLarge) before its body is read.
//
// A Reader is not safe for concurrent use. After any error it returns the
// same error forever.
type Reader struct {
	r       io.Reader
	maxSize int
	bufSize int
	check   func(header byte, remaining int) error
	partial func()

	buf     []byte // buf[start:end] is read but not yet returned
	start   int
	end     int
	lastLen int   // total size of the packet returned last
	rerr    error // error from r, returned once buffered bytes run out
	err     error // sticky error returned by ReadPacket
}

// NewReader returns a Reader of packets of at most maxSize bytes of
// Remaining Length (maxSize <= 0 selects DefaultMaxSize; values above
// MaxRemainingLength are clamped).
func NewReader(r io.Reader, maxSize int) *Reader {
	return NewReaderSize(r, maxSize, DefaultReadBufferSize)
}

// NewReaderSize is NewReader with an initial buffer of bufSize bytes
// (at least minReadBufferSize).
func NewReaderSize(r io.Reader, maxSize, bufSize int) *Reader {
	rd := &Reader{r: r, bufSize: max(bufSize, minReadBufferSize)}
	rd.SetMaxSize(maxSize)
	return rd
}

// SetMaxSize changes the maximum Remaining Length for the following
// packets, for example a small limit until CONNECT is accepted and the
// configured one after. Rules as in NewReader.
func (r *Reader) SetMaxSize(maxSize int) {
	switch {
	case maxSize <= 0:
		maxSize = DefaultMaxSize
	case maxSize > MaxRemainingLength:
		maxSize = MaxRemainingLength
	}
	r.maxSize = maxSize
}

// SetCheck installs fn, called with the first byte and the Remaining
// Length of every packet once its fixed header is read and has passed the
// maxSize check, before any byte of its body is read. A non-nil error from
// fn is returned by ReadPacket (and sticks). The server uses it to refuse a
// first packet that is not CONNECT, or a type a client may not send (see
// ValidClientPacketType), without reading the body.
// fn runs on the reading goroutine and must not block.
func (r *Reader) SetCheck(fn func(header byte, remaining int) error) { r.check = fn }

// SetPartial installs fn, called at most once per packet: when some of its
// bytes (possibly only the first) have been read and the Reader is about to
// read more from the underlying reader, that is before it may block in the
// middle of a packet. The server arms its packet deadline there, so a
// packet that has started, even with an incomplete fixed header, must
// arrive whole in time. fn runs on the reading goroutine
// and must not block.
func (r *Reader) SetPartial(fn func()) { r.partial = fn }

// ReadPacket returns the first byte (type and flags) and the body
// (the remaining-length bytes). body is only valid until the next call.
//
// Errors: io.EOF when the stream ends between packets,
// io.ErrUnexpectedEOF when it ends inside one, ErrRemainingLength,
// ErrTooLarge, an error from the check function, or the underlying
// reader's error.
func (r *Reader) ReadPacket() (header byte, body []byte, err error) {
	if r.err != nil {
		return 0, nil, r.err
	}
	if r.start == r.end {
		r.start, r.end = 0, 0
		if len(r.buf) > r.bufSize && r.lastLen <= r.bufSize {
			r.buf = nil // drop the big buffer of an earlier large packet
		}
	}
	var hl, rl int
	started := false // partial was called for this packet
	more := func(want int) error {
		if !started && r.end > r.start && r.partial != nil {
			started = true
			r.partial()
		}
		return r.fill(want)
	}
	for {
		hl, rl, err = parseFixedHeader(r.buf[r.start:r.end])
		if err != nil {
			return r.fail(err)
		}
		if hl > 0 {
			break
		}
		if err = more(5); err != nil {
			return r.fail(err)
		}
	}
	if rl > r.maxSize {
		return r.fail(ErrTooLarge)
	}
	if r.check != nil {
		if err = r.check(r.buf[r.start], rl); err != nil {
			return r.fail(err)
		}
	}
	total := hl + rl
	for r.end-r.start < total {
		if err = more(total); err != nil {
			return r.fail(err)
		}
	}
	header = r.buf[r.start]
	body = r.buf[r.start+hl : r.start+total : r.start+total]
	r.start += total
	r.lastLen = total
	return header, body, nil
}

// Resume lets ReadPacket go on after an error that was a timeout of the
// underlying reader (a read deadline), keeping what was read of the
// packet, so that a client can wait for a packet in slices. It reports
// whether there was such an error to clear; any other error stays.
func (r *Reader) Resume() bool {
	var te interface{ Timeout() bool }
	if r.err == nil || !errors.As(r.err, &te) || !te.Timeout() {
		return false
	}
	r.err, r.rerr = nil, nil
	return true
}

// Buffered reports bytes already read but not returned (for coalescing:
// when it is 0 after a packet, the client has nothing more in flight
// right now and pending writes can be flushed).
func (r *Reader) Buffered() int { return r.end - r.start }

func (r *Reader) fail(err error) (byte, []byte, error) {
	if err == io.EOF && r.start != r.end {
		err = io.ErrUnexpectedEOF
	}
	r.err = err
	return 0, nil, err
}

// fill reads at least one more byte after r.end. want is how many bytes,
// counted from r.start, the packet being read needs in all; the buffer
// never grows beyond max(want, bufSize).
func (r *Reader) fill(want int) error {
	if r.rerr != nil {
		return r.rerr
	}
	if r.buf == nil {
		r.buf = make([]byte, r.bufSize)
	}
	if r.end == len(r.buf) {
		if r.start > 0 { // slide the partial packet to the front
			r.end = copy(r.buf, r.buf[r.start:r.end])
			r.start = 0
		} else { // full of one partial packet: grow, driven by bytes received
			size := min(max(2*len(r.buf), r.bufSize), max(want, r.bufSize))
			nb := make([]byte, size)
			r.end = copy(nb, r.buf[:r.end])
			r.buf = nb
		}
	}
	for range 100 {
		n, err := r.r.Read(r.buf[r.end:])
		if n < 0 || n > len(r.buf)-r.end {
			r.rerr = errBadRead
			return r.rerr
		}
		r.end += n
		if err != nil {
			r.rerr = err
			if n == 0 {
				return err
			}
		}
		if n > 0 {
			return nil
		}
	}
	r.rerr = io.ErrNoProgress
	return r.rerr
}

var errBadRead = errors.New("packet: underlying reader returned an invalid count")

// parseFixedHeader parses the fixed header at the start of b. It returns
// hl == 0 and no error when b does not hold the whole header yet.
// The Remaining Length is 1 to 4 bytes, in the minimum number of bytes
// ([MQTT-1.5.5-1] in 5.0; 3.1.1 encoders all do the same).
func parseFixedHeader(b []byte) (hl, rl int, err error) {
	for i := 1; i < len(b); i++ {
		c := b[i]
		rl |= int(c&0x7f) << (7 * (i - 1))
		if c&0x80 == 0 {
			if c == 0 && i > 1 {
				return 0, 0, ErrRemainingLength // non-minimal encoding
			}
			return i + 1, rl, nil
		}
		if i == 4 {
			return 0, 0, ErrRemainingLength // a 5th length byte
		}
	}
	return 0, 0, nil
}

// ParseFixedHeader parses the fixed header at the start of b, for
// transports that frame packets themselves (an event loop that reads into
// a shared buffer). headerLen is 0, with no error, while b does not hold
// the whole fixed header yet; the packet is b[:headerLen+remaining] once
// that many bytes are there. The Remaining Length must be minimally
// encoded in at most 4 bytes (ErrRemainingLength otherwise).
func ParseFixedHeader(b []byte) (headerLen, remaining int, err error) {
	return parseFixedHeader(b)
}
