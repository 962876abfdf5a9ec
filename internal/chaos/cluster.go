package chaos

import (
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/internal/natsauth"
)

// ErrInvalidConfig matches every error Start returns for a Config it
// cannot run.
var ErrInvalidConfig = errors.New("chaos: invalid config")

var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "chaos"}

// Config is a chaos cluster: pushring nodes n1…n<Nodes>, separate
// processes, on a cluster of NATS servers, separate processes too.
type Config struct {
	Bin     string // the pushring binary; required
	NATSBin string // the nats-server binary; required
	// Dir holds every process's data dir, config and log (n1/n1.log,
	// nats1/nats1.log…). Required; the caller removes it.
	Dir      string
	AdminKey string // the nodes' admin key, given in a file; required
	// Nodes is the number of pushring nodes. Default 3: the smallest
	// cluster in which one node's fault leaves a majority.
	Nodes int
	// NATSServers is the size of the NATS cluster. Default 3: JetStream
	// R3 survives the loss of one.
	NATSServers int
	// Cluster is the nodes' --cluster: the NATS subjects and the
	// permissions derive from it. Default "pushring", the nodes' own.
	Cluster string
	// Flags go to every node after the harness's own (node id, data dir,
	// addresses, NATS URLs, replicas 3, keys, --join).
	Flags []string
}

// DefaultConfig is three nodes on three NATS servers.
func DefaultConfig() Config { return Config{}.withDefaults() }

func (c Config) withDefaults() Config {
	c.Nodes = cmp.Or(c.Nodes, 3)
	c.NATSServers = cmp.Or(c.NATSServers, 3)
	c.Cluster = cmp.Or(c.Cluster, "pushring")
	return c
}

func (c Config) validate() error {
	return configerr.First(
		check.If(c.Bin == "" || c.NATSBin == "", "Bin and NATSBin are required"),
		check.If(c.Dir == "", "Dir is required"),
		check.If(c.AdminKey == "", "AdminKey is required"),
		configerr.Positive(check, "Nodes", c.Nodes),
		configerr.Positive(check, "NATSServers", c.NATSServers),
	)
}

// Validate reports whether Start can run c (zero fields take their
// defaults); its errors match ErrInvalidConfig.
func (c Config) Validate() error { return c.withDefaults().validate() }

// Node is one pushring node process of a chaos cluster.
type Node struct {
	*Daemon
	ID                 string
	MQTT, HTTP, Gossip string   // loopback addresses
	base               []string // its flags but --join
}

// Cluster is the pushring nodes and the NATS servers of a chaos run, and
// what a fault schedule does to them.
type Cluster struct {
	NATS  []*NATSServer
	Nodes []*Node
	// Roles maps schedule targets to node or NATS server names: set the
	// caller's roles ("owner", say) before a schedule runs; Resolve adds
	// what the targets it resolves named the first time.
	Roles map[string]string

	cfg       Config
	stoppedAt map[string]time.Time
}

// Start starts the NATS servers, then the nodes on them (KV and journal
// replicas 3, one gossip key, each node its own nkey, data dir and
// loopback ports), and waits until every node is ready and sees all the
// nodes alive. Stop the cluster it returns even with an error: it holds
// what did start.
func Start(cfg Config) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cc := &Cluster{Roles: map[string]string{}, cfg: cfg, stoppedAt: map[string]time.Time{}}
	gossipKey := make([]byte, 32)
	rand.Read(gossipKey)
	keyFile := filepath.Join(cfg.Dir, "gossip.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(gossipKey)+"\n"), 0o600); err != nil {
		return cc, err
	}
	// Each node's nkey first: the NATS servers' authorization lists them.
	var keys []natsauth.Key
	dirs := make([]string, cfg.Nodes)
	for i := range dirs {
		id := "n" + strconv.Itoa(i+1)
		dirs[i] = filepath.Join(cfg.Dir, id)
		if err := os.MkdirAll(dirs[i], 0o700); err != nil {
			return cc, err
		}
		kp, _, err := natsauth.LoadOrCreateSeed(filepath.Join(dirs[i], "nats.nk"))
		if err != nil {
			return cc, err
		}
		pub, _ := kp.PublicKey()
		keys = append(keys, natsauth.Key{NodeID: id, PublicKey: pub})
	}
	var err error
	if cc.NATS, err = StartNATS(cfg.NATSBin, cfg.Dir, cfg.NATSServers, cfg.Cluster, keys); err != nil {
		return cc, fmt.Errorf("NATS cluster: %w", err)
	}
	for i, dir := range dirs {
		var a [3]string
		for j := range a {
			if a[j], err = FreeAddr(); err != nil {
				return cc, err
			}
		}
		adminFile := filepath.Join(dir, "admin.key")
		if err := os.WriteFile(adminFile, []byte(cfg.AdminKey+"\n"), 0o600); err != nil {
			return cc, err
		}
		nd := &Node{ID: keys[i].NodeID, MQTT: a[0], HTTP: a[1], Gossip: a[2]}
		nd.base = append([]string{"--node-id", nd.ID, "--data-dir", dir, "--admin-key-file", adminFile,
			"--nats-url", strings.Join(cc.NATSURLs(), ","), "--kv-replicas", "3", "--cluster", cfg.Cluster,
			"--mqtt-addr", nd.MQTT, "--http-addr", nd.HTTP, "--gossip-addr", nd.Gossip, "--gossip-key-file", keyFile},
			cfg.Flags...)
		nd.Daemon = &Daemon{Name: nd.ID, Bin: cfg.Bin, Log: filepath.Join(dir, nd.ID+".log")}
		cc.Nodes = append(cc.Nodes, nd)
	}
	for _, nd := range cc.Nodes {
		if err := cc.StartNode(nd); err != nil {
			return cc, err
		}
	}
	return cc, cc.WaitRing()
}

