package router

import (
	"runtime/debug"
	"sync"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// session is the MQTT session state of one (principal, client id): its
// subscriptions, the QoS 1 messages sent and not yet acknowledged
// (inflight), and the messages waiting to be sent (queue).
//
// A clean session (CleanSession=1) lives as long as its connection. A
// persistent one (CleanSession=0) is kept after its client disconnects,
// for Config.SessionExpiry, and keeps queueing QoS 1 messages (QoS 0
// messages are not queued for an offline session). With a SessionStore
// a persistent session also lives in the cluster's store and journal
// (durable.go): this memory is its fast path, rebuilt from there after a
// restart or on another node.
//
// Sessions are keyed by principal id + "\x00" + client id, so one
// principal can never reach another's session, whatever client id it
// sends.
//
// Ordering: QoS 1 messages reach the client in the order the session got
// them; a message that cannot go out at once (window full, socket backlog,
// client offline) is queued and everything after it queues behind it.
// QoS 0 messages are written at once or dropped, so they may overtake
// queued QoS 1 messages (MQTT orders per QoS level only).
type session struct {
	srv       *Server
	principal string
	clientID  string
	lim       *principalState // shared by the principal's sessions (limits.go); set for life

	mu       sync.Mutex
	conn     *mqttConn     // nil while offline
	level    byte          // protocol level of the last connection: 5 gets 5.0 PUBLISHes
	recvMax  uint16        // the last connection's Receive Maximum (0: none given)
	maxOut   uint32        // the last connection's Maximum Packet Size (0: none given)
	lifetime time.Duration // how long the session outlives its connection; 0: it ends with it
	removed  bool          // dropped from the server: ignore everything
	moved    bool          // removed because another node resumed it (Kick)
	// The durable flags (below, with the fields they go with), here to
	// pack the small fields: an idle session's size counts.
	replaying, parkOverflow bool
	ringHold                bool // a ring change's replay is due or running: stored messages park
	ringSkipped             bool // the shared read passed it by while it replayed on its own
	tail                    bool // see durable.replayAt
	retryArmed              bool
	// will is the will of the session's last connection while its Will
	// Delay Interval runs (mqtt5.go), willTimer its timer: published
	// when the timer fires or the session ends here, dropped if the
	// session is resumed.
	will      func()
	willTimer *time.Timer
	clean     bool // set by newSession, never changed (here to pack the small fields)
	device    bool // the principal is a device (rule topics tell users and devices apart); set with clean
	nextPID   uint16
	resendDue int32 // inflight entries with due set (at most MaxInflight)
	subs      []subscription
	inflight  []inflightMsg // QoS 1 and 2 sent, awaiting PUBACK or PUBREC, in send order
	rare      *sessionRare  // state few sessions need; nil until one does
	queue     *msgQueue     // made by the first message queued (queued)
	recent    *idRing       // allocated with the first delivery: an idle session has none
	backlog   *backlog      // allocated when first backlogged (withhold.go)
	topicBuf  []byte        // scratch for building a topic to match

	offlineSince int64  // Unix ns; 0: online (or never connected)
	offlineGen   uint64 // invalidates stale expiry timers
	expiry       *time.Timer
	retry        *time.Timer

	// Durable sessions (durable.go): the claim's generation, the
	// highest sequence offered, the position a dropped message holds it
	// under, the newest sequence a backlog notice covered (bounds.go);
	// the rest, which only persistent sessions use, in dur.
	gen, maxSeq, floor, dropNoticed uint64
	dur                             *durable // made by d(), when first needed
}

// durable is the state of a persistent session's position and replays
// (durable.go), held apart so that a clean session, which never saves a
// position nor replays, stays in a smaller size class. Made by
// session.d(); s.mu guards it.
type durable struct {
	// pos: the position to save; written: the position last handed to
	// the store; sinceWrite: the stored messages sent that the position
	// passed since; writeAge: ticks since it was written.
	pos, written         uint64
	sinceWrite, writeAge int32
	hist                 [posHistory]uint64 // positions of the last ticks, hist[histAt] the latest
	histAt               uint8
	ringFloor            uint64             // position when the ring changed (noFloor: no change pending)
	ringAt               int64              // monoNow when the ring is taken as settled (0: not waiting)
	ringEpoch            uint64             // the ring change the hold is for (Server.ringEpoch)
	sent                 sentSeqs           // stored sequences sent, which replays skip
	replayGen            uint64             // invalidates a replay that was overtaken
	parked               []*message.Message // live stored messages that came during a replay
	room                 *sync.Cond         // on mu: the queue made room for a replay

	// tail (session): the running replay reads the journal once more,
	// RingSettle after it reached the end (see register). replayAt: the
	// highest sequence the running replay offered, or read up to
	// (position). replayedTo: the journal's end the last finished
	// replay read to.
	replayAt   uint64
	replayedTo uint64
}

// d returns the session's durable state, made if need be. s.mu held
// (or the session not yet shared).
func (s *session) d() *durable {
	if s.dur == nil {
		s.dur = &durable{ringFloor: noFloor}
	}
	return s.dur
}

// sessionRare is the state of a session that few sessions ever have,
// kept out of the session itself so that an idle session stays small.
type sessionRare struct {
	rel    []relID  // QoS 2 ids released (PUBREL sent), awaiting PUBCOMP (qos2.go)
	qos2In []qos2In // QoS 2 ids received from the client, awaiting PUBREL (qos2.go)
	// retainedSent: groups whose retained message went to the private
	// tree of this (new) session (retain.go).
	retainedSent map[string]struct{}
	// savedQoS2: the QoS 2 messages last handed to SaveQoS2 (qos2Now
	// the ones a tick found, kept to be reused); resendAs:
	// the ids to send stored QoS 2 messages under again, by sequence,
	// after a resume from the store (qos2.go).
	savedQoS2 []QoS2Msg
	qos2Now   []QoS2Msg // qos2Due's scratch
	resendAs  map[uint64]uint16
}

// queued returns s.queue, made if need be. s.mu held.
func (s *session) queued() *msgQueue {
	if s.queue == nil {
		s.queue = new(msgQueue)
	}
	return s.queue
}

// rareState returns s.rare, made if need be. s.mu held.
func (s *session) rareState() *sessionRare {
	if s.rare == nil {
		s.rare = new(sessionRare)
	}
	return s.rare
}

// rel is the QoS 2 ids awaiting PUBCOMP. s.mu held.
func (s *session) rel() []relID {
	if s.rare == nil {
		return nil
	}
	return s.rare.rel
}

// subscription is one granted filter.
type subscription struct {
	filter string
	qos    byte
	group  string // gid when the filter is exactly <group>/<gid>, else "" (private tree or topic)
	all    bool   // filter is <private>/<id>/#: matches every delivery topic of the tree
	topic  bool   // a rule topic filter (rules.go)
	// byGroup: only a rule naming a group admits the topic filter;
	// checked again at each delivery.
	byGroup bool
}

// inflightMsg is one QoS 1 message sent and not yet acknowledged. It keeps
// the shared message and the topic form, and is re-encoded when resent.
type inflightMsg struct {
	outMsg
	pid  uint16
	sent time.Time
	due  bool // to be sent again (DUP) as soon as the backlog allows
}

// newSession makes the session of (principal, clientID); Server.mu held (it takes a reference to the principal's shared state,
// which release gives back).
func newSession(srv *Server, principal, clientID string, clean bool) *session {
	return &session{
		srv:       srv,
		principal: principal,
		clientID:  clientID,
		lim:       srv.acquirePrincipalLocked(principal),
		clean:     clean,
		floor:     noFloor,
	}
}

// sessKey names a session (Server.sessionLocked, Server.claiming): the
// two strings the session holds anyway, no third made from them.
type sessKey struct{ principal, clientID string }

func sessionKey(principal, clientID string) sessKey { return sessKey{principal, clientID} }

// ---- delivery ----

// deliver offers m to this session: picks the topic it receives it on (if
// any subscription matches), drops duplicates, and sends or queues it.
// Never blocks on the socket.
func (s *session) deliver(m *message.Message, hc *withholdCtx) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliverLocked(m, hc)
}

