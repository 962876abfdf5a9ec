//go:build linux

package router

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushring/pushring/mqtt/packet"
)

// The event-loop transport: a few poller
// goroutines, one epoll instance each, serve every TCP connection of the
// server. An idle connection owns no goroutine and no buffer: the bytes
// read from sockets land in the poller's shared buffer, and a connection
// keeps bytes only while a packet is incomplete (what arrived so far) or
// output is waiting for the socket. That is what brings the idle cost of
// a connection down to its protocol state (a few KiB), where the
// goroutine transport spends two stacks and two buffers.
//
// Rules that keep it correct:
//
//   - Only the poller goroutine reads, closes and (un)registers a
//     connection's fd, so an fd number is never reused while an event for
//     its old connection is still being handled.
//   - Other goroutines (fanout delivering, retry timers, takeovers) append
//     output under the connection's lock and queue the connection for
//     the poller (endWrite); the poller writes in its loop, so messages
//     that arrive together leave in one write.
//   - Packets are handled on the poller, in order, except while the
//     handler says a packet may block (CONNECT and the auth-topic login
//     call the Authenticator, which may wait on the store): such a packet
//     runs on a goroutine of its own while the connection is out of the
//     epoll set, and the poller carries on with the others.
//   - Deadlines (CONNECT, keepalive, a started packet, blocked writes) are
//     checked by a sweep every pollTick: no timer per connection.

// pollTick is how often each poller checks deadlines; they fire up to
// this late.
const pollTick = 50 * time.Millisecond

// pollReadSize is the shared read buffer of one poller: the most one
// read takes from one socket before the poller moves on.
const pollReadSize = 64 << 10

// paceFrom and paceMax bound the pause after a busy loop round (see
// poller.run).
const (
	paceFrom = 200 * time.Microsecond
	paceMax  = 500 * time.Microsecond
)

// idleRelease: a connection's buffers are released after this long with
// nothing in them.
const idleRelease = 2 * time.Second

// Queued work for the poller (epollTransport.ops).
const (
	opRegister = 1 << iota
	opResume   // a may-block packet finished on its goroutine
	opFlush    // output waits
	opClose    // close requested (flushClose says how)
)

var errWriteTimeout = errors.New("write timed out (client not reading)")

// eventLoops is the server's set of pollers, started with the first
// connection and stopped by Server.Close.
type eventLoops struct {
	once    sync.Once
	pollers []*poller
	active  atomic.Pointer[[]*poller] // pollers once started, for EndOutputRun
	next    int                       // round robin, under Server.mu
	err     error
	wg      sync.WaitGroup
}

func (l *eventLoops) start(srv *Server) error {
	l.once.Do(func() {
		n := min(max(runtime.GOMAXPROCS(0), 1), 8)
		for range n {
			p, err := newPoller(srv)
			if err != nil {
				l.err = err
				break
			}
			l.pollers = append(l.pollers, p)
		}
		if l.err != nil {
			for _, p := range l.pollers {
				p.closeFds()
			}
			l.pollers = nil
			return
		}
		for _, p := range l.pollers {
			l.wg.Add(1)
			go p.run(&l.wg)
		}
		l.active.Store(&l.pollers)
	})
	return l.err
}

// stop ends the pollers once every connection is gone (Server.Close
// calls it after its wait).
func (l *eventLoops) stop() {
	for _, p := range l.pollers {
		p.mu.Lock()
		p.stopping = true
		p.mu.Unlock()
		p.wake()
	}
	l.wg.Wait()
}

