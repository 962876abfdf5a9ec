package router

import (
	"bytes"
	"context"
	"fmt"
	"github.com/pushring/pushring/rules"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// memSessions is a SessionStore in memory, shared by the servers of a
// test as the cluster's store would be: a journal of stored messages
// (the loop forwarder appends every QoS 1 message, sequence = index+1)
// and a record per session. A claim tells every other server to Kick.
type memSessions struct {
	mu      sync.Mutex
	journal []*message.Message
	stamps  []time.Time // when each was stored
	recs    map[sessKey]*memRecord
	servers []*Server
	acl     *memACL
	// gate, when set, is received from before each replayed message.
	gate chan struct{}
	// first is the journal's first sequence kept (0: all kept): below
	// it the bounds dropped them.
	first uint64
	// replayed counts the Replay calls that returned; posWrites the
	// SavePosition calls.
	replayed  atomic.Int32
	posWrites atomic.Int32
	// beforeRead, when set, runs as Replay starts, before it reads the
	// journal (and its end): a slow store.
	beforeRead atomic.Pointer[func()]
	// afterClaim, when set, runs as Claim returns, with what it returns
	// and the servers it told.
	afterClaim atomic.Pointer[func(principal, clientID string, cl Claimed)]
}

type memRecord struct {
	gen  uint64
	subs []SessionSub
	pos  uint64
	qos2 []QoS2Msg
}

func newMemSessions(acl *memACL) *memSessions {
	return &memSessions{recs: map[sessKey]*memRecord{}, acl: acl}
}

func (m *memSessions) store(msg *message.Message) *message.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := *msg
	c.Payload = bytes.Clone(msg.Payload)
	c.Seq = uint64(len(m.journal) + 1)
	m.journal = append(m.journal, &c)
	m.stamps = append(m.stamps, time.Now())
	return &c
}

// backdate makes the messages stored with sequences from to to look
// stored d earlier.
func (m *memSessions) backdate(from, to uint64, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for seq := from; seq <= to; seq++ {
		m.stamps[seq-1] = m.stamps[seq-1].Add(-d)
	}
}

func (m *memSessions) Claim(_ context.Context, principal, clientID string, clean bool) (Claimed, error) {
	m.mu.Lock()
	key := sessionKey(principal, clientID)
	r := m.recs[key]
	found := r != nil && !clean
	if r == nil {
		r = &memRecord{}
		m.recs[key] = r
	}
	prev := r.gen
	r.gen++
	if !found {
		r.subs, r.pos, r.qos2 = nil, uint64(len(m.journal)), nil
	}
	cl := Claimed{Gen: r.gen, Prev: prev, Found: found, Subs: append([]SessionSub(nil), r.subs...), Pos: r.pos, QoS2: r.qos2}
	servers := m.servers
	m.mu.Unlock()
	for _, s := range servers {
		s.Kick(principal, clientID, cl.Gen)
	}
	if h := m.afterClaim.Load(); h != nil {
		(*h)(principal, clientID, cl)
	}
	return cl, nil
}

func (m *memSessions) Replay(ctx context.Context, principal string, from uint64, topics bool, fn func(*message.Message, time.Time) error) (uint64, uint64, error) {
	defer m.replayed.Add(1)
	if h := m.beforeRead.Load(); h != nil {
		(*h)()
	}
	m.mu.Lock()
	list := append([]*message.Message(nil), m.journal...)
	stamps := append([]time.Time(nil), m.stamps...)
	gate, first := m.gate, m.first
	m.mu.Unlock()
	var gapTo uint64
	if first > from {
		gapTo, from = first-1, first
	}
	for _, msg := range list[min(from-1, uint64(len(list))):] {
		if msg.Kind == message.Direct && msg.To != principal || msg.Kind == message.Group && !m.acl.IsMember(msg.To, principal) ||
			msg.Kind == message.Topic && !topics {
			continue
		}
		if gate != nil {
			select {
			case <-gate:
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			}
		}
		if err := fn(msg, stamps[msg.Seq-1]); err != nil {
			return 0, 0, err
		}
	}
	return uint64(len(list)), gapTo, nil
}

func (m *memSessions) ReplayAll(_ context.Context, from uint64, fn func(*message.Message, []string)) (uint64, error) {
	m.mu.Lock()
	list := append([]*message.Message(nil), m.journal...)
	m.mu.Unlock()
	for _, msg := range list[min(from-1, uint64(len(list))):] {
		rcpts := []string{msg.To}
		if msg.Kind == message.Group {
			rcpts = m.acl.memberList(msg.To)
		}
		fn(msg, rcpts)
	}
	return uint64(len(list)), nil
}

func (m *memSessions) SaveSubs(principal, clientID string, gen uint64, subs []SessionSub) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recs[sessionKey(principal, clientID)]; r != nil && r.gen == gen {
		r.subs = subs
	}
}

func (m *memSessions) SaveQoS2(principal, clientID string, gen uint64, ids []QoS2Msg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recs[sessionKey(principal, clientID)]; r != nil && r.gen == gen {
		r.qos2 = slices.Clone(ids)
	}
}

