package membership

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/ring"
)

// ErrInvalidConfig is matched (errors.Is) by every error Start returns
// for a Config it cannot run with; the error's text names the field.
var ErrInvalidConfig = errors.New("membership: invalid config")

// check makes the errors that match ErrInvalidConfig.
var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "membership"}

// Config configures a Cluster. Build it from DefaultConfig and set NodeID.
// Start fills a zero field with its default, then refuses, with an error
// naming the field, a value it cannot run with.
type Config struct {
	// NodeID names this node; it is also its memberlist node name, so it
	// must be unique in the cluster. 1 to metaMaxID printable ASCII
	// bytes, no spaces, '.', '*' or '>'. Required (no default).
	NodeID string
	// GossipAddr is the host:port memberlist binds, UDP and TCP. Port 0
	// picks a free port; GossipAddr() tells which. Default
	// "127.0.0.1:7946": a cluster spanning hosts binds another address on
	// purpose, and should set Keys when it does.
	GossipAddr string
	// AdvertiseAddr is the host:port the other nodes use to reach this
	// one. Empty (the default): the bind address, or a private IP of this
	// host when binding all interfaces (memberlist's choice).
	AdvertiseAddr string
	// Join lists host:port gossip addresses of nodes already in the
	// cluster; none may be empty. Empty list (the default): start a new
	// cluster.
	Join []string
	// JoinRetryInterval: if no node in Join answers, Start fails when this
	// is zero (the default); otherwise Start succeeds and keeps trying
	// Join at this interval in the background until one answers or Close.
	// (Nodes that start together and list each other need the retry.)
	JoinRetryInterval time.Duration
	// Label is put on every gossip packet; nodes with another label are
	// ignored, so two clusters sharing a network stay apart. Use the
	// cluster name. At most maxLabel bytes; empty (the default): no
	// label.
	Label string
	// Keys is the gossip keyring: each key 16, 24 or 32 bytes (AES-128,
	// -192 or -256 in GCM mode). The first encrypts what this node sends,
	// all of them are tried on what it receives, and a packet or stream
	// that none decrypts (a node without the key or with another one) is
	// dropped, counted and logged: such a node never joins. SetKeys
	// replaces the list at run time, so keys rotate without a restart.
	// Empty (the default): gossip in clear, open to anyone who reaches
	// GossipAddr; the node package refuses that off loopback.
	Keys [][]byte

	// MQTT, MQTTTLS, HTTP and Version describe this node to the others
	// (Node.MQTT, Node.MQTTTLS, Node.HTTP, Node.Version). All of it must
	// fit in the node metadata (metaMaxSize bytes, memberlist's limit): at
	// most metaMaxMQTT MQTT addresses and as many MQTT-over-TLS ones, each
	// string at most metaMaxString bytes of UTF-8 without control
	// characters. Defaults empty.
	MQTT    []string
	MQTTTLS []string
	HTTP    string
	Version string

	// VirtualNodes per node on the hash ring, 1 to maxVirtualNodes (more
	// would be refused by the peers decoding this node's metadata). Every node
	// must use the same value or rings disagree; a peer that advertises
	// another value is logged at warn. Default 128.
	VirtualNodes int

	// Failure detection (see memberlist.Config). A crashed node is probed
	// by a peer within about ProbeInterval × (peers) / (peers-1), found
	// silent after ProbeTimeout plus indirect probes, suspected, and
	// declared dead SuspicionMult × ProbeInterval later (for fewer than 10
	// nodes; longer if the other nodes do not confirm). ProbeTimeout must
	// be shorter than ProbeInterval. Defaults, tuned on loopback for
	// detection within about 2 s: ProbeInterval 250ms, ProbeTimeout
	// 100ms, SuspicionMult 3 (a count of probe intervals), GossipInterval
	// 100ms.
	ProbeInterval  time.Duration
	ProbeTimeout   time.Duration
	SuspicionMult  int
	GossipInterval time.Duration
	// PushPullInterval is the period of full state syncs with a random
	// peer: the bound on convergence when gossip messages are lost, which
	// in clusters of a few nodes happens now and then. Default 5s.
	PushPullInterval time.Duration

	// Logger receives membership changes at info/warn and memberlist's own
	// log lines at debug. Nil (the default) means slog.Default(), so
	// nothing the cluster reports is lost; pass
	// slog.New(slog.DiscardHandler) for silence.
	Logger *slog.Logger
	// Registerer, if set, gets pushring_ring_changes_total and
	// pushring_cluster_nodes; Close unregisters them. Nil (the default):
	// not registered.
	Registerer prometheus.Registerer
}

// maxLabel is memberlist's limit on Label: its length travels in a byte.
const maxLabel = 255

// DefaultConfig returns the defaults: gossip on 127.0.0.1:7946,
// ring.DefaultVirtualNodes virtual nodes, failure detection tuned to about
// 2 s on a LAN or loopback. NodeID is still to be set.
func DefaultConfig() Config {
	return Config{
		GossipAddr:       "127.0.0.1:7946",
		VirtualNodes:     ring.DefaultVirtualNodes,
		ProbeInterval:    250 * time.Millisecond,
		ProbeTimeout:     100 * time.Millisecond,
		SuspicionMult:    3,
		GossipInterval:   100 * time.Millisecond,
		PushPullInterval: 5 * time.Second,
	}
}

