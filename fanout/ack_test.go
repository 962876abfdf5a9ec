package fanout

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/flow"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// gatedDeliverer is a recorder that is also a AckDeliverer: while gate is
// set, DeliverAcked withholds (the recipients are "backlogged") and releases
// when gate closes.
type gatedDeliverer struct {
	*recorder
	mu   sync.Mutex
	gate chan struct{}
	held int
}

func (g *gatedDeliverer) DeliverAcked(m *message.Message, recipients []string, r flow.Releaser, seq uint64) bool {
	g.Deliver(m, recipients)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gate == nil {
		return false
	}
	g.held++
	gate := g.gate
	go func() {
		<-gate
		r.Confirm(seq)
	}()
	return true
}

func (g *gatedDeliverer) setGate(c chan struct{}) {
	g.mu.Lock()
	g.gate = c
	g.mu.Unlock()
}

// receipts is a Receipt that sends its tags on a channel.
type receipts chan uint64

func (r receipts) Accepted(tag uint64) { r <- tag }

// Stored: without a Store, a forwarded message counts as stored; the
// tests here check Accepted.
func (r receipts) Stored(tag uint64, err error) bool {
	if err != nil {
		panic(fmt.Sprintf("tag %d: store error %v", tag, err))
	}
	return true
}

// waitTag fails unless tag arrives on r within the test's patience.
func (r receipts) waitTag(t *testing.T, tag uint64) {
	t.Helper()
	select {
	case got := <-r:
		if got != tag {
			t.Fatalf("receipt for tag %d, want %d", got, tag)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no receipt for tag %d", tag)
	}
}

// none fails if a receipt has come. Call it once whatever could have
// called one too early has been handled.
func (r receipts) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-r:
		t.Fatalf("receipt for tag %d too early", got)
	default:
	}
}

// testClock is a Config.Now that stands still until the test moves it
// on, so that a timeout fires when the test says and never because the
// machine was slow.
type testClock struct{ ahead atomic.Int64 }

var clockBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func (c *testClock) now() time.Time          { return clockBase.Add(time.Duration(c.ahead.Load())) }
func (c *testClock) advance(d time.Duration) { c.ahead.Add(int64(d)) }

type ackNode struct {
	f   *Fanout
	d   *gatedDeliverer
	bus *handledBus
}

// ackIdle is idle for ack nodes.
func ackIdle(nodes map[string]*ackNode) error {
	var bn []busNode
	for _, n := range nodes {
		bn = append(bn, busNode{n.f, n.bus})
	}
	return idle(bn)
}

// progress returns the Deliver confirmations f counted for its only
// waiting publish, and how many it waits for (-1: the owner has not said
// yet).
func progress(f *Fanout) (got, want int64, err error) {
	f.waits.mu.Lock()
	defer f.waits.mu.Unlock()
	if n := len(f.waits.m); n != 1 {
		return 0, 0, fmt.Errorf("%d publishes waiting, want 1", n)
	}
	for _, w := range f.waits.m {
		got, want = w.got, w.want
	}
	return got, want, nil
}

// startAckNodes starts one Fanout per id on bus, each delivering into a
// gatedDeliverer.
func startAckNodes(t *testing.T, ids []string, bus Bus, members Members, place Placement, tweak func(*Config)) map[string]*ackNode {
	t.Helper()
	nodes := map[string]*ackNode{}
	for _, id := range ids {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.Cluster = id, "test"
		if tweak != nil {
			tweak(&cfg)
		}
		d := &gatedDeliverer{recorder: newRecorder()}
		hb := &handledBus{Bus: bus}
		f := mustNew(t, cfg, hb, members, place, d)
		f.ackTick = 5 * time.Millisecond // timeouts follow a test's clock, checked often
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		nodes[id] = &ackNode{f: f, d: d, bus: hb}
	}
	return nodes
}

