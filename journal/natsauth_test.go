package journal

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pushring/pushring/internal/natsauth"
	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/message"
)

// permNode is a node's connection to a server that gives it exactly
// natsauth.NodePermissions, as production does, with the permissions
// violations the server reports to it.
type permNode struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs chan error
}

// startPermNATS starts a server with a user for each node, with the
// node's permissions, and returns the options that sign in as each.
func startPermNATS(t *testing.T, cluster string, nodes ...string) (*natsembed.Server, map[string]nats.Option) {
	t.Helper()
	perms := map[string]natsauth.Permissions{}
	for _, id := range nodes {
		perms[id] = natsauth.NodePermissions(cluster, id)
	}
	return startNATSWith(t, perms)
}

// startNATSWith starts a server with a user for each key of perms,
// allowed what it maps to.
func startNATSWith(t *testing.T, perms map[string]natsauth.Permissions) (*natsembed.Server, map[string]nats.Option) {
	t.Helper()
	var users []natsembed.User
	signers := map[string]nats.Option{}
	for name, p := range perms {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		users = append(users, natsembed.User{PublicKey: pub, Permissions: &p})
		signers[name] = nats.Nkey(pub, kp.Sign)
	}
	srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv, signers
}

func connectNode(t *testing.T, srv *natsembed.Server, cluster, id string, signer nats.Option) *permNode {
	t.Helper()
	errs := make(chan error, 64)
	nc, err := srv.Connect(signer,
		nats.CustomInboxPrefix(natsauth.InboxPrefix(cluster, id)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &permNode{nc: nc, js: js, errs: errs}
}

// noViolations fails the test if the server reported any permissions
// violation to the node.
func (p *permNode) noViolations(t *testing.T, what string) {
	t.Helper()
	p.nc.Flush()
	for {
		select {
		case err := <-p.errs:
			t.Errorf("%s: %v", what, err)
		default:
			return
		}
	}
}

// TestNodePermissions: everything the journal does (open the stream,
// append, replay with one, several and many filters, replay by node,
// bounds) works with exactly a node's permissions, without a single
// violation; and a node cannot store under another node's ingress id.
func TestNodePermissions(t *testing.T) {
	const cluster = "c1"
	srv, signers := startPermNATS(t, cluster, "n1", "n2")
	n1 := connectNode(t, srv, cluster, "n1", signers["n1"])
	n2 := connectNode(t, srv, cluster, "n2", signers["n2"])
	log := slog.New(slog.DiscardHandler)
	j1, err := Open(context.Background(), n1.js, Config{Cluster: cluster, NodeID: "n1"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer j1.Close()
	j2, err := Open(context.Background(), n2.js, Config{Cluster: cluster, NodeID: "n2"}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	appendAll(t, j1, direct(1, "alice"), group(2, "team.a"))
	appendAll(t, j2, direct(3, "alice"), group(4, "g.70"))
	n1.noViolations(t, "open and append")
	n2.noViolations(t, "open and append")

	var many []string
	for i := range maxGroupFilters + 10 {
		many = append(many, "g."+strings.Repeat("x", i%3)+string(rune('a'+i%26))+"."+string(rune('0'+i/26)))
	}
	many = append(many, "g.70")
	for _, tc := range []struct {
		groups []string
		want   []uint64
	}{
		{nil, []uint64{1, 3}},                   // one filter
		{[]string{"team.a"}, []uint64{1, 2, 3}}, // several
		{many, []uint64{1, 3, 4}},               // direct plus all groups, skipped here
	} {
		got, _, _ := replay(t, j1, 0, "alice", tc.groups...)
		if !slices.Equal(ids(got), tc.want) {
			t.Errorf("replay %d groups: %v, want %v", len(tc.groups), ids(got), tc.want)
		}
	}
	if _, _, err := j1.Bounds(context.Background()); err != nil {
		t.Error(err)
	}
	n1.noViolations(t, "replay")

	// n1 under n2's ingress id: the server refuses the publish, and the
	// message is not stored.
	forged, err := Open(context.Background(), n1.js, Config{Cluster: cluster, NodeID: "n2", Timeout: 300 * time.Millisecond}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer forged.Close()
	r := &recorder{}
	forged.Append(direct(9, "alice"), r, 0)
	if res := r.wait(t, 1, 5*time.Second)[0]; res.err == nil {
		t.Errorf("stored under another node's id: %+v", res)
	}
	select {
	case err := <-n1.errs:
		if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "pushring.c1.m.n2.d.alice") {
			t.Errorf("got %v, want the violation of the forged publish", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("no permissions violation for the forged publish")
	}
	if _, last, _ := j1.Bounds(context.Background()); last != 4 {
		t.Errorf("last sequence %d after the forged publish, want 4", last)
	}

	// Nor may it drop the stream, or touch another cluster's journal
	// (single messages it may withdraw: TestWithdraw).
	for _, r := range []struct {
		sub     bool
		subject string
	}{
		{false, "$JS.API.STREAM.DELETE.MSGS_c1"},
		{false, "$JS.API.STREAM.PURGE.MSGS_c1"},
		{false, "pushring.c1.m.n2.g.x"},
		{false, "pushring.c2.m.n1.d.x"},
		{false, "$JS.API.STREAM.INFO.MSGS_c2"},
		{false, "$JS.API.CONSUMER.CREATE.MSGS_c2.x"},
		{true, "pushring.c1.m.>"},
	} {
		var err error
		if r.sub {
			_, err = n1.nc.SubscribeSync(r.subject)
		} else {
			err = n1.nc.Publish(r.subject, []byte("x"))
		}
		if err != nil {
			t.Fatalf("%s: client error %v", r.subject, err)
		}
		n1.nc.Flush()
		select {
		case err := <-n1.errs:
			if !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), `"`+r.subject+`"`) {
				t.Errorf("%s: got %v, want its permissions violation", r.subject, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s (subscribe %v): allowed", r.subject, r.sub)
		}
	}
}

// TestReplayStalls: a replay whose pulls go unanswered (here: refused)
// while messages are pending returns an error after about Timeout; it
// does not wait for ever.
func TestReplayStalls(t *testing.T) {
	const cluster = "c1"
	noPull := natsauth.NodePermissions(cluster, "n1")
	noPull.Publish = slices.DeleteFunc(noPull.Publish, func(s string) bool {
		return strings.HasPrefix(s, "$JS.API.CONSUMER.MSG.NEXT.")
	})
	srv, signers := startNATSWith(t, map[string]natsauth.Permissions{
		"n1": natsauth.NodePermissions(cluster, "n1"), "nopull": noPull})
	cfg := Config{Cluster: cluster, NodeID: "n1", Timeout: 500 * time.Millisecond}
	j, err := Open(context.Background(), connectNode(t, srv, cluster, "n1", signers["n1"]).js, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	appendAll(t, j, direct(1, "alice"))
	jn, err := Open(context.Background(), connectNode(t, srv, cluster, "n1", signers["nopull"]).js, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer jn.Close()
	start := time.Now()
	_, _, err = jn.Replay(context.Background(), 0, "alice", nil, false, func(uint64, time.Time, *message.Message) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "replay stalled") {
		t.Fatalf("replay: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stalled replay returned after %v", d)
	}
}
