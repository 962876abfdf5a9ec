package node

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/internal/lograte"
	"github.com/pushring/pushring/journal"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/router"
	"github.com/pushring/pushring/store"
)

// sessionStore is the router's SessionStore over the store's MQTT
// session records and the message journal: what makes persistent
// sessions outlive this node.
//
//   - Claim: one compare-and-set of the session's record (a clean claim
//     removes it) and a notice (the journal's end, cached for a moment,
//     is where a new session starts). Clean sessions are not held:
//     they have no record to touch or delete.
//   - Replay: an ordered consumer over the journal, filtered to the
//     principal's direct messages and the groups it is a member of now.
//   - Positions go through the store's batcher (one write a session a
//     second at most); subscriptions and releases through one writer
//     goroutine, the latest of each session winning; both are written in
//     the background, so the router never waits on the store for them.
//   - The records of the sessions held here are rewritten every
//     expiry/4 (touch), so a record outlives its holder by one expiry.
//   - Claims by other nodes arrive through a watch and Kick the session
//     here.
type sessionStore struct {
	self    string
	recs    store.MQTTSessions
	j       *journal.Journal
	dir     *store.Directory
	pos     *store.MQTTPosBatcher
	log     *slog.Logger
	touchIn time.Duration

	endMu   sync.Mutex
	endAt   time.Time
	endSeq  uint64
	endWait chan struct{} // closed when the Bounds in flight answers; nil if none

	mu      sync.Mutex
	held    map[sessKey]uint64     // gen of each session this node holds
	subs    map[sessKey]pendingSub // to write
	qos2    map[sessKey]pendingIDs // to write
	release map[sessKey]uint64     // gen to delete
	wake    chan struct{}
	failLog lograte.Limiter
	// kickFn closes a session here that another node claimed (the
	// router's Kick); set by watchClaims. Under mu.
	kickFn func(principal, clientID string, gen uint64)
	// replays bounds the journal reads in progress: each is a consumer
	// on the stream.
	replays chan struct{}

	bulkMu    sync.Mutex
	waiting   []*replayReq // replays waiting to be served (gather)
	gathering bool         // a gather goroutine runs
}

// maxReplays is how many replays run at once; the others wait.
const maxReplays = 32

type sessKey struct{ principal, clientID string }

type pendingSub struct {
	gen  uint64
	subs []store.MQTTSub
}

type pendingIDs struct {
	gen uint64
	ids []store.MQTTQoS2
}

var (
	_ router.SessionStore = (*sessionStore)(nil)
	_ router.RingReplayer = (*sessionStore)(nil)
)

// endCacheFor: how long the journal's end is reused for new sessions. A
// new session starting a little before its CONNECT only replays, on a
// later resume elsewhere, messages that its subscriptions may match.
const endCacheFor = 250 * time.Millisecond

func newSessionStore(self string, recs store.MQTTSessions, j *journal.Journal, dir *store.Directory,
	pos *store.MQTTPosBatcher, expiry time.Duration, log *slog.Logger) *sessionStore {
	return &sessionStore{
		self: self, recs: recs, j: j, dir: dir, pos: pos, log: log,
		touchIn: max(expiry/4, time.Second),
		held:    map[sessKey]uint64{},
		subs:    map[sessKey]pendingSub{},
		qos2:    map[sessKey]pendingIDs{},
		release: map[sessKey]uint64{},
		wake:    make(chan struct{}, 1),
		replays: make(chan struct{}, maxReplays),
	}
}

// end returns the journal's last sequence, asking the server at most once
// per endCacheFor, whatever the number of CONNECTs waiting for it.
func (s *sessionStore) end(ctx context.Context) (uint64, error) {
	s.endMu.Lock()
	if time.Since(s.endAt) < endCacheFor {
		seq := s.endSeq
		s.endMu.Unlock()
		return seq, nil
	}
	if w := s.endWait; w != nil {
		s.endMu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return s.end(ctx)
	}
	w := make(chan struct{})
	s.endWait = w
	s.endMu.Unlock()
	_, last, err := s.j.Bounds(ctx)
	s.endMu.Lock()
	if err == nil {
		s.endAt, s.endSeq = time.Now(), last
	} else if !s.endAt.IsZero() {
		// The stream is slow to answer (a NATS server restarting): an
		// older end only makes a later resume replay a little more,
		// where refusing would fail the CONNECT.
		last, err = s.endSeq, nil
	}
	s.endWait = nil
	s.endMu.Unlock()
	close(w)
	return last, err
}