// newEventTransport returns an event-loop transport for nc, or nil when
// nc is not a TCP connection (TLS, WebSocket, tests' pipes) or the event
// loop is off or failed to start: the caller then uses tcpTransport.
// On success nc is closed: the transport owns a duplicate of its fd.
func newEventTransport(srv *Server, nc net.Conn) transportStarter {
	tc, ok := tcpConn(nc)
	if !ok || srv.cfg.GoroutinePerConn {
		return nil
	}
	if err := srv.loops.start(srv); err != nil {
		srv.loopErr.Do(func() {
			srv.log.Warn("mqtt: event loop unavailable, using goroutines per connection", "err", err)
		})
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	fd := -1
	var derr error
	if cerr := rc.Control(func(s uintptr) {
		fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); cerr != nil || derr != nil {
		return nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil
	}
	remote := nc.RemoteAddr().String()
	nc.Close()

	srv.mu.Lock()
	p := srv.loops.pollers[srv.loops.next%len(srv.loops.pollers)]
	srv.loops.next++
	srv.mu.Unlock()

	cfg := &srv.cfg
	now := time.Now()
	return &epollTransport{
		p:          p,
		fd:         int32(fd),
		remote:     remote,
		maxPacket:  int32(min(cfg.MaxConnectPacketSize, packet.MaxRemainingLength)),
		first:      true,
		deadline:   now.Add(cfg.ConnectTimeout).UnixNano(),
		lastPacket: now.UnixNano(),
	}
}

// poller is one event loop: an epoll instance, its connections and a
// queue of work handed to it by other goroutines.
type poller struct {
	srv   *Server
	epfd  int
	evfd  int // eventfd: wakes EpollWait when work is queued
	rbuf  []byte
	conns map[int32]*epollTransport // poller goroutine only

	nextRelease int64 // unix ns: the next sweep that releases idle buffers

	// Connections paused by their handler (transport.pause), out of the
	// epoll set for input until their resumeAt: poller goroutine only.
	paused      []*epollTransport
	pausedSpare []*epollTransport
	nextResume  int64 // unix ns: the earliest resumeAt in paused

	mu       sync.Mutex
	queue    []*epollTransport
	woken    bool // evfd written since the queue was last taken
	stopping bool

	// Output held for the deliverer's run (batch.go): poller goroutine
	// only, but holding, which EndOutputRun reads to know whom to wake.
	held    []*epollTransport
	heldGen uint64
	heldAt  time.Time
	holding atomic.Bool
}

func newPoller(srv *Server) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	return &poller{srv: srv, epfd: epfd, evfd: evfd, conns: make(map[int32]*epollTransport)}, nil
}

func (p *poller) closeFds() {
	unix.Close(p.epfd)
	unix.Close(p.evfd)
}

// enqueue hands t to the poller with op. Goroutine-safe, never blocks.
func (p *poller) enqueue(t *epollTransport, op uint8) {
	t.mu.Lock()
	push := t.markLocked(op)
	t.mu.Unlock()
	if push {
		p.push(t)
	}
}

// markLocked records op for the poller under t.mu; true: t must be pushed
// onto the queue (it is not there yet).
func (t *epollTransport) markLocked(op uint8) bool {
	t.ops |= op
	if t.queued {
		return false
	}
	t.queued = true
	return true
}

// push puts t on the queue and wakes the poller if it may be asleep.
func (p *poller) push(t *epollTransport) {
	p.mu.Lock()
	p.queue = append(p.queue, t)
	wake := !p.woken
	p.woken = true
	p.mu.Unlock()
	if wake {
		p.wake()
	}
}

var one = [8]byte{1}

func (p *poller) wake() {
	unix.Write(p.evfd, one[:])
}

func (p *poller) run(wg *sync.WaitGroup) {
	defer wg.Done()
	defer p.closeFds()
	p.rbuf = make([]byte, pollReadSize)
	events := make([]unix.EpollEvent, 256)
	var spare []*epollTransport
	nextSweep := time.Now().Add(pollTick)
	for {
		wait := max(time.Until(nextSweep), 0)
		if len(p.paused) > 0 {
			wait = min(wait, max(time.Until(time.Unix(0, p.nextResume)), 0))
		}
		wait = p.holdWait(wait)
		n, err := unix.EpollWait(p.epfd, events, int(wait/time.Millisecond)+1)
		if err != nil && err != unix.EINTR {
			p.srv.log.Error("mqtt: epoll_wait failed", "err", err)
			time.Sleep(pollTick)
		}
		now := time.Now()
		for i := range max(n, 0) {
			if int(events[i].Fd) == p.evfd {
				var b [8]byte
				unix.Read(p.evfd, b[:]) // reset the counter
				continue
			}
			p.event(events[i], now)
		}

		// The releases counted before the hold is looked at: a release
		// in between shows as a newer count (releaseHeld below).
		gen := p.srv.hold.gen.Load()
		p.mu.Lock()
		q := p.queue
		p.queue = spare[:0]
		p.woken = false
		stopping := p.stopping
		p.mu.Unlock()
		hold := !stopping && p.srv.hold.on.Load()
		for i, t := range q {
			if !hold || !p.deferFlush(t, gen, now) {
				p.work(t, now)
			}
			q[i] = nil
		}
		spare = q
		p.releaseHeld(now, stopping)

		if len(p.paused) > 0 && now.UnixNano() >= p.nextResume {
			p.unpause(now)
		}
		if !now.Before(nextSweep) {
			p.sweep(now)
			nextSweep = now.Add(pollTick)
		}
		if stopping && len(p.conns) == 0 {
			return
		}
		// Under load, pace the loop: after a round that kept the poller
		// busy for d, wait up to d before the next one. Output and
		// acks that arrive meanwhile leave in one write per connection
		// instead of one per message, and the CPU the pause frees goes
		// to the goroutines producing the work. A light round (a few
		// packets, one small fan-out) is not paced, so latency at low
		// load is untouched.
		if d := time.Since(now); d > paceFrom {
			time.Sleep(min(d, paceMax))
		}
	}
}

// event handles one epoll event. Events for an fd closed earlier in the
// same batch find no connection and are ignored.
func (p *poller) event(ev unix.EpollEvent, now time.Time) {
	t := p.conns[ev.Fd]
	if t == nil || t.fdClosed {
		return
	}
	p.guard(t, func() {
		if ev.Events&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 && !t.fdClosed {
			p.flush(t, now)
		}
		if ev.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 && !t.fdClosed {
			p.readable(t, now)
		}
	})
}

// work does what other goroutines queued for t.
func (p *poller) work(t *epollTransport, now time.Time) {
	t.mu.Lock()
	ops := t.ops
	t.ops = 0
	t.queued = false
	t.mu.Unlock()
	p.guard(t, func() {
		if ops&opRegister != 0 {
			p.conns[t.fd] = t
			p.arm(t)
		}
		if ops&opResume != 0 {
			p.resume(t, now)
		}
		if ops&(opFlush|opClose) != 0 && !t.fdClosed {
			p.flush(t, now)
		}
	})
}

// guard runs fn for t, turning a panic into the close of t alone.
func (p *poller) guard(t *epollTransport, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			p.srv.panicked("event loop", r, debug.Stack())
			p.closeNow(t, errConnPanic)
		}
	}()
	fn()
}

