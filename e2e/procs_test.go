// Package e2e holds process-level tests: real pushring binaries on
// loopback, killed with SIGKILL, joined under load, with paho clients that
// fail over between nodes. What one process cannot show (a crash) is shown
// here; everything else lives in the packages' own tests.
package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/pushring/pushring/internal/natsauth"
	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/testutil"
)

const adminKey = "e2e-admin-key-0123456789"

// pushringBinary builds cmd/pushring once for the whole test binary.
func pushringBinary(t *testing.T) string { return goBinary(t, "pushring", "./cmd/pushring") }

// built holds the binaries goBinary built, by package.
var built sync.Map // package path -> *builtBinary

type builtBinary struct {
	once sync.Once
	path string
	err  error
}

// goBinary builds package pkg of this module's build list (a command of
// the repository, or the NATS server of go.mod) once for the whole test
// binary, as name in a temporary directory.
func goBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	v, _ := built.LoadOrStore(pkg, new(builtBinary))
	b := v.(*builtBinary)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "pushring-e2e-"+name)
		if err != nil {
			b.err = err
			return
		}
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = filepath.Dir(filepath.Dir(file))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
			return
		}
		b.path = filepath.Join(dir, name)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// freeAddr returns a loopback address with a port that was free a moment
// ago (TCP; memberlist also binds UDP on it, so it is checked too). The
// host is one of 127.0.0.2-249, not 127.0.0.1: the tests of the other
// packages, running meanwhile, bind ports on 127.0.0.1 and could take
// this one before the node binds it.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:0", 2+rand.IntN(248)))
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		u.Close()
		return addr
	}
	t.Fatal("no free port")
	return ""
}

// proc is one pushring node process.
type proc struct {
	id, mqtt, http, gossip string
	keyFile                string // its --gossip-key-file ("" if none)
	cmd                    *exec.Cmd
	log                    string
	exited                 chan struct{}
}

// cluster is a set of node processes sharing one NATS server that runs in
// the test process (so killing a node never kills the bus).
type cluster struct {
	t     *testing.T
	nats  *natsembed.Server
	users []natsembed.User // every node's key, with a node's permissions
	url   string
	procs []*proc
	args  []string // extra flags for every node started
	key   []byte   // the gossip key: each node gets a key file of its own holding it
}

// clusterKey is the gossip key of the test clusters.
var clusterKey = []byte("e2e-cluster-gossip-key-32-bytes!")

