package bench

// The processes of the chaos scenario and what its fault schedule does to
// them: servers that are killed, stopped and restarted with the same
// command line; a cluster of three NATS servers made of such processes;
// pushring nodes on it; the schedule's syntax and the loop that plays it.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushring/pushring/internal/natsauth"
)

// daemon is a server process that is killed, stopped and restarted with
// the same command line, so a restart finds its data dir and its ports
// again. Every start appends to one log file. It dies with the harness
// (Pdeathsig), so no run leaves processes behind.
type daemon struct {
	name string
	bin  string
	args []string
	env  []string
	log  string

	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped and not continued since
	starts  int
}

// start launches the process; it does not wait for it to serve.
func (d *daemon) start() error {
	f, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	d.starts++
	fmt.Fprintf(f, "=== start %d of %s\n", d.starts, d.name)
	cmd := exec.Command(d.bin, d.args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHRING_") { // a node is configured by its flags only
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, d.env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(exited) }()
	d.cmd, d.exited, d.stopped = cmd, exited, false
	return nil
}

// running reports whether the process of the last start has not exited
// (a stopped process is running).
func (d *daemon) running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// signal sends sig to the running process.
func (d *daemon) signal(sig syscall.Signal) error {
	if !d.running() {
		return fmt.Errorf("%s: %v to a process that is not running", d.name, sig)
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", d.name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		d.stopped = true
	case syscall.SIGCONT:
		d.stopped = false
	}
	return nil
}

// waitExit waits up to within for the process to exit.
func (d *daemon) waitExit(within time.Duration) error {
	select {
	case <-d.exited:
		return nil
	case <-time.After(within):
		return fmt.Errorf("%s has not exited %v after it was told to", d.name, within)
	}
}

// end stops the process if it runs: SIGTERM (after SIGCONT if stopped),
// SIGKILL if it has not exited within 10 s.
func (d *daemon) end() {
	if !d.running() {
		return
	}
	if d.stopped {
		d.cmd.Process.Signal(syscall.SIGCONT)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// logTail is the last lines of the log (of its last start), on one line.
func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "=== start") {
			lines = lines[i+1:]
			break
		}
	}
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	return strings.Join(lines, " | ")
}

// natsNode is one server of the chaos run's NATS cluster.
type natsNode struct {
	*daemon
	client, route, monitor string // loopback addresses
}

// chaosNATSCluster is the JetStream cluster name of the NATS servers and
// the nodes' --cluster: subjects and permissions both derive from it.
const chaosNATSCluster = "pushring"

// startNATSCluster starts n NATS servers as separate processes under dir,
// routed to each other on loopback, each with JetStream on a file store of
// its own and the authorization block that gives each node of keys exactly
// the permissions a node needs (natsauth, what `pushctl nats-config`
// prints). It returns once JetStream has a meta leader that every server
// names and every server is healthy.
func startNATSCluster(bin, dir string, n int, keys []natsauth.Key) ([]*natsNode, error) {
	servers := make([]*natsNode, n)
	var routes []string
	for i := range servers {
		var ports [3]int
		for j := range ports {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			ports[j] = p
		}
		a := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
		servers[i] = &natsNode{client: a(ports[0]), route: a(ports[1]), monitor: a(ports[2])}
		routes = append(routes, strconv.Quote("nats-route://"+servers[i].route))
	}
	auth := natsauth.Config(chaosNATSCluster, keys)
	for i, s := range servers {
		name := "nats" + strconv.Itoa(i+1)
		sdir := filepath.Join(dir, name)
		if err := os.MkdirAll(sdir, 0o700); err != nil {
			return servers[:i], err
		}
		conf := fmt.Sprintf(`server_name: %q
listen: %q
http: %q
no_sys_acc: false
jetstream {
  store_dir: %q
  max_memory_store: 268435456
  max_file_store: 4294967296
}
cluster {
  name: "pushbench-chaos"
  listen: %q
  routes: [%s]
}
%s`, name, s.client, s.monitor, filepath.Join(sdir, "js"), s.route, strings.Join(routes, ", "), auth)
		path := filepath.Join(sdir, "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return servers[:i], err
		}
		s.daemon = &daemon{name: name, bin: bin, args: []string{"-c", path}, log: filepath.Join(sdir, name+".log")}
		if err := s.start(); err != nil {
			return servers[:i], err
		}
	}
	return servers, waitJetStream(servers, 60*time.Second)
}