func (m *memSessions) SavePosition(principal, clientID string, gen uint64, pos uint64) {
	m.posWrites.Add(1)
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recs[sessionKey(principal, clientID)]; r != nil && r.gen == gen && pos > r.pos {
		r.pos = pos
	}
}

func (m *memSessions) RewindPosition(principal, clientID string, gen uint64, pos uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recs[sessionKey(principal, clientID)]; r != nil && r.gen == gen {
		r.pos = pos
	}
}

func (m *memSessions) Release(principal, clientID string, gen uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recs[sessionKey(principal, clientID)]; r != nil && r.gen == gen {
		delete(m.recs, sessionKey(principal, clientID))
	}
}

func (m *memSessions) stored() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.journal)
}

func (m *memSessions) position(principal, clientID string) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recs[sessionKey(principal, clientID)]; r != nil {
		return r.pos
	}
	return 0
}

// storingFwd stores QoS 1 and 2 messages in the memSessions journal before
// delivering them through the server(s) it forwards to.
type storingFwd struct {
	st      *memSessions
	targets func() []*Server
}

func (f *storingFwd) Forward(_ context.Context, m *message.Message) error {
	if m.QoS > 0 {
		m = f.st.store(m)
	} else {
		c := *m
		c.Payload = bytes.Clone(m.Payload)
		m = &c
	}
	rcpts := []string{m.To}
	if m.Kind == message.Group {
		rcpts = f.st.acl.memberList(m.To)
	}
	for _, s := range f.targets() {
		if m.Kind == message.Topic {
			s.DeliverTopic(m)
		} else {
			s.Deliver(m, rcpts)
		}
	}
	return nil
}

// durableEnv starts servers sharing one memSessions; each delivers to
// the servers running at the time (as a cluster's fanout would reach
// whichever node holds the session).
type durableEnv struct {
	t        *testing.T
	rules    *rules.Rules  // the servers' topic rules, if set
	interest TopicInterest // the next servers' topic interest, with rules
	st       *memSessions
	mu       sync.Mutex
	envs     []*env
}

func newDurableEnv(t *testing.T) *durableEnv {
	return &durableEnv{t: t, st: newMemSessions(nil)}
}

func (d *durableEnv) start(edit func(*Config)) *env {
	var e *env
	e = newEnvSetup(d.t, func(c *Config) {
		c.PositionInterval = 20 * time.Millisecond
		c.PositionWriteEvery = 1 // positions follow every tick; TestPositionWriteEvery tests the batching
		if edit != nil {
			edit(c)
		}
	}, func(l *loopFwd) Forwarder {
		if d.st.acl == nil {
			d.st.acl = l.acl
		} else {
			l.acl = d.st.acl
		}
		return &storingFwd{st: d.st, targets: d.running}
	}, func(e *env) {
		if d.rules != nil {
			e.srv.SetTopicRules(d.rules, d.interest)
		}
	})
	e.acl = d.st.acl
	e.srv.SetSessionStore(d.st)
	d.mu.Lock()
	d.envs = append(d.envs, e)
	d.mu.Unlock()
	d.st.mu.Lock()
	d.st.servers = append(d.st.servers, e.srv)
	d.st.mu.Unlock()
	return e
}

func (d *durableEnv) running() []*Server {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*Server
	for _, e := range d.envs {
		e.srv.mu.RLock()
		closed := e.srv.closed
		e.srv.mu.RUnlock()
		if !closed {
			out = append(out, e.srv)
		}
	}
	return out
}

// readNumbered reads n PUBLISHes, acknowledging QoS 1 ones, and returns
// their payloads.
// waitPosition waits until the saved position of (principal, clientID)
// is want.
func (d *durableEnv) waitPosition(principal, clientID string, want uint64) {
	d.t.Helper()
	testutil.CheckFor(d.t, 5*time.Second, 5*time.Millisecond, func() error {
		if p := d.st.position(principal, clientID); p != want {
			return fmt.Errorf("saved position of %s/%s %d, want %d", principal, clientID, p, want)
		}
		return nil
	})
}

func readNumbered(r *rawClient, n int) []string {
	r.t.Helper()
	var got []string
	for range n {
		p := r.readPublish()
		if p.QoS == 1 {
			r.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
		}
		got = append(got, string(p.Payload))
	}
	return got
}

func numbered(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, "m"+strconv.Itoa(i))
	}
	return out
}

