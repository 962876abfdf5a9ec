package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/client"
)

// fakeAPI answers the few endpoints pushctl's tests use, the way the API
// contract says, and records the last request. It is a fixture for
// argument parsing and output formatting, not a model of the server.
type fakeAPI struct {
	mu   sync.Mutex
	last struct {
		method, path, auth string
		body               map[string]any
	}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	f.last.method, f.last.path, f.last.auth, f.last.body = r.Method, r.URL.Path, r.Header.Get("Authorization"), body
	f.mu.Unlock()

	reply := func(status int, v string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, v)
	}
	admin := r.Header.Get("Authorization") == "Bearer adm"
	switch route := r.Method + " " + r.URL.Path; {
	case strings.HasPrefix(route, "POST /v1/users") && strings.HasSuffix(route, "/messages"),
		route == "POST /v1/groups/g1/messages":
		reply(202, `{"id":"00ab00cd00ef0001"}`)
	case route == "POST /v1/users" && !admin:
		reply(401, `{"error":{"code":"unauthorized","message":"admin key required"}}`)
	case route == "POST /v1/users" && body["id"] == "taken":
		reply(409, `{"error":{"code":"exists","message":"principal taken exists"}}`)
	case route == "POST /v1/users":
		reply(201, `{"id":"`+body["id"].(string)+`"}`)
	case route == "POST /v1/devices":
		reply(201, `{"id":"`+body["id"].(string)+`","key":"k3y"}`)
	case route == "POST /v1/sessions":
		reply(201, `{"token":"tok123","expires_at":"2030-01-02T03:04:05Z","private_topic":"/private/alice","mqtt":["10.0.0.1:1883","10.0.0.2:1883"]}`)
	case route == "GET /v1/sessions/current":
		reply(200, `{"id":"alice","kind":"user","expires_at":"2030-01-02T03:04:05Z","private_topic":"/private/alice"}`)
	case route == "DELETE /v1/sessions/current":
		w.WriteHeader(204)
	case route == "POST /v1/groups":
		reply(201, `{"id":"g1","members_can_publish":true}`)
	case route == "GET /v1/groups/g1":
		reply(200, `{"id":"g1","members_can_publish":true,"members":["alice","bob"],"publishers":[{"id":"dev1"}]}`)
	case route == "PUT /v1/groups/g1/members/alice":
		w.WriteHeader(204)
	case route == "GET /v1/cluster":
		reply(200, `{"self":{"id":"n1"},"nodes":[{"id":"n1","mqtt":["127.0.0.1:1883"],"http":"127.0.0.1:8080","state":"alive","ring_share":1,"version":"dev"}]}`)
	case route == "GET /v1/route/alice":
		reply(200, `{"id":"alice","node":{"id":"n1","mqtt":["127.0.0.1:1883"],"http":"127.0.0.1:8080"}}`)
	case r.Method == "GET" && r.URL.Path == "/v1/route/bad":
		w.WriteHeader(502)
		io.WriteString(w, "<html>bad gateway</html>")
	default:
		reply(404, `{"error":{"code":"not_found","message":"no route `+route+`"}}`)
	}
}

// runCLI runs pushctl against srv with args and an environment.
func runCLI(t *testing.T, srv string, env map[string]string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "PUSHRING_SERVER" {
			return srv
		}
		return env[k]
	}
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb, getenv)
	return out.String(), errb.String(), code
}

