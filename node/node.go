// Package node wires one pushring node together: the store on NATS
// JetStream, the membership view, fanout over NATS, the MQTT router and the
// HTTP API. It owns the start and stop order; cmd/pushring only turns flags
// into a Config.
//
// Start order: data dir and admin key → NATS (embedded or remote) → store
// and its directory (watch-fed cache) → MQTT and HTTP listeners bound (so
// the advertised addresses are known) → fanout (subscribes to this node's
// subject) → membership (joins the gossip) → router (serves MQTT) → HTTP
// API. Close runs it backwards, but for leaving the gossip first, right
// after the HTTP server stops: peers move this node's homes and groups
// away, told apart from a crash, before its clients are disconnected. No
// component sees a dependency disappear under it.
//
// LOCKS.md, at the repository root, lists the locks of every server
// package and the calls between them; Close holds Node.closeMu across the
// whole stop sequence, so nothing it stops may call Close.
package node

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pushring/pushring/api"
	"github.com/pushring/pushring/fanout"
	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/ring"
	"github.com/pushring/pushring/router"
	"github.com/pushring/pushring/store"
)

// Version is reported in the node metadata and /v1/cluster.
var Version = "0.1.0-dev"

// ErrInvalidConfig is matched (errors.Is) by every error Start returns
// for a Config it cannot run with, its own fields' or those it passes on
// to a component (which then match that component's ErrInvalidConfig as
// well); the error's text names the field.
var ErrInvalidConfig = errors.New("node: invalid config")

// check makes the errors that match ErrInvalidConfig.
var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "node"}

// Config of a node. Every field has a working default (DefaultConfig), so
// a zero-flag start runs the whole service on one machine. Start fills a
// zero field with its default (NodeID excepted: it is required, and
// DefaultConfig sets it to the host name), then refuses, with an error
// naming the field, a value it cannot run with, before it starts
// anything.
type Config struct {
	// DataDir holds the embedded NATS server's JetStream files and the
	// generated admin key. Default "./data".
	DataDir string
	// NodeID names the node in the cluster: a NATS subject token and the
	// gossip node name, 1 to 64 printable ASCII bytes without spaces,
	// '.', '*' or '>'. Required; DefaultConfig sets the host name.
	NodeID string
	// Cluster names the cluster: the prefix of NATS subjects and KV
	// buckets, so several clusters can share one NATS. Default
	// "pushring".
	Cluster string
	// MQTTAddr is the MQTT/TCP listen address, host:port. Default ":1883".
	MQTTAddr string
	// HTTPAddr is the HTTP API listen address, host:port. Default ":8080".
	HTTPAddr string
	// AdvertiseMQTT are the MQTT addresses login returns to clients.
	// Default (empty): MQTTAddr as bound, with an unspecified host
	// replaced by 127.0.0.1.
	AdvertiseMQTT []string
	// AdminKey authorises admin calls. Empty (the default): read
	// <DataDir>/admin.key, or generate one there (mode 0600) on first
	// start.
	AdminKey string
	// NATSURL is a comma-separated list of NATS servers. Empty (the
	// default): start an embedded NATS server with JetStream under
	// DataDir.
	NATSURL string
	// KVReplicas is the replication of the KV buckets, 1 to 5 (1 on one
	// NATS server; 3 on a NATS cluster of 3 or more). Default:
	// store.DefaultKVConfig's.
	KVReplicas int
	// NATSListen makes the embedded NATS server listen on host:port, so
	// other nodes and tools can use it. Empty (the default): in-process
	// only.
	NATSListen string
	// GossipAddr is the host:port of memberlist's gossip (UDP and TCP).
	// Default ":7946".
	GossipAddr string
	// Join lists gossip addresses of nodes already in the cluster; empty
	// (the default) starts a new cluster. Nodes that start together may
	// list each other: joining is retried in the background, every
	// Membership.JoinRetryInterval (default here 1 s).
	Join []string
	// Membership tunes failure detection and the ring (probe timings,
	// virtual nodes, gossip encryption); NodeID, addresses, Join, Label,
	// Logger and Registerer are filled in by the node. Zero fields take
	// membership's defaults (DefaultConfig sets membership.DefaultConfig()).
	Membership membership.Config
	// AuthTopic enables the auth-topic login, for clients that send no
	// credentials in CONNECT: they publish the session token to the auth
	// topic (/service/auth by default) as their first packet; see
	// router.Config.AuthTopic. Default off.
	AuthTopic bool
	// SessionTTL is the lifetime of a login session. Default 24 h.
	SessionTTL time.Duration
	// LoginRate and LoginBurst bound login attempts per client address
	// (a token bucket: attempts a second, bucket size in attempts);
	// LoginRate < 0 turns the limit off. Defaults: api.DefaultConfig's.
	LoginRate  float64
	LoginBurst int
	// LoginAccountFailures failed logins in a row for one id, from any
	// address, lock that id for a backoff that doubles with each further
	// failure up to LoginAccountMaxBackoff (see api.Config); a negative
	// LoginAccountFailures turns it off. Defaults: api.DefaultConfig's (5
	// and 15 min).
	LoginAccountFailures   int
	LoginAccountMaxBackoff time.Duration
	// HTTP bounds the HTTP API's connections: read, write and idle
	// timeouts, header size, and the cap on open connections. Zero fields
	// take api.DefaultHTTPConfig's values.
	HTTP api.HTTPConfig
	// Router tunes the MQTT server (limits, timeouts); NodeID, AuthTopic,
	// Logger and Registerer are filled in by the node. Zero fields take
	// router's defaults (DefaultConfig sets router.DefaultConfig()).
	Router router.Config
	// Logger receives all logs, the components' included. Nil (the
	// default) means slog.Default(), so nothing the node reports is lost;
	// pass slog.New(slog.DiscardHandler) for silence.
	Logger *slog.Logger
}

