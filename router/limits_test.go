package router

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// transports runs f on each transport: the event loop and goroutines per
// connection (the two pause a connection differently).
func transports(t *testing.T, f func(t *testing.T, goroutines bool)) {
	for _, g := range []bool{false, true} {
		name := "epoll"
		if g {
			name = "goroutines"
		}
		t.Run(name, func(t *testing.T) { f(t, g) })
	}
}

// refusals returns the count of one refusal reason.
func refusals(e *env, reason string) uint64 {
	return e.srv.m.refusals[index(allReasons, reason)].Load()
}

// privFilter is a filter in id's private tree exactly n bytes long.
func privFilter(id, tag string, n int) string {
	f := "/private/" + id + "/" + tag + "/"
	return f + strings.Repeat("x", n-len(f))
}

// A filter over MaxFilterLen gets 0x80; the other filters of the same
// SUBSCRIBE are granted, and one exactly at the limit is too.
func TestFilterTooLong(t *testing.T) {
	e := newEnv(t, nil)
	max := e.srv.cfg.MaxFilterLen
	if max != 256 {
		t.Fatalf("default MaxFilterLen %d", max)
	}
	a := connectRaw(t, e, "alice", "a", true)
	codes := a.subscribe(1, "/private/alice/#", privFilter("alice", "long", max+1), "/group/g1", privFilter("alice", "edge", max))
	if want := []byte{1, packet.SubackFailure, 1, 1}; string(codes) != string(want) {
		t.Fatalf("SUBACK codes % x, want % x", codes, want)
	}
	if n := refusals(e, reasonFilterTooLong); n != 1 {
		t.Fatalf("filter_too_long refusals %d, want 1", n)
	}
	// The connection is still up and the granted filters work.
	d := connectRaw(t, e, "d1", "d", true)
	d.publish(0, 0, "/group/g1", "hi")
	if p := a.readPublish(); string(p.Payload) != "hi" {
		t.Fatalf("got %q", p.Payload)
	}
}

// The subscription bytes of a principal are counted across its sessions,
// and come back on UNSUBSCRIBE, when a clean session ends and when a
// persistent one expires.
func TestSubscriptionBytesAcrossSessions(t *testing.T) {
	const flen = 100
	cost := flen + subscriptionOverhead
	e := newEnv(t, func(c *Config) {
		c.MaxSubscriptionBytes = 2*cost + cost/2 // room for two filters
		// Long enough that the offline check below runs before expiry on
		// a loaded machine; sessions(2) waits for the expiry.
		c.SessionExpiry = 2 * time.Second
	})
	f := func(i int) string { return privFilter("alice", fmt.Sprint("f", i), flen) }
	refused := func(want uint64) {
		t.Helper()
		if n := refusals(e, reasonSubscriptionBytes); n != want {
			t.Fatalf("subscription_bytes refusals %d, want %d", n, want)
		}
	}

	sessions := func(want int64) {
		t.Helper()
		testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			if n := e.srv.Stats().Sessions; n != want {
				return fmt.Errorf("%d sessions, want %d", n, want)
			}
			return nil
		})
	}

	a := connectRaw(t, e, "alice", "a", true)
	if c := a.subscribe(1, f(1)); c[0] != 1 {
		t.Fatalf("first filter: %#x", c[0])
	}
	// Subscribing to the same filter again holds nothing more.
	for range 3 {
		if c := a.subscribe(2, f(1)); c[0] != 1 {
			t.Fatalf("same filter again: %#x", c[0])
		}
	}
	// A second session of alice: one more filter fits, not two.
	b := connectRaw(t, e, "alice", "b", false)
	if c := b.subscribe(3, f(2), f(3)); c[0] != 1 || c[1] != packet.SubackFailure {
		t.Fatalf("second session: % x, want 01 80", c)
	}
	refused(1)
	// Another principal has its own budget.
	bob := connectRaw(t, e, "bob", "b", true)
	if c := bob.subscribe(4, privFilter("bob", "x", flen), privFilter("bob", "y", flen)); c[0] != 1 || c[1] != 1 {
		t.Fatalf("bob: % x", c)
	}

	// UNSUBSCRIBE gives the bytes back.
	a.send(packet.AppendUnsubscribe(nil, &packet.Unsubscribe{PacketID: 5, Filters: []string{f(1)}}))
	a.mustRead(packet.UNSUBACK)
	if c := b.subscribe(6, f(3)); c[0] != 1 {
		t.Fatalf("after unsubscribe: %#x", c[0])
	}
	if c := a.subscribe(7, f(4)); c[0] != packet.SubackFailure {
		t.Fatalf("over the cap again: %#x", c[0])
	}
	refused(2)

	// b's persistent session keeps its filters offline, until it expires.
	b.disconnect()
	b.expectClosed()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 2 {
			return fmt.Errorf("%d connections, want 2 once b is offline", n)
		}
		return nil
	})
	if c := a.subscribe(8, f(4)); c[0] != packet.SubackFailure {
		t.Fatalf("offline session's filters were released: %#x", c[0])
	}
	sessions(2) // a's and bob's, after b's expired
	if c := a.subscribe(9, f(4), f(5)); c[0] != 1 || c[1] != 1 {
		t.Fatalf("after expiry: % x", c)
	}

	// A clean session that ends gives its filters back: a new session
	// can take them.
	a.disconnect()
	a.expectClosed()
	sessions(1) // bob's
	a2 := connectRaw(t, e, "alice", "a2", true)
	if c := a2.subscribe(10, f(6), f(7)); c[0] != 1 || c[1] != 1 {
		t.Fatalf("after the session ended: % x", c)
	}
	refused(3)

	// With no session left, nothing of the principal stays.
	a2.disconnect()
	a2.expectClosed()
	bob.disconnect()
	bob.expectClosed()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		if n := len(e.srv.principals.m); n != 0 {
			return fmt.Errorf("%d principal states kept", n)
		}
		return nil
	})
}

