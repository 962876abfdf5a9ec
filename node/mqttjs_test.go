package node

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// mqttJS starts testdata/mqttjs/subscribe.js (MQTT.js from npm, installed
// by scripts/deps.sh) with env, waits for its subscription, and returns
// a function that waits for its exit and returns the lines it printed
// after "ready".
func mqttJS(t *testing.T, env ...string) (wait func() []string) {
	t.Helper()
	dir, err := filepath.Abs("testdata/mqttjs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "mqtt")); err != nil {
		t.Fatalf("MQTT.js is not installed in %s (run scripts/deps.sh, as make test does): %v", dir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	cmd := exec.CommandContext(ctx, "node", "subscribe.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	stderr := &testutil.SyncBuffer{} // read while the process may still write it
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("node: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	ready := "ready 1" // the QoS granted: the one asked for
	for _, e := range env {
		if q, ok := strings.CutPrefix(e, "QOS="); ok {
			ready = "ready " + q
		}
	}
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != ready {
		t.Fatalf("MQTT.js: first line %q, want %q; stderr: %s", lines.Text(), ready, stderr.String())
	}
	return func() []string {
		t.Helper()
		var got []string
		for lines.Scan() {
			got = append(got, lines.Text())
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("MQTT.js: %v after %q; stderr: %s", err, got, stderr.String())
		}
		return got
	}
}

// TestMQTTJS: MQTT.js (3.1.1) over TCP and over WebSocket logs in with
// its token, subscribes to its private tree and gets a device's group
// messages in order.
func TestMQTTJS(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)
	d1 := connect(t, n, clientOpts{user: "d1", password: w.d1Key}, nil)
	for _, tr := range []struct{ name, url string }{
		{"tcp", "mqtt://" + n.MQTTAddr()},
		{"websocket", "ws://" + n.HTTPAddr() + "/mqtt"},
	} {
		t.Run(tr.name, func(t *testing.T) {
			token := w.api.login("alice", passwordOf("alice")).Token
			wait := mqttJS(t, "URL="+tr.url, "USERNAME=alice", "PASSWORD="+token, "CLIENT_ID=alice-js-"+tr.name,
				"FILTER=/private/alice/#", "COUNT=5")
			var want []string
			for i := range 5 {
				p := fmt.Sprintf("%s-%d", tr.name, i)
				publish(t, d1, "/group/g1", 1, p)
				want = append(want, "/private/alice/group/g1 "+p)
			}
			if got := wait(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("MQTT.js over %s got %q, want %q", tr.name, got, want)
			}
		})
	}
}

// runMQTTJS runs an MQTT.js script to its end and returns its output.
func runMQTTJS(t *testing.T, script string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Dir = "testdata/mqttjs"
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("MQTT.js %s: %v: %s", script, err, out)
	}
	return string(out)
}

// TestMQTTJSv5: MQTT.js at 5.0, over TCP and WebSocket: a device
// publishes with a topic alias, a content type, an expiry and user
// properties; a member connecting with a session expiry and a receive
// maximum gets them all, in order. (MQTT.js acknowledges at once, so the
// window the Receive Maximum sets is not visible here:
// router.TestV5ReceiveMaximumAndPacketSize holds it with a client that
// does not.)
func TestMQTTJSv5(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)
	for _, tr := range []struct{ name, url string }{
		{"tcp", "mqtt://" + n.MQTTAddr()},
		{"websocket", "ws://" + n.HTTPAddr() + "/mqtt"},
	} {
		t.Run(tr.name, func(t *testing.T) {
			token := w.api.login("alice", passwordOf("alice")).Token
			wait := mqttJS(t, "URL="+tr.url, "USERNAME=alice", "PASSWORD="+token, "CLIENT_ID=alice-js5-"+tr.name,
				"FILTER=/private/alice/#", "COUNT=3", "PROTOCOL_VERSION=5", "SESSION_EXPIRY=300", "RECEIVE_MAXIMUM=1")
			if out := runMQTTJS(t, "publish.js", "URL="+tr.url, "USERNAME=d1", "PASSWORD="+w.d1Key,
				"CLIENT_ID=d1-js5-"+tr.name, "TOPIC=/group/g1", "COUNT=3"); strings.TrimSpace(out) != "done" {
				t.Fatalf("publish.js: %q", out)
			}
			var want []string
			for i := range 3 {
				want = append(want, fmt.Sprintf(`/private/alice/group/g1 %d {"contentType":"text/plain","expiry":true,"user":{"k":"v%d"}}`, i, i))
			}
			if got := wait(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("MQTT.js 5.0 over %s got\n%q\nwant\n%q", tr.name, got, want)
			}
		})
	}
}

// TestMQTTJSv5Sessions: MQTT.js at 5.0 on a 2-node cluster with
// --redirect-home: logging in away from home is answered with 0x9C and
// the home's address; at home, a session with a Session Expiry Interval
// outlives its connection, and what was sent meanwhile arrives when it is
// resumed (an HTTP publish's ttl as a 5.0 expiry), over TCP and over
// WebSocket.
func TestMQTTJSv5Sessions(t *testing.T) {
	tc := startClusterWith(t, 2, func(c *Config) { c.Router.RedirectHome = true })
	n1, n2 := tc.byID("n1"), tc.byID("n2")
	id := ""
	for i := 0; id == ""; i++ {
		if u := "js" + strconv.Itoa(i); n1.cluster.Home(u) == "n2" {
			id = u
		}
	}
	token := tc.user(t, id)
	creds := []string{"USERNAME=" + id, "PASSWORD=" + token}

	out := runMQTTJS(t, "connect.js", append(creds, "URL=mqtt://"+n1.MQTTAddr(), "CLIENT_ID=r")...)
	if want := "connack 156 false " + n2.MQTTAddr(); strings.TrimSpace(out) != want {
		t.Fatalf("away from home: %q, want %q", out, want)
	}
	for _, tr := range []struct{ name, url string }{
		{"tcp", "mqtt://" + n2.MQTTAddr()},
		{"websocket", "ws://" + n2.HTTPAddr() + "/mqtt"},
	} {
		t.Run(tr.name, func(t *testing.T) {
			cid := "CLIENT_ID=s-" + tr.name
			out := runMQTTJS(t, "connect.js", append(creds, "URL="+tr.url, cid, "CLEAN=1", "SESSION_EXPIRY=300", "FILTER=/private/"+id+"/#")...)
			if strings.TrimSpace(out) != "connack 0 false -" {
				t.Fatalf("first connect: %q", out)
			}
			// The first with a ttl: a 5.0 receiver sees an expiry.
			for _, body := range []map[string]any{{"payload": "offline-0", "ttl": 300}, {"payload": "offline-1"}} {
				newAPI(t, n1).must(202, "POST", "/v1/users/"+id+"/messages", "Bearer cluster-admin-key", body, nil)
			}
			wait := mqttJS(t, append(creds, "URL="+tr.url, cid, "CLEAN=0", "SESSION_EXPIRY=300", "RESUME=1",
				"FILTER=/private/"+id+"/#", "COUNT=2", "PROTOCOL_VERSION=5")...)
			want := []string{
				"/private/" + id + ` offline-0 {"expiry":true}`,
				"/private/" + id + ` offline-1 {}`,
			}
			if got := wait(); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("resumed session got %q, want %q", got, want)
			}
		})
	}
}

