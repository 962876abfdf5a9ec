package router

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// fakeTransport records output and lets a test set the backlog, so the
// slow-consumer rules run without sockets.
type fakeTransport struct {
	mu        sync.Mutex
	out       []byte
	backlog   int
	closed    bool
	wantDrain bool
}

func (f *fakeTransport) beginWrite() ([]byte, int, bool) {
	f.mu.Lock()
	return f.out, f.backlog, !f.closed
}
func (f *fakeTransport) endWrite(b []byte) { f.out = b; f.mu.Unlock() }
func (f *fakeTransport) notifyDrained() {
	f.mu.Lock()
	f.wantDrain = true
	f.mu.Unlock()
}
func (f *fakeTransport) setTimeouts(time.Time, time.Duration) {}
func (f *fakeTransport) setMaxPacket(int)                     {}
func (f *fakeTransport) pause(time.Time)                      {}
func (f *fakeTransport) close(bool) {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
}
func (f *fakeTransport) remoteAddr() string { return "fake" }

func (f *fakeTransport) set(backlog int) {
	f.mu.Lock()
	f.backlog = backlog
	f.mu.Unlock()
}

// take returns the PUBLISH payloads written since the last call.
func (f *fakeTransport) take(t *testing.T) []string {
	t.Helper()
	f.mu.Lock()
	data := f.out
	f.out = nil
	f.mu.Unlock()
	var out []string
	rd := packet.NewReader(bytes.NewReader(data), 1<<20)
	for {
		h, body, err := rd.ReadPacket()
		if err != nil {
			return out
		}
		if h>>4 != packet.PUBLISH {
			continue
		}
		var p packet.Publish
		if err := packet.DecodePublish(h, body, packet.V311, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s:%d:%s", p.Topic, p.QoS, p.Payload))
	}
}

// boundSession makes a server (not serving) and a connection on a fake
// transport bound to a session of alice.
func boundSession(t *testing.T, edit func(*Config)) (*Server, *mqttConn, *fakeTransport) {
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if edit != nil {
		edit(&cfg)
	}
	acl := newMemACL()
	acl.setMember("g1", "alice", true)
	srv, err := New(cfg, newMemAuth(), acl, &loopFwd{acl: acl}, message.NewIDSource("t"))
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeTransport{}
	c := newMQTTConn(srv, ft)
	c.id = Identity{ID: "alice"}
	c.clientID = "c1"
	c.clean = true
	if code := srv.bind(c, func(b []byte, _ bool) []byte { return b }); code != 0 {
		t.Fatalf("bind: %#x", code)
	}
	if q, _ := c.sess.Load().subscribe(c, "/private/alice/#", 1, subTarget{}); q != 1 {
		t.Fatalf("subscribe: %#x", q)
	}
	return srv, c, ft
}

func TestSlowConsumerPolicy(t *testing.T) {
	srv, c, ft := boundSession(t, func(c *Config) { c.MaxOutboundBytes = 100 })
	msg := func(id uint64, qos byte) *message.Message {
		return &message.Message{ID: id, Kind: message.Group, To: "g1", QoS: qos, Payload: []byte(fmt.Sprint(id))}
	}
	srv.Deliver(msg(1, 0), []string{"alice"})
	if got := ft.take(t); fmt.Sprint(got) != "[/private/alice/group/g1:0:1]" {
		t.Fatalf("got %v", got)
	}
	// socket backlog over the cap: QoS 0 dropped, QoS 1 queued
	ft.set(150)
	srv.Deliver(msg(2, 0), []string{"alice"})
	srv.Deliver(msg(3, 1), []string{"alice"})
	srv.Deliver(msg(4, 1), []string{"alice"})
	if got := ft.take(t); len(got) != 0 {
		t.Fatalf("written while backlogged: %v", got)
	}
	if d := srv.Stats().QueueDropped; d != 1 {
		t.Fatalf("dropped %d", d)
	}
	if !ft.wantDrain {
		t.Fatal("no drain notification requested")
	}
	// the socket drains: the queued QoS 1 messages go out in order
	ft.set(0)
	c.drained()
	if got := ft.take(t); fmt.Sprint(got) != "[/private/alice/group/g1:1:3 /private/alice/group/g1:1:4]" {
		t.Fatalf("after drain: %v", got)
	}
	srv.Deliver(msg(3, 1), []string{"alice"}) // a duplicate id: dropped
	if got := ft.take(t); len(got) != 0 {
		t.Fatalf("duplicate delivered: %v", got)
	}
}

func TestLateCloseAfterTakeoverLeavesSession(t *testing.T) {
	// Takeover at the unit level: the old connection's close runs after the new
	// one is bound and must not touch the session.
	srv, old, oldT := boundSession(t, nil)
	sess := old.sess.Load()
	ft := &fakeTransport{}
	nc := newMQTTConn(srv, ft)
	nc.id, nc.clientID, nc.clean = Identity{ID: "alice"}, "c1", false
	// the old session was clean: the new connection gets a fresh one
	srv.bind(nc, func(b []byte, _ bool) []byte { return b })
	if !oldT.closed {
		t.Fatal("old connection not closed")
	}
	old.closed(errClosedByServer)
	if s := nc.sess.Load(); s == nil || s == sess || s.removed {
		t.Fatal("new connection lost its session")
	}
	nc.sess.Load().subscribe(nc, "/private/alice", 1, subTarget{})
	// now a persistent takeover: same session object handed over
	ft2 := &fakeTransport{}
	nc2 := newMQTTConn(srv, ft2)
	nc2.id, nc2.clientID, nc2.clean = Identity{ID: "alice"}, "c1", false
	present := false
	srv.bind(nc2, func(b []byte, p bool) []byte { present = p; return b })
	if !present || nc2.sess.Load() != nc.sess.Load() {
		t.Fatal("persistent session not handed over")
	}
	nc.closed(errClosedByServer) // late close of the previous one
	s := nc2.sess.Load()
	if s.removed || s.conn != nc2 || len(s.subs) != 1 {
		t.Fatalf("late close touched the session: removed=%v subs=%d", s.removed, len(s.subs))
	}
	if st := srv.Stats(); st.Sessions != 1 || st.Connections != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSlowConsumerDisconnected(t *testing.T) {
	// Over real sockets: a client that never reads is cut off by the
	// write timeout, counted and logged; Deliver never blocks and a fast
	// client gets everything.
	var logs *testutil.SyncBuffer
	e := newEnv(t, func(c *Config) {
		c.WriteTimeout = 300 * time.Millisecond
		c.MaxOutboundBytes = 256 << 10
		logs = captureLogs(c)
	})
	slow := connectRaw(t, e, "alice", "slow", true)
	slow.subscribe(1, "/private/alice/#")
	if tc, ok := slow.NetConn().(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	fast := connectRaw(t, e, "bob", "fast", true)
	fast.subscribe(1, "/private/bob/#")
	payload := make([]byte, 32<<10)
	const n = 200 // 6.4 MB, far more than socket buffers hold
	received := make(chan int)
	go func() {
		count := 0
		var p packet.Publish
		for count < n {
			h, body, err := fast.read(10 * time.Second)
			if err != nil {
				break
			}
			if h>>4 == packet.PUBLISH {
				count++
				if packet.DecodePublish(h, body, packet.V311, &p) == nil && p.QoS == 1 {
					fast.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
				}
			}
		}
		received <- count
	}()
	start := time.Now()
	// The slow client gets QoS 0, which its backlog makes the server
	// drop until its blocked writes cut it off; the fast one QoS 1, so
	// what its socket cannot take at once waits in its queue (200 <
	// MaxQueued) however busy the machine is.
	for i := range n {
		e.srv.Deliver(&message.Message{ID: uint64(i + 1), Kind: message.Group, To: "g1", Payload: payload}, []string{"alice"})
		e.srv.Deliver(&message.Message{ID: uint64(i + 1), Kind: message.Group, To: "g1", QoS: 1, Payload: payload}, []string{"bob"})
		time.Sleep(time.Millisecond) // paced: the slow client's socket buffers fill, then its writes block
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Deliver blocked: %v", d)
	}
	if got := <-received; got != n {
		t.Fatalf("fast client got %d of %d", got, n)
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if c := e.srv.Stats().Connections; c != 1 {
			return fmt.Errorf("%d connections", c)
		}
		return nil
	})
	if e.srv.Stats().QueueDropped == 0 {
		t.Fatal("no QoS 0 message dropped for the slow consumer")
	}
	if n := e.srv.Stats().SlowConsumers; n != 1 {
		t.Fatalf("slow consumers %d, want 1", n)
	}
	if !logs.Contains(`"reason":"write_timeout"`) || !logs.Contains("slow consumer") {
		t.Fatalf("the cut-off was not logged:\n%s", logs.String())
	}
}

func TestResendWaitsForBacklogAndGoesFirst(t *testing.T) {
	// At the unit level: a resend stops at MaxOutboundBytes and
	// continues when the socket drains; a new message arriving meanwhile
	// waits behind the resends ([MQTT-4.6.0-1] order).
	srv, c, ft := boundSession(t, func(c *Config) { c.MaxOutboundBytes = 100 })
	msg := func(id uint64) *message.Message {
		return &message.Message{ID: id, Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte(fmt.Sprint(id))}
	}
	for id := uint64(1); id <= 3; id++ {
		srv.Deliver(msg(id), []string{"alice"})
	}
	if got := ft.take(t); len(got) != 3 {
		t.Fatalf("sent %v", got)
	}
	sess := c.sess.Load()
	ft.set(150) // backlogged: the resend waits
	sess.mu.Lock()
	sess.resendInflight(0)
	sess.mu.Unlock()
	if got := ft.take(t); len(got) != 0 || !ft.wantDrain {
		t.Fatalf("resent while backlogged: %v (drain requested %v)", got, ft.wantDrain)
	}
	ft.set(0)
	srv.Deliver(msg(4), []string{"alice"}) // must not overtake the resends
	if got := ft.take(t); len(got) != 0 {
		t.Fatalf("new message ahead of the resends: %v", got)
	}
	c.drained()
	want := "[/private/alice:1:1 /private/alice:1:2 /private/alice:1:3 /private/alice:1:4]"
	if got := ft.take(t); fmt.Sprint(got) != want {
		t.Fatalf("after drain: %v, want %v", got, want)
	}
}
