package fanout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

var threeIDs = []string{"n1", "n2", "n3"}

// runCoreScenario is the scenario both buses must pass: three nodes, a
// group of 300 members homed a third on each node, owned by n2, and a
// second group owned by the ingress node n1. Every group message must
// cost exactly one Deliver envelope per home node and reach every member
// exactly once; a message whose owner is not the ingress goes through one
// Resolve.
func runCoreScenario(t *testing.T, busFor func(i int) Bus) {
	members, homes := groupOf(300, threeIDs)
	place := &mapPlacement{homes: homes, owners: map[string]string{"g-remote": "n2", "g-local": "n1"}, def: "n3"}
	dir := staticMembers{"g-remote": members, "g-local": members}
	nodes := startNodes(t, threeIDs, busFor, dir, func(int) Placement { return place }, nil)
	ingress := nodes[0]

	const perGroup = 10
	ctx := context.Background()
	var id uint64
	var sent []*message.Message
	for range perGroup {
		for _, gid := range []string{"g-remote", "g-local"} {
			id++
			// A stream sequence unlike the id, carried through the
			// Resolve (g-remote) and every Deliver.
			m := &message.Message{ID: id, Seq: 1<<40 + id, Kind: message.Group, From: "dev", To: gid, QoS: 1,
				Payload: fmt.Appendf(nil, "payload %d", id)}
			if err := ingress.f.Forward(ctx, m); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, m)
		}
	}
	// Direct messages: one to a member on each node.
	for i := range 3 {
		id++
		m := &message.Message{ID: id, Kind: message.Direct, From: "a", To: members[i], QoS: 0, Payload: []byte("direct")}
		if err := ingress.f.Forward(ctx, m); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
	}

	wantPerNode := 2*perGroup*100 + 1
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		for _, n := range nodes {
			if got := n.rec.total(); got < wantPerNode {
				return fmt.Errorf("%s: %d deliveries, want %d", n.id, got, wantPerNode)
			}
		}
		if s := sumStats(nodes); s.EnvelopesSent != s.EnvelopesReceived {
			return fmt.Errorf("envelopes in flight: sent %d, received %d", s.EnvelopesSent, s.EnvelopesReceived)
		}
		return nil
	})

	for _, n := range nodes {
		// One Deliver envelope per group message per home node, plus the
		// direct one.
		if c, want := n.rec.Calls(), 2*perGroup+1; c != want {
			t.Errorf("%s: %d Deliver calls, want %d", n.id, c, want)
		}
		if s := n.f.Stats(); s.DeliversReceived != uint64(2*perGroup+1) || s.Recipients != uint64(wantPerNode) {
			t.Errorf("%s: stats %+v", n.id, s)
		}
		if got := n.rec.total(); got != wantPerNode {
			t.Errorf("%s: %d deliveries, want %d", n.id, got, wantPerNode)
		}
	}
	for _, m := range sent {
		rcpts := members
		if m.Kind == message.Direct {
			rcpts = []string{m.To}
		}
		for _, rid := range rcpts {
			for _, n := range nodes {
				want := 0
				if homes[rid] == n.id {
					want = 1
				}
				if got := n.rec.count(m.ID, rid); got != want {
					t.Fatalf("message %d to %s: delivered %d times on %s, want %d", m.ID, rid, got, n.id, want)
				}
			}
		}
		// The payload a Deliverer kept is intact (the bus reused and
		// overwrote its buffer: decode must have copied).
		var kept []byte
		for _, n := range nodes {
			n.rec.mu.Lock()
			if km, ok := n.rec.msgs[m.ID]; ok {
				kept = km.Payload
				if km.From != m.From || km.To != m.To || km.Kind != m.Kind || km.QoS != m.QoS || km.Seq != m.Seq {
					t.Errorf("message %d arrived as %+v", m.ID, km)
				}
			}
			n.rec.mu.Unlock()
		}
		if !bytes.Equal(kept, m.Payload) {
			t.Errorf("message %d: kept payload %q, want %q", m.ID, kept, m.Payload)
		}
	}

	// Resolution: only g-remote went through a Resolve, n1 → n2.
	s1, s2, s3 := nodes[0].f.Stats(), nodes[1].f.Stats(), nodes[2].f.Stats()
	if s1.ResolvesSent != perGroup || s2.ResolvesReceived != perGroup || s1.ResolvesReceived+s3.ResolvesReceived != 0 {
		t.Errorf("resolves: n1 sent %d, n2 received %d, n1+n3 received %d; want %d, %d, 0",
			s1.ResolvesSent, s2.ResolvesReceived, s1.ResolvesReceived+s3.ResolvesReceived, perGroup, perGroup)
	}
	// n1 resolved g-local (3 Delivers each) and sent 3 directs; n2
	// resolved g-remote.
	if s1.DeliversSent != 3*perGroup+3 || s2.DeliversSent != 3*perGroup || s3.DeliversSent != 0 {
		t.Errorf("delivers sent: %d %d %d", s1.DeliversSent, s2.DeliversSent, s3.DeliversSent)
	}
	if s1.GroupMessages != 2*perGroup || s1.DirectMessages != 3 {
		t.Errorf("n1 messages: %+v", s1)
	}
	if s := sumStats(nodes); s.DecodeErrors+s.HopLimitDrops+s.PublishErrors != 0 {
		t.Errorf("errors: %+v", s)
	}
}