// A group message published at n1, owned by n2, with members homed on all
// three nodes: the publisher's receipt waits for the owner's count and for
// every home node's confirmation, including one held by a backlogged
// recipient, and comes once that recipient's backlog clears.
func TestForwardAckedWaitsForEveryHome(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	members, homes := groupOf(9, ids)
	place := &mapPlacement{homes: homes, owners: map[string]string{"g": "n2"}, def: "n1"}
	nodes := startAckNodes(t, ids, NewMemoryBus(), staticMembers{"g": members}, place, nil)
	gate := make(chan struct{})
	nodes["n3"].d.setGate(gate)

	r := make(receipts, 4)
	m := &message.Message{ID: 77, Kind: message.Group, From: "dev", To: "g", QoS: 1, Payload: []byte("x")}
	if err := nodes["n1"].f.ForwardAcked(m, r, 5); err != nil {
		t.Fatal(err)
	}
	// Every member gets the message while n3 still withholds its
	// confirmation; n1 counts the other two (its own, n2's) of the three.
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		r.none(t)
		if n := countDelivered(nodes, 77); n < len(members) {
			return fmt.Errorf("delivered %d of %d", n, len(members))
		}
		if held := nodes["n3"].f.Stats().AcksWithheld; held != 1 {
			return fmt.Errorf("n3 withholds %d confirmations, want 1", held)
		}
		got, want, err := progress(nodes["n1"].f)
		if err != nil {
			return err
		}
		if got != 2 || want != 3 {
			return fmt.Errorf("n1 counted %d of %d confirmations, want 2 of 3", got, want)
		}
		return nil
	})
	r.none(t)
	if w := nodes["n1"].f.Stats().Waiting; w != 1 {
		t.Fatalf("waiting = %d, want 1", w)
	}
	close(gate)
	r.waitTag(t, 5)
	if s := nodes["n1"].f.Stats(); s.Waiting != 0 || s.AckTimeouts != 0 {
		t.Fatalf("after the receipt: waiting %d, ack timeouts %d", s.Waiting, s.AckTimeouts)
	}
	if s := nodes["n3"].f.Stats(); s.AcksWithheld != 1 || s.WithholdTimeouts != 0 {
		t.Fatalf("n3: acks held %d, hold timeouts %d; want 1, 0", s.AcksWithheld, s.WithholdTimeouts)
	}
	// n2 (owner and a home) and n3 confirmed over the bus; n1's own
	// confirmation skipped it.
	if s := nodes["n1"].f.Stats(); s.AcksReceived < 2 {
		t.Fatalf("n1 received %d ack envelopes, want at least 2 (n2, n3)", s.AcksReceived)
	}
	if s := nodes["n1"].f.Stats(); s.AcksSent != 0 {
		t.Fatalf("n1 sent %d ack envelopes; its own confirmation must not use the bus", s.AcksSent)
	}
}

func countDelivered(nodes map[string]*ackNode, id uint64) int {
	n := 0
	for _, an := range nodes {
		rec := an.d.recorder
		rec.mu.Lock()
		for _, c := range rec.got[id] {
			n += c
		}
		rec.mu.Unlock()
	}
	return n
}

