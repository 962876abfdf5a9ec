package router

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// Durable sessions: with a SessionStore, a persistent session lives
// beyond this node's memory.
//
//   - One session per client id, cluster-wide: every CONNECT claims its
//     session in the store before it is bound; the node that held it
//     before closes its connection (Kick) and forgets it.
//   - Its subscriptions are written to the store when they change, and
//     its position: a sequence of the cluster's message journal below
//     which every message for the session was acknowledged by the client
//     (or did not match its subscriptions). QoS 1 messages are stored in
//     the journal before their publishers are acknowledged, and carry
//     their sequence (message.Message.Seq).
//   - A session this node does not hold in memory (its client
//     reconnected here from another node, or this node restarted) is
//     rebuilt from the store, and the messages it missed are replayed
//     from the journal, from its position on, before new ones (which wait
//     meanwhile: order per publisher holds). Replayed messages go through
//     the same matching, ACL checks and queue as live ones; the recent-id
//     window drops what it can of the duplicates (QoS 1 allows them).
//   - A message a bounded queue drops is not lost: the position stays
//     below it and the session replays from there once its queue drains.
//
// The position is computed, not counted: the lowest sequence still
// queued or in flight, less one, or, with nothing pending, the highest
// sequence the session was offered. Messages reach a node out of
// sequence order (publishers on other nodes, a ring that is changing),
// so the position saved is the lowest of the last posHistory ticks
// (PositionInterval), when anything with a lower sequence has long
// arrived or was replayed; a replay from a lagging position only
// repeats messages.

// SessionStore keeps persistent sessions beyond this node's memory. The
// node implements it over the store's session records and the message
// journal. Claim and Replay may block (they are called with no router
// lock held); SaveSubs, SavePosition and Release must not: they are
// queued and written in the background, the latest value of each session
// winning.
type SessionStore interface {
	// Claim makes this node the holder of (principal, clientID) cluster
	// wide, under a new generation; the node holding it before is told
	// to Kick it. A persistent session found in the store is returned to
	// be resumed; a new one starts at the journal's end. A clean claim
	// discards what was stored.
	Claim(ctx context.Context, principal, clientID string, clean bool) (Claimed, error)
	// Replay calls fn, in journal order, for every stored message for
	// principal (direct, or to a group it is a member of; with topics,
	// every rule topic message too) with a sequence at or above from,
	// up to the journal's end when Replay started, with the time the
	// journal stored it (zero: unknown, never too old), and returns that
	// end. fn may block. gapTo, when not
	// 0, says the journal no longer held sequences from to gapTo (its
	// age or size bounds dropped them): some may have been for the
	// session.
	Replay(ctx context.Context, principal string, from uint64, topics bool, fn func(m *message.Message, stored time.Time) error) (last, gapTo uint64, err error)
	SaveSubs(principal, clientID string, gen uint64, subs []SessionSub)
	// SaveQoS2 replaces the QoS 2 messages sent and not completed (the
	// client may hold their ids), which a node resuming the session
	// finishes under the same ids (Claimed.QoS2). msgs is the callee's.
	SaveQoS2(principal, clientID string, gen uint64, msgs []QoS2Msg)
	SavePosition(principal, clientID string, gen uint64, pos uint64)
	// RewindPosition is SavePosition for a position lower than one saved
	// before (a stored message reached the session after its position
	// had passed it): written even so, unless a later SavePosition
	// moves it up again first.
	RewindPosition(principal, clientID string, gen uint64, pos uint64)
	// Release forgets the session (a clean session ended, a persistent
	// one expired) and deletes its record, unless another generation
	// claimed it.
	Release(principal, clientID string, gen uint64)
}

// Claimed is what Claim found.
type Claimed struct {
	Gen uint64
	// Prev is the generation of the claim before this one (0: none): a
	// session this node still holds under Prev is the session; under
	// another generation, it is stale (claimed elsewhere meanwhile).
	Prev  uint64
	Found bool // a persistent session to resume: Subs and Pos are its
	Subs  []SessionSub
	// Pos is the position to replay from (found) or to start at (new:
	// the journal's end).
	Pos uint64
	// QoS2 are the QoS 2 messages the session's holder sent and the
	// client did not complete (SaveQoS2; found sessions).
	QoS2 []QoS2Msg
}

// QoS2Msg is a QoS 2 message a session sent and its client did not
// complete: its packet id, its journal sequence (0: not stored), and
// whether the client answered PUBREC (Released: PUBREL was sent).
type QoS2Msg struct {
	PID      uint16
	Seq      uint64
	Released bool
}

// SessionSub is one stored subscription.
type SessionSub struct {
	Filter string
	QoS    byte
}

// SetSessionStore makes persistent sessions durable through st. Call it
// before Serve; nil (the default) keeps sessions in memory only.
func (s *Server) SetSessionStore(st SessionStore) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessStore = st
	if st != nil && s.posStop == nil {
		s.posStop = make(chan struct{})
		s.wg.Add(1)
		go s.positionLoop()
	}
}

// claimWait counts the claims of one session in progress on this node
// (between claim and register), and keeps the highest gen another node's
// claim of it was announced with meanwhile (Kick).
type claimWait struct {
	n      int
	kicked uint64
}

