package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/flow"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// ackingFwd is a loopFwd that is an AckForwarder: it delivers at once but
// keeps each Receipt until the test calls accept.
type ackingFwd struct {
	*loopFwd
	fail atomic.Bool
	mu   sync.Mutex
	held map[string]func() // payload → the receipt's Accepted call
	// storeLate: Stored waits for the test's store call.
	storeLate bool
	stores    map[string]func(error) bool
}

func (f *ackingFwd) ForwardAcked(m *message.Message, r flow.Receipt, tag uint64) error {
	if f.fail.Load() {
		return errors.New("bus down")
	}
	if err := f.loopFwd.Forward(context.Background(), m); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.storeLate {
		f.stores[string(m.Payload)] = func(err error) bool { return r.Stored(tag, err) }
	} else {
		r.Stored(tag, nil)
	}
	f.held[string(m.Payload)] = func() { r.Accepted(tag) }
	return nil
}

// store answers the Stored of the message with payload p (storeLate
// set) with err, and returns what Stored said.
func (f *ackingFwd) store(t *testing.T, p string, err error) bool {
	t.Helper()
	var fn func(error) bool
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		f.mu.Lock()
		fn = f.stores[p]
		delete(f.stores, p)
		f.mu.Unlock()
		if fn == nil {
			return fmt.Errorf("message %q was never forwarded", p)
		}
		return nil
	})
	return fn(err)
}

// accept calls the receipt of the message with payload p, once it was
// forwarded.
func (f *ackingFwd) accept(t *testing.T, p string) {
	t.Helper()
	var fn func()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		f.mu.Lock()
		fn = f.held[p]
		delete(f.held, p)
		f.mu.Unlock()
		if fn == nil {
			return fmt.Errorf("message %q was never forwarded", p)
		}
		return nil
	})
	fn()
}

func newAckingEnv(t *testing.T, maxUnconfirmed int) (*env, *ackingFwd) {
	var f *ackingFwd
	e := newEnvWith(t, func(c *Config) { c.MaxUnconfirmed = maxUnconfirmed }, func(l *loopFwd) Forwarder {
		f = &ackingFwd{loopFwd: l, held: map[string]func(){}, stores: map[string]func(error) bool{}}
		return f
	})
	return e, f
}

// With an AckForwarder a QoS 1 PUBACK waits for its Receipt, and PUBACKs
// leave in the order of the PUBLISHes whatever order the receipts come
// in (MQTT-4.6.0-2), a refused publish's included. A publish the
// Forwarder refuses gets no PUBACK: the connection closes.
func TestHeldPubacksInOrder(t *testing.T) {
	e, f := newAckingEnv(t, -1) // none acknowledged before confirmation
	alice := connectRaw(t, e, "alice", "a", true)
	for pid, p := range []string{"", "m1", "m2", "m3"} {
		if pid > 0 {
			alice.publish(1, uint16(pid), "/group/g1", p)
		}
	}
	alice.publish(1, 4, "/group/g2", "refused") // alice may not publish to g2
	alice.expectQuiet()                         // all four handled, none answered

	f.accept(t, "m2")
	alice.expectQuiet() // m1 still waits, and m2 behind it
	f.accept(t, "m1")
	for _, want := range []uint16{1, 2} {
		if pid := readPuback(t, alice); pid != want {
			t.Fatalf("PUBACK %d, want %d", pid, want)
		}
	}
	alice.expectQuiet()
	f.accept(t, "m3")
	for _, want := range []uint16{3, 4} {
		if pid := readPuback(t, alice); pid != want {
			t.Fatalf("PUBACK %d, want %d", pid, want)
		}
	}
	// Nothing waits now: the next one waits for its own receipt only.
	alice.publish(1, 5, "/group/g1", "m5")
	alice.expectQuiet()
	f.accept(t, "m5")
	if pid := readPuback(t, alice); pid != 5 {
		t.Fatalf("PUBACK %d, want 5", pid)
	}
	f.fail.Store(true)
	alice.publish(1, 6, "/group/g1", "m6")
	alice.expectClosed()
}