// Direct messages: one confirmation from the home node. Receipts of many
// messages in a row come back with their own tags, each exactly once.
func TestForwardAckedDirect(t *testing.T) {
	ids := []string{"n1", "n2"}
	place := &mapPlacement{homes: map[string]string{"bob": "n2"}, def: "n1"}
	nodes := startAckNodes(t, ids, NewMemoryBus(), staticMembers{}, place, nil)
	const n = 500
	r := make(receipts, n)
	for i := range n {
		m := &message.Message{ID: uint64(1000 + i), Kind: message.Direct, From: "alice", To: "bob", QoS: 1}
		if err := nodes["n1"].f.ForwardAcked(m, r, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for range n {
		select {
		case tag := <-r:
			if seen[tag] || tag >= n {
				t.Fatalf("tag %d twice or unknown", tag)
			}
			seen[tag] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d receipts", len(seen), n)
		}
	}
	// A second receipt for a tag would come with an Ack envelope, handled
	// by n1 before the ack envelopes are all handled.
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error { return ackIdle(nodes) })
	r.none(t)
	s2 := nodes["n2"].f.Stats()
	if s2.AcksSent == 0 || s2.AcksSent > n {
		t.Fatalf("n2 sent %d ack envelopes for %d messages", s2.AcksSent, n)
	}
	t.Logf("%d confirmations in %d ack envelopes", n, s2.AcksSent)
	if got := nodes["n2"].d.count(1000, "bob"); got != 1 {
		t.Fatalf("bob got message 1000 %d times", got)
	}
}

// A confirmation that never comes (the home node is gone) releases the
// publisher after AckTimeout, counted; a hold that never clears is
// confirmed after AckWithhold, counted. Both time out on the test's clock,
// which moves only when told: hours of real time would be needed
// otherwise.
func TestForwardAckedTimeouts(t *testing.T) {
	ids := []string{"n1", "n2"}
	place := &mapPlacement{homes: map[string]string{"ghost-user": "ghost", "bob": "n2"}, def: "n1"}
	clock := &testClock{}
	nodes := startAckNodes(t, ids, NewMemoryBus(), staticMembers{}, place, func(c *Config) {
		c.AckTimeout = 2 * time.Hour
		c.AckWithhold = time.Hour
		c.Now = clock.now
	})
	r := make(receipts, 2)
	m := &message.Message{ID: 1, Kind: message.Direct, From: "a", To: "ghost-user", QoS: 1}
	if err := nodes["n1"].f.ForwardAcked(m, r, 1); err != nil {
		t.Fatal(err)
	}
	r.none(t)
	clock.advance(2*time.Hour + time.Second)
	r.waitTag(t, 1)
	if s := nodes["n1"].f.Stats(); s.AckTimeouts != 1 || s.Waiting != 0 {
		t.Fatalf("ack timeouts %d waiting %d, want 1, 0", s.AckTimeouts, s.Waiting)
	}

	nodes["n2"].d.setGate(make(chan struct{})) // never closed
	m = &message.Message{ID: 2, Kind: message.Direct, From: "a", To: "bob", QoS: 1}
	if err := nodes["n1"].f.ForwardAcked(m, r, 2); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if n := nodes["n2"].f.Stats().AcksWithheld; n != 1 {
			return fmt.Errorf("n2 withholds %d confirmations, want 1", n)
		}
		return nil
	})
	r.none(t)
	clock.advance(time.Hour + time.Second)
	r.waitTag(t, 2)
	if s := nodes["n2"].f.Stats(); s.WithholdTimeouts != 1 {
		t.Fatalf("hold timeouts %d, want 1", s.WithholdTimeouts)
	}
	if s := nodes["n1"].f.Stats(); s.AckTimeouts != 1 {
		t.Fatalf("ack timeouts %d, want still 1 (the hold was confirmed in time)", s.AckTimeouts)
	}
}

// racingDeliverer backlogs every delivery and releases it at once: on
// another goroutine for odd hold numbers (racing DeliverAcked's return),
// before DeliverAcked returns for even ones.
type racingDeliverer struct{ countingDeliverer }

func (d *racingDeliverer) DeliverAcked(m *message.Message, recipients []string, r flow.Releaser, seq uint64) bool {
	d.Deliver(m, recipients)
	if seq%2 == 1 {
		go r.Confirm(seq)
	} else {
		r.Confirm(seq)
	}
	return true
}