// floodGroup runs the flooding scenario: bob, a member of g1, is offline
// with a persistent QoS 1 session (queue of 50); d1 publishes five
// messages to g1; alice floods g1 with 300 QoS 1 messages; d1, another
// principal, publishes five more and must get its PUBACKs; then bob
// reconnects. It returns the payloads bob gets first (up to 10) and
// whether d1's second batch was acknowledged while alice still had
// messages waiting to be read.
// With waitDrop, bob reconnects only once the whole flood reached his
// queue (the control case: on a loaded machine the unlimited flood may
// still be on its way when d1's second batch is acknowledged).
func floodGroup(t *testing.T, e *env, waitDrop bool) (first []string, d1First bool) {
	bob := connectRaw(t, e, "bob", "phone", false)
	bob.subscribe(1, "/group/g1")
	bob.disconnect()
	bob.expectClosed()

	d1 := connectRaw(t, e, "d1", "d", true)
	for i := range 5 {
		d1.publish(1, uint16(i+1), "/group/g1", fmt.Sprint("early-", i))
		d1.mustRead(packet.PUBACK)
	}

	alice := connectRaw(t, e, "alice", "a", true)
	const flood = 300
	buf := make([]byte, 0, flood*32)
	for i := range flood {
		buf = packet.AppendPublish(buf, 1, false, false, uint16(i+1), []byte("flood"), "/group/g1")
	}
	alice.send(buf) // one write: all of it is on the server's doorstep
	countAlice := func() int {
		e.fwd.mu.Lock()
		defer e.fwd.mu.Unlock()
		n := 0
		for _, m := range e.fwd.msgs {
			if m.From == "alice" {
				n++
			}
		}
		return n
	}
	// Wait until the server has read some of the flood.
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n := countAlice(); n < 10 {
			return fmt.Errorf("%d of alice's messages forwarded", n)
		}
		return nil
	})

	for i := range 5 {
		d1.publish(1, uint16(i+10), "/group/g1", fmt.Sprint("late-", i))
		d1.mustRead(packet.PUBACK)
	}
	d1First = countAlice() < flood
	if waitDrop {
		// The whole flood offered to bob's queue, not just its start (a
		// reconnect halfway found the early messages still queued).
		testutil.CheckFor(t, 10*time.Second, 2*time.Millisecond, func() error {
			if st := e.srv.Stats(); st.QueueDropped == 0 || countAlice() < flood {
				return fmt.Errorf("dropped %d; %d of alice's messages forwarded", st.QueueDropped, countAlice())
			}
			return nil
		})
	}

	bob = connectRaw(t, e, "bob", "phone", false)
	for range 10 {
		p := bob.readPublish()
		first = append(first, string(p.Payload))
		bob.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	}
	return first, d1First
}

