package store

// KV: the Store on NATS JetStream key-value buckets.
//
// Buckets (prefix KVConfig.Cluster, default "pushring"):
//
//	pushring_principals  key <id>                  value Principal (JSON)
//	pushring_groups      key <gid>                 value Group (JSON)
//	pushring_roles       key <gid>.m.<id>          member        value roleRecord (JSON)
//	                     key <gid>.p.<id>          publisher
//	pushring_sessions    key <tokenHash>           value Session (JSON); bucket MaxAge
//	                     key <id>.<tokenHash>      empty: the index of id's sessions (kv_admin.go)
//	pushring_mqtt        MQTT session records (mqtt.go)
//
// and the stream CLAIMS_pushring of MQTT claim notices (mqtt_notice.go).
//
// Key encoding: '.' separates tokens in KV keys (they are NATS subjects),
// but ids may contain '.'. Ids never contain '=' (ValidID), and '=' is a
// legal key character, so every '.' of an id is written as '='. The map is
// a bijection between valid ids and single key tokens: "a.b" <-> "a=b".
// Role keys are therefore always exactly three tokens, and the roles of
// one group are the subject filter "<gid>.>", which the server evaluates:
// Roles(gid) never reads other groups' keys.
//
// Deleted roles and sessions leave a delete marker (history 1), which is
// what watchers see as RoleRemoved / SessionRevoked. Markers of removed
// roles stay until the bucket is compacted (kv.PurgeDeletes); expired
// sessions vanish through the bucket's MaxAge without any marker. A role's
// "since" is the time of its last SetRole(on=true): re-setting a held role
// rewrites it (one watch event per SetRole, as the contract requires).

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/internal/natsauth"
)

// KVConfig configures KV. Zero fields take the DefaultKVConfig values.
type KVConfig struct {
	// Cluster prefixes the bucket names ("<Cluster>_principals", ...), so
	// several pushring clusters can share one NATS. [A-Za-z0-9_-]+.
	// Default "pushring".
	Cluster string
	// Replicas of every bucket: 1 on one server, 3 on a NATS cluster.
	// Default 1.
	Replicas int
	// SessionMaxAge is the sessions bucket's MaxAge: a session record is
	// purged this long after it was written, expired or not. It must be at
	// least the longest session lifetime the API issues. Default 7 days.
	SessionMaxAge time.Duration
	// Timeout bounds every store call (on top of the caller's ctx).
	// Default 5s.
	Timeout time.Duration
	// MQTTSessionExpiry is the TTL every write of an MQTT session record
	// carries: a record vanishes this long after its last write, so a
	// holder rewrites it at least every MQTTSessionExpiry/4. Set it to
	// the router's SessionExpiry (how long an offline persistent session
	// is kept). At least 1 s; a fraction of a second is rounded up
	// (JetStream keeps per-message TTLs in whole seconds). Default 24 h,
	// the router's default.
	MQTTSessionExpiry time.Duration
	// Logger receives the failures and refusals of MQTT session record
	// calls, rate limited. Nil: slog.Default().
	Logger *slog.Logger
	// Registerer gets the pushring_mqtt_session_records_* metrics. Nil
	// (the default): not registered.
	Registerer prometheus.Registerer
}

// DefaultKVConfig returns the defaults.
func DefaultKVConfig() KVConfig {
	return KVConfig{
		Cluster:       "pushring",
		Replicas:      1,
		SessionMaxAge: 7 * 24 * time.Hour,
		Timeout:       5 * time.Second,

		MQTTSessionExpiry: 24 * time.Hour,
	}
}

// ErrInvalidConfig is matched by every error NewKV returns for a KVConfig
// it cannot run with; the error's text names the field.
var ErrInvalidConfig = errors.New("store: invalid config")

// check makes the errors that match ErrInvalidConfig.
var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "store"}

// Validate reports the error NewKV would return for c before it touches
// JetStream: nil if NewKV can run with it.
func (c KVConfig) Validate() error { return c.withDefaults().validate() }

