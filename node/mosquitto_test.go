package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// needTool finds a stock client; `make test` installs them (scripts/deps.sh),
// so in CI a missing one is a failure, not a skip.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (make test runs scripts/deps.sh)", name)
		}
		t.Skipf("%s not installed; run scripts/deps.sh", name)
	}
	return p
}

// mosqTest is what the tests of the mosquitto tools share: the tools'
// paths, a node with the world, its MQTT host and port, and a context
// bounding the tools' runs (cancelled at cleanup). The caller closes the
// node.
type mosqTest struct {
	sub, pub   string
	n          *Node
	w          *world
	host, port string
	ctx        context.Context
}

func newMosqTest(t *testing.T, dir string) *mosqTest {
	t.Helper()
	m := &mosqTest{sub: needTool(t, "mosquitto_sub"), pub: needTool(t, "mosquitto_pub")}
	m.n = startNode(t, dir, nil)
	m.w = setupWorld(t, m.n)
	m.host, m.port, _ = net.SplitHostPort(m.n.MQTTAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	m.ctx = ctx
	return m
}

// outputLines returns the complete lines of a process's output, without
// the probe lines tests use to see a subscription is live.
func outputLines(b *testutil.SyncBuffer) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if l != "" && !strings.HasSuffix(l, " probe") {
			out = append(out, l)
		}
	}
	return out
}

// mosquittoSub runs the mosquitto_sub at path with args until the test
// ends, and returns its output once a direct message "probe" to user
// shows in it as probe (the subscription is live: probes sent before
// its SUBSCRIBE are simply not delivered).
func mosquittoSub(t *testing.T, ctx context.Context, w *world, user, probe, path string, args ...string) *testutil.SyncBuffer {
	t.Helper()
	cmd := exec.CommandContext(ctx, path, args...)
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if out.Contains(probe) {
			return nil
		}
		w.api.must(202, "POST", "/v1/users/"+user+"/messages", w.admin, map[string]any{"payload": "probe"}, nil)
		return fmt.Errorf("%s: no probe yet: %q", user, outputLines(out))
	})
	return out
}

// TestMosquittoClients runs the push flow with the stock mosquitto_sub and
// mosquitto_pub: alice and bob listen on their private trees, d1 publishes
// to the group, carol hears nothing.
func TestMosquittoClients(t *testing.T) {
	m := newMosqTest(t, t.TempDir())
	defer m.n.Close()
	sub, pub, w, host, port, ctx := m.sub, m.pub, m.w, m.host, m.port, m.ctx
	outs := map[string]*testutil.SyncBuffer{}
	for _, u := range []string{"alice", "bob", "carol"} {
		s := w.api.login(u, passwordOf(u))
		outs[u] = mosquittoSub(t, ctx, w, u, " probe", sub, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1",
			"-i", u+"-mosq", "-u", u, "-P", s.Token, "-t", "/private/"+u+"/#", "-v")
	}

	for i := range 2 {
		out, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1",
			"-i", "d1-mosq", "-u", "d1", "-P", w.d1Key, "-t", "/group/g1", "-m", fmt.Sprint("hello-", i)).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		w.api.must(202, "POST", "/v1/users/"+u+"/messages", w.admin, map[string]any{"payload": "marker"}, nil)
	}
	// The marker travels behind the group messages on the same path.
	for _, u := range []string{"alice", "bob", "carol"} {
		testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if !outs[u].Contains(" marker") {
				return fmt.Errorf("%s: no marker: %q", u, outputLines(outs[u]))
			}
			return nil
		})
	}
	for _, u := range []string{"alice", "bob"} {
		lines := outputLines(outs[u])
		slices.Sort(lines)
		want := []string{
			"/private/" + u + " marker",
			"/private/" + u + "/group/g1 hello-0",
			"/private/" + u + "/group/g1 hello-1",
		}
		if !slices.Equal(lines, want) {
			t.Errorf("%s got\n%s\nwant\n%s", u, joinLines(lines), joinLines(want))
		}
	}
	if got := outputLines(outs["carol"]); !slices.Equal(got, []string{"/private/carol marker"}) {
		t.Errorf("carol got %q, want only her marker", got)
	}
}

// TestMosquittoClientsV5: mosquitto_sub and mosquitto_pub at MQTT 5.0.
// Properties the publisher sets (content type, expiry, a user property)
// reach the subscriber; a publish the ACL refuses is answered with
// reason code 0x87, which mosquitto_pub reports.
func TestMosquittoClientsV5(t *testing.T) {
	m := newMosqTest(t, t.TempDir())
	defer m.n.Close()
	sub, pub, w, host, port, ctx := m.sub, m.pub, m.w, m.host, m.port, m.ctx

	s := w.api.login("alice", passwordOf("alice"))
	out := mosquittoSub(t, ctx, w, "alice", " probe|", sub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-x", "300",
		"-i", "alice-mosq5", "-u", "alice", "-P", s.Token, "-t", "/private/alice/#", "-F", "%t %p|%C|%P|%E")

	res, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1",
		"-i", "d1-mosq5", "-u", "d1", "-P", w.d1Key, "-t", "/group/g1", "-m", "hello5",
		"-D", "publish", "content-type", "text/plain", "-D", "publish", "user-property", "k", "v",
		"-D", "publish", "message-expiry-interval", "600").CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, res)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !out.Contains("hello5") {
			return fmt.Errorf("nothing yet: %q", out.String())
		}
		return nil
	})
	var line string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "hello5") {
			line = l
		}
	}
	// The expiry left is 600 or a second less, depending on the clock.
	if !strings.HasPrefix(line, "/private/alice/group/g1 hello5|text/plain|k:v|") ||
		!(strings.HasSuffix(line, "|600") || strings.HasSuffix(line, "|599")) {
		t.Fatalf("mosquitto_sub -V mqttv5 printed %q", line)
	}

	// Refused: d1 may not publish to g2. mosquitto_pub prints the code.
	res, _ = exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1",
		"-i", "d1-mosq5", "-u", "d1", "-P", w.d1Key, "-t", "/group/g2", "-m", "no").CombinedOutput()
	if !strings.Contains(strings.ToLower(string(res)), "not authorized") {
		t.Fatalf("mosquitto_pub to a refused topic printed %q, want the reason code's text", res)
	}
}
