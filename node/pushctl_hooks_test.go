package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/webhook"
)

// hookRequest is one request a webhook receiver got, as it came.
type hookRequest struct {
	path                         string
	event, id, timestamp, signed string
	body                         []byte
}

// hookLog records every request, unchecked: the test learns the secrets
// from pushctl's output and checks the signatures afterwards.
type hookLog struct {
	mu   sync.Mutex
	reqs []hookRequest
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.reqs = append(h.reqs, hookRequest{path: r.URL.Path, event: r.Header.Get("X-Pushring-Event"), id: r.Header.Get("X-Pushring-Id"),
		timestamp: r.Header.Get("X-Pushring-Timestamp"), signed: r.Header.Get("X-Pushring-Signature"), body: body})
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// events returns the events POSTed to path whose signature secret
// verifies and whose data names principal, as "type" strings in arrival
// order; bad counts those to path that do not verify.
func (h *hookLog) events(path, secret, principal string) (types []string, bad int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.reqs {
		if r.path != path {
			continue
		}
		var ev webhook.Event
		if !webhook.Verify(secret, r.timestamp, r.signed, r.body, time.Now(), time.Minute) || json.Unmarshal(r.body, &ev) != nil ||
			ev.Type != r.event || ev.ID != r.id {
			bad++
			continue
		}
		if d, ok := ev.Data.(map[string]any); ok && d["principal"] == principal {
			types = append(types, ev.Type)
		}
	}
	return types, bad
}

// TestPushctlHooks runs the webhook and presence commands of the real
// pushctl against a node: a webhook added with pushctl gets signed
// session events (checked with the secret pushctl printed), is listed
// without its secret and, deleted, gets no more; presence says offline,
// then online at n1 while alice is connected over MQTT, and the group
// lists her.
func TestPushctlHooks(t *testing.T) {
	bin := buildTools(t)
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.Webhooks.Backoff = 20 * time.Millisecond
		c.Webhooks.AllowPrivate = true // the receiver is on loopback
	})
	defer n.Close()
	env := append(os.Environ(), "PUSHRING_SERVER=http://"+n.HTTPAddr(), "PUSHRING_ADMIN_KEY="+n.AdminKey())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	run := func(extra []string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		return runPushctl(t, ctx, bin, append(env[:len(env):len(env)], extra...), "", args...)
	}
	ok := func(extra []string, args ...string) string {
		t.Helper()
		out, errs, code := run(extra, args...)
		if code != 0 || errs != "" {
			t.Fatalf("pushctl %v: exit %d\n%s\n%s", args, code, out, errs)
		}
		return out
	}
	pushctl := func(args ...string) string { t.Helper(); return ok(nil, args...) }
	fails := func(extra []string, errCode string, args ...string) {
		t.Helper()
		out, errs, code := run(extra, args...)
		if code != 1 || !strings.HasPrefix(errs, "error: "+errCode) {
			t.Fatalf("pushctl %v: exit %d, stderr %q (want exit 1, %s)\n%s", args, code, errs, errCode, out)
		}
	}
	asUser := func(token string) []string { return []string{"PUSHRING_TOKEN=" + token, "PUSHRING_ADMIN_KEY="} }
	login := func(id string) string {
		t.Helper()
		return ok([]string{"PUSHRING_PASSWORD=" + passwordOf(id)}, "login", id, "-q")
	}

	// alice and bob share home; carol shares nothing.
	for _, id := range []string{"alice", "bob", "carol"} {
		ok([]string{"PUSHRING_PASSWORD=" + passwordOf(id)}, "user", "create", id)
	}
	pushctl("group", "create", "home")
	pushctl("group", "add-member", "home", "alice")
	pushctl("group", "add-member", "home", "bob")
	aliceTok, bobTok, carolTok := login("alice"), login("bob"), login("carol")

	// Two webhooks on one receiver: /hook takes the session events,
	// /all (added with -q: the secret only) every event.
	recv := &hookLog{}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	out := pushctl("webhook", "add", srv.URL+"/hook", "--event", "session.connected", "--event=session.disconnected")
	m := regexp.MustCompile(`^id: +(wh\S+)\nurl: +(\S+)\nevents: +(\S+)\nsecret: +(\S+)\n\(the secret is shown only once`).FindStringSubmatch(out)
	if m == nil || m[2] != srv.URL+"/hook" || m[3] != "session.connected,session.disconnected" {
		t.Fatalf("webhook add: %q", out)
	}
	hookID, hookSecret := m[1], m[4]
	allSecret := pushctl("webhook", "add", srv.URL+"/all", "-q")
	if !strings.HasPrefix(allSecret, "whsec_") || strings.ContainsAny(allSecret, " \n") || allSecret == hookSecret {
		t.Fatalf("webhook add -q: %q", allSecret)
	}
	fails(nil, "invalid_webhook", "webhook", "add", "ftp://example.com/")
	fails(nil, "invalid_webhook", "webhook", "add", srv.URL, "--event", "session.nope")
	fails(asUser(aliceTok), "missing credentials", "webhook", "list")

	// list: both, never a secret.
	out = pushctl("webhook", "list")
	hookLine := regexp.MustCompile(`(?m)^` + hookID + ` +\d{4}-\d\d-\d\dT\S+ +` + regexp.QuoteMeta(srv.URL+"/hook") + ` +session\.connected,session\.disconnected$`)
	allLine := regexp.MustCompile(`(?m)^wh\S+ +\d{4}-\d\d-\d\dT\S+ +` + regexp.QuoteMeta(srv.URL+"/all") + ` +all$`)
	if strings.Count(out, "\n") != 1 || strings.Contains(out, "whsec_") || !hookLine.MatchString(out) || !allLine.MatchString(out) {
		t.Fatalf("webhook list: %q", out)
	}
	var list struct {
		Webhooks []map[string]any `json:"webhooks"`
	}
	if err := json.Unmarshal([]byte(pushctl("webhook", "list", "--json")), &list); err != nil || len(list.Webhooks) != 2 {
		t.Fatalf("webhook list --json: %+v %v", list, err)
	}
	for _, h := range list.Webhooks {
		if _, has := h["secret"]; has {
			t.Fatalf("webhook list --json shows a secret: %v", h)
		}
	}

	// Presence: offline; online at n1 while connected; offline again.
	if out := pushctl("user", "presence", "alice"); out != "alice is offline" {
		t.Fatalf("user presence before the connect: %q", out)
	}
	if out := pushctl("group", "presence", "home"); out != "0 member(s) online" {
		t.Fatalf("group presence before the connect: %q", out)
	}
	alice := connect(t, n, clientOpts{user: "alice", password: aliceTok}, nil)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if out := pushctl("user", "presence", "alice"); out != "alice is online, connected to n1" {
			return fmt.Errorf("user presence while connected: %q", out)
		}
		return nil
	})
	if out := ok(asUser(bobTok), "user", "presence", "alice"); out != "alice is online, connected to n1" {
		t.Fatalf("user presence as bob, who shares home with her: %q", out)
	}
	fails(asUser(carolTok), "forbidden", "user", "presence", "alice")
	if out := pushctl("group", "presence", "home"); out != "alice\n1 member(s) online" {
		t.Fatalf("group presence while alice is connected: %q", out)
	}
	if out := ok(asUser(aliceTok), "group", "presence", "home"); out != "alice\n1 member(s) online" {
		t.Fatalf("group presence as alice: %q", out)
	}
	fails(asUser(carolTok), "forbidden", "group", "presence", "home")
	var up struct {
		ID       string   `json:"id"`
		Online   bool     `json:"online"`
		Nodes    []string `json:"nodes"`
		Complete bool     `json:"complete"`
	}
	if err := json.Unmarshal([]byte(pushctl("user", "presence", "alice", "--json")), &up); err != nil ||
		up.ID != "alice" || !up.Online || strings.Join(up.Nodes, ",") != "n1" || !up.Complete {
		t.Fatalf("user presence --json: %+v %v", up, err)
	}
	alice.Disconnect(100)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if out := pushctl("user", "presence", "alice"); out != "alice is offline" {
			return fmt.Errorf("user presence after the disconnect: %q", out)
		}
		return nil
	})

	// The receiver got alice's connect and disconnect, signed with the
	// secret webhook add printed (and not with the other one's).
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		types, bad := recv.events("/hook", hookSecret, "alice")
		if bad != 0 {
			return fmt.Errorf("%d requests to /hook not signed with its secret", bad)
		}
		if strings.Join(types, " ") != "session.connected session.disconnected" {
			return fmt.Errorf("alice's events at /hook: %q", types)
		}
		if all, bad := recv.events("/all", allSecret, "alice"); bad != 0 || len(all) < 2 {
			return fmt.Errorf("alice's events at /all: %q, %d badly signed", all, bad)
		}
		return nil
	})
	if types, _ := recv.events("/hook", allSecret, "alice"); len(types) != 0 {
		t.Fatalf("/hook's events verify with the other webhook's secret")
	}

	// delete: /hook gets nothing more (/all, kept, shows the events went
	// out), and the list forgets it.
	if out := pushctl("webhook", "delete", hookID); out != "deleted webhook "+hookID {
		t.Fatalf("webhook delete: %q", out)
	}
	fails(nil, "not_found", "webhook", "delete", hookID)
	if out := pushctl("webhook", "list", "-q"); strings.Contains(out, hookID) || strings.Count(out, "\n") != 0 || out == "" {
		t.Fatalf("webhook list after the delete: %q", out)
	}
	before, _ := recv.events("/all", allSecret, "alice")
	connect(t, n, clientOpts{user: "alice", password: aliceTok}, nil).Disconnect(100)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if all, _ := recv.events("/all", allSecret, "alice"); len(all) < len(before)+2 {
			return fmt.Errorf("alice's second session at /all: %q", all[len(before):])
		}
		return nil
	})
	if types, _ := recv.events("/hook", hookSecret, "alice"); len(types) != 2 {
		t.Fatalf("events at /hook after its delete: %q", types)
	}
	pushctl("webhook", "delete", pushctl("webhook", "list", "-q"))
	if out := pushctl("webhook", "list"); out != "" {
		t.Fatalf("webhook list after deleting both: %q", out)
	}

	// Usage errors exit 2.
	for _, args := range [][]string{
		{"webhook", "add"},
		{"webhook", "add", srv.URL, "--event"},
		{"webhook", "delete"},
		{"webhook", "list", "extra"},
		{"user", "presence"},
		{"group", "presence", "home", "hall"},
	} {
		if _, errs, code := run(nil, args...); code != 2 {
			t.Fatalf("pushctl %v: exit %d, %q; want 2", args, code, errs)
		}
	}
}
