package store

// The MQTT session record contract: Memory (mqtt_memory_test.go) and KV
// on a real embedded NATS (mqtt_kv_test.go) run these same tests.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// mqttFixture is one backend under test.
type mqttFixture struct {
	// St is a fresh, empty store whose records expire expiry after their
	// last write.
	St MQTTSessions
	// Peer opens another handle on the same data, as another node's
	// process would.
	Peer func(t *testing.T) MQTTSessions
}

// mqttOpen makes a fixture with the given record expiry.
type mqttOpen func(t *testing.T, expiry time.Duration) *mqttFixture

func runMQTTContract(t *testing.T, open mqttOpen) {
	day := 24 * time.Hour
	t.Run("ClaimNew", func(t *testing.T) { testMQTTClaimNew(t, open(t, day)) })
	t.Run("ClaimKeeps", func(t *testing.T) { testMQTTClaimKeeps(t, open(t, day)) })
	t.Run("CleanResets", func(t *testing.T) { testMQTTCleanResets(t, open(t, day)) })
	t.Run("ConcurrentClaims", func(t *testing.T) { testMQTTConcurrentClaims(t, open(t, day)) })
	t.Run("Stale", func(t *testing.T) { testMQTTStale(t, open(t, day)) })
	t.Run("PosOnlyUp", func(t *testing.T) { testMQTTPosOnlyUp(t, open(t, day)) })
	t.Run("Delete", func(t *testing.T) { testMQTTDelete(t, open(t, day)) })
	t.Run("WatchClaims", func(t *testing.T) { testMQTTWatchClaims(t, open(t, day)) })
	t.Run("ClientIDs", func(t *testing.T) { testMQTTClientIDs(t, open(t, day)) })
	t.Run("InvalidIDs", func(t *testing.T) { testMQTTInvalidIDs(t, open(t, day)) })
	t.Run("Expiry", func(t *testing.T) { testMQTTExpiry(t, open(t, time.Second)) })
}

func mustClaim(t *testing.T, st MQTTSessions, p, c, node string, clean bool, start uint64) (MQTTSession, bool, MQTTSession) {
	t.Helper()
	prev, found, cur, err := st.ClaimMQTT(ctxT(t), p, c, node, clean, start)
	if err != nil {
		t.Fatalf("ClaimMQTT(%q, %q, %s): %v", p, logID(c), node, err)
	}
	return prev, found, cur
}

func mustGet(t *testing.T, st MQTTSessions, p, c string) MQTTSession {
	t.Helper()
	r, err := st.GetMQTT(ctxT(t), p, c)
	if err != nil {
		t.Fatalf("GetMQTT(%q, %q): %v", p, logID(c), err)
	}
	return r
}

// sameRecord compares two records, Updated to the microsecond (JSON keeps
// nanoseconds, but a record read back is compared with one built here).
func sameRecord(a, b MQTTSession) bool {
	return a.Principal == b.Principal && a.ClientID == b.ClientID && a.Node == b.Node && a.Gen == b.Gen &&
		a.Clean == b.Clean && slices.Equal(a.Subs, b.Subs) && a.Pos == b.Pos && a.Updated.Equal(b.Updated)
}

func testMQTTClaimNew(t *testing.T, f *mqttFixture) {
	st := f.St
	if _, err := st.GetMQTT(ctxT(t), "alice", "phone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetMQTT before any claim: %v", err)
	}
	before := time.Now()
	prev, found, cur := mustClaim(t, st, "alice", "phone", "n1", false, 42)
	if found || prev.Gen != 0 {
		t.Fatalf("first claim found %+v", prev)
	}
	if cur.Principal != "alice" || cur.ClientID != "phone" || cur.Node != "n1" || cur.Gen == 0 || cur.Clean ||
		len(cur.Subs) != 0 || cur.Pos != 42 || cur.Updated.Before(before.Add(-time.Second)) {
		t.Fatalf("claimed %+v", cur)
	}
	if got := mustGet(t, st, "alice", "phone"); !sameRecord(got, cur) {
		t.Fatalf("GetMQTT = %+v, want %+v", got, cur)
	}
	// Another handle reads the same record; another client id is another
	// record.
	if got := mustGet(t, f.Peer(t), "alice", "phone"); !sameRecord(got, cur) {
		t.Fatalf("peer GetMQTT = %+v, want %+v", got, cur)
	}
	if _, err := st.GetMQTT(ctxT(t), "alice", "phone2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other client id: %v", err)
	}
	if _, err := st.GetMQTT(ctxT(t), "bob", "phone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("other principal: %v", err)
	}
}