func TestClusterMemoryBus(t *testing.T) {
	bus := NewMemoryBus()
	runCoreScenario(t, func(int) Bus { return bus })
}

func TestHopLimitStopsLoopAndResolves(t *testing.T) {
	bus := NewMemoryBus()
	ids := []string{"n1", "n2"}
	members, homes := groupOf(10, ids)
	// Each node thinks the other owns g.
	views := []Placement{
		&mapPlacement{homes: homes, owners: map[string]string{"g": "n2"}},
		&mapPlacement{homes: homes, owners: map[string]string{"g": "n1"}},
	}
	nodes := startNodes(t, ids, func(int) Bus { return bus }, staticMembers{"g": members},
		func(i int) Placement { return views[i] }, nil)
	m := &message.Message{ID: 1, Kind: message.Group, To: "g", Payload: []byte("x")}
	if err := nodes[0].f.Forward(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := sumStats(nodes); s.HopLimitDrops != 1 {
			return fmt.Errorf("hop limit drops %d", s.HopLimitDrops)
		}
		return nil
	})
	// Sent with hops 0, re-sent with hops 1..4; the node that got hops 4
	// stops the loop and resolves it itself: every member exactly once.
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := countRecipients(nodes, 1); got != len(members) {
			return fmt.Errorf("%d of %d members delivered", got, len(members))
		}
		return nil
	})
	s := sumStats(nodes)
	if s.ResolvesForwarded != 4 || s.ResolvesSent != 5 || s.ResolvesReceived != 5 {
		t.Errorf("stats: %+v", s)
	}
}

func TestResolveFollowsMovedOwner(t *testing.T) {
	bus := NewMemoryBus()
	members, homes := groupOf(30, threeIDs)
	// The ring is converging: n1 thinks n2 owns g, n2 already knows it is n3.
	views := []Placement{
		&mapPlacement{homes: homes, owners: map[string]string{"g": "n2"}},
		&mapPlacement{homes: homes, owners: map[string]string{"g": "n3"}},
		&mapPlacement{homes: homes, owners: map[string]string{"g": "n3"}},
	}
	nodes := startNodes(t, threeIDs, func(int) Bus { return bus }, staticMembers{"g": members},
		func(i int) Placement { return views[i] }, nil)
	if err := nodes[0].f.Forward(context.Background(), &message.Message{ID: 9, Seq: 77, Kind: message.Group, To: "g", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		for _, n := range nodes {
			if n.rec.total() != 10 {
				return fmt.Errorf("%s: %d deliveries", n.id, n.rec.total())
			}
		}
		return nil
	})
	// The stream sequence survives the re-sent Resolve.
	for _, n := range nodes {
		n.rec.mu.Lock()
		if seq := n.rec.msgs[9].Seq; seq != 77 {
			t.Errorf("%s: delivered with sequence %d, want 77", n.id, seq)
		}
		n.rec.mu.Unlock()
	}
	if s := nodes[1].f.Stats(); s.ResolvesForwarded != 1 {
		t.Errorf("n2: %+v", s)
	}
	if s := nodes[2].f.Stats(); s.ResolvesReceived != 1 || s.DeliversSent != 3 {
		t.Errorf("n3: %+v", s)
	}
}

// sizeBus records the size of every envelope published through it.
type sizeBus struct {
	Bus
	mu    sync.Mutex
	sizes []int
}

