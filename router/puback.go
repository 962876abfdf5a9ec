package router

import (
	"sync"
	"time"

	"github.com/pushring/pushring/flow"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// QoS 1 flow control, the publishing side (withhold.go has the
// delivering side, fanout/ack.go the protocol between nodes): with an
// AckForwarder, a QoS 1 PUBLISH is acknowledged once the Forwarder's
// Receipt says it was stored, and no further ahead of its confirmation
// (every delivering node took the message in) than MaxUnconfirmed.
// PUBACKs still leave in the order of the PUBLISHes (MQTT-4.6.0-2): each
// connection keeps its pending ones in a FIFO (pendingAcks).

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

// maxPendingAcks bounds the QoS 1 PUBLISHes one connection may have
// unanswered: as MQTT 5's default Receive Maximum, whose excess is a
// protocol error there too.
const maxPendingAcks = 65535

// pendingAcks is a connection's FIFO of QoS 1 PUBACKs not yet sent, in the
// order the PUBLISHes arrived. Every QoS 1 PUBLISH gets the next tag;
// list[head+i] has tag base+i, and tags under base were answered.
//
// A PUBACK goes out, in order, once its message is confirmed (Accepted),
// or earlier while fewer than Config.MaxUnconfirmed PUBACKed messages of
// this connection are still unconfirmed (ahead). So a publisher that
// keeps up with its recipients never waits for a confirmation's round
// trip, and one that outruns them is kept at most MaxUnconfirmed messages
// ahead.
type pendingAcks struct {
	mu   sync.Mutex
	list []pendingAck
	head int    // list[:head] are answered, waiting to be compacted away
	base uint64 // tag of list[head]
	// ahead: tags PUBACKed before their confirmation came (at most
	// MaxUnconfirmed; kept allocated once made, so a publisher that is
	// always a little ahead does not make a map per burst).
	ahead  map[uint64]struct{}
	closed bool
}

type pendingAck struct {
	pid       uint16
	ready     bool // handed on (or refused): may be answered
	confirmed bool // Accepted, or needs no confirmation (refused)
	retain    bool // waits for the Retainer too (retain.go)
	qos2      bool // answered with PUBREC, not PUBACK
	// notRetained: to be retained, but there was no room; a 5.0 client
	// that asked for problem information is told so in a Reason String
	// (the code stays success: the message was accepted and delivered).
	notRetained bool
}

// pendAck queues a PUBACK for pid that is not sent before ready(tag) (and,
// with retain, keptRetained(tag)). It returns false when maxPendingAcks
// are unanswered already. The FIFO is allocated with the first QoS 1
// PUBLISH (subscribers that never publish do without), before any
// Receipt can run.
func (c *mqttConn) pendAck(pid uint16, qos byte, retain bool) (tag uint64, ok bool) {
	if c.acks == nil {
		c.acks = new(pendingAcks)
	}
	q := c.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.list)-q.head >= maxPendingAcks {
		return 0, false
	}
	q.list = append(q.list, pendingAck{pid: pid, retain: retain, qos2: qos == 2})
	return q.base + uint64(len(q.list)-q.head-1), true
}

// readyAck marks tag's message handed on: its PUBACK may go (early, or on
// confirmation; confirmed: it needs none).
func (c *mqttConn) readyAck(tag uint64, confirmed bool) {
	q := c.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := q.index(tag); i >= 0 {
		q.list[i].ready = true
		q.list[i].confirmed = q.list[i].confirmed || confirmed
		c.sendAcksLocked()
	}
}

// unpendAck takes back the entry pendAck just added (the Forwarder
// refused the message, so Accepted will not come). It was never ready,
// so nothing after it was sent.
func (c *mqttConn) unpendAck(tag uint64) {
	q := c.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := q.index(tag); i == len(q.list)-1 {
		q.list = q.list[:i]
	}
}

// answer answers PUBLISH pid of qos (1: PUBACK, 2: PUBREC), which needs
// no confirmation (refused, or forwarded without a store): at once when
// nothing before it waits, else behind the ones that do (order,
// MQTT-4.6.0-2).
func (c *mqttConn) answer(qos byte, pid uint16) {
	q := c.acks
	if q == nil {
		c.writeAck(ackType(qos), pid)
		return
	}
	q.mu.Lock()
	if len(q.list) == q.head {
		q.mu.Unlock()
		c.writeAck(ackType(qos), pid)
		return
	}
	q.list = append(q.list, pendingAck{pid: pid, ready: true, confirmed: true, qos2: qos == 2})
	c.sendAcksLocked()
	q.mu.Unlock()
}

// Stored is the Receipt's word that the QoS 1 message with tag was
// stored: its PUBACK may go (at once or on confirmation, see pendingAcks).
// A message the store refused gets no PUBACK: the connection is closed,
// counted and logged, so the client sends it again (to a store that may
// be back) after reconnecting; and the connection's later messages are
// not forwarded even if stored, since the client sends them again after
// that one (forwarded now they would arrive first). The same holds once
// the server closed the connection for a takeover or its shutdown.
// Goroutine-safe.
func (c *mqttConn) Stored(tag uint64, err error) bool {
	if err == nil {
		if c.flags.has(flagNoForward) {
			return false
		}
		c.readyAck(tag, false)
		return true
	}
	c.srv.m.refusal(reasonStoreFailed)
	if ok, n := c.srv.storeLog.Allow(time.Second); ok {
		c.srv.log.Warn("mqtt: a QoS 1 message could not be stored; closing its publisher's connection without PUBACK",
			"id", c.id.ID, "client_id", c.clientID, "err", err, "remote", c.remoteAddr(), "since_last_logged", n)
	}
	c.storeFailed()
	return false
}

// storeFailed closes c, whose QoS 1 message could not be stored (counted
// and logged by the caller), without its PUBACK; its later messages are
// not forwarded (see Stored).
func (c *mqttConn) storeFailed() {
	c.stopForwarding()
	c.kill(false, packet.CodeServerBusy)
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
		delete(q.ahead, tag) // answered already: only the count of early ones changes
	} else if i := q.index(tag); i >= 0 {
		q.list[i].confirmed = true
	} else {
		return
	}
	c.sendAcksLocked()
}

// index is the position of tag in q.list, or -1. q.mu held.
func (q *pendingAcks) index(tag uint64) int {
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
		if !e.ready || e.retain || (!e.confirmed && len(q.ahead) >= maxAhead) {
			break
		}
		if !e.confirmed {
			if q.ahead == nil {
				q.ahead = make(map[uint64]struct{}, maxAhead)
			}
			q.ahead[q.base] = struct{}{}
		}
		typ := packet.PUBACK
		if e.qos2 {
			typ = packet.PUBREC
		}
		if e.notRetained && c.flags.has(flagV5) && c.v5.problems {
			buf = packet.AppendAckV5(buf, typ, e.pid, packet.CodeSuccess, "delivered; not retained: no room")
		} else {
			buf = packet.AppendAck(buf, typ, e.pid)
		}
		q.head++
		q.base++
	}
	c.t.endWrite(buf)
	c.answered.Store(q.base)
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
	q.list, q.head, q.ahead = nil, 0, nil
	q.mu.Unlock()
}