func TestCommands(t *testing.T) {
	f := &fakeAPI{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	admin := map[string]string{"PUSHRING_ADMIN_KEY": "adm"}
	keyFile := filepath.Join(t.TempDir(), "admin.key")
	os.WriteFile(keyFile, []byte("adm\n"), 0o600)

	tests := []struct {
		name     string
		env      map[string]string
		stdin    string
		args     []string
		code     int
		stdout   string // exact, unless contains is set
		contains bool
		stderr   string // substring
		req      string // "METHOD path" of the last request
		auth     string
		body     map[string]any
	}{
		{name: "user create, flag after arg", env: admin, args: []string{"user", "create", "alice", "--password", "secret123"},
			stdout: "created user alice\n", req: "POST /v1/users", auth: "Bearer adm",
			body: map[string]any{"id": "alice", "password": "secret123"}},
		{name: "admin key file", args: []string{"--admin-key-file", keyFile, "user", "create", "bob", "--password=pw"},
			stdout: "created user bob\n", auth: "Bearer adm"},
		{name: "api error", env: admin, args: []string{"user", "create", "taken", "--password", "x"},
			code: 1, stderr: "error: exists: principal taken exists\n"},
		{name: "wrong admin key", args: []string{"user", "create", "a", "--password", "x", "--admin-key", "nope"},
			code: 1, stderr: "error: unauthorized: admin key required\n"},
		{name: "no admin key", args: []string{"user", "create", "a", "--password", "x"},
			code: 1, stderr: "needs the admin key"},
		{name: "missing password", env: admin, args: []string{"user", "create", "a"},
			code: 2, stderr: "--password is required"},
		{name: "too many args", env: admin, args: []string{"group", "show", "g1", "g2"},
			code: 2, stderr: `unexpected argument "g2"`},
		{name: "unknown command", args: []string{"frob"}, code: 2, stderr: `unknown command "frob"`},
		{name: "device create quiet", env: admin, args: []string{"device", "create", "dev1", "-q"},
			stdout: "k3y\n", body: map[string]any{"id": "dev1"}},
		{name: "device create", env: admin, args: []string{"device", "create", "dev1"},
			stdout: "id:  dev1\nkey: k3y\n", contains: true},
		{name: "group create", env: admin, args: []string{"group", "create", "g1", "--members-can-publish"},
			stdout: "created group g1 (members can publish: yes)\n",
			body:   map[string]any{"id": "g1", "members_can_publish": true}},
		{name: "add member", env: admin, args: []string{"group", "add-member", "g1", "alice"},
			stdout: "alice is now a member of g1\n", req: "PUT /v1/groups/g1/members/alice"},
		{name: "add member json on empty body", env: admin, args: []string{"--json", "group", "add-member", "g1", "alice"},
			stdout: "{}\n"},
		{name: "group show", env: admin, args: []string{"group", "show", "g1"},
			stdout: "group:                g1\nmembers can publish:  yes\nmembers (2):          alice, bob\npublishers (1):       dev1\n"},
		{name: "login quiet", args: []string{"login", "alice", "--password", "pw", "-q"}, stdout: "tok123\n",
			auth: "", body: map[string]any{"id": "alice", "password": "pw"}},
		{name: "login", args: []string{"login", "alice", "--password", "pw"},
			stdout: "private topic:  /private/alice\nmqtt:           10.0.0.1:1883, 10.0.0.2:1883\n", contains: true},
		{name: "login json", args: []string{"login", "alice", "--password", "pw", "--json"},
			stdout: `"token": "tok123"`, contains: true},
		{name: "whoami", args: []string{"whoami", "--token", "tok123"},
			stdout: "id:", contains: true, auth: "Bearer tok123", req: "GET /v1/sessions/current"},
		{name: "whoami without token", args: []string{"whoami"}, code: 1, stderr: "needs a session token"},
		{name: "logout", env: map[string]string{"PUSHRING_TOKEN": "tok123"}, args: []string{"logout"},
			stdout: "logged out\n", req: "DELETE /v1/sessions/current", auth: "Bearer tok123"},
		{name: "publish group as device", args: []string{"publish", "group", "g1", "hello", "world", "--qos", "1", "--device", "dev1", "--key", "k3y"},
			stdout: "accepted message 00ab00cd00ef0001\n", auth: "Basic ZGV2MTprM3k=",
			body: map[string]any{"payload": "hello world", "qos": float64(1)}},
		{name: "publish group retained at QoS 2", args: []string{"publish", "group", "g1", "state", "--qos", "2", "--retain", "--device", "dev1", "--key", "k3y"},
			stdout: "accepted message 00ab00cd00ef0001\n", req: "POST /v1/groups/g1/messages",
			body: map[string]any{"payload": "state", "qos": float64(2), "retain": true}},
		{name: "publish user base64 with token", env: map[string]string{"PUSHRING_TOKEN": "t", "PUSHRING_ADMIN_KEY": "adm"},
			args: []string{"publish", "user", "bob", "--base64", "AAEC"}, auth: "Bearer t",
			stdout: "accepted message 00ab00cd00ef0001\n", req: "POST /v1/users/bob/messages",
			body: map[string]any{"payload_base64": "AAEC"}},
		{name: "publish after --", env: admin, args: []string{"publish", "user", "bob", "--", "--qos", "is", "text"},
			stdout: "accepted message 00ab00cd00ef0001\n", body: map[string]any{"payload": "--qos is text"}},
		{name: "publish stdin", env: admin, stdin: "line1\nline2\n", args: []string{"publish", "group", "g1", "-"},
			stdout: "accepted message 00ab00cd00ef0001\n", body: map[string]any{"payload": "line1\nline2\n"}},
		{name: "publish bad base64", env: admin, args: []string{"publish", "group", "g1", "--base64", "!!"},
			code: 2, stderr: "not valid base64"},
		{name: "publish no text", env: admin, args: []string{"publish", "group", "g1"}, code: 2, stderr: "missing arguments"},
		{name: "route", args: []string{"route", "alice"}, stdout: "id:         alice\nhome node:  n1\nmqtt:       127.0.0.1:1883\nhttp:       127.0.0.1:8080\n"},
		{name: "route non-json error", args: []string{"route", "bad"}, code: 1, stderr: "error: bad_gateway: <html>bad gateway</html>\n"},
		{name: "cluster", args: []string{"cluster"},
			stdout: "1 node(s)\nID   STATE  RING    MQTT            HTTP            VERSION\nn1*  alive  100.0%  127.0.0.1:1883  127.0.0.1:8080  dev\n* the node that answered\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, srv.URL, tc.env, tc.stdin, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.code, stderr)
			}
			if tc.contains && !strings.Contains(stdout, tc.stdout) || !tc.contains && tc.stdout != "" && stdout != tc.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout, tc.stdout)
			}
			if !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr %q, want %q", stderr, tc.stderr)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if tc.req != "" && f.last.method+" "+f.last.path != tc.req {
				t.Errorf("request %s %s, want %s", f.last.method, f.last.path, tc.req)
			}
			if tc.auth != "" && f.last.auth != tc.auth {
				t.Errorf("Authorization %q, want %q", f.last.auth, tc.auth)
			}
			for k, v := range tc.body {
				if f.last.body[k] != v {
					t.Errorf("body[%s] = %#v, want %#v (body %v)", k, f.last.body[k], v, f.last.body)
				}
			}
		})
	}
}