// DefaultConfig returns the one-machine defaults, with the host name as
// NodeID.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "node1"
	}
	a := api.DefaultConfig()
	return Config{
		DataDir:    "./data",
		NodeID:     host,
		Cluster:    "pushring",
		MQTTAddr:   ":1883",
		HTTPAddr:   ":8080",
		KVReplicas: store.DefaultKVConfig().Replicas,
		SessionTTL: 24 * time.Hour,
		LoginRate:  a.LoginRate,
		LoginBurst: a.LoginBurst,

		LoginAccountFailures:   a.LoginAccountFailures,
		LoginAccountMaxBackoff: a.LoginAccountMaxBackoff,
		HTTP:                   a.HTTP,

		GossipAddr: ":7946",
		Membership: membership.DefaultConfig(),
		Router:     router.DefaultConfig(),
	}
}

// Validate reports the error Start would return for c before it starts
// anything: nil if c passes the checks of the node and of every
// component it configures.
func (c Config) Validate() error { return c.withDefaults().validate() }

// joinRetry is how often a node that could not reach any node of Join
// tries again, unless Membership.JoinRetryInterval says otherwise.
const joinRetry = time.Second

// withDefaults returns c with every zero field that has a default set to
// it (the nil Logger to slog.Default()). The zero fields of Router,
// Membership and HTTP are left to their packages. It leaves wrong values for
// validate to refuse.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.DataDir = cmp.Or(c.DataDir, d.DataDir)
	c.Cluster = cmp.Or(c.Cluster, d.Cluster)
	c.MQTTAddr = cmp.Or(c.MQTTAddr, d.MQTTAddr)
	c.HTTPAddr = cmp.Or(c.HTTPAddr, d.HTTPAddr)
	c.GossipAddr = cmp.Or(c.GossipAddr, d.GossipAddr)
	c.KVReplicas = cmp.Or(c.KVReplicas, d.KVReplicas)
	c.SessionTTL = cmp.Or(c.SessionTTL, d.SessionTTL)
	c.LoginRate = cmp.Or(c.LoginRate, d.LoginRate) // negative stays: no limit
	c.LoginBurst = cmp.Or(c.LoginBurst, d.LoginBurst)
	c.LoginAccountFailures = cmp.Or(c.LoginAccountFailures, d.LoginAccountFailures) // negative stays: off
	c.LoginAccountMaxBackoff = cmp.Or(c.LoginAccountMaxBackoff, d.LoginAccountMaxBackoff)
	if len(c.Join) > 0 && c.Membership.JoinRetryInterval == 0 {
		c.Membership.JoinRetryInterval = joinRetry
	}
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

