package store

// MQTT session records: what a node needs to resume an MQTT session
// (principal + client id) anywhere in the cluster, one record per
// persistent session cluster-wide. A clean session keeps no record: it
// has nothing to resume, and an idle connection should cost no storage;
// its claim is known to the cluster through its notice alone. Both KV
// (below) and Memory (mqtt_memory.go) implement MQTTSessions and pass
// the same tests (mqtt_contract_test.go).
//
// Bucket "<Cluster>_mqtt", history 1, per-key TTL:
//
//	s.<principal>.<client>  value MQTTSession (JSON)       TTL MQTTSessionExpiry
//
// and the claim notices on a stream of their own (mqtt_notice.go).
//
// <principal> is encodeID of the principal id ('.' -> '='). <client> is
// one key token made from the client id, which may be any UTF-8 string of
// up to 65535 bytes: "b" + base64url (no padding) of the id when the id
// has at most maxRawClientID bytes (a token of at most 129 characters,
// reversible), else "h" + base64url of the id's SHA-256 (44 characters).
// A hashed token cannot be reversed, so the record and the notice carry
// the full client id in their value, and a read whose value names another
// client id (a SHA-256 collision, never seen) is refused as corrupt. Keys
// stay under 200 characters, far inside NATS's subject limits, whatever
// the client id. Ids that are not valid UTF-8 (MQTT forbids them) are
// refused with ErrInvalidID: JSON would not keep them byte for byte.
//
// Every write carries the record's TTL (the bucket has LimitMarkerTTL,
// which allows per-message TTLs), so a record vanishes MQTTSessionExpiry
// after its last write. The holder keeps a live session's record by
// writing it at least every MQTTSessionExpiry/4 (SaveMQTTPos, SaveMQTTSubs
// or TouchMQTT): if the holder dies, the record goes expiry after the
// holder's last write, which is when the session would have expired had
// its client gone offline then. A per-key TTL rather than the bucket's
// MaxAge: each write carries the writer's expiry, so nodes configured
// differently never fight over the bucket's settings, and a session may
// one day carry its own expiry (MQTT 5's Session Expiry Interval).
//
// Writes are compare-and-set on the key's revision: read, check the Gen,
// write expecting the revision read, and read again on a conflict. A KV
// remembers the revision of its own last write of each record (mqttCache)
// and expects it without reading, so a holder's steady writes (positions,
// touches) are one request each; a takeover or an expiry in between makes
// that write fail and the read decide. On a replicated bucket a read may
// come from a replica a moment behind the leader (direct gets): such a
// read costs a failed compare-and-set and another read, never a wrong
// write, except for a clean claim, which writes no record: one that
// reads no record from a replica behind leaves the record it missed (its
// notice still closes the holder's connection). Gens only grow along a
// record's claims (see genClock below).
//
// Every claim writes a claim notice, which WatchMQTTClaims reports to
// every node: a clean session holds no record that a later claim could
// find, so only the notice tells its holder. Even a claim of a record
// this node held writes one: a clean claim elsewhere that did not see
// the record (a replica behind, a persistent claim racing it) may be
// connected. (The record's own key changes on every position write, and
// having every node watch those would send every node every position of
// the cluster.) Notices are kept mqttNoticeTTL; nothing reads them but
// watches. A claim is done once its notice is stored: for a clean
// session the notice is the only trace, so a claim whose notice fails
// fails.
//
// Gens order claims cluster-wide, so every holder but the latest gives
// way: a Gen is above the record's previous Gen, the claimer's clock,
// and every Gen the claimer's store handle has seen in a notice (a
// Lamport clock). Two claims of one session on two nodes are thus
// ordered as they happened whenever either node had seen the other's
// notice, whatever the skew of their clocks.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/lograte"
)

// ErrStale: a write to an MQTT session record with a Gen that is no longer
// the record's (another claim took the session over), or to a record that
// no longer exists.
var ErrStale = errors.New("store: stale mqtt session generation")

// MQTTSub is one subscription of an MQTT session.
type MQTTSub struct {
	Filter string `json:"filter"`
	QoS    byte   `json:"qos"`
}

