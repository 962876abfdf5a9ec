package store

// The admin side of KV (Admin): lists, deletes and secret changes.
//
// Login sessions are indexed by principal in their bucket: beside
// <tokenHash> (the session) each login writes <id>.<tokenHash> (empty),
// so a principal's sessions are the subject filter "<id>.*". Sessions
// written before the index existed are not listed (they expire within
// the session lifetime).

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// keysOf lists the keys of kv that match filter (a subject filter),
// complete or with an error: a headers-only watcher over them, whose
// server sends the last message of each matching key, then a nil marker.
func (k *KV) keysOf(ctx context.Context, kv jetstream.KeyValue, what, filter string) ([]string, error) {
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	w, err := kv.WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return nil, unavailable("list "+what, err)
	}
	defer w.Stop()
	var keys []string
	for {
		select {
		case <-ctx.Done():
			return nil, unavailable("list "+what, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, unavailable("list "+what, jetstream.ErrConnectionClosed)
			}
			if e == nil {
				slices.Sort(keys)
				return slices.Compact(keys), nil
			}
			keys = append(keys, e.Key())
		}
	}
}

// listIDs returns the listable ids of a bucket whose keys are single
// encoded ids, sorted.
func (k *KV) listIDs(ctx context.Context, kv jetstream.KeyValue, what, prefix, after string) ([]string, error) {
	keys, err := k.keysOf(ctx, kv, what, "*")
	if err != nil {
		return nil, err
	}
	ids := keys[:0]
	for _, key := range keys {
		if id := decodeID(key); ValidID(id) && listable(id, prefix, after) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // '=' and '.' sort differently
	return ids, nil
}

func (k *KV) ListPrincipals(ctx context.Context, kind Kind, prefix, after string, limit int) ([]Principal, string, error) {
	ids, err := k.listIDs(ctx, k.principals, "principals", prefix, after)
	if err != nil {
		return nil, "", err
	}
	limit = listLimit(limit)
	var ps []Principal
	for i, id := range ids {
		p, err := k.Principal(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound): // deleted since listed
		case err != nil:
			return nil, "", err
		case kind == "" || p.Kind == kind:
			ps = append(ps, p)
		}
		if last := i == len(ids)-1; !last && (len(ps) == limit || i+1 == k.listScan) {
			return ps, id, nil
		}
	}
	return ps, "", nil
}

func (k *KV) ListGroups(ctx context.Context, prefix, after string, limit int) ([]Group, string, error) {
	ids, err := k.listIDs(ctx, k.groups, "groups", prefix, after)
	if err != nil {
		return nil, "", err
	}
	page, next := pageOf(ids, prefix, after, limit)
	gs := make([]Group, 0, len(page))
	for _, gid := range page {
		g, err := k.Group(ctx, gid)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since listed
		}
		if err != nil {
			return nil, "", err
		}
		gs = append(gs, g)
	}
	return gs, next, nil
}

func (k *KV) PrincipalRoles(ctx context.Context, id string) (map[string]Role, error) {
	if !ValidID(id) {
		return nil, ErrInvalidID
	}
	keys, err := k.keysOf(ctx, k.roles, "roles", "*.*."+encodeID(id))
	if err != nil {
		return nil, err
	}
	roles := make(map[string]Role)
	for _, key := range keys {
		if gid, _, r, ok := parseRoleKey(key); ok {
			roles[gid] |= r
		}
	}
	return roles, nil
}

// sessionIndexKey is the index entry of a login session.
func sessionIndexKey(id, tokenHash string) string { return encodeID(id) + "." + encodeID(tokenHash) }

// sessionHashes lists the token hashes the index holds for id.
func (k *KV) sessionHashes(ctx context.Context, id string) ([]string, error) {
	keys, err := k.keysOf(ctx, k.sessions, "sessions", encodeID(id)+".*")
	if err != nil {
		return nil, err
	}
	hashes := make([]string, 0, len(keys))
	for _, key := range keys {
		if _, h, ok := strings.Cut(key, "."); ok {
			hashes = append(hashes, decodeID(h))
		}
	}
	return hashes, nil
}

func (k *KV) Sessions(ctx context.Context, id string) ([]Session, error) {
	if !ValidID(id) {
		return nil, ErrInvalidID
	}
	hashes, err := k.sessionHashes(ctx, id)
	if err != nil {
		return nil, err
	}
	var ss []Session
	for _, h := range hashes {
		s, err := k.Session(ctx, h)
		switch {
		case errors.Is(err, ErrNotFound): // expired or revoked
		case err != nil:
			return nil, err
		case s.PrincipalID == id:
			ss = append(ss, s)
		}
	}
	slices.SortFunc(ss, func(a, b Session) int {
		return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.TokenHash, b.TokenHash))
	})
	return ss, nil
}