// jsz is the part of a NATS server's /jsz answer the harness reads.
type jsz struct {
	Meta *struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
}

// metaLeader is the JetStream meta leader as s sees it ("" if none).
func (s *natsNode) metaLeader() (string, error) {
	var j jsz
	if err := getJSON("http://"+s.monitor+"/jsz", &j); err != nil {
		return "", err
	}
	if j.Meta == nil {
		return "", nil
	}
	return j.Meta.Leader, nil
}

// waitJetStream waits until every running server (not stopped) names the
// same JetStream meta leader and answers /healthz (its JetStream assets current) with 200.
func waitJetStream(servers []*natsNode, within time.Duration) error {
	return waitFor(within, 100*time.Millisecond, func() error {
		leader := ""
		for _, s := range servers {
			if s.daemon == nil || !s.running() || s.stopped {
				continue // a stopped server answers nothing until continued
			}
			l, err := s.metaLeader()
			if err != nil {
				return err
			}
			if l == "" || (leader != "" && l != leader) {
				return fmt.Errorf("%s sees meta leader %q (others %q)", s.name, l, leader)
			}
			leader = l
			if err := httpOK("http://" + s.monitor + "/healthz"); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
		if leader == "" {
			return errors.New("no NATS server runs")
		}
		return nil
	})
}

// waitFor calls fn every poll until it returns nil or within passed (then
// its last error); a giveUp error ends the wait at once.
func waitFor(within, poll time.Duration, fn func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if g, ok := err.(giveUp); ok {
			return g.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", within, err)
		}
		time.Sleep(poll)
	}
}

var shortHTTP = &http.Client{Timeout: 2 * time.Second} // a stopped server never answers

// httpOK GETs url and wants 200.
func httpOK(url string) error {
	resp, err := shortHTTP.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return nil
}

// getJSON GETs url and decodes its JSON answer into out.
func getJSON(url string, out any) error {
	resp, err := shortHTTP.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// chaosNode is one pushring node of the chaos run.
type chaosNode struct {
	*daemon
	id                 string
	mqtt, http, gossip string
	base               []string // its flags but --join
	api                *Pushring
}

// chaosCluster is the pushring nodes and the NATS servers of a chaos run.
type chaosCluster struct {
	dir   string
	nats  []*natsNode
	nodes []*chaosNode
	// resolved maps a schedule target that names a role (nats-leader) to
	// the server it named when its first step ran.
	resolved  map[string]string
	stoppedAt map[string]time.Time
}

// startChaosCluster starts three NATS servers, then n pushring nodes
// n1…n<n> on them (KV and journal replicas 3, one gossip key, each node its
// own nkey, data dir and loopback ports), and waits until every node sees
// all n alive.
func startChaosCluster(bin, natsBin string, n int, extra []string) (cc *chaosCluster, err error) {
	dir, err := os.MkdirTemp("", "pushbench-chaos-")
	if err != nil {
		return nil, err
	}
	cc = &chaosCluster{dir: dir, resolved: map[string]string{}, stoppedAt: map[string]time.Time{}}
	defer func() {
		if err != nil {
			cc.stop()
			cc = nil
		}
	}()
	adminKey := randHex(32)
	gossipKey := make([]byte, 32)
	rand.Read(gossipKey)
	keyFile := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(gossipKey)+"\n"), 0o600); err != nil {
		return cc, err
	}
	// Each node's nkey first: the NATS servers' authorization lists them.
	var keys []natsauth.Key
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = filepath.Join(dir, "n"+strconv.Itoa(i+1))
		if err := os.MkdirAll(dirs[i], 0o700); err != nil {
			return cc, err
		}
		kp, _, err := natsauth.LoadOrCreateSeed(filepath.Join(dirs[i], "nats.nk"))
		if err != nil {
			return cc, err
		}
		pub, _ := kp.PublicKey()
		keys = append(keys, natsauth.Key{NodeID: "n" + strconv.Itoa(i+1), PublicKey: pub})
	}
	if cc.nats, err = startNATSCluster(natsBin, dir, 3, keys); err != nil {
		return cc, fmt.Errorf("NATS cluster: %w", err)
	}
	var urls []string
	for _, s := range cc.nats {
		urls = append(urls, "nats://"+s.client)
	}
	for i, ndir := range dirs {
		var ports [3]int
		for j := range ports {
			if ports[j], err = freePort(); err != nil {
				return cc, err
			}
		}
		a := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
		nd := &chaosNode{id: keys[i].NodeID, mqtt: a(ports[0]), http: a(ports[1]), gossip: a(ports[2])}
		nd.base = []string{"--node-id", nd.id, "--data-dir", ndir,
			"--nats-url", strings.Join(urls, ","), "--kv-replicas", "3", "--cluster", chaosNATSCluster,
			"--mqtt-addr", nd.mqtt, "--http-addr", nd.http, "--gossip-addr", nd.gossip, "--gossip-key-file", keyFile,
			"--connect-rate", "-1", "--login-rate", "-1", "--publish-rate", "-1", "--publish-bytes-rate", "-1",
			"--log-level", "warn"}
		nd.base = append(nd.base, extra...)
		nd.daemon = &daemon{name: nd.id, bin: bin, env: []string{"PUSHRING_ADMIN_KEY=" + adminKey}, log: filepath.Join(ndir, nd.id+".log")}
		nd.api = NewPushring(nd.mqtt, "http://"+nd.http, adminKey, 0)
		cc.nodes = append(cc.nodes, nd)
	}
	for _, nd := range cc.nodes {
		if err := cc.startNode(nd); err != nil {
			return cc, err
		}
	}
	return cc, cc.waitRing()
}