// keyFileText is a gossip key file holding keys, the first one primary.
func keyFileText(keys ...[]byte) string {
	var b strings.Builder
	b.WriteString("# gossip keys: the first encrypts, all decrypt\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	return b.String()
}

// writeKeyFile writes a gossip key file into dir (mode 0600).
func writeKeyFile(t *testing.T, dir string, keys ...[]byte) string {
	t.Helper()
	path := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(path, []byte(keyFileText(keys...)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newCluster(t *testing.T, n int, args ...string) *cluster {
	t.Helper()
	// A listening server needs one user before the nodes' keys exist: an
	// unlimited one the harness never uses.
	harness, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	hpub, _ := harness.PublicKey()
	users := []natsembed.User{{PublicKey: hpub}}
	ns, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Stop)
	c := &cluster{t: t, nats: ns, users: users, url: "nats://" + ns.Addr().String(), args: args, key: clusterKey}
	for range n {
		c.start()
	}
	c.waitRing(c.live(), len(c.procs))
	return c
}

// start launches one more node with the cluster's key, joining the
// first, and waits until it is ready.
func (c *cluster) start() *proc {
	c.t.Helper()
	var join []string
	if len(c.procs) > 0 {
		join = []string{c.procs[0].gossip}
	}
	p := c.launch("n"+strconv.Itoa(len(c.procs)+1), join, [][]byte{c.key})
	c.waitReady(p)
	c.procs = append(c.procs, p)
	return p
}

// launch starts a node process named id that joins join (if any) with a
// key file holding keys (none: no key file) and extra flags, and waits
// only until it has started (it may never be ready: a node that cannot
// join is not). It is stopped at the end of the test; its log is printed
// if the test failed. It is not added to c.procs.
func (c *cluster) launch(id string, join []string, keys [][]byte, extra ...string) *proc {
	t := c.t
	t.Helper()
	p := &proc{id: id, mqtt: freeAddr(t), http: freeAddr(t), gossip: freeAddr(t), exited: make(chan struct{})}
	dir := t.TempDir()
	p.log = filepath.Join(dir, "node.log")
	// The node signs in to NATS with the key it finds in its data dir:
	// made here first, so the server knows it.
	kp, _, err := natsauth.LoadOrCreateSeed(filepath.Join(dir, "nats.nk"))
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	perm := natsauth.NodePermissions("pushring", p.id)
	c.users = append(c.users, natsembed.User{PublicKey: pub, Permissions: &perm})
	if err := c.nats.SetUsers(c.users); err != nil {
		t.Fatal(err)
	}
	// Secrets go in files, never on a command line.
	adminFile := filepath.Join(dir, "admin.key")
	if err := os.WriteFile(adminFile, []byte(adminKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--node-id", p.id, "--data-dir", dir, "--admin-key-file", adminFile, "--nats-url", c.url,
		"--mqtt-addr", p.mqtt, "--http-addr", p.http, "--gossip-addr", p.gossip, "--log-level", "info",
		// These tests place clients on chosen nodes; moving them home
		// (router balance.go) is left to the chaos test.
		"--rebalance-rate", "-1",
		"--login-rate", "-1"} // the test logs in many users from one address
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	if len(keys) > 0 {
		p.keyFile = writeKeyFile(t, dir, keys...)
		args = append(args, "--gossip-key-file", p.keyFile)
	}
	args = append(args, c.args...)
	args = append(args, extra...)
	p.run(t, args...)
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if err := p.alive(); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p.log); !bytes.Contains(b, []byte(`msg="pushring node started"`)) {
			return fmt.Errorf("%s has not started yet", p.id)
		}
		return nil
	})
	return p
}

// alive returns an error with the log of p if p has exited.
func (p *proc) alive() error {
	select {
	case <-p.exited:
		b, _ := os.ReadFile(p.log)
		return fmt.Errorf("%s exited:\n%s", p.id, tail(b, 3000))
	default:
		return nil
	}
}

// waitReady waits until p answers /readyz with 200 (joined, NATS up).
func (c *cluster) waitReady(p *proc) {
	t := c.t
	t.Helper()
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if err := p.alive(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// live returns the processes not killed.
func (c *cluster) live() []*proc {
	var out []*proc
	for _, p := range c.procs {
		select {
		case <-p.exited:
		default:
			out = append(out, p)
		}
	}
	return out
}

func (c *cluster) byID(id string) *proc {
	for _, p := range c.procs {
		if p.id == id {
			return p
		}
	}
	return nil
}

// waitRing waits until each of procs lists exactly want alive nodes.
func (c *cluster) waitRing(procs []*proc, want int) {
	c.t.Helper()
	testutil.CheckFor(c.t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, p := range procs {
			var cl struct {
				Nodes []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"nodes"`
			}
			if err := c.api(p, "GET", "/v1/cluster", nil, &cl); err != nil {
				return err
			}
			alive := 0
			for _, n := range cl.Nodes {
				if n.State == "alive" {
					alive++
				}
			}
			if alive != want {
				return fmt.Errorf("%s sees %d alive nodes (%+v), want %d", p.id, alive, cl.Nodes, want)
			}
		}
		return nil
	})
}

// api calls the HTTP API of p as admin; out may be nil.
func (c *cluster) api(p *proc, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "http://"+p.http+path, rd)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s on %s: %d %s", method, path, p.id, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (c *cluster) mustAPI(p *proc, method, path string, body, out any) {
	c.t.Helper()
	if err := c.api(p, method, path, body, out); err != nil {
		c.t.Fatal(err)
	}
}

// home asks p for the home node of id.
func (c *cluster) home(p *proc, id string) string {
	c.t.Helper()
	var r struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	c.mustAPI(p, "GET", "/v1/route/"+id, nil, &r)
	return r.Node.ID
}

func newLogin(p *proc, id, password string) (*http.Request, error) {
	b, _ := json.Marshal(map[string]string{"id": id, "password": password})
	req, err := http.NewRequest("POST", "http://"+p.http+"/v1/sessions", bytes.NewReader(b))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, err
}

func doJSON(req *http.Request, out any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

// run starts the pushring binary with args as p, its output in p.log,
// and stops it at cleanup (an interrupt, then SIGKILL after 10 s),
// logging the end of its log if the test failed.
func (p *proc) run(t *testing.T, args ...string) {
	t.Helper()
	p.cmd = exec.Command(pushringBinary(t), args...)
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); logFile.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("--- log of %s, %s (last 3000 bytes)\n%s", p.id, filepath.Base(p.log), tail(b, 3000))
		}
	})
}
