package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/pushring/pushring/internal/certs"
	"github.com/pushring/pushring/internal/natsauth"
	"github.com/pushring/pushring/internal/secretfile"
	"github.com/pushring/pushring/internal/testutil"
)

// The real binary: built, started with a fresh data dir, free loopback
// ports and no --admin-key, then stopped by a signal.

// freeAddr returns a loopback host:port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestBinaryGeneratesAdminKeyAndStopsOnSignal(t *testing.T) {
	bin := buildPushring(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) { runUntilSignal(t, bin, sig) })
	}
}

func runUntilSignal(t *testing.T, bin string, sig syscall.Signal) {
	dataDir := filepath.Join(t.TempDir(), "data")
	mqttAddr, httpAddr := freeAddr(t), freeAddr(t)
	p := startBinary(t, bin, nil, "--data-dir", dataDir, "--mqtt-addr", mqttAddr, "--http-addr", httpAddr,
		"--gossip-addr", "127.0.0.1:0", "--node-id", "bin1")
	cmd, logs := p.cmd, &p.logs
	base := "http://" + httpAddr
	p.waitReady(t, http.DefaultClient, base+"/readyz")

	keyFile := filepath.Join(dataDir, "admin.key")
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("no admin key file: %v", err)
	}
	if mode := st.Mode().Perm(); mode != 0o600 {
		t.Errorf("%s has mode %o, want 600", keyFile, mode)
	}
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(raw))
	if len(key) < 32 {
		t.Fatalf("admin key %d characters", len(key))
	}
	// /readyz can answer before the "started" line reaches the pipe.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), `msg="pushring node started"`) {
			return fmt.Errorf("no started line yet")
		}
		return nil
	})
	out := logs.String()
	for _, want := range []string{
		`msg="admin key generated"`, "file=" + keyFile, // where it is
		`msg="pushring node started"`, "mqtt=" + mqttAddr, "http=" + httpAddr,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(out, key) {
		t.Error("the admin key itself was logged")
	}
	// the key in the file is the one the node uses
	for auth, want := range map[string]int{"Bearer " + key: 200, "Bearer not-the-key": 401} {
		req, _ := http.NewRequest("GET", base+"/v1/cluster", nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /v1/cluster: %s, want %d", resp.Status, want)
		}
	}
	// Rotation without a restart: a second key added to the file is
	// accepted after SIGHUP next to the first; once the first is dropped
	// and SIGHUP sent again, only the second works.
	const next = "rotated-admin-key-0123456789abcdef"
	status := func(k string) int {
		req, _ := http.NewRequest("GET", base+"/v1/cluster", nil)
		req.Header.Set("Authorization", "Bearer "+k)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	rotate := func(body string, want map[string]int) {
		t.Helper()
		if err := os.WriteFile(keyFile, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			for k, code := range want {
				if got := status(k); got != code {
					return fmt.Errorf("key %.8s…: %d, want %d", k, got, code)
				}
			}
			return nil
		})
	}
	rotate(key+"\n"+next+"\n", map[string]int{key: 200, next: 200})
	rotate("# rotated\n"+next+"\n", map[string]int{key: 401, next: 200})
	if c, err := net.DialTimeout("tcp", mqttAddr, 5*time.Second); err != nil {
		t.Errorf("MQTT listener: %v", err)
	} else {
		c.Close()
	}

	start := time.Now()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("still running %v after %v", time.Since(start), sig)
	}
	took := time.Since(start)
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		t.Fatalf("exit after %v: %v", sig, ee)
	} else if p.err != nil {
		t.Fatal(p.err)
	}
	out = logs.String()
	if secretfile.Contains([]byte(out), key, next) {
		t.Error("an admin key was logged")
	}
	for _, want := range []string{`msg="shutting down: draining"`, `msg="pushring node stopped"`, `msg=reloaded`,
		`msg="mqtt: shutdown: messages the sessions had not delivered" node=bin1 component=router dropped=0 stored_for_replay=0`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if _, err := http.Get(base + "/readyz"); err == nil {
		t.Error("HTTP still served after exit")
	}
	t.Logf("%v: exited 0 after %v", sig, took.Round(time.Millisecond))
}

// stallRequest opens an HTTP request to httpAddr whose body never comes:
// a node's drain waits for it, up to the journal's timeout and a second.
// It is closed when the test ends.
func stallRequest(t *testing.T, httpAddr string) {
	t.Helper()
	stall, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stall.Close() })
	fmt.Fprintf(stall, "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	time.Sleep(50 * time.Millisecond) // the server has read the headers: the connection is active
}