func checkSeq(t *testing.T, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// A persistent session's backlog outlives its server: a restart (a new
// server over the same store) resumes it with its subscriptions, session
// present, and replays, in order, what was not acknowledged, from the
// saved position: acknowledged messages are not sent again.
func TestDurableSessionSurvivesRestart(t *testing.T) {
	d := newDurableEnv(t)
	e1 := d.start(nil)
	alice := connectRaw(t, e1, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	d1 := connectRaw(t, e1, "bob", "pc", true)
	for i := 1; i <= 5; i++ {
		d1.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	checkSeq(t, readNumbered(alice, 5), numbered(1, 5))
	// The position reaches the acknowledged messages' within two ticks.
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if p := d.st.position("alice", "phone"); p < 5 {
			return fmt.Errorf("position %d", p)
		}
		return nil
	})
	alice.disconnect()
	for i := 6; i <= 25; i++ {
		d1.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := d.st.stored(); n < 25 {
			return fmt.Errorf("%d stored", n)
		}
		return nil
	})
	e1.srv.Close()

	e2 := d.start(nil)
	alice = dialRaw(t, e2.addr)
	alice.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	if !alice.expectConnack(0) {
		t.Fatal("session present = 0 after the restart")
	}
	checkSeq(t, readNumbered(alice, 20), numbered(6, 25))
	alice.expectNothing(100 * time.Millisecond)
	// The subscription came back with the session: new messages arrive.
	d2 := connectRaw(t, e2, "bob", "pc", true)
	d2.publish(1, 1, "/private/alice", "m26")
	checkSeq(t, readNumbered(alice, 1), numbered(26, 26))
}

// One session per client id across servers: connecting on a second
// server closes the first connection, and messages reach the new one
// only; a clean session there starts empty.
func TestDurableSessionMovesBetweenServers(t *testing.T) {
	d := newDurableEnv(t)
	a, b := d.start(nil), d.start(nil)
	onA := connectRaw(t, a, "alice", "phone", false)
	onA.subscribe(1, "/private/alice/#")
	onA.disconnect()
	pub := connectRaw(t, a, "bob", "pc", true)
	for i := 1; i <= 3; i++ {
		pub.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	// Offline on a; the client comes back through b: session present,
	// the backlog replayed there.
	onB := dialRaw(t, b.addr)
	onB.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	if !onB.expectConnack(0) {
		t.Fatal("session present = 0 on the other server")
	}
	checkSeq(t, readNumbered(onB, 3), numbered(1, 3))
	if n := a.srv.Stats().Sessions; n != 1 { // d1's clean session only
		t.Fatalf("server a holds %d sessions, want 1 (alice's moved)", n)
	}
	// Back to a while connected to b: b's connection is closed. (Once
	// b saved the position: before, a would replay m1..m3 again, which
	// QoS 1 allows.)
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if p := d.st.position("alice", "phone"); p < 3 {
			return fmt.Errorf("position %d", p)
		}
		return nil
	})
	onA = dialRaw(t, a.addr)
	onA.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	if !onA.expectConnack(0) {
		t.Fatal("session present = 0 back on a")
	}
	onB.expectClosed()
	pub.publish(1, 9, "/private/alice", "m4")
	checkSeq(t, readNumbered(onA, 1), numbered(4, 4))
	if b.srv.Stats().Kicked == 0 {
		t.Fatal("b did not count the kick")
	}
	// A clean session on b: nothing resumed, a's connection closed.
	onB = dialRaw(t, b.addr)
	onB.send(connectPacket("alice", "tok-alice", "phone", true, 60))
	if onB.expectConnack(0) {
		t.Fatal("session present = 1 for a clean session")
	}
	onA.expectClosed()
}

// A claim made on another node while this node's claim of the same
// session was between the store and the registration (its Kick found no
// session to close) still wins: the CONNECT here is refused, so one
// client holds the session, whatever the order of the two nodes' steps.
func TestKickDuringClaim(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(nil)
	for _, clean := range []bool{true, false} {
		hook := func(principal, clientID string, cl Claimed) {
			a.srv.Kick(principal, clientID, cl.Gen+1) // the later claim, elsewhere
		}
		d.st.afterClaim.Store(&hook)
		r := dialRaw(t, a.addr)
		r.send(connectPacket("alice", "tok-alice", "phone", clean, 60))
		r.expectConnack(0x03)
		r.expectClosed()
		d.st.afterClaim.Store(nil)
		if n := a.srv.Stats().Sessions; n != 0 {
			t.Fatalf("clean=%v: %d sessions after the refused CONNECT", clean, n)
		}
		// The claims in progress are forgotten: the next CONNECT is
		// served.
		connectRaw(t, a, "alice", "phone", clean).disconnect()
		a.srv.mu.RLock()
		n := len(a.srv.claiming)
		a.srv.mu.RUnlock()
		if n != 0 {
			t.Fatalf("%d claims still in progress", n)
		}
	}
}