// deliverLocked is deliver with s.mu held; during a replay, and while
// one is due after a ring change, stored messages wait behind the
// journal's (durable.go).
func (s *session) deliverLocked(m *message.Message, hc *withholdCtx) {
	if s.removed {
		return
	}
	s.rewindIfLate(m)
	if (s.replaying || s.ringHold) && m.Seq != 0 {
		s.park(m)
		return
	}
	s.offerLocked(m, hc)
}

// offerLocked matches m against the subscriptions and sends or queues
// it. s.mu held.
func (s *session) offerLocked(m *message.Message, hc *withholdCtx) {
	if m.Seq > s.maxSeq {
		s.maxSeq = m.Seq
	}
	if m.Seq <= s.dropNoticed && m.Seq != 0 {
		return // the backlog bounds dropped it (bounds.go)
	}
	if s.recent.has(m.ID) {
		return
	}
	form, qos, ok := s.match(m)
	if !ok {
		return
	}
	if s.recent == nil {
		s.recent = new(idRing)
	}
	s.recent.add(m.ID) // also when dropped below: a replay's copy is not counted again
	o := outMsg{m: m, form: form, qos: qos}
	if !s.live(m) || !s.fits(&o) {
		return // as if sent: it never will be
	}
	s.offer(o)
	if hc != nil && qos > 0 && s.conn != nil && s.backlogged() {
		s.withholdOn(hc)
	}
}