// A node that cannot stop within --shutdown-timeout exits all the
// same, with status 0 (it stopped because it was asked to), and says it
// cut the stop short. A stalled request holds the drain for seconds:
// an idle node can stop within 1 ms on a fast machine.
func TestBinaryShutdownTimeoutStillExitsZero(t *testing.T) {
	bin := buildPushring(t)
	httpAddr := freeAddr(t)
	p := startBinary(t, bin, nil, "--data-dir", filepath.Join(t.TempDir(), "data"), "--mqtt-addr", freeAddr(t),
		"--http-addr", httpAddr, "--gossip-addr", "127.0.0.1:0", "--node-id", "bin1",
		"--shutdown-timeout", "1ms")
	p.waitReady(t, http.DefaultClient, "http://"+httpAddr+"/readyz")
	stallRequest(t, httpAddr)
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after SIGTERM with --shutdown-timeout 1ms")
	}
	if p.err != nil {
		t.Fatalf("exit after the shutdown timeout: %v, want status 0", p.err)
	}
	if out := p.logs.String(); !strings.Contains(out, `msg="shutdown: --shutdown-timeout passed before the node stopped; exiting now"`) {
		t.Errorf("the log does not say the stop was cut short:\n%s", out)
	}
	t.Logf("exited 0 %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// A second signal during the drain stops the node at once, and still
// with status 0. The drain is held by an HTTP request that stalls
// half-way (its body never comes): the node waits for requests under
// way, up to the journal's timeout and a second, so the second signal
// surely comes during the drain.
func TestBinarySecondSignalExitsZero(t *testing.T) {
	bin := buildPushring(t)
	httpAddr := freeAddr(t)
	p := startBinary(t, bin, nil, "--data-dir", filepath.Join(t.TempDir(), "data"), "--mqtt-addr", freeAddr(t),
		"--http-addr", httpAddr, "--gossip-addr", "127.0.0.1:0", "--node-id", "bin1")
	p.waitReady(t, http.DefaultClient, "http://"+httpAddr+"/readyz")
	stallRequest(t, httpAddr)
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Signals of one kind sent back to back merge into one: the second
	// goes once the drain has begun.
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !strings.Contains(p.logs.String(), `msg="shutting down: draining"`) {
			return errors.New("not draining yet")
		}
		return nil
	})
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		t.Fatal("still running 3 s after a second signal")
	}
	took := time.Since(start)
	if p.err != nil {
		t.Fatalf("exit after a second signal: %v, want status 0", p.err)
	}
	if out := p.logs.String(); !strings.Contains(out, `msg="shutdown: second signal; exiting now, without finishing the drain"`) {
		t.Errorf("the log does not say the second signal cut the drain short:\n%s", out)
	}
	if took > 5*time.Second {
		t.Errorf("exited %v after the first signal: the second did not cut the wait for the stalled request", took)
	}
	t.Logf("exited 0 %v after the first signal", took.Round(time.Millisecond))
}

// A value only the config checks refuse (the flag parses: a negative
// connection limit) stops the binary before it starts anything: exit
// status 2, one line on stderr naming the field, no data dir.
func TestBinaryRefusesInvalidConfig(t *testing.T) {
	bin := buildPushring(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--data-dir", dataDir, "--mqtt-addr", freeAddr(t), "--http-addr", freeAddr(t),
		"--gossip-addr", "127.0.0.1:0", "--node-id", "bin1", "--max-connections", "-1")
	cmd.Env = testutil.CleanEnv()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2\nstderr:\n%s", err, stderr.String())
	}
	const want = "pushring: router: MaxConnections must be >= 0, 0 for no limit (got -1)\n"
	if got := stderr.String(); got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	if stdout.Len() > 0 {
		t.Errorf("stdout %q", stdout.String())
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("data dir after a refused config: %v", err)
	}
}

// Gossip that other hosts may reach, or that joins others, needs a key:
// without --gossip-key-file (or --insecure-gossip) the binary refuses to
// start, exit status 2, naming the flag's field.
func TestBinaryRefusesOpenGossip(t *testing.T) {
	bin := buildPushring(t)
	for name, tc := range map[string]struct {
		args []string
		env  string
		want string
	}{
		"all interfaces": {[]string{"--gossip-addr", ":0"}, "", `GossipAddr ":0" is not a loopback address`},
		"unspecified":    {[]string{"--gossip-addr", "0.0.0.0:0"}, "", `GossipAddr "0.0.0.0:0" is not a loopback address`},
		"join":           {[]string{"--gossip-addr", "127.0.0.1:0", "--join", "127.0.0.1:1"}, "", "Join is set and no gossip key"},
		"empty key file": {[]string{"--gossip-addr", "127.0.0.1:0", "--join", "127.0.0.1:1"}, "PUSHRING_GOSSIP_KEY_FILE=/dev/null", "GossipKeyFile: /dev/null: no key"},
	} {
		t.Run(name, func(t *testing.T) {
			dataDir := filepath.Join(t.TempDir(), "data")
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			args := append([]string{"--data-dir", dataDir, "--mqtt-addr", freeAddr(t), "--http-addr", freeAddr(t), "--node-id", "bin1"}, tc.args...)
			cmd := exec.CommandContext(ctx, bin, args...)
			cmd.Env = testutil.CleanEnv()
			if tc.env != "" {
				cmd.Env = append(cmd.Env, tc.env)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want status 2\nstderr:\n%s", err, stderr.String())
			}
			if got := stderr.String(); !strings.HasPrefix(got, "pushring: node: ") || !strings.Contains(got, tc.want) || strings.Count(got, "\n") != 1 {
				t.Errorf("stderr %q, want one line with %q", got, tc.want)
			}
			if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("data dir after a refused config: %v", err)
			}
		})
	}
}

