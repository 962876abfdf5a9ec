package router

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/pushring/pushring/mqtt/packet"
)

// This file is the seam between socket I/O and MQTT session logic.
//
// A connection is two halves:
//
//   - transport: reads whole packets, owns the outbound byte buffer,
//     flushes it, applies read and write deadlines. Two implement it: the
//     epoll event loop (conn_epoll.go, the default on Linux: a few poller
//     goroutines, one per core up to a cap, for all sockets, so an idle
//     connection owns no goroutine and no buffer) and tcpTransport in
//     this file (a reader and a writer goroutine per connection: any
//     net.Conn, and every platform; Config.GoroutinePerConn selects it).
//   - handler (mqttConn in mqtt.go): the MQTT protocol state of the
//     connection, which knows nothing about sockets or goroutines.
//
// Outbound writes are coalesced: whoever has something to send (the
// connection answering a packet, a delivery, a retry) locks the outbound
// buffer, appends whole packets to it and unlocks; the writer swaps that
// buffer with a spare one and writes it in one syscall under a write
// deadline. In steady state nothing is allocated per packet: the two
// buffers are reused.
//
// The transport never calls the handler while holding its lock; the lock
// order across the node is in LOCKS.md at the repository root.

// transport is the socket side of one client connection.
type transport interface {
	// beginWrite locks the outbound buffer and returns it, with the bytes
	// not yet written to the socket (backlog, including a write in
	// progress) and whether the connection still takes output. The caller
	// appends whole packets and must call endWrite with the result, also
	// when open is false (the bytes are then discarded). Never blocks on
	// the socket. Goroutine-safe.
	beginWrite() (buf []byte, backlog int, open bool)
	// endWrite stores buf (from beginWrite, possibly appended to),
	// unlocks and wakes the writer.
	endWrite(buf []byte)
	// notifyDrained asks for one handler.drained call once the backlog
	// falls under half of MaxOutboundBytes. Goroutine-safe.
	notifyDrained()
	// setTimeouts sets when the next inbound packet must have fully
	// arrived: by deadline (zero: none), and within idle of the previous
	// one (0: no limit); the earlier applies. Only called from
	// handler.handlePacket.
	setTimeouts(deadline time.Time, idle time.Duration)
	// setMaxPacket sets the largest remaining length of the inbound
	// packets after this one (Config.MaxConnectPacketSize until the client
	// is authenticated, then MaxPacketSize). Only called from
	// handler.handlePacket.
	setMaxPacket(n int)
	// pause stops reading until until: no packet after the one being
	// handled is read or handled before then (the principal went over its
	// publish rate, limits.go). Other connections are not held up, and
	// the keepalive deadline does not run meanwhile. Only called from
	// handler.handlePacket.
	pause(until time.Time)
	// close stops the connection. flush: write what is buffered first
	// (bounded by the write timeout); else at once. Without flush no more
	// handlePacket calls start after close; with flush the reading side
	// may still hand over packets while the output drains (the handler
	// refuses them: mqttConn flagKilled). handler.closed follows. Idempotent,
	// goroutine-safe, never blocks.
	close(flush bool)
	// remoteAddr is the peer's address, for logs.
	remoteAddr() string
}

// transportStarter is a transport that can be started with its handler.
type transportStarter interface {
	transport
	// start runs the connection; the caller has added goroutines() to
	// Server.wg for it.
	start(h handler)
	goroutines() int
	// abort closes a transport that was never started.
	abort()
}

// handler is the session-logic side of a connection.
type handler interface {
	// handlePacket handles one whole inbound packet; body is only valid
	// during the call. Calls are sequential (one at a time, in order). A
	// non-nil error closes the connection after flushing what is already
	// buffered.
	handlePacket(header byte, body []byte) error
	// drained: the backlog fell after notifyDrained. May be called from
	// any goroutine, concurrently with handlePacket; may block briefly.
	drained()
	// closed is called exactly once, after the socket is closed and the
	// last handlePacket returned. err says why (nil is never passed).
	closed(err error)
	// failed: reading ends with err (the stream's, the Reader's or
	// handlePacket's), and what the handler writes now still goes out
	// before the close. Called at most once, from the reading side, not
	// when the server closes the connection.
	failed(err error)
	// mayBlock: handling the next packet may block on I/O (the CONNECT
	// and the auth-topic login call the Authenticator). An event loop
	// runs such a packet off its loop. Called between handlePacket calls.
	mayBlock(header byte) bool
}

var (
	errNotConnect  = errors.New("first packet is not CONNECT")
	errConnPanic   = errors.New("panic in connection")
	errOutOverflow = errors.New("outbound backlog over limit")
)

