package fanout

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pushring/pushring/message"
)

// mustNew is New for a Config the test knows to be good. A nil Logger
// becomes a discarding one: the warnings tests provoke on purpose stay out
// of the test output.
func mustNew(tb testing.TB, cfg Config, bus Bus, members Members, place Placement, d Deliverer) *Fanout {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f, err := New(cfg, bus, members, place, d)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// mapPlacement is a predictable Placement: homes and owners from maps,
// def for anything not listed. Safe for concurrent reads.
type mapPlacement struct {
	homes  map[string]string
	owners map[string]string
	def    string
}

func (p *mapPlacement) Home(id string) string {
	if n, ok := p.homes[id]; ok {
		return n
	}
	return p.def
}

func (p *mapPlacement) Owner(gid string) string {
	if n, ok := p.owners[gid]; ok {
		return n
	}
	return p.def
}

// staticMembers is a Members over a map.
type staticMembers map[string][]string

func (m staticMembers) Members(gid string) []string { return m[gid] }

// recorder is a Deliverer that remembers every delivery.
type recorder struct {
	mu    sync.Mutex
	calls int                       // Deliver calls
	got   map[uint64]map[string]int // message id → recipient → times
	msgs  map[uint64]message.Message
}

func newRecorder() *recorder {
	return &recorder{got: map[uint64]map[string]int{}, msgs: map[uint64]message.Message{}}
}

func (r *recorder) Deliver(m *message.Message, recipients []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	per := r.got[m.ID]
	if per == nil {
		per = map[string]int{}
		r.got[m.ID] = per
	}
	for _, id := range recipients {
		per[id]++ // map keys copy nothing: strings alias the envelope, which stays alive
	}
	// Keep a copy as a router would (Payload may be kept).
	r.msgs[m.ID] = message.Message{ID: m.ID, Seq: m.Seq, Kind: m.Kind, From: string([]byte(m.From)),
		To: string([]byte(m.To)), QoS: m.QoS, Payload: m.Payload}
}

func (r *recorder) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// count returns how many deliveries of message id went to recipient rid.
func (r *recorder) count(id uint64, rid string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[id][rid]
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, per := range r.got {
		for _, c := range per {
			n += c
		}
	}
	return n
}

// testNode is one Fanout of a test cluster with its recorder.
type testNode struct {
	id  string
	f   *Fanout
	rec *recorder
	bus *handledBus
}

// handledBus is a node's Bus that counts the envelopes its handler has
// finished with: with the Fanout's Stats, that tells when nothing is on
// its way or being handled any more (idle).
type handledBus struct {
	Bus
	handled atomic.Uint64
}

func (b *handledBus) Subscribe(subject string, fn func(data []byte)) (func(), error) {
	return b.Bus.Subscribe(subject, func(data []byte) {
		fn(data)
		b.handled.Add(1)
	})
}

// busNode is what idle needs of a node.
type busNode struct {
	f   *Fanout
	bus *handledBus
}

// idle returns nil when every envelope the nodes sent each other has been
// received and handled to the end, so nothing they sent while handling
// is still on its way: the counters are read as sent, received, handled,
// sent, received, and must all agree (received and sent did not move
// while no handler was running). It cannot see envelopes a node's own
// goroutines (attach, ack) are about to send: wait for those by their
// counters. The nodes must be running, and subscribed to every subject
// they send to.
func idle(nodes []busNode) error {
	sum := func(fn func(n busNode) uint64) uint64 {
		var t uint64
		for _, n := range nodes {
			t += fn(n)
		}
		return t
	}
	sent := func(n busNode) uint64 { s := n.f.Stats(); return s.EnvelopesSent + s.AcksSent }
	received := func(n busNode) uint64 { s := n.f.Stats(); return s.EnvelopesReceived + s.DecodeErrors }
	handled := func(n busNode) uint64 { return n.bus.handled.Load() }
	s1, r1 := sum(sent), sum(received)
	h := sum(handled)
	s2, r2 := sum(sent), sum(received)
	if s1 != r1 || r1 != h || h != s2 || s2 != r2 {
		return fmt.Errorf("envelopes in flight: sent %d, received %d, handled %d, then sent %d, received %d", s1, r1, h, s2, r2)
	}
	return nil
}

func busNodes(nodes []*testNode) []busNode {
	out := make([]busNode, len(nodes))
	for i, n := range nodes {
		out[i] = busNode{n.f, n.bus}
	}
	return out
}

// startNodes starts one Fanout per id, each on the bus busFor(i) returns,
// sharing members; place(i) is node i's view of the placement.
func startNodes(t testing.TB, ids []string, busFor func(i int) Bus, members Members,
	place func(i int) Placement, tweak func(*Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, len(ids))
	for i, id := range ids {
		cfg := DefaultConfig()
		cfg.NodeID = id
		cfg.Cluster = "test"
		if tweak != nil {
			tweak(&cfg)
		}
		rec := newRecorder()
		bus := &handledBus{Bus: busFor(i)}
		f := mustNew(t, cfg, bus, members, place(i), rec)
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		nodes[i] = &testNode{id: id, f: f, rec: rec, bus: bus}
	}
	return nodes
}

// groupOf returns n member ids and a placement that homes member i on
// ids[i%len(ids)].
func groupOf(n int, ids []string) ([]string, map[string]string) {
	members := make([]string, n)
	homes := make(map[string]string, n)
	for i := range members {
		members[i] = fmt.Sprintf("user-%04d", i)
		homes[members[i]] = ids[i%len(ids)]
	}
	return members, homes
}

func sumStats(nodes []*testNode) Stats {
	var s Stats
	for _, n := range nodes {
		x := n.f.Stats()
		s.EnvelopesSent += x.EnvelopesSent
		s.ResolvesSent += x.ResolvesSent
		s.DeliversSent += x.DeliversSent
		s.EnvelopesReceived += x.EnvelopesReceived
		s.ResolvesReceived += x.ResolvesReceived
		s.DeliversReceived += x.DeliversReceived
		s.GroupMessages += x.GroupMessages
		s.DirectMessages += x.DirectMessages
		s.ResolvesForwarded += x.ResolvesForwarded
		s.HopLimitDrops += x.HopLimitDrops
		s.DecodeErrors += x.DecodeErrors
		s.PublishErrors += x.PublishErrors
		s.Recipients += x.Recipients
	}
	return s
}

// countRecipients sums, over nodes, the deliveries of message id (each
// recipient once per delivery; a duplicate counts twice).
func countRecipients(nodes []*testNode, id uint64) int {
	n := 0
	for _, tn := range nodes {
		tn.rec.mu.Lock()
		for _, c := range tn.rec.got[id] {
			n += c
		}
		tn.rec.mu.Unlock()
	}
	return n
}
