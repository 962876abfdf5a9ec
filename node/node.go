// Package node wires one pushring node together: the store on NATS
// JetStream, the membership view, fanout over NATS, the MQTT router and the
// HTTP API. It owns the start and stop order; cmd/pushring only turns flags
// into a Config.
//
// Start order: data dir and admin key → NATS (embedded or remote) → store
// and its directory (watch-fed cache) → MQTT and HTTP listeners bound, and
// with a certificate the MQTT-over-TLS and HTTPS ones (so the advertised
// addresses are known) → fanout (subscribes to this node's subject) →
// membership (joins the gossip) → router (serves MQTT, plain and TLS) →
// HTTP API (plain and HTTPS). Close drains first (stop accepting, leave
// the gossip so the peers move this node's homes and groups away, told
// apart from a crash, hand over, close the clients so that they resume
// elsewhere), then stops the components in the reverse order of their
// start, within Config.ShutdownTimeout. No component sees a dependency
// disappear under it.
//
// LOCKS.md, at the repository root, lists the locks of every server
// package and the calls between them; Close holds Node.closeMu across the
// whole stop sequence, so nothing it stops may call Close.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
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
	"github.com/pushring/pushring/flow"
	"github.com/pushring/pushring/internal/certs"
	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/internal/natsauth"
	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/secretfile"
	"github.com/pushring/pushring/journal"
	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/ws"
	"github.com/pushring/pushring/retained"
	"github.com/pushring/pushring/ring"
	"github.com/pushring/pushring/router"
	"github.com/pushring/pushring/rules"
	"github.com/pushring/pushring/store"
	"github.com/pushring/pushring/webhook"
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
	// DataDir holds the embedded NATS server's JetStream files, the
	// generated admin key and the generated NATS nkey seed. Default
	// "./data".
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

	// TLSCertFile and TLSKeyFile are the PEM certificate chain and key
	// of the TLS listeners (MQTTTLSAddr, HTTPSAddr). Both or neither.
	// The files are looked at again, at most once a second, on new
	// handshakes, and on Reload (SIGHUP): a replaced pair is served to
	// new connections, live ones stay. Default empty: no TLS.
	TLSCertFile string
	TLSKeyFile  string
	// ClientCAFile, with a certificate, is a PEM bundle of CAs for MQTT
	// client certificates: they are then requested and verified when
	// given, and a device whose certificate chains to it logs in with it
	// alone (the certificate's Subject Common Name is its id; see
	// router.Authenticator.AuthenticateCert). Clients without a
	// certificate still log in with credentials. Default empty.
	ClientCAFile string
	// MQTTTLSAddr is the MQTT-over-TLS listen address. Default ":8883"
	// when TLSCertFile is set, none otherwise; "off" turns it off.
	MQTTTLSAddr string
	// HTTPSAddr is the HTTPS API listen address (same API, same server
	// settings as HTTPAddr). Default ":8443" when TLSCertFile is set,
	// none otherwise; "off" turns it off.
	HTTPSAddr string
	// AdvertiseMQTTTLS are the MQTT-over-TLS addresses login returns
	// (mqtt_tls). Default: MQTTTLSAddr as bound, with an unspecified host
	// replaced by 127.0.0.1.
	AdvertiseMQTTTLS []string
	// AdminKey authorises admin calls. Empty (the default): the keys
	// of AdminKeyFile. Prefer the file: a key in a flag sits on the
	// command line, readable by every local user.
	AdminKey string
	// AdminKeyFile holds the admin keys, one per line ('#' comments):
	// every key listed is accepted, so a key rotates without downtime
	// (add the new line, move the callers, drop the old line), and
	// Reload rereads it. Empty (the default): <DataDir>/admin.key,
	// generated (mode 0600) on first start when missing; a file named
	// here must exist.
	AdminKeyFile string
	// NATSURL is a comma-separated list of NATS servers. Empty (the
	// default): start an embedded NATS server with JetStream under
	// DataDir. A user:password or token in a URL still works but is
	// logged as a warning: it sits on the command line, readable by every
	// local user; NATSNKeyFile or NATSCredsFile keep the secret in a file.
	NATSURL string
	// NATSNKeyFile holds this node's NATS user nkey seed, which it signs
	// in with (to NATSURL, or to its own embedded server, in-process
	// included): one key per node, so one node can be revoked alone.
	// Empty (the default): <DataDir>/nats.nk, generated (mode 0600) on
	// first start; its public key is logged, for the other nodes'
	// NATSAuthorizedKeysFile or an external server's config.
	NATSNKeyFile string
	// NATSCredsFile is a NATS credentials file (user JWT and seed) to sign
	// in with instead of the nkey, for a NATS server in operator (JWT)
	// mode. Needs NATSURL. Default none.
	NATSCredsFile string
	// InsecureNATS lets the node use a NATS server that asks for no
	// credentials: anyone who reaches such a server reads and forges all
	// of pushring's traffic, sessions and password hashes included, so
	// by default the node refuses to start on one. For development
	// against a bare nats-server only; each start logs a warning.
	InsecureNATS bool
	// NATSAuthorizedKeysFile lists the other nodes the embedded server
	// lets in, one "<node-id> <public-nkey>" a line ('#' comments), each
	// with the permissions of that node id (natsauth.NodePermissions);
	// this node's own key is always in. Reload re-reads it: a key removed
	// is refused at once and its connection closed. Default none: this
	// node alone. Not with NATSURL (the external server's config
	// authorizes; pushctl nats-config prints it).
	NATSAuthorizedKeysFile string
	// NATSCA (PEM) is the CA the NATS servers' certificates are checked
	// against, and NATSCert and NATSKey (PEM) an optional client
	// certificate, for the connection to NATSURL. Default none: the
	// system roots if the server asks for TLS.
	NATSCA   string
	NATSCert string
	NATSKey  string
	// NATSTLSCert and NATSTLSKey (PEM) make the embedded server's
	// NATSListen serve TLS only; with NATSTLSClientCA (PEM) it also
	// requires of every client a certificate signed by that CA. Default
	// none: plain TCP, for loopback.
	NATSTLSCert     string
	NATSTLSKey      string
	NATSTLSClientCA string
	// KVReplicas is the replication of the KV buckets, 1 to 5 (1 on one
	// NATS server; 3 on a NATS cluster of 3 or more). Default:
	// store.DefaultKVConfig's.
	KVReplicas int
	// Journal bounds the stream of stored QoS 1 messages (replicated
	// like the KV buckets): Journal.MaxAge is how long a message waits
	// for an offline persistent session (default 7 days), Journal.MaxBytes
	// the cluster-wide cap (default 1 GiB; the oldest go first). A
	// session that comes back after its messages left is told so
	// (pushring_session_gaps_total, and a log line). Cluster, NodeID and
	// Replicas are set by the node.
	Journal journal.Config
	// RetainedMaxBytes bounds the retained messages (payload and
	// properties), one per group at most, kept in the MQTT session
	// records' bucket. Every node holds them in memory. A retained message
	// that does not fit is delivered but not kept
	// (pushring_mqtt_refusals_total{reason="retained_full"}). Default
	// 64 MiB.
	RetainedMaxBytes int64
	// TopicRulesFile names the topic rules file (package rules): the
	// topics outside pushring's namespaces that principals may publish
	// and subscribe to, as on a plain broker. Read once at Start; a file
	// that does not parse, or whose patterns overlap pushring's own
	// namespaces, stops the node from starting. "" (the default): every
	// such topic is closed.
	TopicRulesFile string
	// StoreWait is how long Start keeps trying to open the KV buckets and
	// the journal while JetStream does not answer (default 60 s): NATS
	// servers started together, or one restarting, may need seconds to
	// elect their JetStream leaders, and a node that gave up at once
	// would need its supervisor to start it again.
	StoreWait time.Duration
	// OutputBatch is the most envelopes a burst is delivered in while
	// the connections' output waits to leave in one write each (see
	// fanout.Config.OutputBatch): fewer, larger socket writes make a
	// burst's cost, and so its duration, steadier. 1: every delivery is
	// written as soon as a poller gets to it. Default 64.
	OutputBatch int
	// NATSListen makes the embedded NATS server listen on host:port, so
	// other nodes and tools can use it. Empty (the default): in-process
	// only.
	NATSListen string
	// GossipAddr is the host:port of memberlist's gossip (UDP and TCP).
	// Default "127.0.0.1:7946": one node on one machine needs no key.
	// Another address (an unspecified host included) needs a gossip key
	// (GossipKeyFile) or InsecureGossip.
	GossipAddr string
	// Join lists gossip addresses of nodes already in the cluster; empty
	// (the default) starts a new cluster. Nodes that start together may
	// list each other: joining is retried in the background, every
	// Membership.JoinRetryInterval (default here 1 s).
	Join []string
	// GossipKeyFile names the file of gossip keys: one base64 key a line
	// (standard or URL alphabet, padded or not) of 16, 24 or 32 bytes;
	// blank lines and lines starting with '#' are skipped. The first key
	// encrypts, all decrypt; a node without one of them cannot join.
	// Reload rereads it, so keys rotate without a restart. It should be
	// readable by the node's user only (a looser mode is logged at warn).
	// Empty (the default): Membership.Keys, if any. A key is required
	// when GossipAddr is not loopback or Join is set, unless
	// InsecureGossip: gossip in clear lets anyone who reaches it join
	// the cluster and take a share of the ring.
	GossipKeyFile string
	// InsecureGossip lets a node gossip without a key on a non-loopback
	// address or with Join (logged at warn at every start). Default
	// false: such a node refuses to start.
	InsecureGossip bool
	// Membership tunes failure detection and the ring (probe timings,
	// virtual nodes, gossip keys when GossipKeyFile is empty); NodeID,
	// addresses, Join, Label, Logger and Registerer are filled in by the
	// node. Zero fields take
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
	// WSOrigins lists the Origin values a browser may open MQTT over
	// WebSocket (GET /mqtt on the HTTP and HTTPS listeners) from; empty:
	// any. Requests without an Origin (not from a browser) are allowed.
	WSOrigins []string
	// TrustedProxies are the load balancers in front of the node: the
	// HTTP API reads the client's address from their Forwarded /
	// X-Forwarded-For headers (api.Config.TrustedProxies), and with
	// Router.ProxyProtocol the MQTT listeners take PROXY protocol
	// headers from them alone (unless Router.TrustedProxies is set).
	// Default none.
	TrustedProxies []netip.Prefix
	// Webhooks tunes the webhook senders (queues, retries); Node, Logger
	// and Registerer are filled in by the node.
	Webhooks webhook.Config
	// Router tunes the MQTT server (limits, timeouts); NodeID, AuthTopic,
	// Logger and Registerer are filled in by the node. Zero fields take
	// router's defaults (DefaultConfig sets router.DefaultConfig()).
	Router router.Config
	// ShutdownTimeout bounds Close, the graceful stop (SIGTERM): past it
	// the steps left are cut short (logged), the node stops anyway, and
	// cmd/pushring still exits 0. Default 20 s: a drain takes under a
	// second on 3 nodes and about 3 s at worst (leaving the gossip up to
	// 2 s, 0.4 s measured; the peers' hand-over 0.2 s; the clients closed
	// at 1,000 a second; the positions written), and the rest is
	// room for a slow store (appends in flight wait up to
	// Journal.Timeout, 5 s) while staying inside the grace periods of the
	// usual supervisors (Kubernetes' 30 s, systemd's 90 s) before they
	// send SIGKILL.
	ShutdownTimeout time.Duration
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
		StoreWait:  time.Minute,
		SessionTTL: 24 * time.Hour,
		LoginRate:  a.LoginRate,
		LoginBurst: a.LoginBurst,

		OutputBatch: fanout.DefaultConfig().OutputBatch,

		LoginAccountFailures:   a.LoginAccountFailures,
		LoginAccountMaxBackoff: a.LoginAccountMaxBackoff,
		HTTP:                   a.HTTP,

		GossipAddr:      "127.0.0.1:7946",
		ShutdownTimeout: 20 * time.Second,
		Membership:      membership.DefaultConfig(),
		Router:          router.DefaultConfig(),
	}
}

