package fanout

import (
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// natsBus is the production Bus: core NATS publish/subscribe on one
// connection.
type natsBus struct {
	nc *nats.Conn
}

var _ BatchBus = (*natsBus)(nil)

// NewNATSBus returns a Bus over nc. Publish copies data into the
// connection's buffer and returns (fire-and-forget). Each subscription is
// served by its own goroutine, one message at a time (the nats.go async
// subscription), with nats.go's default pending limits
// (nats.DefaultSubPendingMsgsLimit messages or
// nats.DefaultSubPendingBytesLimit bytes): a receiver that falls further behind loses envelopes, reported
// to nc's async error handler as a slow consumer. The connection's owner
// closes it; the Bus does not.
func NewNATSBus(nc *nats.Conn) Bus {
	return &natsBus{nc: nc}
}

func (b *natsBus) Publish(subject string, data []byte) error {
	return b.nc.Publish(subject, data)
}

func (b *natsBus) Subscribe(subject string, fn func(data []byte)) (func(), error) {
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Data) })
	if err != nil {
		return nil, err
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

func (b *natsBus) Flush() error {
	return b.nc.Flush()
}

// SubscribeBatch is Subscribe with the subscription's pending count: more
// is set when messages wait behind the one being handled (nats.go counts
// that one as pending until its handler returns).
func (b *natsBus) SubscribeBatch(subject string, fn func(data []byte, more bool)) (func(), error) {
	var self atomic.Pointer[nats.Subscription] // set once Subscribe returns
	sub, err := b.nc.Subscribe(subject, func(m *nats.Msg) {
		more := false
		if s := self.Load(); s != nil {
			n, _, _ := s.Pending()
			more = n > 1
		}
		fn(m.Data, more)
	})
	if err != nil {
		return nil, err
	}
	self.Store(sub)
	return func() { _ = sub.Unsubscribe() }, nil
}
