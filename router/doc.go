// Package router is the MQTT 3.1.1 server of one pushring node: listeners,
// connections, MQTT sessions, the topic ACL, and delivery of messages to
// the sessions held on this node. It meets the rest of the node through
// small interfaces: Authenticator and ACL (the store's directory),
// Forwarder (fanout, for messages published here), Presence (fanout's
// attach records: which principals hold sessions here) and, the other
// way, *Server implements fanout.Deliverer without importing fanout.
//
// # Files
//
//	config.go   Config, DefaultConfig
//	server.go   Server: listeners, session registry, Deliver, Revoke
//	conn.go     THE SEAM: socket I/O (transport) vs protocol (handler)
//	mqtt.go     the protocol handler of one connection (CONNECT, PUBLISH, ...)
//	session.go  session state: subscriptions, inflight window, queue
//	queue.go    bounded message queue, recent-id ring
//	topic.go    topic layout and ACL rules
//	metrics.go  Prometheus metrics and Stats
//	presence.go Presence hook: principals that start and stop holding sessions
//
// # Locks
//
// Server.mu → session.mu → transport outbound lock, in that order only.
// Nothing that may block (Authenticator, Forwarder, socket writes) is
// called with a lock held; ACL methods, non-blocking by contract, may be.
// The transport calls handler.drained and handler.closed without its lock.
// Presence events are queued under Server.mu and handed to the Presence
// after every router lock is released (presence.go).
// Server.mu guards the registry only: Deliver copies a principal's sessions
// out of it, and a reconnect's replay of queued and inflight messages holds
// the session's lock alone (see Server.bind).
//
// # Identity and ACL
//
// A connection's identity is Identity.ID from the Authenticator, never a
// CONNECT field, and must be a valid principal id (one topic level, no
// wildcard). Topics are compared level by level, byte for byte; see
// topic.go for the rules. 3.1.1 has no negative PUBACK: a refused publish
// is dropped, logged (the first few per connection) and counted, and still
// acknowledged. Auth-topic mode (Config.AuthTopic) implements the
// prototype's login: CONNACK 0 to a CONNECT without credentials, then the
// first packet must PUBLISH a session token to the auth topic.
//
// # Delivery
//
// Deliver never blocks on a client. For each session of each recipient it
// picks one topic (private form first, /group/<gid> if only that is
// subscribed), drops message ids it delivered recently, and either appends
// the PUBLISH to the connection's outbound buffer (encoded in place from
// topic parts, no allocation), or queues it (QoS 1: window full, socket
// backlog over MaxOutboundBytes, or client offline; the queue is bounded
// by MaxQueued messages and MaxQueuedBytes of payload, and drops its
// oldest), or drops it (QoS 0 on a backlogged socket; QoS 0 is not queued
// for offline sessions). Queued and resent group messages
// are checked against the ACL again when they go out.
//
// Guarantees (this version): QoS 1 is at least once while the session is
// in this process's memory; a PUBACK to a publisher means the Forwarder
// accepted the message (a Forwarder error closes a QoS 1 publisher's
// connection without PUBACK, so the client resends). With an
// AckForwarder (fanout) QoS 1 is flow controlled (hold.go): PUBACKs run
// at most MaxUnconfirmed messages ahead of the delivering nodes'
// confirmations, and a node confirms only while its recipients' queues
// are under a quarter of MaxQueued, so a publisher is paced to the
// slowest recipient that keeps up instead of overflowing its queue; a
// recipient backlogged for over a second is not waited for. Persistent
// sessions are not persisted: a node restart loses them (session
// present = 0 after).
//
// # Not supported (yet)
//
// Retained messages (the retain flag is ignored, everything is delivered
// with retain=0); outbound QoS 2 (inbound QoS 2 is accepted and delivered
// as QoS 1; ids awaiting PUBREL live on the connection, capped by
// MaxInflight); MQTT 5.0 (CONNACK 0x01; the session keeps the protocol
// level so 5.0 slots in); shared subscriptions (SUBACK 0x80); per-client
// publish and connect rate limits.
package router