// withDefaults returns c with every zero field set to its default.
func (c KVConfig) withDefaults() KVConfig {
	d := DefaultKVConfig()
	c.Cluster = cmp.Or(c.Cluster, d.Cluster)
	c.Replicas = cmp.Or(c.Replicas, d.Replicas)
	c.SessionMaxAge = cmp.Or(c.SessionMaxAge, d.SessionMaxAge)
	c.Timeout = cmp.Or(c.Timeout, d.Timeout)
	c.MQTTSessionExpiry = cmp.Or(c.MQTTSessionExpiry, d.MQTTSessionExpiry)
	if r := c.MQTTSessionExpiry % time.Second; r > 0 && c.MQTTSessionExpiry > time.Second {
		c.MQTTSessionExpiry += time.Second - r
	}
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

// maxReplicas is the most replicas JetStream keeps of a stream.
const maxReplicas = 5

// validate checks a KVConfig that went through withDefaults.
func (c KVConfig) validate() error {
	return configerr.First(
		check.If(!natsauth.ValidCluster(c.Cluster),
			"Cluster %q must be 1 to 200 of A-Z, a-z, 0-9, '_' and '-' (it prefixes the bucket names)", c.Cluster),
		check.If(c.Replicas < 1 || c.Replicas > maxReplicas, "Replicas must be 1 to %d (got %d)", maxReplicas, c.Replicas),
		configerr.Positive(check, "SessionMaxAge", c.SessionMaxAge),
		configerr.Positive(check, "Timeout", c.Timeout),
		check.If(c.MQTTSessionExpiry < time.Second, "MQTTSessionExpiry must be at least 1s (got %v)", c.MQTTSessionExpiry),
	)
}

// KV is the Store on JetStream key-value buckets. It does not own the NATS
// connection: Close stops its watches, and the caller closes the
// connection afterwards. All methods are goroutine-safe; every method but
// Watch returns within KVConfig.Timeout.
type KV struct {
	cfg        KVConfig
	principals jetstream.KeyValue
	groups     jetstream.KeyValue
	roles      jetstream.KeyValue
	sessions   jetstream.KeyValue
	mqtt       jetstream.KeyValue

	js      jetstream.JetStream
	mqttPre string // subject prefix of the mqtt bucket's keys
	// claimsStream is the stream of the claim notices, notices their
	// writer (mqtt_notice.go).
	claimsStream string
	notices      *noticer
	mqttM        *mqttMetrics
	mqttL        mqttLog
	cache        mqttCache
	gens         genClock

	// listScan is MaxListScan (tests lower it).
	listScan int

	closeOnce sync.Once
	done      chan struct{} // closed by Close
}

var _ Store = (*KV)(nil)

// NewKV opens the buckets, creating (or updating the configuration of)
// any that are missing. It fails with ErrUnavailable if JetStream does
// not answer within cfg.Timeout.
func NewKV(ctx context.Context, js jetstream.JetStream, cfg KVConfig) (*KV, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newMQTTMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	k := &KV{cfg: cfg, done: make(chan struct{}), js: js, mqttM: m, listScan: MaxListScan}
	k.mqttL.log = cfg.Logger.With("component", "store")
	k.mqttPre = "$KV." + cfg.Cluster + "_mqtt."
	for _, b := range []struct {
		kv     *jetstream.KeyValue
		name   string
		desc   string
		maxAge time.Duration
		marker time.Duration // LimitMarkerTTL: per-key TTLs allowed
		// history is the values kept per key. A watch is an ordered
		// consumer, and a value replaced before the consumer reached it
		// is skipped, so one write would no longer be one event (see
		// Store.SetRole). Groups and roles keep the most JetStream
		// allows: a watcher then misses an event only when one key is
		// written 64 times faster than it reads.
		history uint8
	}{
		{&k.principals, "principals", "pushring users and devices", 0, 0, 1},
		{&k.groups, "groups", "pushring groups", 0, 0, jetstream.KeyValueMaxHistory},
		{&k.roles, "roles", "pushring group roles: <gid>.m.<id>, <gid>.p.<id>", 0, 0, jetstream.KeyValueMaxHistory},
		{&k.sessions, "sessions", "pushring login sessions by token hash", cfg.SessionMaxAge, 0, 1},
		{&k.mqtt, "mqtt", "pushring MQTT sessions: s.<principal>.<client>", 0, mqttMarkerTTL, 1},
	} {
		octx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		kv, err := js.CreateOrUpdateKeyValue(octx, jetstream.KeyValueConfig{
			Bucket:         cfg.Cluster + "_" + b.name,
			Description:    b.desc,
			History:        b.history,
			TTL:            b.maxAge, // the stream's MaxAge
			LimitMarkerTTL: b.marker,
			Storage:        jetstream.FileStorage,
			Replicas:       cfg.Replicas,
		})
		cancel()
		if err != nil {
			return nil, unavailable("open bucket "+b.name, err)
		}
		*b.kv = kv
	}
	if err := k.openClaims(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// unavailable wraps a NATS error that is not an answer about the data
// (timeout, no responders, closed connection, server-side API error) as
// ErrUnavailable, so callers fail closed; the NATS error stays reachable
// through errors.Is/As.
func unavailable(op string, err error) error {
	return fmt.Errorf("store: %s: %w: %w", op, ErrUnavailable, err)
}

// encodeID maps an id to one KV key token ('.' -> '='); see the file
// comment.
func encodeID(id string) string { return strings.ReplaceAll(id, ".", "=") }

func decodeID(tok string) string { return strings.ReplaceAll(tok, "=", ".") }

func roleKey(gid, id string, r Role) string {
	kind := "m"
	if r == Publisher {
		kind = "p"
	}
	return encodeID(gid) + "." + kind + "." + encodeID(id)
}

// parseRoleKey reverses roleKey.
func parseRoleKey(key string) (gid, id string, r Role, ok bool) {
	g, rest, ok1 := strings.Cut(key, ".")
	kind, i, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 {
		return "", "", 0, false
	}
	switch kind {
	case "m":
		r = Member
	case "p":
		r = Publisher
	default:
		return "", "", 0, false
	}
	if strings.Contains(i, ".") {
		return "", "", 0, false
	}
	gid, id = decodeID(g), decodeID(i)
	if !ValidID(gid) || !ValidID(id) {
		return "", "", 0, false
	}
	return gid, id, r, true
}

// roleRecord is the value of a role key.
type roleRecord struct {
	Since time.Time `json:"since"`
}

// op returns the context of one call: ctx bounded by cfg.Timeout.
func (k *KV) op(ctx context.Context) (context.Context, context.CancelFunc, error) {
	select {
	case <-k.done:
		return nil, nil, fmt.Errorf("store: %w: closed", ErrUnavailable)
	default:
	}
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
	return ctx, cancel, nil
}

// create stores v at key unless the key holds a value (ErrExists).
func (k *KV) create(ctx context.Context, kv jetstream.KeyValue, what, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: %s: %w", what, err)
	}
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := kv.Create(ctx, key, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return ErrExists
		}
		return unavailable("create "+what, err)
	}
	return nil
}

// get loads key into v; ErrNotFound if it has no value.
func (k *KV) get(ctx context.Context, kv jetstream.KeyValue, what, key string, v any) error {
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	e, err := kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return ErrNotFound
		}
		return unavailable("get "+what, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return fmt.Errorf("store: corrupt %s %q: %w", what, key, err)
	}
	return nil
}