// With MaxUnconfirmed 2 the first two PUBACKs go at once; the third
// waits until a confirmation leaves fewer than two unconfirmed, or for
// its own; order holds throughout.
func TestPubacksAheadOfConfirmation(t *testing.T) {
	e, f := newAckingEnv(t, 2)
	alice := connectRaw(t, e, "alice", "a", true)
	for pid := uint16(1); pid <= 4; pid++ {
		alice.publish(1, pid, "/group/g1", fmt.Sprint("m", pid))
	}
	for _, want := range []uint16{1, 2} {
		if pid := readPuback(t, alice); pid != want {
			t.Fatalf("PUBACK %d, want %d", pid, want)
		}
	}
	alice.expectQuiet() // m1, m2 unconfirmed: 3 and 4 wait
	f.accept(t, "m4")   // its own confirmation, but 3 is first
	alice.expectQuiet()
	f.accept(t, "m2") // one unconfirmed (m1): 3 goes early, then 4 (confirmed)
	for _, want := range []uint16{3, 4} {
		if pid := readPuback(t, alice); pid != want {
			t.Fatalf("PUBACK %d, want %d", pid, want)
		}
	}
	alice.publish(1, 5, "/group/g1", "m5")
	alice.expectQuiet() // m1 and m3 unconfirmed
	f.accept(t, "m1")
	if pid := readPuback(t, alice); pid != 5 {
		t.Fatalf("PUBACK %d, want 5", pid)
	}
	for _, p := range []string{"m3", "m5"} {
		f.accept(t, p)
	}
	alice.publish(1, 6, "/group/g1", "m6") // nothing unconfirmed: at once
	if pid := readPuback(t, alice); pid != 6 {
		t.Fatalf("PUBACK %d, want 6", pid)
	}
}

func readPuback(t *testing.T, r *rawClient) uint16 {
	t.Helper()
	body := r.mustRead(packet.PUBACK)
	pid, err := packet.DecodeAck(packet.PUBACK<<4, body, packet.V311)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// releases is a Releaser that counts HoldReleased calls by hold number.
type releases struct {
	mu  sync.Mutex
	got map[uint64]int
}

func (r *releases) HoldReleased(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[uint64]int{}
	}
	r.got[seq]++
}

func (r *releases) count(seq uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[seq]
}

// waitReleased fails unless hold seq is released, exactly once.
func (r *releases) waitReleased(t *testing.T, seq uint64) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if r.count(seq) == 0 {
			return fmt.Errorf("hold %d not released", seq)
		}
		return nil
	})
	if n := r.count(seq); n != 1 {
		t.Fatalf("hold %d released %d times", seq, n)
	}
}

// testClock is a Config.Now that runs with the real clock plus what the
// test moved it on by, so that holdLimit passes without waiting for it.
type testClock struct{ ahead atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *testClock) advance(d time.Duration) { c.ahead.Add(int64(d)) }