// claim is login's step before bind: c's session (key, its sessionKey)
// is claimed cluster-wide. false: the store could not be reached (the
// CONNECT is refused). Every claim is ended by claimDone, after register.
func (c *mqttConn) claim(key sessKey) bool {
	st := c.srv.sessStore
	if st == nil {
		return true
	}
	// A Kick for a claim made elsewhere after this one may arrive before
	// register; it is kept for register to see.
	c.srv.mu.Lock()
	if c.srv.claiming == nil {
		c.srv.claiming = make(map[sessKey]claimWait)
	}
	w := c.srv.claiming[key]
	w.n++
	c.srv.claiming[key] = w
	c.srv.mu.Unlock()
	ctx, done := c.authContext()
	cl, err := st.Claim(ctx, c.id.ID, c.clientID, c.cleanStart)
	if err == nil && c.cleanStart && !c.clean {
		// 5.0 Clean Start with a Session Expiry Interval: the stored
		// session is discarded (above), and the new one is kept (a
		// second claim, which finds no record: the first removed it).
		cl, err = st.Claim(ctx, c.id.ID, c.clientID, false)
	}
	done()
	if err != nil {
		c.srv.m.storeError()
		if ok, n := c.srv.storeLog.Allow(time.Second); ok {
			c.srv.log.Warn("mqtt: could not claim a session in the store; CONNECT refused",
				"id", c.id.ID, "client_id", c.clientID, "err", err, "remote", c.remoteAddr(), "since_last_logged", n)
		}
		return false
	}
	c.claimed = &cl
	return true
}

// claimDone ends the claim claim began.
func (s *Server) claimDone(key sessKey) {
	if s.sessStore == nil {
		return
	}
	s.mu.Lock()
	if w := s.claiming[key]; w.n > 1 {
		w.n--
		s.claiming[key] = w
	} else {
		delete(s.claiming, key)
	}
	s.mu.Unlock()
}

// resume fills a session new to this node from its claim. Server.mu and
// s.mu held. It returns whether a stored session was found (session
// present; the caller replays it from cl.Pos+1).
func (s *session) resume(cl *Claimed) (present bool) {
	s.gen = cl.Gen
	s.maxSeq = cl.Pos
	if s.clean {
		return false // no position to save, nothing to replay: no durable state
	}
	d := s.d()
	d.pos, d.written = cl.Pos, cl.Pos
	d.sinceWrite, d.writeAge = 0, 0
	for i := range d.hist {
		d.hist[i] = cl.Pos
	}
	if !cl.Found {
		return false
	}
	// Resumed from the store: the client may hold the QoS 2 ids the
	// node that held the session used; those it saved are finished
	// under the same ids (resumeQoS2). Those it used since its last save
	// are not known here: packet ids start at a random place rather than
	// at 1, where every node starts, so that reusing one is unlikely.
	s.nextPID = uint16(rand.Uint32())
	s.resumeQoS2(cl.QoS2)
	for _, sub := range cl.Subs {
		var t subTarget
		var ok bool
		t.gid, ok = s.srv.tp.subscribeTarget(s.principal, sub.Filter)
		if !ok {
			// A rule topic filter, if the rules (maybe changed since)
			// still allow it.
			t.topic, t.byGroup = s.srv.subscribeTopic(s.principal, s.device, sub.Filter)
			ok = t.topic
		}
		if !ok || len(sub.Filter) > s.srv.cfg.MaxFilterLen || len(s.subs) >= s.srv.cfg.MaxSubscriptions ||
			!s.lim.addSubBytes(subscriptionCost(sub.Filter), int64(s.srv.cfg.MaxSubscriptionBytes)) {
			continue // the limits hold for resumed sessions too
		}
		s.subs = append(s.subs, s.newSubscription(sub.Filter, min(sub.QoS, 2), t))
		if t.topic {
			s.srv.topicIdx.add(sub.Filter, s)
		}
	}
	return true
}

// replayLocked starts a replay of the journal from sequence from: live
// stored messages wait (parked) until the journal's are delivered, and
// the queue, whose stored messages the replay brings again in order, is
// emptied. s.mu held.
func (s *session) replayLocked(from uint64) {
	// What is queued comes again from the journal: from its lowest,
	// and not taken for a duplicate of itself. What the journal does
	// not hold (wills: not stored) waits with the
	// parked messages, which go after the replay.
	for i := range s.queue.len() {
		m := s.queue.at(i).m
		if m.Seq == 0 {
			s.d().parked = append(s.d().parked, m)
			continue
		}
		from = min(from, m.Seq)
		s.recent.forget(m.ID)
	}
	s.replaying = true
	s.d().replayGen++
	s.d().replayAt = from - 1
	s.floor = noFloor
	s.queue.reset()
	s.checkBacklog()
	go s.replayFrom(from, s.d().replayGen)
}

