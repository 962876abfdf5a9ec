package fanout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// swapPlacement is a Placement that a test can replace at once (a ring
// change).
type swapPlacement struct{ p atomic.Pointer[mapPlacement] }

func newSwap(p *mapPlacement) *swapPlacement {
	s := &swapPlacement{}
	s.p.Store(p)
	return s
}

func (s *swapPlacement) Home(id string) string   { return s.p.Load().Home(id) }
func (s *swapPlacement) Owner(gid string) string { return s.p.Load().Owner(gid) }

// waitAttached waits until n's attach table lists exactly want (sorted)
// as the live attached nodes of principal.
func waitAttached(t *testing.T, n *testNode, principal string, want ...string) {
	t.Helper()
	slices.Sort(want)
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		got := n.f.att.attached(principal, time.Now().UnixNano())
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s: attached nodes of %s %v, want %v", n.id, principal, got, want)
		}
		return nil
	})
}

// waitCount waits until message id reached rid on n exactly want times,
// then checks that it stays so for a moment.
func waitCount(t *testing.T, n *testNode, id uint64, rid string, want int) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if got := n.rec.count(id, rid); got != want {
			return fmt.Errorf("message %d to %s on %s: %d deliveries, want %d", id, rid, n.id, got, want)
		}
		return nil
	})
}

// settle waits until every envelope sent has been received and handled,
// including those sent on while handling (see idle).
func settle(t *testing.T, nodes []*testNode) {
	t.Helper()
	bn := busNodes(nodes)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error { return idle(bn) })
}

