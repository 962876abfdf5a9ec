package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/pushring/pushring/internal/natsembed"

	"github.com/pushring/pushring/internal/testutil"
)

// readyz returns /readyz's status and body.
func readyz(n *Node) (int, string, error) {
	resp, err := http.Get("http://" + n.HTTPAddr() + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	b, _ := json.Marshal(body)
	return resp.StatusCode, string(b), nil
}

// /readyz fails while the store cannot be written (the journal's stream
// gone from the node's NATS server, which stays up and connected:
// JetStream answers nothing for it) and passes again once it
// is back; the store's gauge follows, and every refusal is logged with
// what was refused. (Disabling JetStream at run time would be closer,
// but nats-server's EnableJetStream races with its own API handler.)
func TestReadyzFollowsStore(t *testing.T) {
	// A NATS server of the test's own, reached by URL as in production,
	// with an unlimited user for the test: a node's own user may not
	// delete streams.
	admin, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	adminPub, _ := admin.PublicKey()
	ns := startSharedNATS(t, natsembed.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0",
		Users: []natsembed.User{{PublicKey: adminPub}}})
	dir := t.TempDir()
	ns.authorize(t, "pushring", "n1", dir)
	logs := &testutil.SyncBuffer{}
	n := startNode(t, dir, func(c *Config) {
		c.NATSURL = "nats://" + ns.Addr().String()
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	t.Cleanup(func() { n.Close() })
	api := newAPI(t, n)
	adminKey := "Bearer " + n.AdminKey()
	api.must(201, "POST", "/v1/users", adminKey, map[string]any{"id": "bob", "password": passwordOf("bob")}, nil)
	// The API does not say why it is not ready; ready() and the gauge do.
	want := func(code int, reachable float64) {
		t.Helper()
		testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
			got, body, err := readyz(n)
			if err != nil {
				return err
			}
			if got != code {
				return fmt.Errorf("readyz %d %s, want %d", got, body, code)
			}
			if v := counter(t, n, "pushring_store_reachable", nil); v != reachable {
				return fmt.Errorf("pushring_store_reachable %v, want %v", v, reachable)
			}
			return nil
		})
	}
	want(200, 1)

	// bob logs in while the store is up; his QoS 1 publish, later, is
	// refused at the journal.
	bob := connect(t, n, clientOpts{user: "bob", password: api.login("bob", passwordOf("bob")).Token}, nil)
	nc, err := ns.Connect(nats.Nkey(adminPub, admin.Sign))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	stream, err := js.Stream(ctx, "MSGS_pushring")
	if err != nil {
		t.Fatal(err)
	}
	streamCfg := stream.CachedInfo().Config
	if err := js.DeleteStream(ctx, streamCfg.Name); err != nil {
		t.Fatal(err)
	}
	if !n.nc.IsConnected() {
		t.Fatal("NATS disconnected: the test must keep it up")
	}
	// A publish that cannot be stored is refused, and makes the node
	// check the store every second until it is back.
	start := time.Now()
	if code := api.do("POST", "/v1/users/bob/messages", adminKey, map[string]any{"payload": "x"}, nil); code != 503 {
		t.Fatalf("publish with the store down: %d, want 503", code)
	}
	tok := bob.Publish("/private/bob", 1, false, "x")
	tok.WaitTimeout(10 * time.Second) // no PUBACK: the connection is closed
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if bob.IsConnectionOpen() {
			return errors.New("the publisher's connection is still open")
		}
		return nil
	})
	want(503, 0)
	// Each refusal's log line says what was refused, without the payload.
	for _, line := range []string{`"msg":"journal: message not stored","node":"n1","id":"`, `"kind":"direct","to":"bob"`,
		`could not be stored; closing its publisher's connection without PUBACK","node":"n1","component":"router","id":"bob","client_id":"bob-test"`,
		`"msg":"api: refused"`, ` to bob not published: journal: refused`, `"msg":"store unreachable`} {
		if !logs.Contains(line) {
			t.Errorf("no log line with %s:\n%s", line, logs.String())
		}
	}
	if logs.Contains(`"payload"`) || logs.Contains(`"x"`) {
		t.Error("a log line carries the payload")
	}
	t.Logf("unready %v after the refused publish", time.Since(start).Round(time.Millisecond))
	if err := n.ready(); err == nil || !strings.Contains(err.Error(), "store unreachable") {
		t.Fatalf("ready() = %v, want the store named", err)
	}
	if v := counter(t, n, "pushring_store_check_failures_total", nil); v < 1 {
		t.Fatalf("pushring_store_check_failures_total %v", v)
	}

	if _, err := js.CreateStream(ctx, streamCfg); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	want(200, 1)
	t.Logf("ready %v after the stream came back", time.Since(start).Round(time.Millisecond))
	api.must(202, "POST", "/v1/users/bob/messages", adminKey, map[string]any{"payload": "y"}, nil)
	if n.fan.LastStored() == 0 {
		t.Fatal("the journal's end, as the node knows it, is still 0 after a stored publish")
	}
}
