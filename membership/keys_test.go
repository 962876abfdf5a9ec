package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/testutil"
)

var otherKey = []byte("fedcba9876543210fedcba9876543210")

// A node without the key, or with another one, cannot join: the join
// fails on its side, the cluster's nodes count and log the refusal (once
// per source), and it never reaches a ring or Members.
func TestKeysKeepStrangersOut(t *testing.T) {
	l := newLogs(t)
	cs := startCluster(t, l, 2)
	reg := prometheus.NewRegistry()
	cfg := testConfig(l, "n3", cs[0].GossipAddr())
	cfg.Registerer = reg
	cs = append(cs, start(t, cfg))
	waitRing(t, cs, ids(3)...)

	for name, keys := range map[string][][]byte{"nokey": nil, "wrongkey": {otherKey}} {
		for _, via := range cs {
			cfg := testConfig(l, name, via.GossipAddr())
			cfg.Keys = keys
			if c, err := Start(cfg); !errors.Is(err, ErrJoin) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("%s joined via %s: %v", name, via.Self().ID, err)
			}
		}
	}
	for _, c := range cs {
		if c.AuthFailures() < 2 {
			t.Errorf("%s counted %d auth failures, want one per stranger at least", c.Self().ID, c.AuthFailures())
		}
		for _, m := range c.Members() {
			if !slices.Contains(ids(3), m.ID) {
				t.Errorf("%s lists the stranger %s", c.Self().ID, m.ID)
			}
		}
		if got := c.Ring().Nodes(); !slices.Equal(got, ids(3)) {
			t.Errorf("%s: ring %v", c.Self().ID, got)
		}
	}
	if got := counterValue(t, reg, "pushring_gossip_auth_failures_total"); got != float64(cs[2].AuthFailures()) || got == 0 {
		t.Errorf("pushring_gossip_auth_failures_total %v, AuthFailures %d", got, cs[2].AuthFailures())
	}
	// Every stranger dials from 127.0.0.1: one line per node receiving,
	// however many failures.
	if n := strings.Count(l.buf.String(), "gossip refused"); n != len(cs) {
		t.Errorf("%d refusal lines, want one per node (source 127.0.0.1)", n)
	}
}

// Rotation through SetKeys, one node at a time at each step, keeps the
// cluster whole (no node ever failed), and at the end the old key is
// useless while the new one admits a node.
func TestSetKeysRotation(t *testing.T) {
	l := newLogs(t)
	cs := startCluster(t, l, 3)
	changes := cs[0].RingChanges()
	newKey := otherKey
	for _, step := range [][][]byte{
		{testKey, newKey}, // every node learns the new key
		{newKey, testKey}, // every node sends with it
		{newKey},          // the old one goes
	} {
		for _, c := range cs {
			if err := c.SetKeys(step); err != nil {
				t.Fatal(err)
			}
			// Let gossip run under the mixed keyrings: each node probes
			// and is probed with the keys as they are now.
			before := c.ml.NumMembers()
			waitProbes(t, cs)
			if c.ml.NumMembers() != before {
				t.Fatalf("members changed during rotation")
			}
		}
	}
	if n := cs[0].RingChanges(); n != changes {
		t.Errorf("%d ring changes during rotation", n-changes)
	}
	for _, c := range cs {
		if c.AuthFailures() != 0 {
			t.Errorf("%s: %d auth failures during rotation", c.Self().ID, c.AuthFailures())
		}
	}
	old := testConfig(l, "old", cs[1].GossipAddr())
	if c, err := Start(old); !errors.Is(err, ErrJoin) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a node with the removed key joined: %v", err)
	}
	cfg := testConfig(l, "n4", cs[1].GossipAddr())
	cfg.Keys = [][]byte{newKey}
	cs = append(cs, start(t, cfg))
	waitRing(t, cs, ids(4)...)
}

// waitProbes waits until each node has had a few gossip exchanges: its
// memberlist's sequence number (one per probe it sent) moved by 3.
func waitProbes(t *testing.T, cs []*Cluster) {
	t.Helper()
	// Probes are the one exchange every node starts on its own; their
	// acks cross back with the prober's peer's primary key.
	start := make([]uint64, len(cs))
	for i, c := range cs {
		start[i] = c.ProbesAnswered()
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for i, c := range cs {
			if c.ProbesAnswered() < start[i]+3 {
				return fmt.Errorf("%s: not 3 probes yet", c.Self().ID)
			}
		}
		return nil
	})
}

func TestSetKeysErrors(t *testing.T) {
	l := newLogs(t)
	c := start(t, testConfig(l, "n1"))
	for name, keys := range map[string][][]byte{
		"none":     nil,
		"short":    {testKey, []byte("short")},
		"repeated": {testKey, otherKey, testKey},
	} {
		if err := c.SetKeys(keys); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg := testConfig(l, "clear")
	cfg.Keys = nil
	clear := start(t, cfg)
	if err := clear.SetKeys([][]byte{testKey}); !errors.Is(err, ErrNoKeyring) {
		t.Errorf("SetKeys without a keyring: %v", err)
	}
}

// Failures are counted each, logged once per source per authLogEvery,
// and a flood of sources past authMaxSources is one line a minute.
func TestAuthFailuresLog(t *testing.T) {
	var buf testutil.SyncBuffer
	now := time.Unix(1000, 0)
	a := newAuthFailures(slog.New(slog.NewTextHandler(&buf, nil)))
	a.now = func() time.Time { return now }
	w := newMemberlistLogger(slog.New(slog.DiscardHandler), a)
	lines := []string{
		"[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.1:7946",
		"[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=10.0.0.1:50000",
		"[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=[::1]:50001",
	}
	for range 3 {
		for _, line := range lines {
			w.Print(line)
		}
	}
	// Not authentication: not counted.
	w.Print("[ERR] memberlist: failed to receive: EOF from=10.0.0.1:1")
	w.Print("[ERR] memberlist: discarding packet with unacceptable label \"x\": from=10.0.0.1:1")
	if a.n.Load() != 9 {
		t.Errorf("counted %d, want 9", a.n.Load())
	}
	out := buf.String()
	if n := strings.Count(out, "gossip refused"); n != 2 {
		t.Errorf("%d lines, want 2 (sources 10.0.0.1 and ::1):\n%s", n, out)
	}
	if !strings.Contains(out, "source=10.0.0.1") || !strings.Contains(out, "source=::1") ||
		!strings.Contains(out, `err="Decrypt packet failed: no installed keys could decrypt the message"`) {
		t.Errorf("log lacks the source or the error:\n%s", out)
	}
	now = now.Add(authLogEvery)
	w.Print(lines[0])
	if n := strings.Count(buf.String(), "gossip refused"); n != 3 {
		t.Errorf("a minute later: %d lines, want 3", n)
	}
	for i := range authMaxSources + 10 {
		w.Print(fmt.Sprintf("[ERR] memberlist: Decrypt packet failed: x from=10.1.%d.%d:1", i/256, i%256))
	}
	if n := strings.Count(buf.String(), "many sources"); n != 1 {
		t.Errorf("%d flood lines, want 1", n)
	}
	if len(a.last) > authMaxSources {
		t.Errorf("%d sources remembered", len(a.last))
	}
}
