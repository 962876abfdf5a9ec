package journal

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// TestWithdraw: with exactly a node's NATS permissions, a withdrawn
// message is deleted from the stream (no replay reads it again) and
// counted; withdrawing it twice, or a sequence the stream never held, is
// no error; and ReplayGroups reads the group messages only, from a
// sequence on.
func TestWithdraw(t *testing.T) {
	const cluster = "c1"
	srv, signers := startPermNATS(t, cluster, "n1")
	n1 := connectNode(t, srv, cluster, "n1", signers["n1"])
	reg := prometheus.NewRegistry()
	j, err := Open(context.Background(), n1.js, Config{Cluster: cluster, NodeID: "n1", Registerer: reg}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	seqs := appendAll(t, j, direct(1, "alice"), group(2, "team"), direct(3, "alice"), group(4, "team"), group(5, "other"))

	j.Withdraw(seqs[1]) // group 2
	j.Withdraw(seqs[2]) // direct 3
	j.Withdraw(seqs[2]) // again: gone already
	j.Withdraw(999)     // never stored
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := counters(t, reg)["pushring_journal_withdrawn_total"]; got != 4 {
			return fmt.Errorf("withdrawn %v of 4", got)
		}
		return nil
	})
	got, _, _ := replay(t, j, 0, "alice", "team")
	if want := []uint64{1, 4}; !slices.Equal(ids(got), want) {
		t.Errorf("replay after withdrawing 2 and 3: %v, want %v", ids(got), want)
	}

	var groups []uint64
	last, err := j.ReplayGroups(context.Background(), seqs[1], 0, func(seq uint64, m *message.Message) error {
		if m.Kind != message.Group {
			t.Errorf("ReplayGroups gave %+v", m)
		}
		groups = append(groups, m.ID)
		return nil
	})
	if err != nil || last != seqs[4] || !slices.Equal(groups, []uint64{4, 5}) {
		t.Errorf("ReplayGroups from %d: %v, last %d, %v; want [4 5], last %d", seqs[1], groups, last, err, seqs[4])
	}
	n1.noViolations(t, "withdraw and ReplayGroups")
	if got := counters(t, reg)["pushring_journal_withdraw_dropped_total"]; got != 0 {
		t.Errorf("withdraw_dropped %v", got)
	}
}
