package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestNATSKeyAndConfig: nats-key makes a seed once and prints the same
// public key every time; nats-config prints a block nats-server reads,
// with one user per node, from --node and --authorized-keys-file alike;
// bad input is a usage error.
func TestNATSKeyAndConfig(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "n2.nk")
	pub, stderr, code := runCLI(t, "", nil, "", "nats-key", seed)
	if code != 0 || !strings.HasPrefix(pub, "U") {
		t.Fatalf("nats-key: %d %q %q", code, pub, stderr)
	}
	if again, _, _ := runCLI(t, "", nil, "", "nats-key", seed); again != pub {
		t.Fatalf("second nats-key printed %q, want %q", again, pub)
	}
	if fi, err := os.Stat(seed); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seed file: %v", err)
	}
	pub3, _, _ := runCLI(t, "", nil, "", "nats-key", filepath.Join(dir, "n3.nk"))
	keys := filepath.Join(dir, "authorized_keys")
	os.WriteFile(keys, []byte("n3 "+pub3), 0o600)

	conf, stderr, code := runCLI(t, "", nil, "", "nats-config", "--cluster", "c1", "--node", "n2="+strings.TrimSpace(pub), "--authorized-keys-file", keys)
	if code != 0 {
		t.Fatalf("nats-config: %d %s", code, stderr)
	}
	path := filepath.Join(dir, "auth.conf")
	os.WriteFile(path, []byte(conf), 0o600)
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	if len(opts.Nkeys) != 2 || opts.Nkeys[1].Permissions.Subscribe.Allow[0] != "pushring.c1.node.n3" {
		t.Fatalf("users %+v", opts.Nkeys)
	}
	for _, args := range [][]string{
		{"nats-config"},
		{"nats-config", "--node", "n2"},
		{"nats-config", "--node", "n2=nonsense"},
		{"nats-config", "--node", "n2=" + strings.TrimSpace(pub), "--node", "n3=" + strings.TrimSpace(pub)},
		{"nats-config", "--cluster", "a.>", "--node", "n2=" + strings.TrimSpace(pub)}, // a wildcard cluster would widen every permission
		{"nats-config", "--cluster", "*", "--node", "n2=" + strings.TrimSpace(pub)},
		{"nats-key"},
	} {
		if _, stderr, code := runCLI(t, "", nil, "", args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
}
