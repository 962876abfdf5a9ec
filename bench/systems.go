package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pushring/pushring/client"
	"github.com/pushring/pushring/internal/chaos"
)

// Client is one MQTT identity of a scenario.
type Client struct {
	ID       string // client id
	Username string
	Password string
	Filter   string // subscription (members)
	Topic    string // publish topic (publishers)
	Inbox    string // topic a direct message to this client goes to (direct scenario)
	Group    int
	Addr     string // MQTT address to dial (cluster: the client's home node); "": the system's
}

// FanoutPlan is what a system set up for the fanout scenario.
type FanoutPlan struct {
	Members    []Client // grouped: Members[i].Group
	Publishers []Client
	Note       string
	// Offline is the members per group set up beyond Members that never
	// connect (pushring's UseOfflineMembers): nothing is expected at them.
	Offline int
}

// System is a server under test.
type System interface {
	Name() string
	MQTTAddr() string
	PID() int // 0 when unknown
	SetupFanout(ctx context.Context, groups, members, devices int) (*FanoutPlan, error)
	// SetupDirect prepares users receiving clients, each with its Inbox,
	// and senders publishers allowed to message every one of them.
	SetupDirect(ctx context.Context, users, senders int) (*FanoutPlan, error)
	// SetupIdle prepares k subscribing clients that never publish.
	SetupIdle(ctx context.Context, k int) (*FanoutPlan, error)
	Stop() error
}

// freePort returns a loopback port free for TCP and UDP now, never one
// handed out before in this process (chaos.FreeAddr).
func freePort() (int, error) {
	addr, err := chaos.FreeAddr()
	if err != nil {
		return 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	return strconv.Atoi(port)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// process is a server the harness started.
type process struct {
	cmd  *exec.Cmd
	dir  string // temp dir, removed on stop
	log  string
	done chan struct{}
	err  error
}

func startProcess(dir, logName string, env []string, bin string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, logName)
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHRING_") { // the started node is configured by its flags only
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	p := &process{cmd: cmd, dir: dir, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); lf.Close(); close(p.done) }()
	return p, nil
}

func (p *process) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// waitTCP waits until addr accepts connections or the process exits.
func (p *process) waitTCP(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("exited (%v): %s", p.err, p.logTail())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not listening on %s after %v: %s", addr, timeout, p.logTail())
}

