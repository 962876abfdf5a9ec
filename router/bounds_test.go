package router

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// offlineBacklog leaves alice's persistent session (subscribed to her
// whole private tree) offline on a fresh server of d, has bob send her n
// direct QoS 1 messages, payload(i) for i = 1..n, and waits until the
// journal holds them. It returns the server she was on.
// heldHere makes claims kick no server (memSessions kicks the claiming
// server too, unlike the node's store): a session this server holds is
// resumed from its memory.
func heldHere(d *durableEnv) {
	d.st.mu.Lock()
	d.st.servers = nil
	d.st.mu.Unlock()
}

func offlineBacklog(t *testing.T, d *durableEnv, edit func(*Config), n int, payload func(int) string) *env {
	t.Helper()
	a := d.start(edit)
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	alice.disconnect()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if c := a.srv.Stats().Connections; c != 0 {
			return fmt.Errorf("%d connected", c)
		}
		return nil
	})
	bob := connectRaw(t, a, "bob", "pc", true)
	base := d.st.stored()
	for i := 1; i <= n; i++ {
		bob.publish(1, uint16(i), "/private/alice", payload(i))
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if s := d.st.stored(); s < base+n {
			return fmt.Errorf("%d stored", s-base)
		}
		return nil
	})
	return a
}

// resumeOn connects alice's persistent session on e, expecting it to be
// found (session present).
func resumeOn(t *testing.T, e *env) *rawClient {
	t.Helper()
	alice := dialRaw(t, e.addr)
	alice.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	if !alice.expectConnack(0) {
		t.Fatal("session present = 0")
	}
	return alice
}

// expectGap reads the next PUBLISH and checks it is the gap notice with
// payload want.
func expectGap(t *testing.T, r *rawClient, want string) {
	t.Helper()
	p := r.readPublish()
	if string(p.Topic) != "/private/alice/$gap" || string(p.Payload) != want {
		t.Fatalf("PUBLISH %s %s, want the gap notice %s", p.Topic, p.Payload, want)
	}
}

// bounded is a test's Config edit: f, with position ticks slow enough
// that a loaded machine does not take a late one for a pause (a ring
// change, which replays again), and ring changes that settle at once.
func bounded(f func(*Config)) func(*Config) {
	return func(c *Config) {
		c.PositionInterval = 50 * time.Millisecond
		c.RingSettle = 100 * time.Millisecond
		f(c)
	}
}

func mPayload(i int) string { return "m" + strconv.Itoa(i) }

// Over the message bound, a session resumed on another server gets the
// newest SessionBacklogMessages, in order, then one notice of the range
// and count dropped; the drops are counted, and its position moves past
// them: the next resume replays nothing.
func TestBacklogBoundMessages(t *testing.T) {
	d := newDurableEnv(t)
	bound := bounded(func(c *Config) { c.SessionBacklogMessages = 5 })
	a := offlineBacklog(t, d, bound, 12, mPayload)
	b := d.start(bound)
	alice := resumeOn(t, b)
	checkSeq(t, readNumbered(alice, 5), numbered(8, 12))
	expectGap(t, alice, `{"from_seq":1,"to_seq":7,"dropped":7,"reason":"messages"}`)
	if st := b.srv.Stats(); st.BacklogDroppedMessages != 7 || st.BacklogDroppedBytes != 0 || st.BacklogDroppedAge != 0 {
		t.Fatalf("dropped by messages/bytes/age: %d/%d/%d, want 7/0/0",
			st.BacklogDroppedMessages, st.BacklogDroppedBytes, st.BacklogDroppedAge)
	}
	if st := a.srv.Stats(); st.BacklogDroppedMessages != 0 {
		t.Fatalf("the first server dropped %d", st.BacklogDroppedMessages)
	}
	// A ring change right after the resume (the last ticks' positions
	// still the claim's) reads the journal for the session from before
	// the drops: the dropped messages do not come that way either.
	b.srv.mu.RLock()
	sess := b.srv.sessionLocked(sessionKey("alice", "phone"))
	b.srv.mu.RUnlock()
	sess.mu.Lock()
	sess.d().hist = [posHistory]uint64{}
	sess.mu.Unlock()
	replays := b.srv.Stats().Replays
	b.srv.RingChanged()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := b.srv.Stats().Replays; n == replays {
			return fmt.Errorf("no read after the ring change")
		}
		return nil
	})
	alice.expectNothing(200 * time.Millisecond)
	// Nor does a replay of its own from there, nor a second notice: the
	// newest were sent already.
	sess.mu.Lock()
	sess.replayLocked(1)
	sess.mu.Unlock()
	alice.expectNothing(200 * time.Millisecond)
	if n := b.srv.Stats().BacklogDroppedMessages; n != 7 {
		t.Fatalf("dropped %d after more replays, want 7", n)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if p := d.st.position("alice", "phone"); p < 12 {
			return fmt.Errorf("position %d", p)
		}
		return nil
	})
	alice.disconnect()
	alice = resumeOn(t, a)
	alice.expectNothing(200 * time.Millisecond)
}