// stop ends every process and removes the run's directory.
func (cc *chaosCluster) stop() {
	for _, nd := range cc.nodes {
		if nd.daemon != nil {
			nd.end()
		}
	}
	for _, s := range cc.nats {
		if s.daemon != nil {
			s.end()
		}
	}
	os.RemoveAll(cc.dir)
}

func (cc *chaosCluster) node(id string) *chaosNode {
	for _, nd := range cc.nodes {
		if nd.id == id {
			return nd
		}
	}
	return nil
}

// mqttAddrs is every node's MQTT address, home's first, then the nodes
// after it in turn (n2's clients fall back on n3, then n1): the list a
// client reconnects through. Rotating spreads the clients of a failed
// node over the others rather than piling them all on n1.
func (cc *chaosCluster) mqttAddrs(home string) []string {
	h := slices.IndexFunc(cc.nodes, func(nd *chaosNode) bool { return nd.id == home })
	h = max(h, 0)
	out := make([]string, 0, len(cc.nodes))
	for i := range cc.nodes {
		out = append(out, cc.nodes[(h+i)%len(cc.nodes)].mqtt)
	}
	return out
}

// startNode (re)starts nd, joining the nodes that run, and waits until it
// is ready.
func (cc *chaosCluster) startNode(nd *chaosNode) error {
	var join []string
	for _, o := range cc.nodes {
		if o != nd && o.running() && !o.stopped {
			join = append(join, o.gossip)
		}
	}
	nd.args = slices.Clone(nd.base)
	if len(join) > 0 {
		nd.args = append(nd.args, "--join", strings.Join(join, ","))
	}
	if err := nd.start(); err != nil {
		return err
	}
	return waitFor(60*time.Second, 50*time.Millisecond, func() error {
		if !nd.running() {
			return giveUp{fmt.Errorf("%s exited: %s", nd.id, nd.logTail())}
		}
		return httpOK("http://" + nd.http + "/readyz")
	})
}

// giveUp is an error waitFor does not wait out.
type giveUp struct{ error }

// waitRing waits until every node that runs (and is not stopped) lists
// exactly those nodes alive: a node killed or stopped is seen gone, one
// started or continued is seen back.
func (cc *chaosCluster) waitRing() error {
	var up []*chaosNode
	for _, nd := range cc.nodes {
		if nd.running() && !nd.stopped {
			up = append(up, nd)
		}
	}
	return waitFor(60*time.Second, 50*time.Millisecond, func() error {
		for _, nd := range up {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			cl, err := nd.api.api.Cluster(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", nd.id, err)
			}
			alive := 0
			for _, x := range cl.AllNodes() {
				if x.State == "" || x.State == "alive" {
					alive++
				}
			}
			if alive != len(up) {
				return fmt.Errorf("%s sees %d nodes alive, want %d", nd.id, alive, len(up))
			}
		}
		return nil
	})
}

// Fault is one step of a fault schedule: at (after the traffic started)
// do Action to Target.
type Fault struct {
	At     time.Duration // in the JSON: at_s, seconds
	Action string
	Target string
}

