//go:build linux

package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// heldTransport returns the event-loop transport of the server's only
// connection.
func heldTransport(t *testing.T, e *env) *epollTransport {
	t.Helper()
	e.srv.mu.RLock()
	defer e.srv.mu.RUnlock()
	if len(e.srv.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(e.srv.conns))
	}
	for c := range e.srv.conns {
		if et, ok := c.t.(*epollTransport); ok {
			return et
		}
	}
	t.Fatal("not an event-loop transport")
	return nil
}

// settled waits until tr is off its poller's queue: the SUBACK written
// inline after the SUBSCRIBE was read may leave tr queued for a flush
// that finds nothing, and a poller that took that entry before a hold
// began would write what follows without holding it.
func settled(t *testing.T, tr *epollTransport) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if tr.queued {
			return fmt.Errorf("still queued")
		}
		return nil
	})
}

// TestHeldOutputLeavesAtRelease: while the deliverer holds output, what
// it delivers stays in the connection's buffer, none of it written, and
// EndOutputRun writes it all at once, in order.
func TestHeldOutputLeavesAtRelease(t *testing.T) {
	e := newEnv(t, nil)
	skipIfGoroutines(t, e)
	e.srv.holdMax = time.Hour // only the release may end this hold
	c := connectRaw(t, e, "bob", "b", true)
	c.subscribe(1, "/private/bob/#")
	tr := heldTransport(t, e)
	settled(t, tr)

	const n = 20
	e.srv.BeginOutputRun()
	for i := range n {
		e.srv.Deliver(&message.Message{ID: uint64(i + 1), Kind: message.Direct, From: "d1", To: "bob",
			Payload: fmt.Appendf(nil, "m%d", i)}, []string{"bob"})
	}
	// The poller has taken the connection off its queue and holds it.
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		for _, p := range *e.srv.loops.active.Load() {
			if p.holding.Load() {
				return nil
			}
		}
		return fmt.Errorf("no poller holds output")
	})
	tr.mu.Lock()
	out, written := len(tr.out), len(tr.wbuf)
	tr.mu.Unlock()
	if out == 0 || written != 0 {
		t.Fatalf("held: %d bytes buffered, %d in the write buffer; want all buffered, none written", out, written)
	}
	c.expectNothing(20 * time.Millisecond)

	e.srv.EndOutputRun()
	for i := range n {
		if p := c.readPublish(); string(p.Payload) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: payload %q", i, p.Payload)
		}
	}
	for _, p := range *e.srv.loops.active.Load() {
		if p.holding.Load() {
			t.Error("a poller still holds output after the release")
		}
	}
}

// TestHeldOutputBounded: a hold nobody releases (a deliverer that stalls
// mid-run) still lets the output go after holdMax.
func TestHeldOutputBounded(t *testing.T) {
	e := newEnv(t, nil)
	skipIfGoroutines(t, e)
	e.srv.holdMax = 50 * time.Millisecond
	c := connectRaw(t, e, "bob", "b", true)
	c.subscribe(1, "/private/bob/#")
	settled(t, heldTransport(t, e))

	e.srv.BeginOutputRun()
	start := time.Now()
	e.srv.Deliver(&message.Message{ID: 1, Kind: message.Direct, From: "d1", To: "bob", Payload: []byte("late")}, []string{"bob"})
	if p := c.readPublish(); string(p.Payload) != "late" {
		t.Fatalf("payload %q", p.Payload)
	}
	if d := time.Since(start); d < e.srv.holdMax {
		t.Errorf("written after %v, before the hold's bound %v", d, e.srv.holdMax)
	}
	// Packets read are not held: the PINGRESP answering a PINGREQ comes
	// while the hold is still on (bounded again by holdMax).
	c.expectQuiet()
	e.srv.EndOutputRun()
}
