//go:build linux

package e2e

// The parts of the chaos test that know nothing of what is measured: a
// server process that can be killed, stopped and restarted with the same
// command line; a NATS server cluster made of such processes; a fault
// schedule given as data and the loop that plays it; and a QoS 1
// publisher that counts a message as sent only when its PUBACK came.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/natsauth"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// daemon is a server process that is killed, stopped and restarted with
// the same command line, so a restart finds its data dir and its ports
// again. Every start appends to one log file. It is ended (continued
// first if stopped) when the test ends, and dies with the test process
// if that is killed (a timeout), so no run leaves processes behind.
type daemon struct {
	name string
	bin  string
	args []string
	log  string

	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped and not continued since
	starts  int
}

// newDaemon makes a daemon (not started) whose log is dir/<name>.log.
func newDaemon(t *testing.T, name, bin, dir string, args ...string) *daemon {
	d := &daemon{name: name, bin: bin, args: args, log: filepath.Join(dir, name+".log")}
	t.Cleanup(func() {
		d.end()
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("--- log of %s (last 3000 bytes)\n%s", d.name, tail(b, 3000))
		}
	})
	return d
}

// start launches the process; it does not wait for it to serve.
func (d *daemon) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	d.starts++
	fmt.Fprintf(f, "=== start %d of %s\n", d.starts, d.name)
	cmd := exec.Command(d.bin, d.args...)
	cmd.Env = testutil.CleanEnv()
	cmd.Stdout, cmd.Stderr = f, f
	// If the test process dies (a go test timeout), its servers die too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(exited) }()
	d.cmd, d.exited, d.stopped = cmd, exited, false
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
func (d *daemon) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if !d.running() {
		t.Fatalf("%s: %v to a process that is not running", d.name, sig)
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v: %v", d.name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		d.stopped = true
	case syscall.SIGCONT:
		d.stopped = false
	}
}