// A clean session, which neither saves a position nor replays, holds no
// durable state, even while it gets stored messages: an idle clean
// connection stays in the session's small size class. A persistent one
// has it from its claim.
func TestCleanSessionHoldsNoDurableState(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(nil)
	dur := func(clientID string) *durable {
		a.srv.mu.RLock()
		sess := a.srv.sessionLocked(sessionKey("alice", clientID))
		a.srv.mu.RUnlock()
		sess.mu.Lock()
		defer sess.mu.Unlock()
		return sess.dur
	}
	alice := connectRaw(t, a, "alice", "phone", true)
	alice.subscribe(1, "/private/alice/#")
	pub := connectRaw(t, a, "bob", "pc", true)
	for i := 1; i <= 3; i++ {
		pub.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	checkSeq(t, readNumbered(alice, 3), numbered(1, 3))
	if d.st.stored() < 3 {
		t.Fatalf("%d messages stored, want 3: the session got no stored message", d.st.stored())
	}
	if x := dur("phone"); x != nil {
		t.Fatalf("a clean session holds durable state %+v", x)
	}
	tv := connectRaw(t, a, "alice", "tv", false)
	tv.subscribe(1, "/private/alice/#")
	if dur("tv") == nil {
		t.Fatal("a persistent session holds no durable state")
	}
}

// Messages that arrive while a resumed session replays wait behind the
// replayed ones: order per publisher holds.
func TestDurableReplayKeepsOrder(t *testing.T) {
	d := newDurableEnv(t)
	a, b := d.start(nil), d.start(nil)
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	alice.disconnect()
	pub := connectRaw(t, a, "bob", "pc", true)
	for i := 1; i <= 4; i++ {
		pub.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := d.st.stored(); n < 4 {
			return fmt.Errorf("%d stored", n)
		}
		return nil
	})
	gate := make(chan struct{})
	d.st.mu.Lock()
	d.st.gate = gate
	d.st.mu.Unlock()
	alice = dialRaw(t, b.addr)
	alice.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	alice.expectConnack(0)
	gate <- struct{}{} // m1 replayed
	for i := 5; i <= 7; i++ {
		pub.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		b.srv.mu.RLock()
		sess := b.srv.sessionLocked(sessionKey("alice", "phone"))
		b.srv.mu.RUnlock()
		sess.mu.Lock()
		defer sess.mu.Unlock()
		if len(sess.d().parked) < 3 {
			return fmt.Errorf("%d parked", len(sess.d().parked))
		}
		return nil
	})
	close(gate)
	checkSeq(t, readNumbered(alice, 7), numbered(1, 7))
	alice.expectNothing(100 * time.Millisecond)
}

// A durable session whose queue overflows loses nothing: the dropped
// messages are replayed from the journal, in order.
func TestDurableQueueOverflowReplays(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(func(c *Config) { c.MaxQueued = 4 })
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	alice.disconnect()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := a.srv.Stats().Connections; n != 0 {
			return fmt.Errorf("%d connected", n)
		}
		return nil
	})
	pub := connectRaw(t, a, "bob", "pc", true)
	for i := 1; i <= 12; i++ {
		pub.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n, dropped := d.st.stored(), a.srv.Stats().QueueDropped; n < 12 || dropped < 8 {
			return fmt.Errorf("%d stored, %d dropped", n, dropped)
		}
		return nil
	})
	alice = dialRaw(t, a.addr)
	alice.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	if !alice.expectConnack(0) {
		t.Fatal("session present = 0")
	}
	checkSeq(t, readNumbered(alice, 12), numbered(1, 12))
	alice.expectNothing(100 * time.Millisecond)
}

// A message that went astray while the ring changed (stored, never
// delivered here) reaches the session once the ring settles, before the
// messages that came after it: the session replays from its position at
// the change, then what it parked meanwhile. Until then its position
// stays under the change.
func TestDurableRingChangeReplays(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(func(c *Config) { c.RingSettle = 200 * time.Millisecond })
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	bob := connectRaw(t, a, "bob", "pc", true)
	bob.publish(1, 1, "/private/alice", "m1")
	checkSeq(t, readNumbered(alice, 1), numbered(1, 1))
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if p := d.st.position("alice", "phone"); p < 1 {
			return fmt.Errorf("position %d", p)
		}
		return nil
	})
	a.srv.RingChanged()
	// m2 is stored but goes to a node that does not deliver it here.
	d.st.store(&message.Message{ID: 1 << 40, Kind: message.Direct, From: "bob", To: "alice", QoS: 1, Payload: []byte("m2")})
	bob.publish(1, 2, "/private/alice", "m3")
	// m3 waits for the replay, which brings m2 first: order holds.
	checkSeq(t, readNumbered(alice, 2), []string{"m2", "m3"})
	alice.expectNothing(100 * time.Millisecond)
	if p := d.st.position("alice", "phone"); p > 3 {
		t.Fatalf("position %d past the journal", p)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if p := d.st.position("alice", "phone"); p < 3 {
			return fmt.Errorf("position %d", p)
		}
		return nil
	})
}