func (s *sessionStore) Claim(ctx context.Context, principal, clientID string, clean bool) (router.Claimed, error) {
	start, err := s.end(ctx)
	if err != nil {
		return router.Claimed{}, err
	}
	prev, found, cur, err := s.recs.ClaimMQTT(ctx, principal, clientID, s.self, clean, start)
	if err != nil {
		return router.Claimed{}, err
	}
	cl := router.Claimed{Gen: cur.Gen, Pos: cur.Pos, Found: found && !clean && !prev.Clean}
	if found {
		cl.Prev = prev.Gen
	}
	for _, sub := range cur.Subs {
		cl.Subs = append(cl.Subs, router.SessionSub{Filter: sub.Filter, QoS: sub.QoS})
	}
	for _, q := range cur.QoS2 {
		cl.QoS2 = append(cl.QoS2, router.QoS2Msg{PID: q.PID, Seq: q.Seq, Released: q.Released})
	}
	k := sessKey{principal, clientID}
	s.mu.Lock()
	// Writes queued for the generation this claim follows, when this
	// node held it: the router resumes that session from its memory
	// (newer than the record), so they are written under the new
	// generation; any other claim makes them stale.
	if found && !clean && s.held[k] == prev.Gen {
		if p, ok := s.subs[k]; ok && p.gen == prev.Gen {
			s.subs[k] = pendingSub{gen: cur.Gen, subs: p.subs}
		}
		if p, ok := s.qos2[k]; ok && p.gen == prev.Gen {
			s.qos2[k] = pendingIDs{gen: cur.Gen, ids: p.ids}
		}
	} else {
		delete(s.subs, k)
		delete(s.qos2, k)
	}
	if clean {
		delete(s.held, k) // a clean session has no record to touch or delete
	} else {
		s.held[k] = cur.Gen
	}
	delete(s.release, k)
	s.mu.Unlock()
	return cl, nil
}

// Replay serves one session's replay. Resumes often come in bulk (a
// node died and its clients reconnect here together): requests that
// wait at the same moment share one read of the journal (replayShared)
// instead of one consumer each, which under load stall and fail.
func (s *sessionStore) Replay(ctx context.Context, principal string, from uint64, topics bool, fn func(*message.Message, time.Time) error) (last, gapTo uint64, err error) {
	r := &replayReq{principal: principal, from: from, topics: topics, fn: fn, done: make(chan replayResult, 1)}
	s.bulkMu.Lock()
	s.waiting = append(s.waiting, r)
	start := !s.gathering
	s.gathering = true
	s.bulkMu.Unlock()
	if start {
		go s.gather()
	}
	select {
	case res := <-r.done:
		return res.last, res.gapTo, res.err
	case <-ctx.Done():
		r.cancelled.Store(true)
		return 0, 0, ctx.Err()
	}
}

// replayReq is one session's replay waiting to be served.
type replayReq struct {
	principal string
	from      uint64
	topics    bool // the session has rule topic filters: it gets every topic message
	fn        func(*message.Message, time.Time) error
	done      chan replayResult
	cancelled atomic.Bool
	groups    map[string]bool // the principal's groups (replayShared)
	err       error           // fn's, which ends this request (replayShared)
}

type replayResult struct {
	last, gapTo uint64
	err         error
}

// bulkGather is how long a replay request waits for others to share its
// read.
const bulkGather = 50 * time.Millisecond

// gather serves the waiting requests: one alone gets its own filtered
// read at once (in parallel with the others, up to maxReplays); two or
// more share one, one shared read at a time.
func (s *sessionStore) gather() {
	for {
		time.Sleep(bulkGather)
		s.bulkMu.Lock()
		reqs := s.waiting
		s.waiting = nil
		if len(reqs) == 0 {
			s.gathering = false
			s.bulkMu.Unlock()
			return
		}
		s.bulkMu.Unlock()
		if len(reqs) == 1 {
			go s.replayOne(reqs[0])
			continue
		}
		s.replayShared(reqs)
	}
}

