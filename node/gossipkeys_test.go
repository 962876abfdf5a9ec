package node

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

func TestParseGossipKeys(t *testing.T) {
	k16, k32 := bytes.Repeat([]byte{0xfb}, 16), bytes.Repeat([]byte{0xff}, 32)
	file := "# rotation: new key second\n\n" +
		base64.StdEncoding.EncodeToString(k32) + "\r\n" +
		"  " + base64.RawURLEncoding.EncodeToString(k16) + "  \n"
	keys, err := parseGossipKeys([]byte(file))
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], k32) || !bytes.Equal(keys[1], k16) {
		t.Fatalf("got %x, %v", keys, err)
	}
	secret := base64.StdEncoding.EncodeToString([]byte("twelve bytes"))
	for name, tc := range map[string]struct{ file, err string }{
		"empty":    {"# nothing\n\n", "no key"},
		"size":     {"#\n" + secret + "\n", "line 2: a key of 12 bytes"},
		"base64":   {"not base64!\n", "line 1: not base64"},
		"repeated": {base64.StdEncoding.EncodeToString(k32) + "\n" + base64.RawURLEncoding.EncodeToString(k32), "line 2 repeats the key of line 1"},
	} {
		_, err := parseGossipKeys([]byte(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", name, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the error shows the key: %v", name, err)
		}
	}
}

// Off loopback or with Join, a node needs a key or InsecureGossip.
func TestValidateGossipExposure(t *testing.T) {
	keyFile := writeKeyFile(t, testGossipKey)
	for _, tc := range []struct {
		name  string
		mod   func(*Config)
		field string // "" for valid
	}{
		{"default", func(c *Config) {}, ""},
		{"loopback v6", func(c *Config) { c.GossipAddr = "[::1]:7946" }, ""},
		{"localhost", func(c *Config) { c.GossipAddr = "localhost:7946" }, ""},
		{"all interfaces", func(c *Config) { c.GossipAddr = ":7946" }, "GossipAddr"},
		{"unspecified", func(c *Config) { c.GossipAddr = "0.0.0.0:7946" }, "GossipAddr"},
		{"LAN", func(c *Config) { c.GossipAddr = "10.1.2.3:7946" }, "GossipAddr"},
		{"host name", func(c *Config) { c.GossipAddr = "node1.example:7946" }, "GossipAddr"},
		{"join", func(c *Config) { c.Join = []string{"127.0.0.1:7947"} }, "Join"},
		{"insecure", func(c *Config) { c.GossipAddr, c.Join, c.InsecureGossip = ":7946", []string{"a:1"}, true }, ""},
		{"key", func(c *Config) {
			c.GossipAddr, c.Join, c.Membership.Keys = ":7946", []string{"a:1"}, [][]byte{testGossipKey}
		}, ""},
		{"key file", func(c *Config) { c.GossipAddr, c.Join, c.GossipKeyFile = ":7946", []string{"a:1"}, keyFile }, ""},
		{"missing file", func(c *Config) { c.GossipKeyFile = filepath.Join(t.TempDir(), "none") }, "GossipKeyFile"},
		{"bad file", func(c *Config) { c.GossipKeyFile = writeFile(t, "short\n", 0o600) }, "GossipKeyFile"},
		{"both", func(c *Config) { c.GossipKeyFile, c.Membership.Keys = keyFile, [][]byte{testGossipKey} }, "GossipKeyFile"},
		{"bad key", func(c *Config) { c.Membership.Keys = [][]byte{[]byte("short")} }, "Keys"},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		err := cfg.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err := testutil.ConfigError(err, ErrInvalidConfig, "", tc.field); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func writeKeyFile(t *testing.T, keys ...[]byte) string {
	t.Helper()
	return writeFile(t, keyFileText(keys...), 0o600)
}

func keyFileText(keys ...[]byte) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	return b.String()
}

// Insecure gossip that reaches out is logged at warn at start, as is a key
// file open to others.
func TestGossipWarnings(t *testing.T) {
	var logs testutil.SyncBuffer
	keyFile := writeFile(t, keyFileText(testGossipKey), 0o644)
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.Membership.Keys, c.GossipKeyFile = nil, keyFile
	})
	n.Close()
	if !logs.Contains("gossip key file is readable by other users") || logs.Contains("neither encrypted") {
		t.Errorf("key file 0644:\n%s", logs.String())
	}
	seed := startNode(t, t.TempDir(), func(c *Config) { c.Membership.Keys = nil })
	defer seed.Close()
	var logs2 testutil.SyncBuffer
	n = startNode(t, t.TempDir(), func(c *Config) {
		c.NodeID = "n2"
		c.Logger = slog.New(slog.NewTextHandler(&logs2, nil))
		c.Membership.Keys, c.InsecureGossip, c.Join = nil, true, []string{seed.cluster.GossipAddr()}
	})
	n.Close()
	if !logs2.Contains("level=WARN msg=\"gossip is neither encrypted nor authenticated") {
		t.Errorf("insecure gossip with Join:\n%s", logs2.String())
	}
}