// Stop ends every process, the nodes first.
func (cc *Cluster) Stop() {
	for _, nd := range cc.Nodes {
		if nd.Daemon != nil {
			nd.End()
		}
	}
	for _, s := range cc.NATS {
		if s.Daemon != nil {
			s.End()
		}
	}
}

// Logs are the log files of every process, the NATS servers' first.
func (cc *Cluster) Logs() []string {
	var out []string
	for _, s := range cc.NATS {
		if s.Daemon != nil {
			out = append(out, s.Log)
		}
	}
	for _, nd := range cc.Nodes {
		out = append(out, nd.Log)
	}
	return out
}

// NATSURLs are the NATS servers' client URLs.
func (cc *Cluster) NATSURLs() []string {
	var out []string
	for _, s := range cc.NATS {
		out = append(out, s.URL())
	}
	return out
}

// IDs are the nodes' ids, in order.
func (cc *Cluster) IDs() []string {
	var out []string
	for _, nd := range cc.Nodes {
		out = append(out, nd.ID)
	}
	return out
}

// Node is the node of id, nil if none.
func (cc *Cluster) Node(id string) *Node {
	for _, nd := range cc.Nodes {
		if nd.ID == id {
			return nd
		}
	}
	return nil
}

// MQTTAddrs is every node's MQTT address, home's first, then the nodes
// after it in turn (n2's clients fall back on n3, then n1): the list a
// client reconnects through. Rotating spreads the clients of a failed
// node over the others rather than piling them all on n1.
func (cc *Cluster) MQTTAddrs(home string) []string {
	h := max(slices.IndexFunc(cc.Nodes, func(nd *Node) bool { return nd.ID == home }), 0)
	out := make([]string, 0, len(cc.Nodes))
	for i := range cc.Nodes {
		out = append(out, cc.Nodes[(h+i)%len(cc.Nodes)].MQTT)
	}
	return out
}

// StartNode (re)starts nd, joining the nodes that are up, and waits until
// it is ready.
func (cc *Cluster) StartNode(nd *Node) error {
	var join []string
	for _, o := range cc.Nodes {
		if o != nd && o.Up() {
			join = append(join, o.Gossip)
		}
	}
	nd.Args = slices.Clone(nd.base)
	if len(join) > 0 {
		nd.Args = append(nd.Args, "--join", strings.Join(join, ","))
	}
	if err := nd.Start(); err != nil {
		return err
	}
	return WaitFor(60*time.Second, 50*time.Millisecond, func() error {
		if !nd.Running() {
			return GiveUp{fmt.Errorf("%s exited: %s", nd.ID, nd.LogTail())}
		}
		return getJSON("http://"+nd.HTTP+"/readyz", "", nil)
	})
}

// WaitRing waits until every node that is up lists exactly those nodes
// alive: a node killed or stopped is seen gone, one started or continued
// is seen back.
func (cc *Cluster) WaitRing() error {
	var up []*Node
	for _, nd := range cc.Nodes {
		if nd.Up() {
			up = append(up, nd)
		}
	}
	return WaitFor(60*time.Second, 50*time.Millisecond, func() error {
		for _, nd := range up {
			view, err := cc.View(nd)
			if err != nil {
				return fmt.Errorf("%s: %w", nd.ID, err)
			}
			alive := 0
			for _, x := range view {
				if x.State == "alive" {
					alive++
				}
			}
			if alive != len(up) {
				return fmt.Errorf("%s sees %d nodes alive (%+v), want %d", nd.ID, alive, view, len(up))
			}
		}
		return nil
	})
}

