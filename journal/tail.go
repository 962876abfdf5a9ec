package journal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushring/pushring/message"
)

// Tail calls fn for every message stored for group gid from now on,
// through any ingress node, in stream order, until ctx is done (then it
// returns nil) or the consumer fails. It is what a console's live view
// of a group reads: stored messages only (QoS 1 and 2; QoS 0 messages
// are never stored). fn gets the time the stream stored each message.
func (j *Journal) Tail(ctx context.Context, gid string, fn func(stored time.Time, m *message.Message)) error {
	if !validID(gid) {
		return fmt.Errorf("%w: group %q", ErrInvalidMessage, gid)
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{j.prefix + "*." + kindGroup + "." + encodeID(gid)},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
		// The server drops it this long after the tail stopped asking.
		InactiveThreshold: max(30*time.Second, 2*j.cfg.Timeout),
	}
	octx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	cons, err := j.js.OrderedConsumer(octx, j.stream, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("journal: tail consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("journal: tail consumer: %w", err)
	}
	defer func() {
		it.Stop()
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.Background(), j.cfg.Timeout)
			j.js.DeleteConsumer(dctx, j.stream, info.Name)
			cancel()
		}
	}()
	for ctx.Err() == nil {
		msg, err := it.Next(jetstream.NextMaxWait(time.Second))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if err != nil {
			return fmt.Errorf("journal: tail: %w", err)
		}
		m, _, err := DecodeRecord(msg.Data())
		if err != nil {
			continue // not a record this release wrote: nothing to show
		}
		stored := time.Now()
		if meta, err := msg.Metadata(); err == nil {
			stored = meta.Timestamp
		}
		fn(stored, m)
	}
	return nil
}