// TestMQTTJSQoS2: MQTT.js publishes at QoS 2 (PUBREC, PUBREL, PUBCOMP);
// subscribers at QoS 2, 3.1.1 and 5.0, over TCP and WebSocket, get each
// message once, at QoS 2.
func TestMQTTJSQoS2(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)
	for _, tr := range []struct{ name, url, version string }{
		{"tcp-3.1.1", "mqtt://" + n.MQTTAddr(), "4"},
		{"websocket-5.0", "ws://" + n.HTTPAddr() + "/mqtt", "5"},
	} {
		t.Run(tr.name, func(t *testing.T) {
			token := w.api.login("alice", passwordOf("alice")).Token
			wait := mqttJS(t, "URL="+tr.url, "USERNAME=alice", "PASSWORD="+token, "CLIENT_ID=alice-q2-"+tr.name,
				"FILTER=/group/g1", "COUNT=3", "PROTOCOL_VERSION="+tr.version, "QOS=2")
			if out := runMQTTJS(t, "publish.js", "URL="+tr.url, "USERNAME=d1", "PASSWORD="+w.d1Key,
				"CLIENT_ID=d1-q2-"+tr.name, "TOPIC=/group/g1", "COUNT=3", "QOS=2"); strings.TrimSpace(out) != "done" {
				t.Fatalf("publish.js: %q", out)
			}
			got := wait()
			for i, line := range got {
				if !strings.HasPrefix(line, fmt.Sprintf("/group/g1 %d", i)) || !strings.HasSuffix(line, " qos=2") {
					t.Fatalf("MQTT.js QoS 2 over %s got %q", tr.name, got)
				}
			}
			if len(got) != 3 {
				t.Fatalf("got %q", got)
			}
		})
	}
}
