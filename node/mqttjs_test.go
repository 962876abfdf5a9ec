package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
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
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
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
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready 1" {
		t.Fatalf("MQTT.js: first line %q, want %q; stderr: %s", lines.Text(), "ready 1", stderr.String())
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