// tcpTransport is the goroutine-per-direction transport for net.Conn
// (TCP, TLS, or anything else that is a net.Conn).
type tcpTransport struct {
	nc           net.Conn
	remote       string   // nc's, for logs
	raw          net.Conn // under a *tls.Conn nc: the socket itself; nil otherwise
	srv          *Server
	h            handler
	maxPacket    int // until setMaxPacket: Config.MaxConnectPacketSize
	writeTimeout time.Duration
	drainMark    int // notify drained under this backlog
	hardMax      int // close the connection over this backlog

	// reader-goroutine only
	rd            *packet.Reader
	deadline      time.Time
	idle          time.Duration
	readDeadline  time.Time     // as last set on nc
	packetTimeout time.Duration // a started packet must arrive whole within it
	resumeAt      time.Time     // pause: read nothing before (zero: no pause)
	pauseTimer    *time.Timer   // made by the first pause, reused

	mu        sync.Mutex
	out       []byte // appended to by beginWrite/endWrite callers
	spare     []byte // the other buffer, reused by the writer
	mark      int    // len(out) at beginWrite, to discard appends after close
	writing   int    // bytes of the Write in progress
	closing   bool   // close was called: take no more output
	wantDrain bool

	wake       chan struct{} // cap 1: there is output (or closing)
	stop       chan struct{} // closed by shutdown
	stopOnce   sync.Once
	writerDone chan struct{}
}

// maxKeptBuffer: an outbound buffer grown past this by a burst is
// dropped after flushing instead of kept as the spare.
const maxKeptBuffer = 64 << 10

func newTCPTransport(srv *Server, nc net.Conn) *tcpTransport {
	cfg := &srv.cfg
	return &tcpTransport{
		nc:            nc,
		remote:        nc.RemoteAddr().String(),
		srv:           srv,
		maxPacket:     cfg.MaxConnectPacketSize,
		writeTimeout:  cfg.WriteTimeout,
		drainMark:     cfg.MaxOutboundBytes / 2,
		hardMax:       4 * cfg.MaxOutboundBytes,
		deadline:      time.Now().Add(cfg.ConnectTimeout),
		packetTimeout: cfg.ConnectTimeout,
		wake:          make(chan struct{}, 1),
		stop:          make(chan struct{}),
		writerDone:    make(chan struct{}),
	}
}

// newTLSTransport serves a *tls.Conn whose handshake is done. A forced
// close (shutdown) closes the socket under it: tls.Conn.Close would first
// write close_notify, which waits up to 5 s for a peer that does not read,
// and shutdown runs under session.mu or pendingAcks.mu (LOCKS.md, Known
// hazards 1). Only the writer goroutine, holding no lock, closes with
// close_notify, once a graceful close has flushed (closeFlushed).
func newTLSTransport(srv *Server, tc *tls.Conn) *tcpTransport {
	t := newTCPTransport(srv, tc)
	t.raw = tc.NetConn()
	return t
}

func (t *tcpTransport) goroutines() int { return 2 }

func (t *tcpTransport) abort() { t.socket().Close() }

// socket is what a close that must not block closes.
func (t *tcpTransport) socket() net.Conn {
	if t.raw != nil {
		return t.raw
	}
	return t.nc
}

// start runs the connection on two goroutines.
func (t *tcpTransport) start(h handler) {
	t.h = h
	go t.writeLoop()
	go t.readLoop()
}

func (t *tcpTransport) remoteAddr() string { return t.remote }

func (t *tcpTransport) setTimeouts(deadline time.Time, idle time.Duration) {
	t.deadline, t.idle = deadline, idle
}

func (t *tcpTransport) setMaxPacket(n int) { t.rd.SetMaxSize(n) }

func (t *tcpTransport) pause(until time.Time) { t.resumeAt = until }

// waitPaused sleeps out a pause on the reader goroutine, the connection's
// own: the socket is not read meanwhile, so a flooding client's writes
// back up into its own buffers. A server close ends the wait.
func (t *tcpTransport) waitPaused() error {
	d := time.Until(t.resumeAt)
	t.resumeAt = time.Time{}
	if d <= 0 {
		return nil
	}
	if t.pauseTimer == nil {
		t.pauseTimer = time.NewTimer(d)
	} else {
		t.pauseTimer.Reset(d)
	}
	select {
	case <-t.pauseTimer.C:
		return nil
	case <-t.stop:
		t.pauseTimer.Stop()
		return errClosedByServer
	}
}

func (t *tcpTransport) beginWrite() ([]byte, int, bool) {
	t.mu.Lock()
	t.mark = len(t.out)
	return t.out, len(t.out) + t.writing, !t.closing
}