func (k *KV) CreatePrincipal(ctx context.Context, p Principal) error {
	if !ValidID(p.ID) {
		return ErrInvalidID
	}
	if p.Created.IsZero() {
		p.Created = time.Now().UTC()
	}
	return k.create(ctx, k.principals, "principal", encodeID(p.ID), p)
}

func (k *KV) Principal(ctx context.Context, id string) (Principal, error) {
	if !ValidID(id) {
		return Principal{}, ErrInvalidID
	}
	var p Principal
	if err := k.get(ctx, k.principals, "principal", encodeID(id), &p); err != nil {
		return Principal{}, err
	}
	return p, nil
}

func (k *KV) CreateGroup(ctx context.Context, g Group) error {
	if !ValidID(g.ID) {
		return ErrInvalidID
	}
	if g.Created.IsZero() {
		g.Created = time.Now().UTC()
	}
	return k.create(ctx, k.groups, "group", encodeID(g.ID), g)
}

func (k *KV) Group(ctx context.Context, gid string) (Group, error) {
	if !ValidID(gid) {
		return Group{}, ErrInvalidID
	}
	var g Group
	if err := k.get(ctx, k.groups, "group", encodeID(gid), &g); err != nil {
		return Group{}, err
	}
	return g, nil
}

// exists reports whether key has a value, without decoding it.
func (k *KV) exists(ctx context.Context, kv jetstream.KeyValue, what, key string) error {
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := kv.Get(ctx, key); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("%s %q: %w", what, decodeID(key), ErrNotFound)
		}
		return unavailable("get "+what, err)
	}
	return nil
}

