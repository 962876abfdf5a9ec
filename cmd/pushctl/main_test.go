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
	"reflect"
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
		method, path, query, auth string
		body                      map[string]any
	}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	f.last.method, f.last.path, f.last.query, f.last.auth, f.last.body = r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), body
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
	case route == "GET /v1/users" && !admin:
		reply(401, `{"error":{"code":"unauthorized","message":"admin key required"}}`)
	case route == "GET /v1/users" && r.URL.Query().Get("cursor") == "loop":
		reply(200, `{"users":[],"next_cursor":"loop"}`)
	case route == "GET /v1/users" && r.URL.Query().Get("cursor") == "alice":
		reply(200, `{"users":[{"id":"bob","kind":"user","created":"2030-01-03T00:00:00Z"}],"next_cursor":""}`)
	case route == "GET /v1/users":
		reply(200, `{"users":[{"id":"alice","kind":"user","created":"2030-01-02T03:04:05Z"}],"next_cursor":"alice"}`)
	case route == "GET /v1/devices":
		reply(200, `{"devices":[{"id":"dev1","kind":"device","created":"2030-01-02T03:04:05Z"}],"next_cursor":""}`)
	case route == "GET /v1/groups":
		reply(200, `{"groups":[{"id":"g1","members_can_publish":true,"created":"2030-01-02T03:04:05Z"},`+
			`{"id":"group2","members_can_publish":false,"created":"2030-01-02T03:04:05Z"}],"next_cursor":""}`)
	case route == "GET /v1/users/alice":
		reply(200, `{"id":"alice","kind":"user","created":"2030-01-02T03:04:05Z"}`)
	case route == "GET /v1/devices/dev1":
		reply(200, `{"id":"dev1","kind":"device","created":"2030-01-02T03:04:05Z"}`)
	case route == "DELETE /v1/users/alice", route == "DELETE /v1/devices/dev1", route == "DELETE /v1/groups/g1":
		if !admin {
			reply(401, `{"error":{"code":"unauthorized","message":"admin key required"}}`)
			return
		}
		w.WriteHeader(204)
	case route == "PUT /v1/users/alice/password" && !admin && body["old_password"] != "old":
		reply(403, `{"error":{"code":"forbidden","message":"old_password is required and must be the current password"}}`)
	case route == "PUT /v1/users/alice/password":
		w.WriteHeader(204)
	case route == "POST /v1/devices/dev1/key":
		reply(200, `{"id":"dev1","key":"n3wk3y"}`)
	case route == "GET /v1/users/alice/groups":
		reply(200, `{"groups":[{"id":"g1","member":true,"publisher":false},{"id":"group2","member":true,"publisher":true}]}`)
	case route == "GET /v1/devices/dev1/groups":
		reply(200, `{"groups":[]}`)
	case route == "GET /v1/users/alice/sessions":
		reply(200, `{"sessions":[{"id":"0123456789abcdef","created":"2029-01-02T03:04:05Z","expires_at":"2030-01-02T03:04:05Z","current":true},`+
			`{"id":"fedcba9876543210","created":"2029-01-01T00:00:00Z","expires_at":"2000-01-01T00:00:00Z","current":false}]}`)
	case route == "DELETE /v1/users/alice/sessions":
		w.WriteHeader(204)
	case strings.HasPrefix(route, "POST /v1/webhooks") || strings.HasPrefix(route, "GET /v1/webhooks") ||
		strings.HasPrefix(route, "DELETE /v1/webhooks/"):
		switch {
		case !admin:
			reply(401, `{"error":{"code":"unauthorized","message":"admin key required"}}`)
		case route == "POST /v1/webhooks" && body["url"] == "ftp://x":
			reply(400, `{"error":{"code":"invalid_webhook","message":"url must be an http:// or https:// URL"}}`)
		case route == "POST /v1/webhooks":
			events, _ := json.Marshal(body["events"])
			if body["events"] == nil {
				events = []byte("[]")
			}
			url, _ := json.Marshal(body["url"])
			reply(201, `{"id":"wh01","url":`+string(url)+`,"events":`+string(events)+`,"secret":"whsec_s3cr3t","created":"2030-01-02T03:04:05Z"}`)
		case route == "GET /v1/webhooks":
			reply(200, `{"webhooks":[{"id":"wh01","url":"https://example.com/hook","events":[],"created":"2030-01-02T03:04:05Z"},`+
				`{"id":"wh02","url":"http://10.0.0.9/h","events":["refusal","session.connected"],"created":"2030-01-03T00:00:00Z"}]}`)
		case route == "DELETE /v1/webhooks/wh01":
			w.WriteHeader(204)
		default:
			reply(404, `{"error":{"code":"not_found","message":"no such webhook endpoint"}}`)
		}
	case route == "GET /v1/users/alice/presence":
		reply(200, `{"id":"alice","online":true,"nodes":["n1","n2"],"complete":true,"missing_nodes":[]}`)
	case route == "GET /v1/users/bob/presence":
		reply(200, `{"id":"bob","online":false,"nodes":[],"complete":false,"missing_nodes":["n2","n3"]}`)
	case route == "GET /v1/users/carol/presence" && admin:
		reply(403, `{"error":{"code":"forbidden","message":"forbidden"}}`)
	case route == "GET /v1/users/carol/presence":
		reply(200, `{"id":"carol","online":false,"nodes":[],"complete":true,"missing_nodes":[]}`)
	case route == "GET /v1/groups/g1/presence":
		reply(200, `{"id":"g1","online":["alice","bob"],"count":2,"truncated":false,"complete":true,"missing_nodes":[]}`)
	case route == "GET /v1/groups/group2/presence":
		reply(200, `{"id":"group2","online":[],"count":0,"truncated":false,"complete":true,"missing_nodes":[]}`)
	case route == "GET /v1/groups/big/presence":
		reply(200, `{"id":"big","online":["alice","bob"],"count":7,"truncated":true,"complete":false,"missing_nodes":["n3"]}`)
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
		query    string // its raw query, if not ""; "-" means none
		auth     string
		body     map[string]any
		noMore   bool // stderr has no "more:" line
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

		// Lists.
		{name: "user list", env: admin, args: []string{"user", "list"},
			stdout: "alice  2030-01-02T03:04:05Z\n", stderr: "more: --cursor alice\n",
			req: "GET /v1/users", query: "-", auth: "Bearer adm"},
		{name: "user list prefix limit quiet", env: admin, args: []string{"user", "list", "--prefix", "al", "--limit", "1", "-q"},
			stdout: "alice\n", stderr: "more: --cursor alice\n", query: "limit=1&prefix=al"},
		{name: "user list next page", env: admin, args: []string{"user", "list", "--cursor=alice"},
			stdout: "bob  2030-01-03T00:00:00Z\n", query: "cursor=alice", noMore: true},
		{name: "user list all", env: admin, args: []string{"user", "list", "--all", "-q", "--limit", "1"},
			stdout: "alice\nbob\n", query: "cursor=alice&limit=1", noMore: true},
		{name: "user list all json", env: admin, args: []string{"--json", "user", "list", "--all"},
			stdout: "{\n  \"next_cursor\": \"\",\n  \"users\": [\n    {\n      \"id\": \"alice\",\n      \"kind\": \"user\",\n      \"created\": \"2030-01-02T03:04:05Z\"\n    },\n" +
				"    {\n      \"id\": \"bob\",\n      \"kind\": \"user\",\n      \"created\": \"2030-01-03T00:00:00Z\"\n    }\n  ]\n}\n",
			noMore: true},
		{name: "user list one page json", env: admin, args: []string{"user", "list", "--json"},
			stdout: `"next_cursor": "alice"`, contains: true, stderr: "more: --cursor alice\n"},
		{name: "user list cursor loop", env: admin, args: []string{"user", "list", "--all", "--cursor", "loop"},
			code: 1, stderr: "with itself as the next one"},
		{name: "user list needs admin", args: []string{"user", "list"}, code: 1, stderr: "needs the admin key"},
		{name: "user list limit 0", env: admin, args: []string{"user", "list", "--limit", "0"}, code: 2, stderr: "--limit must be 1 to 500"},
		{name: "user list limit 501", env: admin, args: []string{"user", "list", "--limit=501"}, code: 2, stderr: "--limit must be 1 to 500"},
		{name: "user list stray argument", env: admin, args: []string{"user", "list", "alice"}, code: 2, stderr: `unexpected argument "alice"`},
		{name: "device list", env: admin, args: []string{"device", "list"},
			stdout: "dev1  2030-01-02T03:04:05Z\n", req: "GET /v1/devices", noMore: true},
		{name: "group list", env: admin, args: []string{"group", "list", "--prefix", "g"},
			stdout: "g1      2030-01-02T03:04:05Z  members can publish\ngroup2  2030-01-02T03:04:05Z\n",
			req:    "GET /v1/groups", query: "prefix=g", noMore: true},
		// Show.
		{name: "user show", env: admin, args: []string{"user", "show", "alice"},
			stdout: "id:       alice\nkind:     user\ncreated:  2030-01-02T03:04:05Z\n", req: "GET /v1/users/alice", auth: "Bearer adm"},
		{name: "user show as the user", env: admin, args: []string{"user", "show", "alice", "--token", "tok123"},
			stdout: "id:       alice\n", contains: true, auth: "Bearer tok123"},
		{name: "device show as the device", args: []string{"device", "show", "dev1", "--device", "dev1", "--key", "k3y"},
			stdout: "id:       dev1\nkind:     device\ncreated:  2030-01-02T03:04:05Z\n", req: "GET /v1/devices/dev1", auth: "Basic ZGV2MTprM3k="},
		{name: "user show json", env: admin, args: []string{"user", "show", "alice", "--json"},
			stdout: "{\n  \"id\": \"alice\",\n  \"kind\": \"user\",\n  \"created\": \"2030-01-02T03:04:05Z\"\n}\n"},
		{name: "user show not found", env: admin, args: []string{"user", "show", "ghost"}, code: 1, stderr: "error: not_found: "},
		{name: "user show no credential", args: []string{"user", "show", "alice"}, code: 1, stderr: "or the user's own --token"},
		{name: "device show missing id", env: admin, args: []string{"device", "show"}, code: 2, stderr: "usage: pushctl device show <id>"},
		// Delete.
		{name: "user delete", env: admin, args: []string{"user", "delete", "alice"},
			stdout: "deleted user alice\n", req: "DELETE /v1/users/alice", auth: "Bearer adm"},
		{name: "device delete", env: admin, args: []string{"device", "delete", "dev1"},
			stdout: "deleted device dev1\n", req: "DELETE /v1/devices/dev1"},
		{name: "group delete", env: admin, args: []string{"group", "delete", "g1"},
			stdout: "deleted group g1\n", req: "DELETE /v1/groups/g1"},
		{name: "group delete json", env: admin, args: []string{"group", "delete", "g1", "--json"}, stdout: "{}\n"},
		{name: "user delete not found", env: admin, args: []string{"user", "delete", "ghost"}, code: 1, stderr: "error: not_found: "},
		{name: "user delete needs admin", args: []string{"user", "delete", "alice", "--token", "tok123"}, code: 1, stderr: "needs the admin key"},
		{name: "group delete two ids", env: admin, args: []string{"group", "delete", "g1", "g2"}, code: 2, stderr: `unexpected argument "g2"`},
		// Password.
		{name: "password by admin from env", env: map[string]string{"PUSHRING_ADMIN_KEY": "adm", "PUSHRING_PASSWORD": "n3w-pass"},
			args: []string{"user", "password", "alice"}, stdout: "changed the password of alice\n",
			req: "PUT /v1/users/alice/password", auth: "Bearer adm",
			body: map[string]any{"password": "n3w-pass", "revoke_sessions": false, "old_password": nil}},
		{name: "password by admin from stdin, revoke", env: admin, stdin: "n3w pass\r\n",
			args: []string{"user", "password", "--revoke-sessions", "alice"}, stdout: "changed the password of alice and ended all its login sessions\n",
			body: map[string]any{"password": "n3w pass", "revoke_sessions": true, "old_password": nil}},
		{name: "password by the user from stdin", env: map[string]string{"PUSHRING_TOKEN": "tok123", "PUSHRING_ADMIN_KEY": "adm"}, stdin: "n3w\nold\n",
			args: []string{"user", "password", "alice", "--revoke-sessions"}, stdout: "changed the password of alice and ended its other login sessions\n",
			auth: "Bearer tok123", body: map[string]any{"password": "n3w", "old_password": "old", "revoke_sessions": true}},
		{name: "password by the user, new from env, old from stdin", env: map[string]string{"PUSHRING_TOKEN": "tok123", "PUSHRING_PASSWORD": "n3w"}, stdin: "old",
			args: []string{"user", "password", "alice"}, stdout: "changed the password of alice\n",
			body: map[string]any{"password": "n3w", "old_password": "old"}},
		{name: "password by the user from env", env: map[string]string{"PUSHRING_TOKEN": "tok123", "PUSHRING_PASSWORD": "n3w", "PUSHRING_OLD_PASSWORD": "old"},
			stdin: "ignored\n", args: []string{"user", "password", "alice"}, stdout: "changed the password of alice\n",
			body: map[string]any{"password": "n3w", "old_password": "old"}},
		{name: "password wrong old", env: map[string]string{"PUSHRING_TOKEN": "tok123"}, stdin: "n3w\nwrong\n",
			args: []string{"user", "password", "alice"}, code: 1, stderr: "error: forbidden: old_password"},
		{name: "password by the user without old", env: map[string]string{"PUSHRING_TOKEN": "tok123"}, stdin: "n3w\n",
			args: []string{"user", "password", "alice"}, code: 2, stderr: "no old password"},
		{name: "password missing", env: admin, args: []string{"user", "password", "alice"}, code: 2, stderr: "no new password"},
		{name: "password not as a flag", env: admin, args: []string{"user", "password", "alice", "--password", "x"},
			code: 2, stderr: "flag provided but not defined: -password"},
		{name: "password no credential", stdin: "n3w\n", args: []string{"user", "password", "alice"}, code: 1, stderr: "needs the admin key"},
		// Keys, groups, sessions.
		{name: "rotate key quiet", env: admin, args: []string{"device", "rotate-key", "dev1", "-q"},
			stdout: "n3wk3y\n", req: "POST /v1/devices/dev1/key", auth: "Bearer adm"},
		{name: "rotate key", env: admin, args: []string{"device", "rotate-key", "dev1"},
			stdout: "id:  dev1\nkey: n3wk3y\n", contains: true},
		{name: "rotate key needs admin", args: []string{"device", "rotate-key", "dev1", "--device", "dev1", "--key", "k3y"},
			code: 1, stderr: "needs the admin key"},
		{name: "user groups", env: admin, args: []string{"user", "groups", "alice"},
			stdout: "2 group(s)\nGROUP   MEMBER  PUBLISHER\ng1      yes     no\ngroup2  yes     yes\n", req: "GET /v1/users/alice/groups"},
		{name: "device groups", env: admin, args: []string{"device", "groups", "dev1"}, stdout: "0 group(s)\n", req: "GET /v1/devices/dev1/groups"},
		{name: "device groups json", env: admin, args: []string{"device", "groups", "dev1", "--json"}, stdout: "{\n  \"groups\": []\n}\n"},
		{name: "user sessions", env: map[string]string{"PUSHRING_TOKEN": "tok123"}, args: []string{"user", "sessions", "alice"},
			stdout:   "2 login session(s)\nID                 CREATED               EXPIRES\n0123456789abcdef*  2029-01-02T03:04:05Z  2030-01-02T03:04:05Z (in ",
			contains: true, req: "GET /v1/users/alice/sessions", auth: "Bearer tok123"},
		{name: "user sessions expired and footnote", env: admin, args: []string{"user", "sessions", "alice"},
			stdout: "fedcba9876543210   2029-01-01T00:00:00Z  2000-01-01T00:00:00Z (expired)\n* the session of --token\n", contains: true},
		{name: "user revoke-sessions", env: admin, args: []string{"user", "revoke-sessions", "alice"},
			stdout: "ended every login session of alice\n", req: "DELETE /v1/users/alice/sessions", auth: "Bearer adm"},
		{name: "user revoke-sessions missing id", env: admin, args: []string{"user", "revoke-sessions"}, code: 2, stderr: "missing arguments"},
		// Webhooks.
		{name: "webhook add", env: admin, args: []string{"webhook", "add", "https://example.com/hook"},
			stdout: "id:      wh01\nurl:     https://example.com/hook\nevents:  all\nsecret:  whsec_s3cr3t\n" +
				"(the secret is shown only once: store it now; it signs every request, X-Pushring-Signature)\n",
			req: "POST /v1/webhooks", auth: "Bearer adm", body: map[string]any{"url": "https://example.com/hook", "events": nil}},
		{name: "webhook add events quiet", env: admin,
			args:   []string{"webhook", "add", "--event", "session.connected", "http://10.0.0.9/h", "--event=refusal", "-q"},
			stdout: "whsec_s3cr3t\n", req: "POST /v1/webhooks",
			body: map[string]any{"url": "http://10.0.0.9/h", "events": []any{"session.connected", "refusal"}}},
		{name: "webhook add events shown", env: admin, args: []string{"webhook", "add", "http://h/", "--event", "refusal", "--event", "message.offline"},
			stdout: "events:  refusal,message.offline\n", contains: true},
		{name: "webhook add json", env: admin, args: []string{"--json", "webhook", "add", "http://h/"},
			stdout: `"secret": "whsec_s3cr3t"`, contains: true},
		{name: "webhook add invalid", env: admin, args: []string{"webhook", "add", "ftp://x"},
			code: 1, stderr: "error: invalid_webhook: url must be"},
		{name: "webhook add needs admin", args: []string{"webhook", "add", "http://h/", "--token", "tok123"},
			code: 1, stderr: "needs the admin key"},
		{name: "webhook add missing url", env: admin, args: []string{"webhook", "add", "--event", "refusal"},
			code: 2, stderr: "missing arguments\nusage: pushctl webhook add <url> [--event T]... [-q]\n"},
		{name: "webhook add two urls", env: admin, args: []string{"webhook", "add", "http://a/", "http://b/"},
			code: 2, stderr: `unexpected argument "http://b/"`},
		{name: "webhook add empty event", env: admin, args: []string{"webhook", "add", "http://a/", "--event", ""},
			code: 2, stderr: "empty event type"},
		{name: "webhook add event without value", env: admin, args: []string{"webhook", "add", "http://a/", "--event"},
			code: 2, stderr: "flag needs an argument"},
		{name: "webhook list", env: admin, args: []string{"webhook", "list"},
			stdout: "wh01  2030-01-02T03:04:05Z  https://example.com/hook  all\nwh02  2030-01-03T00:00:00Z  http://10.0.0.9/h         refusal,session.connected\n",
			req:    "GET /v1/webhooks", auth: "Bearer adm"},
		{name: "webhook list quiet", env: admin, args: []string{"webhook", "list", "-q"}, stdout: "wh01\nwh02\n"},
		{name: "webhook list json", env: admin, args: []string{"webhook", "list", "--json"}, stdout: `"id": "wh02"`, contains: true},
		{name: "webhook list needs admin", args: []string{"webhook", "list"}, code: 1, stderr: "needs the admin key"},
		{name: "webhook list stray argument", env: admin, args: []string{"webhook", "list", "wh01"}, code: 2, stderr: `unexpected argument "wh01"`},
		{name: "webhook delete", env: admin, args: []string{"webhook", "delete", "wh01"},
			stdout: "deleted webhook wh01\n", req: "DELETE /v1/webhooks/wh01", auth: "Bearer adm"},
		{name: "webhook delete json", env: admin, args: []string{"webhook", "delete", "wh01", "--json"}, stdout: "{}\n"},
		{name: "webhook delete not found", env: admin, args: []string{"webhook", "delete", "wh99"}, code: 1, stderr: "error: not_found: "},
		{name: "webhook delete missing id", env: admin, args: []string{"webhook", "delete"}, code: 2, stderr: "usage: pushctl webhook delete <id>"},
		{name: "webhook unknown subcommand", env: admin, args: []string{"webhook", "show", "wh01"}, code: 2, stderr: `unknown command "webhook show"`},
		// Presence.
		{name: "user presence online", env: admin, args: []string{"user", "presence", "alice"},
			stdout: "alice is online, connected to n1, n2\n", req: "GET /v1/users/alice/presence", auth: "Bearer adm"},
		{name: "user presence offline incomplete", env: admin, args: []string{"user", "presence", "bob"},
			stdout: "bob is offline\nincomplete: n2, n3 did not answer (clients connected there are not counted)\n"},
		{name: "user presence as a user", args: []string{"user", "presence", "carol", "--token", "tok123"},
			stdout: "carol is offline\n", auth: "Bearer tok123"},
		{name: "user presence as a device", args: []string{"user", "presence", "carol", "--device", "dev1", "--key", "k3y"},
			stdout: "carol is offline\n", auth: "Basic ZGV2MTprM3k="},
		{name: "user presence forbidden", env: admin, args: []string{"user", "presence", "carol"}, code: 1, stderr: "error: forbidden: "},
		{name: "user presence json", env: admin, args: []string{"user", "presence", "alice", "--json"},
			stdout: "{\n  \"id\": \"alice\",\n  \"online\": true,\n  \"nodes\": [\n    \"n1\",\n    \"n2\"\n  ],\n  \"complete\": true,\n  \"missing_nodes\": []\n}\n"},
		{name: "user presence missing id", env: admin, args: []string{"user", "presence"}, code: 2, stderr: "usage: pushctl user presence <id>"},
		{name: "group presence", env: map[string]string{"PUSHRING_TOKEN": "tok123"}, args: []string{"group", "presence", "g1"},
			stdout: "alice\nbob\n2 member(s) online\n", req: "GET /v1/groups/g1/presence", auth: "Bearer tok123"},
		{name: "group presence none", env: admin, args: []string{"group", "presence", "group2"}, stdout: "0 member(s) online\n"},
		{name: "group presence truncated incomplete", env: admin, args: []string{"group", "presence", "big"},
			stdout: "alice\nbob\n7 member(s) online, 2 listed (truncated: a node had more than it lists; a member connected to two nodes counts twice)\n" +
				"incomplete: n3 did not answer (clients connected there are not counted)\n"},
		{name: "group presence json", env: admin, args: []string{"group", "presence", "g1", "--json"}, stdout: `"count": 2`, contains: true},
		{name: "group presence not found", env: admin, args: []string{"group", "presence", "g9"}, code: 1, stderr: "error: not_found: "},
		{name: "group presence two gids", env: admin, args: []string{"group", "presence", "g1", "g2"}, code: 2, stderr: `unexpected argument "g2"`},
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
			if q := strings.TrimPrefix(tc.query, "-"); tc.query != "" && f.last.query != q {
				t.Errorf("query %q, want %q", f.last.query, q)
			}
			if tc.noMore && strings.Contains(stderr, "more:") {
				t.Errorf("stderr %q has a more: line", stderr)
			}
			if tc.auth != "" && f.last.auth != tc.auth {
				t.Errorf("Authorization %q, want %q", f.last.auth, tc.auth)
			}
			for k, v := range tc.body {
				if !reflect.DeepEqual(f.last.body[k], v) {
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
