package membership

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/ring"
)

// Config configures a Cluster. Start validates it; zero fields take the
// values of DefaultConfig.
type Config struct {
	// NodeID names this node; it is also its memberlist node name, so it
	// must be unique in the cluster. 1 to 64 printable ASCII bytes, no
	// spaces. Required.
	NodeID string
	// GossipAddr is the host:port memberlist binds, UDP and TCP (default
	// ":7946"). Port 0 picks a free port; GossipAddr() tells which.
	GossipAddr string
	// AdvertiseAddr is the host:port the other nodes use to reach this
	// one. Empty: the bind address, or a private IP of this host when
	// binding all interfaces (memberlist's choice).
	AdvertiseAddr string
	// Join lists host:port gossip addresses of nodes already in the
	// cluster. Empty: start a new cluster.
	Join []string
	// JoinRetryInterval: if no node in Join answers, Start fails when this
	// is zero; otherwise Start succeeds and keeps trying Join at this
	// interval in the background until one answers or Close. (Nodes that
	// start together and list each other need the retry.)
	JoinRetryInterval time.Duration
	// Label is put on every gossip packet; nodes with another label are
	// ignored, so two clusters sharing a network stay apart. Use the
	// cluster name.
	Label string
	// SecretKey, if set (16, 24 or 32 bytes), encrypts gossip with AES-GCM.
	// Every node needs the same key.
	SecretKey []byte

	// MQTT, HTTP and Version describe this node to the others (Node.MQTT,
	// Node.HTTP, Node.Version). All of it must fit in memberlist's 512
	// bytes of node metadata: at most 16 MQTT addresses, 255 bytes each.
	MQTT    []string
	HTTP    string
	Version string

	// VirtualNodes per node on the hash ring (default 128). Every node
	// must use the same value or rings disagree; a peer that advertises
	// another value is logged at warn.
	VirtualNodes int

	// Failure detection (see memberlist.Config). A crashed node is probed
	// by a peer within about ProbeInterval × (peers) / (peers-1), found
	// silent after ProbeTimeout plus indirect probes, suspected, and
	// declared dead SuspicionMult × ProbeInterval later (for fewer than 10
	// nodes; longer if the other nodes do not confirm). Defaults, tuned on
	// loopback for detection within about 2 s: ProbeInterval 250ms,
	// ProbeTimeout 100ms, SuspicionMult 3, GossipInterval 100ms.
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	SuspicionMult  int
	GossipInterval time.Duration
	// PushPullInterval is the period of full state syncs with a random
	// peer (default 5s): the bound on convergence when gossip messages
	// are lost, which in clusters of a few nodes happens now and then.
	PushPullInterval time.Duration

	// Logger receives membership changes at info/warn and memberlist's own
	// log lines at debug. Default slog.Default().
	Logger *slog.Logger
	// Registerer, if set, gets pushring_ring_changes_total and
	// pushring_cluster_nodes; Close unregisters them.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults: gossip on :7946, 128 virtual nodes,
// failure detection tuned to about 2 s on a LAN or loopback.
func DefaultConfig() Config {
	return Config{
		GossipAddr:       ":7946",
		VirtualNodes:     ring.DefaultVirtualNodes,
		ProbeInterval:    250 * time.Millisecond,
		ProbeTimeout:     100 * time.Millisecond,
		SuspicionMult:    3,
		GossipInterval:   100 * time.Millisecond,
		PushPullInterval: 5 * time.Second,
	}
}

// withDefaults fills zero fields and validates the result.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if c.GossipAddr == "" {
		c.GossipAddr = d.GossipAddr
	}
	if c.VirtualNodes <= 0 {
		c.VirtualNodes = d.VirtualNodes
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.SuspicionMult <= 0 {
		c.SuspicionMult = d.SuspicionMult
	}
	if c.GossipInterval <= 0 {
		c.GossipInterval = d.GossipInterval
	}
	if c.PushPullInterval <= 0 {
		c.PushPullInterval = d.PushPullInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if err := validID(c.NodeID); err != nil {
		return c, fmt.Errorf("membership: %w", err)
	}
	if c.ProbeTimeout >= c.ProbeInterval {
		return c, fmt.Errorf("membership: probe timeout %v must be shorter than the probe interval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if _, _, err := splitHostPort(c.GossipAddr); err != nil {
		return c, fmt.Errorf("membership: gossip address: %w", err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitHostPort(c.AdvertiseAddr); err != nil {
			return c, fmt.Errorf("membership: advertise address: %w", err)
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return c, fmt.Errorf("membership: secret key of %d bytes, want 16, 24 or 32", len(c.SecretKey))
	}
	return c, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}
