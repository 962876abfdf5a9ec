package store

import (
	"context"
	"errors"
	"fmt"
	"github.com/pushring/pushring/internal/testutil"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dirBackend gives a fresh store and a second Store on the same data (as
// another process would hold).
type dirBackend func(t *testing.T) (st, peer Store)

func dirBackends() map[string]dirBackend {
	return map[string]dirBackend{
		"Memory": func(t *testing.T) (Store, Store) {
			m := NewMemory()
			t.Cleanup(func() { m.Close() })
			return m, nopClose{m}
		},
		"KV": func(t *testing.T) (Store, Store) {
			n := startNATS(t)
			return n.openKV(t, KVConfig{}), n.openKV(t, KVConfig{})
		},
	}
}

func startDirectory(t *testing.T, st Store) *Directory {
	t.Helper()
	d := NewDirectory(st)
	t.Cleanup(func() { d.Close() })
	if err := d.Start(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return d
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestDirectory(t *testing.T) {
	for name, backend := range dirBackends() {
		t.Run(name, func(t *testing.T) {
			t.Run("InitialState", func(t *testing.T) { testDirInitial(t, backend) })
			t.Run("ReadYourWrites", func(t *testing.T) { testDirReadYourWrites(t, backend) })
			t.Run("WatchDriven", func(t *testing.T) { testDirWatchDriven(t, backend) })
			t.Run("TruthTables", func(t *testing.T) { testDirTruthTables(t, backend) })
			t.Run("Revoke", func(t *testing.T) { testDirRevoke(t, backend) })
		})
	}
}

func testDirInitial(t *testing.T, backend dirBackend) {
	st, _ := backend(t)
	ctx := ctxT(t)
	for _, id := range []string{"c", "a.x", "b"} {
		must(t, st.CreatePrincipal(ctx, Principal{ID: id, Kind: User}))
	}
	must(t, st.CreateGroup(ctx, Group{ID: "g.1", MembersCanPublish: true}))
	for _, id := range []string{"c", "a.x", "b"} {
		must(t, st.SetRole(ctx, "g.1", id, Member, true))
	}
	must(t, st.SetRole(ctx, "g.1", "b", Member, false))
	must(t, st.SetRole(ctx, "g.1", "b", Publisher, true))

	d := startDirectory(t, st)
	if got := d.Members("g.1"); !slices.Equal(got, []string{"a.x", "c"}) {
		t.Fatalf("Members = %q", got)
	}
	if g, ok := d.GroupInfo("g.1"); !ok || !g.MembersCanPublish || g.ID != "g.1" {
		t.Fatalf("GroupInfo = %+v, %v", g, ok)
	}
	if !d.IsPublisher("g.1", "b") || d.IsMember("g.1", "b") {
		t.Fatal("b's roles")
	}
	if _, ok := d.GroupInfo("nope"); ok || d.Members("nope") != nil {
		t.Fatal("unknown group visible")
	}
	if !d.Ready() {
		t.Fatal("not Ready after Start")
	}
}

func testDirReadYourWrites(t *testing.T, backend dirBackend) {
	st, _ := backend(t)
	d := startDirectory(t, st)
	ctx := ctxT(t)
	must(t, d.CreatePrincipal(ctx, Principal{ID: "alice", Kind: User}))
	must(t, d.CreatePrincipal(ctx, Principal{ID: "bob", Kind: User}))
	must(t, d.CreateGroup(ctx, Group{ID: "g"}))
	if _, ok := d.GroupInfo("g"); !ok {
		t.Fatal("CreateGroup not visible at once")
	}
	must(t, d.SetRole(ctx, "g", "bob", Member, true))
	must(t, d.SetRole(ctx, "g", "alice", Member, true))
	if got := d.Members("g"); !slices.Equal(got, []string{"alice", "bob"}) {
		t.Fatalf("Members right after SetRole = %q", got)
	}
	before := d.Members("g")
	must(t, d.SetRole(ctx, "g", "alice", Member, false))
	if d.IsMember("g", "alice") || !slices.Equal(d.Members("g"), []string{"bob"}) {
		t.Fatal("removal not visible at once")
	}
	// Copy-on-write: a slice handed out earlier does not change.
	if !slices.Equal(before, []string{"alice", "bob"}) {
		t.Fatalf("old Members slice changed: %q", before)
	}
	// Failed writes change nothing.
	if err := d.SetRole(ctx, "g", "nobody", Member, true); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if d.IsMember("g", "nobody") {
		t.Fatal("failed SetRole applied")
	}
	if err := d.CreateGroup(ctx, Group{ID: "g", MembersCanPublish: true}); !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if g, _ := d.GroupInfo("g"); g.MembersCanPublish {
		t.Fatal("failed CreateGroup applied")
	}
	// The view settles on the store's state once the watch catches up.
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if got := d.Members("g"); !slices.Equal(got, []string{"bob"}) {
			return fmt.Errorf("Members = %q", got)
		}
		return nil
	})
}

func testDirWatchDriven(t *testing.T, backend dirBackend) {
	st, peer := backend(t)
	d := startDirectory(t, st)
	ctx := ctxT(t)
	must(t, peer.CreatePrincipal(ctx, Principal{ID: "dev.1", Kind: Device}))
	must(t, peer.CreatePrincipal(ctx, Principal{ID: "carol", Kind: User}))
	must(t, peer.CreateGroup(ctx, Group{ID: "room.1"}))
	must(t, peer.SetRole(ctx, "room.1", "carol", Member, true))
	must(t, peer.SetRole(ctx, "room.1", "dev.1", Publisher, true))
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if !d.IsMember("room.1", "carol") || !d.CanPublishGroup("dev.1", "room.1") || !d.CanDirect("dev.1", "carol") {
			return errors.New("peer's writes not visible")
		}
		return nil
	})
	must(t, peer.SetRole(ctx, "room.1", "carol", Member, false))
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if d.IsMember("room.1", "carol") || d.Members("room.1") != nil || d.CanDirect("dev.1", "carol") {
			return errors.New("peer's removal not visible")
		}
		return nil
	})
}

