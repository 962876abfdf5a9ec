package router

import (
	"fmt"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// Per-session backlog bounds. The journal keeps every stored message for
// the whole cluster up to its own age and size; what one persistent
// session gets back from it when it replays is bounded on top of that
// by SessionBacklogMessages, SessionBacklogBytes and SessionBacklogAge.
//
// A replay reads the journal to its end first, keeping for the session
// only the newest messages within the bounds (keptBacklog, a ring whose
// size the bounds fix, whatever the journal holds), then delivers them
// in order through the queue with the replay's usual backpressure. What
// it dropped, always the oldest, is counted by bound, logged, and told
// to the client in one notice after the kept messages (backlogNotice).
// The session's position then moves past the dropped messages like past
// delivered ones, and a stored message at or below the newest dropped
// is not offered to it again (a ring change's shared read, or another
// replay, from an older position).
//
// The bounds apply to every replay of a session from the journal: a
// resume on another node or after a restart, a queue that overflowed,
// and a session held here while offline whose queue outgrew the bounds
// or waited longer than the age bound (register replays it rather than
// deliver its queue). The shared read after a ring change is not
// bounded: it covers the seconds since the change, and a session whose
// queue overflows on it replays, bounded, from there.

// keptBacklog collects what one replay reads for a session: the newest
// messages, at most max of them and maxBytes of payload (a single larger
// message is kept alone), none stored before cutoff. It counts what it
// drops, by bound, and the range of their sequences. Not goroutine-safe:
// the replay's reading goroutine owns it.
type keptBacklog struct {
	buf           []*message.Message // ring: buf[(head+i)%len(buf)] for i < n, oldest first
	head, n       int
	bytes         int
	max, maxBytes int
	cutoff        time.Time
	drops         [len(backlogBounds)]uint64
	from, to      uint64 // sequences of the oldest and newest dropped (0: none)
	reason        int    // the bound that dropped the newest of them
	// noticed is the newest sequence an earlier notice of the session
	// covered: dropped again (a replay from an older position), those
	// are not counted or told twice.
	noticed uint64
}

// minKeptRing is the ring's first size; it doubles up to max as needed.
const minKeptRing = 64

// newKeptBacklog makes the keptBacklog of one replay. s.mu held.
func (s *session) newKeptBacklog() *keptBacklog {
	cfg := &s.srv.cfg
	return &keptBacklog{max: cfg.SessionBacklogMessages, maxBytes: cfg.SessionBacklogBytes, noticed: s.dropNoticed}
}

// add keeps m, dropping what it must: m itself if it was stored before
// the cutoff, else the oldest kept while over the bounds.
func (k *keptBacklog) add(m *message.Message, stored time.Time) {
	if !stored.IsZero() && stored.Before(k.cutoff) {
		k.drop(m, boundAge)
		return
	}
	size := m.Size()
	for k.n > 0 && (k.n >= k.max || k.bytes+size > k.maxBytes) {
		bound := boundBytes
		if k.n >= k.max {
			bound = boundMessages
		}
		k.drop(k.pop(), bound)
	}
	if k.n == len(k.buf) {
		k.grow()
	}
	k.buf[(k.head+k.n)%len(k.buf)] = m
	k.n++
	k.bytes += size
}

func (k *keptBacklog) grow() {
	size := min(max(2*len(k.buf), minKeptRing), k.max)
	buf := make([]*message.Message, size)
	for i := range k.n {
		buf[i] = k.buf[(k.head+i)%len(k.buf)]
	}
	k.buf, k.head = buf, 0
}

// pop takes the oldest message kept; nil when none is left.
func (k *keptBacklog) pop() *message.Message {
	if k.n == 0 {
		return nil
	}
	m := k.buf[k.head]
	k.buf[k.head] = nil
	k.head = (k.head + 1) % len(k.buf)
	k.n--
	k.bytes -= m.Size()
	return m
}

func (k *keptBacklog) drop(m *message.Message, bound int) {
	if m.Seq <= k.noticed {
		return
	}
	k.drops[bound]++
	if k.from == 0 || m.Seq < k.from {
		k.from = m.Seq
	}
	if m.Seq >= k.to {
		k.to, k.reason = m.Seq, bound
	}
}

// dropped is how many messages were dropped.
func (k *keptBacklog) dropped() uint64 {
	var n uint64
	for _, d := range k.drops {
		n += d
	}
	return n
}

// reset forgets what is kept and what was dropped (a read that failed
// is read again: its drops are not the session's yet).
func (k *keptBacklog) reset() {
	for k.pop() != nil {
	}
	k.drops = [len(backlogBounds)]uint64{}
	k.from, k.to, k.reason = 0, 0, 0
}

// keepReplayed is a replay's journal callback: m, read back for the
// session, is kept if its subscriptions match it, within the bounds. It
// never waits on the client: delivery follows the read. Messages the
// session was already sent count: a replay from an older position (a
// ring change, a position a few ticks behind) keeps the same newest
// ones, which delivery then skips as duplicates, rather than older ones
// the bounds dropped.
func (s *session) keepReplayed(k *keptBacklog, m *message.Message, stored time.Time, gen uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed || s.d().replayGen != gen || s.conn == nil {
		return errReplayStopped
	}
	if _, _, ok := s.match(m); !ok {
		return nil
	}
	k.add(m, stored)
	return nil
}

// backlogNotice counts, logs and tells the client what k dropped, then
// forgets it: a PUBLISH on <private>/<id>/$gap, at the QoS of the
// subscription that matches it (none: not sent), carrying
// {"from_seq":F,"to_seq":T,"dropped":N,"reason":R}: the sequences of the
// oldest and newest messages dropped, how many, and the bound that
// dropped the newest ("messages", "bytes" or "age"). s.mu held.
func (s *session) backlogNotice(k *keptBacklog) {
	n := k.dropped()
	if n == 0 {
		return
	}
	for b, d := range k.drops {
		if d > 0 {
			s.srv.m.backlogDropped(b, d)
		}
	}
	// A client reconnecting in a loop replays, and drops, every time:
	// at most a line a second.
	if ok, missed := s.srv.backlogLog.Allow(time.Second); ok {
		s.srv.log.Info("mqtt: a persistent session's replay dropped its oldest messages over the backlog bounds",
			"id", s.principal, "client_id", s.clientID, "from_seq", k.from, "to_seq", k.to, "dropped", n,
			"by_messages", k.drops[boundMessages], "by_bytes", k.drops[boundBytes], "by_age", k.drops[boundAge],
			"since_last_logged", missed)
	}
	s.sendGapNotice(fmt.Appendf(nil, `{"from_seq":%d,"to_seq":%d,"dropped":%d,"reason":%q}`,
		k.from, k.to, n, backlogBounds[k.reason]))
	s.dropNoticed = max(s.dropNoticed, k.to)
	k.reset()
	k.noticed = s.dropNoticed
}

// sendGapNotice offers payload on <private>/<id>/$gap, at the QoS of the
// best subscription that matches that topic; none: not sent. s.mu held.
func (s *session) sendGapNotice(payload []byte) {
	s.topicBuf = append(append(append(s.topicBuf[:0], s.srv.tp.privateSlash...), s.principal...), gapLevel...)
	best := -1
	for i := range s.subs {
		if sub := &s.subs[i]; sub.group == "" && int(sub.qos) > best && packet.Match(sub.filter, s.topicBuf) {
			best = int(sub.qos)
		}
	}
	if best < 0 {
		return
	}
	m := &message.Message{ID: s.srv.ids.Next(), Kind: message.Direct, To: s.principal, QoS: byte(best), Payload: payload}
	s.offer(outMsg{m: m, form: formGap, qos: byte(best)})
}

// queueOverBounds says whether the queue of a persistent session held
// here while offline outgrew the backlog bounds, or waited longer than
// the age bound: its client, back, gets a bounded replay from the
// journal instead (register). s.mu held.
func (s *session) queueOverBounds() bool {
	cfg := &s.srv.cfg
	if s.srv.sessStore == nil || s.clean || s.queue.len() == 0 {
		return false
	}
	return s.queue.len() > cfg.SessionBacklogMessages || s.queue.size() > cfg.SessionBacklogBytes ||
		s.offlineSince != 0 && cfg.Now().Sub(time.Unix(0, s.offlineSince)) > cfg.SessionBacklogAge
}
