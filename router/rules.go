package router

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
	"github.com/pushring/pushring/rules"
)

// Rule topics: topics outside pushring's namespaces that the operator's
// topic rules open (package rules), served as a plain broker serves
// them. A PUBLISH to one the rules let the principal publish to becomes
// a message.Topic message with the topic as it is; a SUBSCRIBE to a
// filter the rules let it subscribe to becomes a topic subscription,
// indexed here by filter (topicIndex) so that a topic message finds the
// sessions of this node it matches without looking at the others.
//
// Between nodes, the index's filters are this node's interest
// (TopicInterest, fanout's NATS subscriptions): the first session of
// the node with a filter watches it, the last one to drop it unwatches
// it, and a topic message reaches a node once however many of its
// filters match. A SUBSCRIBE that adds a filter is answered once this
// node's NATS server knows the interest, so a message published after
// the SUBACK is delivered (other servers of a NATS cluster learn it
// within about a round trip between them).
//
// A subscription that only a rule naming a group admits is checked
// again before each delivery, as a group subscription is: a principal
// that left the group stops getting the messages at once.

// TopicInterest is this node's interest in topic messages between
// nodes. fanout implements it. Watch and Unwatch are called with router
// locks held (and without, by bind's prewatch): they must not block
// beyond handing a subscription to the bus, and must never call back
// into the router.
type TopicInterest interface {
	// Watch makes this node receive the topic messages filter matches.
	// It counts: the topic index calls it once per filter it holds, and
	// bind's prewatch once more for a resumed session's filters.
	Watch(filter string) error
	// Unwatch undoes one Watch.
	Unwatch(filter string)
	// SyncWatches returns once every Watch so far took effect.
	SyncWatches(ctx context.Context) error
}

// SetTopicRules opens the rule topics r allows, with interest telling
// the cluster which filters this node's sessions hold (nil: topic
// messages stay on this node). Call it before Serve. r must have been
// parsed with ReservedFilters of this server's Config. Without rules
// (the default) every topic outside pushring's namespaces is refused.
func (s *Server) SetTopicRules(r *rules.Rules, interest TopicInterest) {
	s.rules = r
	s.topicIdx.interest = interest
	s.topicIdx.log = s.log
}

// ReservedFilters are the filters of the namespaces pushring owns with
// Config c: topic rules may not overlap them (rules.Parse refuses those
// that do).
func ReservedFilters(c Config) []string {
	tp := newTopics(c.withDefaults())
	var out []string
	for _, p := range tp.namespaces() {
		out = append(out, p+"/#")
	}
	return out
}

// namespaces are the prefixes of pushring's own topics: the private
// trees, the groups, the service topics and the older clients' auth
// topic.
func (tp *topics) namespaces() [4]string {
	return [...]string{tp.private, tp.group, tp.service, tp.authTopicProto}
}

// reserved reports whether topic or filter t lies in one of pushring's
// namespaces, or is their parent level.
func (tp *topics) reserved(t []byte) bool {
	for _, p := range tp.namespaces() {
		if rest, ok := bytes.CutPrefix(t, []byte(p)); ok && (len(rest) == 0 || rest[0] == '/') {
			return true
		}
	}
	return false
}

// maxRuleTopic bounds a rule topic or filter (and MaxFilterLen too):
// between nodes each of its levels becomes a NATS subject token, up to
// three times as long once escaped, and a NATS subject must stay well
// under the server's 4 KiB protocol line.
const maxRuleTopic = 512

// publishTo classifies topic t (a valid topic name) for a PUBLISH or
// will of id and checks the ACL: the message's kind and addressee, or
// a refusal reason.
func (s *Server) publishTo(id *Identity, t []byte) (kind message.Kind, to string, reason string) {
	kind, toB, reason := s.tp.publishTarget(t)
	if reason == reasonTopic && s.rules != nil && !s.tp.reserved(t) {
		switch {
		case len(t) > min(s.cfg.MaxFilterLen, maxRuleTopic):
			return 0, "", reasonTopic
		case !s.rules.CanPublish(rules.Actor{ID: id.ID, Device: id.Device}, t, s.acl):
			return 0, "", reasonTopicACL
		}
		return message.Topic, string(t), ""
	}
	if reason != "" {
		return 0, "", reason
	}
	to = string(toB)
	_, reason = allowPublish(s.acl, id.ID, kind, to)
	return kind, to, reason
}

