//go:build linux

package router

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// TestOutboundBacklogCountsBufferBeingWritten: MaxOutboundBytes bounds
// the bytes a connection holds that the kernel has not taken, counting
// the buffer the writer has swapped in and is writing. Over a real socket
// that takes nothing more, QoS 0 deliveries are accepted until the
// transport holds MaxOutboundBytes, then dropped: bytes accepted minus
// bytes the kernel took end at least MaxOutboundBytes and under
// MaxOutboundBytes + one message (with equal messages: exactly
// ceil(MaxOutboundBytes/len) messages).
//
// Regression (00ae75f): the event loop set pending (the swapped-in
// wbuf's share of beginWrite's backlog) only when a write made progress,
// so while the first write after a swap took nothing that buffer was not
// counted, and another MaxOutboundBytes were accepted on top of it.
//
// Making the swap's first write take exactly 0 bytes, deterministically
// (a write that takes part of the buffer sets pending and hides the bug):
//   - the client sets a small SO_RCVBUF before connecting and reads
//     nothing after its SUBACK: the server's data queues in the server's
//     send buffer, and the small window bounds the server's MSS to a few
//     KiB;
//   - every PUBLISH is exactly one MSS long, so each skb in the server's
//     send queue is full and a write never tops up the last one: it needs
//     a new skb, which the kernel allocates only while the queue is under
//     SO_SNDBUF. A write takes whole messages or nothing;
//   - a few messages go one by one into a large locked SO_SNDBUF until
//     the kernel has all of them and the transport holds nothing; then
//     SO_SNDBUF is shrunk far under what is queued. From then on no write
//     takes a byte (checked: the kernel's byte count stays put);
//   - one message is delivered and the test waits (white box, the
//     outbound buffer is empty) until the writer has swapped it in: its
//     write took nothing. The rest then count against the limit.
//
// The kernel's share is read on the server socket, so the bound is exact
// whatever the kernel buffers hold. Against the reverted fix the
// transport takes one message more (33 instead of 32 here) every run.
//
// It runs on both transports, not skipped on the goroutine one
// (ROUTER_TEST_GOROUTINES=1): that one counts its Write in progress in
// full (tcpTransport.writing), so the same contract holds there and is
// checked the same way; only the event loop had the regression.
func TestOutboundBacklogCountsBufferBeingWritten(t *testing.T) {
	const maxOut = 64 << 10
	e := newEnv(t, func(c *Config) { c.MaxOutboundBytes = maxOut })
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	r := &rawClient{t: t, Conn: mqttc.New(nc, mqttc.Options{})}
	r.send(connectPacket("alice", "tok-alice", "slow", true, 0)) // keepalive 0: no idle timeout
	r.expectConnack(0)
	r.send(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 1,
		Filters: []packet.Subscription{{Filter: "/private/alice/#", QoS: 0}}}))
	r.mustRead(packet.SUBACK)
	// From here on the client reads nothing.

	sock, outBuffered := serverSocket(t, e, "alice")
	setSndbuf := func(n int) {
		t.Helper()
		var serr error
		sock(func(fd int) { serr = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, n) })
		if serr != nil {
			t.Fatalf("SO_SNDBUF: %v", serr)
		}
	}
	// written: the bytes the server has handed to the kernel on this
	// socket (write_seq): acked ones (tcpi_bytes_acked) plus the rest
	// (SIOCOUTQ). Read until no ACK came between the two calls, or a
	// delayed ACK would count its bytes twice.
	written := func() int {
		t.Helper()
		var n int
		var serr error
		sock(func(fd int) {
			for {
				a1, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
				if err != nil {
					serr = err
					return
				}
				outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
				if err != nil {
					serr = err
					return
				}
				a2, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
				if err != nil {
					serr = err
					return
				}
				if a1.Bytes_acked == a2.Bytes_acked {
					n = outq + int(a1.Bytes_acked)
					return
				}
			}
		})
		if serr != nil {
			t.Fatalf("server socket: %v", serr)
		}
		return n
	}
	var mss int
	sock(func(fd int) {
		if ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			mss = int(ti.Snd_mss)
		}
	})
	if mss < 64 || mss > maxOut/8 {
		t.Fatalf("server MSS %d: the small client window should bound it to a few KiB", mss)
	}
	const topic = "/private/alice" // a direct message's delivery topic for alice
	payload := make([]byte, mss)
	for len(packet.AppendPublish(nil, 0, false, false, 0, payload, topic)) > mss {
		payload = payload[:len(payload)-1]
	}
	msgLen := len(packet.AppendPublish(nil, 0, false, false, 0, payload, topic))
	if msgLen != mss {
		t.Fatalf("PUBLISH of %d bytes, want the MSS %d", msgLen, mss)
	}
	var id uint64
	deliver := func() {
		id++
		e.srv.Deliver(&message.Message{ID: id, Kind: message.Direct, From: "d1", To: "alice",
			QoS: 0, Payload: payload}, []string{"alice"})
	}

	// Phase 1: a few messages, each into the kernel before the next (a
	// large locked send buffer takes them all), so the transport ends
	// empty with the kernel holding them.
	setSndbuf(256 << 10)
	base := written() // CONNACK and SUBACK
	const warm = 16
	for i := 1; i <= warm; i++ {
		deliver()
		want := base + i*msgLen
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if w := written(); w != want {
				return fmt.Errorf("kernel has %d bytes of message %d, want %d", w-base, i, want-base)
			}
			return nil
		})
	}
	kernel := written() - base
	// The kernel takes nothing more: what is queued is far over the new
	// SO_SNDBUF (the kernel's minimum, ~4.5 KiB), and the client never
	// reads, so it stays over.
	setSndbuf(1)

	// Phase 2: one message, which the writer swaps in (its write takes
	// nothing) before any other arrives, so it is the buffer being written
	// while the rest are counted against the limit; then deliver until the
	// first drop.
	accepted0 := e.srv.Stats().Deliveries
	deliver()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := outBuffered(); n != 0 {
			return fmt.Errorf("%d bytes not yet taken by the writer", n)
		}
		return nil
	})
	for e.srv.Stats().QueueDropped == 0 {
		if int(id) > warm+4*maxOut/msgLen {
			t.Fatalf("no QoS 0 message dropped after %d messages to a socket that takes nothing", id-warm)
		}
		deliver()
	}
	st := e.srv.Stats()
	took := written() - base
	if took != kernel {
		t.Fatalf("scenario broken: the kernel took %d bytes after SO_SNDBUF was shrunk (it must take none)", took-kernel)
	}
	// What the transport holds: bytes accepted minus bytes the kernel took.
	held := int(st.Deliveries)*msgLen - took
	accepted := int(st.Deliveries - accepted0)
	want := (maxOut + msgLen - 1) / msgLen
	t.Logf("%d-byte messages, MaxOutboundBytes %d: the kernel took %d, then %d were accepted before the first drop (want %d); the transport holds %d bytes",
		msgLen, maxOut, warm, accepted, want, held)
	if held >= maxOut+msgLen {
		t.Errorf("the transport holds %d bytes (%d messages accepted before the first drop, want %d): over MaxOutboundBytes (%d) by %d, a whole %d-byte message or more: the buffer being written was not counted",
			held, accepted, want, maxOut, held-maxOut, msgLen)
	}
	if held < maxOut {
		t.Errorf("the transport holds %d bytes (%d messages accepted, want %d), under MaxOutboundBytes (%d), yet dropped",
			held, accepted, want, maxOut)
	}
}