// Validate reports the error Start would return for c before it starts
// anything: nil if c passes the checks of the node and of every
// component it configures.
func (c Config) Validate() error { return c.withDefaults().validate() }

// The TLS listeners' default ports, the usual ones for MQTT over TLS and
// HTTPS next to 8080; a listener set to addrOff does not start.
const (
	defaultMQTTTLSAddr = ":8883"
	defaultHTTPSAddr   = ":8443"
	addrOff            = "off"
)

// tlsListenerOn reports whether a TLS listener address is set and not "off".
func tlsListenerOn(addr string) bool { return addr != "" && addr != addrOff }

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
	c.StoreWait = cmp.Or(c.StoreWait, d.StoreWait)
	c.OutputBatch = cmp.Or(c.OutputBatch, d.OutputBatch)
	c.SessionTTL = cmp.Or(c.SessionTTL, d.SessionTTL)
	c.LoginRate = cmp.Or(c.LoginRate, d.LoginRate) // negative stays: no limit
	c.LoginBurst = cmp.Or(c.LoginBurst, d.LoginBurst)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, d.ShutdownTimeout)
	if c.TLSCertFile != "" {
		c.MQTTTLSAddr = cmp.Or(c.MQTTTLSAddr, defaultMQTTTLSAddr)
		c.HTTPSAddr = cmp.Or(c.HTTPSAddr, defaultHTTPSAddr)
	}
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
	keys, keysErr := c.gossipKeys()
	if i := slices.Index(c.AdvertiseMQTTTLS, ""); i >= 0 && advertise == nil {
		advertise = check.New("AdvertiseMQTTTLS[%d] is empty", i)
	}
	var tlsErr error
	for _, a := range []struct{ field, addr string }{{"MQTTTLSAddr", c.MQTTTLSAddr}, {"HTTPSAddr", c.HTTPSAddr}} {
		if tlsListenerOn(a.addr) && tlsErr == nil {
			tlsErr = configerr.First(
				check.If(c.TLSCertFile == "", "%s %q needs TLSCertFile and TLSKeyFile", a.field, a.addr),
				hostPort(a.field, a.addr))
		}
	}
	return configerr.First(
		check.If((c.NATSCert == "") != (c.NATSKey == ""), "NATSCert and NATSKey go together"),
		check.If(c.NATSURL == "" && (c.NATSCA != "" || c.NATSCert != "" || c.NATSCredsFile != ""),
			"NATSCA, NATSCert, NATSKey and NATSCredsFile need NATSURL (the embedded server is reached in-process)"),
		check.If(c.NATSURL != "" && c.NATSAuthorizedKeysFile != "",
			"NATSAuthorizedKeysFile is for the embedded server; with NATSURL the NATS server's config authorizes (pushctl nats-config)"),
		check.If((c.NATSTLSCert == "") != (c.NATSTLSKey == ""), "NATSTLSCert and NATSTLSKey go together"),
		check.If(c.NATSTLSClientCA != "" && c.NATSTLSCert == "", "NATSTLSClientCA needs NATSTLSCert and NATSTLSKey"),
		check.If(c.NATSTLSCert != "" && (c.NATSListen == "" || c.NATSURL != ""), "NATSTLSCert needs NATSListen and the embedded server"),
		check.If(c.NodeID == "" || strings.ContainsAny(c.NodeID, ".*> \t\r\n"),
			"NodeID %q must be set, without '.', '*', '>' or white space", c.NodeID),
		configerr.Positive(check, "ShutdownTimeout", c.ShutdownTimeout),
		hostPort("MQTTAddr", c.MQTTAddr),
		hostPort("HTTPAddr", c.HTTPAddr),
		configerr.Positive(check, "StoreWait", c.StoreWait),
		configerr.Positive(check, "OutputBatch", c.OutputBatch),
		advertise,
		natsListen,
		check.If((c.TLSCertFile == "") != (c.TLSKeyFile == ""), "TLSCertFile and TLSKeyFile must be set together (got %q, %q)", c.TLSCertFile, c.TLSKeyFile),
		check.If(c.ClientCAFile != "" && c.TLSCertFile == "", "ClientCAFile needs TLSCertFile and TLSKeyFile"),
		tlsErr,
		configerr.Wrap(ErrInvalidConfig, c.fanoutConfig().Validate()),
		configerr.Wrap(ErrInvalidConfig, c.membershipConfig(c.AdvertiseMQTT, c.AdvertiseMQTTTLS, c.HTTPAddr, keys).Validate()),
		check.If(c.GossipKeyFile != "" && len(c.Membership.Keys) > 0, "GossipKeyFile and Membership.Keys are both set: set one"),
		keysErr,
		c.checkGossipExposure(len(keys) > 0),
		configerr.Wrap(ErrInvalidConfig, c.routerConfig().Validate()),
		configerr.Wrap(ErrInvalidConfig, c.apiConfig().Validate()),
		configerr.Wrap(ErrInvalidConfig, c.kvConfig().Validate()),
		configerr.Wrap(ErrInvalidConfig, c.journalConfig().Validate()),
		configerr.Wrap(ErrInvalidConfig, c.retainedConfig().Validate()),
	)
}

