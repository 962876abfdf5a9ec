package store

// Directory: the in-memory view of groups and roles that the hot paths
// read (an ACL check per MQTT packet, a member list per group message).
//
// Concurrency choice: one sync.RWMutex over plain maps, not atomic
// snapshots. A read is a read-lock plus one to three map lookups, held for
// nanoseconds, and allocates nothing. Atomic snapshots of the whole view
// would make every change copy every group (O(total) per SetRole), and
// per-group atomic pointers would still need a consistent principal->groups
// index for CanDirect. Changes are rare next to reads, so writers taking
// the lock briefly is the cheaper trade.
//
// The one value a read returns by reference is a group's member slice:
// it is copy-on-write (a change builds a new slice, readers keep the old
// one), so callers may use it after the lock is released but must never
// modify it.
//
// Freshness: the view is filled by Store.Watch. Writes made through the
// Directory are applied to the view as soon as the store accepts them
// (read-your-writes for this process); other processes' writes arrive
// through the watch, typically within milliseconds. If the watch breaks,
// the Directory keeps serving the last view, watches again, and swaps in
// the rebuilt view when the new watch is ready.
//
// Roles count only while their group exists (a GroupPut was seen): roles
// left behind by a deleted group grant nothing.
//
// Lock order: Directory.mu, then nothing. Revocation callbacks and the
// backing store are called without holding mu.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// startTimeout caps how long Start waits for the initial state.
const startTimeout = 10 * time.Second

// Directory keeps a fresh in-memory view of groups and roles over a Store,
// and is itself a Store: writes go to the backing store and, on success,
// into the view. Read methods (Members, IsMember, IsPublisher, GroupInfo,
// CanPublishGroup, CanDirect) are goroutine-safe, never block on the
// store and do not allocate. Store methods are goroutine-safe and may
// block on the backing store.
type Directory struct {
	st  Store
	log *slog.Logger

	mu      sync.RWMutex
	v       *view                      // live view; replaced whole at each watch's ready
	pending map[string][]*pendingWrite // in-flight local writes by event key
	// ahead: keys whose live value is a local write the watch has not
	// delivered yet, with that write's event type (see pendingWrite).
	ahead map[string]EventType

	revMu       sync.Mutex
	onRevoke    []func(tokenHash string)
	onPrincipal []func(e Event)
	onRewatch   []func()

	startOnce sync.Once
	ctx       context.Context // of the watch loop; cancelled by Close
	cancel    context.CancelFunc
	readyCh   chan struct{} // closed at the first ready
	readyOnce sync.Once
	loopDone  chan struct{} // closed when the watch loop returns
	lastErr   error         // last Watch error; under mu
	staging   *view         // view being rebuilt by the watch, or nil; under mu
}

var _ Store = (*Directory)(nil)

// NewDirectory returns a Directory over st. It is empty until Start.
func NewDirectory(st Store) *Directory {
	ctx, cancel := context.WithCancel(context.Background())
	return &Directory{
		st:       st,
		log:      slog.Default(),
		v:        newView(),
		pending:  make(map[string][]*pendingWrite),
		ahead:    make(map[string]EventType),
		ctx:      ctx,
		cancel:   cancel,
		readyCh:  make(chan struct{}),
		loopDone: make(chan struct{}),
	}
}

// SetLogger sets where watch failures are logged (default, and for nil:
// slog.Default(), as for every component). Call it before Start.
func (d *Directory) SetLogger(l *slog.Logger) {
	if l != nil {
		d.log = l
	}
}

// Start runs the watch in a goroutine and returns once the initial state
// is loaded, or with an error when ctx is done or startTimeout passes
// first. ctx bounds only the wait: the watch runs, and is retried after
// failures, until Close. Calling Start again just waits again.
func (d *Directory) Start(ctx context.Context) error {
	d.startOnce.Do(func() { go d.loop() })
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case <-d.readyCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("store: directory not ready: %w", errors.Join(ctx.Err(), d.watchErr()))
	case <-timer.C:
		return fmt.Errorf("store: directory not ready after %v: %w", startTimeout,
			errors.Join(ErrUnavailable, d.watchErr()))
	case <-d.loopDone:
		return fmt.Errorf("store: directory closed before ready: %w", ErrUnavailable)
	}
}

// Ready reports whether the initial state has been loaded.
func (d *Directory) Ready() bool {
	select {
	case <-d.readyCh:
		return true
	default:
		return false
	}
}

func (d *Directory) watchErr() error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.lastErr
}