func (b *sizeBus) Publish(subject string, data []byte) error {
	b.mu.Lock()
	b.sizes = append(b.sizes, len(data))
	b.mu.Unlock()
	return b.Bus.Publish(subject, data)
}

func TestLargeGroupSplitsEnvelopes(t *testing.T) {
	bus := &sizeBus{Bus: NewMemoryBus()}
	members, _ := groupOf(1000, []string{"n1"})
	const limit = 2048
	nodes := startNodes(t, []string{"n1"}, func(int) Bus { return bus }, staticMembers{"g": members},
		func(int) Placement { return &mapPlacement{def: "n1"} },
		func(c *Config) { c.MaxEnvelopeBytes = limit })
	m := &message.Message{ID: 5, Kind: message.Group, To: "g", Payload: bytes.Repeat([]byte("p"), 100)}
	if err := nodes[0].f.Forward(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	n := nodes[0]
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n.rec.total() != 1000 {
			return fmt.Errorf("%d deliveries", n.rec.total())
		}
		return nil
	})
	for _, rid := range members {
		if c := n.rec.count(5, rid); c != 1 {
			t.Fatalf("%s delivered %d times", rid, c)
		}
	}
	bus.mu.Lock()
	defer bus.mu.Unlock()
	// 1000 recipients × 10 bytes = 10,000 bytes in chunks of at most
	// 2048 minus the fixed part: 6 envelopes.
	if len(bus.sizes) != 6 || n.f.Stats().DeliversSent != 6 {
		t.Errorf("%d envelopes (%v)", len(bus.sizes), bus.sizes)
	}
	for _, s := range bus.sizes {
		if s > limit {
			t.Errorf("envelope of %d bytes, limit %d", s, limit)
		}
	}
	if bus.sizes[0] < limit-20 {
		t.Errorf("first envelope %d bytes: chunks should be filled to the limit", bus.sizes[0])
	}
}