// validate checks a Config that went through withDefaults: the node's own
// fields, then the config of each component as Start will build it, so
// that a bad value is refused before the node starts anything (binds a
// port, starts NATS or joins the gossip). The error names the first bad
// field.
func (c Config) validate() error {
	hostPort := func(field, addr string) error {
		_, _, err := net.SplitHostPort(addr)
		return check.If(err != nil, "%s %q must be host:port", field, addr)
	}
	var advertise error
	if i := slices.Index(c.AdvertiseMQTT, ""); i >= 0 {
		advertise = check.New("AdvertiseMQTT[%d] is empty", i)
	}
	natsListen := error(nil)
	if c.NATSListen != "" {
		natsListen = hostPort("NATSListen", c.NATSListen)
	}
	return configerr.First(
		check.If(c.NodeID == "" || strings.ContainsAny(c.NodeID, ".*> \t\r\n"),
			"NodeID %q must be set, without '.', '*', '>' or white space", c.NodeID),
		hostPort("MQTTAddr", c.MQTTAddr),
		hostPort("HTTPAddr", c.HTTPAddr),
		advertise,
		natsListen,
		configerr.Wrap(ErrInvalidConfig, c.fanoutConfig().Validate()),
		configerr.Wrap(ErrInvalidConfig, c.membershipConfig(c.AdvertiseMQTT, c.HTTPAddr).Validate()),
		configerr.Wrap(ErrInvalidConfig, c.routerConfig().Validate()),
		configerr.Wrap(ErrInvalidConfig, c.apiConfig("").Validate()),
		configerr.Wrap(ErrInvalidConfig, c.kvConfig().Validate()),
	)
}

// kvConfig is the store's config as Start builds it.
func (c Config) kvConfig() store.KVConfig {
	k := store.DefaultKVConfig()
	k.Cluster, k.Replicas = c.Cluster, c.KVReplicas
	// The sessions bucket drops records after SessionMaxAge: never before
	// the sessions it holds expire.
	k.SessionMaxAge = max(k.SessionMaxAge, c.SessionTTL)
	return k
}

// fanoutConfig is the fanout's Config as this node sets it, without the
// logger and registry of the running node.
func (c Config) fanoutConfig() fanout.Config {
	f := fanout.DefaultConfig()
	f.Cluster, f.NodeID = c.Cluster, c.NodeID
	return f
}

// membershipConfig is c.Membership with what the node sets itself, given
// the addresses it advertises, without the logger and registry of the
// running node.
func (c Config) membershipConfig(mqtt []string, http string) membership.Config {
	m := c.Membership
	m.NodeID, m.GossipAddr, m.Join, m.Label = c.NodeID, c.GossipAddr, c.Join, c.Cluster
	m.MQTT, m.HTTP, m.Version = mqtt, http, Version
	return m
}

// routerConfig is c.Router with what the node sets itself, without the
// logger and registry of the running node.
func (c Config) routerConfig() router.Config {
	r := c.Router
	r.NodeID, r.AuthTopic = c.NodeID, c.AuthTopic
	return r
}

// apiConfig is the API's Config as this node sets it, given the admin
// key, without the logger and registry of the running node.
func (c Config) apiConfig(adminKey string) api.Config {
	a := api.DefaultConfig()
	a.AdminKey, a.SessionTTL = adminKey, c.SessionTTL
	a.LoginRate, a.LoginBurst = c.LoginRate, c.LoginBurst
	a.LoginAccountFailures, a.LoginAccountMaxBackoff = c.LoginAccountFailures, c.LoginAccountMaxBackoff
	a.HTTP = c.HTTP
	a.PrivatePrefix = c.Router.PrivatePrefix
	return a
}

// Node is a running node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	adminKey string

	embedded *natsembed.Server
	nc       *nats.Conn
	dir      *store.Directory
	fan      *fanout.Fanout
	cluster  *membership.Cluster
	router   *router.Server
	mqttLn   net.Listener
	httpLn   net.Listener
	http     *http.Server
	api      *api.API // makes the HTTP servers and limited listeners
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	registry *prometheus.Registry
}