// Keys rotate through the key file and Reload, one node at a time at each
// step, with the cluster whole throughout; then the old key no longer
// joins and the new one does. A file Reload cannot use changes nothing.
func TestReloadGossipKeys(t *testing.T) {
	oldKey, newKey := testGossipKey, []byte("node-test-gossip-key-rotated-new")
	files := map[string]string{}
	tc := startClusterWith(t, 2, func(c *Config) {
		files[c.NodeID] = writeKeyFile(t, oldKey)
		c.Membership.Keys, c.GossipKeyFile = nil, files[c.NodeID]
	})
	changes := tc.nodes[0].cluster.RingChanges()
	for _, step := range [][][]byte{{oldKey, newKey}, {newKey, oldKey}, {newKey}} {
		for _, n := range tc.nodes {
			if err := os.WriteFile(files[n.cfg.NodeID], []byte(keyFileText(step...)), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := n.Reload(); err != nil {
				t.Fatal(err)
			}
			waitGossip(t, tc.nodes)
		}
	}
	for _, n := range tc.nodes {
		if got := n.cluster.AuthFailures(); got != 0 {
			t.Errorf("%s: %d auth failures during the rotation", n.cfg.NodeID, got)
		}
	}
	if got := tc.nodes[0].cluster.RingChanges(); got != changes {
		t.Errorf("%d ring changes during the rotation", got-changes)
	}

	// A file Reload cannot use: an error, and the keys stay.
	n1 := tc.nodes[0]
	os.WriteFile(files["n1"], []byte("# emptied by mistake\n"), 0o600)
	if err := n1.Reload(); err == nil || !strings.Contains(err.Error(), "no key") {
		t.Errorf("Reload of an empty key file: %v", err)
	}
	os.WriteFile(files["n1"], []byte(keyFileText(newKey)), 0o600)

	// The old key: the join is refused (counted by n1), never in the ring.
	failures := n1.cluster.AuthFailures()
	oldDir := t.TempDir()
	tc.nats.authorize(t, "pushring", "old", oldDir) // NATS lets it in: only the gossip key is wrong
	old := startNode(t, oldDir, func(c *Config) {
		c.NodeID, c.NATSURL, c.Join = "old", tc.url, []string{n1.cluster.GossipAddr()}
		c.Membership.Keys = [][]byte{oldKey}
		c.Membership.JoinRetryInterval = 50 * time.Millisecond
	})
	defer old.Close()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := n1.cluster.AuthFailures() - failures; got < 3 {
			return fmt.Errorf("%d refused joins so far", got)
		}
		return nil
	})
	if old.cluster.Joined() {
		t.Error("the node with the old key joined")
	}
	for _, n := range tc.nodes {
		if _, ok := n.cluster.Member("old"); ok || slices.Contains(n.cluster.Ring().Nodes(), "old") {
			t.Errorf("%s knows the node with the old key", n.cfg.NodeID)
		}
	}
	old.Close()
	tc.mod = func(c *Config) { c.Membership.Keys = [][]byte{newKey} }
	tc.add(t)
	tc.waitConverged(t)
}

// waitGossip waits until every node's gossip made a few probes that were
// answered, under the keys as they are now.
func waitGossip(t *testing.T, nodes []*Node) {
	t.Helper()
	start := make([]uint64, len(nodes))
	for i, n := range nodes {
		start[i] = n.cluster.ProbesAnswered()
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for i, n := range nodes {
			if n.cluster.ProbesAnswered() < start[i]+2 {
				return fmt.Errorf("%s: probes not answered yet", n.cfg.NodeID)
			}
		}
		return nil
	})
}
