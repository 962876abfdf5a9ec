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
