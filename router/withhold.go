package router

import (
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/flow"
	"github.com/pushring/pushring/message"
)

// QoS 1 flow control, the delivering side (puback.go has the publishing
// side, fanout/ack.go the protocol between nodes): DeliverAcked tells
// the Forwarder's node to withhold its confirmation while a connected
// recipient's queue is backlogged (at a quarter of MaxQueued, the
// withhold mark, see backlogged), until the queue is back under it. A
// session backlogged for longer than withholdLimit is too slow to wait
// for: it stops withholding anybody's confirmation and its queue drops
// its oldest messages when full, as before (a stuck member must not
// stall a group).

// withholdLimit: a session backlogged this long no longer has
// confirmations withheld for it.
const withholdLimit = time.Second

// withholding is one delivery's confirmation, withheld for backlogged
// sessions: n counts the sessions still backlogged (plus one while
// DeliverAcked runs); at zero r.Confirm(seq).
type withholding struct {
	n   atomic.Int32
	r   flow.Releaser
	seq uint64
}

func (h *withholding) release() {
	if h.n.Add(-1) == 0 {
		h.r.Confirm(h.seq)
	}
}

// DeliverAcked is Deliver for a QoS 1 message whose publisher waits (the
// fanout AckDeliverer): false when every connected recipient's queue has
// room; true when some are backlogged, and then r.Confirm(seq) follows
// once, when those have drained under the withhold mark, gone offline or
// been backlogged past withholdLimit.
func (s *Server) DeliverAcked(m *message.Message, recipients []string, r flow.Releaser, seq uint64) bool {
	hc := withholdCtx{r: r, seq: seq}
	s.deliver(m, recipients, &hc)
	if hc.h == nil {
		return false
	}
	// Sessions that drained meanwhile released their part already; if
	// all did, there is nothing to wait for and no Confirm follows.
	return hc.h.n.Add(-1) != 0
}

// withholdCtx is DeliverAcked's state while it delivers: the withholding
// is made by the first backlogged session, so a delivery whose
// recipients keep up allocates nothing.
type withholdCtx struct {
	h   *withholding
	r   flow.Releaser
	seq uint64
}

// backlogged: the session's queue is past the withhold mark, at which
// confirmations are withheld. s.mu held.
func (s *session) backlogged() bool {
	cfg := &s.srv.cfg
	return s.queue.len() >= max(cfg.MaxQueued/4, 1) || s.queue.size() >= cfg.MaxQueuedBytes/4
}

// backlog is a session's part in withholdings: the deliveries whose
// confirmations wait for it, since when it is backlogged. Allocated the first time it
// is, so sessions that keep up carry one pointer.
type backlog struct {
	waiters []*withholding
	since   time.Time // zero: not backlogged
}

// withholdOn adds this session to the delivery's withholding after the
// delivery left it backlogged. s.mu held, s.conn set.
func (s *session) withholdOn(hc *withholdCtx) {
	now := s.srv.cfg.Now()
	if s.backlog == nil {
		s.backlog = new(backlog)
	}
	b := s.backlog
	if b.since.IsZero() {
		b.since = now
	}
	if now.Sub(b.since) > withholdLimit {
		// Too slow to wait for (see the top of this file).
		if len(b.waiters) > 0 {
			s.srv.m.slowSession()
			s.releaseWaiters()
		}
		return
	}
	if hc.h == nil {
		hc.h = &withholding{r: hc.r, seq: hc.seq}
		hc.h.n.Store(1) // DeliverAcked's own reference
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