// testDirTruthTables checks every ACL answer on one fixed directory.
//
//	open   (MembersCanPublish): members alice, bob; publisher dev1
//	closed:                     members alice, carol; publishers dev2, carol
//	solo:                       member erin
//	dave: in no group
func testDirTruthTables(t *testing.T, backend dirBackend) {
	st, _ := backend(t)
	d := startDirectory(t, st)
	ctx := ctxT(t)
	for _, id := range []string{"alice", "bob", "carol", "dave", "erin", "dev1", "dev2"} {
		must(t, d.CreatePrincipal(ctx, Principal{ID: id, Kind: User}))
	}
	must(t, d.CreateGroup(ctx, Group{ID: "open", MembersCanPublish: true}))
	must(t, d.CreateGroup(ctx, Group{ID: "closed"}))
	must(t, d.CreateGroup(ctx, Group{ID: "solo"}))
	for _, r := range []struct {
		gid, id string
		r       Role
	}{
		{"open", "alice", Member}, {"open", "bob", Member}, {"open", "dev1", Publisher},
		{"closed", "alice", Member}, {"closed", "carol", Member}, {"closed", "dev2", Publisher},
		{"closed", "carol", Publisher}, {"solo", "erin", Member},
	} {
		must(t, d.SetRole(ctx, r.gid, r.id, r.r, true))
	}

	publish := map[[2]string]bool{ // {id, gid} -> CanPublishGroup
		{"alice", "open"}: true, {"bob", "open"}: true, {"dev1", "open"}: true,
		{"carol", "open"}: false, {"dev2", "open"}: false, {"dave", "open"}: false,
		{"alice", "closed"}: false, {"carol", "closed"}: true, {"dev2", "closed"}: true,
		{"dev1", "closed"}: false, {"bob", "closed"}: false,
		{"erin", "solo"}: false, {"alice", "nogroup"}: false, {"", "open"}: false,
	}
	direct := map[[2]string]bool{ // {from, to} -> CanDirect
		{"alice", "bob"}: true, {"bob", "alice"}: true, {"alice", "dev1"}: true,
		{"dev1", "bob"}: true, {"alice", "carol"}: true, {"carol", "dev2"}: true,
		{"bob", "carol"}: false, {"dev1", "dev2"}: false, {"bob", "dev2"}: false,
		{"dave", "alice"}: false, {"alice", "dave"}: false, {"dave", "dave"}: true,
		{"erin", "erin"}: true, {"erin", "alice"}: false, {"ghost", "alice"}: false,
		{"ghost", "ghost"}: true,
	}
	check := func(when string) {
		t.Helper()
		for k, want := range publish {
			if got := d.CanPublishGroup(k[0], k[1]); got != want {
				t.Errorf("%s: CanPublishGroup(%q, %q) = %v", when, k[0], k[1], got)
			}
		}
		for k, want := range direct {
			if got := d.CanDirect(k[0], k[1]); got != want {
				t.Errorf("%s: CanDirect(%q, %q) = %v", when, k[0], k[1], got)
			}
		}
	}
	check("local view")
	// A second Directory on the same store, built from the watch alone,
	// answers the same once the watch has caught up.
	d2 := NewDirectory(st)
	t.Cleanup(func() { d2.cancel() }) // st is closed by the fixture
	must(t, d2.Start(ctx))
	d = d2
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if !d.IsMember("solo", "erin") {
			return errors.New("not caught up")
		}
		return nil
	})
	check("watched view")

	// The hot reads allocate nothing.
	allocs := testing.AllocsPerRun(1000, func() {
		d.Members("open")
		d.IsMember("open", "alice")
		d.IsPublisher("closed", "dev2")
		d.GroupInfo("open")
		d.CanPublishGroup("alice", "open")
		d.CanDirect("alice", "carol")
		d.CanDirect("dave", "alice")
	})
	if allocs != 0 {
		t.Errorf("hot reads allocate %v times", allocs)
	}
}

