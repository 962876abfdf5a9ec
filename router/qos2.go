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
// Session state lives on the node that holds the session, and what a
// durable session's client may hold travels with its record: the QoS 2
// messages sent and not completed, with their ids and sequences, saved
// from the position tick when they change (qos2Due). A node resuming the
// session from the store finishes them under the same ids (resumeQoS2).
// Ids used after the last save (a node that died within that tick) are
// not known there: that node starts its ids at a random place.

// relID is a QoS 2 id awaiting PUBCOMP, with its message's sequence
// (0: not stored), under which the session's durable position stays
// until PUBCOMP: a client may deliver a QoS 2 message only at PUBREL, so
// a session that moves to another node before its record says the
// message was released (qos2Due) gets it again from the journal rather
// than never. As a QoS 1 message never acknowledged, one never completed
// holds the position for as long as the session lives.
type relID struct {
	pid uint16
	seq uint64
}

// relIndex is the index of pid in rel, or -1.
func relIndex(rel []relID, pid uint16) int {
	for i := range rel {
		if rel[i].pid == pid {
			return i
		}
	}
	return -1
}

// maxQoS2In bounds the QoS 2 ids one session holds awaiting PUBREL: a
// 5.0 client is told so in CONNACK (Receive Maximum); one over it is
// disconnected (5.0: 0x93, Receive Maximum exceeded; 3.1.1 has no way to
// say it).
const maxQoS2In = 1024

// qos2In is a QoS 2 PUBLISH received and not yet released by PUBREL.
type qos2In struct {
	pid    uint16
	queued bool      // its PUBREC waits in c's FIFO (puback.go) under tag
	c      *mqttConn // the connection it came on
	tag    uint64
}

// forwarded reports whether the message of e was, or will be, forwarded.
// A PUBREC that went out was for a message forwarded (only those are
// answered); one still waiting on a connection that is open and still
// forwarding will go out in order, or the connection closes first. On a
// connection closed or stopped meanwhile, the message may not have
// been: the client's retransmission is then taken as new.
func (e *qos2In) forwarded() bool {
	if !e.queued || e.tag < e.c.answered.Load() {
		return true
	}
	return !e.c.flags.has(flagNoForward) && !e.c.flags.has(flagEnded)
}

// qos2Find is the index of pid among the received QoS 2 ids, or -1.
// s.mu held.
func (s *session) qos2Find(pid uint16) int {
	if s.rare == nil {
		return -1
	}
	for i := range s.rare.qos2In {
		if s.rare.qos2In[i].pid == pid {
			return i
		}
	}
	return -1
}

// qos2Drop forgets received QoS 2 id i. s.mu held.
func (s *session) qos2Drop(i int) {
	s.rare.qos2In = slices.Delete(s.rare.qos2In, i, i+1)
	if len(s.rare.qos2In) == 0 {
		s.rare.qos2In = nil // an idle session keeps no array
	}
}

// qos2Received reports whether pid is a QoS 2 message received already
// (a retransmission), forgetting it if it may not have been forwarded.
func (s *session) qos2Received(pid uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.qos2Find(pid)
	if i < 0 {
		return false
	}
	if s.rare.qos2In[i].forwarded() {
		return true
	}
	s.qos2Drop(i)
	return false
}

// qos2Add records pid, received on c, until PUBREL (replacing what was
// kept under pid); queued: its PUBREC waits in c's FIFO under tag. It
// returns false when the session holds maxQoS2In already.
func (s *session) qos2Add(c *mqttConn, pid uint16, queued bool, tag uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := qos2In{pid: pid, queued: queued, c: c, tag: tag}
	if i := s.qos2Find(pid); i >= 0 {
		s.rare.qos2In[i] = e
		return true
	}
	x := s.rareState()
	if len(x.qos2In) >= maxQoS2In {
		return false
	}
	x.qos2In = append(x.qos2In, e)
	return true
}

// qos2Release forgets pid (at PUBREL, or its message was not forwarded);
// false: it was not held.
func (s *session) qos2Release(pid uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.qos2Find(pid)
	if i < 0 {
		return false
	}
	s.qos2Drop(i)
	return true
}

// stopForwarding makes the server stop forwarding what c's client sent
// and was not answered: Stored returns false from now on, and QoS 2 ids
// whose PUBREC did not go out are forgotten at the client's
// retransmission (forwarded).
func (c *mqttConn) stopForwarding() { c.flags.set(flagNoForward) }

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
	seq, known := s.takeInflight(pid)
	if !known && relIndex(s.rel(), pid) >= 0 {
		known = true // a repeated PUBREC: PUBREL again
	} else if known && code < 0x80 {
		x := s.rareState()
		x.rel = append(x.rel, relID{pid, seq})
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
	if s.conn != c || s.removed || s.rare == nil {
		return
	}
	if i := relIndex(s.rare.rel, pid); i >= 0 {
		s.rare.rel = slices.Delete(s.rare.rel, i, i+1)
		if len(s.rare.rel) == 0 {
			s.rare.rel = nil
		}
	}
	s.drainLocked()
}