func (p *process) stop() error {
	if p == nil {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	return os.RemoveAll(p.dir)
}

func (p *process) pid() int {
	if p == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// ---- pushring ----

// Pushring is a pushring node: one the harness started (StartPushring) or
// one already running (NewPushring).
type Pushring struct {
	mqtt, http string
	pid        int
	proc       *process
	hc         *http.Client
	api        *client.Client // the admin key's
	prefix     string
	tls        *clientTLS  // clients dial mqtt over TLS; nil: plain TCP
	ws         bool        // clients dial MQTT over WebSocket at /mqtt on the HTTP listener
	ruleTopics bool        // fanout on a rule topic per group (UseRuleTopics)
	hook       *HookServer // the webhook receiver registered (UseWebhook); closed by Stop
	offline    int         // members per group that never connect (UseOfflineMembers)
}

// NewPushring targets a running node.
func NewPushring(mqttAddr, httpURL, adminKey string, pid int) *Pushring {
	s := &Pushring{mqtt: mqttAddr, http: strings.TrimRight(httpURL, "/"), pid: pid,
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	s.api = &client.Client{BaseURL: s.http, HTTP: s.hc, AdminKey: adminKey}
	return s
}

// StartPushring starts the node binary bin on free loopback ports with a
// temp data dir (removed on Stop), connection and login rate limits off;
// extra flags go to the node after the harness's own. With t, the node
// also serves MQTT over TLS with t's certificate (--tls-cert, --tls-key,
// --mqtt-tls-addr on a free port; no HTTPS listener) and the clients dial
// that listener; the API stays plain HTTP on loopback.
func StartPushring(bin string, t *TLSMaterial, extra ...string) (*Pushring, error) {
	dir, err := os.MkdirTemp("", "pushbench-pushring-")
	if err != nil {
		return nil, err
	}
	var ports [4]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	key := randHex(32)
	mqtt := "127.0.0.1:" + strconv.Itoa(ports[0])
	httpAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
	args := []string{
		"--data-dir", filepath.Join(dir, "data"),
		"--mqtt-addr", mqtt, "--http-addr", httpAddr,
		"--gossip-addr", "127.0.0.1:" + strconv.Itoa(ports[2]),
		"--node-id", "bench",
		"--connect-rate", "-1", "--login-rate", "-1", "--publish-rate", "-1", "--publish-bytes-rate", "-1", "--log-level", "warn",
		"--webhook-allow-private"} // the harness's webhook receiver is on loopback
	var ct *clientTLS
	if t != nil {
		f, c, err := t.install(dir)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		ct = c
		mqtt = "127.0.0.1:" + strconv.Itoa(ports[3])
		args = append(args, "--tls-cert", f.cert, "--tls-key", f.key, "--mqtt-tls-addr", mqtt, "--https-addr", "off")
	}
	p, err := startProcess(dir, "pushring.log", []string{"PUSHRING_ADMIN_KEY=" + key}, bin, append(args, extra...)...)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := NewPushring(mqtt, "http://"+httpAddr, key, 0)
	s.tls = ct
	s.proc = p
	s.pid = p.pid()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.done:
			err := fmt.Errorf("pushring exited (%v): %s", p.err, p.logTail())
			p.stop()
			return nil, err
		default:
		}
		if resp, err := s.hc.Get(s.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			err := fmt.Errorf("pushring not ready after 60 s: %s", p.logTail())
			p.stop()
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s, nil
}

func (s *Pushring) Name() string {
	name := "pushring"
	if s.ruleTopics {
		name += "+topics"
	}
	if s.hook != nil {
		name += HookSuffix(s.hook.Kind)
	}
	switch {
	case s.tls != nil:
		name += TLSSuffix
	case s.ws:
		name += WSSuffix
	}
	return name
}

// UseWebSocket points the clients at the node's MQTT over WebSocket
// (/mqtt on its HTTP listener) instead of MQTT over TCP.
func (s *Pushring) UseWebSocket() { s.ws = true }

// RuleTopicsFile is a topic rules file (--topic-rules) that opens
// bench/# to every device, to publish and subscribe: the plain broker
// shape of UseRuleTopics.
const RuleTopicsFile = `{"rules": [{"pattern": "bench/#", "publish": ["devices"], "subscribe": ["devices"]}]}`

// UseRuleTopics makes SetupFanout use no groups: each "group" is a rule
// topic bench/<gid> its members subscribe to and its publishers publish
// to, as on a plain broker (the node must run with RuleTopicsFile).
func (s *Pushring) UseRuleTopics() { s.ruleTopics = true }

func (s *Pushring) clientTLS() *clientTLS { return s.tls }
func (s *Pushring) webSocket() string {
	if s.ws {
		return "/mqtt"
	}
	return ""
}
func (s *Pushring) MQTTAddr() string {
	if s.ws {
		return strings.TrimPrefix(s.http, "http://")
	}
	return s.mqtt
}
func (s *Pushring) PID() int { return s.pid }
func (s *Pushring) Stop() error {
	err := s.proc.stop()
	s.hook.Close() // after the node: a dead receiver holds its requests until then
	return err
}

// parallel runs fn(i) for i in [0, n) on k workers and returns the first error.
func parallel(ctx context.Context, n, k int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(k, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					cancel(err)
				}
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// SetupFanout creates, under a per-run prefix, G groups, G×M member devices
// and G×D publisher devices through the HTTP API. Members are devices
// (POST /v1/devices): they log in over MQTT with their key, no argon2 on
// the node, unlike users' password logins.
func (s *Pushring) SetupFanout(ctx context.Context, groups, members, devices int) (*FanoutPlan, error) {
	if s.prefix == "" {
		s.prefix = "pb" + randHex(3) + "-"
	}
	plan := &FanoutPlan{
		Members:    make([]Client, groups*members),
		Publishers: make([]Client, groups*devices),
		Note:       "members and publishers are devices (POST /v1/devices, key auth, no argon2); members subscribe /private/<id>/#",
	}
	gid := func(g int) string { return s.prefix + "g" + strconv.Itoa(g) }
	if s.ruleTopics {
		return s.setupRuleTopics(ctx, plan, gid, members, devices)
	}
	if err := parallel(ctx, groups, 8, func(ctx context.Context, g int) error {
		_, err := s.api.CreateGroup(ctx, gid(g), false)
		return err
	}); err != nil {
		return nil, err
	}
	device := func(ctx context.Context, id string) (string, error) {
		d, err := s.api.CreateDevice(ctx, id)
		if err != nil {
			return "", err
		}
		return d.Key, nil
	}
	if err := parallel(ctx, len(plan.Members), 16, func(ctx context.Context, i int) error {
		g := i / members
		id := fmt.Sprintf("%sg%dm%d", s.prefix, g, i%members)
		key, err := device(ctx, id)
		if err != nil {
			return err
		}
		plan.Members[i] = Client{ID: id, Username: id, Password: key, Filter: "/private/" + id + "/#", Group: g}
		_, err = s.api.SetMember(ctx, gid(g), id, true)
		return err
	}); err != nil {
		return nil, err
	}
	if s.offline > 0 {
		// Members that never connect: not in the plan, so the run expects
		// nothing at them; each group message is one message.offline
		// event per such member.
		if err := parallel(ctx, groups*s.offline, 16, func(ctx context.Context, i int) error {
			g := i / s.offline
			id := fmt.Sprintf("%sg%do%d", s.prefix, g, i%s.offline)
			if _, err := device(ctx, id); err != nil {
				return err
			}
			_, err := s.api.SetMember(ctx, gid(g), id, true)
			return err
		}); err != nil {
			return nil, err
		}
		plan.Offline = s.offline
		plan.Note += fmt.Sprintf("; %d more members per group never connect (offline: a message.offline webhook event each per message)", s.offline)
	}
	if err := parallel(ctx, len(plan.Publishers), 8, func(ctx context.Context, i int) error {
		g := i / devices
		id := fmt.Sprintf("%sg%dd%d", s.prefix, g, i%devices)
		key, err := device(ctx, id)
		if err != nil {
			return err
		}
		plan.Publishers[i] = Client{ID: id, Username: id, Password: key, Topic: "/group/" + gid(g), Group: g}
		_, err = s.api.SetPublisher(ctx, gid(g), id, true)
		return err
	}); err != nil {
		return nil, err
	}
	return plan, nil
}

// setupRuleTopics is SetupFanout with UseRuleTopics: devices subscribe
// to and publish to bench/<gid>, no group in the store.
func (s *Pushring) setupRuleTopics(ctx context.Context, plan *FanoutPlan, gid func(int) string, members, devices int) (*FanoutPlan, error) {
	plan.Note = "rule topics (--topic-rules: bench/# open to devices): members and publishers are devices; a group is one topic bench/<gid>, as on a plain broker"
	all := append(plan.Members, plan.Publishers...)
	if err := parallel(ctx, len(all), 16, func(ctx context.Context, i int) error {
		role, k, per := "m", i, members
		if i >= len(plan.Members) {
			role, k, per = "d", i-len(plan.Members), devices
		}
		g := k / per
		id := fmt.Sprintf("%sg%d%s%d", s.prefix, g, role, k%per)
		d, err := s.api.CreateDevice(ctx, id)
		if err != nil {
			return err
		}
		c := Client{ID: id, Username: id, Password: d.Key, Group: g}
		if role == "m" {
			c.Filter = "bench/" + gid(g)
			plan.Members[k] = c
		} else {
			c.Topic = "bench/" + gid(g)
			plan.Publishers[k] = c
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return plan, nil
}

// SetupDirect puts users member devices and senders publisher devices in
// one group, so CanDirect holds between every sender and every user; a
// direct message to a user goes to /private/<id>.
func (s *Pushring) SetupDirect(ctx context.Context, users, senders int) (*FanoutPlan, error) {
	plan, err := s.SetupFanout(ctx, 1, users, senders)
	if err != nil {
		return nil, err
	}
	for i := range plan.Members {
		plan.Members[i].Inbox = "/private/" + plan.Members[i].ID
	}
	plan.Note = "users and senders are devices in one group (so they may message each other); users subscribe /private/<id>/#, senders publish to /private/<id>"
	return plan, nil
}

// SetupIdle creates k devices under a per-run prefix; each subscribes to
// its own /private/<id>/#.
func (s *Pushring) SetupIdle(ctx context.Context, k int) (*FanoutPlan, error) {
	if s.prefix == "" {
		s.prefix = "pb" + randHex(3) + "-"
	}
	plan := &FanoutPlan{Note: "clients are devices (POST /v1/devices, key auth) subscribed to /private/<id>/#"}
	var err error
	if plan.Members, err = s.privateDevices(ctx, "i", k); err != nil {
		return nil, err
	}
	return plan, nil
}

// privateDevices creates n devices, prefix+tag+i, each subscribing to its
// own /private/<id>/#.
func (s *Pushring) privateDevices(ctx context.Context, tag string, n int) ([]Client, error) {
	out := make([]Client, n)
	err := parallel(ctx, n, 16, func(ctx context.Context, i int) error {
		id := s.prefix + tag + strconv.Itoa(i)
		d, err := s.api.CreateDevice(ctx, id)
		if err != nil {
			return err
		}
		out[i] = Client{ID: id, Username: id, Password: d.Key, Filter: "/private/" + id + "/#"}
		return nil
	})
	return out, err
}

// ---- plain brokers ----

// Broker is a plain MQTT broker the harness started: a group is one topic
// /group/<gid> that all its members subscribe to, no auth.
type Broker struct {
	name string
	addr string
	proc *process
	tls  *clientTLS // clients dial addr over TLS; nil: plain TCP
	ws   string     // the WebSocket path clients dial; "": MQTT over TCP
}

func (b *Broker) Name() string          { return b.name }
func (b *Broker) clientTLS() *clientTLS { return b.tls }
func (b *Broker) webSocket() string     { return b.ws }
func (b *Broker) MQTTAddr() string      { return b.addr }
func (b *Broker) PID() int              { return b.proc.pid() }
func (b *Broker) Stop() error           { return b.proc.stop() }

func (b *Broker) SetupFanout(ctx context.Context, groups, members, devices int) (*FanoutPlan, error) {
	plan := &FanoutPlan{Note: "anonymous; a group is one topic /group/<gid> its members subscribe to"}
	for g := range groups {
		topic := "/group/g" + strconv.Itoa(g)
		for i := range members {
			id := fmt.Sprintf("g%dm%d", g, i)
			plan.Members = append(plan.Members, Client{ID: id, Filter: topic, Group: g})
		}
	}
	for g := range groups {
		for i := range devices {
			id := fmt.Sprintf("g%dd%d", g, i)
			plan.Publishers = append(plan.Publishers, Client{ID: id, Topic: "/group/g" + strconv.Itoa(g), Group: g})
		}
	}
	return plan, nil
}

// SetupDirect: each user subscribes to its own topic /u/<id>, senders
// publish to it; no auth.
func (b *Broker) SetupDirect(ctx context.Context, users, senders int) (*FanoutPlan, error) {
	plan := &FanoutPlan{Note: "anonymous; each user subscribes to its own topic /u/<id>, senders publish to it"}
	for i := range users {
		id := "u" + strconv.Itoa(i)
		plan.Members = append(plan.Members, Client{ID: id, Filter: "/u/" + id, Inbox: "/u/" + id})
	}
	for i := range senders {
		plan.Publishers = append(plan.Publishers, Client{ID: "s" + strconv.Itoa(i)})
	}
	return plan, nil
}

// SetupIdle: k anonymous clients, each subscribed to its own topic /c/<id>.
func (b *Broker) SetupIdle(ctx context.Context, k int) (*FanoutPlan, error) {
	plan := &FanoutPlan{Members: make([]Client, k), Note: "anonymous; each client subscribes to its own topic /c/<id>"}
	for i := range plan.Members {
		id := "i" + strconv.Itoa(i)
		plan.Members[i] = Client{ID: id, Filter: "/c/" + id}
	}
	return plan, nil
}

// PersistSuffix names a broker's durable variant: "mosquitto-persist" is
// mosquitto with persistence on (StartMosquittoPersist).
const PersistSuffix = "-persist"

// MosquittoPath finds the mosquitto binary.
func MosquittoPath() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto", nil
	}
	return "", errors.New("mosquitto not found (Debian: apt-get install mosquitto)")
}

// StartMosquitto starts mosquitto on a free loopback port; with t, that
// listener speaks TLS with t's certificate (certfile, keyfile, cafile;
// no client certificate required) and the row is "mosquitto+tls".
func StartMosquitto(bin string, t *TLSMaterial) (*Broker, error) {
	return startMosquitto(bin, t, false, false)
}

// StartMosquittoPersist starts mosquitto as StartMosquitto does, with
// persistence on (persistence true, persistence_location in its temp dir,
// mosquitto's other persistence settings at their defaults): the row is
// "mosquitto-persist", the durable configuration a QoS 1 deployment of
// mosquitto would run.
func StartMosquittoPersist(bin string, t *TLSMaterial) (*Broker, error) {
	return startMosquitto(bin, t, true, false)
}

// StartMosquittoWS is StartMosquitto (persist false) or
// StartMosquittoPersist with a WebSocket listener instead of MQTT over
// TCP (protocol websockets); the row is "mosquitto+ws".
func StartMosquittoWS(bin string, persist bool) (*Broker, error) {
	return startMosquitto(bin, nil, persist, true)
}

func startMosquitto(bin string, t *TLSMaterial, persist, ws bool) (*Broker, error) {
	dir, err := os.MkdirTemp("", "pushbench-mosquitto-")
	if err != nil {
		return nil, err
	}
	os.Chmod(dir, 0o755) // mosquitto may drop root for user mosquitto
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b := &Broker{name: "mosquitto", addr: "127.0.0.1:" + strconv.Itoa(port)}
	persistence := "persistence false\n"
	if persist {
		// Started as root, mosquitto drops to user mosquitto before it
		// writes its database: the directory must be writable by anyone.
		pdir := filepath.Join(dir, "persist")
		if err := os.Mkdir(pdir, 0o777); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		os.Chmod(pdir, 0o777) // past the umask
		// persistence_location must end with a slash.
		persistence = fmt.Sprintf("persistence true\npersistence_location %s/\n", pdir)
		b.name += PersistSuffix
	}
	conf := fmt.Sprintf("allow_anonymous true\nmax_queued_messages 1000000\n%slog_dest stderr\nlog_type error\nlog_type warning\n", persistence)
	if ws {
		// mosquitto 2.0 refuses to start with websockets listeners only
		// ("Unable to start any listening sockets": they are not counted),
		// so a plain one no client uses comes first.
		tcp, err := freePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		conf += fmt.Sprintf("listener %d 127.0.0.1\n", tcp)
	}
	conf += fmt.Sprintf("listener %d 127.0.0.1\n", port)
	if ws {
		conf += "protocol websockets\n" // of the listener above
		b.ws = "/mqtt"
		b.name += WSSuffix
	}
	if t != nil {
		var f tlsFiles
		f, b.tls, err = t.install(dir)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		// These lines belong to the listener above them.
		conf += fmt.Sprintf("certfile %s\nkeyfile %s\ncafile %s\n", f.cert, f.key, f.ca)
		b.name += TLSSuffix
	}
	cf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p, err := startProcess(dir, "mosquitto.log", nil, bin, "-c", cf)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.waitTCP(b.addr, 10*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	b.proc = p
	return b, nil
}

// NATSServerPath returns a nats-server binary: the cached build in the
// user cache dir, built once with `go build github.com/nats-io/nats-server/v2`
// from the module of the current directory (the pushring checkout).
func NATSServerPath() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/nats-io/nats-server/v2").Output()
	if err != nil {
		// Outside the checkout: any build cached before will do.
		if found, _ := filepath.Glob(filepath.Join(cache, "pushbench", "nats-server-*")); len(found) > 0 {
			return found[len(found)-1], nil
		}
		return "", fmt.Errorf("nats-server: no cached build and no nats-server/v2 module here (run from the pushring checkout or pass --nats-server): %v", err)
	}
	bin := filepath.Join(cache, "pushbench", "nats-server-"+strings.TrimSpace(string(out)))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	fmt.Fprintf(os.Stderr, "pushbench: building %s (once)\n", bin)
	cmd := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("nats-server: go build: %v: %s", err, b)
	}
	return bin, nil
}

// StartNATS starts the NATS server with JetStream (which its MQTT needs)
// and MQTT on free loopback ports; with t, its MQTT listener speaks TLS
// with t's certificate (mqtt { tls { … } }) and the row is "nats+tls".
func StartNATS(bin string, t *TLSMaterial) (*Broker, error) { return startNATS(bin, t, false) }

// StartNATSWS is StartNATS with the clients on its MQTT over WebSocket
// (a websocket listener, path /mqtt, no TLS); the row is "nats+ws".
func StartNATSWS(bin string) (*Broker, error) { return startNATS(bin, nil, true) }

func startNATS(bin string, t *TLSMaterial, ws bool) (*Broker, error) {
	dir, err := os.MkdirTemp("", "pushbench-nats-")
	if err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	b := &Broker{name: "nats", addr: "127.0.0.1:" + strconv.Itoa(ports[1])}
	var mqttTLS string
	if t != nil {
		var f tlsFiles
		f, b.tls, err = t.install(dir)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		mqttTLS = fmt.Sprintf(", tls { cert_file: %q, key_file: %q }", f.cert, f.key)
		b.name += TLSSuffix
	}
	conf := fmt.Sprintf("server_name: pushbench\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\nmqtt { listen: %q%s }\n",
		ports[0], filepath.Join(dir, "js"), b.addr, mqttTLS)
	if ws {
		b.addr = "127.0.0.1:" + strconv.Itoa(ports[2])
		conf += fmt.Sprintf("websocket { listen: %q, no_tls: true }\n", b.addr)
		b.ws = "/mqtt"
		b.name += WSSuffix
	}
	cf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p, err := startProcess(dir, "nats.log", nil, bin, "-c", cf)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := p.waitTCP(b.addr, 20*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("nats: %w", err)
	}
	b.proc = p
	return b, nil
}
