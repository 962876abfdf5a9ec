package store

// The contract suite: every Store implementation runs these same tests
// (Memory in memory_test.go, KV on a real embedded NATS in kv_test.go).

import (
	"context"
	"errors"
	"fmt"
	"github.com/pushring/pushring/internal/testutil"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is one backend under test.
type fixture struct {
	// St is a fresh, empty store.
	St Store
	// Peer opens another Store on the same data, as a second process
	// would. Closed by the test cleanup.
	Peer func(t *testing.T) Store
	// Restart stops the backend and starts it again on the same data,
	// returning a new Store (St is then dead). Nil if not persistent.
	Restart func(t *testing.T) Store
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var badIDs = []string{".", "..", "a/b", "+", "#", "a b", "", strings.Repeat("x", 65), "a\x00b", "a*b", "a>b", "a=b", "é"}

var goodIDs = []string{"a", "alice", "a.b", "a..b", ".a", "a.", "...", "A-Z_0.9", strings.Repeat("x", 64), "-", "_"}

func runContract(t *testing.T, newFixture func(t *testing.T) *fixture) {
	t.Run("Principals", func(t *testing.T) { testPrincipals(t, newFixture(t)) })
	t.Run("Groups", func(t *testing.T) { testGroups(t, newFixture(t)) })
	t.Run("InvalidIDs", func(t *testing.T) { testInvalidIDs(t, newFixture(t)) })
	t.Run("Roles", func(t *testing.T) { testRoles(t, newFixture(t)) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, newFixture(t)) })
	t.Run("Watch", func(t *testing.T) { testWatch(t, newFixture(t)) })
	t.Run("WatchPeer", func(t *testing.T) { testWatchPeer(t, newFixture(t)) })
	t.Run("WatchEveryWrite", func(t *testing.T) { testWatchEveryWrite(t, newFixture(t)) })
	t.Run("Lists", func(t *testing.T) { testLists(t, newFixture(t)) })
	t.Run("Deletes", func(t *testing.T) { testDeletes(t, newFixture(t)) })
	t.Run("Restart", func(t *testing.T) {
		f := newFixture(t)
		if f.Restart == nil {
			t.Skip("backend is not persistent")
		}
		testRestart(t, f)
	})
}

func testPrincipals(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	for i, id := range goodIDs {
		kind := User
		if i%2 == 1 {
			kind = Device
		}
		p := Principal{ID: id, Kind: kind, SecretHash: "h" + id, Created: time.Unix(1700000000, int64(i)).UTC()}
		if err := st.CreatePrincipal(ctx, p); err != nil {
			t.Fatalf("CreatePrincipal(%q): %v", id, err)
		}
	}
	for i, id := range goodIDs {
		got, err := st.Principal(ctx, id)
		if err != nil {
			t.Fatalf("Principal(%q): %v", id, err)
		}
		if got.ID != id || got.SecretHash != "h"+id || !got.Created.Equal(time.Unix(1700000000, int64(i))) {
			t.Fatalf("Principal(%q) = %+v", id, got)
		}
	}
	if err := st.CreatePrincipal(ctx, Principal{ID: "alice", Kind: User, SecretHash: "other"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v, want ErrExists", err)
	}
	if got, _ := st.Principal(ctx, "alice"); got.SecretHash != "halice" {
		t.Fatalf("duplicate create changed the principal: %+v", got)
	}
	if _, err := st.Principal(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Principal(nobody): %v, want ErrNotFound", err)
	}
	// "a.b" and "a=b"-like encodings must not collide: "a.b" exists, "a_b" not.
	if _, err := st.Principal(ctx, "a_b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Principal(a_b): %v, want ErrNotFound", err)
	}
	// Zero Created is filled in.
	if err := st.CreatePrincipal(ctx, Principal{ID: "fresh", Kind: User}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Principal(ctx, "fresh"); got.Created.IsZero() {
		t.Fatal("Created not set")
	}
}

func testGroups(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	for _, id := range goodIDs {
		if err := st.CreateGroup(ctx, Group{ID: id, MembersCanPublish: id == "a.b"}); err != nil {
			t.Fatalf("CreateGroup(%q): %v", id, err)
		}
	}
	for _, id := range goodIDs {
		g, err := st.Group(ctx, id)
		if err != nil || g.ID != id || g.MembersCanPublish != (id == "a.b") || g.Created.IsZero() {
			t.Fatalf("Group(%q) = %+v, %v", id, g, err)
		}
	}
	if err := st.CreateGroup(ctx, Group{ID: "a.b"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate CreateGroup: %v", err)
	}
	if _, err := st.Group(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Group(nope): %v", err)
	}
	// Principals and groups are separate namespaces.
	if _, err := st.Principal(ctx, "a.b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("group id visible as principal: %v", err)
	}
}

func testInvalidIDs(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	if err := st.CreatePrincipal(ctx, Principal{ID: "ok", Kind: User}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateGroup(ctx, Group{ID: "ok"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range badIDs {
		if ValidID(id) {
			t.Fatalf("ValidID(%q) = true", id)
		}
		if err := st.CreatePrincipal(ctx, Principal{ID: id, Kind: User}); !errors.Is(err, ErrInvalidID) {
			t.Errorf("CreatePrincipal(%q): %v", id, err)
		}
		if _, err := st.Principal(ctx, id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Principal(%q): %v", id, err)
		}
		if err := st.CreateGroup(ctx, Group{ID: id}); !errors.Is(err, ErrInvalidID) {
			t.Errorf("CreateGroup(%q): %v", id, err)
		}
		if _, err := st.Group(ctx, id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Group(%q): %v", id, err)
		}
		if err := st.SetRole(ctx, id, "ok", Member, true); !errors.Is(err, ErrInvalidID) {
			t.Errorf("SetRole(%q, ok): %v", id, err)
		}
		if err := st.SetRole(ctx, "ok", id, Member, true); !errors.Is(err, ErrInvalidID) {
			t.Errorf("SetRole(ok, %q): %v", id, err)
		}
		if _, _, err := st.Roles(ctx, id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Roles(%q): %v", id, err)
		}
		if err := st.CreateSession(ctx, Session{TokenHash: id, PrincipalID: "ok", Expires: time.Now().Add(time.Hour)}); !errors.Is(err, ErrInvalidID) {
			t.Errorf("CreateSession(%q): %v", id, err)
		}
		if _, err := st.Session(ctx, id); err == nil {
			t.Errorf("Session(%q) succeeded", id)
		}
		if err := st.DeleteSession(ctx, id); err == nil {
			t.Errorf("DeleteSession(%q) succeeded", id)
		}
	}
	for _, r := range []Role{0, 3, 4} {
		if err := st.SetRole(ctx, "ok", "ok", r, true); !errors.Is(err, ErrInvalidID) {
			t.Errorf("SetRole(role %d): %v", r, err)
		}
	}
}

func testRoles(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	for _, id := range []string{"alice", "bob", "carol", "dev.1", "dev.2"} {
		if err := st.CreatePrincipal(ctx, Principal{ID: id, Kind: User}); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range []string{"g1", "g.2", "g"} {
		if err := st.CreateGroup(ctx, Group{ID: g}); err != nil {
			t.Fatal(err)
		}
	}
	set := func(gid, id string, r Role, on bool) {
		t.Helper()
		if err := st.SetRole(ctx, gid, id, r, on); err != nil {
			t.Fatalf("SetRole(%s, %s, %v, %v): %v", gid, id, r, on, err)
		}
	}
	want := func(gid string, members, publishers []string) {
		t.Helper()
		m, p, err := st.Roles(ctx, gid)
		if err != nil {
			t.Fatalf("Roles(%s): %v", gid, err)
		}
		if !slices.Equal(m, members) || !slices.Equal(p, publishers) {
			t.Fatalf("Roles(%s) = %q, %q; want %q, %q", gid, m, p, members, publishers)
		}
	}
	want("g1", nil, nil)
	set("g1", "carol", Member, true)
	set("g1", "alice", Member, true)
	set("g1", "alice", Member, true) // idempotent
	set("g1", "bob", Member, true)
	set("g1", "dev.1", Publisher, true)
	set("g1", "alice", Publisher, true) // both roles
	set("g.2", "dev.2", Member, true)
	set("g.2", "dev.1", Publisher, true)
	set("g", "bob", Member, true) // "g" is a prefix of "g1" and "g.2"
	want("g1", []string{"alice", "bob", "carol"}, []string{"alice", "dev.1"})
	want("g.2", []string{"dev.2"}, []string{"dev.1"})
	want("g", []string{"bob"}, nil)

	set("g1", "bob", Member, false)
	set("g1", "bob", Member, false)      // not held: no error
	set("g1", "carol", Publisher, false) // never held: no error
	set("g1", "alice", Publisher, false) // keeps Member
	want("g1", []string{"alice", "carol"}, []string{"dev.1"})
	set("g1", "bob", Member, true) // back again after removal
	want("g1", []string{"alice", "bob", "carol"}, []string{"dev.1"})

	if err := st.SetRole(ctx, "nogroup", "alice", Member, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetRole on missing group: %v", err)
	}
	if err := st.SetRole(ctx, "g1", "nobody", Member, true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetRole for missing principal: %v", err)
	}
	if _, _, err := st.Roles(ctx, "nogroup"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Roles(nogroup): %v", err)
	}
}

func testSessions(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	if err := st.CreatePrincipal(ctx, Principal{ID: "alice", Kind: User}); err != nil {
		t.Fatal(err)
	}
	_, h1, _ := NewToken()
	_, h2, _ := NewToken()
	exp := time.Now().Add(time.Hour).UTC()
	s1 := Session{TokenHash: h1, PrincipalID: "alice", Created: time.Now().UTC(), Expires: exp}
	if err := st.CreateSession(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateSession(ctx, s1); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate session: %v", err)
	}
	got, err := st.Session(ctx, h1)
	if err != nil || got.PrincipalID != "alice" || got.TokenHash != h1 || !got.Expires.Equal(exp) {
		t.Fatalf("Session = %+v, %v", got, err)
	}
	// Expired.
	if err := st.CreateSession(ctx, Session{TokenHash: h2, PrincipalID: "alice", Expires: time.Now().Add(-time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Session(ctx, h2); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired session: %v", err)
	}
	if _, err := st.Session(ctx, HashToken("never issued")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown session: %v", err)
	}
	if err := st.DeleteSession(ctx, h1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Session(ctx, h1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted session: %v", err)
	}
	if err := st.DeleteSession(ctx, h1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// recorder collects watch events.
type recorder struct {
	mu     sync.Mutex
	events []Event
	ready  int
	// readyAt is len(events) when ready was called.
	readyAt int
}

func (r *recorder) fn(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) readyFn() {
	r.mu.Lock()
	r.ready++
	r.readyAt = len(r.events)
	r.mu.Unlock()
}

func (r *recorder) snapshot() (events []Event, ready, readyAt int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), r.ready, r.readyAt
}

// describe renders events comparably: order within the initial state is
// unspecified, so callers sort.
func describe(events []Event) []string {
	out := make([]string, 0, len(events))
	for _, e := range events {
		switch e.Type {
		case GroupPut:
			out = append(out, fmt.Sprintf("group+ %s %v", e.Group.ID, e.Group.MembersCanPublish))
		case GroupDeleted:
			out = append(out, "group- "+e.Group.ID)
		case RoleSet:
			out = append(out, fmt.Sprintf("role+ %s %s %v", e.GroupID, e.Principal, e.Role))
		case RoleRemoved:
			out = append(out, fmt.Sprintf("role- %s %s %v", e.GroupID, e.Principal, e.Role))
		case SessionRevoked:
			out = append(out, "revoked "+e.TokenHash)
		case PrincipalPut:
			out = append(out, fmt.Sprintf("principal+ %s %s", e.Principal, e.Kind))
		case PrincipalDeleted:
			out = append(out, "principal- "+e.Principal)
		default:
			out = append(out, fmt.Sprintf("event?%d", e.Type))
		}
	}
	return out
}

// startWatch runs st.Watch until the test ends and waits for ready.
func startWatch(t *testing.T, st Store) *recorder {
	t.Helper()
	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- st.Watch(ctx, rec.fn, rec.readyFn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	})
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		select {
		case err := <-done:
			t.Fatalf("Watch returned early: %v", err)
		default:
		}
		if _, ready, _ := rec.snapshot(); ready == 0 {
			return errors.New("not ready")
		}
		return nil
	})
	return rec
}

// waitEvents waits until rec has want (in order) after its ready point.
func waitEvents(t *testing.T, rec *recorder, want ...string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		events, _, at := rec.snapshot()
		got := describe(events[at:])
		// Each bucket has its own watcher: order holds within a bucket
		// (groups, roles, sessions, principals), not across them.
		for _, prefix := range []string{"group", "role", "revoked", "principal"} {
			if g, w := byPrefix(got, prefix), byPrefix(want, prefix); !slices.Equal(g, w) {
				return fmt.Errorf("live %s events\n got %q\nwant %q", prefix, g, w)
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("live events\n got %q\nwant %q", got, want)
		}
		return nil
	})
}

func byPrefix(events []string, prefix string) []string {
	var out []string
	for _, e := range events {
		if strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}

// testWatchEveryWrite writes one role key from several goroutines at once,
// faster than a watcher can keep up with under load: every write is still
// one event. (A JetStream KV keeping one value per key drops values the
// watch has not reached yet; 64 writes fit in the history it keeps.)
func testWatchEveryWrite(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	if err := st.CreatePrincipal(ctx, Principal{ID: "alice", Kind: User}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateGroup(ctx, Group{ID: "g"}); err != nil {
		t.Fatal(err)
	}
	rec := startWatch(t, st)
	if _, ready, _ := rec.snapshot(); ready != 1 {
		t.Fatalf("ready called %d times", ready)
	}
	const writers, each = 4, 16
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := st.SetRole(ctx, "g", "alice", Member, (w+i)%2 == 0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		events, _, at := rec.snapshot()
		if n := len(events) - at; n != writers*each {
			return fmt.Errorf("%d events for %d writes", n, writers*each)
		}
		return nil
	})
}

func testWatch(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	for _, id := range []string{"alice", "bob", "d.1"} {
		if err := st.CreatePrincipal(ctx, Principal{ID: id, Kind: User}); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateGroup(ctx, Group{ID: "g.1", MembersCanPublish: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateGroup(ctx, Group{ID: "g2"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		gid, id string
		r       Role
		on      bool
	}{
		{"g.1", "alice", Member, true}, {"g.1", "d.1", Publisher, true}, {"g.1", "bob", Member, true},
		{"g.1", "bob", Member, false}, {"g2", "alice", Member, true}, {"g2", "alice", Publisher, true},
	} {
		if err := st.SetRole(ctx, r.gid, r.id, r.r, r.on); err != nil {
			t.Fatal(err)
		}
	}
	_, hOld, _ := NewToken()
	if err := st.CreateSession(ctx, Session{TokenHash: hOld, PrincipalID: "alice", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	rec := startWatch(t, st)
	events, ready, at := rec.snapshot()
	if ready != 1 {
		t.Fatalf("ready called %d times", ready)
	}
	initial := describe(events[:at])
	slices.Sort(initial)
	wantInitial := []string{
		"group+ g.1 true", "group+ g2 false",
		"role+ g.1 alice member", "role+ g.1 d.1 publisher",
		"role+ g2 alice member", "role+ g2 alice publisher",
	}
	if !slices.Equal(initial, wantInitial) {
		t.Fatalf("initial events\n got %q\nwant %q", initial, wantInitial)
	}

	// Live changes, in order; sessions only show up when revoked.
	_, h, _ := NewToken()
	steps := []func() error{
		func() error { return st.CreateGroup(ctx, Group{ID: "g3"}) },
		func() error { return st.SetRole(ctx, "g3", "bob", Member, true) },
		func() error { return st.SetRole(ctx, "g3", "bob", Member, true) }, // no change, still an event
		func() error {
			return st.CreateSession(ctx, Session{TokenHash: h, PrincipalID: "bob", Expires: time.Now().Add(time.Hour)})
		},
		func() error { return st.SetRole(ctx, "g.1", "alice", Member, false) },
		func() error { return st.SetRole(ctx, "g.1", "alice", Member, false) }, // no change, still an event
		func() error { return st.DeleteSession(ctx, h) },
		func() error { return st.DeleteSession(ctx, hOld) },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	waitEvents(t, rec,
		"group+ g3 false",
		"role+ g3 bob member",
		"role+ g3 bob member", // one event per SetRole, even a no-op
		"role- g.1 alice member",
		"role- g.1 alice member",
		"revoked "+h,
		"revoked "+hOld,
	)
	// A second watcher sees the new state as its initial state.
	rec2 := startWatch(t, st)
	events, _, at = rec2.snapshot()
	initial = describe(events[:at])
	slices.Sort(initial)
	wantInitial = []string{
		"group+ g.1 true", "group+ g2 false", "group+ g3 false",
		"role+ g.1 d.1 publisher", "role+ g2 alice member", "role+ g2 alice publisher",
		"role+ g3 bob member",
	}
	if !slices.Equal(initial, wantInitial) {
		t.Fatalf("second watcher initial events\n got %q\nwant %q", initial, wantInitial)
	}
}

// testWatchPeer: a change made through another Store on the same data (as
// another process would) reaches a watcher.
func testWatchPeer(t *testing.T, f *fixture) {
	ctx := ctxT(t)
	peer := f.Peer(t)
	rec := startWatch(t, f.St)
	if err := peer.CreatePrincipal(ctx, Principal{ID: "p.1", Kind: Device}); err != nil {
		t.Fatal(err)
	}
	if err := peer.CreateGroup(ctx, Group{ID: "pg"}); err != nil {
		t.Fatal(err)
	}
	if err := peer.SetRole(ctx, "pg", "p.1", Publisher, true); err != nil {
		t.Fatal(err)
	}
	waitEvents(t, rec, "principal+ p.1 device", "group+ pg false", "role+ pg p.1 publisher")
	if _, err := f.St.Principal(ctx, "p.1"); err != nil {
		t.Fatalf("peer's principal not visible: %v", err)
	}
}

func testRestart(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	if err := st.CreatePrincipal(ctx, Principal{ID: "dev.1", Kind: Device, SecretHash: "kh"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateGroup(ctx, Group{ID: "g.1", MembersCanPublish: true}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetRole(ctx, "g.1", "dev.1", Member, true); err != nil {
		t.Fatal(err)
	}
	_, h, _ := NewToken()
	if err := st.CreateSession(ctx, Session{TokenHash: h, PrincipalID: "dev.1", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	st = f.Restart(t)
	if p, err := st.Principal(ctx, "dev.1"); err != nil || p.SecretHash != "kh" || p.Kind != Device {
		t.Fatalf("after restart: Principal = %+v, %v", p, err)
	}
	if g, err := st.Group(ctx, "g.1"); err != nil || !g.MembersCanPublish {
		t.Fatalf("after restart: Group = %+v, %v", g, err)
	}
	if m, _, err := st.Roles(ctx, "g.1"); err != nil || !slices.Equal(m, []string{"dev.1"}) {
		t.Fatalf("after restart: Roles = %q, %v", m, err)
	}
	if s, err := st.Session(ctx, h); err != nil || s.PrincipalID != "dev.1" {
		t.Fatalf("after restart: Session = %+v, %v", s, err)
	}
	if err := st.CreateGroup(ctx, Group{ID: "g.1"}); !errors.Is(err, ErrExists) {
		t.Fatalf("after restart: CreateGroup dup: %v", err)
	}
}

// listAll follows a list's cursors to the end, checking each page's size.
func listAll[T any](t *testing.T, limit int, list func(after string) ([]T, string, error), id func(T) string) []string {
	t.Helper()
	var ids []string
	after := ""
	for range 1000 {
		page, next, err := list(after)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > limit {
			t.Fatalf("page of %d, limit %d", len(page), limit)
		}
		for _, v := range page {
			ids = append(ids, id(v))
		}
		if next == "" {
			return ids
		}
		if next <= after {
			t.Fatalf("cursor %q does not move past %q", next, after)
		}
		after = next
	}
	t.Fatal("the list never ends")
	return nil
}

func testLists(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	users := []string{"a.1", "a.2", "alice", "b", "bob", "z"}
	devices := []string{"a-dev", "d.1", "d2", "sensor"}
	for _, id := range users {
		if err := st.CreatePrincipal(ctx, Principal{ID: id, Kind: User}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range devices {
		if err := st.CreatePrincipal(ctx, Principal{ID: id, Kind: Device}); err != nil {
			t.Fatal(err)
		}
	}
	for _, gid := range []string{"g.1", "g2", "home", "g=x"[:1]} {
		if err := st.CreateGroup(ctx, Group{ID: gid}); err != nil && !errors.Is(err, ErrExists) {
			t.Fatal(err)
		}
	}
	pid := func(p Principal) string { return p.ID }
	for _, tc := range []struct {
		kind   Kind
		prefix string
		want   []string
	}{
		{User, "", users},
		{Device, "", devices},
		{"", "", []string{"a-dev", "a.1", "a.2", "alice", "b", "bob", "d.1", "d2", "sensor", "z"}},
		{User, "a", []string{"a.1", "a.2", "alice"}},
		{User, "a.", []string{"a.1", "a.2"}},
		{Device, "a", []string{"a-dev"}},
		{"", "q", nil},
	} {
		for _, limit := range []int{1, 2, 3, 100} {
			got := listAll(t, limit, func(after string) ([]Principal, string, error) {
				return st.ListPrincipals(ctx, tc.kind, tc.prefix, after, limit)
			}, pid)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("ListPrincipals(%q, %q) by %d: %q, want %q", tc.kind, tc.prefix, limit, got, tc.want)
			}
		}
	}
	// A cursor from the middle goes on from there.
	ps, _, err := st.ListPrincipals(ctx, User, "", "alice", 2)
	if err != nil || len(ps) != 2 || ps[0].ID != "b" || ps[1].ID != "bob" || ps[0].Kind != User {
		t.Fatalf("ListPrincipals after alice: %+v, %v", ps, err)
	}
	gid := func(g Group) string { return g.ID }
	for _, limit := range []int{1, 2, 100} {
		got := listAll(t, limit, func(after string) ([]Group, string, error) { return st.ListGroups(ctx, "", after, limit) }, gid)
		if want := []string{"g", "g.1", "g2", "home"}; !slices.Equal(got, want) {
			t.Fatalf("ListGroups by %d: %q, want %q", limit, got, want)
		}
		got = listAll(t, limit, func(after string) ([]Group, string, error) { return st.ListGroups(ctx, "g.", after, limit) }, gid)
		if want := []string{"g.1"}; !slices.Equal(got, want) {
			t.Fatalf("ListGroups g. by %d: %q, want %q", limit, got, want)
		}
	}
	if ps, _, err := st.ListPrincipals(ctx, "", "", "", 0); err != nil || len(ps) != 10 {
		t.Fatalf("limit 0 (the default): %d, %v", len(ps), err)
	}
}

func testDeletes(t *testing.T, f *fixture) {
	ctx, st := ctxT(t), f.St
	for _, p := range []Principal{{ID: "alice", Kind: User, SecretHash: "old"}, {ID: "bob", Kind: User}, {ID: "d.1", Kind: Device}} {
		if err := st.CreatePrincipal(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, gid := range []string{"g1", "g.2"} {
		if err := st.CreateGroup(ctx, Group{ID: gid}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		gid, id string
		r       Role
	}{{"g1", "alice", Member}, {"g1", "alice", Publisher}, {"g.2", "alice", Member}, {"g1", "bob", Member}, {"g1", "d.1", Publisher}} {
		if err := st.SetRole(ctx, r.gid, r.id, r.r, true); err != nil {
			t.Fatal(err)
		}
	}
	if roles, err := st.PrincipalRoles(ctx, "alice"); err != nil || len(roles) != 2 || roles["g1"] != Member|Publisher || roles["g.2"] != Member {
		t.Fatalf("PrincipalRoles(alice) = %v, %v", roles, err)
	}
	if roles, err := st.PrincipalRoles(ctx, "nobody"); err != nil || len(roles) != 0 {
		t.Fatalf("PrincipalRoles(nobody) = %v, %v", roles, err)
	}
	now := time.Now().UTC()
	var hashes []string
	for i, s := range []struct {
		id      string
		created time.Time
		expires time.Time
	}{
		{"alice", now.Add(-time.Minute), now.Add(time.Hour)},
		{"alice", now.Add(-2 * time.Minute), now.Add(time.Hour)},
		{"alice", now.Add(-3 * time.Minute), now.Add(-time.Second)}, // expired
		{"bob", now, now.Add(time.Hour)},
	} {
		_, h, _ := NewToken()
		hashes = append(hashes, h)
		if err := st.CreateSession(ctx, Session{TokenHash: h, PrincipalID: s.id, Created: s.created, Expires: s.expires}); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	ss, err := st.Sessions(ctx, "alice")
	if err != nil || len(ss) != 2 || ss[0].TokenHash != hashes[1] || ss[1].TokenHash != hashes[0] {
		t.Fatalf("Sessions(alice) = %+v, %v; want the two live ones, oldest first", ss, err)
	}
	var mq MQTTSessions
	if m, ok := st.(MQTTSessions); ok {
		mq = m
		if _, _, _, err := mq.ClaimMQTT(ctx, "alice", "phone", "n1", false, 7); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := mq.ClaimMQTT(ctx, "bob", "phone", "n1", false, 7); err != nil {
			t.Fatal(err)
		}
	}

	rec := startWatch(t, st)
	if err := st.SetSecret(ctx, "alice", "new"); err != nil {
		t.Fatal(err)
	}
	if p, err := st.Principal(ctx, "alice"); err != nil || p.SecretHash != "new" || p.Kind != User {
		t.Fatalf("after SetSecret: %+v, %v", p, err)
	}
	if err := st.SetSecret(ctx, "nobody", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetSecret(nobody): %v", err)
	}
	if err := st.DeletePrincipal(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeletePrincipal(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := st.Principal(ctx, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted principal: %v", err)
	}
	if roles, err := st.PrincipalRoles(ctx, "alice"); err != nil || len(roles) != 0 {
		t.Fatalf("deleted principal's roles: %v, %v", roles, err)
	}
	if ss, err := st.Sessions(ctx, "alice"); err != nil || len(ss) != 0 {
		t.Fatalf("deleted principal's sessions: %v, %v", ss, err)
	}
	for _, h := range hashes[:2] {
		if _, err := st.Session(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted principal's session %s: %v", h, err)
		}
	}
	if s, err := st.Session(ctx, hashes[3]); err != nil || s.PrincipalID != "bob" {
		t.Fatalf("bob's session: %+v, %v", s, err)
	}
	if members, publishers, err := st.Roles(ctx, "g1"); err != nil || !slices.Equal(members, []string{"bob"}) || !slices.Equal(publishers, []string{"d.1"}) {
		t.Fatalf("g1 after the delete: %v %v %v", members, publishers, err)
	}
	if mq != nil {
		if _, err := mq.GetMQTT(ctx, "alice", "phone"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted principal's MQTT session: %v", err)
		}
		if _, err := mq.GetMQTT(ctx, "bob", "phone"); err != nil {
			t.Fatalf("bob's MQTT session: %v", err)
		}
	}

	if err := st.DeleteGroup(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteGroup(ctx, "g1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second group delete: %v", err)
	}
	if _, err := st.Group(ctx, "g1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted group: %v", err)
	}
	if roles, err := st.PrincipalRoles(ctx, "bob"); err != nil || len(roles) != 0 {
		t.Fatalf("bob's roles after the group went: %v, %v", roles, err)
	}
	if err := st.CreateGroup(ctx, Group{ID: "g1"}); err != nil {
		t.Fatal(err)
	}
	if members, publishers, err := st.Roles(ctx, "g1"); err != nil || len(members)+len(publishers) != 0 {
		t.Fatalf("a group made again kept roles: %v %v %v", members, publishers, err)
	}
	// What a delete that failed half way left (here: a session of a
	// principal that is gone) is swept by deleting again, which says
	// ErrNotFound.
	_, ghost, _ := NewToken()
	if err := st.CreateSession(ctx, Session{TokenHash: ghost, PrincipalID: "ghost", Expires: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeletePrincipal(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting a principal that is gone: %v, want ErrNotFound", err)
	}
	if _, err := st.Session(ctx, ghost); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the gone principal's session was not swept: %v", err)
	}
	// The id made again is another principal: the old sessions are not
	// its own.
	if err := st.CreatePrincipal(ctx, Principal{ID: "alice", Kind: User, Created: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	again, _ := st.Principal(ctx, "alice")
	old := Session{TokenHash: hashes[0], PrincipalID: "alice", Created: now.Add(-time.Minute), PrincipalCreated: now.Add(-time.Hour)}
	legacy := Session{TokenHash: hashes[0], PrincipalID: "alice", Created: now.Add(-time.Minute)}
	fresh := Session{TokenHash: hashes[0], PrincipalID: "alice", Created: now.Add(2 * time.Minute), PrincipalCreated: again.Created}
	if old.Of(again) || legacy.Of(again) || !fresh.Of(again) {
		t.Fatalf("Session.Of: old %v, legacy %v, fresh %v; want false, false, true", old.Of(again), legacy.Of(again), fresh.Of(again))
	}
	for _, err := range []error{st.DeletePrincipal(ctx, "a/b"), st.DeleteGroup(ctx, "a b"), st.SetSecret(ctx, "", "x")} {
		if !errors.Is(err, ErrInvalidID) {
			t.Fatalf("bad id: %v, want ErrInvalidID", err)
		}
	}
	want := []string{
		"principal+ alice user", "principal- alice",
		"role- g1 alice member", "role- g1 alice publisher", "role- g.2 alice member",
		"revoked " + hashes[1], "revoked " + hashes[0], "revoked " + hashes[2], // the expired one goes too
		"group- g1", "role- g1 bob member", "role- g1 d.1 publisher", "group+ g1 false",
		"revoked " + ghost, "principal+ alice user",
	}
	// Within one delete the order of its roles and sessions is not fixed.
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		events, _, at := rec.snapshot()
		got := describe(events[at:])
		if g, w := sorted(got), sorted(want); !slices.Equal(g, w) {
			return fmt.Errorf("events\n got %q\nwant %q", got, want)
		}
		return nil
	})
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
