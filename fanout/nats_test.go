package fanout

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/journal"
	"github.com/pushring/pushring/message"
)

func startNATS(t *testing.T) *natsembed.Server {
	t.Helper()
	s, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// openJournal opens node id's journal (cluster "c") on s, closed at the
// test's end.
func openJournal(t *testing.T, s *natsembed.Server, id string) *journal.Journal {
	t.Helper()
	nc, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(context.Background(), js, journal.Config{Cluster: "c", NodeID: id}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	return j
}

// natsBuses returns a func giving each node its own connection to s, as
// separate processes would have.
func natsBuses(t *testing.T, s *natsembed.Server) func(int) Bus {
	return func(int) Bus {
		nc, err := s.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return NewNATSBus(nc)
	}
}

func TestClusterNATS(t *testing.T) {
	runCoreScenario(t, natsBuses(t, startNATS(t)))
}

// A group large enough that its envelopes are split, over real NATS with
// the default MaxEnvelopeBytes (under the embedded server's MaxPayload).
func TestLargeGroupNATS(t *testing.T) {
	members, homes := groupOf(120_000, threeIDs) // 40,000 per node, about 420 KB of ids
	place := &mapPlacement{homes: homes, def: "n1"}
	nodes := startNodes(t, threeIDs, natsBuses(t, startNATS(t)), staticMembers{"g": members},
		func(int) Placement { return place }, nil)
	m := &message.Message{ID: 77, Kind: message.Group, To: "g", Payload: bytes.Repeat([]byte("z"), 200_000)}
	if err := nodes[0].f.Forward(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		for _, n := range nodes {
			if n.rec.total() != 40_000 {
				return fmt.Errorf("%s: %d deliveries", n.id, n.rec.total())
			}
		}
		return nil
	})
	// 200 KB payload + 400 KB of recipients does not fit in 512 KiB: two
	// envelopes per node.
	for _, n := range nodes {
		if c := n.rec.Calls(); c != 2 {
			t.Errorf("%s: %d envelopes, want 2", n.id, c)
		}
	}
}

// Topic messages over real NATS, each node on its own connection: queue
// groups keep one envelope per node, SUB and UNSUB take effect once
// SyncWatches returns.
func TestTopicsNATS(t *testing.T) {
	runTopicScenario(t, natsBuses(t, startNATS(t)))
}

// A node's topic subscriptions share one channel and one goroutine
// (however many filters it watches), which stops with the last one.
func TestNATSTopicSink(t *testing.T) {
	s := startNATS(t)
	nc, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	bus := NewNATSBus(nc).(*natsBus)
	got := make(chan string, 10)
	fn := func(data []byte, _ bool) { got <- string(data) }
	var unsubs []func()
	for _, subject := range []string{"x.a.>", "x.*.b", "x.a.b"} {
		u, err := bus.SubscribeTopic(subject, "q", fn)
		if err != nil {
			t.Fatal(err)
		}
		unsubs = append(unsubs, u)
	}
	sink := bus.topic
	if sink == nil || sink.n != 3 || nc.NumSubscriptions() != 3 {
		t.Fatalf("sink %+v, %d subscriptions", sink, nc.NumSubscriptions())
	}
	if err := bus.FlushContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish("x.a.b", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish("x.c.b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1", "2"} {
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("got %q, want %q", m, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no message %q", want)
		}
	}
	for _, u := range unsubs {
		u()
		u() // twice is once
	}
	select {
	case <-sink.stop:
	default:
		t.Fatal("the sink's goroutine was not stopped")
	}
	if bus.topic != nil || nc.NumSubscriptions() != 0 {
		t.Fatalf("sink %+v, %d subscriptions left", bus.topic, nc.NumSubscriptions())
	}
	select {
	case m := <-got:
		t.Fatalf("unexpected %q", m)
	default:
	}
}