func TestForwardRefuses(t *testing.T) {
	bus := NewMemoryBus()
	place := &mapPlacement{owners: map[string]string{"g-remote": "n2"}, def: "n1"}
	nodes := startNodes(t, []string{"n1"}, func(int) Bus { return bus },
		staticMembers{"g": {"a", "b"}}, func(int) Placement { return place },
		func(c *Config) { c.MaxEnvelopeBytes = 1024 })
	f := nodes[0].f
	ctx := context.Background()
	big := bytes.Repeat([]byte("x"), 1024)
	for name, tc := range map[string]struct {
		m   *message.Message
		err error
	}{
		"nil":                  {nil, ErrInvalidMessage},
		"kind 0":               {&message.Message{To: "a"}, ErrInvalidMessage},
		"QoS 3":                {&message.Message{Kind: message.Direct, To: "a", QoS: 3}, ErrInvalidMessage},
		"no to":                {&message.Message{Kind: message.Group}, ErrInvalidMessage},
		"too large direct":     {&message.Message{Kind: message.Direct, To: "a", Payload: big}, ErrTooLarge},
		"too large group":      {&message.Message{Kind: message.Group, To: "g", Payload: big}, ErrTooLarge},
		"too large for remote": {&message.Message{Kind: message.Group, To: "g-remote", Payload: big}, ErrTooLarge},
	} {
		if err := f.Forward(ctx, tc.m); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", name, err, tc.err)
		}
	}
	if s := f.Stats(); s.EnvelopesSent != 0 || s.GroupMessages+s.DirectMessages != 0 {
		t.Errorf("refused messages were counted or sent: %+v", s)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.Forward(cctx, &message.Message{Kind: message.Direct, To: "a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
	// The limit is exact: the largest accepted payload, and one byte more.
	m := &message.Message{Kind: message.Direct, To: "a"}
	m.Payload = make([]byte, 1024-envelopeSlack-headerSize("n1")-messageSize(m)-1) // -1: its length takes 2 bytes
	if err := f.Forward(ctx, m); err != nil {
		t.Errorf("largest payload: %v", err)
	}
	m.Payload = append(m.Payload, 0)
	if err := f.Forward(ctx, m); !errors.Is(err, ErrTooLarge) {
		t.Errorf("largest payload + 1: %v", err)
	}
	// A group without members is fine and costs nothing.
	if err := f.Forward(ctx, &message.Message{Kind: message.Group, To: "empty"}); err != nil {
		t.Errorf("empty group: %v", err)
	}
}

// TestEnvelopeSlack pins what envelopeSlack is for: the largest message
// Forward accepts (the ids as long as they may be) still fits in
// MaxEnvelopeBytes when another node, with a node id of maxNodeIDLen,
// re-sends it as a Resolve or builds a Deliver of it for one recipient of
// the longest principal id, both with an ack request.
func TestEnvelopeSlack(t *testing.T) {
	const limit = minEnvelopeBytes
	long := func(n int) string { return strings.Repeat("x", n) }
	if !store.ValidID(long(maxPrincipalIDLen)) || store.ValidID(long(maxPrincipalIDLen+1)) {
		t.Fatalf("maxPrincipalIDLen %d is not the longest principal id store.ValidID takes", maxPrincipalIDLen)
	}
	nodes := startNodes(t, []string{"n1"}, func(int) Bus { return NewMemoryBus() }, staticMembers{},
		func(int) Placement { return &mapPlacement{def: "n1"} }, func(c *Config) { c.MaxEnvelopeBytes = limit })
	m := &message.Message{ID: 1<<64 - 1, Kind: message.Group, QoS: 1,
		From: long(maxPrincipalIDLen), To: long(maxPrincipalIDLen)}
	// The largest payload Forward's check lets through.
	m.Payload = make([]byte, limit)
	for headerSize("n1")+messageSize(m)+envelopeSlack > limit {
		m.Payload = m.Payload[:len(m.Payload)-1]
	}
	if err := nodes[0].f.Forward(context.Background(), m); err != nil {
		t.Fatalf("largest payload (%d bytes): %v", len(m.Payload), err)
	}
	other, ackNode := long(maxNodeIDLen), long(maxNodeIDLen)
	for _, e := range []*Envelope{
		{Kind: KindResolve, Hops: 255, Sender: other, Msg: *m, AckNode: ackNode, AckID: 1<<64 - 1},
		{Kind: KindDeliver, Sender: other, Msg: *m, Recipients: []string{long(maxPrincipalIDLen)}, AckNode: ackNode, AckID: 1<<64 - 1},
	} {
		b, err := AppendEnvelope(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > limit {
			t.Errorf("%v from a node id of maxNodeIDLen: %d bytes, MaxEnvelopeBytes %d", e.Kind, len(b), limit)
		}
	}
}

func TestReceiveSurvivesGarbage(t *testing.T) {
	bus := NewMemoryBus()
	nodes := startNodes(t, []string{"n1"}, func(int) Bus { return bus }, staticMembers{},
		func(int) Placement { return &mapPlacement{def: "n1"} }, nil)
	subj := Subject("test", "n1")
	for _, tt := range badEnvelopes {
		bus.Publish(subj, unhex(t, tt.Hex))
	}
	// Attach and Detach are decoded and counted, not acted on yet.
	for _, tt := range envelopeTests[4:6] {
		bus.Publish(subj, unhex(t, tt.Hex))
	}
	f := nodes[0].f
	if err := f.Forward(context.Background(), &message.Message{ID: 3, Kind: message.Direct, To: "a"}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if nodes[0].rec.count(3, "a") != 1 {
			return errors.New("not delivered after garbage")
		}
		return nil
	})
	if s := f.Stats(); s.DecodeErrors != uint64(len(badEnvelopes)) || s.EnvelopesReceived != 3 {
		t.Errorf("stats %+v, want %d decode errors and 3 envelopes", s, len(badEnvelopes))
	}
}

func TestStartAndClose(t *testing.T) {
	bus := NewMemoryBus()
	place := &mapPlacement{def: "n1"}
	for _, bad := range []string{"", "a.b", "a*", ">", "a b"} {
		cfg := DefaultConfig()
		cfg.NodeID = bad
		if f, err := New(cfg, bus, staticMembers{}, place, newRecorder()); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("NodeID %q: %v", bad, err)
			if f != nil {
				f.Close()
			}
		}
	}
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	rec := newRecorder()
	f := mustNew(t, cfg, bus, staticMembers{}, place, rec)
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	if err := f.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Forward(context.Background(), &message.Message{Kind: message.Direct, To: "a"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Forward after Close: %v", err)
	}
	if err := f.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
	// Nothing is delivered after Close: an envelope published now is not
	// seen (a second subscriber on the subject shows it was published).
	seen := make(chan struct{}, 1)
	unsub, _ := bus.Subscribe(Subject("pushring", "n1"), func([]byte) { seen <- struct{}{} })
	defer unsub()
	env, _ := AppendEnvelope(nil, &Envelope{Kind: KindDeliver, Sender: "n2",
		Msg: message.Message{Kind: message.Direct, To: "a"}, Recipients: []string{"a"}})
	bus.Publish(Subject("pushring", "n1"), env)
	<-seen
	if rec.Calls() != 0 {
		t.Error("delivered after Close")
	}
}

func TestMetrics(t *testing.T) {
	bus := NewMemoryBus()
	reg := prometheus.NewRegistry()
	members, homes := groupOf(30, threeIDs)
	place := &mapPlacement{homes: homes, owners: map[string]string{"g": "n2"}}
	nodes := startNodes(t, threeIDs, func(int) Bus { return bus }, staticMembers{"g": members},
		func(int) Placement { return place }, func(c *Config) {
			if c.NodeID == "n2" {
				c.Registerer = reg
			}
		})
	ctx := context.Background()
	if err := nodes[0].f.Forward(ctx, &message.Message{ID: 1, Kind: message.Group, To: "g"}); err != nil {
		t.Fatal(err)
	}
	if err := nodes[1].f.Forward(ctx, &message.Message{ID: 2, Kind: message.Direct, To: members[1]}); err != nil {
		t.Fatal(err)
	}
	bus.Publish(Subject("test", "n2"), []byte{1, 2, 3})
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := nodes[1].f.Stats(); s.Recipients != 11 || s.DecodeErrors != 1 {
			return fmt.Errorf("n2 stats %+v", s)
		}
		return nil
	})
	got := gather(t, reg)
	for name, want := range map[string]float64{
		`pushring_fanout_envelopes_received_total{peer="n1"}`: 1, // the Resolve
		`pushring_fanout_envelopes_received_total{peer="n2"}`: 2, // its own Deliver for g, the direct
		`pushring_fanout_envelopes_sent_total{peer="n1"}`:     1,
		`pushring_fanout_envelopes_sent_total{peer="n2"}`:     2,
		`pushring_fanout_envelopes_sent_total{peer="n3"}`:     1,
		`pushring_fanout_messages_total{kind="direct"}`:       1,
		`pushring_fanout_messages_total{kind="group"}`:        0, // n1 forwarded it
		`pushring_fanout_recipients_total`:                    11,
		`pushring_fanout_decode_errors_total`:                 1,
		`pushring_fanout_hop_limit_drops_total`:               0,
		`pushring_fanout_publish_errors_total`:                0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	nodes[1].f.Close()
	if got := gather(t, reg); len(got) != 0 {
		t.Errorf("metrics left after Close: %v", got)
	}
}

// gather returns every sample of reg as "name{label="value"}" → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			out[name] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestConcurrentForward(t *testing.T) {
	bus := NewMemoryBus()
	members, homes := groupOf(90, threeIDs)
	place := &mapPlacement{homes: homes, owners: map[string]string{"g1": "n1", "g2": "n2", "g3": "n3"}}
	dir := staticMembers{"g1": members, "g2": members, "g3": members[:30]}
	nodes := startNodes(t, threeIDs, func(int) Bus { return bus }, dir, func(int) Placement { return place }, nil)
	const workers, each = 8, 40
	var next atomic.Uint64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				gid := []string{"g1", "g2", "g3"}[i%3]
				m := &message.Message{ID: next.Add(1), Kind: message.Group, To: gid, Payload: []byte{byte(i)}}
				if err := nodes[w%3].f.Forward(context.Background(), m); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for i := range workers * each {
		if i%each%3 == 2 {
			total += 30
		} else {
			total += 90
		}
	}
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		got := 0
		for _, n := range nodes {
			got += n.rec.total()
		}
		if got != total {
			return fmt.Errorf("%d deliveries, want %d", got, total)
		}
		return nil
	})
	for _, n := range nodes {
		n.rec.mu.Lock()
		for id, per := range n.rec.got {
			for rid, c := range per {
				if c != 1 || homes[rid] != n.id {
					t.Errorf("message %d to %s: %d times on %s", id, rid, c, n.id)
				}
			}
		}
		n.rec.mu.Unlock()
	}
}

