package fanout

import (
	"context"

	"github.com/pushring/pushring/message"
)

// Deliverer hands messages to the sessions connected to this node. The
// router implements it; node wires it in.
type Deliverer interface {
	// Deliver gives m to each listed principal that has a session on this
	// node (others are skipped). For Group messages recipients are the
	// group's members homed here; for Direct messages it is [m.To].
	// Goroutine-safe; must not block on slow clients (it queues).
	// m is immutable once delivered and may be kept (queued, held in an
	// inflight window); recipients is reused by the caller and must not be
	// kept after Deliver returns.
	Deliver(m *message.Message, recipients []string)
}

// TopicDeliverer is implemented by a Deliverer that serves topic
// messages (message.Topic, see Watch): the router, which matches m.To
// against the subscriptions of its sessions as a plain broker would.
// Without it, topic envelopes are counted and dropped.
type TopicDeliverer interface {
	// DeliverTopic gives m to every session on this node with a
	// subscription matching topic m.To. fanout calls it once per node
	// however many of the node's watched filters match (see Watch).
	// Goroutine-safe (it runs on the topic subscription's goroutine, not
	// the one that calls Deliver); must not block on slow clients (it
	// queues), nor call Watch, Unwatch or SyncWatches back. m is
	// immutable once delivered and may be kept.
	DeliverTopic(m *message.Message)
}

// OutputBatcher is implemented by a Deliverer whose writes to clients are
// cheaper in batches (the router): fanout calls BeginOutputRun before an
// envelope when more are already waiting on a BatchBus, and
// EndOutputRun after the last envelope of the run (at most
// Config.OutputBatch of them). Both are called from the receiving
// goroutine and must not block.
type OutputBatcher interface {
	BeginOutputRun()
	EndOutputRun()
}

// BatchBus is a Bus whose subscription can tell its handler that more
// messages are already waiting behind the one it gets (NATS, from the
// subscription's pending count). fanout uses it to hold a Deliverer's
// output over a run of envelopes (OutputBatcher).
type BatchBus interface {
	Bus
	// SubscribeBatch is Subscribe, with more set when at least one
	// further message waits for fn.
	SubscribeBatch(subject string, fn func(data []byte, more bool)) (unsubscribe func(), err error)
}

// Members resolves a group to its members. store.Directory implements it.
type Members interface {
	// Members returns the member ids of gid (nil if none). The slice is
	// shared and must not be modified. Goroutine-safe, non-blocking.
	Members(gid string) []string
}

// Placement says which node is responsible for a principal or a group.
// membership implements it (a consistent hash ring over live nodes).
type Placement interface {
	// Home is the node that delivers to principal id. Goroutine-safe.
	Home(id string) string
	// Owner is the node that resolves group gid. Goroutine-safe.
	Owner(gid string) string
}

// Bus moves envelopes between nodes. NATS implements it; MemoryBus is for
// unit tests.
type Bus interface {
	// Publish sends data to subject. It may return before delivery
	// (fire-and-forget) and must keep neither data nor subject after it
	// returns (Forward builds topic subjects in a reused buffer).
	Publish(subject string, data []byte) error
	// Subscribe calls fn for each message on subject, from one goroutine
	// at a time; data is only valid during the call. The returned func
	// unsubscribes.
	Subscribe(subject string, fn func(data []byte)) (unsubscribe func(), err error)
	// Flush waits until everything published so far reached the server.
	Flush() error
}

// TopicBus is a Bus that carries topic messages by interest (see Watch):
// wildcard subscriptions in queue groups, as NATS has them.
type TopicBus interface {
	Bus
	// SubscribeTopic calls fn for each message published on a subject
	// that subject matches, NATS-style: tokens separated by '.', '*'
	// matches one token, a final '>' one or more. Every subscription
	// with the same queue name forms one queue group, and a message
	// matched by several subscriptions of a group reaches the group once,
	// whatever subjects they have: fanout subscribes all of a node's
	// filters under the node's id, so a node gets one envelope per topic
	// message however many of its filters overlap. fn is called from one
	// goroutine at a time per group, in publish order; data is only valid
	// during the call, and more says that further messages already wait
	// (as SubscribeBatch's; a bus that cannot tell passes false). A bus
	// may call the fn of the group's first
	// subscription for all of them (fanout passes the same one). The
	// returned func unsubscribes; it must not wait for a call of fn in
	// progress (Unwatch may run with locks held that fn's Deliverer
	// takes).
	SubscribeTopic(subject, queue string, fn func(data []byte, more bool)) (unsubscribe func(), err error)
	// FlushContext is Flush bounded by ctx: once it returns nil, the
	// server knows every subscription made before the call.
	FlushContext(ctx context.Context) error
}
