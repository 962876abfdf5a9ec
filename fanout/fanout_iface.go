package fanout

import "github.com/pushring/pushring/message"

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
	// (fire-and-forget) and must not keep data after it returns.
	Publish(subject string, data []byte) error
	// Subscribe calls fn for each message on subject, from one goroutine
	// at a time; data is only valid during the call. The returned func
	// unsubscribes.
	Subscribe(subject string, fn func(data []byte)) (unsubscribe func(), err error)
	// Flush waits until everything published so far reached the server.
	Flush() error
}
