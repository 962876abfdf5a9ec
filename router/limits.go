package router

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/internal/lograte"
)

// Per-principal limits: what one principal's sessions on this node share,
// whichever connection or client id they use, so that opening more
// sessions buys a principal neither more subscription memory nor a faster
// publish rate (the number of sessions is capped by
// Config.MaxSessionsPerPrincipal).
//
//   - Subscriptions: one filter is at most Config.MaxFilterLen bytes, and
//     the filters of all of a principal's sessions together cost at most
//     Config.MaxSubscriptionBytes (each its length plus
//     subscriptionOverhead). Over either, that filter alone gets SUBACK
//     0x80.
//   - Publishing: a token bucket for messages and one for bytes
//     (Config.PublishRate, PublishBurst, PublishByteRate,
//     PublishByteBurst). A PUBLISH always goes through and takes its
//     tokens; when that leaves a bucket in debt, the connection is not
//     read until the debt is paid back (transport.pause). This is
//     backpressure rather than dropping: nothing read is lost, the sender
//     just slows down to the limit, and an over-limit QoS 1 publisher
//     sees slower PUBACKs, not a disconnect. Other connections are not
//     held up: the goroutine transport sleeps in the connection's own
//     reader, the event loop takes the socket out of its epoll set until
//     the pause ends.
//
// A principal's state lives as long as it has sessions here, and after
// that only while its buckets are not full again (a full bucket is the
// same as a new one, so dropping it gives nothing away to a principal
// that reconnects). The table is swept when it grows, like
// internal/ratelimit's.

// monoBase makes monoNow monotonic nanoseconds: time.Since of a time.Time
// read once reads only the monotonic clock, about half the cost of
// time.Now (which also reads the wall clock), once per PUBLISH.
var monoBase = time.Now()

// monoNow is the clock of the publish buckets, in nanoseconds.
func monoNow() int64 { return int64(time.Since(monoBase)) }

// subscriptionOverhead is what a granted filter costs besides its bytes:
// its subscription entry (two strings, QoS and flags, 48 bytes) and its
// share of the slice that holds it. It makes many short filters count.
const subscriptionOverhead = 64

// minPublishPause is the shortest pause of a principal over its publish
// rate.
const minPublishPause = 10 * time.Millisecond

// limitLogEvery: a principal over one of its limits is logged at most
// this often, whatever the flood.
const limitLogEvery = time.Minute

// minFilterLen is the length of the longest filter the ACL lets a
// principal subscribe to with c's prefixes that a delivery can match:
// "<private>/<id>/group/<gid>" with 64-byte ids (or "<group>/<gid>" if
// that is longer).
func minFilterLen(c Config) int {
	const idMax = 64
	return max(len(c.PrivatePrefix)+1+idMax+len("/group/")+idMax, len(c.GroupPrefix)+1+idMax)
}

// principalState is what one principal's sessions share. sessions and
// the table entry change under Server.mu; subBytes and logged are
// atomics; the buckets are under mu, a leaf lock.
type principalState struct {
	// sessions are its registered sessions (Server.mu): Server.sessionsOf.
	// A session is listed from its creation (register) until it is
	// released, so they are also what holds the state in the table.
	sessions []*session
	subBytes atomic.Int64    // subscription bytes held, see subscriptionCost
	subLog   lograte.Limiter // subscription-limit log lines
	pubLog   lograte.Limiter // publish-rate log lines
	sessLog  lograte.Limiter // session-cap eviction log lines

	mu    sync.Mutex
	msgs  float64 // message tokens; negative: debt
	bytes float64 // byte tokens; negative: debt
	last  int64   // monoNow when the buckets were last refilled
}

// sessionsOf returns the sessions of principal id registered here (the
// caller copies the slice before releasing Server.mu). Server.mu held.
func (s *Server) sessionsOf(id string) []*session {
	if p := s.principals.m[id]; p != nil {
		return p.sessions
	}
	return nil
}

// sessionLocked returns the session k registered here, or nil: one of
// its principal's few sessions (at most MaxSessionsPerPrincipal), found
// without a map of all sessions, which would cost every idle
// connection an entry. Server.mu held.
func (s *Server) sessionLocked(k sessKey) *session {
	for _, sess := range s.sessionsOf(k.principal) {
		if sess.clientID == k.clientID {
			return sess
		}
	}
	return nil
}

// eachSessionLocked calls fn for every session registered here. fn may
// take session locks, not add or remove sessions. Server.mu held.
func (s *Server) eachSessionLocked(fn func(*session)) {
	for _, p := range s.principals.m {
		for _, sess := range p.sessions {
			fn(sess)
		}
	}
}

// principalTable is the Server's principal states, under Server.mu.
type principalTable struct {
	m       map[string]*principalState
	sweepAt int
}

// minPrincipalSweep is the table size at which sweeping starts.
const minPrincipalSweep = 1024

