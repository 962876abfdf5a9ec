package node

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
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

// syncBuffer is an io.Writer that may be read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the complete lines written so far, without probe lines.
func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if l != "" && !strings.HasSuffix(l, " probe") {
			out = append(out, l)
		}
	}
	return out
}

func (s *syncBuffer) contains(sub string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Contains(s.b.String(), sub)
}

// TestMosquittoClients runs the push flow with the stock mosquitto_sub and
// mosquitto_pub: alice and bob listen on their private trees, d1 publishes
// to the group, carol hears nothing.
func TestMosquittoClients(t *testing.T) {
	sub := needTool(t, "mosquitto_sub")
	pub := needTool(t, "mosquitto_pub")
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)
	host, port, _ := net.SplitHostPort(n.MQTTAddr())

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	outs := map[string]*syncBuffer{}
	for _, u := range []string{"alice", "bob", "carol"} {
		s := w.api.login(u, u+"-password")
		cmd := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1",
			"-i", u+"-mosq", "-u", u, "-P", s.Token, "-t", "/private/"+u+"/#", "-v")
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		outs[u] = out
		// A direct probe shows the subscription is live: send until one
		// arrives (probes before the SUBSCRIBE are simply not delivered).
		checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
			if out.contains(" probe") {
				return nil
			}
			w.api.must(202, "POST", "/v1/users/"+u+"/messages", w.admin, map[string]any{"payload": "probe"}, nil)
			return fmt.Errorf("%s: no probe yet: %q", u, out.lines())
		})
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
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if !outs[u].contains(" marker") {
				return fmt.Errorf("%s: no marker: %q", u, outs[u].lines())
			}
			return nil
		})
	}
	for _, u := range []string{"alice", "bob"} {
		lines := outs[u].lines()
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
	if got := outs["carol"].lines(); !slices.Equal(got, []string{"/private/carol marker"}) {
		t.Errorf("carol got %q, want only her marker", got)
	}
}