// replayFrom delivers what the journal holds for the session from
// sequence from on, within the session's backlog bounds (bounds.go),
// then the messages parked meanwhile, in sequence order. gen is the
// replay's; a newer replay or the session's end stops it.
func (s *session) replayFrom(from, gen uint64) {
	defer func() {
		if r := recover(); r != nil {
			s.srv.panicked("replay", r, debug.Stack())
		}
	}()
	st := s.srv.sessStore
	ctx, cancel := context.WithCancel(s.srv.stopping)
	defer cancel()
	start := from
	s.mu.Lock()
	kept := s.newKeptBacklog()
	s.mu.Unlock()
	for {
		s.srv.m.replay()
		kept.cutoff = s.srv.cfg.Now().Add(-s.srv.cfg.SessionBacklogAge)
		s.mu.Lock()
		topics := s.hasTopicSubs()
		s.mu.Unlock()
		last, gapTo, err := st.Replay(ctx, s.principal, from, topics, func(m *message.Message, stored time.Time) error {
			return s.keepReplayed(kept, m, stored, gen)
		})
		if err == nil && last+1 < from {
			last = from - 1 // nothing new since the previous pass
		}
		var stopped uint64 // the first kept message not delivered
		if err != nil {
			kept.reset() // read again, whole, next time
		} else {
			for m := kept.pop(); m != nil; m = kept.pop() {
				if err = s.deliverReplayed(m, gen); err != nil {
					stopped = m.Seq
					break
				}
			}
			for kept.pop() != nil { // what a stop left is read again
			}
		}
		s.mu.Lock()
		if s.removed || s.d().replayGen != gen {
			s.mu.Unlock()
			return
		}
		if gapTo != 0 {
			s.gapNotice(from, gapTo)
		}
		// The drops stand even if delivery stopped: the replay resumes
		// at the first kept message, past them.
		s.backlogNotice(kept)
		if err == nil && !topics && s.hasTopicSubs() {
			s.offerParkedTopics(from, last)
		}
		if err != nil {
			if !errors.Is(err, errReplayStopped) {
				s.srv.m.storeError()
				// Retried every position tick: one line a second at most
				// while the store is down, whatever the sessions.
				if ok, n := s.srv.storeLog.Allow(time.Second); ok {
					s.srv.log.Warn("mqtt: replay from the journal failed; the session's messages from its position wait for the next try",
						"id", s.principal, "client_id", s.clientID, "from", from, "err", err, "since_last_logged", n)
				}
			}
			resume := from
			if stopped != 0 {
				resume = stopped
			}
			if !topics && resume > from && s.hasTopicSubs() {
				s.offerParkedTopics(from, resume-1)
			}
			if s.conn != nil && ctx.Err() == nil {
				// Still connected (a client slow to make room, a store
				// slow to answer): read on from where it stopped after a
				// pause, live messages still parked. Letting them through
				// now would deliver them ahead of the rest of the backlog.
				s.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(replayRetry):
				}
				from = resume
				continue
			}
			// Offline, or the server stops: the position stays below
			// what was not replayed, and the next connection replays
			// from there (register).
			s.floor = min(s.floor, resume-1)
			last = resume - 1
		} else if s.parkOverflow {
			// What was parked and dropped is after last: read on.
			s.parkOverflow = false
			from = last + 1
			s.mu.Unlock()
			continue
		} else if s.tail {
			// Read what the home may have dropped until it learned
			// where the session is (register).
			s.tail = false
			s.d().replayAt = max(s.d().replayAt, last)
			s.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(s.srv.cfg.RingSettle):
			}
			from = last + 1
			continue
		}
		s.srv.log.Debug("mqtt: persistent session replayed from the journal", "id", s.principal, "client_id", s.clientID,
			"from", start, "to", last, "parked", len(s.d().parked), "err", err)
		s.maxSeq = max(s.maxSeq, last)
		if err == nil {
			s.d().replayedTo = max(s.d().replayedTo, last)
		}
		s.replaying = false
		s.releaseUnsent()
		for _, m := range s.takeParked() {
			// Under start: a late one (sent again, or long on its way)
			// the replay did not cover.
			if m.Seq > last || m.Seq < start {
				s.deliverLocked(m, nil)
			}
		}
		s.drainLocked()
		s.mu.Unlock()
		return
	}
}

// gapLevel is the topic level, under the session's private tree, of gap
// notices.
const gapLevel = "/$gap"

// gapNotice tells the client that the journal no longer held sequences
// from to to when the session came back (its age or size bounds): after
// the replayed messages (the journal's end of the replay is only known
// then), a PUBLISH on <private>/<id>/$gap, at the QoS of the
// subscription that matches it (none: not sent), carrying
// {"from_seq":from,"to_seq":to,"reason":"journal"}.
// The sequences name the cluster's journal, not the client's messages:
// some of them were for the session, maybe none (the notice of the
// session's own backlog bounds, backlogNotice, counts its drops).
// Counted and logged. s.mu held.
func (s *session) gapNotice(from, to uint64) {
	s.srv.m.gap()
	s.srv.log.Warn("mqtt: messages for a persistent session left the journal before it came back",
		"id", s.principal, "client_id", s.clientID, "from_seq", from, "to_seq", to)
	s.sendGapNotice(fmt.Appendf(nil, `{"from_seq":%d,"to_seq":%d,"reason":"journal"}`, from, to))
}