// Over the byte bound, the newest messages whose payloads fit are kept.
func TestBacklogBoundBytes(t *testing.T) {
	d := newDurableEnv(t)
	bound := bounded(func(c *Config) { c.SessionBacklogBytes = 100 })
	payload := func(i int) string { return fmt.Sprintf("m%d-%s", i, strings.Repeat("x", 27-len(strconv.Itoa(i)))) } // 30 bytes
	offlineBacklog(t, d, bound, 8, payload)
	b := d.start(bound)
	alice := resumeOn(t, b)
	var want []string
	for i := 6; i <= 8; i++ {
		want = append(want, payload(i))
	}
	checkSeq(t, readNumbered(alice, 3), want)
	expectGap(t, alice, `{"from_seq":1,"to_seq":5,"dropped":5,"reason":"bytes"}`)
	alice.expectNothing(100 * time.Millisecond)
	if st := b.srv.Stats(); st.BacklogDroppedBytes != 5 || st.BacklogDroppedMessages != 0 {
		t.Fatalf("dropped by bytes %d, by messages %d; want 5, 0", st.BacklogDroppedBytes, st.BacklogDroppedMessages)
	}
}

// Messages stored longer ago than the age bound are dropped; the rest
// come, then the notice.
func TestBacklogBoundAge(t *testing.T) {
	d := newDurableEnv(t)
	bound := bounded(func(c *Config) { c.SessionBacklogAge = time.Hour })
	offlineBacklog(t, d, bound, 6, mPayload)
	d.st.backdate(1, 4, 2*time.Hour)
	b := d.start(bound)
	alice := resumeOn(t, b)
	checkSeq(t, readNumbered(alice, 2), numbered(5, 6))
	expectGap(t, alice, `{"from_seq":1,"to_seq":4,"dropped":4,"reason":"age"}`)
	alice.expectNothing(100 * time.Millisecond)
	if st := b.srv.Stats(); st.BacklogDroppedAge != 4 || st.BacklogDroppedMessages != 0 {
		t.Fatalf("dropped by age %d, by messages %d; want 4, 0", st.BacklogDroppedAge, st.BacklogDroppedMessages)
	}
}

// A backlog within every bound comes whole, with no notice and nothing
// counted.
func TestBacklogWithinBounds(t *testing.T) {
	d := newDurableEnv(t)
	bound := bounded(func(c *Config) {
		c.SessionBacklogMessages = 5
		c.SessionBacklogBytes = 10
		c.SessionBacklogAge = time.Hour
	})
	offlineBacklog(t, d, bound, 5, mPayload)
	b := d.start(bound)
	alice := resumeOn(t, b)
	checkSeq(t, readNumbered(alice, 5), numbered(1, 5))
	alice.expectNothing(200 * time.Millisecond)
	if st := b.srv.Stats(); st.BacklogDroppedMessages+st.BacklogDroppedBytes+st.BacklogDroppedAge != 0 {
		t.Fatalf("dropped %+v", st)
	}
}

// The bounds count what the session takes: messages its subscriptions
// do not match neither count nor make it drop what it does take.
func TestBacklogBoundCountsWhatMatches(t *testing.T) {
	d := newDurableEnv(t)
	bound := bounded(func(c *Config) { c.SessionBacklogMessages = 3 })
	a := d.start(bound)
	alice := connectRaw(t, a, "alice", "phone", false)
	alice.subscribe(1, "/private/alice") // her direct messages, not g1's
	alice.disconnect()
	bob := connectRaw(t, a, "bob", "pc", true)
	dev := connectRaw(t, a, "d1", "dev", true)
	for i := 1; i <= 3; i++ {
		for j := range 4 {
			dev.publish(1, uint16(4*i+j), "/group/g1", "g")
		}
		bob.publish(1, uint16(i), "/private/alice", mPayload(i))
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := d.st.stored(); n < 15 {
			return fmt.Errorf("%d stored", n)
		}
		return nil
	})
	alice = resumeOn(t, d.start(bound))
	checkSeq(t, readNumbered(alice, 3), numbered(1, 3))
	alice.expectNothing(200 * time.Millisecond)
}