// TestBinaryNATSKeysAndSIGHUP: the binary generates its NATS nkey (0600,
// public key logged), lets into its embedded NATS the key of
// --nats-authorized-keys-file, and on SIGHUP re-reads that file: the key
// removed loses its connection and is refused, while the node keeps
// running and serving.
func TestBinaryNATSKeysAndSIGHUP(t *testing.T) {
	bin := buildPushring(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	keysFile := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(keysFile, []byte("n2 "+pub+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	// The file through the environment: every flag has its variable.
	p := startBinary(t, bin, []string{"PUSHRING_NATS_AUTHORIZED_KEYS_FILE=" + keysFile},
		"--data-dir", dataDir, "--mqtt-addr", freeAddr(t), "--http-addr", httpAddr,
		"--gossip-addr", "127.0.0.1:0", "--node-id", "n1", "--nats-listen", natsAddr)
	cmd, logs := p.cmd, &p.logs
	ready := func() error { return p.ready(t, http.DefaultClient, "http://"+httpAddr+"/readyz") }
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, ready)

	seed := filepath.Join(dataDir, "nats.nk")
	if st, err := os.Stat(seed); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("nats.nk: %v", err)
	}
	own, _, err := natsauth.LoadOrCreateSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	ownPub, _ := own.PublicKey()
	if out := logs.String(); !strings.Contains(out, `msg="NATS nkey generated"`) || !strings.Contains(out, "public_key="+ownPub) {
		t.Errorf("log lacks the generated key's public half %s", ownPub)
	}

	lost := make(chan struct{}, 1)
	nc, err := nats.Connect("nats://"+natsAddr, nats.Nkey(pub, kp.Sign),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { lost <- struct{}{} }))
	if err != nil {
		t.Fatalf("authorized key: %v", err)
	}
	defer nc.Close()
	if err := os.WriteFile(keysFile, []byte("# n2 revoked\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked key's connection still up 10 s after SIGHUP")
	}
	if c, err := nats.Connect("nats://"+natsAddr, nats.Nkey(pub, kp.Sign)); err == nil {
		c.Close()
		t.Fatal("the revoked key connected")
	}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, ready)
	if !strings.Contains(logs.String(), `msg="NATS authorized keys reloaded"`) {
		t.Error("log lacks the reload")
	}
}

// TestBinaryTLSReloadOnSIGHUP: the binary serves MQTT over TLS and HTTPS
// from certificate files named in the environment (PUSHRING_TLS_CERT,
// …), and SIGHUP makes it serve a replaced certificate to new
// connections without exiting.
func TestBinaryTLSReloadOnSIGHUP(t *testing.T) {
	bin := buildPushring(t)
	ca, err := certs.NewCA("binary test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	dir := t.TempDir()
	certFile, keyFile, caFile := filepath.Join(dir, "s.pem"), filepath.Join(dir, "s.key"), filepath.Join(dir, "ca.pem")
	issue := func() *big.Int {
		c, k, err := ca.Server([]string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range []struct {
			path string
			b    []byte
		}{{keyFile, k}, {certFile, c}, {caFile, ca.CertPEM}} {
			if err := os.WriteFile(f.path+".tmp", f.b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(f.path+".tmp", f.path); err != nil {
				t.Fatal(err)
			}
		}
		pair, _ := tls.X509KeyPair(c, k)
		return pair.Leaf.SerialNumber
	}
	first := issue()
	mqttTLS, https := freeAddr(t), freeAddr(t)
	p := startBinary(t, bin, []string{"PUSHRING_TLS_CERT=" + certFile, "PUSHRING_TLS_KEY=" + keyFile, "PUSHRING_CLIENT_CA=" + caFile},
		"--data-dir", filepath.Join(dir, "data"), "--mqtt-addr", freeAddr(t), "--http-addr", freeAddr(t),
		"--gossip-addr", "127.0.0.1:0", "--node-id", "bin1", "--mqtt-tls-addr", mqttTLS, "--https-addr", https)
	cmd, logs := p.cmd, &p.logs
	httpsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	p.waitReady(t, httpsClient, "https://"+https+"/readyz")
	served := func() *big.Int {
		c, err := tls.Dial("tcp", mqttTLS, &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatalf("MQTT over TLS: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber
	}
	if got := served(); got.Cmp(first) != 0 {
		t.Fatalf("served serial %v, want %v", got, first)
	}
	next := issue()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(logs.String(), `msg="TLS certificate reloaded"`) {
			return fmt.Errorf("no reload logged yet")
		}
		return nil
	})
	if got := served(); got.Cmp(next) != 0 {
		t.Fatalf("after SIGHUP: served serial %v, want %v", got, next)
	}
	select {
	case <-p.exited:
		t.Fatal("pushring exited on SIGHUP")
	default:
	}
}