func (k *KV) SetRole(ctx context.Context, gid, id string, r Role, on bool) error {
	if !ValidID(gid) || !ValidID(id) {
		return ErrInvalidID
	}
	if r != Member && r != Publisher {
		return ErrInvalidRole
	}
	if err := k.exists(ctx, k.groups, "group", encodeID(gid)); err != nil {
		return err
	}
	if err := k.exists(ctx, k.principals, "principal", encodeID(id)); err != nil {
		return err
	}
	key := roleKey(gid, id, r)
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	// Always one write, even when nothing changes: the Store contract
	// promises watchers one event per SetRole.
	if on {
		data, _ := json.Marshal(roleRecord{Since: time.Now().UTC()})
		if _, err := k.roles.Put(ctx, key, data); err != nil {
			return unavailable("put role", err)
		}
		return nil
	}
	if err := k.roles.Delete(ctx, key); err != nil {
		return unavailable("delete role", err)
	}
	return nil
}

func (k *KV) Roles(ctx context.Context, gid string) (members, publishers []string, err error) {
	if !ValidID(gid) {
		return nil, nil, ErrInvalidID
	}
	if err := k.exists(ctx, k.groups, "group", encodeID(gid)); err != nil {
		return nil, nil, err
	}
	keys, err := k.keysOf(ctx, k.roles, "roles", encodeID(gid)+".>")
	if err != nil {
		return nil, nil, err
	}
	for _, key := range keys {
		_, id, r, ok := parseRoleKey(key)
		switch {
		case !ok:
		case r == Member:
			members = append(members, id)
		case r == Publisher:
			publishers = append(publishers, id)
		}
	}
	slices.Sort(members)
	slices.Sort(publishers)
	return members, publishers, nil
}

func (k *KV) CreateSession(ctx context.Context, s Session) error {
	if !ValidID(s.TokenHash) || !ValidID(s.PrincipalID) {
		return ErrInvalidID
	}
	if s.Created.IsZero() {
		s.Created = time.Now().UTC()
	}
	if err := k.create(ctx, k.sessions, "session", encodeID(s.TokenHash), s); err != nil {
		return err
	}
	return k.indexSession(ctx, s)
}

func (k *KV) Session(ctx context.Context, tokenHash string) (Session, error) {
	if !ValidID(tokenHash) {
		return Session{}, ErrNotFound
	}
	var s Session
	if err := k.get(ctx, k.sessions, "session", encodeID(tokenHash), &s); err != nil {
		return Session{}, err
	}
	if s.Expired(time.Now()) {
		return Session{}, ErrNotFound
	}
	return s, nil
}

func (k *KV) DeleteSession(ctx context.Context, tokenHash string) error {
	if !ValidID(tokenHash) {
		return ErrNotFound
	}
	var sess Session
	if err := k.get(ctx, k.sessions, "session", encodeID(tokenHash), &sess); err != nil {
		return err
	}
	if err := k.del(ctx, k.sessions, "session", encodeID(tokenHash)); err != nil {
		return err
	}
	if ValidID(sess.PrincipalID) {
		return k.del(ctx, k.sessions, "session index", sessionIndexKey(sess.PrincipalID, tokenHash))
	}
	return nil
}

// Close ends running watches (they return nil) and makes later calls fail
// with ErrUnavailable. It does not close the NATS connection.
func (k *KV) Close() error {
	k.closeOnce.Do(func() { close(k.done) })
	return nil
}

// ---------------------------------------------------------------------
// Watch
// ---------------------------------------------------------------------