// MQTTSession is the record of one MQTT session (principal + client id):
// what a node needs to resume it.
type MQTTSession struct {
	Principal string `json:"principal"`
	ClientID  string `json:"client_id"`
	// Node holds the session now (the last claimer).
	Node string `json:"node"`
	// Gen is set by every claim and only grows along a record's claims;
	// a write with another Gen is refused with ErrStale. Opaque otherwise.
	Gen uint64 `json:"gen"`
	// Clean: a clean session's claim (ClaimMQTT's cur), which is not
	// stored; a stored record with it set holds nothing to resume.
	Clean bool      `json:"clean,omitempty"`
	Subs  []MQTTSub `json:"subs,omitempty"`
	// Pos is a journal sequence: every message for this session at or
	// below it was acknowledged (0: none).
	Pos uint64 `json:"pos"`
	// QoS2 are the QoS 2 messages the holder sent and the client has not
	// completed (no PUBCOMP yet): the client may hold their packet ids,
	// so a node that resumes the session finishes them under the same
	// ids. Kept across claims until the new holder saves its own.
	QoS2 []MQTTQoS2 `json:"qos2,omitempty"`
	// Updated is the time of the record's last write.
	Updated time.Time `json:"updated"`
}

// MQTTQoS2 is one QoS 2 message a session's holder sent and its client
// did not complete.
type MQTTQoS2 struct {
	PID uint16 `json:"pid"`
	Seq uint64 `json:"seq,omitempty"` // its journal sequence; 0: not stored
	// Released: the client answered PUBREC and was sent PUBREL; else it
	// has not answered the PUBLISH yet.
	Released bool `json:"rel,omitempty"`
}

// MQTTSessions keeps MQTT session records, one per (principal, client id)
// cluster-wide. All methods are goroutine-safe and may block on the
// backend (honour ctx). principal must be a ValidID and clientID valid
// UTF-8 (ErrInvalidID otherwise); any length up to MQTT's 65535 bytes,
// the empty string included.
//
// The holder of a record must write it (any Save, or TouchMQTT) at least
// every MQTTSessionExpiry/4 while its client is connected: a record
// vanishes MQTTSessionExpiry after its last write.
type MQTTSessions interface {
	// ClaimMQTT makes node the holder of (principal, clientID) with a new
	// Gen (compare-and-set on the record, retried on conflict), and
	// writes its notice (see WatchMQTTClaims). With clean, any previous
	// state is discarded: the record is removed, and cur (Clean, Subs
	// empty, Pos = startPos) is not stored. Else the previous Subs and
	// Pos are kept (startPos is the Pos of a record that did not exist).
	// It returns the previous record (found=false if none) and the new
	// one.
	ClaimMQTT(ctx context.Context, principal, clientID, node string, clean bool, startPos uint64) (prev MQTTSession, found bool, cur MQTTSession, err error)
	// SaveMQTTSubs replaces the subscriptions, only if gen is still
	// current (ErrStale otherwise).
	SaveMQTTSubs(ctx context.Context, principal, clientID string, gen uint64, subs []MQTTSub) error
	// SaveMQTTQoS2 replaces the QoS 2 messages not completed (QoS2),
	// only if gen is still current (ErrStale otherwise).
	SaveMQTTQoS2(ctx context.Context, principal, clientID string, gen uint64, ids []MQTTQoS2) error
	// SaveMQTTPos records a position, only if gen is current (ErrStale
	// otherwise) and pos is higher than the stored one (a lower or equal
	// pos is ignored, not an error, and writes nothing).
	SaveMQTTPos(ctx context.Context, principal, clientID string, gen uint64, pos uint64) error
	// SetMQTTPos records pos whatever the stored one, lower included,
	// only if gen is current (ErrStale otherwise): a position taken back
	// under a stored message that reached the session after its
	// position had passed it.
	SetMQTTPos(ctx context.Context, principal, clientID string, gen uint64, pos uint64) error
	// TouchMQTT rewrites the record unchanged but for Updated, only if
	// gen is current (ErrStale otherwise): it restarts the record's
	// expiry while its holder keeps it.
	TouchMQTT(ctx context.Context, principal, clientID string, gen uint64) error
	// DeleteMQTT removes the record if gen is current (ErrStale if the
	// record has another Gen; nil if there is no record).
	DeleteMQTT(ctx context.Context, principal, clientID string, gen uint64) error
	// GetMQTT reads one record (ErrNotFound). On a replicated bucket it
	// may miss a write made a moment ago; claims and writes never do.
	GetMQTT(ctx context.Context, principal, clientID string) (MQTTSession, error)
	// WatchMQTTClaims calls fn for every claim made after the watch is
	// ready, this node's own included (principal, clientID, the claiming
	// node, its gen), and maybe for earlier ones (below), until ctx is
	// done: a node that holds the session learns that another node took
	// it over, and closes its
	// connection if the gen is higher than the one it holds (two
	// notices may arrive out of order; gens tell which claim is later).
	// Claims made before the watch started may be reported too: KV
	// reports every notice still kept (mqttNoticeTTL), so a watch
	// started again after a break learns of the claims made meanwhile,
	// if the break was shorter than that; a clean session has no
	// record whose failed writes would tell its holder later. fn
	// is called from one goroutine at a time; ready is called once, when
	// later claims will be seen. It returns nil when ctx is done or the
	// store closed, ErrUnavailable if the watch broke (the caller may
	// watch again).
	WatchMQTTClaims(ctx context.Context, fn func(principal, clientID, node string, gen uint64), ready func()) error
}