// FaultsHelp documents the --faults syntax.
const FaultsHelp = `comma-separated steps TIME:ACTION:TARGET, TIME after the traffic started (Go duration, e.g. 10s).
ACTION: kill9 (SIGKILL; a node: wait until the others see it gone), term (SIGTERM, wait for the exit),
stop (SIGSTOP), cont (a node: wait until the others declared it dead, then SIGCONT and wait until it is back),
start (restart with the same flags, data dir and ports; wait until ready and back in the ring / JetStream healthy).
TARGET: n1..nN (pushring nodes), nats1..nats3 (NATS servers), nats-leader (the JetStream meta leader when
the step runs; later steps naming it mean the same server). A step starts at its time or when the step before
it is done, whichever is later; steps must follow each process's life (kill9/term/stop a running one, cont a
stopped one, start an exited one)`

// DefaultFaults covers kill -9 and restart, SIGTERM and restart,
// SIGSTOP/SIGCONT of a node, and a kill -9 and restart of the JetStream
// meta leader.
const DefaultFaults = "10s:kill9:n2,18s:start:n2,25s:term:n3,30s:start:n3,35s:stop:n1,43s:cont:n1,50s:kill9:nats-leader,55s:start:nats-leader"

// ParseFaults parses a schedule (FaultsHelp) for a cluster of nodes
// pushring nodes and three NATS servers, and checks that its steps follow
// each process's life.
func ParseFaults(s string, nodes int) ([]Fault, error) {
	var out []Fault
	state := map[string]string{} // target → "run", "stop", "down"
	var last time.Duration
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("fault %q: want TIME:ACTION:TARGET", part)
		}
		at, err := time.ParseDuration(f[0])
		if err != nil || at < 0 {
			return nil, fmt.Errorf("fault %q: bad time %q", part, f[0])
		}
		if at < last {
			return nil, fmt.Errorf("fault %q: steps must be in time order", part)
		}
		last = at
		action, target := f[1], f[2]
		valid := target == "nats-leader"
		if n, ok := strings.CutPrefix(target, "nats"); ok && !valid {
			i, err := strconv.Atoi(n)
			valid = err == nil && i >= 1 && i <= 3
		} else if n, ok := strings.CutPrefix(target, "n"); ok && !valid {
			i, err := strconv.Atoi(n)
			valid = err == nil && i >= 1 && i <= nodes
		}
		if !valid {
			return nil, fmt.Errorf("fault %q: unknown target %q (n1..n%d, nats1..nats3, nats-leader)", part, target, nodes)
		}
		st := orDefault(state[target], "run")
		next := ""
		switch action {
		case "kill9", "term":
			if st == "run" {
				next = "down"
			}
		case "stop":
			if st == "run" {
				next = "stop"
			}
		case "cont":
			if st == "stop" {
				next = "run"
			}
		case "start":
			if st == "down" {
				next = "run"
			}
		default:
			return nil, fmt.Errorf("fault %q: unknown action %q (kill9, term, stop, cont, start)", part, action)
		}
		if next == "" {
			return nil, fmt.Errorf("fault %q: %s cannot %s (it is %s then)", part, target, action,
				map[string]string{"run": "running", "stop": "stopped", "down": "not running"}[st])
		}
		state[target] = next
		out = append(out, Fault{At: at, Action: action, Target: target})
	}
	return out, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// disruptive reports whether f starts a fault (rather than ending one).
func (f Fault) disruptive() bool {
	return f.Action == "kill9" || f.Action == "term" || f.Action == "stop"
}

// faultJSON is a Fault in the JSON: its time in seconds.
type faultJSON struct {
	At     float64 `json:"at_s"`
	Action string  `json:"action"`
	Target string  `json:"target"`
}

func (f Fault) toJSON() faultJSON { return faultJSON{f.At.Seconds(), f.Action, f.Target} }

func (j faultJSON) fault() Fault {
	return Fault{time.Duration(j.At * float64(time.Second)).Round(time.Millisecond), j.Action, j.Target}
}

// MarshalJSON writes At in seconds.
func (f Fault) MarshalJSON() ([]byte, error) { return json.Marshal(f.toJSON()) }

// UnmarshalJSON reads At in seconds.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	err := json.Unmarshal(b, &j)
	*f = j.fault()
	return err
}

