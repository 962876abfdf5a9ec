package membership

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/ring"
)

// Errors of Start and Leave.
var (
	ErrClosed = errors.New("membership: cluster closed")
	ErrJoin   = errors.New("membership: could not join the cluster")
)

// tombstoneTTL is how long a dead or left node stays listed in Members.
const tombstoneTTL = 5 * time.Minute

// deadNodeReclaimTime lets a node that died come back under the same ID
// from a new address (a restarted pod with a new IP) after this long;
// memberlist refuses the new address as a conflict until then. A node
// that left cleanly may come back at once.
const deadNodeReclaimTime = 5 * time.Second

// Cluster is this node's view of the gossip cluster: the live nodes, a
// consistent hash ring over them, and where principals and groups are
// placed. Lookups (Home, Owner, Ring) are one atomic load, no lock.
// All methods are goroutine-safe; only Leave blocks (up to its timeout).
type Cluster struct {
	placement
	cfg Config
	log *slog.Logger
	ml  *memberlist.Memberlist

	meta, leavingMeta []byte // NodeMeta, before and after Leave
	leaving           atomic.Bool
	joined            atomic.Bool // see Joined

	mu      sync.Mutex         // guards members; held by memberlist event callbacks
	members map[string]*member // every node heard of, by ID, tombstones included

	lifeMu sync.Mutex // serializes Leave and Close
	closed bool
	left   bool

	keyMu   sync.Mutex          // serializes SetKeys; a leaf
	keyring *memberlist.Keyring // nil: gossip in clear
	auth    *authFailures
	probes  atomic.Uint64 // probes of this node answered (see pinger)

	kick    chan struct{} // ring changed: wake the notifier
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup
	metrics []prometheus.Collector
}

// member is what this node knows about another (or itself).
type member struct {
	node   Node // State: alive, dead or left
	since  time.Time
	warned bool // virtual-nodes mismatch already logged
}

// Compile-time check: Cluster and Memory answer what Static answers.
type staticMethods interface {
	Self() Node
	Nodes() []Node
	Home(id string) string
	Owner(gid string) string
	HomeNode(id string) Node
}

var (
	_ staticMethods = (*Static)(nil)
	_ staticMethods = (*Cluster)(nil)
	_ staticMethods = (*Memory)(nil)
)

// Start binds the gossip port, starts memberlist and joins cfg.Join.
// When it returns, this node is on its own ring; peers appear as gossip
// reaches them (a join with a peer syncs the full state at once).
func Start(cfg Config) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Cluster{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "membership"),
		members: map[string]*member{},
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	c.auth = newAuthFailures(c.log)
	m := meta{ID: cfg.NodeID, HTTP: cfg.HTTP, Version: cfg.Version, MQTT: cfg.MQTT, MQTTTLS: cfg.MQTTTLS, VirtualNodes: cfg.VirtualNodes}
	var err error
	if c.meta, err = appendMeta(nil, &m); err != nil {
		return nil, fmt.Errorf("membership: node metadata: %w", err)
	}
	m.Leaving = true
	if c.leavingMeta, err = appendMeta(nil, &m); err != nil {
		return nil, fmt.Errorf("membership: node metadata: %w", err)
	}
	self := m.node()
	self.State = StateAlive
	c.members[cfg.NodeID] = &member{node: self, since: time.Now()}
	c.init(ring.Config{VirtualNodes: cfg.VirtualNodes}, self)

	mlc := memberlist.DefaultLocalConfig()
	mlc.Name = cfg.NodeID
	host, port, _ := splitHostPort(cfg.GossipAddr)
	if host == "" {
		host = "0.0.0.0"
	}
	mlc.BindAddr, mlc.BindPort, mlc.AdvertisePort = host, port, port
	if cfg.AdvertiseAddr != "" {
		mlc.AdvertiseAddr, mlc.AdvertisePort, _ = splitHostPort(cfg.AdvertiseAddr)
	}
	mlc.ProbeInterval = cfg.ProbeInterval
	mlc.ProbeTimeout = cfg.ProbeTimeout
	mlc.SuspicionMult = cfg.SuspicionMult
	mlc.GossipInterval = cfg.GossipInterval
	mlc.PushPullInterval = cfg.PushPullInterval
	// Each node passes a gossiped change on RetransmitMult × log10(N+1)
	// times in all (not per round). DefaultLocalConfig's 2 lets news die
	// out in clusters of 3-4 nodes now and then (seen in tests: a join
	// unseen by one node until the next push/pull); the LAN value of 4
	// does not.
	mlc.RetransmitMult = 4
	mlc.DeadNodeReclaimTime = deadNodeReclaimTime
	mlc.Label = cfg.Label
	if len(cfg.Keys) > 0 {
		// Verify both ways (memberlist's defaults, set here so that a
		// change of theirs cannot open the cluster): nothing in clear is
		// accepted, nothing is sent in clear.
		mlc.GossipVerifyIncoming, mlc.GossipVerifyOutgoing = true, true
		keys := cloneKeys(cfg.Keys)
		if mlc.Keyring, err = memberlist.NewKeyring(keys, keys[0]); err != nil {
			return nil, fmt.Errorf("membership: keyring: %w", err)
		}
		c.keyring = mlc.Keyring
	}
	mlc.Delegate = (*delegate)(c)
	mlc.Events = (*events)(c)
	mlc.Conflict = (*events)(c)
	mlc.Ping = (*pinger)(c)
	mlc.Logger = newMemberlistLogger(cfg.Logger, c.auth)

	if c.ml, err = memberlist.Create(mlc); err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	c.wg.Add(1)
	go c.notifier()

	c.joined.Store(len(cfg.Join) == 0)
	if len(cfg.Join) > 0 {
		if n, err := c.ml.Join(cfg.Join); n > 0 {
			c.joined.Store(true)
		} else {
			if cfg.JoinRetryInterval <= 0 {
				c.shutdown()
				return nil, fmt.Errorf("%w via %v: %v", ErrJoin, cfg.Join, err)
			}
			c.log.Warn("join failed, retrying in the background", "join", cfg.Join, "err", err)
			c.wg.Add(1)
			go c.retryJoin()
		}
	}
	if cfg.Registerer != nil {
		if err := c.register(cfg.Registerer); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	if c.keyring != nil {
		// The primary's id lets an operator check that every node sends
		// with the same key (a rotation step forgotten on one node).
		c.log.Info("gossip started", "addr", c.GossipAddr(), "join", cfg.Join, "encrypted", true, "keys", len(cfg.Keys), "primary", KeyID(cfg.Keys[0]))
	} else {
		c.log.Info("gossip started", "addr", c.GossipAddr(), "join", cfg.Join, "encrypted", false)
	}
	return c, nil
}

