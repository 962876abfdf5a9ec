package router

import (
	"sync"

	"github.com/pushring/pushring/flow"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// QoS 1 flow control, the router's two halves (fanout/ack.go has the
// protocol between nodes):
//
//   - publishing side: with an AckForwarder, a QoS 1 PUBLISH is
//     acknowledged when the Forwarder's Receipt says every delivering
//     node took the message in, not when it was handed on. PUBACKs still
//     leave in the order of the PUBLISHes (MQTT-4.6.0-2): each connection
//     keeps its unanswered ones in a FIFO (heldAcks).
//   - delivering side: DeliverHeld tells the Forwarder's node to hold its
//     confirmation while a connected recipient's queue is backlogged
//     (at a quarter of MaxQueued, see backlogged), until the queue is back
//     under it. A session backlogged
//     for longer than holdLimit is too slow to wait for: it stops
//     holding anybody and its queue drops its oldest messages when full,
//     as before (a stuck member must not stall a group).

// AckForwarder is a Forwarder that tells when a QoS 1 message was stored
// and when every node delivering it took it in. fanout implements it.
type AckForwarder interface {
	// ForwardAcked is Forward for a QoS 1 message: r.Stored(tag, err)
	// says whether it was stored (only then may it be acknowledged),
	// r.Accepted(tag) that it was taken in (or given up on by the
	// Forwarder's timeout). On an error r is never called. m and
	// m.Payload are not kept, as for Forward.
	ForwardAcked(m *message.Message, r flow.Receipt, tag uint64) error
}

// holdLimit: a session backlogged this long no longer holds confirmations.
const holdLimit = time.Second

// maxHeldAcks bounds the QoS 1 PUBLISHes one connection may have
// unanswered: as MQTT 5's default Receive Maximum, whose excess is a
// protocol error there too.
const maxHeldAcks = 65535

// hold is one delivery's wait on backlogged sessions: n counts the
// sessions still backlogged (plus one while DeliverHeld runs); at zero
// r.HoldReleased(seq).
type hold struct {
	n   atomic.Int32
	r   flow.Releaser
	seq uint64
}

func (h *hold) release() {
	if h.n.Add(-1) == 0 {
		h.r.HoldReleased(h.seq)
	}
}

// DeliverHeld is Deliver for a QoS 1 message whose publisher waits (the
// fanout Throttler): false when every connected recipient's queue has
// room; true when some are backlogged, and then r.HoldReleased(seq) follows
// once, when those have drained under the hold mark, gone offline or been
// backlogged past holdLimit.
func (s *Server) DeliverHeld(m *message.Message, recipients []string, r flow.Releaser, seq uint64) bool {
	hc := holdCtx{r: r, seq: seq}
	s.deliver(m, recipients, &hc)
	if hc.h == nil {
		return false
	}
	// Sessions that drained meanwhile released their part already; if
	// all did, there is nothing to wait for and no HoldReleased follows.
	return hc.h.n.Add(-1) != 0
}

// holdCtx is DeliverHeld's state while it delivers: the hold is made by
// the first backlogged session, so a delivery that holds nobody
// allocates nothing.
type holdCtx struct {
	h   *hold
	r   flow.Releaser
	seq uint64
}

// backlogged: the session's queue is past the mark at which confirmations
// wait. s.mu held.
func (s *session) backlogged() bool {
	cfg := &s.srv.cfg
	return s.queue.len() >= max(cfg.MaxQueued/4, 1) || s.queue.bytes >= cfg.MaxQueuedBytes/4
}

// backlog is a session's part in holds: the deliveries whose publishers
// wait for it, since when it is backlogged. Allocated the first time it
// is, so sessions that keep up carry one pointer.
type backlog struct {
	waiters []*hold
	since   time.Time // zero: not backlogged
}

// holdOn adds this session to the delivery's hold after the delivery
// left it backlogged. s.mu held, s.conn set.
func (s *session) holdOn(hc *holdCtx) {
	now := s.srv.cfg.Now()
	if s.backlog == nil {
		s.backlog = new(backlog)
	}
	b := s.backlog
	if b.since.IsZero() {
		b.since = now
	}
	if now.Sub(b.since) > holdLimit {
		// Too slow to wait for (see the top of this file).
		if len(b.waiters) > 0 {
			s.srv.m.slowSession()
			s.releaseWaiters()
		}
		return
	}
	if hc.h == nil {
		hc.h = &hold{r: hc.r, seq: hc.seq}
		hc.h.n.Store(1) // DeliverHeld's own reference
	}
	hc.h.n.Add(1)
	b.waiters = append(b.waiters, hc.h)
}

// checkBacklog releases the waiters once the queue is back under the mark.
// s.mu held.
func (s *session) checkBacklog() {
	if b := s.backlog; b != nil && !b.since.IsZero() && !s.backlogged() {
		b.since = time.Time{}
		s.releaseWaiters()
	}
}

// offlineBacklog is releaseWaiters for a session whose connection went
// away (offline, taken over, removed): its backlog time starts again with
// the next connection, so a session that reconnects to a full queue is
// waited for like any other. s.mu held.
func (s *session) offlineBacklog() {
	s.releaseWaiters()
	if s.backlog != nil {
		s.backlog.since = time.Time{}
	}
}

// releaseWaiters lets every delivery waiting on this session go. Called
// with s.mu held whenever the session stops counting: drained, offline,
// taken over, removed, too slow (then since stays: it is not waited for
// again until it drains).
func (s *session) releaseWaiters() {
	b := s.backlog
	if b == nil {
		return
	}
	for i, h := range b.waiters {
		h.release()
		b.waiters[i] = nil
	}
	if cap(b.waiters) > 64 {
		b.waiters = nil
	} else {
		b.waiters = b.waiters[:0]
	}
}

// heldAcks is a connection's FIFO of QoS 1 PUBACKs not yet sent, in the
// order the PUBLISHes arrived. Every QoS 1 PUBLISH gets the next tag;
// list[head+i] has tag base+i, and tags under base were answered.
//
// A PUBACK goes out, in order, once its message is confirmed (Accepted),
// or earlier while fewer than Config.MaxUnconfirmed PUBACKed messages of
// this connection are still unconfirmed (early). So a publisher that
// keeps up with its recipients never waits for a confirmation's round
// trip, and one that outruns them is held at most MaxUnconfirmed messages
// ahead.
type heldAcks struct {
	mu   sync.Mutex
	list []heldAck
	head int    // list[:head] are answered, waiting to be compacted away
	base uint64 // tag of list[head]
	// early: tags PUBACKed before their confirmation came (at most
	// MaxUnconfirmed; kept allocated once made, so a publisher that is
	// always a little ahead does not make a map per burst).
	early  map[uint64]struct{}
	closed bool
}

type heldAck struct {
	pid       uint16
	ready     bool // handed on (or refused): may be answered
	confirmed bool // Accepted, or needs no confirmation (refused)
}

// holdAck queues a PUBACK for pid that is not sent before ready(tag). It
// returns false when maxHeldAcks are unanswered already. The FIFO is
// allocated with the first QoS 1 PUBLISH (subscribers that never publish
// do without), before any Receipt can run.
func (c *mqttConn) holdAck(pid uint16) (tag uint64, ok bool) {
	if c.acks == nil {
		c.acks = new(heldAcks)
	}
	q := c.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.list)-q.head >= maxHeldAcks {
		return 0, false
	}
	q.list = append(q.list, heldAck{pid: pid})
	return q.base + uint64(len(q.list)-q.head-1), true
}