// arm makes t's epoll registration match what it waits for: input unless
// a may-block packet runs or reading is over, output while some is
// unwritten.
func (p *poller) arm(t *epollTransport) {
	if t.fdClosed {
		return
	}
	var want uint32
	if !t.busy && !t.readDone && t.resumeAt == 0 {
		want |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if t.outWait {
		want |= unix.EPOLLOUT
	}
	if want == t.events {
		return
	}
	op := unix.EPOLL_CTL_MOD
	switch {
	case want == 0:
		op = unix.EPOLL_CTL_DEL
	case t.events == 0:
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: want, Fd: t.fd}
	if err := unix.EpollCtl(p.epfd, op, int(t.fd), &ev); err != nil {
		p.closeNow(t, os.NewSyscallError("epoll_ctl", err))
		return
	}
	t.events = want
}

// readable reads once from t (level-triggered epoll calls again while
// more is there) and handles the whole packets.
func (p *poller) readable(t *epollTransport, now time.Time) {
	if t.busy || t.readDone || t.resumeAt != 0 {
		return
	}
	n, err := unix.Read(int(t.fd), p.rbuf)
	if n <= 0 {
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
			return
		case err == nil: // end of stream
			err = io.EOF
			if len(t.in) > 0 {
				err = io.ErrUnexpectedEOF
			}
		default:
			err = os.NewSyscallError("read", err)
		}
		p.readFailed(t, err)
		return
	}
	data := p.rbuf[:n]
	if len(t.in) > 0 {
		t.in = append(t.in, data...)
		data = t.in
	}
	p.consume(t, data, now)
	// The answers to what was just read (PUBACKs, SUBACKs, PINGRESPs)
	// leave now, in one write, rather than after the rest of the batch:
	// a QoS 1 publisher's window turns on this round trip.
	if !t.fdClosed {
		p.flush(t, now)
	}
}