// Start brings a node up and returns when it serves MQTT and HTTP.
// A Config it cannot run with is refused, before anything starts, with an
// error matching ErrInvalidConfig.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeID), registry: prometheus.NewRegistry()}
	n.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data dir: %w", err)
	}
	if n.adminKey = cfg.AdminKey; n.adminKey == "" {
		if n.adminKey, err = loadOrCreateSecret(filepath.Join(cfg.DataDir, "admin.key"), "admin key", n.log); err != nil {
			return nil, err
		}
	}

	// NATS: the bus between nodes and the home of the KV buckets.
	if cfg.NATSURL == "" {
		var token string
		if cfg.NATSListen != "" {
			// Others reach this NATS with nats://<token>@<listen>.
			path := filepath.Join(cfg.DataDir, "nats.token")
			if token, err = loadOrCreateSecret(path, "NATS token", n.log); err != nil {
				return nil, err
			}
		}
		n.embedded, err = natsembed.Start(natsembed.Config{
			StoreDir:   filepath.Join(cfg.DataDir, "nats"),
			Listen:     cfg.NATSListen,
			ServerName: cfg.NodeID,
			Token:      token,
		})
		if err != nil {
			return nil, err
		}
		n.nc, err = n.embedded.Connect(n.natsOptions()...)
		if n.embedded.Addr() != nil {
			n.log.Info("embedded NATS server listening (clients need the token)", "addr", n.embedded.ClientURL(),
				"token_file", filepath.Join(cfg.DataDir, "nats.token"))
		}
	} else {
		n.nc, err = nats.Connect(cfg.NATSURL, n.natsOptions()...)
	}
	if err != nil {
		return nil, fmt.Errorf("node: connect to NATS: %w", err)
	}
	js, err := jetstream.New(n.nc)
	if err != nil {
		return nil, fmt.Errorf("node: jetstream: %w", err)
	}
	kv, err := store.NewKV(ctx, js, cfg.kvConfig())
	if err != nil {
		return nil, err
	}
	n.dir = store.NewDirectory(kv)
	n.dir.SetLogger(n.log)
	if err := n.dir.Start(runCtx); err != nil {
		return nil, fmt.Errorf("node: directory: %w", err)
	}

	// MQTT listener first, so the advertised addresses are known.
	if n.mqttLn, err = net.Listen("tcp", cfg.MQTTAddr); err != nil {
		return nil, fmt.Errorf("node: mqtt listen: %w", err)
	}
	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("node: http listen: %w", err)
	}
	advertise := cfg.AdvertiseMQTT
	if len(advertise) == 0 {
		advertise = []string{advertiseAddr(n.mqttLn.Addr())}
	}
	ids := message.NewIDSource(cfg.NodeID)

	// fanout and router need each other: fanout delivers into the router,
	// the router forwards into fanout. lazyRouter breaks the cycle; until
	// the router exists there are no sessions to deliver to.
	var deliverTo atomic.Pointer[router.Server]
	fcfg := cfg.fanoutConfig()
	fcfg.Logger, fcfg.Registerer = n.log, n.registry
	// fanout subscribes before this node joins the gossip: peers may
	// place homes and groups here as soon as they hear of it.
	place := &lazyPlacement{self: cfg.NodeID}
	if n.fan, err = fanout.New(fcfg, fanout.NewNATSBus(n.nc), n.dir, place, (*lazyRouter)(&deliverTo)); err != nil {
		return nil, err
	}
	if err := n.fan.Start(); err != nil {
		return nil, err
	}
	mcfg := cfg.membershipConfig(advertise, advertiseAddr(n.httpLn.Addr()))
	mcfg.Logger, mcfg.Registerer = n.log, n.registry
	if n.cluster, err = membership.Start(mcfg); err != nil {
		return nil, fmt.Errorf("node: membership: %w", err)
	}
	members := n.cluster
	place.cluster.Store(n.cluster)
	rcfg := cfg.routerConfig()
	rcfg.Logger, rcfg.Registerer = n.log, n.registry
	if n.router, err = router.New(rcfg, &authenticator{st: n.dir}, n.dir, n.fan, ids); err != nil {
		return nil, err
	}
	deliverTo.Store(n.router)
	n.dir.OnRevoke(n.router.Revoke)
	// Attach records: sessions held here for principals homed elsewhere
	// are announced to their home, again whenever the ring changes.
	n.router.SetPresence(n.fan)
	n.cluster.OnChange(func(_, now *ring.Ring) { n.fan.RingChanged(now.Nodes()) })
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.router.Serve(n.mqttLn); err != nil && !errors.Is(err, net.ErrClosed) {
			n.log.Error("mqtt listener stopped", "err", err)
		}
	}()

	acfg := cfg.apiConfig(n.adminKey)
	acfg.Logger, acfg.Registry = n.log, n.registry
	handler, err := api.New(acfg, n.dir, api.Deps{
		Publisher: n.fan,
		ACL:       n.dir,
		Cluster:   members,
		IDs:       ids,
		Ready:     n.ready,
	})
	if err != nil {
		return nil, err
	}
	// Every HTTP listener is served by a server from the API, on a
	// listener it limits: the same timeouts and one connection cap.
	n.api = handler
	n.http = handler.NewHTTPServer()
	httpLn := handler.LimitListener(n.httpLn, true)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.http.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http listener stopped", "err", err)
		}
	}()
	n.log.Info("pushring node started", "mqtt", n.mqttLn.Addr().String(), "http", n.httpLn.Addr().String(),
		"gossip", n.cluster.GossipAddr(), "advertise", advertise, "embedded_nats", n.embedded != nil, "auth_topic", cfg.AuthTopic)
	return n, nil
}

