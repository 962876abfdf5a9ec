package fanout

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// holdRecorder is a Deliverer and OutputBatcher that logs its calls in
// order: D for a delivery, H for BeginOutputRun, R for EndOutputRun. The
// first delivery waits for gate, so that the envelopes sent meanwhile
// pile up on the subscription.
type holdRecorder struct {
	gate  chan struct{}
	once  sync.Once
	mu    sync.Mutex
	calls []byte
}

func (h *holdRecorder) log(c byte) {
	h.mu.Lock()
	h.calls = append(h.calls, c)
	h.mu.Unlock()
}

func (h *holdRecorder) Deliver(*message.Message, []string) {
	h.once.Do(func() { <-h.gate })
	h.log('D')
}
func (h *holdRecorder) BeginOutputRun() { h.log('H') }
func (h *holdRecorder) EndOutputRun()   { h.log('R') }

func (h *holdRecorder) log2() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return string(h.calls)
}

// TestOutputHeldOverWaitingEnvelopes: over NATS, envelopes that wait on
// the subscription are delivered in runs of at most OutputBatch, each
// run's deliveries inside a hold and closed by one EndOutputRun, and no
// hold is left on once nothing waits.
func TestOutputHeldOverWaitingEnvelopes(t *testing.T) {
	nc, err := startNATS(t).Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Cluster, cfg.OutputBatch = "n1", "test", 16
	rec := &holdRecorder{gate: make(chan struct{})}
	f := mustNew(t, cfg, NewNATSBus(nc), staticMembers{"g": {"a", "b", "c"}}, &mapPlacement{def: "n1"}, rec)
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })

	const n = 100
	for i := range n {
		m := &message.Message{ID: uint64(i + 1), Kind: message.Group, To: "g", Payload: []byte("x")}
		if err := f.Forward(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	// A round trip on the connection that also receives: every envelope
	// sent before it has reached the subscription's pending list.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	close(rec.gate)
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		calls := rec.log2()
		if d := strings.Count(calls, "D"); d != n || !strings.HasSuffix(calls, "R") {
			return fmt.Errorf("%d deliveries, calls end %q", d, calls[max(len(calls)-3, 0):])
		}
		return nil
	})

	calls := rec.log2()
	runs := strings.Split(strings.TrimSuffix(calls, "R"), "R")
	// The first envelope may be handled before the others arrive; the
	// rest waited, so they go in runs of 16 (the last shorter): 7 runs,
	// or 8 with the first alone.
	if lo, hi := (n+15)/16, 1+(n-1+15)/16; len(runs) < lo || len(runs) > hi {
		t.Errorf("%d runs, want %d to %d: %s", len(runs), lo, hi, calls)
	}
	for i, r := range runs {
		d := strings.Count(r, "D")
		if d == 0 || d > cfg.OutputBatch {
			t.Errorf("run %d: %d deliveries (%q), want 1 to %d", i, d, r, cfg.OutputBatch)
		}
		// Every delivery of a run but its last is held for the next.
		if want := strings.Repeat("HD", d-1) + "D"; r != want {
			t.Errorf("run %d: calls %q, want %q", i, r, want)
		}
	}
}