func TestLoginQuietIsTheWholeOutput(t *testing.T) {
	// TOKEN=$(pushctl login alice --password … -q) must capture the token only.
	srv := httptest.NewServer(&fakeAPI{})
	defer srv.Close()
	stdout, stderr, code := runCLI(t, "", map[string]string{"PUSHRING_PASSWORD": "pw"}, "", "--server", srv.URL, "login", "-q", "alice")
	if code != 0 || stdout != "tok123\n" || stderr != "" {
		t.Fatalf("got %q %q %d", stdout, stderr, code)
	}
}

// A secret given as a flag still works, with one warning per flag on
// stderr that names the quiet way; from the environment it is silent.
func TestSecretFlagsWarn(t *testing.T) {
	srv := httptest.NewServer(&fakeAPI{})
	defer srv.Close()
	stdout, stderr, code := runCLI(t, srv.URL, nil, "", "--admin-key", "adm", "user", "create", "bob", "--password", "pw", "--admin-key", "adm")
	if code != 0 || stdout != "created user bob\n" {
		t.Fatalf("got %q %q %d", stdout, stderr, code)
	}
	want := "warning: --admin-key on the command line is readable by every local user; use PUSHRING_ADMIN_KEY or --admin-key-file instead\n" +
		"warning: --password on the command line is readable by every local user; use PUSHRING_PASSWORD instead\n"
	if stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	if strings.Contains(stderr, "adm\n") || strings.Contains(stderr, " pw") {
		t.Error("a secret was printed")
	}
	_, stderr, code = runCLI(t, srv.URL, map[string]string{"PUSHRING_ADMIN_KEY": "adm", "PUSHRING_PASSWORD": "pw"}, "", "user", "create", "bob")
	if code != 0 || stderr != "" {
		t.Errorf("from the environment: %q %d", stderr, code)
	}
}

func TestExpiry(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ts := client.Timestamp{Time: now.Add(90 * time.Minute)}
	if got, want := expiry(ts, now), "2030-01-01T01:30:00Z (in 1h30m0s)"; got != want {
		t.Errorf("expiry = %q, want %q", got, want)
	}
	if got := expiry(client.Timestamp{Time: now.Add(-time.Second)}, now); !strings.HasSuffix(got, "(expired)") {
		t.Errorf("expiry of past = %q", got)
	}
}

// gossip-key prints or writes a 32-byte base64 key, a new one each time,
// to a new file of mode 0600, and never overwrites one.
func TestGossipKey(t *testing.T) {
	decode := func(s string) []byte {
		t.Helper()
		k, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(s, "\n"))
		if err != nil || len(k) != 32 || !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
			t.Fatalf("key line %q: %d bytes, %v", s, len(k), err)
		}
		return k
	}
	out1, _, code := runCLI(t, "", nil, "", "gossip-key")
	out2, _, _ := runCLI(t, "", nil, "", "gossip-key")
	if code != 0 || bytes.Equal(decode(out1), decode(out2)) {
		t.Fatalf("exit %d, keys %q %q", code, out1, out2)
	}
	path := filepath.Join(t.TempDir(), "gossip.key")
	stdout, stderr, code := runCLI(t, "", nil, "", "gossip-key", "--out", path)
	if code != 0 || stdout != "wrote a new gossip key to "+path+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	b, _ := os.ReadFile(path)
	decode(string(b))
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", st.Mode(), err)
	}
	_, stderr, code = runCLI(t, "", nil, "", "gossip-key", "--out", path)
	if after, _ := os.ReadFile(path); code != 1 || !strings.Contains(stderr, "exists: not overwritten") || !bytes.Equal(after, b) {
		t.Errorf("second write: exit %d, stderr %q, file changed %v", code, stderr, !bytes.Equal(after, b))
	}
	if _, stderr, code = runCLI(t, "", nil, "", "gossip-key", "extra"); code != 2 {
		t.Errorf("stray argument: exit %d, %q", code, stderr)
	}
}