// bySeq orders messages by their journal sequence.
func bySeq(a, b *message.Message) int { return cmp.Compare(a.Seq, b.Seq) }

// deliverReplayed delivers one message read from the journal and kept,
// first waiting while the queue is over half full, so a long backlog
// streams through the window instead of overflowing the queue.
func (s *session) deliverReplayed(m *message.Message, gen uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var deadline *time.Timer
	start := time.Now()
	for !s.removed && s.d().replayGen == gen && s.conn != nil && s.queueHalfFull() {
		if time.Since(start) > replayWait {
			// A client that does not read holds no replay slot: the
			// replay stops (its position stays) and resumes later.
			if deadline != nil {
				deadline.Stop()
			}
			return errReplayStopped
		}
		if s.d().room == nil {
			s.d().room = sync.NewCond(&s.mu)
		}
		if deadline == nil {
			room := s.d().room
			deadline = time.AfterFunc(replayWait, func() {
				s.mu.Lock()
				room.Broadcast()
				s.mu.Unlock()
			})
		}
		s.d().room.Wait()
	}
	if deadline != nil {
		deadline.Stop()
	}
	if s.removed || s.d().replayGen != gen || s.conn == nil {
		return errReplayStopped
	}
	s.d().replayAt = max(s.d().replayAt, m.Seq)
	if s.d().sent.has(m.Seq) {
		return nil // acknowledged, or in flight and resent with the session
	}
	s.srv.m.replayed()
	s.rewindIfLate(m)
	s.offerLocked(m, nil)
	return nil
}

// overflowed is called when the queue of a durable session dropped
// stored messages (floor set): a connected session, rather than lose
// order, replays from the first one dropped; an offline one does at its
// next connection (register). s.mu held.
func (s *session) overflowed() {
	if s.conn != nil && !s.replaying && s.srv.sessStore != nil {
		s.replayLocked(s.floor + 1)
	}
}

// replayRetry is the pause before a replay that stopped (the store did
// not answer, the client did not make room) reads on.
const replayRetry = time.Second

// replayWait bounds how long a replay waits for a client to make room.
const replayWait = 10 * time.Second

// queueHalfFull: a replay waits before adding to the queue. s.mu held.
func (s *session) queueHalfFull() bool {
	cfg := &s.srv.cfg
	return s.queue.len() >= max(cfg.MaxQueued/2, 1) || s.queue.size() >= cfg.MaxQueuedBytes/2
}

// park keeps a live stored message that arrived during a replay. s.mu
// held.
func (s *session) park(m *message.Message) {
	if len(s.d().parked) >= s.srv.cfg.MaxQueued {
		s.parkOverflow = true // replayed again after the first pass
		return
	}
	s.d().parked = append(s.d().parked, m)
}

// position is the session's position now: below the lowest sequence
// queued or in flight, else the highest it was offered, and never above
// a drop (floor) or a ring change not replayed yet (ringFloor). s.mu
// held.
func (s *session) position() uint64 {
	w := s.maxSeq
	for i := range s.inflight {
		if q := s.inflight[i].m.Seq; q != 0 && q-1 < w {
			w = q - 1
		}
	}
	for _, r := range s.rel() { // QoS 2 awaiting PUBCOMP (qos2.go)
		if r.seq != 0 && r.seq-1 < w {
			w = r.seq - 1
		}
	}
	for i := range s.queue.len() {
		if q := s.queue.at(i).m.Seq; q != 0 && q-1 < w {
			w = q - 1
		}
	}
	// During a replay, nor above what it offered so far: a session
	// whose replays take long, or are cut short by reconnects, still
	// moves on.
	if s.replaying {
		w = min(w, s.d().replayAt)
	}
	// Nor above a message parked for after a replay or a ring change's
	// read (a late one among them is under the floor of that read).
	for _, m := range s.d().parked {
		if m.Seq != 0 && m.Seq-1 < w {
			w = m.Seq - 1
		}
	}
	// Nor above a drop, or a ring change whose replay is still due
	// (noFloor is the largest value: min leaves w alone).
	return min(w, s.floor, s.d().ringFloor)
}

// maxSent bounds the sequences a session remembers having sent: past
// it, a replay repeats some (QoS 1 allows duplicates).
const maxSent = 1024

// sentSeqs holds, in order, the stored sequences a durable session wrote
// to its connection at QoS 1 above the oldest position it keeps (hist):
// the range any replay reads again (a ring change's, one after a drop).
// Those messages were acknowledged, or are in flight and resent with
// the session: a replay skips them. The recent-id window alone (64 ids)
// let every ring change repeat up to four ticks of acknowledged
// messages to every session.
type sentSeqs []uint64

func (p *sentSeqs) add(seq uint64) {
	i, found := slices.BinarySearch(*p, seq)
	if !found && len(*p) < maxSent {
		*p = slices.Insert(*p, i, seq)
	}
}

func (p sentSeqs) has(seq uint64) bool {
	_, found := slices.BinarySearch(p, seq)
	return found
}