func testMQTTClaimKeeps(t *testing.T, f *mqttFixture) {
	st, peer := f.St, f.Peer(t)
	ctx := ctxT(t)
	_, _, c1 := mustClaim(t, st, "alice", "phone", "n1", false, 5)
	subs := []MQTTSub{{"/private/alice/#", 1}, {"/group/g1", 0}}
	if err := st.SaveMQTTSubs(ctx, "alice", "phone", c1.Gen, subs); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveMQTTPos(ctx, "alice", "phone", c1.Gen, 17); err != nil {
		t.Fatal(err)
	}
	ids := []MQTTQoS2{{PID: 7, Seq: 12, Released: true}, {PID: 65535, Seq: 13}}
	if err := st.SaveMQTTQoS2(ctx, "alice", "phone", c1.Gen, ids); err != nil {
		t.Fatal(err)
	}
	saved := mustGet(t, st, "alice", "phone")
	// Another node takes it over: the previous record comes back, the new
	// one keeps subscriptions, position and QoS 2 ids (startPos is
	// ignored).
	prev, found, c2 := mustClaim(t, peer, "alice", "phone", "n2", false, 999)
	if !found || !sameRecord(prev, saved) || !slices.Equal(prev.Subs, subs) || prev.Pos != 17 || !slices.Equal(prev.QoS2, ids) {
		t.Fatalf("prev %+v (found %v), want %+v", prev, found, saved)
	}
	if c2.Node != "n2" || c2.Gen <= c1.Gen || !slices.Equal(c2.Subs, subs) || c2.Pos != 17 || c2.Clean || !slices.Equal(c2.QoS2, ids) {
		t.Fatalf("second claim %+v", c2)
	}
	// The new holder saves its own ids (none left).
	if err := peer.SaveMQTTQoS2(ctx, "alice", "phone", c2.Gen, nil); err != nil {
		t.Fatal(err)
	}
	c2 = mustGet(t, st, "alice", "phone")
	if len(c2.QoS2) != 0 {
		t.Fatalf("QoS 2 ids %v after saving none", c2.QoS2)
	}
	if got := mustGet(t, st, "alice", "phone"); !sameRecord(got, c2) {
		t.Fatalf("GetMQTT = %+v, want %+v", got, c2)
	}
	// The same node claiming again bumps the gen too.
	_, _, c3 := mustClaim(t, peer, "alice", "phone", "n2", false, 0)
	if c3.Gen <= c2.Gen || c3.Pos != 17 || !slices.Equal(c3.Subs, subs) {
		t.Fatalf("third claim %+v", c3)
	}
}

func testMQTTCleanResets(t *testing.T, f *mqttFixture) {
	st := f.St
	ctx := ctxT(t)
	_, _, c1 := mustClaim(t, st, "alice", "phone", "n1", false, 5)
	if err := st.SaveMQTTSubs(ctx, "alice", "phone", c1.Gen, []MQTTSub{{"a/b", 1}}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveMQTTPos(ctx, "alice", "phone", c1.Gen, 50); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveMQTTQoS2(ctx, "alice", "phone", c1.Gen, []MQTTQoS2{{PID: 3}}); err != nil {
		t.Fatal(err)
	}
	prev, found, c2 := mustClaim(t, st, "alice", "phone", "n2", true, 77)
	if !found || prev.Pos != 50 || len(prev.Subs) != 1 {
		t.Fatalf("prev %+v found %v", prev, found)
	}
	if !c2.Clean || len(c2.Subs) != 0 || c2.Pos != 77 || c2.Gen <= c1.Gen || c2.Node != "n2" || len(c2.QoS2) != 0 {
		t.Fatalf("clean claim %+v", c2)
	}
	// A clean session keeps no record: the stored one is gone, and its
	// holder's writes are stale.
	if _, err := st.GetMQTT(ctx, "alice", "phone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetMQTT after a clean claim: %v", err)
	}
	if err := st.SaveMQTTPos(ctx, "alice", "phone", c1.Gen, 60); !errors.Is(err, ErrStale) {
		t.Fatalf("write with the discarded session's gen: %v", err)
	}
	// A persistent claim after a clean one starts afresh, later than it.
	prev, found, c3 := mustClaim(t, st, "alice", "phone", "n1", false, 1000)
	if found || c3.Clean || c3.Pos != 1000 || len(c3.Subs) != 0 || c3.Gen <= c2.Gen {
		t.Fatalf("persistent after clean: prev %+v (found %v), cur %+v", prev, found, c3)
	}
	// A clean claim of no record finds nothing and leaves nothing.
	if _, found, c4 := mustClaim(t, st, "alice", "tablet", "n1", true, 3); found || !c4.Clean || c4.Pos != 3 {
		t.Fatalf("clean claim of a new session: found %v, cur %+v", found, c4)
	}
	if _, err := st.GetMQTT(ctx, "alice", "tablet"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetMQTT after a clean claim of a new session: %v", err)
	}
}