// match finds how m reaches this session: group messages on
// <private>/<id>/group/<gid> if a subscription matches that topic, else
// on <group>/<gid> if subscribed to it (and still a member); direct
// messages on <private>/<id>. QoS is the publisher's, capped by the best
// matching subscription. Allocation-free in steady state.
func (s *session) match(m *message.Message) (form topicForm, qos byte, ok bool) {
	switch m.Kind {
	case message.Direct:
		if m.To != s.principal {
			return 0, 0, false // not addressed to this principal
		}
		form = formDirect
	case message.Group:
		form = formPrivateGroup
	case message.Topic:
		best, refused := s.topicQoS(m)
		if best < 0 {
			if refused {
				s.srv.m.refusal(reasonDeliverACL)
			}
			return 0, 0, false
		}
		return formTopic, min(m.QoS, byte(best)), true
	default:
		return 0, 0, false
	}
	best := -1
	built := false
	for i := range s.subs {
		sub := &s.subs[i]
		if sub.group != "" || sub.topic || int(sub.qos) <= best {
			continue
		}
		if !sub.all {
			if !built {
				s.buildTopic(m)
				built = true
			}
			if !packet.Match(sub.filter, s.topicBuf) {
				continue
			}
		}
		best = int(sub.qos)
	}
	if best < 0 && m.Kind == message.Group {
		for i := range s.subs {
			if s.subs[i].group == m.To {
				best = int(s.subs[i].qos)
				break
			}
		}
		if best < 0 {
			return 0, 0, false
		}
		if !s.srv.acl.IsMember(m.To, s.principal) {
			s.srv.m.refusal(reasonDeliverACL)
			return 0, 0, false
		}
		form = formGroup
	}
	if best < 0 {
		return 0, 0, false
	}
	qos = min(m.QoS, byte(best))
	return form, qos, true
}

// live reports whether m has not expired, and counts it if it has
// ([MQTT-3.3.2-5]): not sent, from the queue or on its first offer.
func (s *session) live(m *message.Message) bool {
	if m.Expires == 0 || !m.Expired(time.Now()) {
		return true
	}
	s.srv.m.refusal(reasonExpired)
	return false
}

// fits reports whether o fits the client's Maximum Packet Size
// ([MQTT-3.1.2-25]), and counts it if not. s.mu held.
func (s *session) fits(o *outMsg) bool {
	if s.maxOut == 0 {
		return true
	}
	if n := s.publishLen(o); n < 0 || n > int(s.maxOut) {
		s.srv.m.refusal(reasonTooLargeForClient)
		return false
	}
	return true
}

// window is how many QoS 1 and 2 messages may await PUBACK or PUBCOMP:
// MaxInflight, or fewer if the client's Receive Maximum says so.
func (s *session) window() int {
	if w := int(s.recvMax); w != 0 && w < s.srv.cfg.MaxInflight {
		return w
	}
	return s.srv.cfg.MaxInflight
}

// buildTopic writes m's private-tree delivery topic into s.topicBuf.
func (s *session) buildTopic(m *message.Message) {
	s.topicBuf = append(append(s.topicBuf[:0], s.srv.tp.privateSlash...), s.principal...)
	if m.Kind == message.Group {
		s.topicBuf = append(append(s.topicBuf, "/group/"...), m.To...)
	}
}

