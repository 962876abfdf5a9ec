package router

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/pushring/pushring/mqtt/packet"
)

// A graceful stop, step by step: StopAccepting refuses new connections
// and a CONNECT that comes on a connection accepted before it (0x03, so
// the client tries its next address) while the clients connected keep
// being served; Drain closes them and waits until they are gone; Close
// counts what the sessions had not delivered: alice's persistent
// session's messages are in the journal (replayed where she resumes),
// carol's clean session's are dropped with the node.
func TestStopAcceptingDrainAndCountUnsent(t *testing.T) {
	d := newDurableEnv(t)
	e := d.start(nil)
	e.acl.setMember("g1", "carol", true) // so that bob may write to her
	alice := connectRaw(t, e, "alice", "phone", false)
	alice.subscribe(1, "/private/alice/#")
	carol := connectRaw(t, e, "carol", "tablet", true)
	carol.subscribe(1, "/private/carol/#")
	pending := dialRaw(t, e.addr) // accepted, not yet logged in
	pub := connectRaw(t, e, "bob", "pc", true)
	for i := 1; i <= 5; i++ {
		pub.publish(1, uint16(i), "/private/alice", "a"+strconv.Itoa(i))
	}
	for i := 1; i <= 3; i++ {
		pub.publish(1, uint16(10+i), "/private/carol", "c"+strconv.Itoa(i))
	}
	// Received, never acknowledged: in flight when the node stops.
	for range 5 {
		alice.readPublish()
	}
	for range 3 {
		carol.readPublish()
	}

	if err := e.srv.StopAccepting(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", e.addr, time.Second); err == nil {
		c.Close()
		t.Fatal("a connection was accepted after StopAccepting")
	}
	pending.send(connectPacket("alice", "tok-alice", "laptop", true, 60))
	pending.expectConnack(0x03)
	// The clients connected are still served.
	pub.publish(1, 6, "/private/alice", "a6")
	if p := alice.readPublish(); string(p.Payload) != "a6" {
		t.Fatalf("after StopAccepting alice got %q, want a6", p.Payload)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n := e.srv.Drain(ctx); n < 3 {
		t.Fatalf("Drain closed %d connections, want at least 3", n)
	}
	alice.expectClosed()
	carol.expectClosed()
	for { // bob's PUBACKs, then the close
		if h, _, err := pub.read(2 * time.Second); err != nil {
			break
		} else if h>>4 != packet.PUBACK {
			t.Fatalf("bob got packet %#x, want PUBACKs then the close", h)
		}
	}
	if st := e.srv.Stats(); st.Connections != 0 || st.Sessions != 1 {
		t.Fatalf("after Drain: %d connections, %d sessions; want 0 and alice's offline one", st.Connections, st.Sessions)
	}
	e.srv.Close()
	st := e.srv.Stats()
	if st.ShutdownStored != 6 || st.ShutdownDropped != 3 {
		t.Fatalf("shutdown counts: %d stored, %d dropped; want 6 (alice's) and 3 (carol's)", st.ShutdownStored, st.ShutdownDropped)
	}
}