// runAttachScenario: alice is homed on n1 and present on n2; a direct message
// and a group message (owned by n3... sent via n3) reach n2 exactly once,
// through one forward each from n1.
func runAttachScenario(t *testing.T, busFor func(int) Bus) {
	members, homes := groupOf(30, threeIDs)
	homes["alice"] = "n1"
	members = append(members, "alice")
	place := &mapPlacement{homes: homes, owners: map[string]string{"g": "n2"}, def: "n3"}
	nodes := startNodes(t, threeIDs, busFor, staticMembers{"g": members},
		func(int) Placement { return place }, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	n2.f.Arrived("alice")
	waitAttached(t, n1, "alice", "n2")
	if s := n1.f.Stats(); s.AttachRecords != 1 || s.AttachesReceived != 1 {
		t.Errorf("n1 stats after attach: %+v", s)
	}

	ctx := context.Background()
	direct := &message.Message{ID: 1, Seq: 101, Kind: message.Direct, From: "bob", To: "alice", QoS: 1, Payload: []byte("d")}
	group := &message.Message{ID: 2, Seq: 102, Kind: message.Group, From: "dev", To: "g", QoS: 1, Payload: []byte("g")}
	for _, m := range []*message.Message{direct, group} {
		if err := n3.f.Forward(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	settle(t, nodes)
	for _, id := range []uint64{1, 2} {
		// The home delivers locally as ever (its router finds no session)
		// and forwards; the attached node gets it exactly once.
		for _, c := range []struct {
			n    *testNode
			want int
		}{{n1, 1}, {n2, 1}, {n3, 0}} {
			if got := c.n.rec.count(id, "alice"); got != c.want {
				t.Errorf("message %d to alice on %s: %d deliveries, want %d", id, c.n.id, got, c.want)
			}
		}
	}
	// The other members: exactly once, at home, never forwarded.
	for _, rid := range members[:30] {
		for _, n := range nodes {
			want := 0
			if homes[rid] == n.id {
				want = 1
			}
			if got := n.rec.count(2, rid); got != want {
				t.Fatalf("group message to %s on %s: %d, want %d", rid, n.id, got, want)
			}
		}
	}
	// The attached node got each with its stream sequence (the forward, hops 1,
	// carries it on).
	for _, m := range []*message.Message{direct, group} {
		n2.rec.mu.Lock()
		if seq := n2.rec.msgs[m.ID].Seq; seq != m.Seq {
			t.Errorf("message %d on attached node n2: sequence %d, want %d", m.ID, seq, m.Seq)
		}
		n2.rec.mu.Unlock()
	}
	if s := n1.f.Stats(); s.AttachForwards != 2 {
		t.Errorf("n1 attach forwards %d, want 2", s.AttachForwards)
	}
	if s := sumStats(nodes); s.DecodeErrors+s.PublishErrors+s.HopLimitDrops != 0 {
		t.Errorf("errors: %+v", s)
	}
}

func TestAttachMemoryBus(t *testing.T) {
	bus := NewMemoryBus()
	runAttachScenario(t, func(int) Bus { return bus })
}

func TestAttachNATS(t *testing.T) {
	runAttachScenario(t, natsBuses(t, startNATS(t)))
}

func attachNodes(t *testing.T, place Placement, tweak func(*Config)) (*MemoryBus, []*testNode) {
	bus := NewMemoryBus()
	nodes := startNodes(t, threeIDs, func(int) Bus { return bus }, staticMembers{},
		func(int) Placement { return place }, tweak)
	return bus, nodes
}

func sendDirect(t *testing.T, n *testNode, id uint64, to string) {
	t.Helper()
	if err := n.f.Forward(context.Background(), &message.Message{ID: id, Kind: message.Direct, To: to, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}

func TestAttachTwoNodesAndLeave(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, nodes := attachNodes(t, &mapPlacement{homes: map[string]string{"alice": "n1"}, def: "n1"}, func(c *Config) {
		if c.NodeID == "n1" {
			c.Registerer = reg
		}
	})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n2.f.Arrived("alice")
	n3.f.Arrived("alice")
	n1.f.Arrived("alice") // at home: no attach record anywhere
	waitAttached(t, n1, "alice", "n2", "n3")

	sendDirect(t, n3, 1, "alice")
	settle(t, nodes)
	for _, n := range nodes {
		if got := n.rec.count(1, "alice"); got != 1 {
			t.Errorf("%s: %d deliveries, want 1", n.id, got)
		}
	}
	if s := n1.f.Stats(); s.AttachForwards != 2 {
		t.Errorf("n1 attach forwards %d, want 2 (one per attached node)", s.AttachForwards)
	}
	if v := gauge(t, reg, "pushring_fanout_attach_forwards_total"); v != 2 {
		t.Errorf("attach_forwards_total = %v, want 2", v)
	}
	if v := gauge(t, reg, "pushring_fanout_attach_records"); v != 2 {
		t.Errorf("attach_records = %v, want 2", v)
	}

	// Left on n2: only n3 still gets it; then on n3 too: nobody.
	n2.f.Left("alice")
	waitAttached(t, n1, "alice", "n3")
	sendDirect(t, n1, 2, "alice")
	settle(t, nodes)
	if a, b, c := n1.rec.count(2, "alice"), n2.rec.count(2, "alice"), n3.rec.count(2, "alice"); a != 1 || b != 0 || c != 1 {
		t.Errorf("after n2 released: deliveries %d %d %d, want 1 0 1", a, b, c)
	}
	n3.f.Left("alice")
	waitAttached(t, n1, "alice")
	sendDirect(t, n2, 3, "alice")
	settle(t, nodes)
	if a, b, c := n1.rec.count(3, "alice"), n2.rec.count(3, "alice"), n3.rec.count(3, "alice"); a != 1 || b != 0 || c != 0 {
		t.Errorf("after both released: deliveries %d %d %d, want 1 0 0", a, b, c)
	}
	if s := n1.f.Stats(); s.AttachForwards != 3 || s.AttachRecords != 0 {
		t.Errorf("n1 stats %+v", s)
	}
	if v := gauge(t, reg, "pushring_fanout_attach_records"); v != 0 {
		t.Errorf("attach_records = %v, want 0", v)
	}
}

// gauge returns the value of the unlabelled counter or gauge name in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestAttachExpiresWithoutRenewal(t *testing.T) {
	_, nodes := attachNodes(t, &mapPlacement{def: "n1"}, func(c *Config) {
		c.AttachTTL = 300 * time.Millisecond
		switch c.NodeID {
		case "n2":
			c.AttachRenew = time.Hour // never renews
		case "n3":
			c.AttachRenew = 50 * time.Millisecond
		}
	})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n2.f.Arrived("alice")
	n3.f.Arrived("bob")
	waitAttached(t, n1, "alice", "n2")
	waitAttached(t, n1, "bob", "n3")
	bobUntil := expiry(n1, "bob", "n3")
	// alice's record expires; bob's is renewed past the expiry of his
	// first one, by more than one renewal.
	waitAttached(t, n1, "alice")
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if exp, sent := expiry(n1, "bob", "n3"), n3.f.Stats().AttachesSent; exp <= bobUntil || time.Now().UnixNano() <= bobUntil || sent < 3 {
			return fmt.Errorf("bob's record expires in %v (the first at %v), n3 sent %d attaches", time.Until(time.Unix(0, exp)), time.Until(time.Unix(0, bobUntil)), sent)
		}
		return nil
	})
	waitAttached(t, n1, "bob", "n3")
	sendDirect(t, n1, 1, "alice")
	sendDirect(t, n1, 2, "bob")
	settle(t, nodes)
	if got := n2.rec.count(1, "alice"); got != 0 {
		t.Errorf("alice got %d forwards after her record expired", got)
	}
	if got := n3.rec.count(2, "bob"); got != 1 {
		t.Errorf("bob got %d forwards, want 1 (renewed)", got)
	}
}

// expiry returns when n's attach record of principal present on node
// expires (unix ns), 0 if there is none.
func expiry(n *testNode, principal, node string) int64 {
	n.f.att.mu.RLock()
	defer n.f.att.mu.RUnlock()
	for _, r := range n.f.att.recs[principal] {
		if r.node == node {
			return r.expires
		}
	}
	return 0
}

func TestRingChangedReattachesAndKeepsOldRecords(t *testing.T) {
	place := newSwap(&mapPlacement{homes: map[string]string{"alice": "n1", "bob": "n1"}, def: "n1"})
	_, nodes := attachNodes(t, place, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	n2.f.Arrived("alice")
	n3.f.Arrived("bob")
	waitAttached(t, n1, "alice", "n2")
	waitAttached(t, n1, "bob", "n3")

	// n3 is declared dead by n1. The record stays until its TTL: a false
	// death (a flap on a loaded machine) must not cut bob off until the
	// next renew, and forwarding to a node that is really gone only costs
	// a publish nobody reads.
	n1.f.RingChanged([]string{"n1", "n2"})
	settle(t, nodes)
	waitAttached(t, n1, "bob", "n3")
	sendDirect(t, n1, 1, "bob")
	settle(t, nodes)
	if got := n3.rec.count(1, "bob"); got != 1 {
		t.Errorf("bob got %d copies through a record kept across a flap, want 1", got)
	}

	// alice's home moves to n3: n2 attaches there at once and leaves the
	// record at n1 to expire (a node still on the old ring keeps
	// sending alice's messages to n1, which must still forward them).
	place.p.Store(&mapPlacement{homes: map[string]string{"alice": "n3", "bob": "n1"}, def: "n1"})
	for _, n := range nodes {
		n.f.RingChanged(threeIDs)
	}
	waitAttached(t, n3, "alice", "n2")
	waitAttached(t, n1, "alice", "n2")
	sendDirect(t, n1, 2, "alice") // n1 sends to the new home
	settle(t, nodes)
	if a, b, c := n1.rec.count(2, "alice"), n2.rec.count(2, "alice"), n3.rec.count(2, "alice"); a != 0 || b != 1 || c != 1 {
		t.Errorf("after the move: deliveries %d %d %d, want 0 1 1", a, b, c)
	}
	// RingChanged is harmless when nothing changed: same state after.
	sent := n2.f.Stats().AttachesSent
	n2.f.RingChanged(threeIDs)
	n2.f.RingChanged(nil)
	// n2 attaches alice at n3 again: once that has arrived, compare.
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n2.f.Stats().AttachesSent == sent {
			return errors.New("n2 did not re-attach after RingChanged")
		}
		return nil
	})
	settle(t, nodes)
	waitAttached(t, n3, "alice", "n2")
	waitAttached(t, n3, "bob") // bob's home is n1: n3 keeps no record for him
}

// Close sends the Detaches of principals released just before it (the
// router closes first).
func TestCloseSendsQueuedDetaches(t *testing.T) {
	_, nodes := attachNodes(t, &mapPlacement{def: "n1"}, nil)
	n1, n2 := nodes[0], nodes[1]
	n2.f.Arrived("alice")
	waitAttached(t, n1, "alice", "n2")
	n2.f.Left("alice")
	n2.f.Close()
	waitAttached(t, n1, "alice")
	n2.f.Arrived("bob") // after Close: ignored
}

// The receive path of a 1,000-recipient Deliver costs no more with attach
// records than before: with an empty table, and with a table that lists
// none of the recipients.
func TestReceiveAllocsWithAttachTable(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	members, _ := groupOf(1000, []string{"n1"})
	f := newSingle(t, &discardBus{}, &countingDeliverer{}, members)
	e := &Envelope{Kind: KindDeliver, Sender: "n2",
		Msg:        message.Message{ID: 1, Kind: message.Group, To: "g", QoS: 1, Payload: []byte("hello")},
		Recipients: members}
	data, err := AppendEnvelope(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	// Today's cost: the decode's copy and Envelope (recipients pooled).
	const want = 2
	if n := testing.AllocsPerRun(200, func() { f.receive(data) }); n > want {
		t.Errorf("empty attach table: %v allocs per receive, want at most %d", n, want)
	}
	f.att.put("someone-else", "n3", time.Now().Add(time.Hour).UnixNano())
	if n := testing.AllocsPerRun(200, func() { f.receive(data) }); n > want {
		t.Errorf("unrelated attach records: %v allocs per receive, want at most %d", n, want)
	}
	if s := f.Stats(); s.AttachForwards != 0 {
		t.Errorf("forwards %d", s.AttachForwards)
	}
}

// Many principals present away from one home are attached, and renewed, in a
// few AttachMany envelopes, not one per principal.
func TestAttachBatches(t *testing.T) {
	const renew = 100 * time.Millisecond
	_, nodes := attachNodes(t, &mapPlacement{def: "n1"}, func(c *Config) {
		c.AttachRenew = renew
		c.MaxEnvelopeBytes = 4096 // about 300 ids of 12 bytes per envelope
	})
	n1, n2 := nodes[0], nodes[1]
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%07d", i)
	}
	for _, id := range ids {
		n2.f.Arrived(id)
	}
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if s := n1.f.Stats(); s.AttachRecords != uint64(len(ids)) {
			return fmt.Errorf("n1 has %d records", s.AttachRecords)
		}
		return nil
	})
	// Each renew: 1000 ids in 4096-byte envelopes = 4 envelopes. Wait for
	// a few renewals, then check that no more were sent than the renew
	// periods that passed allow.
	start, s0 := time.Now(), n2.f.Stats().AttachesSent
	var s1 uint64
	testutil.CheckFor(t, 5*time.Second, renew/10, func() error {
		if s1 = n2.f.Stats().AttachesSent; s1-s0 < 12 {
			return fmt.Errorf("%d attach envelopes sent in %v", s1-s0, time.Since(start))
		}
		return nil
	})
	ticks := uint64(time.Since(start)/renew) + 1
	if d := s1 - s0; d > 4*ticks {
		t.Errorf("%d attach envelopes sent in %d renew periods, want at most %d", d, ticks, 4*ticks)
	}
	for _, id := range []string{ids[0], ids[500], ids[999]} {
		waitAttached(t, n1, id, "n2")
	}
	sendDirect(t, n3of(nodes), 1, ids[999])
	waitCount(t, n2, 1, ids[999], 1)
	if s := n1.f.Stats(); s.DecodeErrors != 0 || s.AttachRecords != uint64(len(ids)) {
		t.Errorf("n1 stats %+v", s)
	}
}

func n3of(nodes []*testNode) *testNode { return nodes[2] }