// A ring change's replay reads from positions up to four ticks old:
// what the session sent since then and was acknowledged does not come
// again, however many messages that is (the recent-id window holds 64).
func TestDurableRingReplaySkipsWhatWasSent(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(func(c *Config) {
		c.RingSettle = 100 * time.Millisecond
		c.PositionInterval = time.Second // positions lag the deliveries
	})
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	bob := connectRaw(t, a, "bob", "pc", true)
	const n = 3 * recentIDs
	for i := 1; i <= n; i++ {
		bob.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	checkSeq(t, readNumbered(alice, n), numbered(1, n))
	a.srv.RingChanged()
	// Stored while the ring changes, and not delivered here: the replay
	// brings it, and nothing before it.
	d.st.store(&message.Message{ID: 1 << 40, Kind: message.Direct, From: "bob", To: "alice", QoS: 1, Payload: []byte("lost")})
	bob.publish(1, n+1, "/private/alice", "last")
	checkSeq(t, readNumbered(alice, 2), []string{"lost", "last"})
	alice.expectNothing(200 * time.Millisecond)
	// The read offers the two it holds past the acknowledged ones.
	if r := a.srv.Stats().Replayed; r != 2 {
		t.Fatalf("replayed %d messages, want 2", r)
	}
}

// A replay that runs long (a slow client) saves the session's position
// as it goes: if the session moves, its next replay starts past what was
// acknowledged, not where this one began.
func TestDurablePositionMovesDuringReplay(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(nil)
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	alice.disconnect()
	pub := connectRaw(t, a, "bob", "pc", true)
	for i := 1; i <= 100; i++ {
		pub.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i)) // past the inflight window and the queue
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := d.st.stored(); n < 100 {
			return fmt.Errorf("%d stored", n)
		}
		return nil
	})
	b := d.start(func(c *Config) { c.MaxQueued = 4 })
	alice = dialRaw(t, b.addr)
	alice.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	alice.expectConnack(0)
	checkSeq(t, readNumbered(alice, 8), numbered(1, 8)) // then it reads no more
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		b.srv.mu.RLock()
		sess := b.srv.sessionLocked(sessionKey("alice", "phone"))
		b.srv.mu.RUnlock()
		sess.mu.Lock()
		replaying := sess.replaying
		sess.mu.Unlock()
		if p := d.st.position("alice", "phone"); !replaying || p < 6 {
			return fmt.Errorf("position %d, replaying %v", p, replaying)
		}
		return nil
	})
}

// A ring change while a session replays on its own does not make it
// replay again from before the change once done: the replay reads the
// journal whatever the ring, and one more read after it reached the
// end brings what went astray since.
func TestDurableRingChangeDuringReplay(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(func(c *Config) { c.RingSettle = 100 * time.Millisecond })
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	alice.disconnect()
	pub := connectRaw(t, a, "bob", "pc", true)
	for i := 1; i <= 4; i++ {
		pub.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := d.st.stored(); n < 4 {
			return fmt.Errorf("%d stored", n)
		}
		return nil
	})
	gate := make(chan struct{})
	d.st.mu.Lock()
	d.st.gate = gate
	d.st.mu.Unlock()
	b := d.start(func(c *Config) { c.RingSettle = 100 * time.Millisecond })
	alice = dialRaw(t, b.addr)
	alice.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	alice.expectConnack(0)
	gate <- struct{}{} // the replay is under way
	b.srv.RingChanged()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		b.srv.mu.RLock()
		sess := b.srv.sessionLocked(sessionKey("alice", "phone"))
		b.srv.mu.RUnlock()
		sess.mu.Lock()
		defer sess.mu.Unlock()
		if sess.ringHold {
			return fmt.Errorf("ring hold still on")
		}
		return nil
	})
	// m5 went astray under the change: stored, never delivered here.
	d.st.store(&message.Message{ID: 1 << 40, Kind: message.Direct, From: "bob", To: "alice", QoS: 1, Payload: []byte("m5")})
	close(gate)
	checkSeq(t, readNumbered(alice, 5), numbered(1, 5))
	alice.expectNothing(300 * time.Millisecond)
	// Read back: m1..m4, then m5; not m1..m4 once more (which the
	// recent-id window would hide from the client).
	if n := b.srv.Stats().Replayed; n != 5 {
		t.Fatalf("%d messages read back, want 5", n)
	}
}

// A persistent session that connects away from its home gets, after
// RingSettle, what was stored meanwhile and went to the home before the
// home knew where it is (stored, never delivered here), ahead of what
// came after it; at its home it replays nothing.
func TestDurableAwayFromHomeReadsTail(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(func(c *Config) { c.RingSettle = 300 * time.Millisecond })
	a.srv.SetHome(func(id string) bool { return id != "alice" })
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	bob := connectRaw(t, a, "bob", "pc", true)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := d.st.replayed.Load(); n < 1 {
			return fmt.Errorf("%d replays done", n) // the read at CONNECT
		}
		return nil
	})
	// m1 is stored but went to alice's home, which did not know her
	// connection yet; m2 came here.
	d.st.store(&message.Message{ID: 1 << 40, Kind: message.Direct, From: "bob", To: "alice", QoS: 1, Payload: []byte("m1")})
	bob.publish(1, 1, "/private/alice", "m2")
	checkSeq(t, readNumbered(alice, 2), numbered(1, 2))
	alice.expectNothing(100 * time.Millisecond)
	bob.publish(1, 2, "/private/alice", "m3")
	checkSeq(t, readNumbered(alice, 1), numbered(3, 3))

	// At home: nothing held back.
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if p := d.st.position("alice", "phone"); p < 3 {
			return fmt.Errorf("position %d", p) // the PUBACKs are in
		}
		return nil
	})
	a.srv.SetHome(func(string) bool { return true })
	alice.disconnect()
	alice = dialRaw(t, a.addr)
	alice.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	alice.expectConnack(0)
	start := time.Now()
	bob.publish(1, 3, "/private/alice", "m4")
	checkSeq(t, readNumbered(alice, 1), numbered(4, 4))
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("at home, the first live message took %v", d)
	}
}