// retainedConfig is the retained messages' config as Start builds it:
// one holds the largest message MQTT or HTTP accepts.
func (c Config) retainedConfig() retained.Config {
	r := retained.DefaultConfig()
	r.MaxBytes = cmp.Or(c.RetainedMaxBytes, r.MaxBytes)
	largest := max(cmp.Or(c.Router.MaxPacketSize, router.DefaultConfig().MaxPacketSize), c.apiConfig().MaxPayloadBytes)
	r.MaxValueBytes = int(min(int64(largest), r.MaxBytes))
	return r
}

// kvConfig is the store's config as Start builds it.
func (c Config) kvConfig() store.KVConfig {
	k := store.DefaultKVConfig()
	k.Cluster, k.Replicas = c.Cluster, c.KVReplicas
	// The sessions bucket drops records after SessionMaxAge: never before
	// the sessions it holds expire.
	k.SessionMaxAge = max(k.SessionMaxAge, c.SessionTTL)
	// An MQTT session's record outlives the session's expiry (whole
	// seconds, as the bucket's TTLs are).
	expiry := cmp.Or(c.Router.SessionExpiry, router.DefaultConfig().SessionExpiry)
	k.MQTTSessionExpiry = max(expiry.Truncate(time.Second)+time.Second, k.MQTTSessionExpiry)
	return k
}

// journalConfig is the journal's config as Start builds it.
func (c Config) journalConfig() journal.Config {
	j := c.Journal
	j.Cluster, j.NodeID, j.Replicas = c.Cluster, c.NodeID, c.KVReplicas
	return j
}

// fanoutConfig is the fanout's Config as this node sets it, without the
// logger and registry of the running node.
func (c Config) fanoutConfig() fanout.Config {
	f := fanout.DefaultConfig()
	f.Cluster, f.NodeID = c.Cluster, c.NodeID
	f.OutputBatch = c.OutputBatch
	return f
}

// membershipConfig is c.Membership with what the node sets itself, given
// the addresses it advertises and the gossip keys, without the logger and
// registry of the running node.
func (c Config) membershipConfig(mqtt, mqttTLS []string, http string, keys [][]byte) membership.Config {
	m := c.Membership
	m.NodeID, m.GossipAddr, m.Join, m.Label, m.Keys = c.NodeID, c.GossipAddr, c.Join, c.Cluster, keys
	m.MQTT, m.MQTTTLS, m.HTTP, m.Version = mqtt, mqttTLS, http, Version
	return m
}