// Validate reports the error Start would return for c before it binds
// anything: nil if c passes the checks. Use it to refuse a bad config
// before starting anything else.
func (c Config) Validate() error { return c.withDefaults().validate() }

// withDefaults returns c with every zero field that has a default set to
// it (the nil Logger to slog.Default()). It leaves wrong values for
// validate to refuse.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.GossipAddr = cmp.Or(c.GossipAddr, d.GossipAddr)
	c.VirtualNodes = cmp.Or(c.VirtualNodes, d.VirtualNodes)
	c.ProbeInterval = cmp.Or(c.ProbeInterval, d.ProbeInterval)
	c.ProbeTimeout = cmp.Or(c.ProbeTimeout, d.ProbeTimeout)
	c.SuspicionMult = cmp.Or(c.SuspicionMult, d.SuspicionMult)
	c.GossipInterval = cmp.Or(c.GossipInterval, d.GossipInterval)
	c.PushPullInterval = cmp.Or(c.PushPullInterval, d.PushPullInterval)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

// validate checks a Config that went through withDefaults. The error
// names the first bad field.
func (c Config) validate() error {
	return configerr.First(
		nodeID(c.NodeID),
		wrapIf("GossipAddr", checkHostPort(c.GossipAddr)),
		wrapIf("AdvertiseAddr", checkHostPort(c.AdvertiseAddr)),
		emptyJoin(c.Join),
		check.If(c.JoinRetryInterval < 0, "JoinRetryInterval must be >= 0, 0 for no retry (got %v)", c.JoinRetryInterval),
		check.If(len(c.Label) > maxLabel, "Label must be at most %d bytes (got %d)", maxLabel, len(c.Label)),
		checkKeys("Keys", c.Keys),
		configerr.Positive(check, "VirtualNodes", c.VirtualNodes),
		check.If(c.VirtualNodes > maxVirtualNodes, "VirtualNodes must be at most %d (got %d)", maxVirtualNodes, c.VirtualNodes),
		configerr.Positive(check, "ProbeInterval", c.ProbeInterval),
		configerr.Positive(check, "ProbeTimeout", c.ProbeTimeout),
		check.If(c.ProbeTimeout >= c.ProbeInterval, "ProbeTimeout (%v) must be shorter than ProbeInterval (%v)", c.ProbeTimeout, c.ProbeInterval),
		configerr.Positive(check, "SuspicionMult", c.SuspicionMult),
		configerr.Positive(check, "GossipInterval", c.GossipInterval),
		configerr.Positive(check, "PushPullInterval", c.PushPullInterval),
		checkMeta(c),
	)
}

// wrapIf names field in err, if any, as a config error.
func wrapIf(field string, err error) error {
	if err == nil {
		return nil
	}
	return check.New("%s: %v", field, err)
}

// checkHostPort accepts "" (no address) and host:port.
func checkHostPort(addr string) error {
	if addr == "" {
		return nil
	}
	_, _, err := splitHostPort(addr)
	return err
}

// emptyJoin: an empty address in Join can never answer, and with a retry
// interval Start would keep trying it.
func emptyJoin(join []string) error {
	for i, a := range join {
		if a == "" {
			return check.New("Join[%d] is empty", i)
		}
	}
	return nil
}

// checkKeys accepts an empty keyring (no encryption) or keys of AES
// sizes, each listed once: a repeated key is most likely a rotation step
// gone wrong (the same line pasted twice instead of the new key).
func checkKeys(field string, keys [][]byte) error {
	for i, k := range keys {
		switch len(k) {
		case 16, 24, 32:
		default:
			return check.New("%s[%d] must be 16, 24 or 32 bytes (got %d)", field, i, len(k))
		}
		for j := range i {
			if bytes.Equal(keys[j], k) {
				return check.New("%s[%d] repeats %s[%d]", field, i, field, j)
			}
		}
	}
	return nil
}

// nodeID: the id is the memberlist node name and a NATS subject token.
func nodeID(id string) error {
	if validID(id) == nil {
		return nil
	}
	return check.New("NodeID %q must be 1 to %d printable ASCII bytes without spaces, '.', '*' or '>'", id, metaMaxID)
}

// checkMeta encodes the node metadata as Start will, so that addresses
// too many or too long for it are refused before anything starts.
func checkMeta(c Config) error {
	_, err := appendMeta(nil, &meta{ID: c.NodeID, HTTP: c.HTTP, Version: c.Version, MQTT: c.MQTT, MQTTTLS: c.MQTTTLS, VirtualNodes: c.VirtualNodes, Leaving: true})
	if err == nil {
		return nil
	}
	return check.New("MQTT, MQTTTLS, HTTP and Version must fit the node metadata: %s", strings.TrimPrefix(err.Error(), ErrBadMeta.Error()+": "))
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