// A release that comes while DeliverAcked is still running, on its
// goroutine or another, confirms the delivery: no publisher waits for a
// timeout (both are hours away), and nothing stays registered.
func TestConfirmRacingDelivery(t *testing.T) {
	const n = 500
	mem := NewMemoryBus()
	place := &mapPlacement{homes: map[string]string{"bob": "n2"}, def: "n1"}
	var fs []*Fanout
	for _, id := range []string{"n1", "n2"} {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.Cluster = id, "test"
		cfg.AckTimeout, cfg.AckWithhold = 2*time.Hour, time.Hour
		f := mustNew(t, cfg, mem, staticMembers{}, place, &racingDeliverer{})
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		fs = append(fs, f)
	}
	r := make(receipts, n)
	for i := range n {
		m := &message.Message{ID: uint64(i + 1), Kind: message.Direct, From: "a", To: "bob", QoS: 1}
		if err := fs[0].ForwardAcked(m, r, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	for range n {
		select {
		case tag := <-r:
			if seen[tag] {
				t.Fatalf("tag %d confirmed twice", tag)
			}
			seen[tag] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d receipts; the others' releases were lost", len(seen), n)
		}
	}
	s := fs[1].Stats()
	if s.AcksWithheld != n || s.WithholdTimeouts != 0 {
		t.Fatalf("n2: held %d, hold timeouts %d; want %d, 0", s.AcksWithheld, s.WithholdTimeouts, n)
	}
	fs[1].withheld.mu.Lock()
	left := len(fs[1].withheld.m)
	fs[1].withheld.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d withheld confirmations still registered", left)
	}
}

// failingBus fails every publish to one subject.
type failingBus struct {
	Bus
	subject string
}

func (b *failingBus) Publish(subject string, data []byte) error {
	if subject == b.subject {
		return errors.New("refused")
	}
	return b.Bus.Publish(subject, data)
}

// An owner that could not send every Deliver does not let the wait pass
// for a delivery: it times out, counted.
func TestForwardAckedOwnerFailure(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	members, homes := groupOf(6, ids)
	place := &mapPlacement{homes: homes, owners: map[string]string{"g": "n2"}, def: "n1"}
	mem := NewMemoryBus()
	nodes := map[string]*ackNode{}
	clock := &testClock{}
	for _, id := range ids {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.Cluster = id, "test"
		cfg.AckTimeout = time.Hour
		cfg.Now = clock.now
		var bus Bus = mem
		if id == "n2" {
			bus = &failingBus{Bus: mem, subject: Subject("test", "n3")}
		}
		d := &gatedDeliverer{recorder: newRecorder()}
		f := mustNew(t, cfg, bus, staticMembers{"g": members}, place, d)
		f.ackTick = 5 * time.Millisecond
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		nodes[id] = &ackNode{f: f, d: d}
	}
	r := make(receipts, 1)
	m := &message.Message{ID: 3, Kind: message.Group, From: "dev", To: "g", QoS: 1}
	if err := nodes["n1"].f.ForwardAcked(m, r, 9); err != nil {
		t.Fatal(err)
	}
	// n2 resolved it (four of its six members are on n1 and n2) and
	// named a count that cannot be reached.
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if _, want, err := progress(nodes["n1"].f); err != nil || want < 0 {
			return fmt.Errorf("no count from the owner yet (%v)", err)
		}
		return nil
	})
	r.none(t)
	clock.advance(time.Hour + time.Second)
	r.waitTag(t, 9)
	if s := nodes["n1"].f.Stats(); s.AckTimeouts != 1 {
		t.Fatalf("ack timeouts %d, want 1: a partly failed resolve passed for a delivery", s.AckTimeouts)
	}
}

// A group without members has nothing to wait for: the receipt comes at
// once, from the owner's count (here, and through another owner).
func TestForwardAckedEmptyGroup(t *testing.T) {
	ids := []string{"n1", "n2"}
	place := &mapPlacement{owners: map[string]string{"remote": "n2"}, def: "n1"}
	nodes := startAckNodes(t, ids, NewMemoryBus(), staticMembers{}, place, nil)
	r := make(receipts, 2)
	for i, gid := range []string{"local", "remote"} {
		m := &message.Message{ID: uint64(i + 1), Kind: message.Group, From: "a", To: gid, QoS: 1}
		if err := nodes["n1"].f.ForwardAcked(m, r, uint64(i)); err != nil {
			t.Fatal(err)
		}
		r.waitTag(t, uint64(i))
	}
	if err := nodes["n1"].f.ForwardAcked(&message.Message{ID: 9, Kind: message.Direct, To: "x", QoS: 0}, r, 0); err == nil {
		t.Fatal("ForwardAcked took a QoS 0 message")
	}
}

// keepUpDeliverer is a AckDeliverer whose recipients always have room.
type keepUpDeliverer struct{ countingDeliverer }

func (d *keepUpDeliverer) DeliverAcked(m *message.Message, recipients []string, _ flow.Releaser, _ uint64) bool {
	d.Deliver(m, recipients)
	return false
}

// Registering a hold before every delivery whose publisher waits costs
// no allocation when the recipients keep up: the receive of such a
// Deliver costs what one without an ack request does.
func TestReceiveAckedAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	members, _ := groupOf(100, []string{"n1"})
	f := newSingle(t, &discardBus{}, &keepUpDeliverer{}, members)
	e := &Envelope{Kind: KindDeliver, Sender: "n2", AckNode: "n2", AckID: 7,
		Msg:        message.Message{ID: 1, Kind: message.Group, To: "g", QoS: 1, Payload: []byte("hello")},
		Recipients: members}
	data, err := AppendEnvelope(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	const want = 2 // the decode's copy and Envelope, as TestReceiveAllocsWithAttachTable
	if n := testing.AllocsPerRun(500, func() { f.receive(data) }); n > want {
		t.Errorf("%v allocs per receive of an acked Deliver, want at most %d", n, want)
	}
	f.withheld.mu.Lock()
	left := len(f.withheld.m)
	f.withheld.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d withheld confirmations left registered", left)
	}
}