// maxSecretAttempts bounds SetSecret's compare-and-set retries.
const maxSecretAttempts = 5

func (k *KV) SetSecret(ctx context.Context, id, secretHash string) error {
	if !ValidID(id) {
		return ErrInvalidID
	}
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	key := encodeID(id)
	for attempt := 0; ; attempt++ {
		e, err := k.principals.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return unavailable("get principal", err)
		}
		var p Principal
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			return errors.Join(errors.New("store: corrupt principal "+id), err)
		}
		p.SecretHash = secretHash
		data, _ := json.Marshal(p)
		_, err = k.principals.Update(ctx, key, data, e.Revision())
		if err == nil {
			return nil
		}
		if !isWrongLastSeq(err) || attempt+1 == maxSecretAttempts {
			return unavailable("update principal", err)
		}
	}
}

func (k *KV) DeletePrincipal(ctx context.Context, id string) error {
	if !ValidID(id) {
		return ErrInvalidID
	}
	_, gone := k.Principal(ctx, id)
	if gone != nil && !errors.Is(gone, ErrNotFound) {
		return gone
	}
	// The principal first: from here no login or CONNECT succeeds for
	// it. A SetRole that checked the principal just before may still
	// write a role after the sweep below; it grants nothing to a
	// principal that does not exist, and the id made again is another
	// principal (Session.Of). A principal already gone (a delete that
	// failed half way) gets the sweep again, and ErrNotFound.
	if gone == nil {
		if err := k.del(ctx, k.principals, "principal", encodeID(id)); err != nil {
			return err
		}
	}
	if err := k.sweep(ctx, id); err != nil {
		return err
	}
	return gone
}

// sweep removes what a deleted principal leaves: its roles, login
// sessions and MQTT session records.
func (k *KV) sweep(ctx context.Context, id string) error {
	roles, err := k.PrincipalRoles(ctx, id)
	if err != nil {
		return err
	}
	for gid, r := range roles {
		for _, role := range [...]Role{Member, Publisher} {
			if r&role != 0 {
				if err := k.del(ctx, k.roles, "role", roleKey(gid, id, role)); err != nil {
					return err
				}
			}
		}
	}
	hashes, err := k.sessionHashes(ctx, id)
	if err != nil {
		return err
	}
	for _, h := range hashes {
		if err := k.del(ctx, k.sessions, "session", encodeID(h)); err != nil {
			return err
		}
		if err := k.del(ctx, k.sessions, "session index", sessionIndexKey(id, h)); err != nil {
			return err
		}
	}
	records, err := k.keysOf(ctx, k.mqtt, "mqtt sessions", "s."+encodeID(id)+".*")
	if err != nil {
		return err
	}
	for _, key := range records {
		pctx, cancel, err := k.op(ctx)
		if err != nil {
			return err
		}
		err = k.mqtt.Purge(pctx, key, jetstream.PurgeTTL(mqttMarkerTTL))
		cancel()
		k.cache.drop(key)
		if err != nil {
			return unavailable("delete mqtt session", err)
		}
	}
	return nil
}

func (k *KV) DeleteGroup(ctx context.Context, gid string) error {
	if !ValidID(gid) {
		return ErrInvalidID
	}
	if _, err := k.Group(ctx, gid); err != nil {
		return err
	}
	if err := k.del(ctx, k.groups, "group", encodeID(gid)); err != nil {
		return err
	}
	keys, err := k.keysOf(ctx, k.roles, "roles", encodeID(gid)+".>")
	if err != nil {
		return err
	}
	for _, key := range keys {
		if err := k.del(ctx, k.roles, "role", key); err != nil {
			return err
		}
	}
	return nil
}

// del deletes key, leaving the marker watchers see.
func (k *KV) del(ctx context.Context, kv jetstream.KeyValue, what, key string) error {
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if err := kv.Delete(ctx, key); err != nil {
		return unavailable("delete "+what, err)
	}
	return nil
}

// indexSession writes the index entry of a new session.
func (k *KV) indexSession(ctx context.Context, s Session) error {
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := k.sessions.Put(ctx, sessionIndexKey(s.PrincipalID, s.TokenHash), nil); err != nil {
		return unavailable("index session", err)
	}
	return nil
}