// serverSocket finds the server side of principal id's (only)
// connection, on either transport. sock runs fn with its fd (open while
// the connection is, which the test outlives); outBuffered is the length
// of its outbound buffer, the bytes appended that the writer has not yet
// taken (swapped in to write).
func serverSocket(t *testing.T, e *env, id string) (sock func(fn func(fd int)), outBuffered func() int) {
	t.Helper()
	e.srv.mu.RLock()
	sessions := e.srv.sessionsOf(id)
	e.srv.mu.RUnlock()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions for %s", len(sessions), id)
	}
	sessions[0].mu.Lock()
	c := sessions[0].conn
	sessions[0].mu.Unlock()
	if c == nil {
		t.Fatalf("%s not connected", id)
	}
	switch tr := c.t.(type) {
	case *epollTransport:
		fd := int(tr.fd)
		sock = func(fn func(int)) { fn(fd) }
		outBuffered = func() int {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			return len(tr.out)
		}
	case *tcpTransport:
		tc, ok := tr.nc.(*net.TCPConn)
		if !ok {
			t.Fatalf("connection is a %T", tr.nc)
		}
		rc, err := tc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		sock = func(fn func(int)) {
			if err := rc.Control(func(fd uintptr) { fn(int(fd)) }); err != nil {
				t.Fatal(err)
			}
		}
		outBuffered = func() int {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			return len(tr.out)
		}
	default:
		t.Fatalf("transport %T", c.t)
	}
	return sock, outBuffered
}