// testMQTTConcurrentClaims: claims racing from two handles ("nodes")
// serialize: every one succeeds with a distinct gen, each one's prev is
// the claim just before it in gen order, and the record ends with the
// last claimer.
func testMQTTConcurrentClaims(t *testing.T, f *mqttFixture) {
	handles := []MQTTSessions{f.St, f.Peer(t)}
	ctx := ctxT(t)
	const perNode = 8
	type claim struct {
		prev, cur MQTTSession
		found     bool
	}
	var (
		mu     sync.Mutex
		claims []claim
		wg     sync.WaitGroup
		start  = make(chan struct{})
	)
	for i, h := range handles {
		for j := 0; j < perNode; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				prev, found, cur, err := h.ClaimMQTT(ctx, "alice", "phone", fmt.Sprintf("n%d", i+1), false, 3)
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				mu.Lock()
				claims = append(claims, claim{prev, cur, found})
				mu.Unlock()
			}()
		}
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		return
	}
	slices.SortFunc(claims, func(a, b claim) int { return cmpU64(a.cur.Gen, b.cur.Gen) })
	for i, c := range claims {
		switch {
		case i == 0 && c.found:
			t.Errorf("the first claim found a record: %+v", c.prev)
		case i > 0 && (!c.found || c.prev.Gen != claims[i-1].cur.Gen || c.prev.Node != claims[i-1].cur.Node):
			t.Errorf("claim %d (gen %d) has prev gen %d (found %v), want %d: claims did not serialize",
				i, c.cur.Gen, c.prev.Gen, c.found, claims[i-1].cur.Gen)
		case i > 0 && c.cur.Gen == claims[i-1].cur.Gen:
			t.Errorf("two claims got gen %d", c.cur.Gen)
		}
	}
	last := claims[len(claims)-1].cur
	for _, h := range handles {
		if got := mustGet(t, h, "alice", "phone"); got.Gen != last.Gen || got.Node != last.Node {
			t.Errorf("record %+v, want the last claim's %+v", got, last)
		}
	}
	// Only the last claimer may write.
	for _, c := range claims[:len(claims)-1] {
		if err := handles[0].SaveMQTTPos(ctx, "alice", "phone", c.cur.Gen, 9); !errors.Is(err, ErrStale) {
			t.Fatalf("write with an earlier claim's gen: %v", err)
		}
	}
	if err := handles[1].SaveMQTTPos(ctx, "alice", "phone", last.Gen, 9); err != nil {
		t.Fatal(err)
	}
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testMQTTStale(t *testing.T, f *mqttFixture) {
	st, peer := f.St, f.Peer(t)
	ctx := ctxT(t)
	// Writes to a record that does not exist are stale.
	if err := st.SaveMQTTPos(ctx, "alice", "phone", 1, 5); !errors.Is(err, ErrStale) {
		t.Fatalf("SaveMQTTPos on no record: %v", err)
	}
	_, _, c1 := mustClaim(t, st, "alice", "phone", "n1", false, 0)
	if err := st.SaveMQTTSubs(ctx, "alice", "phone", c1.Gen, []MQTTSub{{"x", 1}}); err != nil {
		t.Fatal(err)
	}
	_, _, c2 := mustClaim(t, peer, "alice", "phone", "n2", false, 0)
	want := mustGet(t, st, "alice", "phone")
	for name, write := range map[string]func() error{
		"SaveMQTTSubs": func() error { return st.SaveMQTTSubs(ctx, "alice", "phone", c1.Gen, []MQTTSub{{"y", 0}}) },
		"SaveMQTTPos":  func() error { return st.SaveMQTTPos(ctx, "alice", "phone", c1.Gen, 100) },
		"SaveMQTTQoS2": func() error { return st.SaveMQTTQoS2(ctx, "alice", "phone", c1.Gen, []MQTTQoS2{{PID: 1}}) },
		"SetMQTTPos":   func() error { return st.SetMQTTPos(ctx, "alice", "phone", c1.Gen, 1) },
		"TouchMQTT":    func() error { return st.TouchMQTT(ctx, "alice", "phone", c1.Gen) },
		"DeleteMQTT":   func() error { return st.DeleteMQTT(ctx, "alice", "phone", c1.Gen) },
		"future gen":   func() error { return st.SaveMQTTPos(ctx, "alice", "phone", c2.Gen+1, 100) },
	} {
		if err := write(); !errors.Is(err, ErrStale) {
			t.Errorf("%s with the old gen: %v, want ErrStale", name, err)
		}
	}
	if got := mustGet(t, st, "alice", "phone"); !sameRecord(got, want) {
		t.Fatalf("stale writes changed the record: %+v, want %+v", got, want)
	}
	// The current holder writes.
	if err := peer.SaveMQTTSubs(ctx, "alice", "phone", c2.Gen, []MQTTSub{{"z", 1}}); err != nil {
		t.Fatal(err)
	}
	if err := peer.TouchMQTT(ctx, "alice", "phone", c2.Gen); err != nil {
		t.Fatal(err)
	}
	got := mustGet(t, st, "alice", "phone")
	if !slices.Equal(got.Subs, []MQTTSub{{"z", 1}}) || got.Gen != c2.Gen || got.Updated.Before(want.Updated) {
		t.Fatalf("after the holder's writes: %+v", got)
	}
}