// count returns how many sequences lie in (after, upTo].
func (p sentSeqs) count(after, upTo uint64) int {
	if upTo <= after {
		return 0
	}
	i, _ := slices.BinarySearch(p, after+1)
	j, _ := slices.BinarySearch(p, upTo+1)
	return j - i
}

// trim forgets the sequences at or under upTo, which no replay reads.
func (p *sentSeqs) trim(upTo uint64) {
	i, _ := slices.BinarySearch(*p, upTo+1)
	if i == 0 {
		return
	}
	n := copy(*p, (*p)[i:])
	*p = (*p)[:n]
	if n == 0 && cap(*p) > 256 {
		*p = nil // a burst does not pin its size
	}
}

// noFloor: nothing was dropped.
const noFloor = ^uint64(0)

// pauseTicks: a tick this many intervals late means the process was
// paused, long enough for the failure detector to act on it.
const pauseTicks = 3

// posHistory is how many ticks of positions a session keeps: a ring
// change replays from the oldest, since the nodes see the change at
// different moments and a message may have missed this one before it
// saw it; and the position saved is the oldest too.
const posHistory = 4

// idleAdvance moves the position of a session with no subscription (a
// device that only publishes) up to seen, the newest sequence the node
// knew of a tick before: nothing stored can be for it. Without it such a
// session kept the position it started at, and every ring change's read
// of the journal began there (in the chaos runs, at sequence 1 each
// time; with a day of journal, a day of reading). A session with
// subscriptions does not move past what it was offered, however idle:
// a message for it can be late (an owner catching up after its NATS
// connection dropped parks its group's messages for seconds), and a
// position past it would skip it when the session moves. s.mu held.
func (s *session) idleAdvance(seen uint64) {
	if seen <= s.maxSeq || len(s.subs) > 0 || s.replaying || s.ringHold || s.floor != noFloor ||
		len(s.inflight) > 0 || len(s.rel()) > 0 || s.queue.len() > 0 || len(s.d().parked) > 0 {
		return
	}
	s.maxSeq = seen
}

// rewindIfLate rewinds the saved position under stored message m if m
// is late: at or under that position, not sent before (a resend after a
// confirmation timeout is not late), and for this session. One compare
// for the messages that are not. s.mu held.
func (s *session) rewindIfLate(m *message.Message) {
	if m.Seq == 0 || s.clean || s.srv.sessStore == nil || m.Seq > s.d().pos || s.d().sent.has(m.Seq) || s.recent.has(m.ID) {
		return
	}
	if _, _, ok := s.match(m); ok {
		s.rewind(m.Seq - 1)
	}
}

// rewind takes the saved position back to pos, under a stored message
// that reached the session after its position had passed it: one that
// was held up longer than the position's history (a group's owner
// catching up after its NATS connection dropped holds its messages for
// as long as the store does not answer), while other messages moved the
// position on. Until that message is delivered the position stays under
// it (it is queued, in flight or parked), so a session that moves to
// another node replays it from there instead of skipping it. s.mu held.
func (s *session) rewind(pos uint64) {
	s.srv.m.rewound()
	s.d().pos = pos
	for i := range s.d().hist {
		s.d().hist[i] = min(s.d().hist[i], pos)
	}
	if pos < s.d().written { // else the store holds a position under it already
		s.d().written = pos
		s.srv.sessStore.RewindPosition(s.principal, s.clientID, s.gen, pos)
	}
}

// tickPosition computes the position and returns the lowest of the last
// posHistory ticks, if it advanced past what was written and is due
// (save: true, recorded as written: the caller hands it to the store): a
// saved position is never above what a ring change's
// replay would start from, so a session that moves to another node
// meanwhile replays as much from there. s.mu held.
func (s *session) tickPosition() (pos uint64, save bool) {
	d := s.d()
	d.histAt = (d.histAt + 1) % posHistory
	d.hist[d.histAt] = s.position()
	low := slices.Min(d.hist[:])
	pos = max(d.pos, low)
	d.sinceWrite += int32(d.sent.count(d.pos, pos))
	d.pos = pos
	d.sent.trim(min(low, d.ringFloor, s.floor))
	if d.writeAge < posStaleTicks {
		d.writeAge++ // (no further: an int32 that counted on would wrap)
	}
	if d.pos <= d.written || !s.writeDue() {
		return 0, false
	}
	s.wrote(d.pos)
	return d.pos, true
}

// posIdleTicks: the position of a session that advanced without being
// sent anything (no subscription, or nothing matched) is written every
// this many ticks, so that its replay after a move does not start at
// its claim. posStaleTicks: any position that advanced is written at
// least this often (an hour at the default interval), so that a quiet
// session's saved position stays well inside the journal's age bound
// (a replay from below it would report a gap).
const (
	posIdleTicks  = 30
	posStaleTicks = 3600
)

// writeDue reports whether the position, advanced past what was
// written, is due to be written: once it passed Config.PositionWriteEvery
// stored messages sent since it was last written, so a delivery costs the
// store a fraction of a write however slowly the session's messages
// come. What is not written yet comes again as duplicates if the
// session moves without this node (its death, a takeover), never less:
// the store's position only lags. It is written whatever the count when
// the client has gone (one write as it leaves: a resume elsewhere
// repeats nothing). s.mu held.
func (s *session) writeDue() bool {
	d := s.d()
	return int(d.sinceWrite) >= s.srv.cfg.PositionWriteEvery || s.conn == nil ||
		d.sinceWrite == 0 && d.writeAge >= posIdleTicks || d.writeAge >= posStaleTicks
}