// qos2Due returns the QoS 2 messages sent and not completed (inflight
// awaiting PUBREC, released awaiting PUBCOMP), when they differ from
// those saved last: the durable session's record keeps them, so that a
// node resuming it elsewhere finishes them under the same ids
// (resumeQoS2). Nothing is allocated while nothing changed. s.mu held.
func (s *session) qos2Due() (msgs []QoS2Msg, due bool) {
	if s.removed || s.clean || s.rare == nil && !s.hasQoS2Inflight() {
		return nil, false
	}
	x := s.rareState()
	now := x.qos2Now[:0]
	for i := range s.inflight {
		if f := &s.inflight[i]; f.qos == 2 {
			now = append(now, QoS2Msg{PID: f.pid, Seq: f.m.Seq})
		}
	}
	for _, r := range x.rel {
		now = append(now, QoS2Msg{PID: r.pid, Seq: r.seq, Released: true})
	}
	x.qos2Now = now
	if slices.Equal(now, x.savedQoS2) {
		return nil, false
	}
	x.savedQoS2 = slices.Clone(now)
	return slices.Clone(now), true
}

// hasQoS2Inflight reports whether a QoS 2 message awaits PUBREC. s.mu
// held.
func (s *session) hasQoS2Inflight() bool {
	for i := range s.inflight {
		if s.inflight[i].qos == 2 {
			return true
		}
	}
	return false
}

// resumeQoS2 takes over the QoS 2 messages the session's previous holder
// saved: a released one is released again (PUBREL with the CONNACK, its
// id not reused before PUBCOMP) and skipped by the replay (the client
// has it); one awaiting PUBREC is sent again by the replay under its id,
// with DUP (resendAs). A client thus gets each once, whether it delivers
// at PUBLISH or at PUBREL. s.mu held.
func (s *session) resumeQoS2(msgs []QoS2Msg) {
	if len(msgs) == 0 {
		return
	}
	x := s.rareState()
	x.savedQoS2 = slices.Clone(msgs)
	for _, m := range msgs {
		switch {
		case m.PID == 0 || relIndex(x.rel, m.PID) >= 0:
		case m.Released || m.Seq == 0:
			// (One not stored cannot come again: released, so the
			// client's state for it ends.)
			x.rel = append(x.rel, relID{pid: m.PID})
			if m.Seq != 0 {
				s.d().sent.add(m.Seq)
			}
		default:
			if x.resendAs == nil {
				x.resendAs = make(map[uint64]uint16)
			}
			x.resendAs[m.Seq] = m.PID
		}
	}
}

// resentID is the id o goes under when it is a stored QoS 2 message the
// previous holder sent under that id (resumeQoS2): sent again with DUP.
// s.mu held.
func (s *session) resentID(o *outMsg) (pid uint16, ok bool) {
	if s.rare == nil || s.rare.resendAs == nil || o.qos != 2 || o.m.Seq == 0 {
		return 0, false
	}
	pid, ok = s.rare.resendAs[o.m.Seq]
	if ok {
		delete(s.rare.resendAs, o.m.Seq)
	}
	return pid, ok
}

// releaseUnsent releases, once the replay after a resume is done, the
// ids of the saved QoS 2 messages it did not bring again (expired, no
// longer allowed, out of the journal): PUBREL, so the client's state for
// them ends. s.mu held.
func (s *session) releaseUnsent() {
	if s.rare == nil || len(s.rare.resendAs) == 0 {
		return
	}
	var buf []byte
	var c *mqttConn
	if c = s.conn; c != nil {
		buf, _, _ = c.t.beginWrite()
	}
	for _, pid := range s.rare.resendAs {
		s.rare.rel = append(s.rare.rel, relID{pid: pid})
		if c != nil {
			buf = packet.AppendAck(buf, packet.PUBREL, pid)
		}
	}
	clear(s.rare.resendAs)
	if c != nil {
		c.t.endWrite(buf)
	}
}

// resendPubrels sends PUBREL again for every id awaiting PUBCOMP (on
// reconnect, [MQTT-4.4.0-1]). s.mu held.
func (s *session) resendPubrels(c *mqttConn) {
	rel := s.rel()
	if len(rel) == 0 {
		return
	}
	buf, _, _ := c.t.beginWrite()
	for _, r := range rel {
		buf = packet.AppendAck(buf, packet.PUBREL, r.pid)
	}
	c.t.endWrite(buf)
}
