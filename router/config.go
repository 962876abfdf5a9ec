package router

import (
	"cmp"
	"errors"
	"log/slog"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/configerr"
)

// ErrInvalidConfig is matched (errors.Is) by every error New returns for
// a Config it cannot run with; the error's text names the field.
var ErrInvalidConfig = errors.New("router: invalid config")

// check makes the errors that match ErrInvalidConfig.
var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "router"}

// Config configures one node's MQTT server. Build it from DefaultConfig
// and change what you need. New fills a zero field with its default
// (MaxConnections excepted, where 0 means unlimited, and AuthTopic and
// GoroutinePerConn, which default to off), then refuses, with an error
// naming the field, a value it cannot run with: a negative size, count or
// duration (MaxUnconfirmed, ConnectRate, PublishRate and PublishByteRate excepted, where a negative
// value means none and no limit), or a prefix that is not a plain topic.
type Config struct {
	// NodeID names this node in logs and in the client ids the server
	// assigns to clients that connect without one. Default "node".
	NodeID string

	// AuthTopic enables the auth-topic login, for clients that send no
	// credentials in CONNECT: such a CONNECT is accepted (CONNACK 0) but
	// unauthenticated until its first packet, a PUBLISH of a session
	// token to ServicePrefix+"/auth" (token = payload),
	// ServicePrefix+"/auth/<token>", or the first of these without its
	// leading '/' ("service/auth" by default, token = payload). Off (the
	// default): CONNECT must carry username and password.
	AuthTopic bool

	// RedirectHome sends a 5.0 client that logs in over TCP or TLS on a
	// node that is not its home to its home: CONNACK 0x9C (Use another
	// server) with the home's address as Server Reference (SetRedirect
	// says where). A draining node then also names each 5.0 client's new
	// home in its DISCONNECT (0x9C). 3.1.1 and WebSocket clients are
	// served where they land, through attach records, as without it.
	RedirectHome bool

	// PrivatePrefix, GroupPrefix and ServicePrefix are the topic roots:
	// "<PrivatePrefix>/<id>" is a principal's private tree,
	// "<GroupPrefix>/<gid>" a group topic, "<ServicePrefix>/..." is
	// reserved. Each must be a valid topic name without wildcards or a
	// trailing '/', and the three must differ: the ACL compares them
	// level by level. Defaults "/private", "/group" and "/service".
	PrivatePrefix string
	GroupPrefix   string
	ServicePrefix string

	// MaxPacketSize caps the remaining length of an inbound packet, in
	// bytes; a larger one closes the connection before its body is read.
	// Default 256 KiB.
	MaxPacketSize int

	// TopicAliasMaximum is the highest Topic Alias a 5.0 client may set
	// (announced in CONNACK); each costs the connection a copy of its
	// topic. Negative turns aliases off; at most 65535. Default 32.
	TopicAliasMaximum int

	// MaxConnectPacketSize, in bytes, is MaxPacketSize until the client is
	// authenticated (the CONNECT, and the auth PUBLISH in auth-topic
	// mode), so an unauthenticated connection holds little memory. The
	// default, 80 KiB, leaves room for the longest password a CONNECT can
	// carry (packet.MaxStringLen bytes), which still gets its CONNACK
	// 0x04; a value above MaxPacketSize is lowered to it.
	MaxConnectPacketSize int

	// ConnectTimeout: the CONNECT must arrive within it after accept, and
	// in auth-topic mode the auth PUBLISH within it after CONNACK, so a
	// slow client cannot hold a connection open without logging in. It
	// also bounds each call to the Authenticator, and the time a packet
	// may take to arrive whole once its first byte has arrived (a partial
	// packet, even a partial fixed header, never holds a connection open,
	// keepalive 0 or not). Default 10 s.
	ConnectTimeout time.Duration

	// MaxInflight caps the outbound QoS 1 messages awaiting PUBACK per
	// session; more wait in the session's queue. It also caps the inbound
	// QoS 2 packet ids held until PUBREL (over it the connection is
	// closed). At most maxInflight (one less than the 16-bit packet ids
	// there are), so that a free packet id always exists. Default 32.
	MaxInflight int
	// MaxUnconfirmed is how many QoS 1 PUBLISHes of one connection may be
	// acknowledged before every node delivering them confirmed they are
	// queued (flow control, puback.go): a publisher whose recipients keep up
	// never waits for a confirmation's round trip, and one that outruns a
	// backlogged recipient is kept this far ahead of it (plus its own
	// window). A recipient's queue overflows only if the publishers
	// sending to it together run further ahead than MaxQueued less the
	// withhold mark (a quarter of MaxQueued, see session.backlogged). 0: the
	// default (32); negative: acknowledge only once confirmed.
	MaxUnconfirmed int

	// MaxQueued caps a session's queue of messages waiting for the
	// inflight window, for the socket to drain, or (persistent sessions)
	// for the client to come back, in messages. When full the oldest is
	// dropped and counted (pushring_queue_dropped_total). Default 1000.
	MaxQueued int

	// MaxQueuedBytes caps the payload and 5.0 property bytes of one session's queue, on
	// top of MaxQueued (a persistent offline session would otherwise hold
	// MaxQueued × MaxPacketSize). Over it the oldest messages are dropped
	// and counted like MaxQueued drops; a single message larger than the
	// cap is still queued, alone. Default 8 MiB.
	MaxQueuedBytes int

	// MaxSubscriptions caps the distinct filters of one session; a filter
	// over the cap gets SUBACK 0x80. Default 32.
	MaxSubscriptions int

	// MaxConnections caps the connected (CONNACK 0) clients of this node.
	// Over the cap: CONNACK 0x03, then close. 0 (the default) means
	// unlimited.
	MaxConnections int

	// ConnectRate is the new connections a second one source address
	// (IPv6: one /64) may open, with bursts up to ConnectBurst
	// connections; over it a connection is closed at once, before any
	// byte is read, and counted as refusal "connect_rate", so one address
	// cannot storm the node with connects. ConnectRate < 0 turns the
	// limit off. Defaults 200 a second and 2000.
	ConnectRate  float64
	ConnectBurst int

	// MaxFilterLen caps the length in bytes of one topic filter in a
	// SUBSCRIBE; a longer one gets SUBACK 0x80 while the other filters of
	// the packet are granted. Every filter the ACL allows is within a
	// principal's private tree or a group topic, whose ids are at most 64
	// bytes, so the longest useful one ("/private/<id>/group/<gid>") is
	// 144 bytes with the default prefixes. Default 256, or more when the
	// prefixes are longer: never less than that longest useful filter
	// (New refuses a smaller value).
	MaxFilterLen int

	// MaxSubscriptionBytes caps what one principal's subscriptions hold
	// across all of its sessions on this node: each granted filter costs
	// its length plus subscriptionOverhead (64) bytes, so many short
	// filters reach it too. Over it, that filter gets SUBACK 0x80; the
	// bytes come back on UNSUBSCRIBE and when a session ends or expires.
	// Without it one principal could park MaxSessionsPerPrincipal ×
	// MaxSubscriptions long filters for SessionExpiry. Default 64 KiB (a
	// principal with 16 sessions of 32 group subscriptions with 32-byte
	// ids uses about 51 KiB); at least MaxFilterLen+64.
	MaxSubscriptionBytes int

	// PublishRate and PublishBurst limit the PUBLISH packets one principal
	// sends, all its connections to this node together: it earns
	// PublishRate messages a second, up to PublishBurst.
	// PublishByteRate and PublishByteBurst do the same for the bytes of
	// those packets (topic and payload). Over either, the connection
	// that went over is not read until the principal is back within its
	// rate: nothing already read is dropped, and a QoS 1 publisher simply
	// gets its PUBACKs later, as a slow network would do. This keeps one
	// member from flooding a group faster than the limit, so the bounded
	// queues of its offline members (MaxQueued) are not flushed at
	// network speed. A negative rate turns that limit off. The defaults,
	// 1,000 messages and 1 MiB a second with one second of burst, are far
	// above what one person or device sends, yet keep one principal from
	// taking the node (one publisher alone reaches about 33,000 small
	// messages a second on 2 cores); set them to what one principal of
	// the deployment may send (a device: tens a second). Load tests that
	// publish from one principal at full speed turn them off.
	PublishRate      float64
	PublishBurst     int
	PublishByteRate  float64
	PublishByteBurst int

	// MaxSessionsPerPrincipal caps the sessions (connected or persistent
	// offline) one principal holds on this node. A new session over the
	// cap evicts the principal's oldest offline session; if all are
	// connected it is refused with CONNACK 0x03. Default 16.
	MaxSessionsPerPrincipal int

	// SessionExpiry: a persistent (clean session = 0) session is kept this
	// long after its client disconnects, then dropped with its queue (and,
	// with a SessionStore, its record). Default 24 h.
	SessionExpiry time.Duration

	// TLSHandshakeTimeout bounds a TLS handshake (ServeTLS), from
	// accept: a client that stalls or sends garbage is cut off then,
	// counted in pushring_mqtt_tls_handshake_failures_total. Handshakes
	// run off the accept loop, so a slow one delays nobody else. Default
	// 10 s, as long as a CONNECT may take.
	TLSHandshakeTimeout time.Duration
	// MaxTLSHandshakes caps the TLS handshakes in progress, node-wide:
	// each holds a socket, a goroutine and public-key work, and the
	// per-address connect rate alone lets a few addresses hold
	// thousands for TLSHandshakeTimeout. Over it a new connection is
	// closed at once and counted (reason "busy"). Default 1,024: at a
	// few milliseconds a handshake, far more than honest reconnect
	// storms keep in flight.
	MaxTLSHandshakes int

	// ProxyProtocol: every connection to the MQTT listeners (Serve and
	// ServeTLS, not ServeConn) comes from a load balancer in
	// TrustedProxies and starts with a PROXY protocol header, version 1
	// or 2, naming the client it serves. That client's address is the
	// connection's in the connect rate, logs and refusal counts. A
	// connection from any other address, or one whose header is missing,
	// invalid or later than ConnectTimeout, is closed and counted in
	// pushring_mqtt_refusals_total (reasons proxy_untrusted,
	// proxy_header). Header reads run off the accept loop and share the
	// MaxTLSHandshakes slots with TLS handshakes (over it, proxy_header).
	// A header that names no client (a balancer's health check: version
	// 1 UNKNOWN, version 2 LOCAL) leaves the balancer's own address.
	ProxyProtocol bool
	// TrustedProxies are the addresses PROXY protocol headers are taken
	// from; ProxyProtocol needs at least one.
	TrustedProxies []netip.Prefix

	// WriteTimeout bounds each socket write; a client that does not read
	// for this long is disconnected as a slow consumer. Default 10 s.
	WriteTimeout time.Duration

	// MaxOutboundBytes caps the bytes waiting to be written to one
	// connection. Over it, deliveries stop going to the socket: QoS 0
	// messages are dropped (counted as queue drops), QoS 1 messages wait
	// in the session queue (MaxQueued) until the socket drains. Control
	// packets (acks, pings) still go out, but a connection whose unwritten
	// bytes reach 4×MaxOutboundBytes is closed. Resent unacknowledged
	// messages (retry, reconnect) obey the same limit: they go out as the
	// socket drains, after the CONNACK. A client that reads nothing at
	// all is cut off by WriteTimeout. Default 1 MiB.
	MaxOutboundBytes int

	// RetryInterval: an outbound QoS 1 PUBLISH unacknowledged for this
	// long is sent again with DUP set. Unacked messages are always resent
	// when a persistent session reconnects. Default 30 s.
	RetryInterval time.Duration

	// PositionInterval is how often the positions of durable sessions
	// are computed and saved (durable.go): a session that reconnects
	// elsewhere after its node died is replayed from about five
	// intervals back (posHistory ticks, then the batched write):
	// duplicates, never losses. Default 1 s.
	PositionInterval time.Duration
	// PositionWriteEvery: a durable session's position is written once
	// this many stored messages were sent to it since it was last
	// written (at most once a PositionInterval), and whatever the count
	// when its client goes or the node drains. The store's writes per
	// delivery are at most 1/PositionWriteEvery however slowly a
	// session's messages come; a session that moves without this node
	// (its death, a takeover) gets up to that many again as duplicates.
	// 1: written every interval in which it moved. Default 16.
	PositionWriteEvery int
	// RingSettle is how long after the last change of the hash ring
	// durable sessions replay the journal from their position at the
	// change, for what went to a node that did not deliver it while the
	// nodes' views converged (RingChanged). Default 2 s.
	RingSettle time.Duration
	// RebalanceRate is how many connections a second the server closes
	// of clients whose home is another node, once the ring has been
	// quiet for RebalanceAfter (balance.go), so that clients that failed
	// over drift back home. Default 20; negative: never.
	RebalanceRate float64
	// RebalanceAfter is how long the ring must not have changed before
	// clients are moved home: long enough that a failover's reconnects
	// and replays are over, so the moves do not pile onto them. Default
	// 30 s.
	RebalanceAfter time.Duration

	// SessionBacklogMessages, SessionBacklogBytes and SessionBacklogAge
	// bound what a persistent session gets back when it replays the
	// journal (a resume on any node, after a restart, or when its queue
	// overflowed): at most that many messages, that many payload (and 5.0 property) bytes,
	// none stored longer ago than the age. Over a bound the OLDEST are
	// dropped and the newest kept (for push notifications the latest
	// matter most); the drops are counted
	// (pushring_session_backlog_dropped_total{bound}) and the client gets
	// one notice on <private>/<id>/$gap with the range and count dropped.
	// A replay holds at most these bounds in memory, whatever the
	// journal holds.
	//
	// Defaults: 10,000 messages and 16 MiB, ten times and twice the
	// queue's (MaxQueued, MaxQueuedBytes): a phone back after a night or
	// a weekend in busy groups gets what it missed, and at most a
	// download of seconds on a mobile network; 24 h, the default
	// SessionExpiry: a notification older than a day is stale news. The
	// journal keeps messages for its own max age (--journal-max-age, 7
	// days): an age bound above it bounds nothing, what is older has left
	// the journal (the node lowers it to the journal's). A single message
	// larger than SessionBacklogBytes is still kept, alone.
	SessionBacklogMessages int
	SessionBacklogBytes    int
	SessionBacklogAge      time.Duration

	// GoroutinePerConn serves each TCP connection with a reader and a
	// writer goroutine of its own instead of the event loop. The event
	// loop (Linux: a few epoll pollers for all connections) keeps an idle
	// connection at a few KiB; other platforms, and connections that are
	// not plain TCP, always use goroutines. Default off.
	GoroutinePerConn bool

	// Logger receives the server's logs; tokens and passwords are never
	// logged. Nil (the default) means slog.Default(), so nothing the
	// server reports is lost; pass slog.New(slog.DiscardHandler) for
	// silence.
	Logger *slog.Logger

	// Registerer gets the server's Prometheus metrics. Nil (the default):
	// not registered (Stats still works).
	Registerer prometheus.Registerer

	// Now is the clock that times how long a session has been
	// backlogged (tests move it on). Default (and nil): time.Now.
	Now func() time.Time
}