func (c *Cluster) register(reg prometheus.Registerer) error {
	c.metrics = []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pushring_ring_changes_total",
			Help: "Changes of the set of nodes on this node's hash ring.",
		}, func() float64 { return float64(c.RingChanges()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pushring_cluster_nodes",
			Help: "Nodes on this node's hash ring.",
		}, func() float64 { return float64(c.Ring().Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "pushring_gossip_auth_failures_total",
			Help: "Gossip packets and streams dropped because no key of the keyring decrypts them, or because they came in clear.",
		}, func() float64 { return float64(c.AuthFailures()) }),
	}
	for i, m := range c.metrics {
		if err := reg.Register(m); err != nil {
			for _, r := range c.metrics[:i] {
				reg.Unregister(r)
			}
			c.metrics = nil
			return fmt.Errorf("membership: register metrics: %w", err)
		}
	}
	return nil
}

func (c *Cluster) retryJoin() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.JoinRetryInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		n, err := c.ml.Join(c.cfg.Join)
		if n > 0 {
			c.joined.Store(true)
			c.log.Info("joined", "contacted", n)
			return
		}
		c.log.Debug("join retry failed", "err", err)
	}
}

// ErrNoKeyring is returned by SetKeys on a cluster started without Keys:
// gossip in clear cannot switch to encrypted without a restart, since
// every node would have to switch at the same instant.
var ErrNoKeyring = errors.New("membership: gossip encryption is off (started without Keys)")

// SetKeys replaces the keyring: keys[0] becomes the key this node
// encrypts with, every key listed decrypts, and the keys not listed are
// removed. The keys are checked as Config.Keys (errors match
// ErrInvalidConfig) and at least one is required.
//
// Rotation without downtime, one node at a time at each step: add the new
// key after the current one on every node; then put it first on every
// node; then remove the old one. A node never sends with a key that some
// node has not yet installed, so no gossip is lost.
func (c *Cluster) SetKeys(keys [][]byte) error {
	if err := checkKeys("keys", keys); err != nil {
		return err
	}
	if len(keys) == 0 {
		return check.New("keys must list at least one key")
	}
	if c.keyring == nil {
		return ErrNoKeyring
	}
	keys = cloneKeys(keys)
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	for _, k := range keys {
		if err := c.keyring.AddKey(k); err != nil {
			return fmt.Errorf("membership: add key: %w", err)
		}
	}
	// memberlist's RemoveKey shifts the keys after the one it removes in
	// place, under readers that may be decrypting with that very list;
	// removing the last key shifts nothing. UseKey installs a new list
	// with its key first, so using the kept keys from the last to the
	// first puts them, in order, before every key to remove: each removal
	// below then takes the last key.
	for i := len(keys) - 1; i >= 0; i-- {
		if err := c.keyring.UseKey(keys[i]); err != nil {
			return fmt.Errorf("membership: use key: %w", err)
		}
	}
	// GetKeys returns the installed slice itself: copy it first.
	installed := slices.Clone(c.keyring.GetKeys())
	for i := len(installed) - 1; i >= 0; i-- {
		k := installed[i]
		if !slices.ContainsFunc(keys, func(w []byte) bool { return bytes.Equal(w, k) }) {
			if err := c.keyring.RemoveKey(k); err != nil {
				return fmt.Errorf("membership: remove key: %w", err)
			}
		}
	}
	c.log.Info("gossip keys installed", "keys", len(keys), "primary", KeyID(keys[0]))
	return nil
}

