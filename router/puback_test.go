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
	fail    atomic.Bool
	mu      sync.Mutex
	pending map[string]func() // payload → the receipt's Accepted call
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
	f.pending[string(m.Payload)] = func() { r.Accepted(tag) }
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
		fn = f.pending[p]
		delete(f.pending, p)
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
		f = &ackingFwd{loopFwd: l, pending: map[string]func(){}, stores: map[string]func(error) bool{}}
		return f
	})
	return e, f
}

// newStoreLateEnv is newEnv with an ackingFwd whose Stored waits for the
// test's store call.
func newStoreLateEnv(t *testing.T) (*env, *ackingFwd) {
	var f *ackingFwd
	e := newEnvWith(t, nil, func(l *loopFwd) Forwarder {
		f = &ackingFwd{loopFwd: l, pending: map[string]func(){}, stores: map[string]func(error) bool{}, storeLate: true}
		return f
	})
	return e, f
}

// With an AckForwarder a QoS 1 PUBACK waits for its Receipt, and PUBACKs
// leave in the order of the PUBLISHes whatever order the receipts come
// in (MQTT-4.6.0-2), a refused publish's included. A publish the
// Forwarder refuses gets no PUBACK: the connection closes.
func TestPendingPubacksInOrder(t *testing.T) {
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
	return r.readAck(packet.PUBACK)
}

// A PUBACK waits for the store: none before Stored, one after; a message
// the store refuses gets none, its connection is closed and counted, and
// a later message of that connection stored meanwhile is not to be
// forwarded (its publisher sends both again, in order).
func TestPubackWaitsForStore(t *testing.T) {
	e, f := newStoreLateEnv(t)
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