func testMQTTPosOnlyUp(t *testing.T, f *mqttFixture) {
	st := f.St
	ctx := ctxT(t)
	_, _, c := mustClaim(t, st, "alice", "phone", "n1", false, 10)
	for _, tc := range []struct{ save, want uint64 }{{20, 20}, {15, 20}, {20, 20}, {0, 20}, {21, 21}, {1 << 60, 1 << 60}, {5, 1 << 60}} {
		if err := st.SaveMQTTPos(ctx, "alice", "phone", c.Gen, tc.save); err != nil {
			t.Fatalf("SaveMQTTPos(%d): %v", tc.save, err)
		}
		if got := mustGet(t, st, "alice", "phone"); got.Pos != tc.want {
			t.Fatalf("after SaveMQTTPos(%d): Pos %d, want %d", tc.save, got.Pos, tc.want)
		}
	}
	// SetMQTTPos goes lower too.
	for _, pos := range []uint64{7, 7, 9, 3} {
		if err := st.SetMQTTPos(ctx, "alice", "phone", c.Gen, pos); err != nil {
			t.Fatalf("SetMQTTPos(%d): %v", pos, err)
		}
		if got := mustGet(t, st, "alice", "phone"); got.Pos != pos {
			t.Fatalf("after SetMQTTPos(%d): Pos %d", pos, got.Pos)
		}
	}
}