// wrote records that pos was handed to the store. s.mu held.
func (s *session) wrote(pos uint64) {
	d := s.d()
	d.written, d.sinceWrite, d.writeAge = pos, 0, 0
}

// positionLoop saves the positions of durable sessions every
// PositionInterval, and replays those whose queue dropped stored
// messages once it drained.
func (s *Server) positionLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PositionInterval)
	defer t.Stop()
	var list []*session
	var seen uint64 // the newest sequence this node knew of a tick ago
	last := time.Now()
	for {
		select {
		case <-s.posStop:
			return
		case <-t.C:
		}
		if gap := time.Since(last); gap > pauseTicks*s.cfg.PositionInterval {
			// This process stood still (SIGSTOP, a paused VM): the
			// others may have taken it for dead and delivered
			// elsewhere meanwhile, with no ring change seen here.
			s.log.Warn("mqtt: this node was paused; persistent sessions replay what they may have missed", "paused", gap.Round(time.Millisecond))
			s.RingChanged()
		}
		last = time.Now()
		s.mu.RLock()
		list = list[:0]
		s.eachSessionLocked(func(sess *session) {
			if !sess.clean {
				list = append(list, sess)
			}
		})
		st := s.sessStore
		s.mu.RUnlock()
		now, mono := time.Now(), monoNow()
		var due []*session // ring changes settled: one replay for them all
		var newest, lowest uint64 = 0, noFloor
		for i, sess := range list {
			sess.mu.Lock()
			if sess.d().ringAt != 0 && mono > sess.d().ringAt {
				sess.d().ringAt = 0
				due = append(due, sess)
			}
			sess.idleAdvance(seen)
			pos, save := sess.tickPosition()
			newest = max(newest, sess.maxSeq)
			if sess.conn != nil {
				lowest = min(lowest, sess.d().pos)
			}
			if !sess.replaying && !sess.removed && sess.floor != noFloor && sess.conn != nil {
				sess.replayLocked(sess.floor + 1) // a replay that failed
			}
			gen := sess.gen
			msgs, saveQoS2 := sess.qos2Due()
			sess.mu.Unlock()
			if save {
				st.SavePosition(sess.principal, sess.clientID, gen, pos)
			}
			if saveQoS2 {
				st.SaveQoS2(sess.principal, sess.clientID, gen, msgs)
			}
			list[i] = nil
		}
		var lag uint64
		newest = max(newest, s.knownJournalEnd())
		seen = newest
		if lowest < newest {
			lag = newest - lowest
		}
		s.m.posLag.Store(lag)
		if len(due) > 0 {
			s.ringReplay(due)
		}
		s.rebalance(now)
	}
}

// RingChanged is the node's word that the hash ring changed: homes moved,
// and until every node's view and attach records settle, a message may
// go to a node that does not deliver it here. Each durable session
// remembers its position before the change and parks the stored
// messages that come; RingSettle after the last change, the journal is
// read from the lowest of those positions, once for all the sessions
// due (ringReplay), then each delivers what it parked: what went astray
// arrives in order with the rest. What a session sent (sentSeqs) is not
// sent again. Goroutine-safe.
func (s *Server) RingChanged() { s.RingChangedFor(s.cfg.RingSettle) }

// RingChangedFor is RingChanged with the journal read no sooner than
// settle from now (never sooner than a change already waiting asks).
// The node's NATS connection coming back uses it with more than the
// store's timeout: a publisher whose message waited for a store that
// lost its leader may have later messages stored meanwhile, which are
// held back and withdrawn only once that message's answer (or timeout)
// comes; a read before then would deliver them ahead of it.
func (s *Server) RingChangedFor(settle time.Duration) {
	s.bal.ringChanged(time.Now())
	if s.sessStore == nil {
		return
	}
	epoch := s.ringEpoch.Add(1)
	at := monoNow() + int64(settle)
	s.mu.RLock()
	defer s.mu.RUnlock()
	s.eachSessionLocked(func(sess *session) {
		if sess.clean {
			return
		}
		sess.mu.Lock()
		d := sess.d()
		d.ringFloor = min(d.ringFloor, sess.position(), slices.Min(d.hist[:]))
		if at > d.ringAt {
			d.ringAt = at
		}
		sess.ringHold, d.ringEpoch = true, epoch
		sess.mu.Unlock()
	})
}

// RingReplayer is a SessionStore that reads the journal once for all
// the sessions of a node: after a ring change that is one read instead
// of one per session.
type RingReplayer interface {
	// ReplayAll calls fn, in journal order, for every stored message
	// from sequence from to the journal's end when it started, with the
	// principals it is for (the group's members now, or the addressee;
	// none for a topic message, whose sessions the server finds itself;
	// fn does not keep the slice), and returns that end.
	ReplayAll(ctx context.Context, from uint64, fn func(m *message.Message, recipients []string)) (last uint64, err error)
}

