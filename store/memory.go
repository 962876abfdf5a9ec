package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrInvalidRole: a Role other than Member or Publisher was passed to
// SetRole.
var ErrInvalidRole = fmt.Errorf("%w: role must be Member or Publisher", ErrInvalidID)

// Memory is a Store held in maps under one mutex: the fixture for unit
// tests of every package that needs a store. It meets the same contract
// tests as KV. All methods are goroutine-safe and never block on anything
// but the mutex.
type Memory struct {
	mu          sync.Mutex
	principals  map[string]Principal
	groups      map[string]Group
	roles       map[string]map[string]Role // gid -> id -> Member|Publisher bits
	sessions    map[string]Session
	watchers    map[*memWatcher]struct{}
	mqtt        memMQTTState // mqtt_memory.go
	unavailable bool
	closed      bool
	done        chan struct{} // closed by Close
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		principals: make(map[string]Principal),
		groups:     make(map[string]Group),
		roles:      make(map[string]map[string]Role),
		sessions:   make(map[string]Session),
		watchers:   make(map[*memWatcher]struct{}),
		done:       make(chan struct{}),
	}
}

// SetUnavailable makes every later call fail with ErrUnavailable (on=true)
// until it is called with on=false: fault injection for tests of callers
// that must fail closed. Running watches are not affected.
func (m *Memory) SetUnavailable(on bool) {
	m.mu.Lock()
	m.unavailable = on
	m.mu.Unlock()
}

// check returns the error every call gives while the store is down or
// closed. Caller holds m.mu.
func (m *Memory) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %w: %w", ErrUnavailable, err)
	}
	if m.closed {
		return fmt.Errorf("store: %w: closed", ErrUnavailable)
	}
	if m.unavailable {
		return fmt.Errorf("store: %w: injected fault", ErrUnavailable)
	}
	return nil
}