// A session held on its server while offline, whose queue outgrew the
// bounds (the queue's own cap is larger here), replays from the journal
// on its return: the same newest messages and notice as elsewhere.
func TestBacklogBoundQueuedHere(t *testing.T) {
	d := newDurableEnv(t)
	a := offlineBacklog(t, d, bounded(func(c *Config) { c.SessionBacklogMessages = 5 }), 12, mPayload)
	if st := a.srv.Stats(); st.QueueDropped != 0 {
		t.Fatalf("the queue dropped %d", st.QueueDropped)
	}
	heldHere(d)
	alice := resumeOn(t, a)
	checkSeq(t, readNumbered(alice, 5), numbered(8, 12))
	expectGap(t, alice, `{"from_seq":1,"to_seq":7,"dropped":7,"reason":"messages"}`)
	alice.expectNothing(100 * time.Millisecond)
	if n := a.srv.Stats().BacklogDroppedMessages; n != 7 {
		t.Fatalf("dropped %d, want 7", n)
	}
}

// Offline longer than the age bound, a session held here replays from
// the journal, which drops what is too old.
func TestBacklogBoundAgeQueuedHere(t *testing.T) {
	d := newDurableEnv(t)
	var skew atomic.Int64
	a := offlineBacklog(t, d, bounded(func(c *Config) {
		c.SessionBacklogAge = time.Hour
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	}), 4, mPayload)
	// Two hours on: the session was offline for longer than the bound;
	// m1 and m2 were stored then, m3 and m4 half an hour ago.
	skew.Store(int64(2 * time.Hour))
	d.st.backdate(3, 4, -90*time.Minute)
	heldHere(d)
	alice := resumeOn(t, a)
	checkSeq(t, readNumbered(alice, 2), numbered(3, 4))
	expectGap(t, alice, `{"from_seq":1,"to_seq":2,"dropped":2,"reason":"age"}`)
	if n := a.srv.Stats().BacklogDroppedAge; n != 2 {
		t.Fatalf("dropped by age %d, want 2", n)
	}
}

// keptBacklog keeps the newest within its bounds across the ring's
// growth and wrap, a message over the byte bound alone, and names the
// bound that dropped the newest.
func TestKeptBacklog(t *testing.T) {
	msg := func(seq uint64, size int) *message.Message {
		return &message.Message{Seq: seq, Payload: make([]byte, size)}
	}
	k := &keptBacklog{max: 100, maxBytes: 1 << 20}
	for seq := uint64(1); seq <= 250; seq++ {
		k.add(msg(seq, 1), time.Time{})
	}
	if k.n != 100 || k.bytes != 100 || len(k.buf) != 100 || k.from != 1 || k.to != 150 || k.dropped() != 150 ||
		k.drops[boundMessages] != 150 || k.reason != boundMessages {
		t.Fatalf("after 250 of 1 byte: n %d bytes %d ring %d range %d-%d dropped %v", k.n, k.bytes, len(k.buf), k.from, k.to, k.drops)
	}
	for want := uint64(151); want <= 250; want++ {
		if m := k.pop(); m == nil || m.Seq != want {
			t.Fatalf("pop: %v, want seq %d", m, want)
		}
	}
	if k.pop() != nil || k.bytes != 0 {
		t.Fatalf("left: %d, %d bytes", k.n, k.bytes)
	}
	k.reset()
	k.maxBytes = 10
	k.add(msg(1, 4), time.Time{})
	k.add(msg(2, 4), time.Time{})
	k.add(msg(3, 30), time.Time{}) // over the bound alone: kept alone
	if k.n != 1 || k.bytes != 30 || k.drops[boundBytes] != 2 || k.from != 1 || k.to != 2 {
		t.Fatalf("big one: n %d bytes %d drops %v range %d-%d", k.n, k.bytes, k.drops, k.from, k.to)
	}
	k.reset()
	k.cutoff = time.Now()
	k.add(msg(1, 1), time.Now().Add(-time.Minute))
	k.add(msg(2, 1), time.Now().Add(time.Minute))
	if k.n != 1 || k.drops[boundAge] != 1 || k.reason != boundAge || k.from != 1 || k.to != 1 {
		t.Fatalf("age: n %d drops %v", k.n, k.drops)
	}
}

// BenchmarkKeptBacklog: keeping a message read back costs no allocation
// once the ring has grown to its bound.
func BenchmarkKeptBacklog(b *testing.B) {
	k := &keptBacklog{max: 10_000, maxBytes: 16 << 20, cutoff: time.Now().Add(-time.Hour)}
	msgs := make([]*message.Message, 1024)
	for i := range msgs {
		msgs[i] = &message.Message{Payload: make([]byte, 200)}
	}
	stored := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m := msgs[i%len(msgs)]
		m.Seq = uint64(i + 1)
		k.add(m, stored)
	}
}
