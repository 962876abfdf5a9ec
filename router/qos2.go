package router

import (
	"slices"

	"github.com/pushring/pushring/mqtt/packet"
)

// QoS 2, both ways.
//
// From a client: a QoS 2 PUBLISH is stored and forwarded as a QoS 1 one
// is (puback.go); its PUBREC takes the PUBACK's place in the connection's
// FIFO of answers, so answers still leave in packet order. Its packet id
// is kept in the session (qos2In) until the client's PUBREL, so a
// retransmission (after a reconnect too, or a takeover, on this node) is
// answered with PUBREC and not forwarded again: exactly once into the
// cluster. An id whose message the server may not have forwarded (its
// connection was closed by the server, for a store failure, a takeover
// or shutdown, before its PUBREC went out) is forgotten, so the client's
// retransmission is taken as new: at least once rather than lost.
//
// To a client: a subscription may be granted QoS 2, and a message
// published at QoS 2 reaches it at QoS 2 (QoS is the publisher's, capped
// by the subscription). The message is inflight until PUBREC, as a QoS 1
// message until PUBACK (it counts in the window, is sent again with DUP
// on reconnect, and holds the session's durable position); after PUBREC
// only its packet id is kept (rel) until PUBCOMP, PUBREL being sent again
// on reconnect. Both count against the client's Receive Maximum.
//
// Session state lives on the node that holds the session. When a
// persistent session moves to another node (its node died, or a client
// reconnects elsewhere), the journal replays what it had not
// acknowledged with new packet ids, and the ids awaiting PUBREL or
// PUBCOMP are not carried over: at least once, not exactly once, across
// a move.

// maxQoS2In bounds the QoS 2 ids one session holds awaiting PUBREL; a
// client over it is disconnected (5.0: 0x93, Receive Maximum exceeded).
const maxQoS2In = 1024

// qos2In is a QoS 2 PUBLISH received and not yet released by PUBREL.
type qos2In struct {
	pid    uint16
	queued bool      // its PUBREC waits in c's FIFO (puback.go) under tag
	c      *mqttConn // the connection it came on
	tag    uint64
}

// forwarded reports whether the message of e was, or will be, forwarded:
// not when the server stopped c's forwarding before e's PUBREC went out.
func (e *qos2In) forwarded() bool {
	return !e.queued || !e.c.noForward.Load() || e.tag < e.c.answeredAtStop.Load()
}

// qos2Received reports whether pid is a QoS 2 message received already
// (a retransmission), forgetting it if it may not have been forwarded.
func (s *session) qos2Received(pid uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.qos2In {
		if s.qos2In[i].pid == pid {
			if s.qos2In[i].forwarded() {
				return true
			}
			s.qos2In = append(s.qos2In[:i], s.qos2In[i+1:]...)
			return false
		}
	}
	return false
}

// qos2Add records pid, received on c, until PUBREL; queued: its PUBREC
// waits in c's FIFO under tag. It returns false when the session holds
// maxQoS2In already.
func (s *session) qos2Add(c *mqttConn, pid uint16, queued bool, tag uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.qos2In) >= maxQoS2In {
		return false
	}
	s.qos2In = append(s.qos2In, qos2In{pid: pid, queued: queued, c: c, tag: tag})
	return true
}

// qos2Release forgets pid at PUBREL; false: it was not held.
func (s *session) qos2Release(pid uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.qos2In {
		if s.qos2In[i].pid == pid {
			s.qos2In = append(s.qos2In[:i], s.qos2In[i+1:]...)
			if len(s.qos2In) == 0 {
				s.qos2In = nil // an idle session keeps nothing
			}
			return true
		}
	}
	return false
}

// stopForwarding makes the server stop forwarding what c's client sent
// and was not answered (Stored returns false from now on), noting which
// answers went out before: their QoS 2 ids stay known (qos2In).
func (c *mqttConn) stopForwarding() {
	c.answeredAtStop.Store(c.answered.Load())
	c.noForward.Store(true)
}

// handlePubrel answers PUBREL pid with PUBCOMP ([MQTT-4.3.3-11]), also
// for an unknown id (5.0: with 0x92).
func (c *mqttConn) handlePubrel(pid uint16) {
	if !c.sess.Load().qos2Release(pid) && c.v5 != nil {
		buf, _, _ := c.t.beginWrite()
		c.t.endWrite(packet.AppendAckV5(buf, packet.PUBCOMP, pid, packet.CodePacketIDNotFound, ""))
		return
	}
	c.writeAck(packet.PUBCOMP, pid)
}

// received handles PUBREC pid (code: its 5.0 reason code) from c: the
// QoS 2 message is delivered; its id waits for PUBCOMP after the PUBREL
// sent now. A PUBREC with an error code ends the message and frees its
// id at once. An unknown id gets PUBREL too (5.0: with 0x92), so the
// client's state ends.
func (s *session) received(c *mqttConn, pid uint16, code byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != c || s.removed {
		return
	}
	known := s.takeInflight(pid)
	if !known && slices.Contains(s.rel, pid) {
		known = true // a repeated PUBREC: PUBREL again
	} else if known && code < 0x80 {
		s.rel = append(s.rel, pid)
	}
	if code >= 0x80 {
		s.drainLocked()
		return
	}
	buf, _, _ := c.t.beginWrite()
	if !known && s.level == packet.V5 {
		buf = packet.AppendAckV5(buf, packet.PUBREL, pid, packet.CodePacketIDNotFound, "")
	} else {
		buf = packet.AppendAck(buf, packet.PUBREL, pid)
	}
	c.t.endWrite(buf)
	s.drainLocked()
}

// completed handles PUBCOMP pid from c: the id is free.
func (s *session) completed(c *mqttConn, pid uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != c || s.removed {
		return
	}
	for i, p := range s.rel {
		if p == pid {
			s.rel = append(s.rel[:i], s.rel[i+1:]...)
			if len(s.rel) == 0 {
				s.rel = nil
			}
			break
		}
	}
	s.drainLocked()
}

// resendPubrels sends PUBREL again for every id awaiting PUBCOMP (on
// reconnect, [MQTT-4.4.0-1]). s.mu held.
func (s *session) resendPubrels(c *mqttConn) {
	if len(s.rel) == 0 {
		return
	}
	buf, _, _ := c.t.beginWrite()
	for _, pid := range s.rel {
		buf = packet.AppendAck(buf, packet.PUBREL, pid)
	}
	c.t.endWrite(buf)
}