// A group member flooding far over its publish rate is slowed down to
// it: another member's bounded offline queue keeps the messages sent
// before the flood, a publisher of another principal is not held up,
// and nothing the flooder sent is dropped. Without the limit, the same
// flood flushes the queue (the control case, so the test can fail).
func TestPublishRateFloodKeepsOfflineQueue(t *testing.T) {
	transports(t, func(t *testing.T, goroutines bool) {
		limited := func(c *Config) {
			c.GoroutinePerConn = goroutines
			c.MaxQueued = 50
			c.PublishRate = 5
			c.PublishBurst = 10
			c.PublishByteRate = -1
		}
		t.Run("limited", func(t *testing.T) {
			e := newEnv(t, limited)
			first, d1First := floodGroup(t, e, false)
			for i := range 5 {
				if want := fmt.Sprint("early-", i); first[i] != want {
					t.Fatalf("bob's offline queue lost the early messages: first %q", first)
				}
			}
			if !d1First {
				t.Fatal("d1's publishes waited for alice's flood")
			}
			st := e.srv.Stats()
			if st.QueueDropped != 0 || st.Throttled == 0 {
				t.Fatalf("dropped %d, throttled %d: %+v", st.QueueDropped, st.Throttled, st)
			}
		})
		t.Run("control without limit", func(t *testing.T) {
			e := newEnv(t, func(c *Config) {
				limited(c)
				c.PublishRate = -1
			})
			first, _ := floodGroup(t, e, true)
			if strings.HasPrefix(first[0], "early-") {
				t.Fatalf("without a limit the flood did not reach bob's queue bound: %q", first)
			}
			if st := e.srv.Stats(); st.QueueDropped == 0 || st.Throttled != 0 {
				t.Fatalf("dropped %d, throttled %d", st.QueueDropped, st.Throttled)
			}
		})
	})
}