// offer sends o now if it can, else queues it (QoS 1) or drops it (QoS 0).
// s.mu held.
func (s *session) offer(o outMsg) {
	c := s.conn
	cfg := &s.srv.cfg
	if o.qos == 0 {
		if c == nil {
			return // QoS 0 is not queued for an offline session
		}
		buf, backlog, open := c.t.beginWrite()
		if open && backlog < cfg.MaxOutboundBytes {
			buf = s.appendPublish(buf, &o, 0, false)
			c.t.endWrite(buf)
			s.srv.m.delivered(0)
			return
		}
		c.t.endWrite(buf)
		if open {
			s.srv.m.dropped() // slow consumer
		}
		return
	}
	if c == nil || s.queue.len() > 0 || s.resendDue > 0 || s.outstanding() >= s.window() {
		// (resendDue: unacked messages still wait to be resent, and go
		// first)
		s.enqueue(o)
		return
	}
	buf, backlog, open := c.t.beginWrite()
	if !open || backlog >= cfg.MaxOutboundBytes {
		c.t.endWrite(buf)
		s.enqueue(o)
		if open {
			c.t.notifyDrained()
		}
		return
	}
	s.sendInflight(c, buf, o)
}

// outstanding is how many QoS 1 and 2 messages the client has not
// answered: inflight ones, and QoS 2 ones awaiting PUBCOMP. s.mu held.
func (s *session) outstanding() int { return len(s.inflight) + len(s.rel()) }

// sendInflight appends QoS 1 or 2 message o with a fresh packet id to buf
// (from c's beginWrite), ends the write and records o as inflight. s.mu
// held.
func (s *session) sendInflight(c *mqttConn, buf []byte, o outMsg) {
	pid, dup := s.resentID(&o)
	if !dup {
		pid = s.newPacketID()
	}
	buf = s.appendPublish(buf, &o, pid, dup)
	c.t.endWrite(buf)
	if s.inflight == nil {
		s.inflight = make([]inflightMsg, 0, s.srv.cfg.MaxInflight)
	}
	s.inflight = append(s.inflight, inflightMsg{outMsg: o, pid: pid, sent: time.Now()})
	if o.m.Seq != 0 && !s.clean {
		s.d().sent.add(o.m.Seq)
	}
	s.srv.m.delivered(o.qos)
	s.armRetry()
}

func (s *session) enqueue(o outMsg) {
	stored := false
	for _, d := range s.queued().push(o, s.srv.cfg.MaxQueued, s.srv.cfg.MaxQueuedBytes) {
		s.srv.m.dropped()
		s.recent.forget(d.ID) // a replay may bring it again
		if d := d.Seq; d != 0 && !s.clean {
			// Stored: the position stays under it, and the session
			// replays it (durable.go).
			s.floor = min(s.floor, d-1)
			stored = true
		}
	}
	if stored {
		s.overflowed()
	}
}

// appendPublish encodes o for this session; the topic is written from its
// parts, never concatenated. A 5.0 client gets the message's properties
// and what is left of its expiry interval.
func (s *session) appendPublish(buf []byte, o *outMsg, pid uint16, dup bool) []byte {
	var parts [4]string
	var pp packet.PublishProps
	return packet.AppendPublishV5(buf, o.qos, dup, o.retain, pid, s.publishProps(o, &pp), o.m.Payload, s.topicParts(o, &parts)...)
}

// publishLen is the size of appendPublish's packet for o.
func (s *session) publishLen(o *outMsg) int {
	var parts [4]string
	var pp packet.PublishProps
	return packet.PublishLen(o.qos, s.publishProps(o, &pp), len(o.m.Payload), s.topicParts(o, &parts)...)
}

// topicParts fills parts with o's delivery topic, in pieces.
func (s *session) topicParts(o *outMsg, parts *[4]string) []string {
	tp := &s.srv.tp
	switch o.form {
	case formDirect:
		parts[0], parts[1] = tp.privateSlash, s.principal
		return parts[:2]
	case formPrivateGroup:
		parts[0], parts[1], parts[2], parts[3] = tp.privateSlash, s.principal, "/group/", o.m.To
		return parts[:4]
	case formGap:
		parts[0], parts[1], parts[2] = tp.privateSlash, s.principal, gapLevel
		return parts[:3]
	case formTopic:
		parts[0] = o.m.To
		return parts[:1]
	}
	parts[0], parts[1] = tp.groupSlash, o.m.To
	return parts[:2]
}

