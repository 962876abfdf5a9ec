package fanout

// Presence queries: which principals are connected, cluster-wide. The
// asking node sends a Presence envelope to each node it asks and waits
// for their PresenceAnswer envelopes, up to its caller's deadline; the
// answers come from each node's PresenceSource (the MQTT server, through
// the node). A node that does not answer in time (dead, not yet known
// to be, or of an earlier release) is reported as missing: the clients
// it had are not online anywhere it could be asked.

import (
	"context"
	"slices"
	"sync"
)

// PresenceSource answers for this node which principals have a
// connected session here.
type PresenceSource interface {
	// Connected returns how many of ids, or, when group is not empty, of
	// group's members, are connected here, listing up to max of them.
	Connected(group string, ids []string, max int) (listed []string, count int)
}

// SetPresenceSource sets the answerer of presence queries; nil (the
// default): this node answers that nobody is connected.
func (f *Fanout) SetPresenceSource(src PresenceSource) {
	f.ask.mu.Lock()
	f.ask.src = src
	f.ask.mu.Unlock()
}

// NodePresence is one node's answer.
type NodePresence struct {
	// Count of those asked about are connected to the node, of which
	// Connected lists all or the first.
	Count     int
	Connected []string
}

// PresenceResult is what the nodes asked answered.
type PresenceResult struct {
	Answers map[string]NodePresence // by node id
	Missing []string                // nodes that did not answer in time, sorted
}

// asks is the state of the presence queries this node waits for.
type asks struct {
	slots   chan struct{} // maxPresenceAnswers
	mu      sync.Mutex
	src     PresenceSource
	next    uint64
	waiting map[uint64]chan nodeAnswer
}

type nodeAnswer struct {
	node string
	NodePresence
}

// maxPresenceList caps the ids one answer lists, so an answer about a
// large group stays one envelope (10,000 ids of at most 64 bytes fit in
// NATS's default 1 MiB message).
const maxPresenceList = 10_000

// Presence asks every node in nodes (the others over the bus, then this
// one directly) which of ids, or of group's members when group is
// not empty, are connected to it, and waits for all the answers or for
// ctx to end. Goroutine-safe.
func (f *Fanout) Presence(ctx context.Context, nodes []string, group string, ids []string) PresenceResult {
	res := PresenceResult{Answers: make(map[string]NodePresence, len(nodes))}
	ch := make(chan nodeAnswer, len(nodes)) // a node's second answer is dropped (handlePresenceAnswer)
	f.ask.mu.Lock()
	f.ask.next++
	q := f.ask.next
	if f.ask.waiting == nil {
		f.ask.waiting = make(map[uint64]chan nodeAnswer)
	}
	f.ask.waiting[q] = ch
	f.ask.mu.Unlock()
	defer func() {
		f.ask.mu.Lock()
		delete(f.ask.waiting, q)
		f.ask.mu.Unlock()
	}()
	e := Envelope{Kind: KindPresence, Sender: f.self, Query: q, Group: group}
	if group == "" {
		e.Principals = ids
	}
	pending := make(map[string]bool, len(nodes))
	var data []byte
	self := false
	for _, node := range nodes {
		if node == f.self {
			self = true
			continue
		}
		if pending[node] {
			continue
		}
		pending[node] = true
		if data == nil {
			var err error
			if data, err = AppendEnvelope(nil, &e); err != nil {
				f.warn("presence query not encoded", "err", err)
				continue // this node stays pending: reported missing
			}
		}
		if err := f.publish(node, data); err != nil {
			f.warn("presence query not sent", "node", node, "err", err)
		}
	}
	if self { // while the others work out theirs
		res.Answers[f.self] = f.connected(group, ids)
	}
	for len(pending) > 0 {
		select {
		case a := <-ch:
			if pending[a.node] {
				delete(pending, a.node)
				res.Answers[a.node] = a.NodePresence
			}
		case <-ctx.Done():
			for node := range pending {
				res.Missing = append(res.Missing, node)
			}
			slices.Sort(res.Missing)
			return res
		}
	}
	return res
}

// connected is this node's answer.
func (f *Fanout) connected(group string, ids []string) NodePresence {
	f.ask.mu.Lock()
	src := f.ask.src
	f.ask.mu.Unlock()
	if src == nil || group == "" && len(ids) == 0 {
		return NodePresence{}
	}
	listed, n := src.Connected(group, ids, maxPresenceList)
	return NodePresence{Count: n, Connected: listed}
}

// maxPresenceAnswers bounds the presence answers worked out at once:
// each walks a group's members, off the bus goroutine that delivers.
// A query over it is not answered (the asking node reports this one
// missing).
const maxPresenceAnswers = 4

// handlePresence answers a Presence envelope to its sender, on a
// goroutine of its own: a large group's answer must not hold up the
// deliveries behind it.
func (f *Fanout) handlePresence(env *Envelope) {
	select {
	case f.ask.slots <- struct{}{}:
	default:
		f.warn("presence query not answered: too many at once", "from", env.Sender)
		return
	}
	e := *env
	e.Principals = slices.Clone(env.Principals) // the scratch is reused after handle
	go func() {
		defer func() { <-f.ask.slots }()
		f.answerPresence(&e)
	}()
}

func (f *Fanout) answerPresence(env *Envelope) {
	a := f.connected(env.Group, env.Principals)
	out := Envelope{Kind: KindPresenceAnswer, Sender: f.self, Query: env.Query, Count: uint64(a.Count)}
	if len(a.Connected) > 0 {
		out.Principals = a.Connected
	}
	data, err := AppendEnvelope(nil, &out)
	if err != nil {
		f.warn("presence answer not encoded", "err", err)
		return
	}
	if err := f.publish(env.Sender, data); err != nil {
		f.warn("presence answer not sent", "node", env.Sender, "err", err)
	}
}

// handlePresenceAnswer hands an answer to the query waiting for it; an
// answer that comes after its query gave up is dropped.
func (f *Fanout) handlePresenceAnswer(env *Envelope) {
	f.ask.mu.Lock()
	ch := f.ask.waiting[env.Query]
	f.ask.mu.Unlock()
	if ch == nil {
		return
	}
	a := nodeAnswer{node: env.Sender, NodePresence: NodePresence{Count: int(env.Count), Connected: slices.Clone(env.Principals)}}
	select {
	case ch <- a:
	default: // a second answer from one node: the first counts
	}
}