// A session that comes back after some of its messages left the journal
// gets what is left, in order, then a gap notice on <private>/<id>/$gap.
func TestDurableGapNotice(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(nil)
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	alice.disconnect()
	bob := connectRaw(t, a, "bob", "pc", true)
	for i := 1; i <= 6; i++ {
		bob.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := d.st.stored(); n < 6 {
			return fmt.Errorf("%d stored", n)
		}
		return nil
	})
	a.srv.Close()
	d.st.mu.Lock()
	d.st.first = 4 // m1..m3 aged out
	d.st.mu.Unlock()
	b := d.start(nil)
	alice = dialRaw(t, b.addr)
	alice.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	if !alice.expectConnack(0) {
		t.Fatal("session present = 0")
	}
	checkSeq(t, readNumbered(alice, 3), numbered(4, 6))
	p := alice.readPublish()
	if string(p.Topic) != "/private/alice/$gap" || string(p.Payload) != `{"from_seq":1,"to_seq":3,"reason":"journal"}` {
		t.Fatalf("PUBLISH %s %s, want the gap notice", p.Topic, p.Payload)
	}
	if n := b.srv.Stats().Gaps; n != 1 {
		t.Fatalf("gaps %d, want 1", n)
	}
}

// Once the ring is quiet, clients homed on another node are disconnected
// (at the rate) so they reconnect at home; one that comes back here
// anyway (it cannot reach its home) is left alone; clients at home stay.
func TestRebalanceMovesClientsHome(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(func(c *Config) {
		c.RebalanceAfter = 100 * time.Millisecond
		c.RebalanceRate = 100
		c.PositionInterval = 20 * time.Millisecond
	})
	a.srv.SetHome(func(id string) bool { return id != "alice" })
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	bob := connectRaw(t, a, "bob", "pc", false)
	a.srv.RingChanged() // a node came back: homes are settled in 100 ms
	alice.expectClosed()
	if n := a.srv.Stats().Rebalanced; n != 1 {
		t.Fatalf("rebalanced %d, want 1", n)
	}
	// Its home was unreachable: it came back here, and stays.
	alice = dialRaw(t, a.addr)
	alice.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	if !alice.expectConnack(0) {
		t.Fatal("session present = 0 after the move")
	}
	alice.expectNothing(300 * time.Millisecond)
	bob.ping()
	bob.mustRead(packet.PINGRESP)
	if n := a.srv.Stats().Rebalanced; n != 1 {
		t.Fatalf("rebalanced %d, want 1", n)
	}
}

// The position lag gauge shows how far a connected persistent session's
// saved position is behind the newest stored message offered here: it
// grows while a subscriber does not acknowledge, and goes back to 0 once
// it has.
func TestPositionLag(t *testing.T) {
	d := newDurableEnv(t)
	e := d.start(nil)
	alice := connectRaw(t, e, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	pub := connectRaw(t, e, "bob", "pc", true)
	var pids []uint16
	for i := 1; i <= 5; i++ {
		pub.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	for range 5 {
		pids = append(pids, alice.readPublish().PacketID) // not acknowledged
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if lag := e.srv.Stats().PositionLag; lag != 5 {
			return fmt.Errorf("lag %d with 5 unacknowledged, want 5", lag)
		}
		return nil
	})
	for _, pid := range pids {
		alice.send(packet.AppendAck(nil, packet.PUBACK, pid))
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if lag := e.srv.Stats().PositionLag; lag != 0 {
			return fmt.Errorf("lag %d once acknowledged, want 0", lag)
		}
		return nil
	})
	// The journal went on (appends elsewhere this node knows of) while
	// m6 waits for alice's PUBACK: she is behind it from position 5.
	pub.publish(1, 6, "/private/alice", "m6")
	m6 := alice.readPublish()
	e.srv.SetJournalEnd(func() uint64 { return 12 })
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if lag := e.srv.Stats().PositionLag; lag != 7 {
			return fmt.Errorf("lag %d with the journal at 12 and m6 unacknowledged, want 7", lag)
		}
		return nil
	})
	// Acknowledged: she is at 6, still behind the journal's end (the
	// node cannot tell whether what is under it was for her).
	alice.send(packet.AppendAck(nil, packet.PUBACK, m6.PacketID))
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if lag := e.srv.Stats().PositionLag; lag != 6 {
			return fmt.Errorf("lag %d once m6 was acknowledged with the journal at 12, want 6", lag)
		}
		return nil
	})
}