// loop runs Store.Watch until Close, watching again after failures with
// capped exponential backoff.
func (d *Directory) loop() {
	defer close(d.loopDone)
	backoff := 50 * time.Millisecond
	for d.ctx.Err() == nil {
		d.mu.Lock()
		d.staging = newView()
		d.mu.Unlock()
		err := d.st.Watch(d.ctx, d.apply, d.ready)
		if d.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("watch ended")
		}
		d.mu.Lock()
		d.lastErr = err
		d.mu.Unlock()
		d.log.Warn("store: directory watch failed; watching again", "err", err, "in", backoff)
		select {
		case <-d.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// apply is the Watch callback.
func (d *Directory) apply(e Event) {
	switch e.Type {
	case SessionRevoked:
		d.revoked(e.TokenHash)
		return
	case PrincipalPut, PrincipalDeleted:
		d.principalChanged(e)
		return
	}
	d.mu.Lock()
	if len(d.pending) > 0 {
		for _, p := range d.pending[eventKey(e)] {
			if p.typ == e.Type {
				p.seenSame = true
			}
		}
	}
	if d.staging != nil {
		d.staging.apply(e, false)
		d.mu.Unlock()
		return
	}
	if len(d.ahead) > 0 {
		key := eventKey(e)
		if typ, ok := d.ahead[key]; ok {
			if typ != e.Type {
				// Older than the local write the view already holds.
				d.mu.Unlock()
				return
			}
			delete(d.ahead, key)
		}
	}
	d.v.apply(e, true)
	d.mu.Unlock()
}

// ready is the Watch ready callback: the rebuilt view goes live.
func (d *Directory) ready() {
	d.mu.Lock()
	d.staging.finish()
	d.v, d.staging, d.lastErr = d.staging, nil, nil
	// The rebuilt view holds every write the store had, and later ones
	// arrive as live events in order.
	clear(d.ahead)
	d.mu.Unlock()
	first := false
	d.readyOnce.Do(func() { close(d.readyCh); first = true })
	if !first {
		d.revMu.Lock()
		fns := d.onRewatch
		d.revMu.Unlock()
		for _, fn := range fns {
			fn()
		}
	}
}

// OnRewatch registers fn to be called each time the watch, broken, is
// back (not at the first start): the deletions and revocations made
// meanwhile were not reported (the watch reports live ones only), and
// fn can look for them. It must not block for long.
func (d *Directory) OnRewatch(fn func()) {
	d.revMu.Lock()
	d.onRewatch = append(d.onRewatch, fn)
	d.revMu.Unlock()
}

// OnRevoke registers fn to be called with the token hash of every revoked
// session: logouts by any process (through the watch) and DeleteSession
// calls on this Directory (at once). A hash may be reported more than
// once, so fn must be idempotent; it must not block for long. Call before
// Start to miss nothing.
func (d *Directory) OnRevoke(fn func(tokenHash string)) {
	d.revMu.Lock()
	d.onRevoke = append(d.onRevoke, fn)
	d.revMu.Unlock()
}

func (d *Directory) revoked(tokenHash string) {
	d.revMu.Lock()
	fns := d.onRevoke
	d.revMu.Unlock()
	for _, fn := range fns {
		fn(tokenHash)
	}
}

// OnPrincipal registers fn to be called with every PrincipalPut (a
// principal created or its secret changed) and PrincipalDeleted event:
// changes by any process (through the watch) and SetSecret and
// DeletePrincipal calls on this Directory (at once). An event may be
// reported more than once, so fn must be idempotent; it must not block
// for long. Call before Start to miss nothing.
func (d *Directory) OnPrincipal(fn func(e Event)) {
	d.revMu.Lock()
	d.onPrincipal = append(d.onPrincipal, fn)
	d.revMu.Unlock()
}

func (d *Directory) principalChanged(e Event) {
	d.revMu.Lock()
	fns := d.onPrincipal
	d.revMu.Unlock()
	for _, fn := range fns {
		fn(e)
	}
}

// ---------------------------------------------------------------------
// Hot-path reads
// ---------------------------------------------------------------------

// Members returns the members of gid, sorted, or nil. The slice is shared:
// never modify it. It stays valid (as the membership when it was read)
// after later changes.
func (d *Directory) Members(gid string) []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if g := d.v.groups[gid]; g != nil && g.known {
		return g.members
	}
	return nil
}

// IsMember reports whether id is a member of gid.
func (d *Directory) IsMember(gid, id string) bool {
	return d.role(gid, id)&Member != 0
}

// IsPublisher reports whether id is a publisher of gid.
func (d *Directory) IsPublisher(gid, id string) bool {
	return d.role(gid, id)&Publisher != 0
}

func (d *Directory) role(gid, id string) Role {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if g := d.v.groups[gid]; g != nil && g.known {
		return g.roles[id]
	}
	return 0
}

// MemberOf returns the groups id is a member of now, in no particular
// order: a new slice (a replay filters the journal with it).
func (d *Directory) MemberOf(id string) []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []string
	for gid, r := range d.v.byPrincipal[id] {
		if r&Member != 0 && d.v.groups[gid] != nil && d.v.groups[gid].known {
			out = append(out, gid)
		}
	}
	return out
}

