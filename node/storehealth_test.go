package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

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

// /readyz fails while the store is unreachable (JetStream disabled on the
// node's embedded NATS server, which stays up and connected) and passes
// again once it is back; the store's gauge follows.
func TestReadyzFollowsStore(t *testing.T) {
	logs := &testutil.SyncBuffer{}
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	t.Cleanup(func() { n.Close() })
	api := newAPI(t, n)
	admin := "Bearer " + n.AdminKey()
	api.must(201, "POST", "/v1/users", admin, map[string]any{"id": "bob", "password": passwordOf("bob")}, nil)
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
	jsDir := n.embedded.JetStreamConfig().StoreDir
	if err := n.embedded.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	if !n.nc.IsConnected() {
		t.Fatal("NATS disconnected: the test must keep it up")
	}
	// A publish that cannot be stored is refused, and makes the node
	// check the store every second until it is back.
	start := time.Now()
	if code := api.do("POST", "/v1/users/bob/messages", admin, map[string]any{"payload": "x"}, nil); code != 503 {
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
		`"msg":"api: refused"`, `direct message to bob`, `"msg":"store unreachable`} {
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

	if err := n.embedded.EnableJetStream(&server.JetStreamConfig{StoreDir: jsDir}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	want(200, 1)
	t.Logf("ready %v after JetStream came back", time.Since(start).Round(time.Millisecond))
	api.must(202, "POST", "/v1/users/bob/messages", admin, map[string]any{"payload": "y"}, nil)
}