// A persistent session with no subscription (a device that only
// publishes) moves its position up with the journal: a ring change reads
// the journal from a few ticks back, not from where the session started.
// One with a subscription that gets nothing stays where it was offered
// the last message.
func TestIdleSessionFollowsTheJournal(t *testing.T) {
	d := newDurableEnv(t)
	e := d.start(nil)
	device := connectRaw(t, e, "d1", "sensor", false) // no subscription
	quiet := connectRaw(t, e, "carol", "tablet", false)
	quiet.subscribe(1, "/private/carol/#")
	alice := connectRaw(t, e, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	bob := connectRaw(t, e, "bob", "pc", true)
	for i := 1; i <= 20; i++ {
		bob.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	checkSeq(t, readNumbered(alice, 20), numbered(1, 20))
	d.waitPosition("d1", "sensor", 20)
	if p := d.st.position("carol", "tablet"); p != 0 {
		t.Fatalf("a subscribed session offered nothing moved to %d", p)
	}
	device.expectNothing(10 * time.Millisecond)
	quiet.expectNothing(10 * time.Millisecond)
}

// A ring change that asks for a longer settle (the node's NATS
// connection came back) is not shortened by a later one that asks for
// less.
func TestRingChangedForKeepsTheLongerSettle(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(func(c *Config) { c.RingSettle = 50 * time.Millisecond })
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	a.srv.mu.RLock()
	sess := a.srv.sessionLocked(sessionKey("alice", "phone"))
	a.srv.mu.RUnlock()
	a.srv.RingChangedFor(time.Hour)
	a.srv.RingChanged()
	sess.mu.Lock()
	due, hold := time.Duration(sess.d().ringAt-monoNow()), sess.ringHold
	sess.mu.Unlock()
	if !hold || due < 59*time.Minute {
		t.Fatalf("hold %v, read due in %v; want held for about an hour", hold, due)
	}
}

// sentSeqs keeps its sequences sorted and unique, forgets those at or
// under a trim, and stops growing at maxSent.
func TestSentSeqs(t *testing.T) {
	var p sentSeqs
	for _, q := range []uint64{5, 3, 9, 3, 7} {
		p.add(q)
	}
	if fmt.Sprint(p) != "[3 5 7 9]" {
		t.Fatalf("after adds: %v", p)
	}
	if !p.has(7) || p.has(4) || p.has(10) {
		t.Fatalf("has: %v", p)
	}
	for _, c := range []struct {
		after, upTo uint64
		want        int
	}{{0, 100, 4}, {3, 7, 2}, {2, 3, 1}, {5, 5, 0}, {9, 3, 0}, {9, 100, 0}} {
		if n := p.count(c.after, c.upTo); n != c.want {
			t.Fatalf("count(%d, %d) = %d, want %d", c.after, c.upTo, n, c.want)
		}
	}
	p.trim(5)
	if fmt.Sprint(p) != "[7 9]" || p.has(5) {
		t.Fatalf("after trim(5): %v", p)
	}
	p.trim(100)
	if len(p) != 0 {
		t.Fatalf("after trim(100): %v", p)
	}
	for q := range uint64(maxSent + 10) {
		p.add(q + 1)
	}
	if len(p) != maxSent || !p.has(maxSent) || p.has(maxSent+1) {
		t.Fatalf("capped: len %d", len(p))
	}
}

// A stored message that reaches a session after its saved position has
// passed it (held up longer than the position's history, while other
// messages moved the position on) takes the saved position back under
// it until it is acknowledged: a session that moved meanwhile would
// replay from past it and never get it. The same holds while it waits,
// parked, for a ring change's read.
func TestDurableLateMessageRewindsPosition(t *testing.T) {
	d := newDurableEnv(t)
	a := d.start(nil)
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	bob := connectRaw(t, a, "bob", "pc", true)
	for i := 1; i <= 10; i++ {
		bob.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
	}
	checkSeq(t, readNumbered(alice, 10), numbered(1, 10))
	waitPos := func(want uint64) { t.Helper(); d.waitPosition("alice", "phone", want) }
	waitPos(10)
	late := func(seq uint64) *message.Message {
		return &message.Message{ID: 1<<40 + seq, Kind: message.Direct, From: "bob", To: "alice", QoS: 1, Seq: seq, Payload: []byte("late")}
	}
	a.srv.Deliver(late(5), []string{"alice"})
	waitPos(4)
	p := alice.readPublish()
	if string(p.Payload) != "late" {
		t.Fatalf("got %q, want the late message", p.Payload)
	}
	time.Sleep(10 * a.srv.cfg.PositionInterval) // ticks pass: it stays under the unacknowledged message
	waitPos(4)
	alice.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	waitPos(10)
	// The same message again (its owner sent it once more): not late.
	a.srv.Deliver(late(5), []string{"alice"})
	alice.expectNothing(50 * time.Millisecond)
	if r := a.srv.Stats().Rewound; r != 1 {
		t.Fatalf("rewound %d times after a repeat, want 1", r)
	}

	// Parked for a ring change's read that has not come yet.
	a.srv.RingChangedFor(time.Hour)
	a.srv.Deliver(late(7), []string{"alice"})
	waitPos(6)
	time.Sleep(10 * a.srv.cfg.PositionInterval)
	waitPos(6)
	if r := a.srv.Stats().Rewound; r != 2 {
		t.Fatalf("rewound %d times, want 2", r)
	}
}

// A connected session's position is written once PositionWriteEvery
// stored messages were sent to it, not every tick it moved, and
// whatever the count once its client has gone.
func TestPositionWriteEvery(t *testing.T) {
	d := newDurableEnv(t)
	e := d.start(func(c *Config) { c.PositionWriteEvery = 4 })
	alice := connectRaw(t, e, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	bob := connectRaw(t, e, "bob", "pc", true)
	sess := func() *session {
		e.srv.mu.RLock()
		defer e.srv.mu.RUnlock()
		return e.srv.sessionLocked(sessionKey("alice", "phone"))
	}()
	// inMemory waits for the position the node would save to reach want.
	inMemory := func(want uint64) {
		t.Helper()
		testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
			sess.mu.Lock()
			defer sess.mu.Unlock()
			if sess.d().pos != want {
				return fmt.Errorf("position %d, want %d", sess.d().pos, want)
			}
			return nil
		})
	}
	send := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			bob.publish(1, uint16(i), "/private/alice", "m"+strconv.Itoa(i))
		}
		checkSeq(t, readNumbered(alice, to-from+1), numbered(from, to))
	}
	send(1, 3)
	inMemory(3)
	if p := d.st.position("alice", "phone"); p != 0 {
		t.Fatalf("saved position %d after 3 messages, want 0 (unwritten)", p)
	}
	send(4, 4)
	d.waitPosition("alice", "phone", 4)
	send(5, 6)
	inMemory(6)
	if p := d.st.position("alice", "phone"); p != 4 {
		t.Fatalf("saved position %d after 6 messages, want 4", p)
	}
	alice.disconnect()
	d.waitPosition("alice", "phone", 6)
	if n := d.st.posWrites.Load(); n != 2 {
		t.Fatalf("%d position writes for 6 messages, want 2", n)
	}
}