// readyAck marks tag's message handed on: its PUBACK may go (early, or on
// confirmation).
func (c *mqttConn) readyAck(tag uint64) {
	q := c.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := q.index(tag); i >= 0 {
		q.list[i].ready = true
		c.sendAcksLocked()
	}
}

// unholdAck takes back the entry holdAck just added (the Forwarder
// refused the message, so Accepted will not come). It was never ready,
// so nothing after it was sent.
func (c *mqttConn) unholdAck(tag uint64) {
	q := c.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := q.index(tag); i == len(q.list)-1 {
		q.list = q.list[:i]
	}
}

// puback answers QoS 1 PUBLISH pid, which needs no confirmation (refused):
// at once when nothing before it waits, else behind the ones that do
// (order, MQTT-4.6.0-2).
func (c *mqttConn) puback(pid uint16) {
	q := c.acks
	if q == nil {
		c.writeAck(packet.PUBACK, pid)
		return
	}
	q.mu.Lock()
	if len(q.list) == q.head {
		q.mu.Unlock()
		c.writeAck(packet.PUBACK, pid)
		return
	}
	q.list = append(q.list, heldAck{pid: pid, ready: true, confirmed: true})
	c.sendAcksLocked()
	q.mu.Unlock()
}

// Stored is the Receipt's word that the QoS 1 message with tag was
// stored: its PUBACK may go (at once or on confirmation, see heldAcks).
// A message the store refused gets no PUBACK: the connection is closed,
// counted and logged, so the client sends it again (to a store that may
// be back) after reconnecting; and the connection's later messages are
// not forwarded even if stored, since the client sends them again after
// that one (forwarded now they would arrive first). The same holds once
// the server closed the connection for a takeover or its shutdown.
// Goroutine-safe.
func (c *mqttConn) Stored(tag uint64, err error) bool {
	if err == nil {
		if c.noForward.Load() {
			return false
		}
		c.readyAck(tag)
		return true
	}
	c.noForward.Store(true)
	c.srv.m.refusal(reasonStoreFailed)
	if ok, n := c.srv.storeLog.Allow(time.Second); ok {
		c.srv.log.Warn("mqtt: a QoS 1 message could not be stored; closing its publisher's connection without PUBACK",
			"id", c.id.ID, "err", err, "remote", c.remote, "since_last_logged", n)
	}
	c.kill(false)
	return false
}