// KeyID names a key in logs without revealing it: the first 8 hex digits
// of its SHA-256.
func KeyID(k []byte) string {
	sum := sha256.Sum256(k)
	return hex.EncodeToString(sum[:4])
}

// AuthFailures is the number of gossip packets and streams dropped
// because no key decrypted them (pushring_gossip_auth_failures_total).
func (c *Cluster) AuthFailures() uint64 { return c.auth.n.Load() }

func cloneKeys(keys [][]byte) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = bytes.Clone(k)
	}
	return out
}

// Joined reports whether this node is part of a cluster: it was started
// without Join addresses, or one of them answered. Until then it is a
// cluster of one that places everything on itself, so a node should not
// report ready. Goroutine-safe.
func (c *Cluster) Joined() bool { return c.joined.Load() }

// notifier runs OnChange listeners and Subscribe signals outside
// memberlist's locks: the event callbacks only swap the view and kick.
func (c *Cluster) notifier() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case <-c.kick:
			c.notify()
		}
	}
}

// GossipAddr is the host:port other nodes can join this one at (the
// advertised address, with the port actually bound).
func (c *Cluster) GossipAddr() string { return c.ml.LocalNode().Address() }

// Members lists every node this node has heard of, sorted by ID: the
// live ones (as Nodes does) and, for a few minutes after they went, the
// dead and left ones. Goroutine-safe; takes a lock.
func (c *Cluster) Members() []Node {
	v := c.cur.Load()
	c.mu.Lock()
	out := make([]Node, 0, len(c.members))
	for _, m := range c.members {
		n := m.node
		n.RingPart = v.ring.Share(n.ID)
		out = append(out, n)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Member returns what this node knows about node id, dead and left nodes
// included (see Members).
func (c *Cluster) Member(id string) (Node, bool) {
	c.mu.Lock()
	m, ok := c.members[id]
	c.mu.Unlock()
	if !ok {
		return Node{}, false
	}
	n := m.node
	n.RingPart = c.Ring().Share(id)
	return n, true
}

// Leave tells the cluster this node is going: the others mark it "left"
// (not "dead") and drop it from their rings at once, without waiting for
// failure detection. This node drops itself from its own ring too (unless
// no other node is alive), so from here on it places everything on the
// others. Leave blocks until the news has gone out or timeout passes (0:
// no limit). Call Close afterwards; Leave again is a no-op.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.left {
		return nil
	}
	c.left = true
	// First gossip the leaving flag in our metadata: peers see it before
	// memberlist's leave message, whose kind they cannot tell from a
	// failure. Half the time for each step.
	c.leaving.Store(true)
	err := c.ml.UpdateNode(timeout / 2)
	if err != nil {
		c.log.Warn("leave: metadata update not confirmed", "err", err)
	}
	if err := c.ml.Leave(timeout - timeout/2); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	c.log.Info("left the cluster")
	return nil
}

// Close stops gossip. Without a Leave first, the others see this node
// fail (it turns "dead" after failure detection) — a crash, as far as
// they can tell. Lookups keep answering from the last view. Must not be
// called from an OnChange listener. Close is idempotent.
func (c *Cluster) Close() error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return c.shutdown()
}

func (c *Cluster) shutdown() error {
	err := c.ml.Shutdown()
	close(c.done)
	c.wg.Wait()
	for _, m := range c.metrics {
		c.cfg.Registerer.Unregister(m)
	}
	return err
}

// ---- memberlist callbacks ----