// replayOne reads the journal for one request, filtered to its
// principal's subjects.
func (s *sessionStore) replayOne(r *replayReq) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.replays <- struct{}{}
	defer func() { <-s.replays }()
	groups := s.dir.MemberOf(r.principal)
	var res replayResult
	var first uint64
	first, res.last, res.err = s.j.Replay(ctx, r.from, r.principal, groups, r.topics, func(seq uint64, stored time.Time, m *message.Message) error {
		if r.cancelled.Load() {
			return context.Canceled
		}
		m.Seq = seq
		return r.fn(m, stored)
	})
	if res.err == nil && first > r.from {
		res.gapTo = first - 1
	}
	r.done <- res
}

// replayShared reads the journal once, from the lowest position asked,
// and hands each message to every request it is for (its principal, or a
// group the principal is a member of) at or after that request's start.
// A request whose fn fails drops out; the others go on.
func (s *sessionStore) replayShared(reqs []*replayReq) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.replays <- struct{}{}
	defer func() { <-s.replays }()
	from := reqs[0].from
	for _, r := range reqs {
		from = min(from, r.from)
		r.groups = make(map[string]bool)
		for _, g := range s.dir.MemberOf(r.principal) {
			r.groups[g] = true
		}
	}
	first, _, err := s.j.Bounds(ctx)
	var last uint64
	if err == nil {
		last, err = s.j.ReplayAll(ctx, from, func(seq uint64, stored time.Time, m *message.Message) error {
			m.Seq = seq
			for _, r := range reqs {
				if r.err != nil || seq < r.from || r.cancelled.Load() {
					continue
				}
				if m.Kind == message.Direct && m.To != r.principal || m.Kind == message.Group && !r.groups[m.To] ||
					m.Kind == message.Topic && !r.topics {
					continue
				}
				r.err = r.fn(m, stored)
			}
			return nil
		})
	}
	for _, r := range reqs {
		res := replayResult{last: last, err: cmp.Or(r.err, err)}
		if res.err == nil && first > r.from {
			res.gapTo = first - 1
		}
		r.done <- res
	}
}

func (s *sessionStore) ReplayAll(ctx context.Context, from uint64, fn func(*message.Message, []string)) (uint64, error) {
	var one [1]string
	return s.j.ReplayAll(ctx, from, func(seq uint64, _ time.Time, m *message.Message) error {
		m.Seq = seq
		switch m.Kind {
		case message.Group:
			fn(m, s.dir.Members(m.To))
		case message.Topic:
			fn(m, nil) // the router finds the sessions whose filters match
		default:
			one[0] = m.To
			fn(m, one[:])
		}
		return nil
	})
}

func (s *sessionStore) SaveSubs(principal, clientID string, gen uint64, subs []router.SessionSub) {
	list := make([]store.MQTTSub, len(subs))
	for i, sub := range subs {
		list[i] = store.MQTTSub{Filter: sub.Filter, QoS: sub.QoS}
	}
	s.mu.Lock()
	s.subs[sessKey{principal, clientID}] = pendingSub{gen: gen, subs: list}
	s.mu.Unlock()
	s.kick()
}

func (s *sessionStore) SaveQoS2(principal, clientID string, gen uint64, msgs []router.QoS2Msg) {
	ids := make([]store.MQTTQoS2, len(msgs))
	for i, m := range msgs {
		ids[i] = store.MQTTQoS2{PID: m.PID, Seq: m.Seq, Released: m.Released}
	}
	s.mu.Lock()
	s.qos2[sessKey{principal, clientID}] = pendingIDs{gen: gen, ids: ids}
	s.mu.Unlock()
	s.kick()
}

func (s *sessionStore) SavePosition(principal, clientID string, gen uint64, pos uint64) {
	s.pos.Note(principal, clientID, gen, pos)
}

func (s *sessionStore) RewindPosition(principal, clientID string, gen uint64, pos uint64) {
	s.pos.Rewind(principal, clientID, gen, pos)
}

