package natsauth

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/pushring/pushring/internal/testutil"
)

func pubKey(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	return pub
}

func TestParseAuthorizedKeys(t *testing.T) {
	a, b := pubKey(t), pubKey(t)
	keys, err := ParseAuthorizedKeys(strings.NewReader("# nodes\n\nn2 " + a + "  # second\n  n3\t" + b + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []Key{{"n2", a}, {"n3", b}}; !slices.Equal(keys, want) {
		t.Fatalf("got %v, want %v", keys, want)
	}
	acct, _ := nkeys.CreateAccount()
	apub, _ := acct.PublicKey()
	for _, tc := range []struct{ file, want string }{
		{"n2\n", "line 1: want"},
		{"n2 " + a + " extra\n", "line 1: want"},
		{"n.2 " + a + "\n", "line 1: bad node id"},
		{"n2 nonsense\n", "line 1: \"nonsense\" is not a public user nkey"},
		{"n2 " + apub + "\n", "not a public user nkey"},
		{"n2 " + a + "\nn2 " + b + "\n", "line 2: node n2 already listed on line 1"},
		{"n2 " + a + "\nn3 " + a + "\n", "line 2: key already listed on line 1"},
	} {
		if _, err := ParseAuthorizedKeys(strings.NewReader(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.file, err, tc.want)
		}
	}
}

func TestLoadOrCreateSeed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nats.nk")
	kp, created, err := LoadOrCreateSeed(path)
	if err != nil || !created {
		t.Fatalf("first: %v, created %v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v, mode %v", err, fi.Mode().Perm())
	}
	again, created, err := LoadOrCreateSeed(path)
	if err != nil || created {
		t.Fatalf("second: %v, created %v", err, created)
	}
	p1, _ := kp.PublicKey()
	p2, _ := again.PublicKey()
	if p1 != p2 || !nkeys.IsValidPublicUserKey(p1) {
		t.Fatalf("keys %s, %s", p1, p2)
	}
	// Not a user seed: refused, and not overwritten.
	acct, _ := nkeys.CreateAccount()
	seed, _ := acct.Seed()
	other := filepath.Join(t.TempDir(), "acct.nk")
	os.WriteFile(other, seed, 0o600)
	if _, _, err := LoadOrCreateSeed(other); err == nil {
		t.Fatal("an account seed was taken for a user key")
	}
	if b, _ := os.ReadFile(other); string(b) != string(seed) {
		t.Fatal("the file was overwritten")
	}
}

// TestNodePermissionsScope: a node subscribes to its own subject, its
// cluster's topic subjects and its own inbox only, and nothing it may
// publish to or subscribe to names another cluster or wildcards past its
// cluster's prefixes.
func TestNodePermissionsScope(t *testing.T) {
	p := NodePermissions("c1", "n1")
	if want := []string{"pushring.c1.node.n1", "pushring.c1.t.>", "_INBOX_c1.n1.>"}; !slices.Equal(p.Subscribe, want) {
		t.Errorf("subscribe %v, want %v", p.Subscribe, want)
	}
	if !slices.Contains(p.Publish, "pushring.c1.t.>") || TopicSubjects("c1") != "pushring.c1.t.>" {
		t.Errorf("publish %v: no topic subjects (%s)", p.Publish, TopicSubjects("c1"))
	}
	for _, s := range p.Publish {
		if s == ">" || strings.HasPrefix(s, "$SYS") || !(strings.Contains(s, "c1") || s == "$JS.API.INFO") {
			t.Errorf("publish %q is outside cluster c1", s)
		}
	}
}

// TestConfigParses: the block Config prints is a nats-server
// authorization the server reads back as NodePermissions of each node.
func TestConfigParses(t *testing.T) {
	keys := []Key{{"n1", pubKey(t)}, {"n2", pubKey(t)}}
	conf := Config("c1", keys)
	path := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	if len(opts.Nkeys) != 2 {
		t.Fatalf("%d nkey users, want 2", len(opts.Nkeys))
	}
	for i, u := range opts.Nkeys {
		want := NodePermissions("c1", keys[i].NodeID)
		if u.Nkey != keys[i].PublicKey || u.Permissions == nil ||
			!slices.Equal(u.Permissions.Publish.Allow, want.Publish) || !slices.Equal(u.Permissions.Subscribe.Allow, want.Subscribe) {
			t.Errorf("user %d: %+v, want %s with %+v", i, u, keys[i].PublicKey, want)
		}
	}
}

// TestNodePermissionsJournal: a node publishes to the journal under its
// own ingress id only, and calls the journal stream's API without purge
// (single messages it may delete: those it stored for a publisher it did
// not acknowledge).
func TestNodePermissionsJournal(t *testing.T) {
	p := NodePermissions("c1", "n1")
	var journal []string
	for _, s := range p.Publish {
		if strings.HasPrefix(s, "pushring.c1.m.") || strings.Contains(s, "MSGS_") {
			journal = append(journal, s)
		}
	}
	want := []string{
		"pushring.c1.m.n1.>",
		"$JS.API.STREAM.INFO.MSGS_c1",
		"$JS.API.STREAM.CREATE.MSGS_c1",
		"$JS.API.STREAM.UPDATE.MSGS_c1",
		"$JS.API.CONSUMER.CREATE.MSGS_c1.>",
		"$JS.API.CONSUMER.*.MSGS_c1.*", // DELETE, INFO (and PAUSE, UNPIN)
		"$JS.API.CONSUMER.MSG.NEXT.MSGS_c1.*",
		"$JS.API.STREAM.MSG.DELETE.MSGS_c1",
		"$JS.API.STREAM.MSG.GET.MSGS_c1",
	}
	if !slices.Equal(journal, want) {
		t.Errorf("journal permissions %q, want %q", journal, want)
	}
	if JournalIngress("c1", "n1") != "pushring.c1.m.n1.>" || JournalSubjects("c1") != "pushring.c1.m.>" || JournalStream("c1") != "MSGS_c1" {
		t.Error(JournalIngress("c1", "n1"), JournalSubjects("c1"), JournalStream("c1"))
	}
}

// TestNodePermissionsFitCreds: a user JWT carrying NodePermissions, as
// a creds file holds it, travels in the client's CONNECT, which a
// nats-server caps at its max_control_line (4 KiB by default): a node
// with a short id connects to a server in operator mode with the
// default limit, with ids up to 32 bytes (a JWT of about 3,820 bytes no
// longer fits: each subject added to the table spends that room). The
// test logs the sizes.
func TestNodePermissionsFitCreds(t *testing.T) {
	s, account := testutil.OperatorNATS(t, false)
	for _, id := range []string{"n1", "node-01", "pushring-node-0123456789abcdefgh"} {
		perms := NodePermissions("pushring", id)
		ujwt, useed := testutil.UserJWT(t, account, perms.Publish, perms.Subscribe)
		t.Logf("node %s: user JWT of %d bytes for %d publish and %d subscribe subjects",
			id, len(ujwt), len(perms.Publish), len(perms.Subscribe))
		nc, err := nats.Connect(s.ClientURL(), nats.UserJWTAndSeed(ujwt, string(useed)), nats.Name("pushring-"+id),
			nats.NoReconnect())
		if err != nil {
			t.Fatalf("node %s cannot connect with its creds (JWT of %d bytes): %v", id, len(ujwt), err)
		}
		nc.Close()
	}
}