func testDirRevoke(t *testing.T, backend dirBackend) {
	st, peer := backend(t)
	d := NewDirectory(st)
	t.Cleanup(func() { d.Close() })
	var mu sync.Mutex
	var got []string
	d.OnRevoke(func(h string) {
		mu.Lock()
		got = append(got, h)
		mu.Unlock()
	})
	seen := func(h string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(got, h)
	}
	must(t, d.Start(ctxT(t)))
	ctx := ctxT(t)
	_, h1, _ := NewToken()
	_, h2, _ := NewToken()
	for _, h := range []string{h1, h2} {
		must(t, d.CreateSession(ctx, Session{TokenHash: h, PrincipalID: "alice", Expires: time.Now().Add(time.Hour)}))
	}
	// Local logout: callback before DeleteSession returns.
	must(t, d.DeleteSession(ctx, h1))
	if !seen(h1) {
		t.Fatal("local revocation not reported at once")
	}
	// Logout by another process: through the watch.
	must(t, peer.DeleteSession(ctx, h2))
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if !seen(h2) {
			return errors.New("remote revocation not reported")
		}
		return nil
	})
	if err := d.DeleteSession(ctx, h2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// TestDirectoryStaleLocalWrite: when the watch reports a newer change to
// the same role while a local write is in flight, the local write must
// not be applied over it.
func TestDirectoryStaleLocalWrite(t *testing.T) {
	m := NewMemory()
	ctx := ctxT(t)
	must(t, m.CreatePrincipal(ctx, Principal{ID: "alice", Kind: User}))
	must(t, m.CreateGroup(ctx, Group{ID: "g"}))
	racer := &racyStore{Memory: m}
	d := startDirectory(t, racer)
	// Another process removes the role right after our set landed, and
	// the watch delivers both before our SetRole returns.
	racer.after = func() {
		must(t, m.SetRole(ctx, "g", "alice", Member, false))
		testutil.CheckFor(t, time.Second, time.Millisecond, func() error {
			d.mu.RLock()
			defer d.mu.RUnlock()
			if d.v.groups["g"] != nil && d.v.groups["g"].roles["alice"] == 0 && d.pending[eventKey(Event{Type: RoleSet, GroupID: "g", Principal: "alice", Role: Member})][0].seenSame {
				return nil
			}
			return errors.New("watch has not reported both changes")
		})
	}
	must(t, d.SetRole(ctx, "g", "alice", Member, true))
	if d.IsMember("g", "alice") {
		t.Fatal("stale local write applied over a newer watched change")
	}

	// The other order: an older change arrives while our write is in
	// flight. Ours is applied at once, and the watch settles on it.
	must(t, m.SetRole(ctx, "g", "alice", Member, true)) // not yet seen by d
	racer.after = nil
	must(t, d.SetRole(ctx, "g", "alice", Member, false))
	if d.IsMember("g", "alice") {
		t.Fatal("own write not visible at once")
	}
	must(t, m.CreatePrincipal(ctx, Principal{ID: "marker", Kind: User}))
	must(t, m.SetRole(ctx, "g", "marker", Member, true))
	testutil.CheckFor(t, time.Second, time.Millisecond, func() error {
		if !d.IsMember("g", "marker") {
			return errors.New("watch not caught up")
		}
		return nil
	})
	if d.IsMember("g", "alice") {
		t.Fatal("view did not settle on the store's order")
	}
}

// TestDirectoryOlderEventAfterLocalWrite drives the watch by hand: an
// older change to the same role that the watch delivers after a local
// write was applied must not undo the write, even for a moment, and the
// changes after the write's own event apply as usual.
func TestDirectoryOlderEventAfterLocalWrite(t *testing.T) {
	d := NewDirectory(NewMemory()) // not started: events come from the test
	t.Cleanup(func() { d.Close() })
	set := Event{Type: RoleSet, GroupID: "g", Principal: "alice", Role: Member}
	removed := set
	removed.Type = RoleRemoved
	d.apply(Event{Type: GroupPut, Group: Group{ID: "g"}})
	d.apply(set)
	if !d.IsMember("g", "alice") {
		t.Fatal("watched role not applied")
	}
	must(t, d.write(removed, func() error { return nil }))
	if d.IsMember("g", "alice") {
		t.Fatal("own write not visible at once")
	}
	d.apply(set) // another process's, before ours in the store
	if d.IsMember("g", "alice") {
		t.Fatal("older watched change undid the local write")
	}
	d.apply(removed) // ours
	d.apply(set)     // newer than ours
	if !d.IsMember("g", "alice") {
		t.Fatal("change after the write's own event not applied")
	}
	// A second local write of the other type and a re-watch: the rebuilt
	// view is the store's, and nothing stays skipped after it.
	must(t, d.write(removed, func() error { return nil }))
	d.mu.Lock()
	d.staging = newView()
	d.mu.Unlock()
	d.apply(Event{Type: GroupPut, Group: Group{ID: "g"}})
	d.ready()
	d.apply(set)
	if !d.IsMember("g", "alice") {
		t.Fatal("event skipped after a re-watch")
	}
}

// racyStore runs after() once a SetRole has succeeded, before returning.
type racyStore struct {
	*Memory
	after func()
}

func (r *racyStore) SetRole(ctx context.Context, gid, id string, role Role, on bool) error {
	err := r.Memory.SetRole(ctx, gid, id, role, on)
	if err == nil && r.after != nil {
		r.after()
	}
	return err
}

// TestDirectoryStartRetries: Start fails while the store is down, and the
// Directory becomes ready once it is back.
func TestDirectoryStartRetries(t *testing.T) {
	m := NewMemory()
	must(t, m.CreateGroup(context.Background(), Group{ID: "g"}))
	m.SetUnavailable(true)
	d := NewDirectory(m)
	t.Cleanup(func() { d.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := d.Start(ctx); err == nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start on a down store: %v", err)
	}
	m.SetUnavailable(false)
	must(t, d.Start(ctxT(t)))
	if _, ok := d.GroupInfo("g"); !ok {
		t.Fatal("group not loaded")
	}
}

// TestDirectoryGroupDeleted: a deleted group's roles grant nothing, in the
// live view and in a replay.
func TestDirectoryGroupDeleted(t *testing.T) {
	n := startNATS(t)
	st := n.openKV(t, KVConfig{})
	ctx := ctxT(t)
	must(t, st.CreatePrincipal(ctx, Principal{ID: "a", Kind: User}))
	must(t, st.CreatePrincipal(ctx, Principal{ID: "b", Kind: User}))
	must(t, st.CreateGroup(ctx, Group{ID: "g.x", MembersCanPublish: true}))
	must(t, st.SetRole(ctx, "g.x", "a", Member, true))
	must(t, st.SetRole(ctx, "g.x", "b", Publisher, true))
	d := startDirectory(t, st)
	if !d.CanDirect("a", "b") {
		t.Fatal("setup")
	}
	// No API deletes groups; an operator might, on the bucket.
	must(t, st.groups.Delete(ctx, encodeID("g.x")))
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if _, ok := d.GroupInfo("g.x"); ok {
			return errors.New("group still there")
		}
		return nil
	})
	if d.CanDirect("a", "b") || d.IsMember("g.x", "a") || d.CanPublishGroup("b", "g.x") || d.Members("g.x") != nil {
		t.Fatal("deleted group's roles still count")
	}
	// A fresh replay sees the leftover role keys without their group.
	d2 := NewDirectory(st)
	t.Cleanup(func() { d2.cancel() })
	must(t, d2.Start(ctx))
	if d2.CanDirect("a", "b") || d2.IsMember("g.x", "a") || d2.CanPublishGroup("b", "g.x") {
		t.Fatal("replayed orphan roles count")
	}
}

