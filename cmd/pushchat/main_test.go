package main

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/pushring/pushring/internal/testutil"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDescribeAndFormat(t *testing.T) {
	const p = "/private/alice"
	for _, tc := range []struct {
		topic, payload, want string
	}{
		{"/private/alice", "bob: hi", "[direct] bob: hi"},
		{"/private/alice/group/g1", "dev1: 21.5C", "[group g1] dev1: 21.5C"},
		{"/group/g2", "x", "[group g2] x"},
		{"/private/alice/other", "x", "[/private/alice/other] x"},
		{"/private/alice", "two\nlines", `[direct] "two\nlines"`},
		{"/private/alice", "\xff\x00", `[direct] "\xff\x00"`},
		{"/private/alice", "", "[direct] "},
		{"/private/alice", "héllo ✓", "[direct] héllo ✓"},
	} {
		if got := formatMessage(p, tc.topic, []byte(tc.payload)); got != tc.want {
			t.Errorf("formatMessage(%q, %q) = %q, want %q", tc.topic, tc.payload, got, tc.want)
		}
	}
	if got := outgoing("alice", "hello"); got != "alice: hello" {
		t.Errorf("outgoing = %q", got)
	}
}

func TestBrokerURL(t *testing.T) {
	for _, tc := range []struct{ in, fallback, want string }{
		{"127.0.0.1:1883", "h", "tcp://127.0.0.1:1883"},
		{"node-a.example:1883", "h", "tcp://node-a.example:1883"},
		{"tcp://x:1", "h", "tcp://x:1"},
		{"ssl://x", "h", "ssl://x:8883"},
		{"x", "h", "tcp://x:1883"},
		{"0.0.0.0:1883", "10.1.2.3", "tcp://10.1.2.3:1883"},
		{"[::]:1883", "srv", "tcp://srv:1883"},
		{":1883", "::1", "tcp://[::1]:1883"},
		{"ws://n1:8080/mqtt", "h", "ws://n1:8080/mqtt"},
	} {
		got, err := brokerURL(tc.in, tc.fallback)
		if err != nil || got != tc.want {
			t.Errorf("brokerURL(%q, %q) = %q, %v; want %q", tc.in, tc.fallback, got, err, tc.want)
		}
	}
	if _, err := brokerURL(":1883", ""); err == nil {
		t.Error("brokerURL without any host: no error")
	}
}

func TestClientID(t *testing.T) {
	a, b := clientID("alice"), clientID("alice")
	if !strings.HasPrefix(a, "pushchat-alice-") || len(a) != len("pushchat-alice-")+8 || a == b {
		t.Errorf("clientID: %q %q", a, b)
	}
}

func TestFlags(t *testing.T) {
	env := func(k string) string { return map[string]string{"PUSHRING_PASSWORD": "pw"}[k] }
	o, err := parseFlags([]string{"--user", "alice", "--group", "g1", "--server", "localhost:8080/"}, io.Discard, env)
	if err != nil || o.password != "pw" || o.server != "http://localhost:8080" || o.qos != 1 {
		t.Fatalf("parseFlags: %+v %v", o, err)
	}
	for _, args := range [][]string{
		{"--group", "g1"},                  // no user
		{"--user", "a/b"},                  // id would break the topic
		{"--user", "#"},                    // wildcard
		{"--user", "a", "--group", "g+"},   // wildcard group
		{"--user", "a", "--direct", "b/c"}, // bad direct
		{"--user", "a", "--group", "g", "--direct", "b"},
		{"--user", "a", "--qos", "3"},
		{"--user", "a", "extra"},
	} {
		if _, err := parseFlags(args, io.Discard, env); err == nil {
			t.Errorf("parseFlags(%q): no error", args)
		}
	}
}

// --- end to end against a fake API and a fake broker --------------------------

// checkFor waits until fn returns true, failing after timeout.
func checkFor(t *testing.T, timeout time.Duration, what string, fn func() bool) {
	t.Helper()
	testutil.CheckFor(t, timeout, 5*time.Millisecond, func() error {
		if !fn() {
			return fmt.Errorf("no %s yet", what)
		}
		return nil
	})
}

// fakeSessions is the API side pushchat uses: login and logout.
type fakeSessions struct {
	mqtt []string
	mu   sync.Mutex
	out  []string // tokens logged out
}