// natsOptions: reconnect forever, and log what NATS reports on its own
// (slow-consumer drops of envelopes above all: they are message loss).
func (n *Node) natsOptions() []nats.Option {
	return []nats.Option{
		nats.Name("pushring-" + n.cfg.NodeID),
		nats.MaxReconnects(-1),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			n.log.Error("NATS async error", "subject", subject, "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { n.log.Warn("NATS disconnected", "err", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { n.log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
}

// ready reports whether the node can serve: NATS connected.
func (n *Node) ready() error {
	if n.nc == nil || !n.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	if !n.cluster.Joined() {
		return errors.New("not joined to the cluster yet")
	}
	return nil
}

// MQTTAddr is the bound MQTT address.
func (n *Node) MQTTAddr() string { return n.mqttLn.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// AdminKey is the key admin calls need.
func (n *Node) AdminKey() string { return n.adminKey }

// Registry is the node's Prometheus registry (served on /metrics).
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Close stops the node: listeners, router, fanout, store, NATS. It is safe
// to call more than once.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if n.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n.http.Shutdown(ctx)
		cancel()
	} else if n.httpLn != nil {
		n.httpLn.Close()
	}
	// Leave first, so the others move this node's homes and groups away
	// (a clean leave, told apart from a crash) before its clients go.
	if n.cluster != nil {
		if err := n.cluster.Leave(2 * time.Second); err != nil {
			n.log.Warn("leaving the cluster", "err", err)
		}
	}
	if n.router != nil {
		n.router.Close()
	} else if n.mqttLn != nil {
		n.mqttLn.Close()
	}
	if n.fan != nil {
		n.fan.Close()
	}
	if n.cluster != nil {
		n.cluster.Close()
	}
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	if n.dir != nil {
		n.dir.Close() // closes the KV too, never the NATS connection
	}
	if n.nc != nil {
		n.nc.Drain()
		n.nc.Close()
	}
	if n.embedded != nil {
		n.embedded.Stop()
	}
	n.log.Info("pushring node stopped")
	return nil
}

// lazyPlacement places everything on this node until the cluster view
// is set, so fanout can subscribe before the node joins the gossip.
type lazyPlacement struct {
	self    string
	cluster atomic.Pointer[membership.Cluster]
}

func (l *lazyPlacement) Home(id string) string {
	if c := l.cluster.Load(); c != nil {
		return c.Home(id)
	}
	return l.self
}

func (l *lazyPlacement) Owner(gid string) string {
	if c := l.cluster.Load(); c != nil {
		return c.Owner(gid)
	}
	return l.self
}

// lazyRouter is fanout's Deliverer and Throttler: the router, once it
// exists (until then there are no sessions to deliver to).
type lazyRouter atomic.Pointer[router.Server]

func (l *lazyRouter) Deliver(m *message.Message, recipients []string) {
	if r := (*atomic.Pointer[router.Server])(l).Load(); r != nil {
		r.Deliver(m, recipients)
	}
}

func (l *lazyRouter) DeliverHeld(m *message.Message, recipients []string, rel fanout.Releaser, seq uint64) bool {
	if r := (*atomic.Pointer[router.Server])(l).Load(); r != nil {
		return r.DeliverHeld(m, recipients, rel, seq)
	}
	return false
}

var _ fanout.Throttler = (*lazyRouter)(nil)

// loadOrCreateSecret returns the secret stored at path, or a new random
// one (256 bits, base64url) written there with mode 0600.
func loadOrCreateSecret(path, what string, log *slog.Logger) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if key := strings.TrimSpace(string(b)); key != "" {
			log.Info(what+" loaded", "file", path)
			return key, nil
		}
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	key := base64.RawURLEncoding.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node: write %s: %w", what, err)
	}
	log.Info(what+" generated", "file", path)
	return key, nil
}

// advertiseAddr turns a bound address into one a client can dial.
func advertiseAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