// publishProps fills pp for a 5.0 session and returns it; nil for 3.1.1.
func (s *session) publishProps(o *outMsg, pp *packet.PublishProps) *packet.PublishProps {
	if s.level != packet.V5 {
		return nil
	}
	pp.Raw = o.m.Props
	if o.m.Expires != 0 {
		pp.Expiry, pp.HasExpiry = o.m.ExpiryLeft(time.Now())
		pp.Expiry = max(pp.Expiry, 1) // on its way before it expired: never sent as 0
	}
	return pp
}

// newPacketID returns an id not used by any inflight message ([MQTT-2.3.1-2]).
// The window is at most MaxInflight (at most maxInflight, one less than
// the 16-bit ids there are), so one is always free.
func (s *session) newPacketID() uint16 {
	for {
		s.nextPID++
		if s.nextPID == 0 {
			s.nextPID = 1
		}
		if !s.pidInflight(s.nextPID) {
			return s.nextPID
		}
	}
}

func (s *session) pidInflight(pid uint16) bool {
	for i := range s.inflight {
		if s.inflight[i].pid == pid {
			return true
		}
	}
	if relIndex(s.rel(), pid) >= 0 {
		return true
	}
	if s.rare != nil {
		for _, p := range s.rare.resendAs {
			if p == pid {
				return true
			}
		}
	}
	return false
}

// stillAllowed re-checks the ACL for a queued or resent group message:
// the principal must still be a member of the group.
func (s *session) stillAllowed(o *outMsg) bool {
	switch o.form {
	case formDirect, formGap:
		return true
	case formTopic:
		// Refused only by a group rule the principal no longer meets; a
		// message whose filter was unsubscribed since is still finished
		// ([MQTT-3.10.4-3]).
		if best, refused := s.topicQoS(o.m); best >= 0 || !refused {
			return true
		}
	default:
		if s.srv.acl.IsMember(o.m.To, s.principal) {
			return true
		}
	}
	s.srv.m.refusal(reasonReplayACL)
	return false
}

// drainLocked sends what waits while the window and the socket allow:
// inflight messages due for resending first, then the queue; deliveries
// waiting for the queue to shrink go once it did. s.mu held.
func (s *session) drainLocked() {
	s.drainQueueLocked()
	s.checkBacklog()
	if d := s.dur; d != nil && d.room != nil {
		d.room.Broadcast() // a replay waiting for room (durable.go)
	}
}

func (s *session) drainQueueLocked() {
	c := s.conn
	if c == nil || !s.flushResend() {
		return
	}
	cfg := &s.srv.cfg
	for s.queue.len() > 0 && s.outstanding() < s.window() {
		if !s.stillAllowed(s.queue.front()) {
			s.queue.pop()
			continue
		}
		if f := s.queue.front(); !s.live(f.m) || !s.fits(f) {
			s.queue.pop() // expired while it waited, or the client came back with a smaller Maximum Packet Size
			continue
		}
		buf, backlog, open := c.t.beginWrite()
		if !open {
			c.t.endWrite(buf)
			return
		}
		if backlog >= cfg.MaxOutboundBytes {
			c.t.endWrite(buf)
			c.t.notifyDrained()
			return
		}
		o := s.queue.pop()
		if o.qos == 0 {
			buf = s.appendPublish(buf, &o, 0, false)
			c.t.endWrite(buf)
			s.srv.m.delivered(0)
			continue
		}
		s.sendInflight(c, buf, o)
	}
}

// drain is handler.drained's work for this session.
func (s *session) drain(c *mqttConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == c && !s.removed {
		s.drainLocked()
	}
}

// resendInflight marks every inflight message older than minAge (0: all)
// for sending again with DUP set, and sends what the socket backlog allows
// (flushResend). s.mu held.
func (s *session) resendInflight(minAge time.Duration) {
	if s.conn == nil || len(s.inflight) == 0 {
		return
	}
	now := time.Now()
	for i := range s.inflight {
		f := &s.inflight[i]
		if !f.due && now.Sub(f.sent) >= minAge {
			f.due = true
			s.resendDue++
		}
	}
	s.flushResend()
}

