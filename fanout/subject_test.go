package fanout

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// TestNodeSubjectOnNATS: a one-node Fanout sends its group and direct
// envelopes over NATS, on exactly pushring.<cluster>.node.<nodeID>, as a
// plain nats.go subscriber on the test server sees them; nothing goes to
// any other pushring subject.
func TestNodeSubjectOnNATS(t *testing.T) {
	if got, want := Subject("pushring", "vm"), "pushring.pushring.node.vm"; got != want {
		t.Fatalf("Subject = %q, want %q", got, want)
	}
	s := startNATS(t)
	raw, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	const subject = "pushring.c1.node.n1" // spelled out, not Subject's result
	exact, err := raw.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	all, err := raw.SubscribeSync("pushring.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}

	nodes := startNodes(t, []string{"n1"}, natsBuses(t, s), staticMembers{"g1": {"alice", "bob"}},
		func(int) Placement { return &mapPlacement{def: "n1"} }, func(c *Config) { c.Cluster = "c1" })
	f, rec := nodes[0].f, nodes[0].rec
	group := &message.Message{ID: 1, Kind: message.Group, From: "d1", To: "g1", QoS: 1, Payload: []byte("hello")}
	if err := f.Forward(context.Background(), group); err != nil {
		t.Fatal(err)
	}
	direct := &message.Message{ID: 2, Kind: message.Direct, From: "admin", To: "alice", Payload: []byte("hi")}
	if err := f.Forward(context.Background(), direct); err != nil {
		t.Fatal(err)
	}

	for _, want := range []struct {
		id    uint64
		rcpts []string
	}{{1, []string{"alice", "bob"}}, {2, []string{"alice"}}} {
		m, err := exact.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("no envelope for message %d on %s: %v", want.id, subject, err)
		}
		env, err := DecodeEnvelope(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		rcpts := slices.Sorted(slices.Values(env.Recipients))
		if env.Kind != KindDeliver || env.Sender != "n1" || env.Msg.ID != want.id || !slices.Equal(rcpts, want.rcpts) {
			t.Fatalf("envelope %v from %q: message %d to %v, want deliver of %d to %v",
				env.Kind, env.Sender, env.Msg.ID, rcpts, want.id, want.rcpts)
		}
	}
	for range 2 {
		m, err := all.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != subject {
			t.Fatalf("envelope on %q, want %q", m.Subject, subject)
		}
	}
	if m, err := all.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("unexpected message on %q", m.Subject)
	}
	// and the node got them back through its own subscription
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := rec.total(); n < 3 {
			return fmt.Errorf("%d deliveries, want 3", n)
		}
		return nil
	})
	if a, b, d := rec.count(1, "alice"), rec.count(1, "bob"), rec.count(2, "alice"); a != 1 || b != 1 || d != 1 {
		t.Fatalf("deliveries: group alice %d, bob %d; direct alice %d; want 1 each", a, b, d)
	}
	st := f.Stats()
	if st.DeliversSent != 2 || st.EnvelopesSent != 2 || st.DeliversReceived != 2 || st.GroupMessages != 1 || st.DirectMessages != 1 {
		t.Fatalf("stats %+v", st)
	}
}
