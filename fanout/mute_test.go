package fanout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// TestMuteUntilPeersTold: while muted (its connection dropped), a node
// sends no envelope of a stored message, but QoS 0 ones still go. Unmute
// tells the other nodes first: their OnPeerDropped runs before any
// stored message sent after it arrives, so they hold their sessions in
// time; the muted message stays stored and waiting, for their read of
// the journal (or the resend).
func TestMuteUntilPeersTold(t *testing.T) {
	j := openJournal(t, startNATS(t), "n1")

	bus := NewMemoryBus()
	place := &mapPlacement{homes: map[string]string{"a": "n2"}, def: "n2"}
	ingress := mustNew(t, Config{Cluster: "c", NodeID: "n1", Store: j, AckTimeout: time.Minute}, bus, staticMembers{}, place, &orderRecorder{})
	rec := &orderRecorder{}
	home := mustNew(t, Config{Cluster: "c", NodeID: "n2", AckTimeout: time.Minute}, bus, staticMembers{}, place, rec)
	var mu sync.Mutex
	var told [][]uint64 // what "a" had when each notice came
	home.OnPeerDropped(func() {
		mu.Lock()
		told = append(told, rec.of("a"))
		mu.Unlock()
	})
	for _, f := range []*Fanout{ingress, home} {
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
	}
	r := &storeReceipts{stored: map[uint64]error{}, accepted: map[uint64]time.Time{}}
	direct := func(id uint64, qos uint8) *message.Message {
		return &message.Message{ID: id, Kind: message.Direct, From: "dev", To: "a", QoS: qos, Payload: []byte{byte(id)}}
	}
	stored := func(id uint64) {
		t.Helper()
		if err := ingress.ForwardAcked(direct(id, 1), r, id); err != nil {
			t.Fatal(err)
		}
		testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error { return r.has(id) })
	}
	got := func(want ...uint64) func() error {
		return func() error {
			if g := rec.of("a"); !slices.Equal(g, want) {
				return fmt.Errorf("a got %v, want %v", g, want)
			}
			return nil
		}
	}

	stored(1)
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, got(1))
	ingress.Mute()
	stored(2) // stored, its envelope not sent
	if err := ingress.Forward(context.Background(), direct(3, 0)); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, got(1, 3))
	ingress.Unmute([]string{"n1", "n2"})
	stored(4)
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, got(1, 3, 4))
	mu.Lock()
	defer mu.Unlock()
	if len(told) != 1 || !slices.Equal(told[0], []uint64{1, 3}) {
		t.Fatalf("notices: %v; want one, when a had 1 and 3", told)
	}
	if m, p := ingress.Stats().Muted, home.Stats().PeerDrops; m != 1 || p != 1 {
		t.Fatalf("muted %d, peer drops %d; want 1 and 1", m, p)
	}
	// Unmuted again: no second notice.
	ingress.Unmute([]string{"n2"})
	stored(5)
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, got(1, 3, 4, 5))
	if len(told) != 1 {
		t.Fatalf("%d notices after an Unmute that was not muted", len(told))
	}
}

// TestDroppedRepeatsWhileCatchingUp: while the catch-up after a dropped
// connection is pending or running, the Dropped notice goes again every
// DroppedRepeat, so the other nodes (and this one) keep holding their
// sessions; once it is done the repeats stop.
func TestDroppedRepeatsWhileCatchingUp(t *testing.T) {
	j := openJournal(t, startNATS(t), "n1")
	bus := NewMemoryBus()
	place := &mapPlacement{def: "n2"}
	owner := mustNew(t, Config{Cluster: "c", NodeID: "n1", Store: j, DroppedRepeat: 10 * time.Millisecond}, bus, staticMembers{}, place, &orderRecorder{})
	peer := mustNew(t, Config{Cluster: "c", NodeID: "n2"}, bus, staticMembers{}, place, &orderRecorder{})
	var told, own atomic.Int64
	peer.OnPeerDropped(func() { told.Add(1) })
	owner.OnPeerDropped(func() { own.Add(1) }) // its own sessions hold with the others
	for _, f := range []*Fanout{owner, peer} {
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
	}
	owner.Mute()
	owner.Disconnected()
	owner.Unmute([]string{"n1", "n2"})
	// The catch-up is pending (Reconnected not called yet): notices keep coming.
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n := told.Load(); n < 4 {
			return fmt.Errorf("%d notices, want at least 4", n)
		}
		return nil
	})
	owner.Reconnected()
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if owner.repeating.Load() {
			return errors.New("still repeating after the catch-up")
		}
		return nil
	})
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n, r := told.Load(), owner.Stats().DroppedRepeats; uint64(n) != r+1 || uint64(own.Load()) != r {
			return fmt.Errorf("peer told %d times, owner's sessions %d, owner repeated %d", n, own.Load(), r)
		}
		return nil
	})
}
