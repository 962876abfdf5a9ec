package store

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"time"
)

func (m *Memory) ListPrincipals(ctx context.Context, kind Kind, prefix, after string, limit int) ([]Principal, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return nil, "", err
	}
	var ids []string
	for id, p := range m.principals {
		if kind == "" || p.Kind == kind {
			ids = append(ids, id)
		}
	}
	page, next := pageOf(ids, prefix, after, limit)
	ps := make([]Principal, len(page))
	for i, id := range page {
		ps[i] = m.principals[id]
	}
	return ps, next, nil
}

func (m *Memory) ListGroups(ctx context.Context, prefix, after string, limit int) ([]Group, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return nil, "", err
	}
	page, next := pageOf(slices.Collect(maps.Keys(m.groups)), prefix, after, limit)
	gs := make([]Group, len(page))
	for i, gid := range page {
		gs[i] = m.groups[gid]
	}
	return gs, next, nil
}

func (m *Memory) PrincipalRoles(ctx context.Context, id string) (map[string]Role, error) {
	if !ValidID(id) {
		return nil, ErrInvalidID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	roles := make(map[string]Role)
	for gid, ids := range m.roles {
		if r := ids[id]; r != 0 {
			roles[gid] = r
		}
	}
	return roles, nil
}

func (m *Memory) Sessions(ctx context.Context, id string) ([]Session, error) {
	if !ValidID(id) {
		return nil, ErrInvalidID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return nil, err
	}
	return m.sessionsOfLocked(id, time.Now()), nil
}

// sessionsOfLocked lists id's unexpired sessions, oldest first. m.mu held.
func (m *Memory) sessionsOfLocked(id string, now time.Time) []Session {
	var ss []Session
	for _, s := range m.sessions {
		if s.PrincipalID == id && !s.Expired(now) {
			ss = append(ss, s)
		}
	}
	slices.SortFunc(ss, func(a, b Session) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.TokenHash, b.TokenHash))
	})
	return ss
}

func (m *Memory) SetSecret(ctx context.Context, id, secretHash string) error {
	if !ValidID(id) {
		return ErrInvalidID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	p, ok := m.principals[id]
	if !ok {
		return ErrNotFound
	}
	p.SecretHash = secretHash
	m.principals[id] = p
	m.emit(Event{Type: PrincipalPut, Principal: id, Kind: p.Kind})
	return nil
}

func (m *Memory) DeletePrincipal(ctx context.Context, id string) error {
	if !ValidID(id) {
		return ErrInvalidID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	var gone error
	if _, ok := m.principals[id]; ok {
		delete(m.principals, id)
		m.emit(Event{Type: PrincipalDeleted, Principal: id})
	} else {
		gone = ErrNotFound // swept all the same, as KV does
	}
	for gid, ids := range m.roles {
		m.dropRolesLocked(gid, id, ids[id])
	}
	for _, s := range m.sessionsOfLocked(id, time.Time{}) {
		delete(m.sessions, s.TokenHash)
		m.emit(Event{Type: SessionRevoked, TokenHash: s.TokenHash})
	}
	for k := range m.mqtt.records {
		if k.principal == id {
			delete(m.mqtt.records, k)
		}
	}
	return gone
}

// dropRolesLocked removes the roles r of id in gid, an event each.
// m.mu held.
func (m *Memory) dropRolesLocked(gid, id string, r Role) {
	if r == 0 {
		return
	}
	delete(m.roles[gid], id)
	for _, role := range [...]Role{Member, Publisher} {
		if r&role != 0 {
			m.emit(Event{Type: RoleRemoved, GroupID: gid, Principal: id, Role: role})
		}
	}
}

func (m *Memory) DeleteGroup(ctx context.Context, gid string) error {
	if !ValidID(gid) {
		return ErrInvalidID
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(ctx); err != nil {
		return err
	}
	g, ok := m.groups[gid]
	if !ok {
		return ErrNotFound
	}
	delete(m.groups, gid)
	m.emit(Event{Type: GroupDeleted, Group: Group{ID: g.ID}})
	for id, r := range m.roles[gid] {
		m.dropRolesLocked(gid, id, r)
	}
	delete(m.roles, gid)
	return nil
}