// acquirePrincipalLocked returns id's state, creating it, for a new
// session (which register lists in it at once). Server.mu held.
func (s *Server) acquirePrincipalLocked(id string) *principalState {
	t := &s.principals
	p := t.m[id]
	if p == nil {
		if t.m == nil {
			t.m = make(map[string]*principalState)
		}
		now := monoNow()
		if len(t.m) >= max(t.sweepAt, minPrincipalSweep) {
			for k, q := range t.m {
				if len(q.sessions) == 0 && s.bucketsFull(q, now) {
					delete(t.m, k)
				}
			}
			t.sweepAt = 2 * len(t.m)
		}
		p = &principalState{
			msgs:  float64(s.cfg.PublishBurst),
			bytes: float64(s.cfg.PublishByteBurst),
			last:  now,
		}
		t.m[id] = p
	}
	return p
}

// releasePrincipalLocked drops p (id's state) from the table when its
// last session went (removeSessionLocked took it off p.sessions) and
// nothing is left in its buckets. Server.mu held.
func (s *Server) releasePrincipalLocked(id string, p *principalState) {
	if len(p.sessions) == 0 && s.bucketsFull(p, monoNow()) && s.principals.m[id] == p {
		delete(s.principals.m, id)
	}
}

// bucketsFull: p's buckets have refilled by now (or there are none).
// Takes p.mu, a leaf.
func (s *Server) bucketsFull(p *principalState, now int64) bool {
	cfg := &s.cfg
	p.mu.Lock()
	defer p.mu.Unlock()
	el := float64(now-p.last) / 1e9
	return (cfg.PublishRate <= 0 || p.msgs+el*cfg.PublishRate >= float64(cfg.PublishBurst)) &&
		(cfg.PublishByteRate <= 0 || p.bytes+el*cfg.PublishByteRate >= float64(cfg.PublishByteBurst))
}

// publishLimited: some publish limit is on.
func (s *Server) publishLimited() bool {
	return s.cfg.PublishRate > 0 || s.cfg.PublishByteRate > 0
}

// takePublish charges p one message of n bytes at ns (monoNow) and
// returns how long the connection must wait before it publishes again (0:
// it need not). Allocation-free.
func (s *Server) takePublish(p *principalState, n int, ns int64) time.Duration {
	cfg := &s.cfg
	var wait float64
	p.mu.Lock()
	el := float64(ns-p.last) / 1e9
	if el > 0 {
		p.last = ns
	} else {
		el = 0 // a call that reached the lock late earns nothing
	}
	if r := cfg.PublishRate; r > 0 {
		p.msgs = min(float64(cfg.PublishBurst), p.msgs+el*r) - 1
		if p.msgs < 0 {
			wait = -p.msgs / r
		}
	}
	if r := cfg.PublishByteRate; r > 0 {
		p.bytes = min(float64(cfg.PublishByteBurst), p.bytes+el*r) - float64(n)
		if p.bytes < 0 {
			wait = max(wait, -p.bytes/r)
		}
	}
	p.mu.Unlock()
	return time.Duration(wait * float64(time.Second))
}

// subscriptionCost is what filter counts against MaxSubscriptionBytes.
func subscriptionCost(filter string) int64 {
	return int64(len(filter) + subscriptionOverhead)
}

// addSubBytes takes n subscription bytes for p if that stays within
// limit.
func (p *principalState) addSubBytes(n, limit int64) bool {
	for {
		cur := p.subBytes.Load()
		if cur+n > limit {
			return false
		}
		if p.subBytes.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// throttle is the publish limit's side of handlePublish: it charges c's
// principal for a PUBLISH of n bytes and, when that puts the principal
// over its rate, pauses reading c. Counted per pause; logged once per
// principal per limitLogEvery.
func (c *mqttConn) throttle(n int) {
	srv := c.srv
	if !srv.publishLimited() {
		return
	}
	sess := c.sess.Load()
	if sess == nil {
		return
	}
	wait := srv.takePublish(sess.lim, n, monoNow())
	if wait <= 0 {
		return
	}
	// A pause that ended the moment the debt was paid would be followed by
	// another after the next PUBLISH: one pause (clock reads, epoll
	// changes, a wake-up) per message. The tokens earned meanwhile, up to
	// the burst, keep the average rate the same.
	wait = max(wait, minPublishPause)
	now := time.Now()
	srv.m.throttled()
	if ok, missed := sess.lim.pubLog.Allow(limitLogEvery); ok {
		srv.log.Warn("mqtt: principal over its publish rate, reading its connections more slowly",
			"id", c.id.ID, "remote", c.remoteAddr(), "wait", wait,
			"rate", srv.cfg.PublishRate, "byte_rate", srv.cfg.PublishByteRate, "since_last_line", missed)
	}
	c.t.pause(now.Add(wait))
}

// refuseFilter counts and (once per principal per limitLogEvery) logs a
// filter refused for a per-principal limit.
func (c *mqttConn) refuseFilter(reason, filter string) {
	c.srv.m.refusal(reason)
	sess := c.sess.Load()
	if sess == nil {
		return
	}
	if ok, missed := sess.lim.subLog.Allow(limitLogEvery); ok {
		c.srv.log.Warn("mqtt: subscribe refused: per-principal limit", "id", c.id.ID, "reason", reason,
			"filter_len", len(filter), "max_filter_len", c.srv.cfg.MaxFilterLen,
			"subscription_bytes", sess.lim.subBytes.Load(), "max_subscription_bytes", c.srv.cfg.MaxSubscriptionBytes,
			"remote", c.remoteAddr(), "since_last_line", missed)
	}
}