// GroupInfo returns the group gid, if it exists.
func (d *Directory) GroupInfo(gid string) (Group, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if g := d.v.groups[gid]; g != nil && g.known {
		return g.info, true
	}
	return Group{}, false
}

// CanPublishGroup reports whether id may publish to group gid: it is a
// publisher, or a member and the group lets members publish.
func (d *Directory) CanPublishGroup(id, gid string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	g := d.v.groups[gid]
	if g == nil || !g.known {
		return false
	}
	r := g.roles[id]
	return r&Publisher != 0 || (r&Member != 0 && g.info.MembersCanPublish)
}

// CanDirect reports whether from may send a direct message to to: they
// are the same principal, or share a group (in any role).
func (d *Directory) CanDirect(from, to string) bool {
	if from == to {
		return true
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	a, b := d.v.byPrincipal[from], d.v.byPrincipal[to]
	if len(a) > len(b) {
		a, b = b, a
	}
	for gid := range a {
		if _, ok := b[gid]; ok {
			if g := d.v.groups[gid]; g != nil && g.known {
				return true
			}
		}
	}
	return false
}

// ---------------------------------------------------------------------
// Store: reads pass through, writes go through and into the view
// ---------------------------------------------------------------------

func (d *Directory) CreatePrincipal(ctx context.Context, p Principal) error {
	return d.st.CreatePrincipal(ctx, p)
}

func (d *Directory) Principal(ctx context.Context, id string) (Principal, error) {
	return d.st.Principal(ctx, id)
}

// Group reads the backing store; GroupInfo is the non-blocking view.
func (d *Directory) Group(ctx context.Context, gid string) (Group, error) {
	return d.st.Group(ctx, gid)
}

// Roles reads the backing store; Members and IsPublisher are the
// non-blocking view.
func (d *Directory) Roles(ctx context.Context, gid string) (members, publishers []string, err error) {
	return d.st.Roles(ctx, gid)
}

func (d *Directory) CreateSession(ctx context.Context, s Session) error {
	return d.st.CreateSession(ctx, s)
}

func (d *Directory) Session(ctx context.Context, tokenHash string) (Session, error) {
	return d.st.Session(ctx, tokenHash)
}

// Watch passes through to the backing store.
func (d *Directory) Watch(ctx context.Context, fn func(Event), ready func()) error {
	return d.st.Watch(ctx, fn, ready)
}

func (d *Directory) CreateGroup(ctx context.Context, g Group) error {
	if g.Created.IsZero() {
		g.Created = time.Now().UTC() // so the view and the store agree
	}
	return d.write(Event{Type: GroupPut, Group: g}, func() error { return d.st.CreateGroup(ctx, g) })
}

func (d *Directory) SetRole(ctx context.Context, gid, id string, r Role, on bool) error {
	e := Event{Type: RoleSet, GroupID: gid, Principal: id, Role: r}
	if !on {
		e.Type = RoleRemoved
	}
	return d.write(e, func() error { return d.st.SetRole(ctx, gid, id, r, on) })
}

// DeleteSession deletes the session and, on success, calls the OnRevoke
// callbacks at once (the watch reports it again later).
func (d *Directory) DeleteSession(ctx context.Context, tokenHash string) error {
	if err := d.st.DeleteSession(ctx, tokenHash); err != nil {
		return err
	}
	d.revoked(tokenHash)
	return nil
}

func (d *Directory) ListPrincipals(ctx context.Context, kind Kind, prefix, after string, limit int) ([]Principal, string, error) {
	return d.st.ListPrincipals(ctx, kind, prefix, after, limit)
}

// ListGroups pages the groups of the view (it holds every group): no
// read of the store, whose key list it would have to take whole.
func (d *Directory) ListGroups(ctx context.Context, prefix, after string, limit int) ([]Group, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	d.mu.RLock()
	ids := make([]string, 0, len(d.v.groups))
	for gid, g := range d.v.groups {
		if g.known && listable(gid, prefix, after) {
			ids = append(ids, gid)
		}
	}
	d.mu.RUnlock()
	page, next := pageOf(ids, prefix, after, limit)
	gs := make([]Group, 0, len(page))
	d.mu.RLock()
	for _, gid := range page {
		if g := d.v.groups[gid]; g != nil && g.known {
			gs = append(gs, g.info)
		}
	}
	d.mu.RUnlock()
	return gs, next, nil
}

func (d *Directory) PrincipalRoles(ctx context.Context, id string) (map[string]Role, error) {
	return d.st.PrincipalRoles(ctx, id)
}

func (d *Directory) Sessions(ctx context.Context, id string) ([]Session, error) {
	return d.st.Sessions(ctx, id)
}

// SetSecret changes the secret and, on success, calls the OnPrincipal
// callbacks at once (the watch reports it again later).
func (d *Directory) SetSecret(ctx context.Context, id, secretHash string) error {
	p, err := d.st.Principal(ctx, id)
	if err != nil {
		return err
	}
	if err := d.st.SetSecret(ctx, id, secretHash); err != nil {
		return err
	}
	d.principalChanged(Event{Type: PrincipalPut, Principal: id, Kind: p.Kind})
	return nil
}

// DeletePrincipal takes the principal's roles away through the view
// first (this process stops delivering to it at once), then deletes it
// in the store, which sweeps roles given meanwhile, its sessions and
// MQTT session records; then the OnPrincipal and OnRevoke callbacks are
// called at once.
func (d *Directory) DeletePrincipal(ctx context.Context, id string) error {
	if _, err := d.st.Principal(ctx, id); errors.Is(err, ErrNotFound) {
		return d.st.DeletePrincipal(ctx, id) // what a failed delete left is swept; ErrNotFound
	} else if err != nil {
		return err
	}
	roles, err := d.st.PrincipalRoles(ctx, id)
	if err != nil {
		return err
	}
	sessions, err := d.st.Sessions(ctx, id)
	if err != nil {
		return err
	}
	for gid, r := range roles {
		for _, role := range [...]Role{Member, Publisher} {
			if r&role == 0 {
				continue
			}
			if err := d.SetRole(ctx, gid, id, role, false); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
		}
	}
	if err := d.st.DeletePrincipal(ctx, id); err != nil {
		return err
	}
	d.principalChanged(Event{Type: PrincipalDeleted, Principal: id})
	for _, s := range sessions {
		d.revoked(s.TokenHash)
	}
	return nil
}

// DeleteGroup deletes the group and its roles; the view drops the group
// at once (its roles grant nothing without it).
func (d *Directory) DeleteGroup(ctx context.Context, gid string) error {
	return d.write(Event{Type: GroupDeleted, Group: Group{ID: gid}}, func() error { return d.st.DeleteGroup(ctx, gid) })
}

// Close stops the watch, waits for it, and closes the backing store.
func (d *Directory) Close() error {
	d.cancel()
	d.startOnce.Do(func() { close(d.loopDone) }) // never started: nothing to wait for
	<-d.loopDone
	return d.st.Close()
}

// pendingWrite is a local write in flight. The store reports every
// successful write as exactly one watch event (see Store.SetRole), and the
// watch delivers events in store order. So when the write returns:
//
//   - if the watch has already delivered an event of the same type for the
//     key during the write, that may be our own event, and any newer event
//     came after it: the view is at least as new as our write. Skip.
//   - if not, our event is still to come, with anything newer behind it:
//     applying our write now is read-your-writes. Until the watch
//     delivers an event of the write's type for the key (ours, in the
//     store's order), events of the other type for it are older than
//     ours and are skipped, so the view never steps back behind the write.
//
// Either way the view converges to the store's order; a late local apply
// can never undo a newer change made by another process. (When another
// process rewrites the same key with the same value concurrently, the
// first case may skip too early and this process sees its write a few
// milliseconds late; or its event may be taken for ours, and an older
// change can show briefly until ours arrives.)
type pendingWrite struct {
	typ      EventType
	seenSame bool
}

// write runs do and, if it succeeds, applies e to the view.
func (d *Directory) write(e Event, do func() error) error {
	key := eventKey(e)
	p := &pendingWrite{typ: e.Type}
	d.mu.Lock()
	d.pending[key] = append(d.pending[key], p)
	d.mu.Unlock()

	err := do()

	d.mu.Lock()
	if err == nil && !p.seenSame {
		// If a re-watch is replaying, its view may predate this write and
		// replace d.v without it; the write's own event then follows the
		// replay as a live change.
		d.v.apply(e, true)
		d.ahead[key] = e.Type
	}
	ps := slices.DeleteFunc(d.pending[key], func(q *pendingWrite) bool { return q == p })
	if len(ps) == 0 {
		delete(d.pending, key)
	} else {
		d.pending[key] = ps
	}
	d.mu.Unlock()
	return err
}

// eventKey names what an event changes, for pendingWrite.
func eventKey(e Event) string {
	switch e.Type {
	case GroupPut, GroupDeleted:
		return "g\x00" + e.Group.ID
	case RoleSet, RoleRemoved:
		return "r\x00" + e.GroupID + "\x00" + e.Principal + "\x00" + e.Role.String()
	}
	return ""
}

// ---------------------------------------------------------------------
// view
// ---------------------------------------------------------------------

// view is one consistent state of groups and roles.
type view struct {
	groups map[string]*dirGroup
	// byPrincipal: id -> gid -> roles held, for CanDirect.
	byPrincipal map[string]map[string]Role
}

type dirGroup struct {
	info  Group
	known bool            // a GroupPut was seen (roles may arrive first)
	roles map[string]Role // id -> Member|Publisher bits
	// members is sorted and copy-on-write: replaced, never modified, once
	// the view is live.
	members []string
}

func newView() *view {
	return &view{groups: make(map[string]*dirGroup), byPrincipal: make(map[string]map[string]Role)}
}

func (v *view) group(gid string) *dirGroup {
	g := v.groups[gid]
	if g == nil {
		g = &dirGroup{roles: make(map[string]Role)}
		v.groups[gid] = g
	}
	return g
}

// apply changes the view by e. live: the view is being read, so members
// slices are replaced copy-on-write; otherwise (a replay) they are left to
// finish, which sorts each once instead of once per member.
func (v *view) apply(e Event, live bool) {
	switch e.Type {
	case GroupPut:
		g := v.group(e.Group.ID)
		g.info, g.known = e.Group, true
	case GroupDeleted:
		gid := e.Group.ID
		g := v.groups[gid]
		if g == nil {
			return
		}
		for id := range g.roles {
			v.setPrincipal(id, gid, 0)
		}
		delete(v.groups, gid)
	case RoleSet:
		if e.Role != Member && e.Role != Publisher {
			return
		}
		g := v.group(e.GroupID)
		old := g.roles[e.Principal]
		if old&e.Role != 0 {
			return
		}
		g.roles[e.Principal] = old | e.Role
		v.setPrincipal(e.Principal, e.GroupID, old|e.Role)
		if e.Role == Member && live {
			i, _ := slices.BinarySearch(g.members, e.Principal)
			m := make([]string, 0, len(g.members)+1)
			m = append(append(append(m, g.members[:i]...), e.Principal), g.members[i:]...)
			g.members = m
		}
	case RoleRemoved:
		g := v.groups[e.GroupID]
		if g == nil {
			return
		}
		old := g.roles[e.Principal]
		if old&e.Role == 0 {
			return
		}
		now := old &^ e.Role
		if now == 0 {
			delete(g.roles, e.Principal)
		} else {
			g.roles[e.Principal] = now
		}
		v.setPrincipal(e.Principal, e.GroupID, now)
		if e.Role == Member && live {
			if i, ok := slices.BinarySearch(g.members, e.Principal); ok {
				m := make([]string, 0, len(g.members)-1)
				g.members = append(append(m, g.members[:i]...), g.members[i+1:]...)
				if len(g.members) == 0 {
					g.members = nil
				}
			}
		}
		if !g.known && len(g.roles) == 0 {
			delete(v.groups, e.GroupID)
		}
	}
}

func (v *view) setPrincipal(id, gid string, r Role) {
	m := v.byPrincipal[id]
	if r == 0 {
		delete(m, gid)
		if len(m) == 0 {
			delete(v.byPrincipal, id)
		}
		return
	}
	if m == nil {
		m = make(map[string]Role)
		v.byPrincipal[id] = m
	}
	m[gid] = r
}

// finish builds the members slices after a replay.
func (v *view) finish() {
	for _, g := range v.groups {
		g.members = nil
		for id, r := range g.roles {
			if r&Member != 0 {
				g.members = append(g.members, id)
			}
		}
		slices.Sort(g.members)
	}
}