func (f *fakeSessions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method + " " + r.URL.Path {
	case "POST /v1/sessions":
		var in struct{ ID, Password string }
		json.NewDecoder(r.Body).Decode(&in)
		if in.ID != "alice" || in.Password != "secret123" {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"bad id or password"}}`)
			return
		}
		w.WriteHeader(201)
		json.NewEncoder(w).Encode(map[string]any{"token": "tok-alice", "expires_at": "2030-01-01T00:00:00Z",
			"private_topic": "/private/alice", "mqtt": f.mqtt})
	case "DELETE /v1/sessions/current":
		f.mu.Lock()
		f.out = append(f.out, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		f.mu.Unlock()
		w.WriteHeader(204)
	default:
		w.WriteHeader(404)
	}
}

func (f *fakeSessions) loggedOut() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.out...)
}

type chatRun struct {
	stdout, stderr testutil.SyncBuffer
	done           chan int
}

func startChat(t *testing.T, stdin io.Reader, args ...string) *chatRun {
	c := &chatRun{done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		c.done <- run(ctx, args, stdin, &c.stdout, &c.stderr, func(string) string { return "" })
	}()
	return c
}

func (c *chatRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-c.done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("pushchat did not exit; stderr:\n%s", c.stderr.String())
		return -1
	}
}

func TestChatInteractive(t *testing.T) {
	broker := newFakeBroker(t, "tok-alice")
	api := &fakeSessions{mqtt: []string{broker.addr()}}
	srv := httptest.NewServer(api)
	defer srv.Close()

	in, typed := io.Pipe()
	c := startChat(t, in, "--server", srv.URL, "--user", "alice", "--password", "secret123", "--group", "g1")
	checkFor(t, 5*time.Second, "ready", func() bool { return strings.Contains(c.stderr.String(), "pushchat: ready") })

	// A direct message from bob arrives.
	broker.send("alice", "/private/alice", "bob: psst")
	checkFor(t, 5*time.Second, "direct message", func() bool { return strings.Contains(c.stdout.String(), "[direct] bob: psst\n") })

	// A typed line goes to the group, and comes back through the fan-out.
	io.WriteString(typed, "hello everyone\n")
	checkFor(t, 5*time.Second, "group echo", func() bool {
		return strings.Contains(c.stdout.String(), "[group g1] alice: hello everyone\n")
	})

	io.WriteString(typed, "/quit\n")
	if code := c.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, c.stderr.String())
	}
	// pushchat exits once its DISCONNECT is written; the fake broker
	// records it when its reader gets there.
	checkFor(t, 5*time.Second, "disconnect at the broker", func() bool {
		ev := broker.eventList()
		return len(ev) > 0 && ev[len(ev)-1] == "disconnect"
	})
	ev := broker.eventList()
	if len(ev) < 4 || !strings.HasPrefix(ev[0], "connect alice pushchat-alice-") ||
		ev[1] != "subscribe /private/alice/#" || ev[2] != "publish /group/g1 alice: hello everyone" || ev[len(ev)-1] != "disconnect" {
		t.Errorf("broker saw %q", ev)
	}
	if got := api.loggedOut(); !slices.Equal(got, []string{"tok-alice"}) {
		t.Errorf("logged out %q, want [tok-alice]", got)
	}
	if strings.Contains(c.stdout.String(), "pushchat:") {
		t.Errorf("status lines on stdout:\n%s", c.stdout.String())
	}
}

func TestChatPipedDirect(t *testing.T) {
	// Piped input, sent as direct messages; the replies are awaited with
	// --linger; the --mqtt override and its tcp:// default are used.
	broker := newFakeBroker(t, "tok-alice")
	api := &fakeSessions{mqtt: []string{"192.0.2.1:1"}} // unreachable: --mqtt wins
	srv := httptest.NewServer(api)
	defer srv.Close()

	c := startChat(t, strings.NewReader("one\n\ntwo\r\n"), "--server", srv.URL, "--user", "alice", "--password", "secret123",
		"--direct", "alice", "--qos", "0", "--mqtt", broker.addr(), "--linger", "1s")
	if code := c.wait(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, c.stderr.String())
	}
	if got, want := c.stdout.String(), "[direct] alice: one\n[direct] alice: two\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	ev := broker.eventList()
	if i := slices.Index(ev, "subscribe /private/alice/#"); i < 0 || i > slices.Index(ev, "publish /private/alice alice: one") {
		t.Errorf("stdin was read before the subscription: %q", ev)
	}
	if len(api.loggedOut()) != 1 {
		t.Errorf("no logout")
	}
}

func TestChatFailures(t *testing.T) {
	broker := newFakeBroker(t, "tok-alice")
	api := &fakeSessions{mqtt: []string{broker.addr()}}
	srv := httptest.NewServer(api)
	defer srv.Close()

	c := startChat(t, strings.NewReader(""), "--server", srv.URL, "--user", "alice", "--password", "wrong")
	if code := c.wait(t); code != 1 || !strings.Contains(c.stderr.String(), "pushchat: login: unauthorized: bad id or password") {
		t.Errorf("bad password: exit %d, stderr %q", code, c.stderr.String())
	}

	broker.refuseSubscribe.Store(true)
	c = startChat(t, strings.NewReader("never sent\n"), "--server", srv.URL, "--user", "alice", "--password", "secret123", "--group", "g1")
	if code := c.wait(t); code != 1 || !strings.Contains(c.stderr.String(), "refused") {
		t.Errorf("refused subscription: exit %d, stderr %q", code, c.stderr.String())
	}
	if slices.ContainsFunc(broker.eventList(), func(e string) bool { return strings.HasPrefix(e, "publish") }) {
		t.Errorf("published after a refused subscription: %q", broker.eventList())
	}
	if len(api.loggedOut()) != 1 {
		t.Errorf("logged out %d times, want 1 (after the refused subscription)", len(api.loggedOut()))
	}
}