// NodeState is a node as a node's GET /v1/cluster lists it.
type NodeState struct {
	ID    string `json:"id"`
	State string `json:"state"` // "alive" while it is a member of the ring
}

// View is the cluster as nd sees it.
func (cc *Cluster) View(nd *Node) ([]NodeState, error) {
	var cl struct {
		Nodes []NodeState `json:"nodes"`
	}
	err := getJSON("http://"+nd.HTTP+"/v1/cluster", cc.cfg.AdminKey, &cl)
	return cl.Nodes, err
}

// Resolve maps a schedule target to a node or NATS server name: a role
// of Roles; "nats-leader", the JetStream meta leader when it is first
// resolved; "nats:of-<target>", the NATS server <target>'s node is
// connected to then (the harshest NATS fault: that node's connection
// drops, and what is in flight to it is lost); anything else names
// itself. A target keeps what it first resolved to.
func (cc *Cluster) Resolve(target string) (string, error) {
	if name, ok := cc.Roles[target]; ok {
		return name, nil
	}
	var find func(s *NATSServer) (string, bool)
	switch node, ok := strings.CutPrefix(target, "nats:of-"); {
	case ok:
		id, err := cc.Resolve(node)
		if err != nil {
			return "", err
		}
		find = func(s *NATSServer) (string, bool) {
			on, err := s.HasClient("pushring-" + id)
			return s.Name, err == nil && on
		}
	case target == "nats-leader":
		find = func(s *NATSServer) (string, bool) {
			l, err := s.MetaLeader()
			return l, err == nil && l != ""
		}
	default:
		return target, nil
	}
	for _, s := range cc.NATS {
		if s.Up() {
			if name, ok := find(s); ok {
				cc.Roles[target] = name
				return name, nil
			}
		}
	}
	return "", fmt.Errorf("no NATS server answers for %s", target)
}

// Apply does one step of a schedule (see Fault) and returns the name of
// its target and what it observed.
func (cc *Cluster) Apply(f Fault) (string, string, error) {
	name, err := cc.Resolve(f.Target)
	if err != nil {
		return "", "", err
	}
	at := time.Now()
	since := func() string { return time.Since(at).Round(time.Millisecond).String() }
	if i := slices.IndexFunc(cc.NATS, func(s *NATSServer) bool { return s.Name == name }); i >= 0 {
		s := cc.NATS[i]
		switch f.Action {
		case "kill9":
			return name, "", errors.Join(s.Signal(syscall.SIGKILL), s.WaitExit(5*time.Second))
		case "term":
			err := errors.Join(s.Signal(syscall.SIGTERM), s.WaitExit(30*time.Second))
			return name, "exited after " + since(), err
		case "stop":
			return name, "", s.Signal(syscall.SIGSTOP)
		case "cont":
			err = s.Signal(syscall.SIGCONT)
		case "start":
			err = s.Start()
		default:
			return name, "", fmt.Errorf("unknown action %q", f.Action)
		}
		if err == nil {
			err = WaitJetStream(cc.NATS, 60*time.Second)
		}
		return name, "JetStream healthy after " + since(), err
	}
	nd := cc.Node(name)
	if nd == nil {
		return name, "", fmt.Errorf("no node or NATS server %q", name)
	}
	switch f.Action {
	case "kill9":
		err := errors.Join(nd.Signal(syscall.SIGKILL), nd.WaitExit(5*time.Second))
		if err == nil {
			err = cc.WaitRing() // the others saw it gone
		}
		return name, "declared dead after " + since(), err
	case "term":
		err := errors.Join(nd.Signal(syscall.SIGTERM), nd.WaitExit(30*time.Second))
		return name, "exited after " + since(), err
	case "stop":
		cc.stoppedAt[name] = at
		return name, "", nd.Signal(syscall.SIGSTOP)
	case "cont":
		// A pause always outlasts the failure detector: the others
		// declared the stopped node dead before it goes on.
		if err := cc.WaitRing(); err != nil {
			return name, "", err
		}
		dead := time.Since(cc.stoppedAt[name])
		if err := nd.Signal(syscall.SIGCONT); err != nil {
			return name, "", err
		}
		err := cc.WaitRing()
		return name, fmt.Sprintf("the others saw it gone by %v after SIGSTOP; whole again %s after SIGCONT",
			dead.Round(time.Millisecond), since()), err
	case "start":
		err := cc.StartNode(nd)
		if err == nil {
			err = cc.WaitRing()
		}
		return name, "ready and in the ring after " + since(), err
	}
	return name, "", fmt.Errorf("unknown action %q", f.Action)
}