// consume handles the whole packets at the start of data (the shared
// read buffer, or t.in) and keeps the rest in t.in.
func (p *poller) consume(t *epollTransport, data []byte, now time.Time) {
	off := 0
	ns := now.UnixNano()
	for !t.readDone && !t.fdClosed && t.resumeAt == 0 {
		b := data[off:]
		hl, rl, err := packet.ParseFixedHeader(b)
		if err != nil {
			p.readFailed(t, err)
			return
		}
		if hl == 0 {
			break
		}
		if rl > int(t.maxPacket) {
			p.readFailed(t, packet.ErrTooLarge)
			return
		}
		if err := checkHeader(&t.first, b[0]); err != nil {
			p.readFailed(t, err)
			return
		}
		total := hl + rl
		if len(b) < total {
			break
		}
		if t.h.mayBlock(b[0]) {
			// Off the poller: the packet and what follows it are copied
			// out of the shared buffer, the socket leaves the epoll set
			// until the handler is done (opResume).
			pkt := append([]byte(nil), b[:total]...)
			t.keep(b[total:])
			t.busy = true
			p.arm(t)
			go t.runBlocking(pkt[0], pkt[hl:])
			return
		}
		off += total
		if err := t.h.handlePacket(b[0], b[hl:total:total]); err != nil {
			p.readFailed(t, err)
			return
		}
		t.lastPacket = ns
		t.partialDue = 0
	}
	t.keep(data[off:])
	if t.resumeAt != 0 && !t.readDone && !t.fdClosed {
		p.park(t)
		return
	}
	if len(t.in) > 0 && t.partialDue == 0 {
		// A packet has started: it must arrive whole within
		// ConnectTimeout, whatever the keepalive.
		t.partialDue = now.Add(p.srv.cfg.ConnectTimeout).UnixNano()
	}
}

// resume continues t after a may-block packet returned.
func (p *poller) resume(t *epollTransport, now time.Time) {
	t.busy = false
	t.lastPacket = now.UnixNano()
	t.partialDue = 0
	if err := t.blockErr; err != nil {
		p.readFailed(t, err)
		return
	}
	if t.closeWhenIdle {
		p.closeNow(t, t.reason)
		return
	}
	p.arm(t)
	if len(t.in) > 0 {
		p.consume(t, t.in, now)
	}
}

// park takes paused t out of the epoll set for input until its resumeAt
// (what it has not handled yet stays in t.in) and has the loop wake for
// it; the other connections go on meanwhile.
func (p *poller) park(t *epollTransport) {
	t.partialDue = 0 // restarts after the pause
	if len(p.paused) == 0 || t.resumeAt < p.nextResume {
		p.nextResume = t.resumeAt
	}
	p.paused = append(p.paused, t)
	p.arm(t)
}

