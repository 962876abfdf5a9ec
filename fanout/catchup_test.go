package fanout

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/journal"
	"github.com/pushring/pushring/message"
)

// dropBus is a node's Bus that loses what it publishes to one subject
// while drop is set, as NATS does for a node whose connection is down.
type dropBus struct {
	Bus
	subject string
	drop    atomic.Bool
	dropped atomic.Int64
}

func (b *dropBus) Publish(subject string, data []byte) error {
	if subject == b.subject && b.drop.Load() {
		b.dropped.Add(1)
		return nil
	}
	return b.Bus.Publish(subject, data)
}

// orderRecorder is a Deliverer that keeps, per recipient, the message ids
// in the order they came.
type orderRecorder struct {
	mu  sync.Mutex
	got map[string][]uint64
}

func (r *orderRecorder) Deliver(m *message.Message, rcpts []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[string][]uint64{}
	}
	for _, id := range rcpts {
		r.got[id] = append(r.got[id], m.ID)
	}
}

func (r *orderRecorder) of(id string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got[id])
}

// storeReceipts records what a publisher is told.
type storeReceipts struct {
	mu       sync.Mutex
	stored   map[uint64]error
	accepted map[uint64]time.Time
}

func (r *storeReceipts) Stored(tag uint64, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stored[tag] = err
	return true
}

func (r *storeReceipts) Accepted(tag uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.accepted[tag] = time.Now()
}

func (r *storeReceipts) has(tags ...uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, tag := range tags {
		if err, ok := r.stored[tag]; !ok || err != nil {
			return fmt.Errorf("message %d not stored (%v)", tag, err)
		}
	}
	return nil
}

// TestCatchUpAfterDroppedConnection: the Resolves of two stored group
// messages are lost on their way to the group's owner while its
// connection is down; the next one reaches it after the connection is
// back. The owner reads the two back from the journal and resolves them
// before the third: every member gets 1, 2, 3, 4 in that order, long
// before the publisher's node would have sent the lost ones again, and
// the publisher of the third is confirmed.
func TestCatchUpAfterDroppedConnection(t *testing.T) {
	srv := startNATS(t)
	open := func(id string) *journal.Journal { return openJournal(t, srv, id) }
	bus := NewMemoryBus()
	toOwner := &dropBus{Bus: bus, subject: Subject("c", "n1")}
	place := &mapPlacement{owners: map[string]string{"g": "n1"}, def: "n2"}
	members := staticMembers{"g": {"a", "b", "c"}}
	owner := mustNew(t, Config{Cluster: "c", NodeID: "n1", Store: open("n1"), AckTimeout: time.Minute}, bus, members, place, &orderRecorder{})
	rec := &orderRecorder{}
	ingress := mustNew(t, Config{Cluster: "c", NodeID: "n2", Store: open("n2"), AckTimeout: time.Minute}, toOwner, members, place, rec)
	for _, f := range []*Fanout{owner, ingress} {
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
	}
	r := &storeReceipts{stored: map[uint64]error{}, accepted: map[uint64]time.Time{}}
	publish := func(id uint64) {
		t.Helper()
		m := &message.Message{ID: id, Kind: message.Group, From: "dev", To: "g", QoS: 1, Payload: []byte{byte(id)}}
		if err := ingress.ForwardAcked(m, r, id); err != nil {
			t.Fatal(err)
		}
	}
	delivered := func(want ...uint64) func() error {
		return func() error {
			for _, id := range []string{"a", "b", "c"} {
				if got := rec.of(id); !slices.Equal(got, want) {
					return fmt.Errorf("%s got %v, want %v", id, got, want)
				}
			}
			return nil
		}
	}

	publish(1)
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, delivered(1))

	// The owner's connection drops: 2 and 3 are stored, their Resolves
	// lost.
	toOwner.drop.Store(true)
	owner.Disconnected()
	publish(2)
	publish(3)
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n := toOwner.dropped.Load(); n != 2 {
			return fmt.Errorf("%d Resolves lost, want 2", n)
		}
		return r.has(2, 3)
	})

	// Back: 4 reaches the owner, which keeps it until it caught up.
	toOwner.drop.Store(false)
	publish(4)
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		owner.cu.mu.Lock()
		defer owner.cu.mu.Unlock()
		if len(owner.cu.parked) != 1 {
			return fmt.Errorf("%d Resolves parked, want 1", len(owner.cu.parked))
		}
		return nil
	})
	if err := delivered(1)(); err != nil {
		t.Fatalf("before the catch-up: %v", err)
	}
	owner.Reconnected()
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, delivered(1, 2, 3, 4))
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if _, ok := r.accepted[4]; !ok {
			return fmt.Errorf("the publisher of 4 not confirmed")
		}
		return nil
	})
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		owner.cu.mu.Lock()
		defer owner.cu.mu.Unlock()
		if owner.cu.active || owner.cu.reading {
			return fmt.Errorf("still catching up")
		}
		return nil
	})
	if s := &owner.stats; s.catchUps.Load() != 1 || s.caughtUp.Load() != 3 || s.catchUpErrors.Load() != 0 {
		t.Errorf("catch-ups %d, resolved again %d (2, 3 and the parked 4), errors %d", s.catchUps.Load(), s.caughtUp.Load(), s.catchUpErrors.Load())
	}

	// Resolves flow as before.
	publish(5)
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, delivered(1, 2, 3, 4, 5))
}