func (m *Memory) CreatePrincipal(ctx context.Context, p Principal) error {
	if !ValidID(p.ID) {
		return ErrInvalidID
	}
	if p.Created.IsZero() {
		p.Created = time.Now().UTC()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, ok := m.principals[p.ID]; ok {
		return ErrExists
	}
	m.principals[p.ID] = p
	m.emit(Event{Type: PrincipalPut, Principal: p.ID, Kind: p.Kind})
	return nil
}

func (m *Memory) Principal(ctx context.Context, id string) (Principal, error) {
	if !ValidID(id) {
		return Principal{}, ErrInvalidID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return Principal{}, err
	}
	p, ok := m.principals[id]
	if !ok {
		return Principal{}, ErrNotFound
	}
	return p, nil
}

func (m *Memory) CreateGroup(ctx context.Context, g Group) error {
	if !ValidID(g.ID) {
		return ErrInvalidID
	}
	if g.Created.IsZero() {
		g.Created = time.Now().UTC()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, ok := m.groups[g.ID]; ok {
		return ErrExists
	}
	m.groups[g.ID] = g
	m.emit(Event{Type: GroupPut, Group: g})
	return nil
}

func (m *Memory) Group(ctx context.Context, gid string) (Group, error) {
	if !ValidID(gid) {
		return Group{}, ErrInvalidID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return Group{}, err
	}
	g, ok := m.groups[gid]
	if !ok {
		return Group{}, ErrNotFound
	}
	return g, nil
}

func (m *Memory) SetRole(ctx context.Context, gid, id string, r Role, on bool) error {
	if !ValidID(gid) || !ValidID(id) {
		return ErrInvalidID
	}
	if r != Member && r != Publisher {
		return ErrInvalidRole
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, ok := m.groups[gid]; !ok {
		return fmt.Errorf("group %q: %w", gid, ErrNotFound)
	}
	if _, ok := m.principals[id]; !ok {
		return fmt.Errorf("principal %q: %w", id, ErrNotFound)
	}
	held := m.roles[gid][id]
	if on {
		if m.roles[gid] == nil {
			m.roles[gid] = make(map[string]Role)
		}
		m.roles[gid][id] = held | r
		m.emit(Event{Type: RoleSet, GroupID: gid, Principal: id, Role: r})
	} else {
		if held &^= r; held == 0 {
			delete(m.roles[gid], id)
		} else {
			m.roles[gid][id] = held
		}
		m.emit(Event{Type: RoleRemoved, GroupID: gid, Principal: id, Role: r})
	}
	return nil
}

func (m *Memory) Roles(ctx context.Context, gid string) (members, publishers []string, err error) {
	if !ValidID(gid) {
		return nil, nil, ErrInvalidID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return nil, nil, err
	}
	if _, ok := m.groups[gid]; !ok {
		return nil, nil, ErrNotFound
	}
	for id, r := range m.roles[gid] {
		if r&Member != 0 {
			members = append(members, id)
		}
		if r&Publisher != 0 {
			publishers = append(publishers, id)
		}
	}
	slices.Sort(members)
	slices.Sort(publishers)
	return members, publishers, nil
}

func (m *Memory) CreateSession(ctx context.Context, s Session) error {
	if !ValidID(s.TokenHash) || !ValidID(s.PrincipalID) {
		return ErrInvalidID
	}
	if s.Created.IsZero() {
		s.Created = time.Now().UTC()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, ok := m.sessions[s.TokenHash]; ok {
		return ErrExists
	}
	m.sessions[s.TokenHash] = s
	return nil
}

func (m *Memory) Session(ctx context.Context, tokenHash string) (Session, error) {
	if !ValidID(tokenHash) {
		return Session{}, ErrNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return Session{}, err
	}
	s, ok := m.sessions[tokenHash]
	if !ok {
		return Session{}, ErrNotFound
	}
	if s.Expired(time.Now()) {
		delete(m.sessions, tokenHash) // what the KV bucket's MaxAge does, sooner
		return Session{}, ErrNotFound
	}
	return s, nil
}

func (m *Memory) DeleteSession(ctx context.Context, tokenHash string) error {
	if !ValidID(tokenHash) {
		return ErrNotFound
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	if _, ok := m.sessions[tokenHash]; !ok {
		return ErrNotFound
	}
	delete(m.sessions, tokenHash)
	m.emit(Event{Type: SessionRevoked, TokenHash: tokenHash})
	return nil
}

// Close ends every running Watch (they return nil) and makes later calls
// fail with ErrUnavailable.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.done)
	}
	return nil
}

// ---------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------

// memWatcher is one running Watch: an unbounded queue filled under m.mu
// (so every watcher sees changes in store order) and drained by the
// Watch goroutine, which calls fn without holding any store lock.
type memWatcher struct {
	mu     sync.Mutex
	queue  []Event
	notify chan struct{} // cap 1: "queue is not empty"
}

// emit queues e for every watcher. Caller holds m.mu.
func (m *Memory) emit(e Event) {
	for w := range m.watchers {
		w.mu.Lock()
		w.queue = append(w.queue, e)
		w.mu.Unlock()
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
}

// Watch implements Store.Watch. It blocks until ctx is done or the store
// is closed, and then returns nil.
func (m *Memory) Watch(ctx context.Context, fn func(Event), ready func()) error {
	w := &memWatcher{notify: make(chan struct{}, 1)}
	m.mu.Lock()
	if err := m.check(ctx); err != nil {
		m.mu.Unlock()
		return err
	}
	initial := make([]Event, 0, len(m.groups))
	for _, g := range m.groups {
		initial = append(initial, Event{Type: GroupPut, Group: g})
	}
	for gid, ids := range m.roles {
		for id, r := range ids {
			for _, role := range [...]Role{Member, Publisher} {
				if r&role != 0 {
					initial = append(initial, Event{Type: RoleSet, GroupID: gid, Principal: id, Role: role})
				}
			}
		}
	}
	m.watchers[w] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.watchers, w)
		m.mu.Unlock()
	}()

	for _, e := range initial {
		fn(e)
	}
	if ready != nil {
		ready()
	}
	var batch []Event
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.done:
			return nil
		case <-w.notify:
		}
		w.mu.Lock()
		batch, w.queue = w.queue, batch[:0]
		w.mu.Unlock()
		for _, e := range batch {
			if ctx.Err() != nil {
				return nil
			}
			fn(e)
		}
	}
}