// Accepted is the Receipt of the QoS 1 message with tag. Goroutine-safe;
// a tag it does not know (the connection closed meanwhile) is ignored.
func (c *mqttConn) Accepted(tag uint64) {
	q := c.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if tag < q.base {
		delete(q.early, tag) // answered already: only the count of early ones changes
	} else if i := q.index(tag); i >= 0 {
		q.list[i].confirmed = true
	} else {
		return
	}
	c.sendAcksLocked()
}

// index is the position of tag in q.list, or -1. q.mu held.
func (q *heldAcks) index(tag uint64) int {
	if tag < q.base {
		return -1
	}
	i := int(tag-q.base) + q.head
	if i >= len(q.list) {
		return -1
	}
	return i
}

// sendAcksLocked writes the PUBACKs at the head of the FIFO that may go,
// in one write. q.mu held.
func (c *mqttConn) sendAcksLocked() {
	q := c.acks
	maxAhead := max(c.srv.cfg.MaxUnconfirmed, 0)
	if q.head == len(q.list) || !q.list[q.head].ready {
		return
	}
	buf, _, _ := c.t.beginWrite()
	for q.head < len(q.list) {
		e := &q.list[q.head]
		if !e.ready || (!e.confirmed && len(q.early) >= maxAhead) {
			break
		}
		if !e.confirmed {
			if q.early == nil {
				q.early = make(map[uint64]struct{}, maxAhead)
			}
			q.early[q.base] = struct{}{}
		}
		buf = packet.AppendAck(buf, packet.PUBACK, e.pid)
		q.head++
		q.base++
	}
	c.t.endWrite(buf)
	switch {
	case q.head == len(q.list):
		q.list, q.head = q.list[:0], 0
		if cap(q.list) > 1024 {
			q.list = nil
		}
	case q.head > 1024 && q.head > len(q.list)/2:
		q.list = q.list[:copy(q.list, q.list[q.head:])]
		q.head = 0
	}
}

// dropAcks forgets the unanswered PUBLISHes of a closed connection.
func (c *mqttConn) dropAcks() {
	q := c.acks
	if q == nil {
		return
	}
	q.mu.Lock()
	q.closed = true
	q.list, q.head, q.early = nil, 0, nil
	q.mu.Unlock()
}
