package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/testutil"
)

// natsServer is an embedded NATS with JetStream on a test directory.
type natsServer struct {
	t   *testing.T
	dir string
	srv *natsembed.Server
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir()}
	n.start()
	t.Cleanup(func() { n.srv.Stop() })
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: n.dir})
	if err != nil {
		n.t.Fatal(err)
	}
	n.srv = srv
}

// restart stops the server and starts a new one on the same directory.
func (n *natsServer) restart() {
	n.t.Helper()
	n.srv.Stop()
	n.start()
}

// openKV connects to the server and opens a KV store, closed at cleanup.
func (n *natsServer) openKV(t *testing.T, cfg KVConfig) *KV {
	t.Helper()
	nc, err := n.srv.Connect(nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := NewKV(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kv.Close()
		nc.Close()
	})
	return kv
}

func TestKVContract(t *testing.T) {
	runContract(t, func(t *testing.T) *fixture {
		n := startNATS(t)
		cfg := KVConfig{Timeout: 2 * time.Second}
		return &fixture{
			St:   n.openKV(t, cfg),
			Peer: func(t *testing.T) Store { return n.openKV(t, cfg) },
			Restart: func(t *testing.T) Store {
				n.restart()
				return n.openKV(t, cfg)
			},
		}
	})
}

func TestKVKeyEncoding(t *testing.T) {
	for _, id := range goodIDs {
		enc := encodeID(id)
		if slices.Contains([]byte(enc), '.') || decodeID(enc) != id {
			t.Errorf("encodeID(%q) = %q", id, enc)
		}
		for _, r := range []Role{Member, Publisher} {
			id2 := "x." + id
			id2 = id2[:min(64, len(id2))]
			gid, pid, rr, ok := parseRoleKey(roleKey(id, id2, r))
			if !ok || gid != id || pid != id2 || rr != r {
				t.Errorf("roleKey round trip (%q, %v): %q %q %v %v", id, r, gid, pid, rr, ok)
			}
		}
	}
	for _, bad := range []string{"", "g", "g.m", "g.x.a", "g.m.a.b", ".m.a", "g.m."} {
		if _, _, _, ok := parseRoleKey(bad); ok {
			t.Errorf("parseRoleKey(%q) ok", bad)
		}
	}
}

func TestKVBuckets(t *testing.T) {
	n := startNATS(t)
	kv := n.openKV(t, KVConfig{Cluster: "c1", SessionMaxAge: time.Hour})
	ctx := ctxT(t)
	if err := kv.CreateGroup(ctx, Group{ID: "a.b"}); err != nil {
		t.Fatal(err)
	}
	// Another cluster prefix is another set of buckets.
	other := n.openKV(t, KVConfig{Cluster: "c2"})
	if _, err := other.Group(ctx, "a.b"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cluster c2 sees c1's group: %v", err)
	}
	st, err := kv.sessions.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != time.Hour || st.Bucket() != "c1_sessions" {
		t.Fatalf("sessions bucket %s TTL %v", st.Bucket(), st.TTL())
	}
	// The key is the encoded id.
	if _, err := kv.groups.Get(ctx, "a=b"); err != nil {
		t.Fatalf("group key a=b: %v", err)
	}
	for _, c := range []string{"a.b", "a b", "a>", "*"} {
		if _, err := NewKV(ctx, nil, KVConfig{Cluster: c}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("cluster %q: %v", c, err)
		}
	}
}

func TestKVConfigValidate(t *testing.T) {
	if err := DefaultKVConfig().Validate(); err != nil {
		t.Errorf("DefaultKVConfig: %v", err)
	}
	if err := (KVConfig{}).Validate(); err != nil {
		t.Errorf("zero KVConfig: %v", err)
	}
	for _, tc := range []struct {
		field string
		cfg   KVConfig
	}{
		{"Cluster", KVConfig{Cluster: "a/b"}},
		{"Cluster", KVConfig{Cluster: strings.Repeat("c", 201)}},
		{"Replicas", KVConfig{Replicas: -1}},
		{"Replicas", KVConfig{Replicas: maxReplicas + 1}},
		{"SessionMaxAge", KVConfig{SessionMaxAge: -time.Hour}},
		{"Timeout", KVConfig{Timeout: -time.Second}},
	} {
		if err := testutil.ConfigError(tc.cfg.Validate(), ErrInvalidConfig, "store: ", tc.field); err != nil {
			t.Error(err)
		}
	}
}

// TestKVUnavailable: a dead server gives ErrUnavailable, within Timeout.
func TestKVUnavailable(t *testing.T) {
	n := startNATS(t)
	kv := n.openKV(t, KVConfig{Timeout: 300 * time.Millisecond})
	ctx := ctxT(t)
	n.srv.Stop()
	start := time.Now()
	if _, err := kv.Principal(ctx, "alice"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Principal on a dead server: %v", err)
	}
	if _, err := kv.Session(ctx, HashToken("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Session on a dead server: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	kv.Close()
	if err := kv.CreateGroup(ctx, Group{ID: "g"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestKVListScanBound: a page of one kind reads at most listScan records
// and may come back short, with a cursor; following the cursors still
// lists every principal of the kind once, in order.
func TestKVListScanBound(t *testing.T) {
	n := startNATS(t)
	kv := n.openKV(t, KVConfig{})
	kv.listScan = 3
	ctx := ctxT(t)
	var users []string
	for i := range 12 {
		id := fmt.Sprintf("p%02d", i)
		kind := Device
		if i%4 == 3 { // one in four a user: pages of devices in between
			kind = User
			users = append(users, id)
		}
		must(t, kv.CreatePrincipal(ctx, Principal{ID: id, Kind: kind}))
	}
	var got []string
	short := 0
	after := ""
	for range 20 {
		ps, next, err := kv.ListPrincipals(ctx, User, "", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if next != "" && len(ps) < 2 {
			short++
		}
		for _, p := range ps {
			got = append(got, p.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if !slices.Equal(got, users) {
		t.Fatalf("users listed %q, want %q", got, users)
	}
	if short == 0 {
		t.Fatal("no page came back short: the scan bound was not reached")
	}
}
