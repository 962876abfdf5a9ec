package fanout

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// TestViewMismatch: a Deliver of a stored group message from a node that
// is not the group's owner in the receiver's ring (the sender saw a ring
// change the receiver has not seen yet) calls the receiver's listener
// before the message is delivered, once in viewMismatchEvery however
// many come; messages routed as the receiver would route them, and
// messages that are not stored, call nothing.
func TestViewMismatch(t *testing.T) {
	bus := NewMemoryBus()
	members := staticMembers{"g": {"alice"}}
	newer := &mapPlacement{owners: map[string]string{"g": "n3"}, def: "n2"} // n1 died
	older := &mapPlacement{owners: map[string]string{"g": "n1"}, def: "n2"}
	sender := mustNew(t, Config{Cluster: "c", NodeID: "n3"}, bus, members, newer, newRecorder())
	rec := newRecorder()
	receiver := mustNew(t, Config{Cluster: "c", NodeID: "n2"}, bus, members, older, rec)
	var calls atomic.Int32
	var deliveredBefore atomic.Int32 // deliveries the listener saw already made
	receiver.OnViewMismatch(func() {
		calls.Add(1)
		deliveredBefore.Store(int32(rec.total()))
	})
	for _, f := range []*Fanout{sender, receiver} {
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
	}
	send := func(id uint64, kind message.Kind, to string, seq uint64) {
		t.Helper()
		m := &message.Message{ID: id, Seq: seq, Kind: kind, From: "dev", To: to, QoS: 1, Payload: []byte("x")}
		if err := sender.Forward(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	delivered := func(n int) {
		t.Helper()
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if got := rec.total(); got != n {
				return fmt.Errorf("%d deliveries, want %d", got, n)
			}
			return nil
		})
	}

	send(1, message.Direct, "alice", 10) // routed as here: alice's home is n2
	send(2, message.Group, "g", 0)       // not stored
	delivered(2)
	if n := calls.Load(); n != 0 {
		t.Fatalf("%d calls for messages routed as here or not stored", n)
	}
	send(3, message.Group, "g", 11) // resolved by n3, n1's group here
	send(4, message.Group, "g", 12)
	delivered(4)
	if n, before := calls.Load(), deliveredBefore.Load(); n != 1 || before != 2 {
		t.Fatalf("%d calls (want 1), made with %d deliveries done (want 2: before the message)", n, before)
	}
	if s := receiver.Stats(); s.ViewMismatches != 2 {
		t.Fatalf("view mismatches %d, want 2", s.ViewMismatches)
	}
}