// subscribeTopic reports whether principal id (device or not) may
// subscribe to filter as a rule topic filter, and whether only a group
// rule admits it.
func (s *Server) subscribeTopic(id string, device bool, filter string) (ok, byGroup bool) {
	if s.rules == nil || len(filter) > maxRuleTopic || s.tp.reserved([]byte(filter)) || strings.HasPrefix(filter, "$share/") {
		return false, false
	}
	return s.rules.Subscribe(rules.Actor{ID: id, Device: device}, filter, s.acl)
}

// topicQoS returns the best QoS of the session's topic subscriptions
// that match m's topic and still admit the principal, -1 if none, and
// whether a matching one no longer admits it (its group rule). s.mu
// held.
func (s *session) topicQoS(m *message.Message) (best int, refused bool) {
	best = -1
	for i := range s.subs {
		sub := &s.subs[i]
		if !sub.topic || int(sub.qos) <= best || !packet.Match(sub.filter, m.To) {
			continue
		}
		if sub.byGroup && !s.srv.rules.CanSubscribe(rules.Actor{ID: s.principal, Device: s.device}, sub.filter, s.srv.acl) {
			refused = true
			continue
		}
		best = int(sub.qos)
	}
	return best, refused
}

// hasTopicSubs reports whether the session holds a topic subscription
// (its replays then read the journal's topic messages). s.mu held.
func (s *session) hasTopicSubs() bool {
	for i := range s.subs {
		if s.subs[i].topic {
			return true
		}
	}
	return false
}

// DeliverTopic gives topic message m to every session of this node with
// a topic subscription that matches it, once per session. It
// implements fanout.TopicDeliverer. Never blocks on a client.
func (s *Server) DeliverTopic(m *message.Message) {
	if m.Kind != message.Topic {
		return
	}
	sp, _ := s.topicIdx.scratch.Get().(*[]*session)
	if sp == nil {
		sp = new([]*session)
	}
	list := s.topicIdx.match(m.To, (*sp)[:0])
	for i, sess := range list {
		sess.deliver(m, nil)
		list[i] = nil
	}
	*sp = list[:0]
	s.topicIdx.scratch.Put(sp)
}

// topicIndex finds the sessions whose topic filters match a topic: a
// tree of filter levels, each node holding the sessions whose filter
// ends there. Its lock is taken after Server.mu and session locks, and
// nothing is called under it but the TopicInterest.
type topicIndex struct {
	mu       sync.RWMutex
	root     topicNode
	filters  int // distinct filters held
	interest TopicInterest
	log      interface {
		Warn(msg string, args ...any)
	}
	scratch sync.Pool // *[]*session, DeliverTopic's
}

type topicNode struct {
	kids     map[string]*topicNode // by level; "+" and "#" are levels too
	sessions map[*session]struct{} // whose filter ends here
}

// add indexes filter for sess; the node's first session with it
// watches it.
func (x *topicIndex) add(filter string, sess *session) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := &x.root
	for l := range strings.SplitSeq(filter, "/") {
		k := n.kids[l]
		if k == nil {
			if n.kids == nil {
				n.kids = make(map[string]*topicNode)
			}
			k = new(topicNode)
			n.kids[l] = k
		}
		n = k
	}
	if _, ok := n.sessions[sess]; ok {
		return
	}
	if n.sessions == nil {
		n.sessions = make(map[*session]struct{})
	}
	n.sessions[sess] = struct{}{}
	if len(n.sessions) == 1 {
		x.filters++
		if x.interest != nil {
			if err := x.interest.Watch(filter); err != nil && x.log != nil {
				x.log.Warn("mqtt: could not watch a topic filter between nodes; its messages from other nodes are missed", "filter", filter, "err", err)
			}
		}
	}
}

// remove drops filter for sess; the last session with it unwatches it,
// and the tree loses the nodes left empty.
func (x *topicIndex) remove(filter string, sess *session) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var path [64]*topicNode // the nodes down to the filter's, for pruning
	nodes := append(path[:0], &x.root)
	n := &x.root
	for l := range strings.SplitSeq(filter, "/") {
		if n = n.kids[l]; n == nil {
			return
		}
		nodes = append(nodes, n)
	}
	if _, ok := n.sessions[sess]; !ok {
		return
	}
	delete(n.sessions, sess)
	if len(n.sessions) > 0 {
		return
	}
	n.sessions = nil
	x.filters--
	if x.interest != nil {
		x.interest.Unwatch(filter)
	}
	levels := strings.Split(filter, "/")
	for i := len(nodes) - 1; i > 0; i-- {
		k := nodes[i]
		if len(k.kids) > 0 || len(k.sessions) > 0 {
			break
		}
		delete(nodes[i-1].kids, levels[i-1])
	}
}