// discardBus accepts and drops everything: Forward's own cost.
type discardBus struct{ n atomic.Int64 }

func (b *discardBus) Publish(string, []byte) error { b.n.Add(1); return nil }
func (b *discardBus) Subscribe(string, func([]byte)) (func(), error) {
	return func() {}, nil
}
func (b *discardBus) Flush() error { return nil }

// countingDeliverer counts recipients.
type countingDeliverer struct{ n atomic.Int64 }

func (d *countingDeliverer) Deliver(m *message.Message, recipients []string) {
	d.n.Add(int64(len(recipients)))
}

func newSingle(tb testing.TB, bus Bus, d Deliverer, members []string) *Fanout {
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	f := mustNew(tb, cfg, bus, staticMembers{"g": members}, &mapPlacement{def: "n1"}, d)
	if err := f.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

func TestForwardDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	members, _ := groupOf(1000, threeIDs)
	homes := map[string]string{}
	for i, id := range members {
		homes[id] = threeIDs[i%3]
	}
	bus := &discardBus{}
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	f := mustNew(t, cfg, bus, staticMembers{"g": members}, &mapPlacement{homes: homes, owners: map[string]string{"remote": "n2"}, def: "n1"}, newRecorder())
	ctx := context.Background()
	for name, m := range map[string]*message.Message{
		"group of 1000 on 3 nodes": {ID: 1, Kind: message.Group, To: "g", Payload: []byte("hello")},
		"group owned elsewhere":    {ID: 2, Kind: message.Group, To: "remote", Payload: []byte("hello")},
		"direct":                   {ID: 3, Kind: message.Direct, To: "user-0001", Payload: []byte("hello")},
		"topic":                    {ID: 4, Kind: message.Topic, To: "telemetry/é d1/temp", Payload: []byte("hello")},
	} {
		if n := testing.AllocsPerRun(200, func() {
			if err := f.Forward(ctx, m); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocs per Forward, want 0", name, n)
		}
	}
}

// BenchmarkForwardGroup1000 forwards a 1,000-member group on one node over
// MemoryBus, through to the Deliverer: allocs/op is the whole cost of one
// message (Forward, the bus, decode, delivery).
func BenchmarkForwardGroup1000(b *testing.B) {
	members, _ := groupOf(1000, []string{"n1"})
	d := &countingDeliverer{}
	f := newSingle(b, NewMemoryBus(), d, members)
	m := &message.Message{ID: 1, Kind: message.Group, From: "dev", To: "g", QoS: 1, Payload: bytes.Repeat([]byte("p"), 64)}
	ctx := context.Background()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := f.Forward(ctx, m); err != nil {
			b.Fatal(err)
		}
		n++
		if n%256 == 0 { // keep the queue short
			for d.n.Load() < int64(n-64)*1000 {
				// Pacing the load: a short sleep leaves the cores to the
				// bus goroutine that this waits for (spinning would slow
				// it on a small machine).
				time.Sleep(10 * time.Microsecond)
			}
		}
	}
	for d.n.Load() < int64(n)*1000 {
		// Part of the measured time: polled finely so that the wait adds
		// little to it, with a sleep for the reason above.
		time.Sleep(10 * time.Microsecond)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n)/1000, "ns/recipient")
}

