// Package router is the MQTT 3.1.1 server of one pushring node: listeners,
// connections, MQTT sessions, the topic ACL, and delivery of messages to
// the sessions held on this node. It meets the rest of the node through
// small interfaces: Authenticator and ACL (the store's directory),
// Forwarder (fanout, for messages published here; as an AckForwarder it
// also confirms QoS 1 messages, puback.go), Presence (fanout's attach
// records: which principals are present here, with sessions) and, the other way,
// *Server implements fanout.Deliverer and fanout.AckDeliverer without
// importing fanout.
//
// # Files
//
//	doc.go               this overview
//	config.go            Config, DefaultConfig, Validate: the defaults and the checks New applies
//	iface.go             Identity and what the node plugs in: Authenticator, ACL, Forwarder
//	server.go            Server: New, Serve, ServeTLS (handshakes off the accept loop), Close, Stats, Deliver, Revoke; the session registry (bind, detach, expiry)
//	conn.go              the seam between socket I/O (transport) and protocol (handler); tcpTransport, two goroutines a connection
//	conn_epoll.go        Linux: the event-loop transport (epoll pollers, deadlines checked by a sweep)
//	conn_epoll_other.go  other platforms: no event loop, every connection uses tcpTransport
//	batch.go             BeginOutputRun, EndOutputRun: output held over a run of deliveries, written once per run
//	batch_epoll.go       Linux: the pollers' held list
//	mqtt.go              the protocol handler of one connection: CONNECT, auth-topic login, PUBLISH, SUBSCRIBE, acks, will
//	session.go           session state: subscriptions, inflight window, resends, queue, replay on reconnect
//	queue.go             the bounded message queue and the ring of recently delivered ids
//	puback.go            QoS 1 flow control, publishing side: AckForwarder, each connection's ordered FIFO of pending PUBACKs (waiting for Stored)
//	withhold.go          QoS 1 flow control, delivering side: DeliverAcked, confirmations withheld while a recipient is backlogged
//	durable.go           durable sessions over a SessionStore: claims, resume and replay, positions, ring-change replays, Kick
//	topic.go             topic layout, ACL rules, refusal reasons
//	mqtt5.go             MQTT 5.0: properties, session and message expiry, aliases, redirect home, reason strings
//	rules.go             rule topics: SetTopicRules, the topic index, DeliverTopic, TopicInterest
//	retain.go            retained messages of groups: the Retainer, sending them on SUBSCRIBE
//	qos2.go              QoS 2 both ways: ids awaiting PUBREL, PUBREC/PUBREL/PUBCOMP toward clients
//	refusal.go           bad input that closes a connection: its reason, log line and count
//	ratelimit.go         the per-address connect rate limit (Config.ConnectRate, ConnectBurst)
//	limits.go            per-principal limits: filter length, subscription bytes, publish rate (backpressure)
//	presence.go          the Presence hook: principals that arrive (first session here) and leave (last one gone)
//	metrics.go           the counters behind Stats and the Prometheus collector
//
// # Locks
//
// LOCKS.md, at the repository root, lists every lock of this package,
// what it guards, the order they nest in, and the calls between packages
// with the locks held on each side; read it before changing who calls
// what under which lock. The rule every change here must keep: with a
// router lock held, call only what never blocks and never calls back into
// the router (the ACL, Releaser.Confirm, appending to an outbound
// buffer); the Authenticator, the Forwarder and the Presence are called
// with no router lock held.
//
// # Connections
//
// A new connection from an address over its connect rate (Config.ConnectRate
// and ConnectBurst, one bucket per IPv4 address or IPv6 /64) is closed
// before any byte is read and counted as refusal "connect_rate". The first
// packet must be CONNECT, within ConnectTimeout and at most
// MaxConnectPacketSize bytes; a CONNECT over MaxConnections is answered
// with CONNACK 0x03. Bad input (a packet that does not decode, a type
// clients never send, a packet over the size limit, a deadline missed)
// closes the connection, logged and counted by reason (refusal.go).
//
// ServeTLS serves MQTT over TLS: each handshake runs on a goroutine of
// its own within TLSHandshakeTimeout (failures counted by reason, timeout
// or error, and logged at most once a second), then the connection is
// served by tcpTransport, whose forced close shuts the socket under the
// *tls.Conn so it never waits on close_notify. With a client CA in the
// tls.Config, a verified client certificate names a principal by its
// Subject Common Name: with no password in CONNECT (and a username, if
// any, equal to it) the device logs in with the certificate alone
// (Authenticator.AuthenticateCert); another username, an unknown id or
// a user is refused with CONNACK 0x05.
//
// # Identity and ACL
//
// A connection's identity is Identity.ID from the Authenticator, never a
// CONNECT field, and must be a valid principal id (one topic level, no
// wildcard). Sessions are keyed by principal and client id, so one
// principal never reaches another's session; a principal holds at most
// MaxSessionsPerPrincipal, and a new one over the cap evicts its oldest
// offline session. Topics are compared level by level, byte for byte; see
// topic.go for the rules. 3.1.1 has no negative PUBACK: a refused publish
// is dropped, logged (the first maxLoggedRefusals refusals per connection)
// and counted, and still acknowledged, in order with the others. Auth-topic
// mode (Config.AuthTopic) is the login for clients that send no
// credentials in CONNECT: CONNACK 0, then the first packet must PUBLISH a
// session token to the auth topic. Revoke closes the connections of a
// token at once, and a token's expiry closes its connections then.
//
// # Per-principal limits
//
// What one principal may hold and send on this node is bounded whatever
// client ids and connections it uses (limits.go). A SUBSCRIBE filter over
// MaxFilterLen bytes, or one that would take the principal's filters,
// across all its sessions, over MaxSubscriptionBytes (filter length plus
// 64 bytes each), gets SUBACK 0x80 while the packet's other filters are
// granted; counted as refusals "filter_too_long" and "subscription_bytes",
// logged once a minute per principal; the bytes come back on UNSUBSCRIBE
// and when a session ends or expires. Every PUBLISH is charged to the
// principal's message and byte buckets (PublishRate, PublishBurst,
// PublishByteRate, PublishByteBurst); a connection that puts a bucket in
// debt is not read until the debt is paid back: backpressure, so nothing
// read is dropped and the publisher slows down to the rate. The goroutine
// transport sleeps in the connection's reader; the event loop takes the
// socket out of its epoll set for the pause and goes on with the others.
// Each pause counts in pushring_mqtt_publish_throttled_total. This keeps
// one group member from flushing the bounded queues of offline members
// at network speed; a slow flood still fills them in MaxQueued/PublishRate
// seconds.
//
// # Delivery
//
// Deliver never blocks on a client. For each session of each recipient it
// picks one topic (private form first, /group/<gid> if only that is
// subscribed), drops message ids it delivered recently, and either appends
// the PUBLISH to the connection's outbound buffer (encoded in place from
// topic parts, no allocation), or queues it (QoS 1: window full, socket
// backlog over MaxOutboundBytes, messages already queued or resends due,
// or client offline; the queue is bounded by MaxQueued messages and
// MaxQueuedBytes of payload, and drops its oldest), or drops it (QoS 0 on
// a backlogged socket; QoS 0 is not queued for offline sessions). Queued
// and resent group messages are checked against the ACL again when they
// go out.
//
// Guarantees (this version): without a SessionStore, QoS 1 is at least
// once while the session is in this process's memory and its queue does
// not overflow. With one (durable.go: the node's journal and session
// records), a persistent session outlives this node: a PUBACK waits until
// the message is stored (Receipt.Stored; a store error closes the
// publisher's connection without PUBACK, so the client resends), and a
// session that reconnects anywhere, overflows its queue, or may have
// missed messages while the ring changed replays them from the journal,
// in order. QoS 1 is also flow controlled (puback.go, withhold.go): a PUBACK waits for
// the delivering nodes' confirmation, or goes earlier while fewer than
// MaxUnconfirmed of the connection's acknowledged messages are
// unconfirmed; a node confirms only while its recipients' queues are
// under a quarter of MaxQueued and of MaxQueuedBytes, so a publisher is
// paced to the slowest recipient that keeps up instead of overflowing its
// queue; a recipient backlogged for longer than withholdLimit is not waited
// for. A will is published when a connection closes without DISCONNECT (a
// takeover included) and the ACL still allows its topic, but not when the
// server shuts down or the token is revoked or expires.
//
// MQTT 5.0 clients (mqtt5.go) are served on the same listeners: the
// CONNECT's level picks the codec's forms, properties travel with the
// message to 5.0 receivers, and the server says why it refuses or
// closes. Session Expiry Interval stands in for clean session
// (mqttConn.clean, cleanStart and lifetime carry both levels' meaning).
//
// Retained messages (retain.go) are kept per group; QoS 2 (qos2.go) is
// served both ways. Topics outside pushring's namespaces are closed
// unless the operator's topic rules open them (rules.go): those are
// served as a plain broker serves them, found through a topic index,
// and watched between nodes through TopicInterest.
//
// # Not supported (yet)
//
// Shared subscriptions (SUBACK 0x80, 5.0: 0x9E); retained messages on
// rule topics. The limits are per node: a principal connected to
// several nodes has each node's budget.
package router