// routerConfig is c.Router with what the node sets itself, without the
// logger and registry of the running node.
func (c Config) routerConfig() router.Config {
	r := c.Router
	r.NodeID, r.AuthTopic = c.NodeID, c.AuthTopic
	if len(r.TrustedProxies) == 0 {
		r.TrustedProxies = c.TrustedProxies // the same balancers front both listeners
	}
	// A persistent session's backlog bound by age is at most the
	// journal's: older messages have left the journal anyway (the
	// client is told of that gap instead), so a larger bound would
	// promise what the journal does not keep.
	if kept := cmp.Or(c.Journal.MaxAge, journal.DefaultConfig().MaxAge); kept > 0 {
		r.SessionBacklogAge = min(cmp.Or(r.SessionBacklogAge, router.DefaultConfig().SessionBacklogAge), kept)
	}
	return r
}

// apiConfig is the API's Config as this node sets it, without the admin
// keys (Start sets them with SetAdminKeys, as Reload does) and the logger
// and registry of the running node.
func (c Config) apiConfig() api.Config {
	a := api.DefaultConfig()
	a.SessionTTL = c.SessionTTL
	a.LoginRate, a.LoginBurst = c.LoginRate, c.LoginBurst
	a.LoginAccountFailures, a.LoginAccountMaxBackoff = c.LoginAccountFailures, c.LoginAccountMaxBackoff
	a.HTTP = c.HTTP
	a.PrivatePrefix = c.Router.PrivatePrefix
	a.TrustedProxies = c.TrustedProxies
	return a
}