// Backpressure: two connections of one principal share its message rate;
// everything they publish is acknowledged and forwarded, no faster than
// the rate allows after the burst.
func TestPublishRateSharedAndLossless(t *testing.T) {
	transports(t, func(t *testing.T, goroutines bool) {
		const rate, burst, each = 40, 4, 12
		e := newEnv(t, func(c *Config) {
			c.GoroutinePerConn = goroutines
			c.PublishRate = rate
			c.PublishBurst = burst
			c.PublishByteRate = -1
		})
		conns := []*rawClient{connectRaw(t, e, "alice", "a", true), connectRaw(t, e, "alice", "b", true)}
		start := time.Now()
		errs := make(chan error, len(conns))
		for _, c := range conns {
			go func() {
				buf := []byte(nil)
				for i := range each {
					buf = packet.AppendPublish(buf, 1, false, false, uint16(i+1), []byte("m"), "/group/g1")
				}
				if err := c.WritePacket(buf, 5*time.Second); err != nil {
					errs <- err
					return
				}
				for range each {
					h, _, err := c.ReadPacket(10 * time.Second)
					if err == nil && h>>4 != packet.PUBACK {
						err = fmt.Errorf("packet type %d, want PUBACK", h>>4)
					}
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range conns {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		// 2×12 messages, 4 of them from the burst, the rest at 40/s:
		// at least 0.5 s, whichever connection sent them.
		if min := time.Duration(float64(2*each-burst) / rate * float64(time.Second)); elapsed < min*9/10 {
			t.Fatalf("%d messages in %v, faster than %d/s after a burst of %d (want >= %v)", 2*each, elapsed, rate, burst, min)
		}
		if n := e.fwd.count(); n != 2*each {
			t.Fatalf("%d forwarded, want %d", n, 2*each)
		}
		if st := e.srv.Stats(); st.Throttled == 0 || st.Refusals != 0 {
			t.Fatalf("%+v", st)
		}
		// The throttled connections are fine afterwards.
		for _, c := range conns {
			c.expectQuiet()
		}
	})
}

// The byte rate holds on its own: big messages wait, small ones within
// it do not.
func TestPublishByteRate(t *testing.T) {
	transports(t, func(t *testing.T, goroutines bool) {
		const byteRate, byteBurst, n, size = 20_000, 1_000, 10, 1_000
		e := newEnv(t, func(c *Config) {
			c.GoroutinePerConn = goroutines
			c.PublishRate = -1
			c.PublishByteRate = byteRate
			c.PublishByteBurst = byteBurst
		})
		a := connectRaw(t, e, "alice", "a", true)
		payload := strings.Repeat("p", size)
		start := time.Now()
		for i := range n {
			a.publish(1, uint16(i+1), "/group/g1", payload)
		}
		for range n {
			a.mustRead(packet.PUBACK)
		}
		elapsed := time.Since(start)
		if min := time.Duration(float64(n*size-byteBurst) / byteRate * float64(time.Second)); elapsed < min*9/10 {
			t.Fatalf("%d bytes in %v, want >= %v at %d B/s", n*size, elapsed, min, byteRate)
		}
		if got := e.fwd.count(); got != n {
			t.Fatalf("%d forwarded, want %d", got, n)
		}
	})
}

// A pause longer than the client's keepalive does not time the client
// out: the server stopped reading, so the keepalive restarts after it, and
// the PINGREQ sent meanwhile is answered once the pause ends.
func TestPublishPauseOutlastsKeepalive(t *testing.T) {
	transports(t, func(t *testing.T, goroutines bool) {
		e := newEnv(t, func(c *Config) {
			c.GoroutinePerConn = goroutines
			c.PublishRate = -1
			c.PublishByteRate = 1_000
			c.PublishByteBurst = 100
		})
		a := dialRaw(t, e.addr)
		a.send(connectPacket("alice", "tok-alice", "a", true, 1)) // keepalive 1 s: 1.5 s of silence closes
		a.expectConnack(0)
		// 100 bytes of burst, ~1,900 of debt: a pause of ~1.9 s.
		a.publish(1, 1, "/group/g1", strings.Repeat("p", 1_900))
		a.mustRead(packet.PUBACK)
		start := time.Now()
		a.ping()
		a.mustRead(packet.PINGRESP)
		if d := time.Since(start); d < 1500*time.Millisecond {
			t.Fatalf("PINGRESP after %v: the pause did not outlast the keepalive", d)
		}
		if n := refusals(e, reasonTimeout); n != 0 {
			t.Fatalf("%d timeouts", n)
		}
		a.expectQuiet()
	})
}

// nopFwd forwards nothing and allocates nothing.
type nopFwd struct{ n atomic.Int64 }

func (f *nopFwd) Forward(context.Context, *message.Message) error { f.n.Add(1); return nil }

// publishConn is an authenticated connection of alice on a transport
// that discards output, on a server whose Forwarder drops everything, and
// a QoS 0 PUBLISH to g1 to feed its handler.
// limited: limits on but so high that the loop never goes over them.
func publishConn(tb testing.TB, limited bool) (c *mqttConn, fwd *nopFwd, header byte, body []byte) {
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.PublishRate, cfg.PublishByteRate = -1, -1
	if limited {
		cfg.PublishRate, cfg.PublishByteRate = 1e12, 1e15
	}
	acl := newMemACL()
	acl.setPublisher("g1", "alice")
	fwd = &nopFwd{}
	srv, err := New(cfg, newMemAuth(), acl, fwd, message.NewIDSource("a"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	c = newMQTTConn(srv, &discardTransport{})
	c.id, c.clientID, c.clean, c.level = Identity{ID: "alice"}, "c", true, packet.V311
	srv.bind(c, func(b []byte, _ bool) []byte { return b })
	c.state = stateActive
	pkt := packet.AppendPublish(nil, 0, false, false, 0, make([]byte, 64), "/group/g1")
	return c, fwd, pkt[0], pkt[2:] // a one-byte remaining length
}

// The publish limiter adds no allocation to the publish path: a QoS 0
// PUBLISH costs as many allocations with the limits on (and charged on
// every message) as with them off.
func TestPublishLimiterAllocs(t *testing.T) {
	allocs := func(limited bool) float64 {
		c, fwd, header, body := publishConn(t, limited)
		a := testing.AllocsPerRun(1000, func() {
			if err := c.handlePacket(header, body); err != nil {
				t.Fatal(err)
			}
		})
		if fwd.n.Load() == 0 {
			t.Fatal("nothing forwarded")
		}
		if limited && c.sess.Load().lim.bytes >= float64(c.srv.cfg.PublishByteBurst) {
			t.Fatal("the limiter was not charged")
		}
		return a
	}
	off, on := allocs(false), allocs(true)
	if on > off {
		t.Fatalf("%v allocations per PUBLISH with the limiter, %v without", on, off)
	}
	t.Logf("allocations per PUBLISH: %v (limits on), %v (off)", on, off)
}

// BenchmarkHandlePublish is the CPU cost of handling one QoS 0 PUBLISH
// (decode, ACL, limiter, a Forwarder that drops it), with the publish
// limits on (never reached) and off.
func BenchmarkHandlePublish(b *testing.B) {
	for _, limited := range []bool{false, true} {
		b.Run(fmt.Sprintf("limits=%v", limited), func(b *testing.B) {
			c, _, header, body := publishConn(b, limited)
			b.ReportAllocs()
			for b.Loop() {
				if err := c.handlePacket(header, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTakePublish is the limiter's own cost per PUBLISH: the clock
// and the principal's bucket lock.
func BenchmarkTakePublish(b *testing.B) {
	c, _, _, _ := publishConn(b, true)
	p := c.sess.Load().lim
	b.ReportAllocs()
	for b.Loop() {
		if c.srv.takePublish(p, 80, monoNow()) > 0 {
			b.Fatal("over the limit")
		}
	}
}