// maxInflight keeps one of the math.MaxUint16 packet ids (0 is not one)
// free whatever the window holds.
const maxInflight = math.MaxUint16 - 1

// DefaultConfig returns a Config with the default of every field, as
// described on each.
func DefaultConfig() Config {
	return Config{
		NodeID:                  "node",
		PrivatePrefix:           "/private",
		GroupPrefix:             "/group",
		ServicePrefix:           "/service",
		MaxPacketSize:           256 << 10,
		TopicAliasMaximum:       32,
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
		MaxFilterLen:            256,
		MaxSubscriptionBytes:    64 << 10,
		PublishRate:             1_000,
		PublishBurst:            1_000,
		PublishByteRate:         1 << 20,
		PublishByteBurst:        1 << 20,
		SessionExpiry:           24 * time.Hour,
		WriteTimeout:            10 * time.Second,
		TLSHandshakeTimeout:     10 * time.Second,
		MaxTLSHandshakes:        1024,
		MaxOutboundBytes:        1 << 20,
		RetryInterval:           30 * time.Second,
		PositionInterval:        time.Second,
		PositionWriteEvery:      16,
		RingSettle:              2 * time.Second,
		RebalanceRate:           20,
		RebalanceAfter:          30 * time.Second,
		SessionBacklogMessages:  10_000,
		SessionBacklogBytes:     16 << 20,
		SessionBacklogAge:       24 * time.Hour,
		Now:                     time.Now,
	}
}