// BenchmarkForwardGroup1000Publish is Forward alone (resolve, split,
// encode) with a bus that drops what it is given.
func BenchmarkForwardGroup1000Publish(b *testing.B) {
	members, _ := groupOf(1000, []string{"n1"})
	f := newSingle(b, &discardBus{}, &countingDeliverer{}, members)
	m := &message.Message{ID: 1, Kind: message.Group, From: "dev", To: "g", QoS: 1, Payload: bytes.Repeat([]byte("p"), 64)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Forward(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

type panicky struct{ n atomic.Int32 }

func (p *panicky) Deliver(*message.Message, []string) {
	if p.n.Add(1) == 1 {
		panic("deliverer bug")
	}
}

func TestReceiveRecoversDelivererPanic(t *testing.T) {
	cfg := DefaultConfig()
	cfg.NodeID = "n1"
	d := &panicky{}
	f := mustNew(t, cfg, NewMemoryBus(), staticMembers{}, &mapPlacement{def: "n1"}, d)
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for range 2 {
		if err := f.Forward(context.Background(), &message.Message{Kind: message.Direct, To: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := f.Stats(); d.n.Load() != 2 || s.Panics != 1 {
			return fmt.Errorf("deliveries %d, stats %+v", d.n.Load(), s)
		}
		return nil
	})
}