// ringReplay ends the ring holds of sessions whose change settled: with a
// RingReplayer, one read of the journal from the lowest of their
// positions is offered to them all, in a goroutine; otherwise (or if
// that read fails) each replays on its own (ringSettled).
func (s *Server) ringReplay(due []*session) {
	rr, ok := s.sessStore.(RingReplayer)
	if !ok || !s.ringRunning.CompareAndSwap(false, true) {
		for _, sess := range due {
			sess.mu.Lock()
			if !ok {
				sess.ringSettled()
			} else {
				sess.d().ringAt = monoNow() // a read is running: join the next one
			}
			sess.mu.Unlock()
		}
		return
	}
	epoch := s.ringEpoch.Load()
	from := noFloor
	for _, sess := range due {
		sess.mu.Lock()
		if sess.ringHold && sess.d().ringFloor != noFloor {
			from = min(from, sess.d().ringFloor+1)
		}
		sess.mu.Unlock()
	}
	if from == noFloor { // nothing to read (cannot happen: a position is a sequence)
		for _, sess := range due {
			sess.mu.Lock()
			if sess.ringHold && sess.d().ringAt == 0 {
				sess.ringSettled()
			}
			sess.mu.Unlock()
		}
		s.ringRunning.Store(false)
		return
	}
	s.m.replay()
	go func() {
		defer s.ringRunning.Store(false)
		defer func() {
			if r := recover(); r != nil {
				s.panicked("ring replay", r, debug.Stack())
				for _, sess := range due { // no hold is left on
					sess.mu.Lock()
					if sess.ringHold && sess.d().ringAt == 0 {
						sess.ringSettled()
					}
					sess.mu.Unlock()
				}
			}
		}()
		last, err := rr.ReplayAll(s.stopping, from, func(m *message.Message, rcpts []string) {
			s.deliverRing(m, rcpts, epoch)
		})
		if err != nil && s.stopping.Err() == nil {
			s.m.storeError()
			s.log.Warn("mqtt: reading the journal after a ring change failed; each session replays on its own", "from", from, "err", err)
		} else {
			s.log.Info("mqtt: read the journal after a ring change", "from", from, "to", last, "sessions", len(due))
		}
		for _, sess := range due {
			sess.mu.Lock()
			switch {
			case sess.removed || !sess.ringHold || sess.d().ringAt != 0:
				// Gone, or held again by a later change: the next read.
			case err != nil || sess.replaying || sess.ringSkipped:
				// (A session replaying on its own took nothing, or not
				// all, from this read: it replays from before the
				// change next.)
				sess.ringSettled()
			default:
				sess.ringDone(last)
			}
			sess.mu.Unlock()
		}
	}()
}

// offerParkedTopics offers, in sequence order, the parked topic messages
// with sequences from from to last: a replay pass read that range
// without topic messages (the session had no topic filter when it
// began), so the replay's end would drop them as covered, and a filter
// subscribed since wants them: now, ahead of the next pass's messages,
// and once (a later pass starts past last). s.mu held.
func (s *session) offerParkedTopics(from, last uint64) {
	var due []*message.Message
	kept := s.d().parked[:0]
	for _, m := range s.d().parked {
		if m.Kind == message.Topic && m.Seq >= from && m.Seq <= last {
			due = append(due, m)
		} else {
			kept = append(kept, m)
		}
	}
	clear(s.d().parked[len(kept):])
	s.d().parked = kept
	slices.SortFunc(due, bySeq)
	for _, m := range due {
		if s.d().sent.has(m.Seq) {
			continue
		}
		s.d().replayAt = max(s.d().replayAt, m.Seq)
		s.rewindIfLate(m)
		s.offerLocked(m, nil)
	}
}

// topicPass is deliverRing's one pass for a topic message.
var topicPass = []string{""}

// deliverRing offers a message read back after a ring change to the
// sessions of its recipients held for that change (epoch).
func (s *Server) deliverRing(m *message.Message, rcpts []string, epoch uint64) {
	var arr [16]*session
	if m.Kind == message.Topic {
		rcpts = topicPass // one pass, over the sessions the topic index finds
	}
	for _, r := range rcpts {
		var list []*session
		if m.Kind == message.Topic {
			list = s.topicIdx.match(m.To, arr[:0])
		} else {
			s.mu.RLock()
			list = append(arr[:0], s.sessionsOf(r)...)
			s.mu.RUnlock()
		}
		for i, sess := range list {
			sess.mu.Lock()
			if !sess.removed && sess.ringHold && sess.d().ringEpoch <= epoch && m.Seq > sess.d().ringFloor {
				if sess.replaying {
					sess.ringSkipped = true
				} else if !sess.d().sent.has(m.Seq) {
					s.m.replayed()
					sess.rewindIfLate(m) // went astray, and the saved position may have passed it
					sess.offerLocked(m, nil)
				}
			}
			sess.mu.Unlock()
			list[i] = nil
		}
	}
}