// DeliverHeld says "held" when a delivery leaves a connected recipient's
// queue at the hold mark (MaxQueued/4), and releases the hold once the
// queue is under it again; offline sessions and sessions backlogged past
// holdLimit hold nobody.
func TestDeliverHeld(t *testing.T) {
	clock := &testClock{}
	e := newEnv(t, func(c *Config) {
		c.MaxQueued = 8 // hold mark 2
		c.MaxInflight = 1
		c.Now = clock.now
	})
	rel := &releases{}
	bob := connectRaw(t, e, "bob", "b", true)
	bob.subscribe(1, "/private/bob/#")
	direct := func(i int) *message.Message {
		return &message.Message{ID: uint64(100 + i), Kind: message.Direct, From: "alice", To: "bob", QoS: 1, Payload: []byte{byte(i)}}
	}
	held := func(i int, to string, m *message.Message) bool {
		return e.srv.DeliverHeld(m, []string{to}, rel, uint64(i))
	}
	// 1 goes out (window 1), 2 is queued (1 < 2), 3 makes the queue 2.
	for i := 1; i <= 2; i++ {
		if held(i, "bob", direct(i)) {
			t.Fatalf("message %d held with the queue under the mark", i)
		}
	}
	if !held(3, "bob", direct(3)) {
		t.Fatal("message 3 left the queue at the mark and was not held")
	}
	if !held(4, "bob", direct(4)) {
		t.Fatal("message 4 was not held")
	}
	if rel.count(3) != 0 {
		t.Fatal("released before the client acknowledged anything")
	}
	// Acknowledging 1 sends 2: the queue (3, 4) is still at the mark.
	p := bob.readPublish()
	bob.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	p = bob.readPublish()
	if p.Payload[0] != 2 {
		t.Fatalf("got message %d, want 2", p.Payload[0])
	}
	bob.expectQuiet() // the PUBACK, and any release it made, are handled
	if rel.count(3) != 0 {
		t.Fatal("released with the queue still at the mark")
	}
	// Acknowledging 2 sends 3: the queue (4) is under the mark.
	bob.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	rel.waitReleased(t, 3)
	rel.waitReleased(t, 4)
	if rel.count(1)+rel.count(2) != 0 {
		t.Fatal("a delivery that was not held was released")
	}

	// Backlogged past holdLimit: too slow to wait for.
	bob.readPublish() // 3, not acknowledged: 4 waits in the queue
	for i := 5; i <= 6; i++ {
		held(i, "bob", direct(i))
	}
	if !held(7, "bob", direct(7)) {
		t.Fatal("message 7 was not held")
	}
	clock.advance(holdLimit + time.Millisecond)
	if held(8, "bob", direct(8)) {
		t.Fatal("a session backlogged past holdLimit still holds")
	}
	rel.waitReleased(t, 7) // released at once by the slow session, not by a timeout
	if n := e.srv.Stats().SlowSessions; n != 1 {
		t.Fatalf("SlowSessions = %d, want 1", n)
	}

	// Offline: a persistent session queues but holds nobody, and going
	// offline releases what waited.
	carol := connectRaw(t, e, "carol", "c", false)
	carol.subscribe(1, "/private/carol/#")
	toCarol := func(i int) *message.Message {
		return &message.Message{ID: uint64(200 + i), Kind: message.Direct, From: "bob", To: "carol", QoS: 1, Payload: []byte{byte(i)}}
	}
	for i := 1; i <= 2; i++ {
		held(200+i, "carol", toCarol(i))
	}
	if !held(203, "carol", toCarol(3)) {
		t.Fatal("carol's third message was not held")
	}
	carol.readPublish() // 1 (window 1); 2 and 3 are queued
	carol.send(packet.AppendDisconnect(nil))
	carol.expectClosed()
	rel.waitReleased(t, 203)
	if held(204, "carol", toCarol(4)) {
		t.Fatal("an offline session holds")
	}
	// Offline for longer than holdLimit, then back with a full queue: it
	// is waited for again, not taken for a slow session.
	clock.advance(holdLimit + time.Millisecond)
	slow := e.srv.Stats().SlowSessions
	carol = dialRaw(t, e.addr)
	carol.send(connectPacket("carol", "tok-carol", "c", false, 60))
	if !carol.expectConnack(0) {
		t.Fatal("carol's session is gone")
	}
	if !held(205, "carol", toCarol(5)) {
		t.Fatal("a session back from offline with a backlog does not hold")
	}
	if n := e.srv.Stats().SlowSessions; n != slow {
		t.Fatalf("SlowSessions %d -> %d: the reconnected session was taken for a slow one", slow, n)
	}
}

// A PUBACK waits for the store: none before Stored, one after; a message
// the store refuses gets none, its connection is closed and counted, and
// a later message of that connection stored meanwhile is not to be
// forwarded (its publisher sends both again, in order).
func TestPubackWaitsForStore(t *testing.T) {
	var f *ackingFwd
	e := newEnvWith(t, nil, func(l *loopFwd) Forwarder {
		f = &ackingFwd{loopFwd: l, held: map[string]func(){}, stores: map[string]func(error) bool{}, storeLate: true}
		return f
	})
	alice := connectRaw(t, e, "alice", "a", true)
	alice.publish(1, 1, "/group/g1", "m1")
	alice.expectQuiet()
	if !f.store(t, "m1", nil) {
		t.Fatal("a stored message of a healthy connection is to be forwarded")
	}
	if body := alice.mustRead(packet.PUBACK); len(body) != 2 || body[1] != 1 {
		t.Fatalf("PUBACK % x, want id 1", body)
	}
	alice.publish(1, 2, "/group/g1", "m2")
	alice.publish(1, 3, "/group/g1", "m3")
	alice.expectQuiet()
	if f.store(t, "m2", errors.New("store down")) {
		t.Fatal("a refused message is not to be forwarded")
	}
	alice.expectClosed() // no PUBACK for m2 or m3
	if f.store(t, "m3", nil) {
		t.Fatal("a message stored after its connection's refusal was to be forwarded")
	}
	if n := e.srv.m.refusals[index(allReasons, reasonStoreFailed)].Load(); n != 1 {
		t.Fatalf("store_failed refusals %d, want 1", n)
	}
}
