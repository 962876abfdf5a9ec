package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// TestPushctlAdmin runs the admin commands of the real pushctl against a
// node: lists with their pages, show, groups, sessions, password changes,
// key rotation and deletes, and checks their effects through pushctl and
// the API.
func TestPushctlAdmin(t *testing.T) {
	bin := buildTools(t)
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	api := newAPI(t, n)
	admin := "Bearer " + n.AdminKey()
	env := append(os.Environ(), "PUSHRING_SERVER=http://"+n.HTTPAddr(), "PUSHRING_ADMIN_KEY="+n.AdminKey())
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// run runs pushctl with extra environment and stdin; it returns its
	// stdout and stderr (trimmed) and its exit status.
	run := func(extra []string, stdin string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		return runPushctl(t, ctx, bin, append(env[:len(env):len(env)], extra...), stdin, args...)
	}
	// ok wants exit 0 and nothing on stderr, and returns stdout.
	ok := func(extra []string, stdin string, args ...string) string {
		t.Helper()
		out, errs, code := run(extra, stdin, args...)
		if code != 0 || errs != "" {
			t.Fatalf("pushctl %v: exit %d\n%s\n%s", args, code, out, errs)
		}
		return out
	}
	pushctl := func(args ...string) string { t.Helper(); return ok(nil, "", args...) }
	// fails wants exit 1 with the API error code on stderr.
	fails := func(extra []string, errCode string, args ...string) {
		t.Helper()
		out, errs, code := run(extra, "", args...)
		if code != 1 || !strings.HasPrefix(errs, "error: "+errCode+": ") {
			t.Fatalf("pushctl %v: exit %d, stderr %q (want exit 1, %s)\n%s", args, code, errs, errCode, out)
		}
	}
	// asUser is the environment of a user's own calls: the token, no
	// admin key.
	asUser := func(token string, extra ...string) []string {
		return append([]string{"PUSHRING_TOKEN=" + token, "PUSHRING_ADMIN_KEY="}, extra...)
	}
	asDevice := func(id, key string) []string {
		return []string{"PUSHRING_DEVICE=" + id, "PUSHRING_DEVICE_KEY=" + key, "PUSHRING_ADMIN_KEY="}
	}
	login := func(id, password string) string {
		t.Helper()
		return ok([]string{"PUSHRING_PASSWORD=" + password}, "", "login", id, "-q")
	}
	unauthorized := func(token string) {
		t.Helper()
		fails(asUser(token), "unauthorized", "whoami")
	}

	// The cast: alice and bob; sensor1 publishes to home = {alice, bob};
	// hall = {alice}.
	ok([]string{"PUSHRING_PASSWORD=" + passwordOf("alice")}, "", "user", "create", "alice")
	ok([]string{"PUSHRING_PASSWORD=" + passwordOf("bob")}, "", "user", "create", "bob")
	key1 := pushctl("device", "create", "sensor1", "-q")
	pushctl("group", "create", "home", "--members-can-publish")
	pushctl("group", "create", "hall")
	pushctl("group", "add-member", "home", "alice")
	pushctl("group", "add-member", "home", "bob")
	pushctl("group", "add-publisher", "home", "sensor1")
	pushctl("group", "add-member", "hall", "alice")

	// Lists: a page at a time with --cursor, or --all.
	more := regexp.MustCompile(`^more: --cursor (\S+)$`)
	var paged []string
	args := []string{"user", "list", "--limit", "1", "-q"}
	for page := 0; ; page++ {
		if page > 3 {
			t.Fatalf("user list: still more pages after %v", paged)
		}
		out, errs, code := run(nil, "", args...)
		if code != 0 {
			t.Fatalf("pushctl %v: exit %d: %s", args, code, errs)
		}
		if out != "" {
			paged = append(paged, strings.Split(out, "\n")...)
		}
		if errs == "" {
			break
		}
		m := more.FindStringSubmatch(errs)
		if m == nil {
			t.Fatalf("pushctl %v: stderr %q", args, errs)
		}
		args = []string{"user", "list", "--limit", "1", "-q", "--cursor", m[1]}
	}
	if strings.Join(paged, " ") != "alice bob" {
		t.Fatalf("user list page by page: %q", paged)
	}
	if out := pushctl("user", "list", "--limit", "1", "--all", "-q"); out != "alice\nbob" {
		t.Fatalf("user list --all: %q", out)
	}
	if out := pushctl("user", "list", "--prefix", "b"); !regexp.MustCompile(`^bob +\d{4}-\d\d-\d\dT`).MatchString(out) || strings.Contains(out, "\n") {
		t.Fatalf("user list --prefix b: %q", out)
	}
	if out := pushctl("device", "list", "-q"); out != "sensor1" {
		t.Fatalf("device list: %q", out)
	}
	if out := pushctl("group", "list", "--all", "--limit", "1"); !regexp.MustCompile(`^hall +\S+\nhome +\S+ +members can publish$`).MatchString(out) {
		t.Fatalf("group list --all: %q", out)
	}
	var groups struct {
		Groups []struct {
			ID string `json:"id"`
		} `json:"groups"`
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal([]byte(pushctl("group", "list", "--all", "--limit", "1", "--json")), &groups); err != nil ||
		len(groups.Groups) != 2 || groups.Groups[1].ID != "home" || groups.NextCursor != "" {
		t.Fatalf("group list --all --json: %+v %v", groups, err)
	}
	if status := api.do("GET", "/v1/users", "Bearer "+login("bob", passwordOf("bob")), nil, nil); status != 403 {
		t.Fatalf("GET /v1/users as bob: %d, want 403", status)
	}

	// show, as the admin and as the principal itself.
	if out := pushctl("user", "show", "alice"); !regexp.MustCompile(`^id: +alice\nkind: +user\ncreated: +\d{4}-`).MatchString(out) {
		t.Fatalf("user show: %q", out)
	}
	if out := ok(asDevice("sensor1", key1), "", "device", "show", "sensor1"); !strings.Contains(out, "kind:     device") {
		t.Fatalf("device show as itself: %q", out)
	}
	fails(nil, "not_found", "device", "show", "alice") // a user is no device
	bobToken := login("bob", passwordOf("bob"))
	fails(asUser(bobToken), "forbidden", "user", "show", "alice")

	// groups.
	if out := pushctl("user", "groups", "alice"); out != "2 group(s)\nGROUP  MEMBER  PUBLISHER\nhall   yes     no\nhome   yes     no" {
		t.Fatalf("user groups: %q", out)
	}
	if out := ok(asDevice("sensor1", key1), "", "device", "groups", "sensor1"); out != "1 group(s)\nGROUP  MEMBER  PUBLISHER\nhome   no      yes" {
		t.Fatalf("device groups: %q", out)
	}

	// sessions: alice has two.
	t1 := login("alice", passwordOf("alice"))
	t2 := login("alice", passwordOf("alice"))
	out := ok(asUser(t1), "", "user", "sessions", "alice")
	if !strings.HasPrefix(out, "2 login session(s)\nID ") || strings.Count(out, "*") != 2 || !strings.HasSuffix(out, "* the session of --token") {
		t.Fatalf("user sessions as alice: %q", out)
	}
	var sessions struct {
		Sessions []struct {
			ID      string `json:"id"`
			Current bool   `json:"current"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(pushctl("user", "sessions", "alice", "--json")), &sessions); err != nil ||
		len(sessions.Sessions) != 2 || sessions.Sessions[0].Current || sessions.Sessions[0].ID == "" {
		t.Fatalf("user sessions --json: %+v %v", sessions, err)
	}

	// alice changes her password (new, then old, on stdin) and ends her
	// other sessions: t1 lives on, t2 is rejected, so is the old password.
	pw2 := "quartz-lantern-meadow-41"
	if out := ok(asUser(t1), pw2+"\n"+passwordOf("alice")+"\n", "user", "password", "alice", "--revoke-sessions"); out != "changed the password of alice and ended its other login sessions" {
		t.Fatalf("user password as alice: %q", out)
	}
	unauthorized(t2)
	if out := ok(asUser(t1), "", "whoami"); !strings.Contains(out, "alice") {
		t.Fatalf("whoami with the session that changed the password: %q", out)
	}
	fails([]string{"PUSHRING_PASSWORD=" + passwordOf("alice")}, "unauthorized", "login", "alice", "-q")
	t3 := login("alice", pw2)
	// A wrong old password is refused.
	_, errs, code := run(asUser(t1, "PUSHRING_PASSWORD=tundra-velvet-pylon-88", "PUSHRING_OLD_PASSWORD=wrong-old-password"), "", "user", "password", "alice")
	if code != 1 || !strings.HasPrefix(errs, "error: forbidden: ") {
		t.Fatalf("user password with a wrong old one: exit %d, %q", code, errs)
	}

	// The admin sets it (from the environment) and ends every session.
	pw3 := "harbor-pebble-cinder-57"
	if out := ok([]string{"PUSHRING_PASSWORD=" + pw3}, "", "user", "password", "alice", "--revoke-sessions"); out != "changed the password of alice and ended all its login sessions" {
		t.Fatalf("user password as admin: %q", out)
	}
	unauthorized(t1)
	unauthorized(t3)
	if out := pushctl("user", "sessions", "alice"); out != "0 login session(s)" {
		t.Fatalf("user sessions after the admin's change: %q", out)
	}
	t4 := login("alice", pw3)

	// revoke-sessions, by the user (its own token too) and by the admin.
	t5 := login("alice", pw3)
	if out := ok(asUser(t4), "", "user", "revoke-sessions", "alice"); out != "ended every login session of alice" {
		t.Fatalf("user revoke-sessions: %q", out)
	}
	unauthorized(t4)
	unauthorized(t5)
	t6 := login("alice", pw3)
	pushctl("user", "revoke-sessions", "alice")
	unauthorized(t6)

	// rotate-key: the old key stops working, the new one works.
	out = pushctl("device", "rotate-key", "sensor1")
	m := regexp.MustCompile(`(?m)^id: +sensor1\nkey: +(\S+)$`).FindStringSubmatch(out)
	if m == nil || m[1] == key1 {
		t.Fatalf("device rotate-key: %q", out)
	}
	key2 := m[1]
	fails(asDevice("sensor1", key1), "unauthorized", "publish", "group", "home", "with the old key")
	if out := ok(asDevice("sensor1", key2), "", "publish", "group", "home", "with the new key"); !strings.HasPrefix(out, "accepted message ") {
		t.Fatalf("publish with the new key: %q", out)
	}
	key3 := pushctl("device", "rotate-key", "sensor1", "-q")
	if key3 == key2 || strings.ContainsAny(key3, " \n") {
		t.Fatalf("device rotate-key -q: %q", key3)
	}
	fails(asDevice("sensor1", key2), "unauthorized", "device", "show", "sensor1")
	ok(asDevice("sensor1", key3), "", "device", "show", "sensor1")

	// Deletes: show fails with not_found, and the rest forgets them.
	bobMQTT := connect(t, n, clientOpts{user: "bob", password: login("bob", passwordOf("bob"))}, nil)
	if out := pushctl("user", "delete", "bob"); out != "deleted user bob" {
		t.Fatalf("user delete: %q", out)
	}
	fails(nil, "not_found", "user", "show", "bob")
	unauthorized(bobToken)
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if bobMQTT.IsConnectionOpen() {
			return fmt.Errorf("bob's MQTT connection is still open")
		}
		return nil
	})
	var home struct {
		Members    []string `json:"members"`
		Publishers []string `json:"publishers"`
	}
	api.must(200, "GET", "/v1/groups/home", admin, nil, &home)
	if strings.Join(home.Members, ",") != "alice" {
		t.Fatalf("home's members after bob's delete: %v", home.Members)
	}
	if out := pushctl("device", "delete", "sensor1"); out != "deleted device sensor1" {
		t.Fatalf("device delete: %q", out)
	}
	fails(nil, "not_found", "device", "show", "sensor1")
	fails(asDevice("sensor1", key3), "unauthorized", "publish", "group", "home", "deleted")
	if out := pushctl("device", "list"); out != "" {
		t.Fatalf("device list after the delete: %q", out)
	}
	if out := pushctl("group", "delete", "hall"); out != "deleted group hall" {
		t.Fatalf("group delete: %q", out)
	}
	fails(nil, "not_found", "group", "show", "hall")
	if status := api.do("GET", "/v1/groups/hall", admin, nil, nil); status != 404 {
		t.Fatalf("GET /v1/groups/hall after the delete: %d", status)
	}
	if out := pushctl("user", "groups", "alice"); out != "1 group(s)\nGROUP  MEMBER  PUBLISHER\nhome   yes     no" {
		t.Fatalf("user groups after the deletes: %q", out)
	}
	if out := pushctl("group", "list", "-q"); out != "home" {
		t.Fatalf("group list after the delete: %q", out)
	}
	if out := pushctl("user", "list", "--all", "-q"); out != "alice" {
		t.Fatalf("user list after the delete: %q", out)
	}
	fails(nil, "not_found", "user", "delete", "bob")

	// Usage errors exit 2 and send nothing.
	for _, args := range [][]string{
		{"user", "delete"},
		{"group", "delete", "home", "hall"},
		{"user", "list", "--limit", "501"},
		{"user", "password", "alice"}, // no new password anywhere
	} {
		if _, errs, code := run(nil, "", args...); code != 2 {
			t.Fatalf("pushctl %v: exit %d, %q; want 2", args, code, errs)
		}
	}
	if out := pushctl("group", "list", "-q"); out != "home" {
		t.Fatalf("group list after the usage errors: %q", out)
	}
}

// runPushctl runs pushctl from bin with env and stdin, and returns its
// stdout and stderr (trimmed) and its exit status.
func runPushctl(t *testing.T, ctx context.Context, bin string, env []string, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pushctl"), args...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("pushctl %v: %v", args, err)
	}
	return strings.TrimSpace(out.String()), strings.TrimSpace(errb.String()), code
}