// Validate reports the error New would return for c: nil if New can run
// with it. Use it to refuse a bad config before starting anything else.
func (c Config) Validate() error { return c.withDefaults().validate() }

// withDefaults returns c with every zero field that has a default set to
// it (the nil Logger to slog.Default()), and MaxConnectPacketSize lowered
// to MaxPacketSize. It leaves wrong values for validate to refuse.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.NodeID = cmp.Or(c.NodeID, d.NodeID)
	c.PrivatePrefix = cmp.Or(c.PrivatePrefix, d.PrivatePrefix)
	c.GroupPrefix = cmp.Or(c.GroupPrefix, d.GroupPrefix)
	c.ServicePrefix = cmp.Or(c.ServicePrefix, d.ServicePrefix)
	c.MaxPacketSize = cmp.Or(c.MaxPacketSize, d.MaxPacketSize)
	c.MaxConnectPacketSize = cmp.Or(c.MaxConnectPacketSize, d.MaxConnectPacketSize)
	// The connect limit only ever tightens MaxPacketSize: a caller that
	// lowers MaxPacketSize alone gets a connect limit no larger.
	if c.MaxPacketSize > 0 {
		c.MaxConnectPacketSize = min(c.MaxConnectPacketSize, c.MaxPacketSize)
	}
	c.MaxInflight = cmp.Or(c.MaxInflight, d.MaxInflight)
	if c.TopicAliasMaximum == 0 {
		c.TopicAliasMaximum = d.TopicAliasMaximum
	} else if c.TopicAliasMaximum < 0 {
		c.TopicAliasMaximum = 0 // negative: off
	}
	c.MaxUnconfirmed = cmp.Or(c.MaxUnconfirmed, d.MaxUnconfirmed) // negative stays: none (puback.go)
	c.MaxQueued = cmp.Or(c.MaxQueued, d.MaxQueued)
	c.MaxQueuedBytes = cmp.Or(c.MaxQueuedBytes, d.MaxQueuedBytes)
	c.MaxSubscriptions = cmp.Or(c.MaxSubscriptions, d.MaxSubscriptions)
	c.MaxSessionsPerPrincipal = cmp.Or(c.MaxSessionsPerPrincipal, d.MaxSessionsPerPrincipal)
	c.MaxOutboundBytes = cmp.Or(c.MaxOutboundBytes, d.MaxOutboundBytes)
	c.MaxFilterLen = cmp.Or(c.MaxFilterLen, max(d.MaxFilterLen, minFilterLen(c)))
	c.MaxSubscriptionBytes = cmp.Or(c.MaxSubscriptionBytes, d.MaxSubscriptionBytes)
	c.PublishRate = cmp.Or(c.PublishRate, d.PublishRate) // negative stays: no limit
	c.PublishBurst = cmp.Or(c.PublishBurst, d.PublishBurst)
	c.PublishByteRate = cmp.Or(c.PublishByteRate, d.PublishByteRate) // negative stays: no limit
	c.PublishByteBurst = cmp.Or(c.PublishByteBurst, d.PublishByteBurst)
	c.ConnectRate = cmp.Or(c.ConnectRate, d.ConnectRate) // negative stays: no limit
	c.ConnectBurst = cmp.Or(c.ConnectBurst, d.ConnectBurst)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, d.ConnectTimeout)
	c.SessionExpiry = cmp.Or(c.SessionExpiry, d.SessionExpiry)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, d.WriteTimeout)
	c.TLSHandshakeTimeout = cmp.Or(c.TLSHandshakeTimeout, d.TLSHandshakeTimeout)
	c.MaxTLSHandshakes = cmp.Or(c.MaxTLSHandshakes, d.MaxTLSHandshakes)
	c.RetryInterval = cmp.Or(c.RetryInterval, d.RetryInterval)
	c.PositionInterval = cmp.Or(c.PositionInterval, d.PositionInterval)
	c.PositionWriteEvery = cmp.Or(c.PositionWriteEvery, d.PositionWriteEvery)
	c.RingSettle = cmp.Or(c.RingSettle, d.RingSettle)
	c.RebalanceRate = cmp.Or(c.RebalanceRate, d.RebalanceRate)
	c.RebalanceAfter = cmp.Or(c.RebalanceAfter, d.RebalanceAfter)
	c.SessionBacklogMessages = cmp.Or(c.SessionBacklogMessages, d.SessionBacklogMessages)
	c.SessionBacklogBytes = cmp.Or(c.SessionBacklogBytes, d.SessionBacklogBytes)
	c.SessionBacklogAge = cmp.Or(c.SessionBacklogAge, d.SessionBacklogAge)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// validate checks a Config that went through withDefaults. The error