var (
	_ MQTTSessions = (*KV)(nil)
	_ MQTTSessions = (*Memory)(nil)
)

// maxRawClientID is the longest client id (in bytes) kept reversibly in a
// key; longer ones are hashed (see the file comment).
const maxRawClientID = 96

// mqttNoticeTTL is how long a claim notice is kept: watchers get it live,
// or when they watch again after a break.
const mqttNoticeTTL = time.Minute

// mqttMarkerTTL is how long the marker of a deleted or expired record
// stays (the bucket's LimitMarkerTTL), so markers of sessions that come
// and go never pile up.
const mqttMarkerTTL = time.Minute

// errConflicts: a write lost maxClaimAttempts compare-and-sets in a row.
var errConflicts = errors.New("too many concurrent writes")

// noResponderWait bounds the retries of a read nobody answered (see
// getMQTT): a new R3 bucket's replicas took longer than 0.3 s to answer
// direct gets under make test's load (TestKVMQTTContractR3). The pauses
// grow from 10 ms to 250 ms: some 15 reads in all, not one every few
// milliseconds from every connecting client while a bucket has no
// leader.
const noResponderWait = 3 * time.Second

// maxClaimAttempts bounds the compare-and-set retries of one call; only
// writers racing on one session conflict, a handful at most.
const maxClaimAttempts = 16