// upsert records a node from an alive message (join or metadata update).
// Called with memberlist's node lock held: it must not call memberlist.
func (c *Cluster) upsert(n *memberlist.Node) {
	m, err := decodeMeta(n.Meta)
	if err == nil && m.ID != n.Name {
		err = fmt.Errorf("%w: id %q in the metadata of node %q", ErrBadMeta, m.ID, n.Name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// Keep the node off the ring (and out of Members): placement
		// must not depend on a peer we cannot describe.
		c.log.Warn("ignoring node with malformed metadata", "peer", n.Name, "addr", n.Address(), "err", err)
		if _, ok := c.members[n.Name]; ok {
			delete(c.members, n.Name)
			c.rebuildLocked()
		}
		return
	}
	node := m.node()
	node.State = StateAlive
	if m.Leaving {
		node.State = StateLeft
	}
	old := c.members[n.Name]
	if old == nil || old.node.State != node.State {
		switch {
		case node.State == StateLeft:
			c.log.Info("node leaving", "peer", n.Name)
		case n.Name != c.cfg.NodeID:
			c.log.Info("node joined", "peer", n.Name, "addr", n.Address(), "mqtt", node.MQTT, "version", node.Version)
		}
	}
	nm := &member{node: node, since: time.Now()}
	if old != nil {
		nm.warned = old.warned
		if old.node.State == node.State {
			nm.since = old.since
		}
	}
	if m.VirtualNodes != c.cfg.VirtualNodes && !nm.warned {
		nm.warned = true
		c.log.Warn("peer uses another number of virtual nodes: rings will disagree",
			"peer", n.Name, "theirs", m.VirtualNodes, "ours", c.cfg.VirtualNodes)
	}
	c.members[n.Name] = nm
	c.rebuildLocked()
}

// remove records a node memberlist declared dead or that left. memberlist
// does not say which (its Node.State is not filled in for events); a node
// that left set the leaving flag in its metadata first.
func (c *Cluster) remove(n *memberlist.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.members[n.Name]
	if !ok {
		return // never accepted (malformed metadata)
	}
	state := StateDead
	if m.node.State == StateLeft || n.Name == c.cfg.NodeID {
		state = StateLeft
	}
	if m.node.State == state {
		return
	}
	if state == StateDead {
		c.log.Warn("node failed", "peer", n.Name, "addr", n.Address())
	} else {
		c.log.Info("node left", "peer", n.Name)
	}
	m.since = time.Now()
	m.node.State = state
	c.rebuildLocked()
}

// rebuildLocked publishes a view of the live members, prunes old
// tombstones, and wakes the notifier if the ring changed. c.mu is held.
func (c *Cluster) rebuildLocked() {
	now := time.Now()
	live := make([]Node, 0, len(c.members))
	var self Node
	for id, m := range c.members {
		if m.node.State == StateAlive {
			live = append(live, m.node)
		} else if id != c.cfg.NodeID && now.Sub(m.since) > tombstoneTTL {
			delete(c.members, id)
		}
		if id == c.cfg.NodeID {
			self = m.node
		}
	}
	if len(live) == 0 {
		// Left, and nobody else is alive: keep placing everything here
		// rather than nowhere.
		live = append(live, self)
	}
	if c.publish(live, self) {
		v := c.cur.Load()
		c.log.Info("ring changed", "nodes", v.ring.Nodes(), "changes", c.RingChanges())
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// delegate is memberlist's Delegate: it only supplies node metadata.
type delegate Cluster

func (d *delegate) NodeMeta(limit int) []byte {
	if (*Cluster)(d).leaving.Load() {
		return d.leavingMeta
	}
	return d.meta
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// events is memberlist's EventDelegate. memberlist calls it with its node
// lock held, one call at a time.
type events Cluster

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Cluster)(e).upsert(n) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Cluster)(e).upsert(n) }
func (e *events) NotifyLeave(n *memberlist.Node)  { (*Cluster)(e).remove(n) }

// NotifyConflict: two nodes claim one ID (memberlist keeps the first and
// ignores the other). memberlist only logs it at its ERR level, which
// lands at debug here, so say it at warn.
func (e *events) NotifyConflict(existing, other *memberlist.Node) {
	e.log.Warn("two nodes claim one node id: the second is ignored",
		"id", existing.Name, "known", existing.Address(), "other", other.Address())
}

// pinger is memberlist's PingDelegate: it counts the probes of this node
// that a peer answered, a sign that gossip gets through both ways (the
// ack comes back under the peer's primary key).
type pinger Cluster

func (p *pinger) AckPayload() []byte { return nil }
func (p *pinger) NotifyPingComplete(*memberlist.Node, time.Duration, []byte) {
	p.probes.Add(1)
}

// ProbesAnswered is the number of this node's failure-detection probes
// that a peer answered: it grows only while gossip gets through both ways
// (under the keys in use, when encrypted).
func (c *Cluster) ProbesAnswered() uint64 { return c.probes.Load() }

var (
	_ memberlist.PingDelegate     = (*pinger)(nil)
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*events)(nil)
	_ memberlist.ConflictDelegate = (*events)(nil)
)