// match appends to out the sessions with a filter that matches topic,
// each once.
func (x *topicIndex) match(topic string, out []*session) []*session {
	from := len(out)
	filters := 0 // filters that matched, each with its sessions once
	x.mu.RLock()
	if x.filters > 0 {
		out = x.root.match(topic, true, out, &filters)
	}
	x.mu.RUnlock()
	if filters < 2 {
		return out
	}
	// A session with overlapping filters was found once per filter:
	// sorted, its copies are neighbours (n log n, for channels with
	// many subscribers).
	found := out[from:]
	slices.SortFunc(found, func(a, b *session) int {
		return cmp.Compare(uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(b)))
	})
	return out[:from+len(slices.Compact(found))]
}

// match walks the levels of topic (what is left of it, first: at its
// first level) from n.
func (n *topicNode) match(topic string, first bool, out []*session, filters *int) []*session {
	// A wildcard first level matches no $ topic [MQTT-4.7.2-1].
	wild := !first || !strings.HasPrefix(topic, "$")
	if k := n.kids["#"]; k != nil && wild {
		out = appendSessions(out, k, filters) // '#' also matches the parent level
	}
	level, rest, more := strings.Cut(topic, "/")
	if k := n.kids[level]; k != nil {
		out = k.matchRest(rest, more, out, filters)
	}
	if k := n.kids["+"]; k != nil && wild {
		out = k.matchRest(rest, more, out, filters)
	}
	return out
}

// matchRest goes on from n, the node of a matched level, with the rest
// of the topic (more: there is a rest, maybe empty).
func (n *topicNode) matchRest(rest string, more bool, out []*session, filters *int) []*session {
	if !more {
		out = appendSessions(out, n, filters)
		if k := n.kids["#"]; k != nil {
			out = appendSessions(out, k, filters) // "a/#" matches "a"
		}
		return out
	}
	return n.match(rest, false, out, filters)
}

func appendSessions(out []*session, n *topicNode, filters *int) []*session {
	if len(n.sessions) == 0 {
		return out
	}
	*filters++
	for s := range n.sessions {
		out = append(out, s)
	}
	return out
}

// prewatch watches the rule-topic filters of the persistent session c's
// claim found, before register resumes it, and waits until the watch is
// known between nodes (syncWatches): a resumed session's CONNACK then
// promises what a SUBACK does, delivery of what is published after it.
// Once registered, the session's own watches (resume, through
// topicIdx) hold the filters, and bind drops these (unwatch). No lock
// held: a watch is a NATS subscription, and the sync a round trip.
func (c *mqttConn) prewatch() []string {
	in, cl := c.srv.topicIdx.interest, c.claimed
	if in == nil || cl == nil || !cl.Found || c.clean {
		return nil
	}
	var watched []string
	for _, sub := range cl.Subs {
		if c.srv.topicIdx.holds(sub.Filter) {
			continue // watched already (the session is here, or another with the filter): synced at its SUBSCRIBE
		}
		if ok, _ := c.srv.subscribeTopic(c.id.ID, c.id.Device, sub.Filter); ok && in.Watch(sub.Filter) == nil {
			watched = append(watched, sub.Filter)
		}
	}
	if len(watched) > 0 {
		c.syncWatches()
	}
	return watched
}

// holds reports whether filter is in the index (and so watched).
func (x *topicIndex) holds(filter string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := &x.root
	for l := range strings.SplitSeq(filter, "/") {
		if n = n.kids[l]; n == nil {
			return false
		}
	}
	return len(n.sessions) > 0
}

// unwatch drops the watches prewatch took.
func (c *mqttConn) unwatch(filters []string) {
	for _, f := range filters {
		c.srv.topicIdx.interest.Unwatch(f)
	}
}

// syncWatches waits, within ConnectTimeout, until the topic filters c's
// SUBSCRIBE added are known between nodes; past it (NATS unreachable)
// the SUBACK goes anyway and the interest follows when it can.
func (c *mqttConn) syncWatches() {
	in := c.srv.topicIdx.interest
	if in == nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.srv.stopping, c.srv.cfg.ConnectTimeout)
	defer cancel()
	if err := in.SyncWatches(ctx); err != nil {
		if ok, n := c.srv.storeLog.Allow(time.Second); ok {
			c.srv.log.Warn("mqtt: topic filters not yet known between nodes", "id", c.id.ID, "err", err, "since_last_logged", n)
		}
	}
}