// clientToken is the key token of a client id (see the file comment).
func clientToken(clientID string) string {
	if len(clientID) <= maxRawClientID {
		return "b" + base64.RawURLEncoding.EncodeToString([]byte(clientID))
	}
	sum := sha256.Sum256([]byte(clientID))
	return "h" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// mqttKey returns the record key of a session, or ErrInvalidID.
func mqttKey(principal, clientID string) (string, error) {
	if !ValidID(principal) || !validClientID(clientID) {
		return "", ErrInvalidID
	}
	return "s." + encodeID(principal) + "." + clientToken(clientID), nil
}

// validClientID: any valid UTF-8 without NUL (MQTT forbids U+0000 in
// strings) of at most 65535 bytes.
func validClientID(id string) bool {
	return len(id) <= 65535 && utf8.ValidString(id) && !strings.ContainsRune(id, 0)
}

// genClock hands out claim Gens (see the file comment): above the
// previous record's, the clock's, and every Gen seen in a notice.
type genClock struct{ seen atomic.Uint64 }

// next is the Gen of a claim after prev (0: no record).
func (c *genClock) next(prev uint64, now time.Time) uint64 {
	return max(prev+1, uint64(now.UnixNano()), c.seen.Load()+1)
}

// saw notes a Gen claimed anywhere.
func (c *genClock) saw(gen uint64) {
	for {
		s := c.seen.Load()
		if gen <= s || c.seen.CompareAndSwap(s, gen) {
			return
		}
	}
}

// claimed builds the record a claim writes (or, clean, would write).
func claimed(prev MQTTSession, found bool, principal, clientID, node string, clean bool, startPos, gen uint64, now time.Time) MQTTSession {
	cur := MQTTSession{
		Principal: principal, ClientID: clientID, Node: node,
		Gen: gen, Clean: clean, Pos: startPos, Updated: now,
	}
	if found && !clean {
		cur.Subs, cur.Pos, cur.QoS2 = prev.Subs, prev.Pos, prev.QoS2
	}
	return cur
}

// claimNotice is one claim's notice (mqtt_notice.go).
// One-letter names: a burst of connects keeps thousands of them for a
// minute.
type claimNotice struct {
	Principal string `json:"p"`
	ClientID  string `json:"c"`
	Node      string `json:"n"`
	Gen       uint64 `json:"g"`
}

// ---------------------------------------------------------------------
// Metrics and logs
// ---------------------------------------------------------------------

// The op label values of the MQTT session record metrics.
const (
	opClaim  = "claim"
	opSubs   = "subs"
	opPos    = "pos"
	opQoS2   = "qos2"
	opTouch  = "touch"
	opDelete = "delete"
	opGet    = "get"
	opNotice = "notice"
	opWatch  = "watch"
)

// mqttMetrics are the KV's MQTT session record metrics.
type mqttMetrics struct {
	writes *prometheus.CounterVec // op: successful writes
	errors *prometheus.CounterVec // op: calls that failed (unavailable, corrupt)
	stale  *prometheus.CounterVec // op: writes refused for a stale gen
}

func newMQTTMetrics(reg prometheus.Registerer) (*mqttMetrics, error) {
	m := &mqttMetrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushring_mqtt_session_records_writes_total",
			Help: "Writes of MQTT session records (and claim notices) to the KV bucket, by operation.",
		}, []string{"op"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushring_mqtt_session_records_errors_total",
			Help: "MQTT session record calls that failed (store unavailable, corrupt record), by operation.",
		}, []string{"op"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushring_mqtt_session_records_stale_total",
			Help: "MQTT session record writes refused because another claim took the session over, by operation.",
		}, []string{"op"}),
	}
	for _, op := range []string{opClaim, opSubs, opPos, opQoS2, opTouch, opDelete, opNotice} {
		m.writes.WithLabelValues(op)
		m.errors.WithLabelValues(op)
	}
	m.errors.WithLabelValues(opGet)
	m.errors.WithLabelValues(opWatch)
	for _, op := range []string{opSubs, opPos, opQoS2, opTouch, opDelete} {
		m.stale.WithLabelValues(op)
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.writes, err = registerVec(reg, m.writes); err != nil {
		return nil, err
	}
	if m.errors, err = registerVec(reg, m.errors); err != nil {
		return nil, err
	}
	if m.stale, err = registerVec(reg, m.stale); err != nil {
		return nil, err
	}
	return m, nil
}

// registerVec registers c, or returns the vector already registered
// under its name (two stores on one registry, in tests).
func registerVec(reg prometheus.Registerer, c *prometheus.CounterVec) (*prometheus.CounterVec, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, check.New("Registerer: %v", err)
	}
	return c, nil
}

// mqttLog logs failures and refusals of MQTT session record calls, at
// most one line a logEvery per kind, with the count of those it stood
// for.
type mqttLog struct {
	log           *slog.Logger
	failed, stale lograte.Limiter
}

const logEvery = 10 * time.Second

// logID shortens a client id for a log line: ids may be 64 KiB.
func logID(id string) string {
	if len(id) <= 64 {
		return id
	}
	i := 64
	for i > 0 && !utf8.RuneStart(id[i]) {
		i--
	}
	return id[:i] + "…"
}

// ---------------------------------------------------------------------
// KV
// ---------------------------------------------------------------------

// mqttCache is, per key, the record this KV wrote last and the revision
// of that write: the holder's next write can expect that revision without
// reading the record first (one request instead of two). A cached entry
// is only ever a guess: a write expecting it fails if anything else wrote
// since, and the entry is dropped.
type mqttCache struct {
	mu sync.Mutex
	m  map[string]cachedMQTT
}

type cachedMQTT struct {
	rev uint64
	rec MQTTSession // Subs is never written to
}

// mqttCacheMax bounds the cache: past it, an arbitrary entry makes room
// (the records of sessions that left this node unannounced would
// otherwise stay).
const mqttCacheMax = 1 << 16

func (c *mqttCache) get(key string) (cachedMQTT, bool) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	return e, ok
}

func (c *mqttCache) put(key string, rev uint64, rec MQTTSession) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]cachedMQTT)
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= mqttCacheMax {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = cachedMQTT{rev, rec}
	c.mu.Unlock()
}