// Node is a running node.
type Node struct {
	cfg      Config
	log      *slog.Logger
	adminKey string // the first admin key, for tests and tools
	// adminKeyFile is the file Reload rereads the admin keys from; empty
	// when they came from Config.AdminKey.
	adminKeyFile string
	api          *api.API

	embedded *natsembed.Server
	nc       *nats.Conn
	natsPub  string     // this node's public nkey, "" when it signs in otherwise
	reloadMu sync.Mutex // one Reload at a time
	dir      *store.Directory
	journal  *journal.Journal
	retained *retained.Store
	hooks    *webhook.Dispatcher
	hookEps  *webhook.Endpoints
	posBatch *store.MQTTPosBatcher
	sessions *sessionStore
	fan      *fanout.Fanout
	cluster  *membership.Cluster
	router   *router.Server
	mqttLn   net.Listener
	httpLn   net.Listener
	http     *http.Server
	tls      *certs.Files // nil without TLSCertFile
	mqttTLS  net.Listener // nil: no MQTT over TLS
	httpsLn  net.Listener // nil: no HTTPS
	https    *http.Server
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closeMu  sync.Mutex
	closed   bool
	closing  atomic.Bool // set by Close, so the closed NATS connection is not reported as lost; /readyz answers 503
	registry *prometheus.Registry
	store    storeHealth // the last check of the store (storehealth.go)
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
	adminKeys := []string{cfg.AdminKey}
	if cfg.AdminKey == "" {
		n.adminKeyFile = cmp.Or(cfg.AdminKeyFile, filepath.Join(cfg.DataDir, "admin.key"))
		if adminKeys, err = n.readAdminKeys(cfg.AdminKeyFile == ""); err != nil {
			return nil, err
		}
	}
	n.adminKey = adminKeys[0]
	topicRules, err := cfg.topicRules()
	if err != nil {
		return nil, err
	}

	// NATS: the bus between nodes and the home of the KV buckets.
	if err := n.connectNATS(); err != nil {
		return nil, err
	}
	if err := n.natsMetrics(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(n.nc)
	if err != nil {
		return nil, fmt.Errorf("node: jetstream: %w", err)
	}
	var kv *store.KV
	if err := n.untilStoreAnswers(ctx, "the KV buckets", func() (err error) {
		kv, err = store.NewKV(ctx, js, cfg.kvConfig())
		return err
	}); err != nil {
		return nil, err
	}
	n.dir = store.NewDirectory(kv)
	n.dir.SetLogger(n.log)
	if err := n.dir.Start(runCtx); err != nil {
		return nil, fmt.Errorf("node: directory: %w", err)
	}
	// QoS 1 messages are stored in the journal before they are
	// acknowledged; persistent sessions keep their records in the KV.
	jcfg := cfg.journalConfig()
	jcfg.Registerer = n.registry
	if err := n.untilStoreAnswers(ctx, "the journal", func() (err error) {
		n.journal, err = journal.Open(ctx, js, jcfg, n.log)
		return err
	}); err != nil {
		return nil, fmt.Errorf("node: journal: %w", err)
	}
	rcfgRet := cfg.retainedConfig()
	rcfgRet.Logger, rcfgRet.Registerer = n.log, n.registry
	if err := n.untilStoreAnswers(ctx, "the retained messages", func() error {
		bucket, err := js.KeyValue(ctx, mqttBucketName(cfg))
		if err != nil {
			return err
		}
		n.retained, err = retained.Open(ctx, n.nc, bucket, rcfgRet)
		return err
	}); err != nil {
		return nil, fmt.Errorf("node: retained messages: %w", err)
	}
	bcfg := store.DefaultMQTTPosBatcherConfig()
	bcfg.Logger, bcfg.Registerer = n.log, n.registry
	if n.posBatch, err = store.NewMQTTPosBatcher(kv, bcfg); err != nil {
		return nil, fmt.Errorf("node: positions: %w", err)
	}
	n.sessions = newSessionStore(cfg.NodeID, kv, n.journal, n.dir, n.posBatch, cfg.kvConfig().MQTTSessionExpiry, n.log)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.sessions.run(runCtx)
	}()

	// MQTT listener first, so the advertised addresses are known.
	if n.mqttLn, err = net.Listen("tcp", cfg.MQTTAddr); err != nil {
		return nil, fmt.Errorf("node: mqtt listen: %w", err)
	}
	if n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("node: http listen: %w", err)
	}
	if err := n.listenTLS(); err != nil {
		return nil, err
	}
	advertise := cfg.AdvertiseMQTT
	if len(advertise) == 0 {
		advertise = []string{advertiseAddr(n.mqttLn.Addr())}
	}
	advertiseTLS := cfg.AdvertiseMQTTTLS
	if len(advertiseTLS) == 0 && n.mqttTLS != nil {
		advertiseTLS = []string{advertiseAddr(n.mqttTLS.Addr())}
	}
	ids := message.NewIDSource(cfg.NodeID)

	// fanout and router need each other: fanout delivers into the router,
	// the router forwards into fanout. lazyRouter breaks the cycle; until
	// the router exists there are no sessions to deliver to.
	var deliverTo atomic.Pointer[router.Server]
	fcfg := cfg.fanoutConfig()
	fcfg.Logger, fcfg.Registerer, fcfg.Store = n.log, n.registry, n.journal
	// fanout subscribes before this node joins the gossip: peers may
	// place homes and groups here as soon as they hear of it.
	place := &lazyPlacement{self: cfg.NodeID}
	if n.fan, err = fanout.New(fcfg, fanout.NewNATSBus(n.nc), n.dir, place, (*lazyRouter)(&deliverTo)); err != nil {
		return nil, err
	}
	if err := n.fan.Start(); err != nil {
		return nil, err
	}
	// Store health for /readyz: checked in the background, never per
	// request.
	if err := n.storeMetrics(); err != nil {
		return nil, fmt.Errorf("node: store metrics: %w", err)
	}
	mqttBucket := mqttBucketName(cfg)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.watchStore(runCtx, func(ctx context.Context) error {
			return checkStore(ctx, n.journal, js, mqttBucket)
		}, n.fan)
	}()
	keys, err := cfg.gossipKeys()
	if err != nil {
		return nil, err
	}
	n.warnGossip(len(keys) > 0)
	mcfg := cfg.membershipConfig(advertise, advertiseTLS, advertiseAddr(n.httpLn.Addr()), keys)
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
	n.fan.SetPresenceSource(connectedHere{r: n.router, dir: n.dir})
	wcfg := cfg.Webhooks
	wcfg.Node, wcfg.Logger, wcfg.Registerer = cfg.NodeID, n.log, n.registry
	if n.hooks, err = webhook.New(wcfg); err != nil {
		return nil, fmt.Errorf("node: webhooks: %w", err)
	}
	if err := n.untilStoreAnswers(ctx, "the webhook endpoints", func() error {
		bucket, err := js.KeyValue(ctx, mqttBucketName(cfg))
		if err != nil {
			return err
		}
		n.hookEps, err = webhook.Open(ctx, bucket, n.hooks)
		return err
	}); err != nil {
		return nil, fmt.Errorf("node: webhook endpoints: %w", err)
	}
	events := hookEvents{d: n.hooks, r: n.router, boot: bootID(cfg.NodeID)}
	n.router.SetEvents(events)
	n.fan.SetOffline(events.offlineWanted, events.offline)
	stats := &clusterStats{self: cfg.NodeID, js: js, subject: "$KV." + mqttBucketName(cfg) + "." + statsKey,
		r: n.router, reg: n.registry, log: n.log, samples: make(map[string]sample)}
	var ckeys *consoleKeys
	if err := n.untilStoreAnswers(ctx, "the console keys", func() error {
		bucket, err := js.KeyValue(ctx, mqttBucketName(cfg))
		if err != nil {
			return err
		}
		ckeys, err = openConsoleKeys(ctx, runCtx, js, bucket, n.log)
		if err != nil {
			return err
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			stats.run(runCtx, bucket)
		}()
		return nil
	}); err != nil {
		return nil, fmt.Errorf("node: console keys: %w", err)
	}
	// Deletions made while this node's watch was broken were not
	// reported: the principals present here are looked up again.
	n.dir.OnRewatch(func() { go n.dropGonePrincipals(runCtx) })
	n.dir.OnPrincipal(func(e store.Event) {
		if e.Type == store.PrincipalDeleted {
			n.router.DropPrincipal(e.Principal)
		} else {
			n.router.PrincipalChanged(e.Principal, e.Kind == store.Device)
		}
	})
	n.router.SetSessionStore(n.sessions)
	n.router.SetRetained(n.retained, n.dir.MemberOf)
	if topicRules != nil {
		n.router.SetTopicRules(topicRules, n.fan)
	}
	n.router.SetJournalEnd(n.fan.LastStored)
	// Clients that failed over drift back to their homes once the ring
	// is quiet again.
	n.router.SetHome(func(id string) bool { return n.cluster.Home(id) == cfg.NodeID })
	// --redirect-home: 5.0 clients are sent to their home's advertised
	// address (the first one, plain or TLS as they came).
	n.router.SetRedirect(func(id string, tls bool) string {
		home := n.cluster.Home(id)
		if home == cfg.NodeID {
			return ""
		}
		m, ok := n.cluster.Member(home)
		if !ok || m.State != membership.StateAlive {
			return ""
		}
		addrs := m.MQTT
		if tls {
			addrs = m.MQTTTLS
		}
		if len(addrs) == 0 {
			return ""
		}
		return addrs[0]
	})
	// While this node's NATS connection was down, stored messages may
	// have been forwarded to it and lost: persistent sessions replay as
	// after a ring change.
	// As the owner of groups, it may have missed Resolves: it reads the
	// stored group messages of that time back before resolving newer
	// ones (fanout's catch-up).
	// A peer routing stored messages under a ring this node has not
	// seen yet: hold the sessions now, not when the gossip tells.
	n.fan.OnViewMismatch(n.router.RingChanged)
	// Envelopes this node sent as its connection dropped may be lost
	// too: until the other nodes know (and hold their sessions), the
	// envelopes of stored messages are not sent (fanout's Mute).
	n.nc.SetDisconnectErrHandler(func(_ *nats.Conn, err error) {
		n.log.Warn("NATS disconnected", "err", err)
		n.fan.Mute()
		n.fan.Disconnected()
	})
	// After a dropped connection the sessions' read waits out the
	// store's timeout (RingChangedFor).
	afterDrop := max(cmp.Or(cfg.Router.RingSettle, router.DefaultConfig().RingSettle),
		cmp.Or(cfg.Journal.Timeout, journal.DefaultConfig().Timeout)+time.Second)
	n.fan.OnPeerDropped(func() { n.router.RingChangedFor(afterDrop) })
	n.nc.SetReconnectHandler(func(nc *nats.Conn) {
		n.log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
		n.fan.RenewWatches() // before the sessions read back what they missed
		// Sessions held here and told elsewhere before anything stored
		// goes out again, the catch-up's Delivers included.
		n.router.RingChangedFor(afterDrop)
		var peers []string
		for _, p := range n.cluster.Nodes() {
			peers = append(peers, p.ID)
		}
		n.fan.Unmute(peers)
		n.fan.Reconnected()
	})
	topicPrefix := strings.TrimSuffix(natsauth.TopicSubjects(cfg.Cluster), ">")
	var topicDropAt atomic.Int64 // the last slow consumer on a topic subject acted on
	n.nc.SetErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		topicSlow := errors.Is(err, nats.ErrSlowConsumer) && strings.HasPrefix(subject, topicPrefix)
		if topicSlow && time.Since(time.Unix(0, topicDropAt.Load())) <= afterDrop {
			return // the same episode, told by another topic subscription
		}
		n.log.Error("NATS async error", "subject", subject, "err", err)
		if errors.Is(err, nats.ErrSlowConsumer) && subject == fanout.Subject(cfg.Cluster, cfg.NodeID) {
			// NATS dropped envelopes for this node: as after a dropped
			// connection.
			n.fan.Disconnected()
			n.fan.Reconnected()
			n.router.RingChangedFor(afterDrop)
		} else if topicSlow {
			// NATS dropped topic messages for this node: its persistent
			// sessions read the stored ones back, as after a drop. The
			// topic subscriptions share one channel, so a full one is
			// reported once per subscription: one read for them all.
			topicDropAt.Store(time.Now().UnixNano())
			n.router.RingChangedFor(afterDrop)
		}
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.sessions.watchClaims(runCtx, n.router.Kick)
	}()
	// Attach records: sessions held here for principals homed elsewhere
	// are announced to their home, again whenever the ring changes.
	n.router.SetPresence(n.fan)
	n.cluster.OnChange(func(_, now *ring.Ring) {
		n.fan.RingChanged(now.Nodes())
		n.router.RingChanged()
	})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.router.Serve(n.mqttLn); err != nil && !errors.Is(err, net.ErrClosed) {
			n.log.Error("mqtt listener stopped", "err", err)
		}
	}()
	if n.mqttTLS != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.router.ServeTLS(n.mqttTLS, n.tls.ServerConfig()); err != nil && !errors.Is(err, net.ErrClosed) {
				n.log.Error("mqtt TLS listener stopped", "err", err)
			}
		}()
	}

	acfg := cfg.apiConfig()
	acfg.Logger, acfg.Registry = n.log, n.registry
	mqttWS, err := ws.New(ws.Config{Serve: n.router.ServeConn, Origins: cfg.WSOrigins,
		MaxMessageBytes: int64(n.router.MaxPacketSize()) + 16, Logger: n.log, Registerer: n.registry})
	if err != nil {
		return nil, err
	}
	n.api, err = api.New(acfg, n.dir, api.Deps{
		Publisher:   storedPublisher{n.fan},
		Retainer:    retainedWaiter{n.retained},
		Presence:    clusterPresence{fan: n.fan, cluster: n.cluster},
		Webhooks:    webhookAdmin{n.hookEps},
		Refused:     events.httpRefused,
		Stats:       stats.list,
		ConsoleKeys: ckeys,
		Tail:        n.journal.Tail,
		ACL:         n.dir,
		Cluster:     members,
		IDs:         ids,
		Ready:       n.ready,
		MQTT:        mqttWS,
	})
	if err != nil {
		return nil, err
	}
	n.api.SetAdminKeys(adminKeys...)
	// Every HTTP listener is served by a server from the API, on a
	// listener it limits: the same timeouts and one connection cap.
	n.http = n.api.NewHTTPServer()
	httpLn := n.api.LimitListener(n.httpLn, true)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.http.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("http listener stopped", "err", err)
		}
	}()
	if n.httpsLn != nil {
		n.https = n.api.NewHTTPServer()
		n.https.TLSConfig = n.tls.HTTPSConfig()
		httpsLn := n.api.LimitListener(n.httpsLn, false)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.https.ServeTLS(httpsLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("https listener stopped", "err", err)
			}
		}()
	}
	n.warnPlaintext(n.mqttLn, "MQTT")
	n.warnPlaintext(n.httpLn, "HTTP")
	n.log.Info("pushring node started", "mqtt", n.mqttLn.Addr().String(), "http", n.httpLn.Addr().String(),
		"mqtt_tls", addrString(n.mqttTLS), "https", addrString(n.httpsLn), "client_ca", cfg.ClientCAFile != "",
		"gossip", n.cluster.GossipAddr(), "advertise", advertise, "advertise_tls", advertiseTLS,
		"embedded_nats", n.embedded != nil, "auth_topic", cfg.AuthTopic)
	return n, nil
}

