package router

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures one node's MQTT server. Build it from DefaultConfig
// and change what you need: New treats a zero numeric or duration field as
// "use the default" (except MaxConnections, where 0 means unlimited), and
// panics on a config it cannot run with (a prefix that is not a plain
// topic), since that is a programming error of the caller.
type Config struct {
	// NodeID names this node in logs and in assigned client ids.
	NodeID string

	// AuthTopic enables the prototype's login: a CONNECT without
	// credentials is accepted (CONNACK 0) but unauthenticated until its
	// first packet, a PUBLISH of a session token to ServicePrefix+"/auth"
	// (token = payload), ServicePrefix+"/auth/<token>", or "service/auth"
	// (the prototype client's spelling, token = payload). Off: CONNECT
	// must carry username and password.
	AuthTopic bool

	// PrivatePrefix, GroupPrefix and ServicePrefix are the topic roots:
	// "<PrivatePrefix>/<id>" is a principal's private tree,
	// "<GroupPrefix>/<gid>" a group topic, "<ServicePrefix>/..." is
	// reserved. Each must be a valid topic name without wildcards; the
	// ACL compares them level by level.
	PrivatePrefix string
	GroupPrefix   string
	ServicePrefix string

	// MaxPacketSize caps the remaining length of an inbound packet; a
	// larger one closes the connection before its body is read.
	MaxPacketSize int

	// MaxConnectPacketSize is MaxPacketSize until the client is
	// authenticated (the CONNECT, and the auth PUBLISH in auth-topic
	// mode), so an unauthenticated connection holds little memory. The
	// default leaves room for a 65,535-byte password, which still gets its
	// CONNACK 0x04 (B4); it is capped at MaxPacketSize.
	MaxConnectPacketSize int

	// ConnectTimeout: the CONNECT must arrive within it after accept,
	// and in auth-topic mode the auth PUBLISH within it after CONNACK
	// (slowloris, B8). It also bounds each call to the Authenticator, and
	// the time a packet may take to arrive whole once its first byte has
	// arrived (A2: a partial packet, even a partial fixed header, never
	// holds a connection open, keepalive 0 or not).
	ConnectTimeout time.Duration

	// MaxInflight caps the outbound QoS 1 messages awaiting PUBACK per
	// session; more wait in the session's queue. It also caps the inbound
	// QoS 2 packet ids held until PUBREL (over it the connection is
	// closed, E1).
	MaxInflight int
	// MaxUnconfirmed is how many QoS 1 PUBLISHes of one connection may be
	// acknowledged before every node delivering them confirmed they are
	// queued (flow control, hold.go): a publisher whose recipients keep up
	// never waits for a confirmation's round trip, and one that outruns a
	// backlogged recipient is held this far ahead of it (plus its own
	// window). A recipient's queue overflows only if the publishers
	// sending to it together run more than 3/4 of MaxQueued ahead. 0: the
	// default (32); negative: acknowledge only once confirmed.
	MaxUnconfirmed int

	// MaxQueued caps a session's queue of messages waiting for the
	// inflight window, for the socket to drain, or (persistent sessions)
	// for the client to come back. When full the oldest is dropped and
	// counted (pushring_queue_dropped_total).
	MaxQueued int

	// MaxQueuedBytes caps the payload bytes of one session's queue, on
	// top of MaxQueued (a persistent offline session would otherwise hold
	// MaxQueued × MaxPacketSize). Over it the oldest messages are dropped
	// and counted like MaxQueued drops; a single message larger than the
	// cap is still queued, alone.
	MaxQueuedBytes int

	// MaxSubscriptions caps the distinct filters of one session; a filter
	// over the cap gets SUBACK 0x80.
	MaxSubscriptions int

	// MaxConnections caps the connected (CONNACK 0) clients of this node;
	// 0 means unlimited. Over the cap: CONNACK 0x03, then close.
	MaxConnections int

	// ConnectRate is the new connections a second one source address
	// (IPv6: one /64) may open, with bursts up to ConnectBurst; over it a
	// connection is closed at once, before any byte is read, and counted
	// as refusal "connect_rate" (B7). ConnectRate < 0 turns the limit off.
	ConnectRate  float64
	ConnectBurst int

	// MaxSessionsPerPrincipal caps the sessions (connected or persistent
	// offline) one principal holds on this node. A new session over the
	// cap evicts the principal's oldest offline session; if all are
	// connected it is refused with CONNACK 0x03.
	MaxSessionsPerPrincipal int

	// SessionExpiry: a persistent (clean session = 0) session is kept this
	// long after its client disconnects, then dropped with its queue.
	// Sessions live in this process only: a node restart loses them.
	SessionExpiry time.Duration

	// WriteTimeout bounds each socket write; a client that does not read
	// for this long is disconnected (slow consumer, E2).
	WriteTimeout time.Duration

	// MaxOutboundBytes caps the bytes waiting to be written to one
	// connection. Over it, deliveries stop going to the socket: QoS 0
	// messages are dropped (counted as queue drops), QoS 1 messages wait
	// in the session queue (MaxQueued) until the socket drains. Control
	// packets (acks, pings) still go out, but a connection whose unwritten
	// bytes reach 4×MaxOutboundBytes is closed. Resent unacknowledged
	// messages (retry, reconnect) obey the same limit: they go out as the
	// socket drains, after the CONNACK. A client that reads nothing at
	// all is cut off by WriteTimeout.
	MaxOutboundBytes int

	// RetryInterval: an outbound QoS 1 PUBLISH unacknowledged for this
	// long is sent again with DUP set. Unacked messages are always resent
	// when a persistent session reconnects.
	RetryInterval time.Duration

	// GoroutinePerConn serves each TCP connection with a reader and a
	// writer goroutine of its own instead of the event loop. The event
	// loop (Linux: a few epoll pollers for all connections) keeps an idle
	// connection at a few KiB; other platforms, and connections that are
	// not plain TCP, always use goroutines.
	GoroutinePerConn bool

	// Logger receives the server's logs (nil: slog.Default()). Tokens and
	// passwords are never logged.
	Logger *slog.Logger

	// Registerer gets the server's Prometheus metrics; nil: not
	// registered (Stats still works).
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults described on each Config field.
func DefaultConfig() Config {
	return Config{
		NodeID:                  "node",
		PrivatePrefix:           "/private",
		GroupPrefix:             "/group",
		ServicePrefix:           "/service",
		MaxPacketSize:           256 << 10,
		MaxConnectPacketSize:    80 << 10,
		ConnectTimeout:          10 * time.Second,
		MaxInflight:             32,
		MaxUnconfirmed:          32,
		MaxQueued:               1000,
		MaxQueuedBytes:          8 << 20,
		MaxSubscriptions:        32,
		MaxConnections:          0,
		ConnectRate:             200,
		ConnectBurst:            2000,
		MaxSessionsPerPrincipal: 16,
		SessionExpiry:           24 * time.Hour,
		WriteTimeout:            10 * time.Second,
		MaxOutboundBytes:        1 << 20,
		RetryInterval:           30 * time.Second,
	}
}

// normalize fills zero fields from DefaultConfig and checks the prefixes.
func (c Config) normalize() Config {
	d := DefaultConfig()
	if c.NodeID == "" {
		c.NodeID = d.NodeID
	}
	str := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	str(&c.PrivatePrefix, d.PrivatePrefix)
	str(&c.GroupPrefix, d.GroupPrefix)
	str(&c.ServicePrefix, d.ServicePrefix)
	num := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	num(&c.MaxPacketSize, d.MaxPacketSize)
	num(&c.MaxConnectPacketSize, d.MaxConnectPacketSize)
	c.MaxConnectPacketSize = min(c.MaxConnectPacketSize, c.MaxPacketSize)
	num(&c.MaxInflight, d.MaxInflight)
	if c.MaxUnconfirmed == 0 {
		c.MaxUnconfirmed = d.MaxUnconfirmed // negative stays: none (hold.go)
	}
	num(&c.MaxQueued, d.MaxQueued)
	num(&c.MaxQueuedBytes, d.MaxQueuedBytes)
	num(&c.MaxSubscriptions, d.MaxSubscriptions)
	num(&c.MaxSessionsPerPrincipal, d.MaxSessionsPerPrincipal)
	num(&c.MaxOutboundBytes, d.MaxOutboundBytes)
	if c.ConnectRate == 0 {
		c.ConnectRate = d.ConnectRate
	}
	num(&c.ConnectBurst, d.ConnectBurst)
	if c.MaxConnections < 0 {
		c.MaxConnections = 0
	}
	if c.MaxInflight > 65534 {
		c.MaxInflight = 65534 // a free packet id must always exist (E3)
	}
	dur := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	dur(&c.ConnectTimeout, d.ConnectTimeout)
	dur(&c.SessionExpiry, d.SessionExpiry)
	dur(&c.WriteTimeout, d.WriteTimeout)
	dur(&c.RetryInterval, d.RetryInterval)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	for _, p := range []string{c.PrivatePrefix, c.GroupPrefix, c.ServicePrefix} {
		if strings.ContainsAny(p, "+#\x00") || strings.HasSuffix(p, "/") {
			panic(fmt.Sprintf("router: invalid topic prefix %q", p))
		}
	}
	return c
}