func (s *sessionStore) Release(principal, clientID string, gen uint64) {
	k := sessKey{principal, clientID}
	s.mu.Lock()
	// Only a record this node holds is deleted: a clean session has
	// none, and one claimed elsewhere since is the claimer's.
	held := s.held[k] == gen
	if held {
		delete(s.held, k)
		s.release[k] = gen
	}
	delete(s.subs, k)
	delete(s.qos2, k)
	s.mu.Unlock()
	s.pos.Forget(principal, clientID)
	if held {
		s.kick()
	}
}

// taken is the watch's word that another node claimed a session: this
// node no longer holds it.
func (s *sessionStore) taken(principal, clientID string, gen uint64) {
	k := sessKey{principal, clientID}
	s.mu.Lock()
	if g, ok := s.held[k]; ok && g < gen {
		delete(s.held, k)
		delete(s.subs, k)
		delete(s.qos2, k)
	}
	s.mu.Unlock()
}

func (s *sessionStore) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes subscriptions and releases as they come, touches the held
// records every touchIn, and returns when ctx is done, after a last
// write of what is pending.
func (s *sessionStore) run(ctx context.Context) {
	touch := time.NewTicker(s.touchIn)
	defer touch.Stop()
	for {
		select {
		case <-ctx.Done():
			wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.write(wctx)
			cancel()
			return
		case <-s.wake:
			s.write(ctx)
		case <-touch.C:
			s.touchHeld(ctx)
		}
	}
}

// write sends what SaveSubs, SaveQoS2 and Release queued.
func (s *sessionStore) write(ctx context.Context) {
	s.mu.Lock()
	subs, qos2, rel := s.subs, s.qos2, s.release
	s.subs, s.qos2, s.release = map[sessKey]pendingSub{}, map[sessKey]pendingIDs{}, map[sessKey]uint64{}
	s.mu.Unlock()
	for k, p := range subs {
		s.check("save subscriptions", k, s.recs.SaveMQTTSubs(ctx, k.principal, k.clientID, p.gen, p.subs))
	}
	for k, p := range qos2 {
		s.check("save QoS 2 ids", k, s.recs.SaveMQTTQoS2(ctx, k.principal, k.clientID, p.gen, p.ids))
	}
	for k, gen := range rel {
		s.check("release", k, s.recs.DeleteMQTT(ctx, k.principal, k.clientID, gen))
	}
}

// touchHeld rewrites the records of the sessions held here, so they do
// not expire while held.
func (s *sessionStore) touchHeld(ctx context.Context) {
	s.mu.Lock()
	held := make(map[sessKey]uint64, len(s.held))
	for k, g := range s.held {
		held[k] = g
	}
	kick := s.kickFn
	s.mu.Unlock()
	for k, gen := range held {
		if ctx.Err() != nil {
			return
		}
		err := s.recs.TouchMQTT(ctx, k.principal, k.clientID, gen)
		if errors.Is(err, store.ErrStale) {
			// Claimed elsewhere and the notice was missed: let go.
			s.taken(k.principal, k.clientID, gen+1)
			if kick != nil {
				kick(k.principal, k.clientID, gen+1)
			}
			continue
		}
		s.check("touch", k, err)
	}
}

func (s *sessionStore) check(what string, k sessKey, err error) {
	if err == nil || errors.Is(err, store.ErrStale) {
		return // stale: another node holds the session now
	}
	if ok, n := s.failLog.Allow(10 * time.Second); ok {
		s.log.Warn("sessions: could not write a session record", "op", what, "id", k.principal, "client_id", k.clientID, "err", err, "since_last_logged", n)
	}
}

// watchClaims kicks the sessions other nodes claim, watching again after
// failures, until ctx is done.
func (s *sessionStore) watchClaims(ctx context.Context, kick func(principal, clientID string, gen uint64)) {
	s.mu.Lock()
	s.kickFn = kick
	s.mu.Unlock()
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := s.recs.WatchMQTTClaims(ctx, func(principal, clientID, node string, gen uint64) {
			if node == s.self {
				return
			}
			s.taken(principal, clientID, gen)
			kick(principal, clientID, gen)
		}, func() { backoff = 50 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("sessions: claim watch failed; watching again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
