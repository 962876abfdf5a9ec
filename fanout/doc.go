// Package fanout moves messages between nodes: it resolves group messages
// to members at the group's owner, splits the members by home node, and
// sends one envelope per node that holds members, over a Bus (NATS in
// production, MemoryBus in unit tests).
//
// # Flows
//
// Forward (ingress node, called by the router for every accepted message):
//
//   - Group message, this node owns the group (Placement.Owner): resolve
//     here (Members), split members by Placement.Home, publish one Deliver
//     envelope per home node. This node is one of them when it holds
//     members: local delivery goes through the bus too, on purpose, so a
//     one-node deployment and a cluster take the same path.
//   - Group message owned elsewhere: publish one Resolve envelope to the
//     owner, which does the above.
//   - Direct message: publish one Deliver envelope to Home(To) with the
//     single recipient To.
//
// Receive (every node, on its subject pushring.<cluster>.node.<nodeID>):
// Deliver envelopes go to the Deliverer; Resolve envelopes are resolved,
// or re-sent with hops+1 when ownership moved while they were in flight
// (see Config.HopLimit); undecodable envelopes are counted, logged and
// dropped. Attach, AttachMany and Detach envelopes maintain the attach
// table.
//
// Attach records (attach.go, DESIGN.md section 4): Fanout implements the
// router's Presence hook. For a principal held here but homed elsewhere
// it sends Attach to the home (batched per home in AttachMany envelopes,
// renewed every Config.AttachRenew; Detach on release); the home keeps principal → holding nodes, soft state
// expiring after Config.AttachTTL, and sends every Deliver it receives
// with Hops 0 on to the holding nodes of its recipients: one Deliver per
// node, Hops 1, never forwarded again. RingChanged drops the records of
// nodes that left and re-attaches held principals whose home moved.
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
// consumer drop at the receiver can lose it, and nothing retries. So
// today a QoS 1 PUBACK means "handed to the bus", not "stored". The
// at-least-once design of DESIGN.md section 5 (JetStream before PUBACK,
// per-member positions, replay on reconnect) comes with a later issue;
// message ids are already carried end to end so sessions can drop
// duplicates then.
//
// # Concurrency
//
// Forward is goroutine-safe and does not allocate per member: encode
// buffers and the per-node split lists come from a sync.Pool. The bus
// calls the receive handler from one goroutine at a time, which holds
// Fanout.mu for reading while it handles one envelope; Close takes it for
// writing, so no Deliverer call starts after Close returns. A panic while
// handling an envelope is recovered, logged and counted (Stats.Panics).
//
// The *message.Message handed to the Deliverer is allocated per envelope
// and never modified or reused afterwards, and its strings and payload
// alias one private copy of the envelope: a Deliverer may keep it (the
// router's session queues do), though the interface does not promise it;
// keeping any part keeps the envelope's bytes alive. Only the recipients
// slice is recycled after Deliver returns.
//
// The attach table has its own RWMutex, read once per received Deliver
// when the table is not empty (an atomic record count skips it
// otherwise); the holding side is one goroutine fed by a queue, so
// Holding, Released and RingChanged never block. Close stops that
// goroutine after it has sent what was queued.
//
// Lock order: Fanout.mu, then peersMu. The bus's unsubscribe is called
// after mu is released (a bus may wait for its handler).
package fanout