// unpause resumes the paused connections whose time has come: they are
// read again, and what they sent meanwhile is handled now (which may
// pause them again).
func (p *poller) unpause(now time.Time) {
	ns := now.UnixNano()
	list := p.paused
	p.paused = p.pausedSpare[:0]
	p.nextResume = 0
	for i, t := range list {
		list[i] = nil
		switch {
		case t.fdClosed:
			t.resumeAt = 0
		case ns < t.resumeAt:
			if len(p.paused) == 0 || t.resumeAt < p.nextResume {
				p.nextResume = t.resumeAt
			}
			p.paused = append(p.paused, t)
		default:
			t.resumeAt = 0
			p.guard(t, func() {
				// The pause was the server's doing: the keepalive
				// counts from its end.
				t.lastPacket = ns
				p.arm(t)
				if len(t.in) > 0 && !t.readDone {
					p.consume(t, t.in, now)
					if !t.fdClosed {
						p.flush(t, now)
					}
				}
			})
		}
	}
	p.pausedSpare = list[:0]
}

// readFailed ends reading on t: a read error, a malformed or refused
// packet, a handler error or a timeout. What is already buffered is
// flushed first (bounded by WriteTimeout), as in tcpTransport.
func (p *poller) readFailed(t *epollTransport, err error) {
	if !t.readDone {
		t.h.failed(err)
	}
	if t.reason == nil {
		t.reason = err
	}
	t.readDone = true
	t.in = nil
	t.mu.Lock()
	if !t.closing {
		t.closing, t.flushClose = true, true
	}
	t.mu.Unlock()
	p.flush(t, time.Now())
}

// flush writes t's output until done or the socket is full, and closes t
// when a close was asked for and everything that should go out has.
func (p *poller) flush(t *epollTransport, now time.Time) {
	if t.fdClosed {
		return
	}
	var werr error
	progress := false
	t.mu.Lock()
	for {
		if t.closing && !t.flushClose {
			t.mu.Unlock()
			p.closeNow(t, errClosedByServer)
			return
		}
		if t.woff == len(t.wbuf) {
			if len(t.out) == 0 {
				break
			}
			// Swap: producers go on appending to the other buffer
			// while this one is written without the lock.
			t.wbuf, t.out, t.woff = t.out, t.wbuf[:0], 0
			t.pending = len(t.wbuf) // still the callers' backlog while it is written
			if cap(t.out) > maxKeptBuffer {
				t.out = nil
			}
		}
		t.mu.Unlock()
		n, err := unix.Write(int(t.fd), t.wbuf[t.woff:])
		t.mu.Lock()
		if n > 0 {
			t.woff += n
			t.pending = len(t.wbuf) - t.woff
			progress = true
		}
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if err != unix.EAGAIN {
				werr = os.NewSyscallError("write", err)
			}
			break
		}
	}
	done := t.woff == len(t.wbuf) && len(t.out) == 0
	if done {
		t.wbuf, t.woff, t.pending = t.wbuf[:0], 0, 0
		if cap(t.wbuf) > maxKeptBuffer {
			t.wbuf = nil
		}
		t.writeDue = 0
		t.lastOut = now.UnixNano()
	} else if progress || t.writeDue == 0 {
		t.writeDue = now.Add(t.p.srv.cfg.WriteTimeout).UnixNano()
	}
	notify := t.wantDrain && len(t.out)+t.pending < t.p.srv.cfg.MaxOutboundBytes/2
	if notify {
		t.wantDrain = false
	}
	closeNow := done && t.closing
	t.mu.Unlock()

	switch {
	case werr != nil:
		p.closeNow(t, werr)
		return
	case closeNow:
		p.closeNow(t, t.reason)
		return
	}
	if t.outWait != !done {
		t.outWait = !done
		p.arm(t)
	}
	if notify {
		t.h.drained()
	}
}