func TestDirectoryCloseWithoutStart(t *testing.T) {
	d := NewDirectory(NewMemory())
	must(t, d.Close())
	if err := d.Start(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Start after Close: %v", err)
	}
}

func BenchmarkDirectoryReads(b *testing.B) {
	m := NewMemory()
	ctx := context.Background()
	d := NewDirectory(m)
	for i := range 1000 {
		id := fmt.Sprintf("u%d", i)
		must2(b, d.CreatePrincipal(ctx, Principal{ID: id, Kind: User}))
	}
	for g := range 100 {
		gid := fmt.Sprintf("g%d", g)
		must2(b, d.CreateGroup(ctx, Group{ID: gid}))
		for i := range 50 {
			must2(b, d.SetRole(ctx, gid, fmt.Sprintf("u%d", (g*7+i*13)%1000), Member, true))
		}
	}
	must2(b, d.Start(ctx))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			d.IsMember("g5", "u42")
			d.CanDirect("u1", "u999")
			_ = d.Members("g7")
		}
	})
}

func must2(b *testing.B, err error) {
	if err != nil {
		b.Fatal(err)
	}
}

// TestDirectoryDeletePrincipal: deleting a principal through the
// Directory takes it out of its groups in the view at once, reports it
// and its revoked sessions to the callbacks at once, and a key rotation
// is reported with the principal's kind; a deleted group leaves the view.
func TestDirectoryDeletePrincipal(t *testing.T) {
	ctx := context.Background()
	mem := NewMemory()
	d := startDirectory(t, mem)
	var mu sync.Mutex
	var seen []string
	d.OnPrincipal(func(e Event) {
		mu.Lock()
		seen = append(seen, describe([]Event{e})...)
		mu.Unlock()
	})
	d.OnRevoke(func(h string) {
		mu.Lock()
		seen = append(seen, "revoked "+h)
		mu.Unlock()
	})
	for _, p := range []Principal{{ID: "alice", Kind: User}, {ID: "d1", Kind: Device}} {
		if err := d.CreatePrincipal(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.CreateGroup(ctx, Group{ID: "g"}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetRole(ctx, "g", "alice", Member, true); err != nil {
		t.Fatal(err)
	}
	_, h, _ := NewToken()
	if err := d.CreateSession(ctx, Session{TokenHash: h, PrincipalID: "alice", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := d.SetSecret(ctx, "d1", "rotated"); err != nil {
		t.Fatal(err)
	}
	if err := d.DeletePrincipal(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	// At once, before any watch event could be waited for.
	if d.IsMember("g", "alice") || len(d.Members("g")) != 0 || len(d.MemberOf("alice")) != 0 {
		t.Fatalf("alice still in the view: %v", d.Members("g"))
	}
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	for _, want := range []string{"principal+ d1 device", "principal- alice", "revoked " + h} {
		if !slices.Contains(got, want) {
			t.Fatalf("callbacks saw %q, missing %q", got, want)
		}
	}
	if err := d.DeleteGroup(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.GroupInfo("g"); ok {
		t.Fatal("deleted group still in the view")
	}
}

// breakable is a Memory whose running watch ends when told.
type breakable struct {
	*Memory
	breakc chan struct{}
}

func (b *breakable) Watch(ctx context.Context, fn func(Event), ready func()) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-b.breakc:
			cancel()
		case <-wctx.Done():
		}
	}()
	return b.Memory.Watch(wctx, fn, ready)
}

// TestDirectoryOnRewatch: the callbacks run each time a broken watch is
// back, not at the first start.
func TestDirectoryOnRewatch(t *testing.T) {
	b := &breakable{Memory: NewMemory(), breakc: make(chan struct{})}
	d := NewDirectory(b)
	var n atomic.Int32
	d.OnRewatch(func() { n.Add(1) })
	t.Cleanup(func() { d.Close() })
	must(t, d.Start(ctxT(t)))
	if got := n.Load(); got != 0 {
		t.Fatalf("OnRewatch ran %d times at the first start", got)
	}
	b.breakc <- struct{}{}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := n.Load(); got != 1 {
			return fmt.Errorf("OnRewatch ran %d times after one break", got)
		}
		return nil
	})
}
