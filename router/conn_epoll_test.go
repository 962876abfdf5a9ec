//go:build linux

package router

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// The whole router suite runs on the event loop (the default); these tests
// pin down what is particular to it. ROUTER_TEST_GOROUTINES=1 runs the
// suite on the goroutine transport instead (make test does both).

func skipIfGoroutines(t *testing.T, e *env) {
	if e.srv.cfg.GoroutinePerConn {
		t.Skip("event-loop test; the suite runs on goroutines per connection")
	}
}

// TestEventLoopIdleConnectionsOwnNoGoroutine: connected, subscribed, silent
// clients cost the server no goroutine each (the goroutine transport
// spends two), and they still get their messages.
func TestEventLoopIdleConnectionsOwnNoGoroutine(t *testing.T) {
	e := newEnv(t, nil)
	skipIfGoroutines(t, e)
	warm := connectRaw(t, e, "alice", "warm", true) // starts the pollers
	warm.subscribe(1, "/private/alice/#")
	before := runtime.NumGoroutine()

	const n = 200
	clients := make([]*rawClient, n)
	ids := make([]string, n)
	for i := range clients {
		ids[i] = fmt.Sprintf("idle%d", i)
		e.auth.add(ids[i], "tok-"+ids[i])
		clients[i] = connectRaw(t, e, ids[i], "c", true)
		clients[i].subscribe(1, "/private/"+ids[i]+"/#")
	}
	// Closing handlers and may-block CONNECT goroutines are short-lived:
	// let them end before counting.
	var grown int
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		grown = runtime.NumGoroutine() - before
		if grown > n/10 {
			return fmt.Errorf("%d goroutines more with %d idle connections", grown, n)
		}
		return nil
	})
	t.Logf("%d idle connections: %d goroutines more", n, grown)

	for i, c := range clients {
		m := directMsg(uint64(i+1), "hello "+ids[i])
		m.To = ids[i]
		e.srv.Deliver(m, ids[i:i+1])
		if p := c.readPublish(); string(p.Payload) != "hello "+ids[i] {
			t.Fatalf("payload %q", p.Payload)
		}
	}
}

// TestEventLoopSplitPackets: a stream of packets cut at random points, each
// piece its own TCP segment, is framed exactly as if it came whole: the
// poller keeps an incomplete packet across reads, and one read may end
// one packet and start the next.
func TestEventLoopSplitPackets(t *testing.T) {
	e := newEnv(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		r := dialRaw(t, e.addr)
		var stream []byte
		stream = append(stream, connectPacket("alice", "tok-alice", fmt.Sprintf("split-%d", round), true, 60)...)
		stream = packet.AppendSubscribe(stream, &packet.Subscribe{PacketID: 7,
			Filters: []packet.Subscription{{Filter: "/private/alice/#", QoS: 1}}})
		const msgs = 5
		for i := range msgs {
			stream = packet.AppendPublish(stream, 1, false, false, uint16(10+i),
				[]byte(fmt.Sprintf("m%d-%d", round, i)), "/private/alice")
		}
		for len(stream) > 0 {
			k := min(1+rng.IntN(12), len(stream))
			r.send(stream[:k])
			stream = stream[k:]
			if rng.IntN(3) == 0 {
				// A real gap in time, so that the server gets the pieces in
				// separate reads: split packets are what this tests.
				time.Sleep(time.Millisecond)
			}
		}
		r.expectConnack(0)
		r.mustRead(packet.SUBACK)
		acks, pubs := 0, 0
		for range 2 * msgs {
			h, body, err := r.read(5 * time.Second)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			switch h >> 4 {
			case packet.PUBACK:
				acks++
			case packet.PUBLISH:
				var p packet.Publish
				if err := packet.DecodePublish(h, body, packet.V311, &p); err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("m%d-%d", round, pubs); string(p.Payload) != want {
					t.Fatalf("round %d: got %q, want %q", round, p.Payload, want)
				}
				pubs++
			default:
				t.Fatalf("round %d: packet type %d", round, h>>4)
			}
		}
		if acks != msgs || pubs != msgs {
			t.Fatalf("round %d: %d PUBACKs and %d PUBLISHes, want %d each", round, acks, pubs, msgs)
		}
		r.Abort()
	}
}

// TestEventLoopSlowLoginDoesNotStall: a CONNECT whose authentication
// blocks runs off the loop; meanwhile the other connections on the same
// pollers keep getting their messages.
func TestEventLoopSlowLoginDoesNotStall(t *testing.T) {
	e := newEnv(t, nil)
	bob := connectRaw(t, e, "bob", "bob", true)
	bob.subscribe(1, "/private/bob/#")

	release := make(chan struct{})
	var blocked atomic.Int32
	hook := func(id Identity) {
		if id.ID == "alice" {
			blocked.Add(1)
			<-release
		}
	}
	e.auth.onAuth.Store(&hook)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	slow := make([]*rawClient, 2*runtime.GOMAXPROCS(0)) // more than there are pollers
	for i := range slow {
		slow[i] = dialRaw(t, e.addr)
		slow[i].send(connectPacket("alice", "tok-alice", fmt.Sprintf("slow-%d", i), true, 60))
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := blocked.Load(); n < int32(len(slow)) {
			return fmt.Errorf("%d logins blocked", n)
		}
		return nil
	})
	for i := range 3 {
		want := fmt.Sprintf("while blocked %d", i)
		e.srv.Deliver(directMsg(uint64(10+i), want), []string{"bob"})
		if p := bob.readPublish(); string(p.Payload) != want {
			t.Fatalf("got %q, want %q", p.Payload, want)
		}
	}
	e.auth.onAuth.Store(nil)
	unblock()
	for _, c := range slow {
		c.expectConnack(0)
	}
}

func directMsg(id uint64, payload string) *message.Message {
	return &message.Message{ID: id, Kind: message.Direct, From: "d1", To: "bob", QoS: 1, Payload: []byte(payload)}
}

// TestEpollTransportSize: as TestIdleStructSizes, for the event loop's
// per-connection state.
func TestEpollTransportSize(t *testing.T) {
	if n := unsafe.Sizeof(epollTransport{}); n > 256 {
		t.Errorf("epollTransport is %d bytes, over its budget of 256", n)
	}
}
