package router

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// releases is a Releaser that counts Confirm calls by withhold number.
type releases struct {
	mu  sync.Mutex
	got map[uint64]int
}

func (r *releases) Confirm(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got == nil {
		r.got = map[uint64]int{}
	}
	r.got[seq]++
}

func (r *releases) count(seq uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got[seq]
}

// waitReleased fails unless seq is confirmed, exactly once.
func (r *releases) waitReleased(t *testing.T, seq uint64) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if r.count(seq) == 0 {
			return fmt.Errorf("withhold %d not confirmed", seq)
		}
		return nil
	})
	if n := r.count(seq); n != 1 {
		t.Fatalf("withhold %d confirmed %d times", seq, n)
	}
}

// testClock is a Config.Now that runs with the real clock plus what the
// test moved it on by, so that withholdLimit passes without waiting for it.
type testClock struct{ ahead atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *testClock) advance(d time.Duration) { c.ahead.Add(int64(d)) }

// DeliverAcked says "withheld" when a delivery leaves a connected
// recipient's queue at the withhold mark (MaxQueued/4), and confirms once the
// queue is under it again; offline sessions and sessions backlogged past
// withholdLimit withhold nobody's confirmation.
func TestDeliverAckedWithholds(t *testing.T) {
	clock := &testClock{}
	e := newEnv(t, func(c *Config) {
		c.MaxQueued = 8 // withhold mark 2
		c.MaxInflight = 1
		c.Now = clock.now
	})
	rel := &releases{}
	bob := connectRaw(t, e, "bob", "b", true)
	bob.subscribe(1, "/private/bob/#")
	direct := func(i int) *message.Message {
		return &message.Message{ID: uint64(100 + i), Kind: message.Direct, From: "alice", To: "bob", QoS: 1, Payload: []byte{byte(i)}}
	}
	withheld := func(i int, to string, m *message.Message) bool {
		return e.srv.DeliverAcked(m, []string{to}, rel, uint64(i))
	}
	// 1 goes out (window 1), 2 is queued (1 < 2), 3 makes the queue 2.
	for i := 1; i <= 2; i++ {
		if withheld(i, "bob", direct(i)) {
			t.Fatalf("message %d withheld with the queue under the mark", i)
		}
	}
	if !withheld(3, "bob", direct(3)) {
		t.Fatal("message 3 left the queue at the mark and was not withheld")
	}
	if !withheld(4, "bob", direct(4)) {
		t.Fatal("message 4 was not withheld")
	}
	if rel.count(3) != 0 {
		t.Fatal("released before the client acknowledged anything")
	}
	// Acknowledging 1 sends 2: the queue (3, 4) is still at the mark.
	p := bob.readPublish()
	bob.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	p = bob.readPublish()
	if p.Payload[0] != 2 {
		t.Fatalf("got message %d, want 2", p.Payload[0])
	}
	bob.expectQuiet() // the PUBACK, and any release it made, are handled
	if rel.count(3) != 0 {
		t.Fatal("released with the queue still at the mark")
	}
	// Acknowledging 2 sends 3: the queue (4) is under the mark.
	bob.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	rel.waitReleased(t, 3)
	rel.waitReleased(t, 4)
	if rel.count(1)+rel.count(2) != 0 {
		t.Fatal("a delivery that was not withheld was released")
	}

	// Backlogged past withholdLimit: too slow to wait for.
	bob.readPublish() // 3, not acknowledged: 4 waits in the queue
	for i := 5; i <= 6; i++ {
		withheld(i, "bob", direct(i))
	}
	if !withheld(7, "bob", direct(7)) {
		t.Fatal("message 7 was not withheld")
	}
	clock.advance(withholdLimit + time.Millisecond)
	if withheld(8, "bob", direct(8)) {
		t.Fatal("a session backlogged past withholdLimit still withholds")
	}
	rel.waitReleased(t, 7) // released at once by the slow session, not by a timeout
	if n := e.srv.Stats().SlowSessions; n != 1 {
		t.Fatalf("SlowSessions = %d, want 1", n)
	}

	// Offline: a persistent session queues but withholds nobody's confirmation, and going
	// offline releases what waited.
	carol := connectRaw(t, e, "carol", "c", false)
	carol.subscribe(1, "/private/carol/#")
	toCarol := func(i int) *message.Message {
		return &message.Message{ID: uint64(200 + i), Kind: message.Direct, From: "bob", To: "carol", QoS: 1, Payload: []byte{byte(i)}}
	}
	for i := 1; i <= 2; i++ {
		withheld(200+i, "carol", toCarol(i))
	}
	if !withheld(203, "carol", toCarol(3)) {
		t.Fatal("carol's third message was not withheld")
	}
	carol.readPublish() // 1 (window 1); 2 and 3 are queued
	carol.send(packet.AppendDisconnect(nil))
	carol.expectClosed()
	rel.waitReleased(t, 203)
	if withheld(204, "carol", toCarol(4)) {
		t.Fatal("an offline session withholds")
	}
	// Offline for longer than withholdLimit, then back with a full queue: it
	// is waited for again, not taken for a slow session.
	clock.advance(withholdLimit + time.Millisecond)
	slow := e.srv.Stats().SlowSessions
	carol = dialRaw(t, e.addr)
	carol.send(connectPacket("carol", "tok-carol", "c", false, 60))
	if !carol.expectConnack(0) {
		t.Fatal("carol's session is gone")
	}
	if !withheld(205, "carol", toCarol(5)) {
		t.Fatal("a session back from offline with a backlog does not withhold")
	}
	if n := e.srv.Stats().SlowSessions; n != slow {
		t.Fatalf("SlowSessions %d -> %d: the reconnected session was taken for a slow one", slow, n)
	}
}