// waitExit waits up to within for the process to exit.
func (d *daemon) waitExit(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case <-d.exited:
	case <-time.After(within):
		t.Fatalf("%s has not exited %v after it was told to", d.name, within)
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

// logCount counts the occurrences of s in the daemon's log.
func (d *daemon) logCount(s string) int {
	b, _ := os.ReadFile(d.log)
	return strings.Count(string(b), s)
}

// natsServerBinary builds the NATS server of go.mod once for the whole
// test binary: the version pushring is built and tested against.
func natsServerBinary(t *testing.T) string {
	return goBinary(t, "nats-server", "github.com/nats-io/nats-server/v2")
}

// natsServer is one server of a NATS cluster, in a process of its own.
type natsServer struct {
	*daemon
	client, route, monitor string // loopback addresses
}

// url is the server's client URL.
func (s *natsServer) url() string { return "nats://" + s.client }

// startNATSCluster starts n NATS servers as separate processes, routed to
// each other on loopback, each with JetStream on a file store of its own
// and the authorization block that gives each node of keys exactly
// natsauth.NodePermissions (what `pushctl nats-config` prints for an
// external server). It returns when JetStream has a meta leader and every
// server is healthy.
func startNATSCluster(t *testing.T, n int, cluster string, keys []natsauth.Key) []*natsServer {
	t.Helper()
	bin := natsServerBinary(t)
	servers := make([]*natsServer, n)
	var routes []string
	for i := range servers {
		s := &natsServer{client: freeAddr(t), route: freeAddr(t), monitor: freeAddr(t)}
		servers[i] = s
		routes = append(routes, strconv.Quote("nats-route://"+s.route))
	}
	auth := natsauth.Config(cluster, keys)
	for i, s := range servers {
		name := "nats" + strconv.Itoa(i+1)
		dir := t.TempDir()
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
  name: "chaos"
  listen: %q
  routes: [%s]
}
%s`, name, s.client, s.monitor, filepath.Join(dir, "js"), s.route, strings.Join(routes, ", "), auth)
		path := filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s.daemon = newDaemon(t, name, bin, dir, "-c", path)
		s.start(t)
	}
	waitJetStream(t, servers, 60*time.Second)
	return servers
}

// jsz is the part of a NATS server's /jsz answer the test reads.
type jsz struct {
	Meta *struct {
		Leader      string `json:"leader"`
		ClusterSize int    `json:"cluster_size"`
	} `json:"meta_cluster"`
}

// hasClient reports whether a client connection named name (a pushring
// node names its connection "pushring-<node id>") is on server s.
func (s *natsServer) hasClient(name string) (bool, error) {
	var c struct {
		Conns []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := getJSON("http://"+s.monitor+"/connz?limit=1024", &c); err != nil {
		return false, err
	}
	for _, conn := range c.Conns {
		if conn.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// metaLeader is the JetStream meta leader as server s sees it ("" if none).
func (s *natsServer) metaLeader() (string, error) {
	var j jsz
	if err := getJSON("http://"+s.monitor+"/jsz", &j); err != nil {
		return "", err
	}
	if j.Meta == nil {
		return "", nil
	}
	return j.Meta.Leader, nil
}

// waitJetStream waits until every running server of servers names the
// same JetStream meta leader and answers its /healthz (which checks that
// its JetStream assets are current) with 200.
func waitJetStream(t *testing.T, servers []*natsServer, within time.Duration) {
	t.Helper()
	testutil.CheckFor(t, within, 100*time.Millisecond, func() error {
		leader := ""
		for _, s := range servers {
			if !s.running() {
				if s.stopped {
					continue
				}
				b, _ := os.ReadFile(s.log)
				t.Fatalf("%s exited:\n%s", s.name, tail(b, 3000))
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
		return nil
	})
}

// httpOK GETs url (with a timeout) and wants 200.
func httpOK(url string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return nil
}

// getJSON GETs url (with a timeout: a stopped server never answers) and
// decodes its JSON answer into out.
func getJSON(url string, out any) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// fault is one step of a fault schedule: at (after the traffic started)
// do action to target. A step starts at its time or when the step before
// it has finished, whichever is later. Actions:
//
//	kill9  SIGKILL, then wait until the others see the target gone
//	term   SIGTERM, then wait for the process to exit
//	stop   SIGSTOP
//	cont   wait until the others declared the stopped target dead (so a
//	       pause always outlasts the failure detector), SIGCONT, then
//	       wait until it is back
//	start  restart with the same command line, data dir and ports, and
//	       wait until it is back
//
// Targets are names the runner resolves when a step runs (a role such as
// "the group's owner" maps to a node, "nats:leader" to the JetStream meta
// leader of that moment); a name keeps what it resolved to for the rest
// of the schedule.
type fault struct {
	at     time.Duration
	action string
	target string
}

// disruptive reports whether f starts a fault (rather than ending one).
func (f fault) disruptive() bool {
	return f.action == "kill9" || f.action == "term" || f.action == "stop"
}

// faultEvent is a step as it ran: when it began and ended (since the
// traffic started) and the target it resolved to.
type faultEvent struct {
	fault
	resolved   string
	began, end time.Duration
	note       string // what the step observed (a detection time, say)
}

// runFaults plays schedule from t0 on (the traffic's start), calling do
// for each step once its time has come and the step before it is done.
// do returns the resolved target and a note.
func runFaults(t *testing.T, t0 time.Time, schedule []fault, do func(f fault) (string, string)) []faultEvent {
	t.Helper()
	var out []faultEvent
	for _, f := range schedule {
		if wait := f.at - time.Since(t0); wait > 0 {
			time.Sleep(wait) // the schedule is a timetable: the clock is what it is about
		}
		ev := faultEvent{fault: f, began: time.Since(t0)}
		ev.resolved, ev.note = do(f)
		ev.end = time.Since(t0)
		t.Logf("chaos step: %s %s (%s) at %v, done at %v %s", f.action, f.target, ev.resolved,
			ev.began.Round(time.Millisecond), ev.end.Round(time.Millisecond), ev.note)
		out = append(out, ev)
	}
	return out
}

// pubRecord is one message of a qos1Publisher.
type pubRecord struct {
	topic   string
	payload []byte
	made    time.Duration // when the publisher made it (since its epoch)
	acked   time.Duration // when its PUBACK came; 0: none
	sends   int           // how many times it was written (DUP after the first)
}

// qos1Publisher publishes numbered QoS 1 messages at a steady rate over
// one MQTT connection with a persistent session, as a careful device
// does: it keeps every message until its PUBACK and, after a reconnect
// (through addrs, in order, the first first), re-sends the unacknowledged
// ones in their order, with DUP set, before any new one. Messages made
// while it is disconnected wait for the next connection. Only a PUBACK
// makes a message one the service owes its recipients: each message
// records when it was made and when its PUBACK came.
type qos1Publisher struct {
	name     string
	clientID string
	user     string
	password string
	addrs    []string
	every    time.Duration
	epoch    time.Time
	message  func(seq int) (topic, payload string)

	mu       sync.Mutex
	msgs     []pubRecord
	sent     int            // msgs[:sent] were written at least once
	inflight map[uint16]int // packet id → seq, awaiting PUBACK
	lost     []time.Duration
	conns    []string // the address of each connection, in order

	kick       chan struct{}
	stopMaking chan struct{}
	quit       chan struct{}
	made, done chan struct{}
}

// start begins making messages and connecting.
func (p *qos1Publisher) start() {
	p.inflight = map[uint16]int{}
	p.kick = make(chan struct{}, 1)
	p.stopMaking, p.quit = make(chan struct{}), make(chan struct{})
	p.made, p.done = make(chan struct{}), make(chan struct{})
	go p.make()
	go p.run()
}

func (p *qos1Publisher) make() {
	defer close(p.made)
	tick := time.NewTicker(p.every)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		topic, payload := p.message(seq)
		p.mu.Lock()
		p.msgs = append(p.msgs, pubRecord{topic: topic, payload: []byte(payload), made: time.Since(p.epoch)})
		p.mu.Unlock()
		select {
		case p.kick <- struct{}{}:
		default:
		}
		select {
		case <-p.stopMaking:
			return
		case <-tick.C:
		}
	}
}

// finish stops making messages, waits up to within for the PUBACKs of
// those made, and closes the connection.
func (p *qos1Publisher) finish(within time.Duration) {
	select {
	case <-p.stopMaking:
	default:
		close(p.stopMaking)
	}
	<-p.made
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) && p.unacked() > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	<-p.done
}

func (p *qos1Publisher) unacked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, m := range p.msgs {
		if m.acked == 0 {
			n++
		}
	}
	return n
}

// records returns a copy of the messages.
func (p *qos1Publisher) records() []pubRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pubRecord(nil), p.msgs...)
}

// packetID is the packet id of message seq: fewer than 65,535 messages are
// ever awaiting their PUBACK at once, so ids never clash, and a re-sent
// message keeps its id (as MQTT asks of a persistent session).
func packetID(seq int) uint16 { return uint16(seq%65535) + 1 }

func (p *qos1Publisher) run() {
	defer close(p.done)
	for {
		conn, addr := p.dial()
		if conn == nil {
			return
		}
		p.mu.Lock()
		p.conns = append(p.conns, addr)
		p.mu.Unlock()
		quit := p.serve(conn)
		if quit {
			return
		}
		p.mu.Lock()
		p.lost = append(p.lost, time.Since(p.epoch))
		p.mu.Unlock()
	}
}

// dial connects to the first address of addrs that accepts the session,
// retrying every 200 ms; nil once quit is closed.
func (p *qos1Publisher) dial() (*mqttc.Conn, string) {
	for {
		for _, a := range p.addrs {
			select {
			case <-p.quit:
				return nil, ""
			default:
			}
			c, err := mqttc.DialTCP(a, mqttc.Options{Timeout: 2 * time.Second, BufSize: 4 << 10})
			if err != nil {
				continue
			}
			_, code, err := c.Connect(&packet.Connect{ClientID: p.clientID, Username: p.user, Password: []byte(p.password), KeepAlive: 3}, 2*time.Second)
			if err == nil && code == packet.ConnAccepted {
				return c, a
			}
			c.Abort()
		}
		select {
		case <-p.quit:
			return nil, ""
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// serve re-sends what awaits a PUBACK, then sends messages as they are
// made and pings every second, until the connection fails (false) or quit
// (true). A connection silent for 3 s (no PUBACK, no PINGRESP) is dead.
func (p *qos1Publisher) serve(c *mqttc.Conn) bool {
	dead := make(chan error, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			h, body, err := c.ReadPacket(3 * time.Second)
			if err != nil {
				dead <- err
				return
			}
			if h>>4 != packet.PUBACK {
				continue
			}
			id, err := packet.DecodeAck(h, body, packet.V311)
			if err != nil {
				dead <- err
				return
			}
			now := time.Since(p.epoch)
			p.mu.Lock()
			if seq, ok := p.inflight[id]; ok {
				delete(p.inflight, id)
				if p.msgs[seq].acked == 0 {
					p.msgs[seq].acked = now
				}
			}
			p.mu.Unlock()
		}
	}()
	closeConn := func(graceful bool) {
		if graceful {
			c.Close()
		} else {
			c.Abort()
		}
		<-readerDone
	}
	var buf []byte
	// write sends messages from..to (re-sends: those not acknowledged).
	write := func(from, to int, resend bool) error {
		buf = buf[:0]
		p.mu.Lock()
		for seq := from; seq < to; seq++ {
			m := &p.msgs[seq]
			if resend && m.acked != 0 {
				continue
			}
			id := packetID(seq)
			p.inflight[id] = seq
			m.sends++
			buf = packet.AppendPublish(buf, 1, resend, false, id, m.payload, m.topic)
		}
		p.mu.Unlock()
		if len(buf) == 0 {
			return nil
		}
		return c.WritePacket(buf, 2*time.Second)
	}
	p.mu.Lock()
	resendTo := p.sent
	p.mu.Unlock()
	if err := write(0, resendTo, true); err != nil {
		closeConn(false)
		return false
	}
	ping := time.NewTicker(time.Second)
	defer ping.Stop()
	for {
		select {
		case <-p.kick:
			p.mu.Lock()
			from, to := p.sent, len(p.msgs)
			p.sent = to
			p.mu.Unlock()
			if err := write(from, to, false); err != nil {
				closeConn(false)
				return false
			}
		case <-ping.C:
			if err := c.WritePacket(packet.AppendPingreq(nil), 2*time.Second); err != nil {
				closeConn(false)
				return false
			}
		case <-dead:
			closeConn(false)
			return false
		case <-p.quit:
			closeConn(true)
			return true
		}
	}
}
