package router

import (
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// Retained messages. A PUBLISH to <group>/<gid> with the retain flag
// (and a will with Will Retain) makes the message its group's retained
// message, kept by the Retainer; an empty payload clears it. Either way
// the message is also delivered as any other ([MQTT-3.3.1-10]). A QoS 1
// or 2 PUBLISH is acknowledged once the message is stored in the journal
// and the Retainer kept it: its PUBACK (PUBREC) waits for both, in order
// (puback.go). A Retainer with no room left (IsFull) does not close the
// connection, since sending the message again would not help: the
// message is delivered and acknowledged, with success (an error code
// would have the client send it again, or end a QoS 2 exchange the
// server still holds) and, at 5.0, a Reason String saying it was not
// retained; the refusal is counted (retained_full). Any other failure is
// a store failure: no answer, the connection closed, as for the journal.
//
// A retain flag on a direct message (<private>/<id>) is ignored: only
// groups have retained messages.
//
// Who gets a retained message, with the retain flag set on its PUBLISH:
//
//   - a member that subscribes to <group>/<gid>: at every SUBSCRIBE
//     (3.1.1), or as 5.0's Retain Handling says (0: every SUBSCRIBE, 1:
//     only when the subscription is new, 2: never);
//   - a member whose session is new (not resumed) and subscribes to a
//     filter of its private tree: the retained message of each of its
//     groups whose delivery topic <private>/<id>/group/<gid> the filter
//     matches, once per session (Retain Handling 2: never). A resumed
//     session gets what it missed from its backlog instead, so the
//     retained messages would only come twice.
//
// Messages delivered live never carry the retain flag (Retain As
// Published is not applied).

// Retainer keeps the retained message of every group. The retained
// package implements it. Goroutine-safe.
type Retainer interface {
	// Retain makes m its group's retained message (an empty payload
	// clears it), copying what it keeps before it returns, and calls
	// done once, from any goroutine (possibly before Retain returns):
	// nil once kept, else why not.
	Retain(m *message.Message, done func(error))
	// Retained returns gid's retained message, nil for none. It is
	// shared and immutable. It never blocks: SUBSCRIBE calls it.
	Retained(gid string) *message.Message
	// IsFull reports whether err, from done, says there was no room.
	IsFull(err error) bool
}

// SetRetained makes r keep the retained messages, and memberOf (the
// groups principal id is a member of) name the groups whose messages a
// new session's private tree gets. Call it before Serve; without it a
// retain flag is ignored (3.1.1) or refused (5.0 CONNACK says Retain
// Available 0).
func (s *Server) SetRetained(r Retainer, memberOf func(id string) []string) {
	s.retained, s.memberOf = r, memberOf
}

// retainAcked keeps QoS 1 or 2 message m, whose answer (PUBACK or
// PUBREC) has entry tag, as its group's retained message: the answer
// waits for it (keptRetained).
func (c *mqttConn) retainAcked(m *message.Message, tag uint64) {
	c.srv.retained.Retain(m, func(err error) { c.keptRetained(tag, err) })
}

// retainUnacked keeps message m, whose publisher waits for no PUBACK
// (QoS 0) or got it already, as its group's retained message; a failure
// is counted and logged.
func (c *mqttConn) retainUnacked(m *message.Message) {
	c.srv.retained.Retain(m, func(err error) {
		if err != nil {
			c.retainFailed(err)
		}
	})
}

// retainFailed counts and logs a retained message not kept.
func (c *mqttConn) retainFailed(err error) (full bool) {
	full = c.srv.retained.IsFull(err)
	reason := reasonRetainedFailed
	if full {
		reason = reasonRetainedFull
	}
	c.srv.m.refusal(reason)
	if ok, n := c.srv.storeLog.Allow(time.Second); ok {
		c.srv.log.Warn("mqtt: a retained message was not kept", "id", c.id.ID, "reason", reason, "err", err,
			"remote", c.remoteAddr(), "since_last_logged", n)
	}
	return full
}

// keptRetained is the Retainer's answer for the retained QoS 1 or 2
// message with answer entry tag: its answer may go once it is stored
// too; with no room it goes anyway (success, and at 5.0 a Reason String);
// any other failure is a store failure.
func (c *mqttConn) keptRetained(tag uint64, err error) {
	if err != nil && !c.retainFailed(err) {
		c.storeFailed()
		return
	}
	q := c.acks
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if i := q.index(tag); i >= 0 {
		q.list[i].retain, q.list[i].notRetained = false, err != nil
		c.sendAcksLocked()
	}
}

// sendRetained offers the retained messages filter f (granted at qos)
// reaches, as Retain Handling rh says; isNew: the subscription did not
// exist before. gid is the filter's group for <group>/<gid>, "" for the
// private tree.
func (c *mqttConn) sendRetained(sess *session, f string, gid string, qos, rh byte, isNew bool) {
	if c.srv.retained == nil || rh == 2 || (rh == 1 && !isNew) {
		return
	}
	if gid != "" {
		if m := c.srv.retained.Retained(gid); m != nil {
			sess.offerRetained(c, m, formGroup, min(m.QoS, qos), "")
		}
		return
	}
	if !c.fresh || !isNew || c.srv.memberOf == nil {
		return
	}
	for _, gid := range c.srv.memberOf(c.id.ID) {
		if m := c.srv.retained.Retained(gid); m != nil {
			sess.offerRetained(c, m, formPrivateGroup, min(m.QoS, qos), f)
		}
	}
}

// offerRetained sends or queues retained message m in form at qos, with
// the retain flag, if c is still the session's connection. filter, for
// the private tree, must match m's delivery topic, and a group's
// retained message goes to the private tree once per session.
func (s *session) offerRetained(c *mqttConn, m *message.Message, form topicForm, qos byte, filter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != c || s.removed {
		return
	}
	if filter != "" {
		s.buildTopic(m)
		if !packet.Match(filter, s.topicBuf) {
			return
		}
		x := s.rareState()
		if _, sent := x.retainedSent[m.To]; sent {
			return
		}
		if x.retainedSent == nil {
			x.retainedSent = make(map[string]struct{})
		}
		x.retainedSent[m.To] = struct{}{}
	}
	o := outMsg{m: m, form: form, qos: qos, retain: true}
	if !s.live(m) || !s.fits(&o) {
		return
	}
	s.offer(o)
}