// sweep enforces every deadline of p's connections and releases the
// buffers of idle ones.
func (p *poller) sweep(now time.Time) {
	ns := now.UnixNano()
	// Buffers are looked at about once a second: that takes each
	// connection's lock, the deadline checks do not.
	release := ns >= p.nextRelease
	if release {
		p.nextRelease = ns + int64(idleRelease/2)
	}
	for _, t := range p.conns {
		if t.busy {
			continue // its packet's handler is running; deadlines resume after it
		}
		p.guard(t, func() {
			if !t.readDone && t.resumeAt == 0 { // a paused connection's deadlines restart after the pause
				if due := t.readDue(); due != 0 && ns >= due {
					p.readFailed(t, os.ErrDeadlineExceeded)
					return
				}
			}
			// writeDue is written by the poller alone (flush).
			if t.outWait && t.writeDue != 0 && ns >= t.writeDue {
				t.p.srv.slowConsumer(slowWriteTimeout, t.remote)
				p.closeNow(t, errWriteTimeout)
				return
			}
			if !release {
				return
			}
			t.mu.Lock()
			if len(t.out) == 0 && t.pending == 0 && (t.out != nil || t.wbuf != nil) && ns-t.lastOut > int64(idleRelease) {
				t.out, t.wbuf = nil, nil
			}
			t.mu.Unlock()
			if len(t.in) == 0 && t.in != nil && ns-t.lastPacket > int64(idleRelease) {
				t.in = nil
			}
		})
	}
}

// closeNow closes t's socket (poller goroutine only) and calls the
// handler's closed on a goroutine of its own: closing touches the
// server's registry and may publish a will, which must not hold up the
// other connections. While a may-block packet runs, the close waits for
// it (handler.closed comes after the last handlePacket).
func (p *poller) closeNow(t *epollTransport, reason error) {
	if t.fdClosed {
		return
	}
	if t.reason == nil {
		t.reason = reason
	}
	if t.reason == nil {
		t.reason = errClosedByServer
	}
	t.mu.Lock()
	t.closing, t.flushClose = true, false
	t.out, t.wbuf, t.woff, t.pending = nil, nil, 0, 0
	t.mu.Unlock()
	if t.busy {
		// Out of the epoll set until the packet returns, or a writable
		// socket would wake the loop over and over.
		t.closeWhenIdle = true
		t.outWait = false
		p.arm(t)
		return
	}
	if t.events != 0 {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(t.fd), nil)
		t.events = 0
	}
	unix.Close(int(t.fd))
	t.fdClosed = true
	t.in = nil
	delete(p.conns, t.fd)
	go t.closeHandler()
}

// epollTransport is one connection of the event loop. Its size counts
// (every idle connection holds one): the small fields are packed
// together, the Server is reached through the poller.
type epollTransport struct {
	p      *poller
	h      handler
	remote string

	// Poller side. While busy, the may-block goroutine owns the fields
	// the handler sets (deadline, idle, maxPacket) and blockErr; the
	// poller reads them after opResume.
	in         []byte // bytes of an incomplete packet (nil: none)
	deadline   int64  // unix ns: the handler's read deadline (0: none)
	idle       time.Duration
	lastPacket int64 // unix ns: the last whole packet (or accept)
	partialDue int64 // unix ns: an incomplete packet must be whole by then (0: none)
	resumeAt   int64 // unix ns: paused until then (0: not paused), see poller.park
	blockErr   error // its handler error (see busy)
	reason     error // why it closed (handler.closed's err)
	fd         int32
	maxPacket  int32
	events     uint32 // registered epoll events (0: not in the set)
	first      bool   // the next packet is the first (must be CONNECT)
	busy       bool   // a may-block packet runs on its goroutine
	// closeWhenIdle: close once busy ends.
	closeWhenIdle, readDone bool
	outWait                 bool // output waits for the socket (EPOLLOUT)
	fdClosed                bool

	// Writer side, under mu (these flags above it, to pack them).
	closing    bool // take no more output
	flushClose bool // closing after what is buffered is written
	wantDrain  bool
	ops        uint8
	queued     bool

	// (The write timeout and the backlog marks are the Server's
	// Config: WriteTimeout, MaxOutboundBytes/2 and 4*MaxOutboundBytes,
	// not copied into every connection.)

	mu       sync.Mutex
	out      []byte // appended to by beginWrite/endWrite callers
	wbuf     []byte // being written by the poller: wbuf[woff:] is not written yet
	woff     int    // poller only (wbuf too, once swapped in)
	pending  int    // len(wbuf)-woff, for the callers' backlog
	mark     int    // len(out) at beginWrite
	writeDue int64  // unix ns: output must make progress by then (0: none)
	lastOut  int64  // unix ns: output last emptied
}

