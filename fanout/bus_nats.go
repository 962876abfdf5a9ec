package fanout

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// natsBus is the production Bus: core NATS publish/subscribe on one
// connection.
type natsBus struct {
	nc *nats.Conn

	topicMu sync.Mutex
	topic   *topicSink // while at least one topic subscription lives
}

var (
	_ BatchBus = (*natsBus)(nil)
	_ TopicBus = (*natsBus)(nil)
)

// NewNATSBus returns a Bus over nc. Publish copies data into the
// connection's buffer and returns (fire-and-forget). Each subscription is
// served by its own goroutine, one message at a time (the nats.go async
// subscription), with nats.go's default pending limits
// (nats.DefaultSubPendingMsgsLimit messages or
// nats.DefaultSubPendingBytesLimit bytes): a receiver that falls further behind loses envelopes, reported
// to nc's async error handler as a slow consumer. The connection's owner
// closes it; the Bus does not.
//
// It is a TopicBus: topic subscriptions (SubscribeTopic) are nats.go
// channel subscriptions into one channel per bus, read by one goroutine,
// so that a node watching thousands of filters does not run thousands of
// goroutines. nats.go bounds a channel subscription by the channel's
// capacity alone (topicChanLen messages, no byte limit: up to that many
// envelopes of MaxEnvelopeBytes could wait): when the channel is full,
// the message is dropped and reported to nc's async error handler as a
// slow consumer, as for the node's subject.
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

// FlushContext is nats.go's FlushWithContext, which needs a deadline: a
// ctx without one gets Flush's 10 s.
func (b *natsBus) FlushContext(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	return b.nc.FlushWithContext(ctx)
}

// topicChanLen is the capacity of a bus's topic channel: the topic
// envelopes that may wait for the node before NATS drops them (see
// NewNATSBus).
const topicChanLen = 1 << 16

// topicSink is the channel every topic subscription of a bus feeds, and
// its reader. It lives while subscriptions do: the last unsubscribe
// stops the reader (what is still in the channel is dropped: nothing
// watches it any more), and the next SubscribeTopic makes a new one.
type topicSink struct {
	ch   chan *nats.Msg
	fn   func(data []byte, more bool) // of the first subscription: fanout passes the same for all
	n    int                          // live subscriptions, under natsBus.topicMu
	stop chan struct{}
}

func (s *topicSink) run() {
	for {
		select {
		case <-s.stop:
			return
		case m := <-s.ch:
			s.fn(m.Data, len(s.ch) > 0)
		}
	}
}

// SubscribeTopic queue-subscribes to subject into the bus's one topic
// channel. A bus has one fn for all its topic subscriptions, the first
// one's: one Fanout per bus. NATS puts each message for the queue group
// once into the channel, and nats.go stops sending into it for a
// subscription once Unsubscribe has returned, so the channel is never
// closed.
func (b *natsBus) SubscribeTopic(subject, queue string, fn func(data []byte, more bool)) (func(), error) {
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	s := b.topic
	if s == nil {
		s = &topicSink{ch: make(chan *nats.Msg, topicChanLen), fn: fn, stop: make(chan struct{})}
	}
	sub, err := b.nc.ChanQueueSubscribe(subject, queue, s.ch)
	if err != nil {
		return nil, err
	}
	if b.topic == nil {
		b.topic = s
		go s.run()
	}
	s.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = sub.Unsubscribe()
			b.topicMu.Lock()
			defer b.topicMu.Unlock()
			if s.n--; s.n == 0 {
				close(s.stop)
				if b.topic == s {
					b.topic = nil
				}
			}
		})
	}, nil
}