// Watch implements Store.Watch with three bucket watchers, drained by the
// calling goroutine, which is the only one that calls fn:
//
//   - groups and roles: the last value of every key, then a nil marker,
//     then live changes. Delete markers in the replay are skipped (the
//     key does not exist); live ones become GroupDeleted / RoleRemoved.
//   - sessions: updates only (no replay of sessions); live deletes and
//     purges become SessionRevoked, puts are ignored. Revocations made
//     while no watch runs are not replayed.
//   - principals: updates only, like sessions: puts become PrincipalPut,
//     deletes PrincipalDeleted.
//
// ready is called once both replays are complete. Until then only the
// replays are read (live changes wait in the watchers' buffers), so every
// event before ready is initial state. Watch blocks until ctx is done or
// the store is closed (then it returns nil), or a watcher's subscription
// dies (ErrUnavailable; the caller may watch again and gets the full state
// again). JetStream's ordered consumers ride out reconnects by themselves.
func (k *KV) Watch(ctx context.Context, fn func(Event), ready func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch := func(kv jetstream.KeyValue, name string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
		// The subscription lives as long as the ctx it is created with, so
		// this is the Watch's ctx, not a per-call timeout.
		w, err := kv.WatchAll(ctx, opts...)
		if err != nil {
			return nil, unavailable("watch "+name, err)
		}
		return w, nil
	}
	select {
	case <-k.done:
		return fmt.Errorf("store: %w: closed", ErrUnavailable)
	default:
	}
	gw, err := watch(k.groups, "groups")
	if err != nil {
		return err
	}
	defer gw.Stop()
	rw, err := watch(k.roles, "roles")
	if err != nil {
		return err
	}
	defer rw.Stop()
	sw, err := watch(k.sessions, "sessions", jetstream.UpdatesOnly(), jetstream.MetaOnly())
	if err != nil {
		return err
	}
	defer sw.Stop()
	pw, err := watch(k.principals, "principals", jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer pw.Stop()

	// gch, rch, sch, pch are the watchers' channels; the select reads the
	// *sel copies, which are nil while that watcher is paused.
	gch, rch, sch, pch := gw.Updates(), rw.Updates(), sw.Updates(), pw.Updates()
	gsel, rsel := gch, rch
	var ssel, psel <-chan jetstream.KeyValueEntry
	groupsReady, rolesReady := false, false
	for {
		var (
			e  jetstream.KeyValueEntry
			ok bool
			ch <-chan jetstream.KeyValueEntry
		)
		select {
		case <-ctx.Done():
			return nil
		case <-k.done:
			return nil
		case e, ok = <-gsel:
			ch = gch
		case e, ok = <-rsel:
			ch = rch
		case e, ok = <-ssel:
			ch = sch
		case e, ok = <-psel:
			ch = pch
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return unavailable("watch", jetstream.ErrConnectionClosed)
		}
		initial := !(groupsReady && rolesReady)
		if e == nil { // end of a replay; pause that watcher until both are done
			switch ch {
			case gch:
				groupsReady, gsel = true, nil
			case rch:
				rolesReady, rsel = true, nil
			}
			if groupsReady && rolesReady && initial {
				if ready != nil {
					ready()
				}
				gsel, rsel, ssel, psel = gch, rch, sch, pch
			}
			continue
		}
		src := fromSessions
		switch ch {
		case gch:
			src = fromGroups
		case rch:
			src = fromRoles
		case pch:
			src = fromPrincipals
		}
		if ev, ok := k.event(src, e, initial); ok {
			fn(ev)
		}
	}
}

// The buckets Watch reads.
const (
	fromGroups = iota
	fromRoles
	fromSessions
	fromPrincipals
)

// event turns an entry of bucket src into an Event; false for entries
// that are no event (session puts and index entries, deletes in a
// replay, malformed keys or values).
func (k *KV) event(src int, e jetstream.KeyValueEntry, initial bool) (Event, bool) {
	deleted := e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge
	if deleted && initial {
		return Event{}, false
	}
	switch src {
	case fromGroups:
		gid := decodeID(e.Key())
		if !ValidID(gid) {
			return Event{}, false
		}
		if deleted {
			return Event{Type: GroupDeleted, Group: Group{ID: gid}}, true
		}
		var g Group
		if err := json.Unmarshal(e.Value(), &g); err != nil || g.ID != gid {
			return Event{}, false
		}
		return Event{Type: GroupPut, Group: g}, true
	case fromRoles:
		gid, id, r, ok := parseRoleKey(e.Key())
		if !ok {
			return Event{}, false
		}
		t := RoleSet
		if deleted {
			t = RoleRemoved
		}
		return Event{Type: t, GroupID: gid, Principal: id, Role: r}, true
	case fromPrincipals:
		id := decodeID(e.Key())
		if !ValidID(id) {
			return Event{}, false
		}
		if deleted {
			return Event{Type: PrincipalDeleted, Principal: id}, true
		}
		var p Principal
		if err := json.Unmarshal(e.Value(), &p); err != nil || p.ID != id {
			return Event{}, false
		}
		return Event{Type: PrincipalPut, Principal: id, Kind: p.Kind}, true
	default: // sessions; an index key (two tokens) is no event
		h := decodeID(e.Key())
		if !deleted || strings.Contains(e.Key(), ".") || !ValidID(h) {
			return Event{}, false
		}
		return Event{Type: SessionRevoked, TokenHash: h}, true
	}
}