func (c *mqttCache) drop(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// fail counts and logs (rate limited) a failed call and returns err.
func (k *KV) fail(op, principal, clientID string, err error) error {
	k.mqttM.errors.WithLabelValues(op).Inc()
	k.mqttL.failed.Warn(k.mqttL.log, logEvery, "store: mqtt session record "+op+" failed: the session's state was not "+refusedWhat(op),
		"principal", principal, "client_id", logID(clientID), "err", err)
	return err
}

// refusedWhat says, for a log line, what a failed op leaves undone.
func refusedWhat(op string) string {
	switch op {
	case opClaim:
		return "claimed (the connection cannot take the session)"
	case opSubs:
		return "saved (subscriptions)"
	case opPos:
		return "saved (delivery position)"
	case opTouch:
		return "refreshed (expiry)"
	case opDelete:
		return "deleted"
	case opNotice:
		return "announced (the previous holder is not told of the takeover)"
	case opWatch:
		return "watched (takeovers by other nodes are not seen)"
	}
	return "read"
}

// staleErr counts and logs (rate limited) a write refused for its gen.
func (k *KV) staleErr(op, principal, clientID string, gen, cur uint64) error {
	k.mqttM.stale.WithLabelValues(op).Inc()
	k.mqttL.stale.Warn(k.mqttL.log, logEvery, "store: refused an mqtt session record "+op+" from a holder that lost the session",
		"principal", principal, "client_id", logID(clientID), "gen", gen, "current_gen", cur)
	return ErrStale
}

// getMQTT reads a record: its value and revision, found=false if the key
// has no value.
func (k *KV) getMQTT(ctx context.Context, key, clientID string) (rec MQTTSession, rev uint64, found bool, err error) {
	var e jetstream.KeyValueEntry
	start := time.Now()
	for attempt := 0; ; attempt++ {
		e, err = k.mqtt.Get(ctx, key)
		// A replicated bucket's direct gets go unanswered for a moment
		// while its replicas change (a new bucket, a leader election):
		// ask again shortly rather than refuse a connection's claim.
		if !errors.Is(err, nats.ErrNoResponders) || time.Since(start) > noResponderWait ||
			pause(ctx, min(10*time.Millisecond<<attempt, 250*time.Millisecond)) != nil {
			break
		}
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return MQTTSession{}, 0, false, nil
		}
		return MQTTSession{}, 0, false, unavailable("get mqtt session", err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.ClientID != clientID {
		return MQTTSession{}, 0, false, fmt.Errorf("store: corrupt mqtt session record %q (%v)", key, err)
	}
	return rec, e.Revision(), true, nil
}

// putMQTT writes value at key with the record TTL, expecting revision
// rev (0: the key has no value), and returns the new revision. conflict
// reports a compare-and-set failure.
func (k *KV) putMQTT(ctx context.Context, key string, value []byte, rev uint64, ttl time.Duration) (newRev uint64, conflict bool, err error) {
	if rev == 0 {
		// Create also handles a key whose last message is a delete
		// marker (a deleted or expired record); reading that marker from
		// a replica behind the leader makes its second attempt fail with
		// a bare wrong-last-sequence error, a conflict as well.
		newRev, err = k.mqtt.Create(ctx, key, value, jetstream.KeyTTL(ttl))
		if isWrongLastSeq(err) {
			return 0, true, err
		}
	} else {
		msg := nats.Msg{Subject: k.mqttPre + key, Data: value}
		var ack *jetstream.PubAck
		ack, err = k.js.PublishMsg(ctx, &msg, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
		if isWrongLastSeq(err) {
			return 0, true, err
		}
		if err == nil {
			newRev = ack.Sequence
		}
	}
	if err != nil {
		return 0, false, unavailable("put mqtt session", err)
	}
	return newRev, false, nil
}

// isWrongLastSeq: the compare-and-set failed (a single server answers
// 10071, a replicated stream 10164).
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// backoff waits a little before the next compare-and-set attempt, so
// racing writers do not retry in lock step.
// pause waits d, or until ctx ends (its error).
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func backoff(ctx context.Context, attempt int) error {
	return pause(ctx, time.Duration(1+rand.IntN(1<<min(attempt, 5)))*time.Millisecond)
}

func (k *KV) ClaimMQTT(ctx context.Context, principal, clientID, node string, clean bool, startPos uint64) (prev MQTTSession, found bool, cur MQTTSession, err error) {
	key, err := mqttKey(principal, clientID)
	if err != nil {
		return MQTTSession{}, false, MQTTSession{}, err
	}
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return MQTTSession{}, false, MQTTSession{}, err
	}
	defer cancel()
	for attempt := 0; ; attempt++ {
		var rev uint64
		prev, rev, found, err = k.getMQTT(ctx, key, clientID)
		if err != nil {
			return MQTTSession{}, false, MQTTSession{}, k.fail(opClaim, principal, clientID, err)
		}
		now := time.Now().UTC()
		cur = claimed(prev, found, principal, clientID, node, clean, startPos, k.gens.next(prev.Gen, now), now)
		var conflict bool
		switch {
		case clean && !found:
		case clean:
			// A purge with a TTL: the marker it leaves goes too.
			err = k.mqtt.Purge(ctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(mqttMarkerTTL))
			if conflict = isWrongLastSeq(err); err != nil && !conflict {
				err = unavailable("claim mqtt session", err)
			}
			k.cache.drop(key)
		default:
			var data []byte
			if data, err = json.Marshal(cur); err != nil {
				return MQTTSession{}, false, MQTTSession{}, fmt.Errorf("store: mqtt session: %w", err)
			}
			var newRev uint64
			newRev, conflict, err = k.putMQTT(ctx, key, data, rev, k.cfg.MQTTSessionExpiry)
			if err == nil {
				k.cache.put(key, newRev, cur)
			}
		}
		if conflict && attempt+1 < maxClaimAttempts {
			if err := backoff(ctx, attempt); err != nil {
				return MQTTSession{}, false, MQTTSession{}, k.fail(opClaim, principal, clientID, unavailable("claim mqtt session", err))
			}
			continue
		}
		if err != nil {
			k.cache.drop(key)
			if conflict {
				err = unavailable("claim mqtt session", fmt.Errorf("%w: %w", errConflicts, err))
			}
			return MQTTSession{}, false, MQTTSession{}, k.fail(opClaim, principal, clientID, err)
		}
		break
	}
	if !clean || found {
		k.mqttM.writes.WithLabelValues(opClaim).Inc() // a record written or removed
	}
	k.gens.saw(cur.Gen)
	if err := k.notices.announce(ctx, claimNotice{Principal: principal, ClientID: clientID, Node: node, Gen: cur.Gen}); err != nil {
		// A failed persistent claim's record stays taken: a retry's
		// notice tells the previous holder (every claim writes one).
		return MQTTSession{}, false, MQTTSession{}, k.fail(opNotice, principal, clientID, unavailable("put mqtt claim notice", err))
	}
	k.mqttM.writes.WithLabelValues(opNotice).Inc()
	return prev, found, cur, nil
}

// updateMQTT is the read, check, write loop of every write but a claim:
// change edits the record read (whose Gen is gen) and returns false if
// there is nothing to write. A record with another Gen, or none, is
// ErrStale.
//
// The record this KV wrote last (the cache) spares the read when change
// has something to write: the write expects the cached revision, so it
// only lands if nobody wrote since (another node's claim, an expiry);
// otherwise the loop reads and decides again.
func (k *KV) updateMQTT(ctx context.Context, op, principal, clientID string, gen uint64, change func(*MQTTSession) bool) error {
	key, err := mqttKey(principal, clientID)
	if err != nil {
		return err
	}
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if c, ok := k.cache.get(key); ok && c.rec.Gen == gen {
		rec := c.rec
		if change(&rec) {
			if done, err := k.writeMQTT(ctx, op, principal, clientID, key, rec, c.rev); done {
				return err
			}
		}
	}
	for attempt := 0; ; attempt++ {
		rec, rev, found, err := k.getMQTT(ctx, key, clientID)
		if err != nil {
			return k.fail(op, principal, clientID, err)
		}
		if !found || rec.Gen != gen {
			k.cache.drop(key)
			return k.staleErr(op, principal, clientID, gen, rec.Gen)
		}
		if !change(&rec) {
			return nil
		}
		done, err := k.writeMQTT(ctx, op, principal, clientID, key, rec, rev)
		if done {
			return err
		}
		if attempt+1 >= maxClaimAttempts {
			return k.fail(op, principal, clientID, unavailable(op+" mqtt session", errConflicts))
		}
		if err := backoff(ctx, attempt); err != nil {
			return k.fail(op, principal, clientID, unavailable(op+" mqtt session", err))
		}
	}
}

// writeMQTT writes rec at key expecting revision rev. done is false on a
// compare-and-set conflict (read again); else err is the call's result.
func (k *KV) writeMQTT(ctx context.Context, op, principal, clientID, key string, rec MQTTSession, rev uint64) (done bool, err error) {
	rec.Updated = time.Now().UTC()
	data, err := json.Marshal(rec)
	if err != nil {
		return true, fmt.Errorf("store: mqtt session: %w", err)
	}
	newRev, conflict, err := k.putMQTT(ctx, key, data, rev, k.cfg.MQTTSessionExpiry)
	if err != nil {
		k.cache.drop(key)
		if conflict {
			return false, nil
		}
		return true, k.fail(op, principal, clientID, err)
	}
	k.cache.put(key, newRev, rec)
	k.mqttM.writes.WithLabelValues(op).Inc()
	return true, nil
}

func (k *KV) SaveMQTTSubs(ctx context.Context, principal, clientID string, gen uint64, subs []MQTTSub) error {
	subs = slices.Clone(subs) // the cache keeps it; the caller may reuse its slice
	return k.updateMQTT(ctx, opSubs, principal, clientID, gen, func(r *MQTTSession) bool {
		r.Subs = subs
		return true
	})
}

func (k *KV) SaveMQTTQoS2(ctx context.Context, principal, clientID string, gen uint64, ids []MQTTQoS2) error {
	ids = slices.Clone(ids) // the cache keeps it; the caller may reuse its slice
	return k.updateMQTT(ctx, opQoS2, principal, clientID, gen, func(r *MQTTSession) bool {
		if slices.Equal(r.QoS2, ids) {
			return false
		}
		r.QoS2 = ids
		return true
	})
}

func (k *KV) SaveMQTTPos(ctx context.Context, principal, clientID string, gen uint64, pos uint64) error {
	return k.updateMQTT(ctx, opPos, principal, clientID, gen, func(r *MQTTSession) bool {
		if pos <= r.Pos {
			return false
		}
		r.Pos = pos
		return true
	})
}

func (k *KV) SetMQTTPos(ctx context.Context, principal, clientID string, gen uint64, pos uint64) error {
	return k.updateMQTT(ctx, opPos, principal, clientID, gen, func(r *MQTTSession) bool {
		if pos == r.Pos {
			return false
		}
		r.Pos = pos
		return true
	})
}

func (k *KV) TouchMQTT(ctx context.Context, principal, clientID string, gen uint64) error {
	return k.updateMQTT(ctx, opTouch, principal, clientID, gen, func(*MQTTSession) bool { return true })
}

func (k *KV) DeleteMQTT(ctx context.Context, principal, clientID string, gen uint64) error {
	key, err := mqttKey(principal, clientID)
	if err != nil {
		return err
	}
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	for attempt := 0; ; attempt++ {
		rec, rev, found, err := k.getMQTT(ctx, key, clientID)
		if err != nil {
			return k.fail(opDelete, principal, clientID, err)
		}
		if !found {
			k.cache.drop(key)
			return nil
		}
		if rec.Gen != gen {
			k.cache.drop(key)
			return k.staleErr(opDelete, principal, clientID, gen, rec.Gen)
		}
		// A purge with a TTL: the marker it leaves goes too.
		err = k.mqtt.Purge(ctx, key, jetstream.LastRevision(rev), jetstream.PurgeTTL(mqttMarkerTTL))
		if conflict := isWrongLastSeq(err); conflict && attempt+1 < maxClaimAttempts {
			if err := backoff(ctx, attempt); err != nil {
				return k.fail(opDelete, principal, clientID, unavailable("delete mqtt session", err))
			}
			continue
		}
		k.cache.drop(key)
		if err != nil {
			return k.fail(opDelete, principal, clientID, unavailable("delete mqtt session", err))
		}
		k.mqttM.writes.WithLabelValues(opDelete).Inc()
		return nil
	}
}

func (k *KV) GetMQTT(ctx context.Context, principal, clientID string) (MQTTSession, error) {
	key, err := mqttKey(principal, clientID)
	if err != nil {
		return MQTTSession{}, err
	}
	ctx, cancel, err := k.op(ctx)
	if err != nil {
		return MQTTSession{}, err
	}
	defer cancel()
	rec, _, found, err := k.getMQTT(ctx, key, clientID)
	if err != nil {
		return MQTTSession{}, k.fail(opGet, principal, clientID, err)
	}
	if !found {
		return MQTTSession{}, ErrNotFound
	}
	return rec, nil
}