// readAdminKeys reads the admin keys from n.adminKeyFile, creating the
// file with a new key when create is set and it does not exist.
func (n *Node) readAdminKeys(create bool) ([]string, error) {
	var keys []string
	var loose, created bool
	var err error
	if create {
		keys, loose, created, err = secretfile.LoadOrCreate(n.adminKeyFile)
	} else {
		keys, loose, err = secretfile.Lines(n.adminKeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("node: admin key file: %w", err)
	}
	if loose {
		n.log.Warn("admin key file is readable by group or others; chmod 600 it", "file", n.adminKeyFile)
	}
	if created {
		n.log.Info("admin key generated", "file", n.adminKeyFile)
	} else {
		n.log.Info("admin keys loaded", "file", n.adminKeyFile, "keys", len(keys))
	}
	return keys, nil
}

func (n *Node) reloadAdminKeys() error {
	if n.adminKeyFile == "" {
		return nil
	}
	keys, err := n.readAdminKeys(false)
	if err != nil {
		return err
	}
	n.api.SetAdminKeys(keys...)
	return nil
}

// listenTLS loads the certificate files and binds the TLS listeners, if
// configured.
func (n *Node) listenTLS() error {
	cfg := &n.cfg
	if cfg.TLSCertFile == "" {
		return nil
	}
	var err error
	n.tls, err = certs.New(certs.Config{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile,
		ClientCAFile: cfg.ClientCAFile, Logger: n.log})
	if err != nil {
		return fmt.Errorf("node: TLS certificate: %w", err)
	}
	if tlsListenerOn(cfg.MQTTTLSAddr) {
		if n.mqttTLS, err = net.Listen("tcp", cfg.MQTTTLSAddr); err != nil {
			return fmt.Errorf("node: mqtt TLS listen: %w", err)
		}
	}
	if tlsListenerOn(cfg.HTTPSAddr) {
		if n.httpsLn, err = net.Listen("tcp", cfg.HTTPSAddr); err != nil {
			return fmt.Errorf("node: https listen: %w", err)
		}
	}
	return nil
}

// warnPlaintext logs a warning for a plaintext listener that other
// machines can reach: tokens and payloads cross the network in clear,
// unless TLS ends at a load balancer in front, which is why it is not
// refused.
func (n *Node) warnPlaintext(ln net.Listener, what string) {
	if addr := ln.Addr().String(); !loopbackAddr(addr) {
		n.log.Warn("plaintext "+what+" listener on a non-loopback address: credentials and messages cross the network in clear unless TLS ends in front of it",
			"addr", addr)
	}
}

func addrString(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// reloadTLS reads the certificate, key and client CA files again; new
// handshakes get them, live connections keep theirs.
func (n *Node) reloadTLS() error {
	if n.tls == nil {
		return nil
	}
	return n.tls.Reload()
}

// untilStoreAnswers calls open until it succeeds, fails on the
// configuration, ctx ends or Config.StoreWait passed: at start JetStream
// may still be electing its leaders. Each failure is logged.
func (n *Node) untilStoreAnswers(ctx context.Context, what string, open func() error) error {
	deadline := time.Now().Add(n.cfg.StoreWait)
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := open()
		if err == nil || errors.Is(err, store.ErrInvalidConfig) || errors.Is(err, journal.ErrInvalidConfig) ||
			time.Now().Add(wait).After(deadline) {
			return err
		}
		n.log.Warn("could not open "+what+" in JetStream yet; trying again", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// natsOptions: reconnect forever, and log what NATS reports on its own
// (slow-consumer drops of envelopes above all: they are message loss).
func (n *Node) natsOptions() []nats.Option {
	return []nats.Option{
		nats.Name("pushring-" + n.cfg.NodeID),
		nats.MaxReconnects(-1),
		// Replies come to this node's own inbox, the only one its
		// permissions let it read.
		nats.CustomInboxPrefix(natsauth.InboxPrefix(n.cfg.Cluster, n.cfg.NodeID)),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			n.log.Error("NATS async error", "subject", subject, "err", err)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { n.log.Warn("NATS disconnected", "err", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { n.log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted()) }),
		// nats.go gives up reconnecting when the server refuses the same
		// credentials twice: this node's key was revoked.
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil && !n.closing.Load() {
				n.log.Error("NATS connection closed for good: the node serves no more until restarted", "err", err)
			}
		}),
	}
}

// ready reports whether the node can serve: NATS connected, joined, and
// the store reachable at its last check (storehealth.go).
func (n *Node) ready() error {
	if n.closing.Load() {
		return errors.New("shutting down")
	}
	if n.nc == nil || !n.nc.IsConnected() {
		return errors.New("NATS not connected")
	}
	if !n.cluster.Joined() {
		return errors.New("not joined to the cluster yet")
	}
	return n.storeReady()
}

// MQTTAddr is the bound MQTT address.
func (n *Node) MQTTAddr() string { return n.mqttLn.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (n *Node) HTTPAddr() string { return n.httpLn.Addr().String() }

// MQTTTLSAddr is the bound MQTT-over-TLS address; "" when not serving it.
func (n *Node) MQTTTLSAddr() string { return addrString(n.mqttTLS) }

// HTTPSAddr is the bound HTTPS address; "" when not serving it.
func (n *Node) HTTPSAddr() string { return addrString(n.httpsLn) }

// AdminKey is the first admin key the node started with (tests and
// tools); Reload may since have replaced the accepted keys.
func (n *Node) AdminKey() string { return n.adminKey }

// Registry is the node's Prometheus registry (served on /metrics).
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Close stops the node, draining it first, within
// Config.ShutdownTimeout, in the order an operator expects of a
// graceful stop (SIGTERM):
//
//  1. Stop accepting: the MQTT listeners close (a CONNECT on a
//     connection accepted just before is refused with 0x03, so the
//     client tries its next address), /readyz answers 503 at once, and
//     the HTTP servers take no new connections (requests under way
//     finish, for up to Journal.Timeout and a second: an HTTP publish is
//     answered once its message is stored).
//  2. Leave the gossip: the peers mark this node "left", told apart from
//     a crash, and move its homes and groups at once.
//  3. Hand over: for handoverWait the clients here are still served
//     while every peer's ring drops this node, so that new messages go
//     to the new homes.
//  4. Close the clients: every persistent session's position is saved
//     and written first, then the connections close (no wills: the
//     node goes, not the clients) at up to router.DrainRate a second,
//     and each client reconnects through its login's list and resumes
//     its session on another node, which replays the journal from that
//     position.
//  5. Stop: the router (what the sessions had not delivered is counted
//     and logged once: stored messages are replayed where the sessions
//     resume, the others are dropped with the node), the last positions,
//     the journal's appends in flight (their publishers had no PUBACK
//     and send again), fanout, gossip, the directory, NATS.
//
// Steps 1–4 get ShutdownTimeout less a reserve (a quarter, at most 5 s)
// kept for step 5; a drain step with no time left is skipped and the
// final log line names it. Close is safe to call more than once.
func (n *Node) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	n.closing.Store(true) // /readyz: 503 from now on
	// A Reload under way finishes before anything it touches is stopped;
	// one that starts now sees closing and does nothing.
	n.reloadMu.Lock()
	n.reloadMu.Unlock()
	clock := newShutdownClock(n.cfg.ShutdownTimeout)

	// 1. Stop accepting.
	if n.router != nil {
		if err := n.router.StopAccepting(); err != nil {
			n.log.Warn("closing the MQTT listeners", "err", err)
		}
	} else {
		for _, ln := range []net.Listener{n.mqttLn, n.mqttTLS} {
			if ln != nil {
				ln.Close()
			}
		}
	}
	if n.http == nil && n.httpLn != nil {
		n.httpLn.Close()
	}
	if n.https == nil && n.httpsLn != nil {
		n.httpsLn.Close()
	}
	// Requests under way get as long as an HTTP publish may wait for
	// the store, and not more: a client that stalls mid-request does
	// not hold the stop.
	httpCtx, httpCancel := context.WithTimeout(clock.ctx, cmp.Or(n.cfg.Journal.Timeout, journal.DefaultConfig().Timeout)+time.Second)
	defer httpCancel()
	httpDone := shutdownHTTP(httpCtx, n.http, n.https)

	// 2. Leave, and 3. hand over, when there is anyone to hand over to.
	if n.cluster != nil && clock.step("leaving the cluster") {
		peers := len(n.cluster.Nodes()) > 1
		if err := n.cluster.Leave(max(clock.within(leaveTimeout), time.Millisecond)); err != nil {
			n.log.Warn("leaving the cluster", "err", err)
		}
		if peers && n.router != nil {
			clock.wait("handing over to the peers", handoverWait)
		}
	}

	// 4. Save the positions, then close the clients.
	drained := 0
	if n.router != nil && clock.step("closing the clients") {
		n.router.SavePositions()
		if n.posBatch != nil {
			ctx, cancel := context.WithTimeout(clock.ctx, positionsTimeout)
			if err := n.posBatch.Flush(ctx); err != nil {
				n.log.Warn("writing session positions before closing the clients", "err", err)
			}
			cancel()
		}
		drained = n.router.Drain(clock.ctx)
	}
	<-httpDone

	// 5. Stop.
	if n.router != nil {
		n.router.Close()
	}
	// The router saved the positions of its sessions: write them, then
	// let the appends in flight finish (their publishers are gone; they
	// send again) before fanout stops.
	if n.posBatch != nil {
		ctx, cancel := clock.stopCtx(positionsTimeout)
		if err := n.posBatch.Close(ctx); err != nil {
			n.log.Warn("writing session positions at shutdown", "err", err)
		}
		cancel()
	}
	if n.journal != nil {
		n.journal.Close()
	}
	if n.retained != nil {
		n.retained.Close()
	}
	if n.hooks != nil {
		// What the drain made (the clients' disconnects) and the offline
		// messages still queued go out to endpoints that answer, within
		// what is left of the shutdown.
		ctx, cancel := clock.stopCtx(webhookDrainTimeout)
		if err := n.hooks.Drain(ctx); err != nil {
			n.log.Warn("webhook events not all sent at shutdown", "err", err)
		}
		cancel()
	}
	if n.hookEps != nil {
		n.hookEps.Close()
	}
	if n.hooks != nil {
		n.hooks.Close()
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
	clock.report(n.log, drained)
	return nil
}

// storedPublisher is the API's Publisher: an HTTP publish at QoS 1 is
// answered 202 only once the message is stored.
type storedPublisher struct{ f *fanout.Fanout }

func (p storedPublisher) Forward(ctx context.Context, m *message.Message) error {
	return p.f.ForwardStored(ctx, m)
}

// mqttBucketName is the store's bucket of MQTT session records, which
// also holds the retained messages.
func mqttBucketName(cfg Config) string { return cfg.kvConfig().Cluster + "_mqtt" }

// retainedWaiter is the API's Retainer: Retain waits for the store's
// answer.
type retainedWaiter struct{ s *retained.Store }

func (r retainedWaiter) Retain(ctx context.Context, m *message.Message) error {
	done := make(chan error, 1)
	r.s.Retain(m, func(err error) { done <- err })
	select {
	case err := <-done:
		if errors.Is(err, retained.ErrFull) {
			return fmt.Errorf("%w: %w", api.ErrRetainedFull, err)
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
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

// topicRules reads and parses TopicRulesFile (nil without one).
func (c Config) topicRules() (*rules.Rules, error) {
	if c.TopicRulesFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(c.TopicRulesFile)
	if err != nil {
		return nil, fmt.Errorf("node: topic rules: %w", err)
	}
	r, err := rules.Parse(data, router.ReservedFilters(c.routerConfig()))
	if err != nil {
		return nil, fmt.Errorf("node: topic rules file %s: %w", c.TopicRulesFile, err)
	}
	return r, nil
}

// lazyRouter is fanout's Deliverer and AckDeliverer: the router, once it
// exists (until then there are no sessions to deliver to).
type lazyRouter atomic.Pointer[router.Server]

func (l *lazyRouter) Deliver(m *message.Message, recipients []string) {
	if r := (*atomic.Pointer[router.Server])(l).Load(); r != nil {
		r.Deliver(m, recipients)
	}
}

func (l *lazyRouter) DeliverTopic(m *message.Message) {
	if r := (*atomic.Pointer[router.Server])(l).Load(); r != nil {
		r.DeliverTopic(m)
	}
}

func (l *lazyRouter) DeliverAcked(m *message.Message, recipients []string, rel flow.Releaser, seq uint64) bool {
	if r := (*atomic.Pointer[router.Server])(l).Load(); r != nil {
		return r.DeliverAcked(m, recipients, rel, seq)
	}
	return false
}

// BeginOutputRun and EndOutputRun make lazyRouter fanout's OutputBatcher.
func (l *lazyRouter) BeginOutputRun() {
	if r := (*atomic.Pointer[router.Server])(l).Load(); r != nil {
		r.BeginOutputRun()
	}
}

func (l *lazyRouter) EndOutputRun() {
	if r := (*atomic.Pointer[router.Server])(l).Load(); r != nil {
		r.EndOutputRun()
	}
}

var (
	_ flow.AckDeliverer    = (*lazyRouter)(nil)
	_ fanout.OutputBatcher = (*lazyRouter)(nil)
	_ router.TopicInterest = (*fanout.Fanout)(nil)
)

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

// natsMetrics registers the counters of the node's NATS connection: what
// every message costs NATS and JetStream (journal appends and their
// acknowledgements, envelopes between nodes, KV writes and reads, API
// requests), per message published or per delivery, in any deployment.
func (n *Node) natsMetrics() error {
	for _, c := range []struct {
		name, help string
		v          func(nats.Statistics) uint64
	}{
		{"pushring_nats_out_messages_total", "Messages this node's NATS connection published (journal appends, envelopes, KV writes, JetStream API requests).", func(s nats.Statistics) uint64 { return s.OutMsgs }},
		{"pushring_nats_in_messages_total", "Messages this node's NATS connection received (acknowledgements, envelopes, KV updates, replies).", func(s nats.Statistics) uint64 { return s.InMsgs }},
		{"pushring_nats_out_bytes_total", "Payload bytes this node's NATS connection published.", func(s nats.Statistics) uint64 { return s.OutBytes }},
		{"pushring_nats_in_bytes_total", "Payload bytes this node's NATS connection received.", func(s nats.Statistics) uint64 { return s.InBytes }},
	} {
		f := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.v(n.nc.Stats())) })
		if err := n.registry.Register(f); err != nil {
			return err
		}
	}
	return nil
}

// dropGonePrincipals drops the principals present here that the store
// no longer has (deleted while the directory's watch was broken).
func (n *Node) dropGonePrincipals(ctx context.Context) {
	for _, id := range n.router.Present() {
		if ctx.Err() != nil {
			return
		}
		if _, err := n.dir.Principal(ctx, id); errors.Is(err, store.ErrNotFound) {
			n.log.Info("principal deleted while the store watch was broken: dropping its sessions here", "id", id)
			n.router.DropPrincipal(id)
		}
	}
}