// A durable session with QoS 2 messages not completed moves to another
// server, which finishes them under the ids the old one saved: the one
// the client released (PUBREC sent, no PUBCOMP) is released again and not
// sent again; the one it had not answered is sent again under its id,
// with DUP. Each reaches the client once, whether it delivers at PUBLISH
// or at PUBREL.
func TestDurableQoS2MovesBetweenServers(t *testing.T) {
	d := newDurableEnv(t)
	a, b := d.start(nil), d.start(nil)
	onA := connectRaw(t, a, "alice", "phone", false)
	onA.subscribeQoS(1, "/private/alice/#", 2)
	pub := connectRaw(t, a, "bob", "pc", true)
	pub.publish(2, 1, "/private/alice", "released")
	pub.readAck(packet.PUBREC)
	pub.publish(2, 2, "/private/alice", "unanswered")
	pub.readAck(packet.PUBREC)
	p1, p2 := onA.readPublish(), onA.readPublish()
	if p1.QoS != 2 || p2.QoS != 2 || string(p2.Payload) != "unanswered" {
		t.Fatalf("%+v %+v", p1, p2)
	}
	onA.sendAck(packet.PUBREC, p1.PacketID)
	onA.readAck(packet.PUBREL) // no PUBCOMP, and no PUBREC for p2
	want := []QoS2Msg{{PID: p2.PacketID, Seq: 2}, {PID: p1.PacketID, Seq: 1, Released: true}}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		d.st.mu.Lock()
		defer d.st.mu.Unlock()
		if r := d.st.recs[sessionKey("alice", "phone")]; r == nil || !slices.Equal(r.qos2, want) {
			return fmt.Errorf("saved QoS 2 messages %+v, want %+v", r.qos2, want)
		}
		return nil
	})
	onA.Abort()
	onB := dialRaw(t, b.addr)
	onB.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	if !onB.expectConnack(0) {
		t.Fatal("session present = 0 on the other server")
	}
	if pid := onB.readAck(packet.PUBREL); pid != p1.PacketID {
		t.Fatalf("PUBREL %d, want %d", pid, p1.PacketID)
	}
	again := onB.readPublish()
	if string(again.Payload) != "unanswered" || again.QoS != 2 || again.PacketID != p2.PacketID || !again.Dup {
		t.Fatalf("sent again %+v, want id %d with DUP", again, p2.PacketID)
	}
	onB.sendAck(packet.PUBCOMP, p1.PacketID)
	onB.sendAck(packet.PUBREC, p2.PacketID)
	onB.readAck(packet.PUBREL)
	onB.sendAck(packet.PUBCOMP, p2.PacketID)
	onB.expectQuiet() // "released" is not sent again
	// Completed: nothing held, and the saved messages follow.
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		d.st.mu.Lock()
		defer d.st.mu.Unlock()
		if r := d.st.recs[sessionKey("alice", "phone")]; r == nil || len(r.qos2) != 0 {
			return fmt.Errorf("saved QoS 2 messages %+v, want none", r.qos2)
		}
		return nil
	})
}