func testMQTTDelete(t *testing.T, f *mqttFixture) {
	st := f.St
	ctx := ctxT(t)
	_, _, c := mustClaim(t, st, "alice", "phone", "n1", false, 0)
	if err := st.DeleteMQTT(ctx, "alice", "phone", c.Gen); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetMQTT(ctx, "alice", "phone"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	// Deleting what is gone is done already; writes to it are stale.
	if err := st.DeleteMQTT(ctx, "alice", "phone", c.Gen); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if err := st.SaveMQTTPos(ctx, "alice", "phone", c.Gen, 3); !errors.Is(err, ErrStale) {
		t.Fatalf("write after delete: %v", err)
	}
	// A claim after a delete starts afresh, with a gen no earlier holder
	// had.
	prev, found, c2 := mustClaim(t, st, "alice", "phone", "n1", false, 8)
	if found || c2.Gen == c.Gen || c2.Pos != 8 {
		t.Fatalf("claim after delete: prev %+v found %v cur %+v", prev, found, c2)
	}
	if err := st.SaveMQTTPos(ctx, "alice", "phone", c.Gen, 30); !errors.Is(err, ErrStale) {
		t.Fatalf("write with the deleted record's gen: %v", err)
	}
}

// claimEvent is one call of a WatchMQTTClaims callback.
type claimEvent struct {
	principal, clientID, node string
	gen                       uint64
}

// watchClaims runs WatchMQTTClaims on st until the test ends and returns
// the events seen so far, once it is ready.
func watchClaims(t *testing.T, st MQTTSessions) func() []claimEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu     sync.Mutex
		events []claimEvent
		done   = make(chan error, 1)
		ready  = make(chan struct{})
	)
	go func() {
		done <- st.WatchMQTTClaims(ctx, func(p, c, n string, g uint64) {
			mu.Lock()
			events = append(events, claimEvent{p, c, n, g})
			mu.Unlock()
		}, func() { close(ready) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchMQTTClaims: %v", err)
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("WatchMQTTClaims returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("WatchMQTTClaims not ready within 10 s")
	}
	return func() []claimEvent {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(events)
	}
}

func testMQTTWatchClaims(t *testing.T, f *mqttFixture) {
	st, peer := f.St, f.Peer(t)
	// A claim before the watch may be reported (KV reports the notices
	// it still keeps), or not (Memory): it is left out below.
	mustClaim(t, st, "alice", "early", "n1", false, 0)
	mustClaim(t, peer, "alice", "early", "n2", false, 0)
	events := watchClaims(t, peer)

	seen := func(want []claimEvent) {
		t.Helper()
		testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			got := slices.DeleteFunc(events(), func(e claimEvent) bool { return e.clientID == "early" })
			if !slices.Equal(got, want) {
				return fmt.Errorf("claims seen %v, want %v", got, want)
			}
			return nil
		})
	}
	long := strings.Repeat("é", 100) // hashed in KV keys
	// A new session is told: a clean session elsewhere has no record
	// that the claim could find.
	_, _, a := mustClaim(t, st, "alice", "phone", "n1", false, 0)
	want := []claimEvent{{"alice", "phone", "n1", a.Gen}}
	seen(want)
	// Its own record: told too (a clean claim elsewhere may not have
	// seen the record).
	_, _, a2 := mustClaim(t, st, "alice", "phone", "n1", false, 0)
	want = append(want, claimEvent{"alice", "phone", "n1", a2.Gen})
	seen(want)
	// A clean claim is always told, record or not. (Two claims of one
	// session in a row may be reported as the last one only: each is
	// waited for.)
	_, _, c := mustClaim(t, peer, "alice", "phone", "n2", true, 0)
	want = append(want, claimEvent{"alice", "phone", "n2", c.Gen})
	seen(want)
	_, _, c2 := mustClaim(t, peer, "alice", "phone", "n2", true, 0)
	want = append(want, claimEvent{"alice", "phone", "n2", c2.Gen})
	seen(want)
	_, _, d := mustClaim(t, st, "alice", "phone", "n1", false, 0)
	want = append(want, claimEvent{"alice", "phone", "n1", d.Gen})
	seen(want)
	_, _, l1 := mustClaim(t, st, "a.b", long, "n1", false, 0)
	want = append(want, claimEvent{"a.b", long, "n1", l1.Gen})
	seen(want)
	_, _, e := mustClaim(t, peer, "a.b", long, "n2", false, 0)
	want = append(want, claimEvent{"a.b", long, "n2", e.Gen})
	seen(want)
	// Nothing else arrives: a write of the holder is no claim.
	if err := st.SaveMQTTPos(ctxT(t), "alice", "phone", d.Gen, 4); err != nil {
		t.Fatal(err)
	}
	_, _, m := mustClaim(t, st, "alice", "marker", "n1", false, 0)
	seen(append(want, claimEvent{"alice", "marker", "n1", m.Gen}))
}

// oddClientIDs are client ids MQTT allows that a KV key could not hold as
// they are.
var oddClientIDs = []string{
	"", "a", "a.b", ".", "..", "a/b/c", "+", "#", "*", ">", "a b", "a=b", "=", "b", "h",
	"日本語", "ü", "emoji 🙂", "\t\n", "$SYS", "a.>", strings.Repeat("x", maxRawClientID),
	strings.Repeat("x", maxRawClientID+1), strings.Repeat("é", maxRawClientID), strings.Repeat("z", 65535),
}