var _ transportStarter = (*epollTransport)(nil)

func (t *epollTransport) start(h handler) {
	t.h = h
	t.p.enqueue(t, opRegister)
}

func (t *epollTransport) goroutines() int { return 1 }

func (t *epollTransport) abort() { unix.Close(int(t.fd)) }

func (t *epollTransport) remoteAddr() string { return t.remote }

func (t *epollTransport) setTimeouts(deadline time.Time, idle time.Duration) {
	t.deadline, t.idle = 0, idle
	if !deadline.IsZero() {
		t.deadline = deadline.UnixNano()
	}
}

func (t *epollTransport) pause(until time.Time) { t.resumeAt = max(until.UnixNano(), 1) }

func (t *epollTransport) setMaxPacket(n int) {
	switch {
	case n <= 0:
		n = packet.DefaultMaxSize
	case n > packet.MaxRemainingLength:
		n = packet.MaxRemainingLength
	}
	t.maxPacket = int32(n)
}

// keep stores rest (a suffix of the shared buffer or of t.in) as t.in.
func (t *epollTransport) keep(rest []byte) {
	switch {
	case len(rest) == 0:
		if cap(t.in) > packet.DefaultReadBufferSize {
			t.in = nil
		} else if t.in != nil {
			t.in = t.in[:0]
		}
	case len(t.in) > 0 && &rest[0] == &t.in[len(t.in)-len(rest)]:
		t.in = t.in[:copy(t.in, rest)] // a suffix of t.in: slide it down
	default:
		t.in = append(t.in[:0], rest...)
	}
}

// readDue is when reading times out (unix ns, 0: never): the earliest of
// the handler's deadline, idle after the last packet, and the deadline
// of a started packet.
func (t *epollTransport) readDue() int64 {
	due := t.deadline
	if t.idle > 0 {
		if d := t.lastPacket + int64(t.idle); due == 0 || d < due {
			due = d
		}
	}
	if t.partialDue != 0 && (due == 0 || t.partialDue < due) {
		due = t.partialDue
	}
	return due
}

func (t *epollTransport) runBlocking(header byte, body []byte) {
	defer func() {
		if r := recover(); r != nil {
			t.p.srv.panicked("reader", r, debug.Stack())
			t.blockErr = errConnPanic
		}
		t.p.enqueue(t, opResume)
	}()
	t.blockErr = t.h.handlePacket(header, body)
}

func (t *epollTransport) closeHandler() {
	defer t.p.srv.wg.Done()
	callClosed(t.p.srv, t.h, t.reason)
}

func (t *epollTransport) beginWrite() ([]byte, int, bool) {
	t.mu.Lock()
	t.mark = len(t.out)
	return t.out, len(t.out) + t.pending, !t.closing
}

func (t *epollTransport) endWrite(buf []byte) {
	if t.closing {
		buf = buf[:t.mark]
	}
	t.out = buf
	over := len(buf)+t.pending > 4*t.p.srv.cfg.MaxOutboundBytes
	push := len(buf) > t.mark && t.markLocked(opFlush)
	t.mu.Unlock()
	if push {
		t.p.push(t)
	}
	if over {
		t.p.srv.slowConsumer(slowBacklog, t.remote)
		t.close(false)
	}
}

func (t *epollTransport) notifyDrained() {
	t.mu.Lock()
	t.wantDrain = true
	t.mu.Unlock()
	t.p.enqueue(t, opFlush) // the backlog may be gone already
}

func (t *epollTransport) close(flush bool) {
	t.mu.Lock()
	if !t.closing {
		t.closing, t.flushClose = true, flush
	} else if !flush {
		t.flushClose = false
	}
	t.mu.Unlock()
	t.p.enqueue(t, opClose)
}