func (t *tcpTransport) endWrite(buf []byte) {
	if t.closing {
		buf = buf[:t.mark]
	}
	grew := len(buf) > t.mark
	t.out = buf
	over := len(buf)+t.writing > t.hardMax
	t.mu.Unlock()
	if over {
		t.srv.slowConsumer(slowBacklog, t.remoteAddr())
		t.shutdown()
		return
	}
	if grew {
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

func (t *tcpTransport) notifyDrained() {
	t.mu.Lock()
	t.wantDrain = true
	t.mu.Unlock()
	// The writer may have finished just before the flag was set.
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *tcpTransport) close(flush bool) {
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
	if !flush {
		t.shutdown()
		return
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// shutdown closes the socket at once, which ends both loops. It never
// blocks (for TLS, no close_notify is written): callers may hold
// session.mu. It also cuts short a close_notify that closeFlushed is
// writing. Closing twice is harmless.
func (t *tcpTransport) shutdown() {
	t.stopOnce.Do(func() { close(t.stop) })
	t.socket().Close()
}

// closeFlushed ends a graceful close once everything is written: over TLS
// with close_notify, bounded by tls.Conn.Close's own 5 s write deadline
// or by a shutdown meanwhile. The write happens outside stopOnce, so a
// shutdown never waits for it. Writer goroutine only, with no lock held.
func (t *tcpTransport) closeFlushed() {
	first := false
	t.stopOnce.Do(func() { close(t.stop); first = true })
	if first && t.raw != nil {
		t.nc.Close() // close_notify, then the socket
	}
	t.socket().Close()
}

func (t *tcpTransport) readLoop() {
	err := errConnPanic
	defer func() {
		if r := recover(); r != nil {
			t.srv.panicked("reader", r, debug.Stack())
			err = errConnPanic
		}
		t.close(true)
		<-t.writerDone
		t.shutdown()
		if t.raw != nil {
			t.srv.m.tlsConns.Add(-1)
		}
		t.closeHandler(err)
		t.srv.wg.Done()
	}()
	err = t.read()
}

func (t *tcpTransport) closeHandler(err error) { callClosed(t.srv, t.h, err) }

// callClosed calls h.closed, turning a panic into a log line and a count
// (either transport).
func callClosed(srv *Server, h handler, err error) {
	defer func() {
		if r := recover(); r != nil {
			srv.panicked("close", r, debug.Stack())
		}
	}()
	h.closed(err)
}

// checkHeader refuses, on its fixed header and before any byte of its
// body is read, a first packet that is not CONNECT or a type clients
// never send; *first is true until the first packet's header has been
// checked. Both transports call it.
func checkHeader(first *bool, header byte) error {
	if *first {
		*first = false
		if header>>4 != packet.CONNECT {
			return errNotConnect
		}
	}
	if !packet.ValidClientPacketType(header>>4, packet.V5) {
		return packet.ErrPacketType
	}
	return nil
}

func (t *tcpTransport) applyDeadline() {
	d := t.deadline
	if t.idle > 0 {
		if i := time.Now().Add(t.idle); d.IsZero() || i.Before(d) {
			d = i
		}
	}
	t.readDeadline = d
	t.nc.SetReadDeadline(d)
}

func (t *tcpTransport) read() error {
	rd := packet.NewReader(t.nc, t.maxPacket)
	t.rd = rd
	// Checked on each fixed header, before the body is read: the first
	// packet must be CONNECT, and no packet may be of a type clients never
	// send. A refused packet's declared length is never
	// buffered.
	first := true
	rd.SetCheck(func(header byte, _ int) error { return checkHeader(&first, header) })
	// A packet has started (its first byte may be all there is, even of
	// the fixed header) and the rest is still on its way: it must arrive
	// within packetTimeout, whatever the keepalive.
	rd.SetPartial(func() {
		if d := time.Now().Add(t.packetTimeout); t.readDeadline.IsZero() || d.Before(t.readDeadline) {
			t.readDeadline = d
			t.nc.SetReadDeadline(d)
		}
	})
	for {
		t.applyDeadline()
		header, body, err := rd.ReadPacket()
		if err != nil {
			t.h.failed(err)
			return err
		}
		if err := t.h.handlePacket(header, body); err != nil {
			t.h.failed(err)
			return err
		}
		if !t.resumeAt.IsZero() {
			if err := t.waitPaused(); err != nil {
				return err
			}
		}
		select {
		case <-t.stop:
			return errClosedByServer
		default:
		}
	}
}

func (t *tcpTransport) writeLoop() {
	defer func() {
		if r := recover(); r != nil {
			t.srv.panicked("writer", r, debug.Stack())
			t.shutdown()
		}
		close(t.writerDone)
		t.srv.wg.Done()
	}()
	for {
		select {
		case <-t.wake:
		case <-t.stop:
			return
		}
		if !t.flush() {
			return
		}
	}
}

// flush writes until the buffer is empty. It returns false when the
// connection is done (write error, or closing and flushed).
func (t *tcpTransport) flush() bool {
	for {
		t.mu.Lock()
		buf := t.out
		if len(buf) == 0 {
			closing := t.closing
			notify := t.wantDrain
			t.wantDrain = false
			t.mu.Unlock()
			if closing {
				t.closeFlushed()
				return false
			}
			if notify {
				t.h.drained()
			}
			return true
		}
		t.out = t.spare[:0]
		t.spare = nil
		t.writing = len(buf)
		t.mu.Unlock()

		t.nc.SetWriteDeadline(time.Now().Add(t.writeTimeout))
		_, err := t.nc.Write(buf)

		t.mu.Lock()
		t.writing = 0
		if cap(buf) <= maxKeptBuffer {
			t.spare = buf[:0]
		}
		notify := t.wantDrain && len(t.out) < t.drainMark
		if notify {
			t.wantDrain = false
		}
		t.mu.Unlock()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.srv.slowConsumer(slowWriteTimeout, t.remoteAddr())
			}
			t.shutdown()
			return false
		}
		if notify {
			t.h.drained()
		}
	}
}