func testMQTTClientIDs(t *testing.T, f *mqttFixture) {
	st := f.St
	ctx := ctxT(t)
	for _, p := range []string{"alice", "a.b"} {
		for i, id := range oddClientIDs {
			_, found, c := mustClaim(t, st, p, id, "n1", false, uint64(i))
			if found {
				t.Fatalf("%q/%q: found a record: ids collide", p, logID(id))
			}
			if err := st.SaveMQTTSubs(ctx, p, id, c.Gen, []MQTTSub{{Filter: p + "/" + id, QoS: 1}}); err != nil {
				t.Fatalf("%q/%q: %v", p, logID(id), err)
			}
		}
	}
	for _, p := range []string{"alice", "a.b"} {
		for i, id := range oddClientIDs {
			got := mustGet(t, st, p, id)
			if got.Principal != p || got.ClientID != id || got.Pos != uint64(i) ||
				!slices.Equal(got.Subs, []MQTTSub{{Filter: p + "/" + id, QoS: 1}}) {
				t.Fatalf("%q/%q: read back principal %q client %q pos %d", p, logID(id), got.Principal, logID(got.ClientID), got.Pos)
			}
		}
	}
}

func testMQTTInvalidIDs(t *testing.T, f *mqttFixture) {
	st := f.St
	ctx := ctxT(t)
	for _, tc := range []struct{ p, c string }{
		{"", "x"}, {"a/b", "x"}, {"a b", "x"}, {strings.Repeat("x", 65), "x"},
		{"alice", "\xff"}, {"alice", "a\x00b"}, {"alice", strings.Repeat("z", 65536)},
	} {
		if _, _, _, err := st.ClaimMQTT(ctx, tc.p, tc.c, "n1", false, 0); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ClaimMQTT(%q, %q): %v", tc.p, logID(tc.c), err)
		}
		if _, err := st.GetMQTT(ctx, tc.p, tc.c); !errors.Is(err, ErrInvalidID) {
			t.Errorf("GetMQTT(%q, %q): %v", tc.p, logID(tc.c), err)
		}
		if err := st.SaveMQTTPos(ctx, tc.p, tc.c, 1, 1); !errors.Is(err, ErrInvalidID) {
			t.Errorf("SaveMQTTPos(%q, %q): %v", tc.p, logID(tc.c), err)
		}
		if err := st.DeleteMQTT(ctx, tc.p, tc.c, 1); !errors.Is(err, ErrInvalidID) {
			t.Errorf("DeleteMQTT(%q, %q): %v", tc.p, logID(tc.c), err)
		}
	}
}

// testMQTTExpiry (records expire 1 s after their last write): a record
// its holder keeps writing outlives the expiry several times over; one
// left alone vanishes, and a claim then finds nothing.
func testMQTTExpiry(t *testing.T, f *mqttFixture) {
	st := f.St
	ctx := ctxT(t)
	_, _, held := mustClaim(t, st, "alice", "held", "n1", false, 0)
	_, _, left := mustClaim(t, st, "alice", "left", "n1", false, 0)
	start := time.Now()
	for i := uint64(1); time.Since(start) < 3*time.Second; i++ {
		// Every 250 ms, a quarter of the expiry, as a holder does.
		var err error
		if i%2 == 0 {
			err = st.TouchMQTT(ctx, "alice", "held", held.Gen)
		} else {
			err = st.SaveMQTTPos(ctx, "alice", "held", held.Gen, i)
		}
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if _, err := st.GetMQTT(ctx, "alice", "held"); err != nil {
		t.Fatalf("held record after 3 s of refreshes: %v", err)
	}
	// "left" was last written 3 s ago: gone (the server's TTL timer may
	// take a moment more).
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		_, err := st.GetMQTT(ctx, "alice", "left")
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("left record: %v", err)
		}
		return nil
	})
	if err := st.SaveMQTTPos(ctx, "alice", "left", left.Gen, 5); !errors.Is(err, ErrStale) {
		t.Fatalf("write to an expired record: %v", err)
	}
	if _, found, _ := mustClaim(t, st, "alice", "left", "n2", false, 0); found {
		t.Fatal("claim found the expired record")
	}
	// The held record goes too once its holder stops.
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		_, err := st.GetMQTT(ctx, "alice", "held")
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("held record after its holder stopped: %v", err)
		}
		return nil
	})
}