// resolve maps a schedule target to a node or NATS server name.
func (cc *chaosCluster) resolve(target string) (string, error) {
	if name, ok := cc.resolved[target]; ok {
		return name, nil
	}
	if target != "nats-leader" {
		return target, nil
	}
	for _, s := range cc.nats {
		if s.running() && !s.stopped {
			if l, err := s.metaLeader(); err == nil && l != "" {
				cc.resolved[target] = l
				return l, nil
			}
		}
	}
	return "", errors.New("no NATS server names a JetStream meta leader")
}

// apply does one step of the schedule and returns the name of its target
// and what it observed.
func (cc *chaosCluster) apply(f Fault) (string, string, error) {
	name, err := cc.resolve(f.Target)
	if err != nil {
		return "", "", err
	}
	at := time.Now()
	since := func() string { return time.Since(at).Round(time.Millisecond).String() }
	for _, s := range cc.nats {
		if s.name != name {
			continue
		}
		switch f.Action {
		case "kill9":
			if err := s.signal(syscall.SIGKILL); err != nil {
				return name, "", err
			}
			return name, "", s.waitExit(5 * time.Second)
		case "term":
			if err := s.signal(syscall.SIGTERM); err != nil {
				return name, "", err
			}
			if err := s.waitExit(30 * time.Second); err != nil {
				return name, "", err
			}
			return name, "exited after " + since(), nil
		case "stop":
			return name, "", s.signal(syscall.SIGSTOP)
		case "cont":
			err = s.signal(syscall.SIGCONT)
		case "start":
			err = s.start()
		}
		if err == nil {
			err = waitJetStream(cc.nats, 60*time.Second)
		}
		return name, "JetStream healthy after " + since(), err
	}
	nd := cc.node(name)
	if nd == nil {
		return name, "", fmt.Errorf("no node or NATS server %q", name)
	}
	switch f.Action {
	case "kill9":
		if err := nd.signal(syscall.SIGKILL); err != nil {
			return name, "", err
		}
		if err := nd.waitExit(5 * time.Second); err != nil {
			return name, "", err
		}
		if err := cc.waitRing(); err != nil {
			return name, "", err
		}
		return name, "declared dead after " + since(), nil
	case "term":
		if err := nd.signal(syscall.SIGTERM); err != nil {
			return name, "", err
		}
		if err := nd.waitExit(30 * time.Second); err != nil {
			return name, "", err
		}
		return name, "exited after " + since(), nil
	case "stop":
		cc.stoppedAt[name] = at
		return name, "", nd.signal(syscall.SIGSTOP)
	case "cont":
		if err := cc.waitRing(); err != nil { // the others saw it gone
			return name, "", err
		}
		dead := time.Since(cc.stoppedAt[name])
		if err := nd.signal(syscall.SIGCONT); err != nil {
			return name, "", err
		}
		if err := cc.waitRing(); err != nil {
			return name, "", err
		}
		return name, fmt.Sprintf("the others saw it gone by %v after SIGSTOP; whole again %s after SIGCONT",
			dead.Round(time.Millisecond), since()), nil
	case "start":
		if err := cc.startNode(nd); err != nil {
			return name, "", err
		}
		if err := cc.waitRing(); err != nil {
			return name, "", err
		}
		return name, "ready and in the ring after " + since(), nil
	}
	return name, "", fmt.Errorf("unknown action %q", f.Action)
}

// FaultEvent is a step as it ran: when it began and ended (seconds since
// the traffic started), the server it resolved to, what it observed.
type FaultEvent struct {
	Fault
	Resolved string  `json:"resolved"`
	BeganS   float64 `json:"began_s"`
	EndS     float64 `json:"end_s"`
	Note     string  `json:"note,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// faultEventJSON is a FaultEvent in the JSON: the step's fields next to
// the event's (Fault's own methods would otherwise stand for the whole).
type faultEventJSON struct {
	faultJSON
	Resolved string  `json:"resolved"`
	BeganS   float64 `json:"began_s"`
	EndS     float64 `json:"end_s"`
	Note     string  `json:"note,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// MarshalJSON keeps the step's fields next to the event's.
func (e FaultEvent) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultEventJSON{e.Fault.toJSON(), e.Resolved, e.BeganS, e.EndS, e.Note, e.Error})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *FaultEvent) UnmarshalJSON(b []byte) error {
	var j faultEventJSON
	err := json.Unmarshal(b, &j)
	*e = FaultEvent{Fault: j.faultJSON.fault(), Resolved: j.Resolved, BeganS: j.BeganS, EndS: j.EndS, Note: j.Note, Error: j.Error}
	return err
}