// flushResend sends the inflight messages marked due, in order, while the
// socket backlog is under MaxOutboundBytes, dropping those the ACL no
// longer allows. When the backlog stops it, the rest goes from the
// drained callback (drainLocked), so a resend never pushes a connection
// over its hard backlog limit, however much is unacknowledged. It returns
// true when nothing is left to resend. s.mu held.
func (s *session) flushResend() bool {
	if s.resendDue == 0 {
		return true
	}
	c := s.conn
	if c == nil {
		return false
	}
	buf, backlog, open := c.t.beginWrite()
	if !open {
		c.t.endWrite(buf)
		return false
	}
	limit := s.srv.cfg.MaxOutboundBytes
	now := time.Now()
	start := len(buf)
	blocked, full := false, false
	// outstanding: sent on this connection and not acknowledged; a 5.0
	// client's Receive Maximum bounds it, resends included (its window
	// may be smaller than when they were first sent).
	outstanding := s.outstanding() - int(s.resendDue)
	kept := s.inflight[:0]
	for _, f := range s.inflight {
		if f.due && !blocked && !full {
			if !s.stillAllowed(&f.outMsg) || !s.fits(&f.outMsg) {
				s.resendDue--
				if f.qos == 2 {
					// The client may hold the id (it got the
					// PUBLISH): released, not reused before PUBCOMP.
					buf = packet.AppendAck(buf, packet.PUBREL, f.pid)
					s.rareState().rel = append(s.rareState().rel, relID{f.pid, f.m.Seq})
				}
				continue
			}
			if outstanding >= s.window() {
				full = true // the rest go as acks come (drainLocked)
			} else if backlog+len(buf)-start >= limit {
				blocked = true
			} else {
				outstanding++
				buf = s.appendPublish(buf, &f.outMsg, f.pid, true)
				f.due = false
				f.sent = now
				s.resendDue--
				s.srv.m.delivered(f.qos)
			}
		}
		kept = append(kept, f)
	}
	clear(s.inflight[len(kept):])
	s.inflight = kept
	c.t.endWrite(buf)
	if blocked {
		c.t.notifyDrained()
	}
	return s.resendDue == 0
}

// ack handles PUBACK pid from connection c.
func (s *session) ack(c *mqttConn, pid uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != c || s.removed {
		return
	}
	// An unknown id is ignored (a late ack of a message resent after
	// reconnect, or a confused client).
	s.takeInflight(pid)
	s.drainLocked()
}

// takeInflight removes the inflight message with pid and returns its
// sequence; false: none. s.mu held.
func (s *session) takeInflight(pid uint16) (seq uint64, ok bool) {
	for i := range s.inflight {
		if s.inflight[i].pid == pid {
			seq = s.inflight[i].m.Seq
			if s.inflight[i].due {
				s.resendDue--
			}
			copy(s.inflight[i:], s.inflight[i+1:])
			s.inflight[len(s.inflight)-1] = inflightMsg{}
			s.inflight = s.inflight[:len(s.inflight)-1]
			return seq, true
		}
	}
	return 0, false
}

// armRetry schedules the redelivery check. s.mu held.
func (s *session) armRetry() {
	if s.retryArmed || len(s.inflight) == 0 || s.conn == nil {
		return
	}
	s.retryArmed = true
	d := s.srv.cfg.RetryInterval
	if s.retry == nil {
		s.retry = time.AfterFunc(d, s.retryFire)
	} else {
		s.retry.Reset(d)
	}
}