// names the first bad field.
func (c Config) validate() error {
	return configerr.First(
		validPrefix("PrivatePrefix", c.PrivatePrefix),
		validPrefix("GroupPrefix", c.GroupPrefix),
		validPrefix("ServicePrefix", c.ServicePrefix),
		distinctPrefixes(c),
		configerr.Positive(check, "MaxPacketSize", c.MaxPacketSize),
		configerr.Positive(check, "MaxConnectPacketSize", c.MaxConnectPacketSize),
		configerr.Positive(check, "ConnectTimeout", c.ConnectTimeout),
		configerr.Positive(check, "MaxInflight", c.MaxInflight),
		check.If(c.TopicAliasMaximum > 65535, "TopicAliasMaximum must be at most 65535 (got %d)", c.TopicAliasMaximum),
		check.If(c.MaxInflight > maxInflight, "MaxInflight must be at most %d, so a packet id is always free (got %d)", maxInflight, c.MaxInflight),
		configerr.Positive(check, "MaxQueued", c.MaxQueued),
		configerr.Positive(check, "MaxQueuedBytes", c.MaxQueuedBytes),
		configerr.Positive(check, "MaxSubscriptions", c.MaxSubscriptions),
		check.If(c.MaxConnections < 0, "MaxConnections must be >= 0, 0 for no limit (got %d)", c.MaxConnections),
		check.If(math.IsNaN(c.ConnectRate), "ConnectRate must be a number (got NaN)"),
		configerr.Positive(check, "ConnectBurst", c.ConnectBurst),
		configerr.Positive(check, "MaxSessionsPerPrincipal", c.MaxSessionsPerPrincipal),
		check.If(c.MaxFilterLen < minFilterLen(c), "MaxFilterLen must be at least %d, the longest filter the ACL allows with these prefixes (got %d)", minFilterLen(c), c.MaxFilterLen),
		check.If(c.MaxSubscriptionBytes < c.MaxFilterLen+subscriptionOverhead, "MaxSubscriptionBytes must be at least MaxFilterLen+%d = %d, room for one filter (got %d)", subscriptionOverhead, c.MaxFilterLen+subscriptionOverhead, c.MaxSubscriptionBytes),
		check.If(math.IsNaN(c.PublishRate), "PublishRate must be a number (got NaN)"),
		configerr.Positive(check, "PublishBurst", c.PublishBurst),
		check.If(math.IsNaN(c.PublishByteRate), "PublishByteRate must be a number (got NaN)"),
		configerr.Positive(check, "PublishByteBurst", c.PublishByteBurst),
		configerr.Positive(check, "SessionExpiry", c.SessionExpiry),
		configerr.Positive(check, "WriteTimeout", c.WriteTimeout),
		configerr.Positive(check, "TLSHandshakeTimeout", c.TLSHandshakeTimeout),
		configerr.Positive(check, "MaxTLSHandshakes", c.MaxTLSHandshakes),
		check.If(c.ProxyProtocol && len(c.TrustedProxies) == 0, "ProxyProtocol needs TrustedProxies, the balancers the headers come from"),
		configerr.Positive(check, "MaxOutboundBytes", c.MaxOutboundBytes),
		configerr.Positive(check, "RetryInterval", c.RetryInterval),
		configerr.Positive(check, "PositionInterval", c.PositionInterval),
		configerr.Positive(check, "PositionWriteEvery", c.PositionWriteEvery),
		configerr.Positive(check, "RingSettle", c.RingSettle),
		configerr.Positive(check, "RebalanceAfter", c.RebalanceAfter),
		configerr.Positive(check, "SessionBacklogMessages", c.SessionBacklogMessages),
		configerr.Positive(check, "SessionBacklogBytes", c.SessionBacklogBytes),
		configerr.Positive(check, "SessionBacklogAge", c.SessionBacklogAge),
	)
}

// validPrefix: a topic root is compared level by level with the topics
// clients use, so it must be a plain topic name: no wildcard, no NUL, and
// no trailing '/' (which would make an empty level of its own).
func validPrefix(field, p string) error {
	return check.If(strings.ContainsAny(p, "+#\x00") || strings.HasSuffix(p, "/"),
		"%s %q must be a topic name without wildcards, NUL or a trailing '/'", field, p)
}

// distinctPrefixes: two roots that are the same topic would make a group
// topic and a private tree indistinguishable.
func distinctPrefixes(c Config) error {
	switch {
	case c.PrivatePrefix == c.GroupPrefix:
		return check.New("PrivatePrefix and GroupPrefix must differ (both %q)", c.PrivatePrefix)
	case c.PrivatePrefix == c.ServicePrefix:
		return check.New("PrivatePrefix and ServicePrefix must differ (both %q)", c.PrivatePrefix)
	case c.GroupPrefix == c.ServicePrefix:
		return check.New("GroupPrefix and ServicePrefix must differ (both %q)", c.GroupPrefix)
	}
	return nil
}