// ringDone ends a ring hold after the journal was read up to last: the
// parked messages after it follow. s.mu held.
func (s *session) ringDone(last uint64) {
	floor := s.d().ringFloor
	s.ringHold, s.d().ringFloor, s.ringSkipped = false, noFloor, false
	s.maxSeq = max(s.maxSeq, last)
	for _, m := range s.takeParked() {
		// At or under floor: a late one (sent again, or long on its
		// way) the read did not offer.
		if m.Seq > last || m.Seq <= floor {
			s.deliverLocked(m, nil)
		}
	}
	if s.parkOverflow {
		// Some were dropped: they are after last, replay from there.
		s.parkOverflow = false
		s.floor = min(s.floor, last)
		s.overflowed()
	}
	s.drainLocked()
}

// ringSettled ends a ring hold without a shared read: the session
// replays on its own, from its position before the change, then what it
// parked (connected: at once, through positionLoop; offline: the parked
// messages are queued now and the replay waits for the client). s.mu
// held.
func (s *session) ringSettled() {
	if s.replaying {
		// A replay reads the journal whatever the ring: what went
		// astray up to where it reads is in it, and one more read once
		// it reached the end covers the rest. (Setting the floor instead
		// made every session that replayed through a ring change replay
		// again from before the change, and again at the next one.)
		s.tail = true
		s.d().ringFloor, s.d().ringAt, s.ringHold, s.ringSkipped = noFloor, 0, false, false
		return
	}
	// What the last replay read (replayedTo) needs no second read.
	s.floor = min(s.floor, max(s.d().ringFloor, s.d().replayedTo))
	s.d().ringFloor, s.d().ringAt, s.ringHold, s.ringSkipped = noFloor, 0, false, false
	if s.conn != nil || s.replaying {
		if !s.replaying && s.conn != nil {
			s.replayLocked(s.floor + 1) // keeps the parked messages for after
		}
		return
	}
	s.parkOverflow = false
	for _, m := range s.takeParked() {
		s.offerLocked(m, nil)
	}
}

// takeParked returns the parked messages in sequence order and forgets
// them. s.mu held.
func (s *session) takeParked() []*message.Message {
	parked := s.d().parked
	s.d().parked = nil
	slices.SortFunc(parked, bySeq)
	return parked
}

// savePositionsNow saves every durable session's position as of the last
// tick (the server is closing). Server.mu held.
func (s *Server) savePositionsNow() {
	st := s.sessStore
	if st == nil {
		return
	}
	s.eachSessionLocked(func(sess *session) {
		sess.mu.Lock()
		if !sess.clean && !sess.replaying {
			d := sess.d()
			w := max(d.pos, min(sess.position(), slices.Min(d.hist[:])))
			if w > d.written {
				d.pos = w
				sess.wrote(w)
				st.SavePosition(sess.principal, sess.clientID, sess.gen, w)
			}
			if msgs, due := sess.qos2Due(); due {
				st.SaveQoS2(sess.principal, sess.clientID, sess.gen, msgs)
			}
		}
		sess.mu.Unlock()
	})
}

// saveSubs writes the subscriptions of a durable session. Called without
// s.mu: it takes it for the copy.
func (s *session) saveSubs() {
	st := s.srv.sessStore
	if st == nil || s.clean {
		return
	}
	s.mu.Lock()
	if s.removed {
		s.mu.Unlock()
		return
	}
	subs := make([]SessionSub, len(s.subs))
	for i, sub := range s.subs {
		subs[i] = SessionSub{Filter: sub.filter, QoS: sub.qos}
	}
	gen := s.gen
	s.mu.Unlock()
	st.SaveSubs(s.principal, s.clientID, gen, subs)
}

// Kick closes and forgets the session (principal, clientID) on this node
// when its claim by generation gen (on another node) is newer than this
// node's: the client connected elsewhere. Its will is published, as for
// a takeover on one node. Goroutine-safe.
func (s *Server) Kick(principal, clientID string, gen uint64) {
	key := sessionKey(principal, clientID)
	// Most claims are of sessions this node neither holds nor claims: a
	// read lock tells, without stalling deliveries. A claim that begins
	// after this look takes a gen above gen (its store saw the notice).
	s.mu.RLock()
	_, claiming := s.claiming[key]
	here := s.sessionLocked(key) != nil
	s.mu.RUnlock()
	if !claiming && !here {
		return
	}
	defer s.flushPresence()
	s.mu.Lock()
	if w, ok := s.claiming[key]; ok && gen > w.kicked {
		w.kicked = gen
		s.claiming[key] = w
	}
	sess := s.sessionLocked(key)
	if sess == nil {
		s.mu.Unlock()
		return
	}
	sess.mu.Lock()
	if sess.gen >= gen {
		sess.mu.Unlock()
		s.mu.Unlock()
		return
	}
	victim := sess.conn
	sess.moved = true // resumed elsewhere: a delayed will is not due (mqtt5.go)
	sess.mu.Unlock()
	s.m.kicked()
	s.removeSessionLocked(sess, true)
	s.mu.Unlock()
	if victim != nil {
		s.log.Info("mqtt: session taken over on another node", "id", principal, "client_id", clientID, "remote", victim.remoteAddr())
		victim.stopForwarding()
		victim.kill(true, packet.CodeSessionTakenOver)
	}
}
