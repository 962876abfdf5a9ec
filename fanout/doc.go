// Package fanout moves messages between nodes: it resolves group messages
// to members at the group's owner, splits the members by home node, and
// sends one envelope per node that has members, over a Bus (NATS in
// production, MemoryBus in unit tests). Topic messages go by interest
// instead: NATS brings them to the nodes that watch a matching filter.
//
// # Files
//
//	doc.go           this overview
//	fanout_iface.go  what the node plugs in: Deliverer, Members, Placement, Bus; OutputBatcher, BatchBus,
//	                 TopicDeliverer, TopicBus
//	fanout.go        Config, Fanout: New, Start, Close, Forward, the receive path, Stats and metrics
//	envelope.go      the envelope format (version 2): AppendEnvelope, DecodeEnvelope
//	attach.go        attach records: Presence hooks (Arrived, Left, RingChanged) and the home's table
//	ack.go           QoS 1 flow control: ForwardAcked, Receipt, AckDeliverer, Ack envelopes
//	topic.go         topic messages: TopicSubject, FilterSubjects, Watch, Unwatch, SyncWatches
//	bus_nats.go      NewNATSBus, the production Bus (a BatchBus: it tells when more envelopes wait;
//	                 a TopicBus)
//	bus_memory.go    MemoryBus, a Bus (and TopicBus) inside one process for tests
//
// # Flows
//
// Forward (ingress node, called by the router for every accepted message):
//
//   - Group message, this node owns the group (Placement.Owner): resolve
//     here (Members), split members by Placement.Home, publish one Deliver
//     envelope per home node. This node is one of them when it has
//     members: local delivery goes through the bus too, on purpose, so a
//     one-node deployment and a cluster take the same path.
//   - Group message owned elsewhere: publish one Resolve envelope to the
//     owner, which does the above.
//   - Direct message: publish one Deliver envelope to Home(To) with the
//     single recipient To.
//   - Topic message: publish one Topic envelope on the topic's subject
//     (TopicSubject), whoever is interested; see Topic messages below.
//
// ForwardAcked (ack.go) is Forward for a QoS 1 message whose publisher
// waits for its PUBACK: the same flows, with an ack request in each
// envelope, and the publisher's Receipt is told once every Deliver
// envelope was taken in by its node (or after Config.AckTimeout).
//
// Receive (every node, on its subject pushring.<cluster>.node.<nodeID>,
// see Subject; and Topic envelopes on the topic subjects it watches):
// Deliver envelopes go to the Deliverer (through the
// AckDeliverer, and confirmed with an Ack, when they carry an ack request);
// Resolve envelopes are resolved, or re-sent with hops+1 when ownership
// moved while they were in flight (see Config.HopLimit); Ack envelopes
// complete the waits of this node's publishers; undecodable envelopes
// (and a Topic envelope sent to a node's subject) are counted, logged and
// dropped. Attach, AttachMany and Detach envelopes
// maintain the attach table.
//
// Topic messages (topic.go): topics outside pushring's namespaces that
// the operator's topic rules open, served as a plain broker would. They
// are routed by interest: each node watches (Watch, reference counted per
// filter) the MQTT filters its sessions subscribe to, which subscribes it
// to their NATS subjects (FilterSubjects); Forward publishes a topic
// message once, as one Topic envelope on its topic's subject, and NATS
// brings it to exactly the nodes with a matching subscription, none to
// the others. All of a node's topic subscriptions are in one queue group
// (named by its node id), so a node whose filters overlap ("a/+/#" and
// "a/b/#") still gets one envelope per message: one per interested node,
// never one per subscriber. Local delivery goes through NATS too, as for
// the other kinds. The receiving node hands the message to the
// TopicDeliverer, which finds the sessions whose filters match. There is
// no ack flow control: nothing confirms a topic message, and a
// ForwardAcked Receipt completes at once, as for a group without
// members. QoS 1 and 2 topic messages are stored in the journal by the
// caller before they are forwarded, as the others are (Config.Store).
// SyncWatches waits until the NATS server has this node's subscriptions,
// so that a SUBACK sent after it promises delivery.
//
// Bursts: when the Bus is a BatchBus (NATS) and the Deliverer an
// OutputBatcher (the router), an envelope handled while others already
// wait on the subscription is delivered inside a hold: the router keeps
// the output for the end of the run (Config.OutputBatch envelopes at
// most) and writes each connection once for the whole run.
//
// Attach records (attach.go): Fanout implements the router's Presence
// hook. For a principal present here but homed elsewhere it sends Attach to
// the home (batched per home in AttachMany envelopes, renewed every
// Config.AttachRenew; Detach when it left); the home keeps principal →
// attached nodes, soft state expiring after Config.AttachTTL, and sends
// every Deliver it receives with Hops 0 on to the attached nodes of its
// recipients: one Deliver per node, Hops 1, never forwarded again, and
// without an ack request (a principal away from its home is not waited
// for). RingChanged drops the records of
// nodes that left and re-attaches present principals whose home moved.
// Deliver envelopes always start with Hops 0 (the Resolve's hop count is
// not carried over): at a Deliver, hops counts attach forwards.
//
// Envelopes for one node are never split per member. A Deliver envelope is
// split only when its recipients would make it larger than
// Config.MaxEnvelopeBytes (in chunks of recipients, the payload repeated).
//
// # Delivery guarantees (this version)
//
// Forward returns once Bus.Publish has accepted every envelope; it does
// not Flush. For NATS that means the envelope is in the connection's
// outgoing buffer: a crash of this node, of the NATS server, or a slow
// consumer drop at the receiver can lose it, and nothing retries.
//
// ForwardAcked adds flow control, not durability: the Receipt comes once
// every node delivering the message has queued it for its recipients
// (and a node withholds its confirmation, up to Config.AckWithhold, while a
// recipient's session is backlogged), so a QoS 1 PUBACK no longer runs
// ahead of slow recipients. A confirmation that does not come (a node
// that died with the message, a lost Ack) releases the Receipt after
// Config.AckTimeout, counted: the PUBACK then means "handed to the bus".
// Without a Config.Store nothing is stored. Message ids are
// carried end to end, so a session drops a recent duplicate (a retry
// after an error) instead of delivering it twice.
//
// # Concurrency
//
// Forward is goroutine-safe and does not allocate per member: encode
// buffers, topic subjects and the per-node split lists come from a
// sync.Pool. The bus calls the receive handler from one goroutine at a
// time, which holds Fanout.mu for reading while it handles one envelope;
// Close takes it for writing, so no Deliverer call starts after Close
// returns. Topic envelopes come from another goroutine (the topic
// subscriptions', one per bus), under the same rule; they are not
// ordered with the node subject's envelopes. A panic while
// handling an envelope is recovered, logged and counted (Stats.Panics).
//
// The *message.Message handed to the Deliverer is allocated per envelope
// and never modified or reused afterwards, and its strings and payload
// alias one private copy of the envelope: a Deliverer may keep it (as
// Deliverer says; the router's session queues do), and keeping any part
// keeps the envelope's bytes alive. Only the recipients
// slice is recycled after Deliver returns.
//
// The attach table has its own RWMutex, read once per received Deliver
// when the table is not empty (an atomic record count skips it
// otherwise); the presence side is one goroutine fed by a queue, so
// Arrived, Left and RingChanged never block. Close stops that
// goroutine after it has sent what was queued.
//
// LOCKS.md, at the repository root, lists every lock of this package and
// the calls to and from the router with the locks held on each side. The
// rule to keep: the receive path holds Fanout.mu for reading while it
// calls the Deliverer, so nothing reachable from a Deliverer may take
// Fanout.mu (Start, Close), and the bus's unsubscribe is called after
// Close released it (a bus may wait for its handler). Watch and Unwatch
// take only their own lock (topicWatches.mu, a leaf but for the bus's
// subscribe under it), never Fanout.mu, so the router may call them with
// its locks held; SyncWatches takes none, but waits for the server.
package fanout