func (s *session) retryFire() {
	defer func() {
		if r := recover(); r != nil {
			s.srv.panicked("retry", r, debug.Stack())
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retryArmed = false
	if s.removed || s.conn == nil {
		return
	}
	s.resendInflight(s.srv.cfg.RetryInterval)
	s.armRetry()
}

// ---- connection binding ----

// attach makes c the session's connection (registration, under
// Server.mu and s.mu); replay must follow before s.mu is released.
func (s *session) attach(c *mqttConn, level byte) {
	s.takeWill() // resumed within the Will Delay Interval: no will
	s.conn = c
	s.level = level
	s.recvMax, s.maxOut, s.lifetime = c.recvMax, c.maxOut, c.lifetime
	s.offlineGen++
	if s.expiry != nil {
		s.expiry.Stop()
	}
}

// replay writes preamble (CONNACK) first, on its own, then inflight
// messages again (DUP), then the queue, only as fast as the backlog limit
// allows (the rest from the drained callback), so a large replay can
// never get the connection closed. Only s.mu is held, not Server.mu.
func (s *session) replay(preamble func([]byte) []byte) {
	c := s.conn
	buf, _, _ := c.t.beginWrite()
	buf = preamble(buf)
	c.flags.set(flagConnacked) // before the CONNACK can reach the client: a kill then sends its DISCONNECT after it
	c.t.endWrite(buf)
	s.resendPubrels(c)
	s.resendInflight(0)
	s.drainLocked()
	s.armRetry()
}

// ---- subscriptions ----

// subscribe adds or replaces a filter for connection c and returns the
// SUBACK code, and whether the filter is new to the session.
func (s *session) subscribe(c *mqttConn, filter string, qos byte, t subTarget) (code byte, isNew bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != c || s.removed {
		return packet.SubackFailure, false
	}
	for i := range s.subs {
		if s.subs[i].filter == filter {
			// Same filter, same cost, same place in the topic index:
			// nothing more is held.
			s.subs[i] = s.newSubscription(filter, qos, t)
			return qos, false
		}
	}
	if len(s.subs) >= s.srv.cfg.MaxSubscriptions {
		s.srv.m.refusal(reasonSubscribeMax)
		return packet.SubackFailure, false
	}
	if !s.lim.addSubBytes(subscriptionCost(filter), int64(s.srv.cfg.MaxSubscriptionBytes)) {
		c.refuseFilter(reasonSubscriptionBytes, filter)
		return packet.SubackFailure, false
	}
	s.subs = append(s.subs, s.newSubscription(filter, qos, t))
	if t.topic {
		s.srv.topicIdx.add(filter, s)
	}
	return qos, true
}

// subTarget is what a granted filter is: a group topic (gid), a rule
// topic filter (topic; byGroup if only a group rule admits it), or
// else a filter of the principal's private tree.
type subTarget struct {
	gid            string
	topic, byGroup bool
}

// newSubscription makes the subscription of an accepted filter.
func (s *session) newSubscription(filter string, qos byte, t subTarget) subscription {
	all := t.gid == "" && !t.topic && len(filter) == len(s.srv.tp.privateSlash)+len(s.principal)+2 &&
		filter == s.srv.tp.privateSlash+s.principal+"/#"
	return subscription{filter: filter, qos: qos, group: t.gid, all: all, topic: t.topic, byGroup: t.byGroup}
}

// unsubscribe removes filters, and appends to codes each one's 5.0
// UNSUBACK reason code: success, or no subscription existed.
func (s *session) unsubscribe(c *mqttConn, filters []string, codes []byte) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	mine := s.conn == c && !s.removed
	for _, f := range filters {
		code := packet.CodeNoSubscriptionExisted
		for i := range s.subs {
			if mine && s.subs[i].filter == f {
				s.lim.subBytes.Add(-subscriptionCost(f))
				if s.subs[i].topic {
					s.srv.topicIdx.remove(f, s)
				}
				s.subs = append(s.subs[:i], s.subs[i+1:]...)
				code = packet.CodeSuccess
				break
			}
		}
		codes = append(codes, code)
	}
	return codes
}

// setLifetime sets how long the session outlives connection c (a 5.0
// DISCONNECT's Session Expiry Interval).
func (s *session) setLifetime(c *mqttConn, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == c {
		s.lifetime = d
	}
}

// release drops everything the session holds, its share of the
// principal's subscription bytes and its reference to the principal's
// state included. Server.mu and s.mu held.
func (s *session) release() {
	if !s.removed {
		for i := range s.subs {
			s.lim.subBytes.Add(-subscriptionCost(s.subs[i].filter))
			if s.subs[i].topic {
				s.srv.topicIdx.remove(s.subs[i].filter, s)
			}
		}
		s.srv.releasePrincipalLocked(s.principal, s.lim)
	}
	s.removed = true
	s.conn = nil
	if w := s.takeWill(); w != nil && !s.moved {
		go w() // the session ended: its delayed will goes now (off the locks held here)
	}
	s.offlineBacklog()
	if d := s.dur; d != nil {
		d.parked = nil
		d.sent = nil
		if d.room != nil {
			d.room.Broadcast() // a replay ends
		}
	}
	s.subs = nil
	s.inflight = nil
	s.resendDue = 0
	s.queue.reset()
	if s.expiry != nil {
		s.expiry.Stop()
	}
	if s.retry != nil {
		s.retry.Stop()
	}
}
