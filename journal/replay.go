package journal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushring/pushring/message"
)

// maxGroupFilters is the most groups Replay asks the server to filter
// one by one. Past it, Replay filters every group message
// (pushring.<c>.m.*.g.*) and skips the other groups' itself: a consumer's
// filter list is sent, and matched against each message, whole, and a
// principal in thousands of groups would make that list the cost.
const maxGroupFilters = 64

// replayBatch is how many messages a replay's consumer asks for at once.
const replayBatch = 256

// stallCheck is how long a replay waits for its next message before it
// asks the server whether any is still pending (the bounds may have
// dropped those it was told of). A replay that got nothing for
// Config.Timeout while messages are pending returns an error.
const stallCheck = time.Second

// Replay calls fn, in stream order, for every stored message addressed
// to principal directly (through any ingress node), to one of groups,
// or, with topics, to any rule topic (the caller matches the topics),
// with a sequence at or above from and at or below last, the stream's
// last sequence when Replay began: messages stored later are left to
// the caller's live path, and Replay ends. from 0 means from the first
// message kept. first is the stream's first sequence when Replay began
// (0 for a stream that never held a message): if 0 < from < first, the
// messages from from to first-1 were dropped by the stream's bounds,
// some of them maybe for this principal, and the caller owes its client
// a gap notice. fn gets each message's sequence and the time the stream
// stored it (its age is what a per-session bound looks at), and may keep
// the message; an error from fn stops the replay and is returned. Other
// principals' messages never reach fn.
//
// With more than 64 groups, Replay reads every group message in the
// range and skips those of other groups itself (see maxGroupFilters).
func (j *Journal) Replay(ctx context.Context, from uint64, principal string, groups []string, topics bool,
	fn func(seq uint64, stored time.Time, m *message.Message) error) (first, last uint64, err error) {
	if !validID(principal) {
		return 0, 0, fmt.Errorf("%w: principal %q", ErrInvalidMessage, principal)
	}
	for _, g := range groups {
		if !validID(g) {
			return 0, 0, fmt.Errorf("%w: group %q", ErrInvalidMessage, g)
		}
	}
	j.m.replays.Add(1)
	first, last, err = j.Bounds(ctx)
	if err != nil || last == 0 || from > last {
		return first, last, err
	}
	filters := []string{j.prefix + "*." + kindDirect + "." + encodeID(principal)}
	if topics {
		filters = append(filters, j.prefix+"*."+kindTopic)
	}
	var only map[string]bool // nil: the server filters the groups
	if len(groups) > maxGroupFilters {
		filters = append(filters, j.prefix+"*."+kindGroup+".*")
		only = make(map[string]bool, len(groups))
		for _, g := range groups {
			only[g] = true
		}
	} else {
		gs := slices.Clone(groups)
		slices.Sort(gs)
		for _, g := range slices.Compact(gs) { // overlapping filters are refused
			filters = append(filters, j.prefix+"*."+kindGroup+"."+encodeID(g))
		}
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(from, 1),
	}
	err = j.consume(ctx, cfg, last, func(seq uint64, stored time.Time, m *message.Message) error {
		if only != nil && m.Kind == message.Group && !only[m.To] {
			return nil
		}
		return fn(seq, stored, m)
	})
	return first, last, err
}

// ReplayAll calls fn, in stream order, for every stored message with a
// sequence from from up to last, the stream's last sequence when
// ReplayAll began: one read of the journal that a node hands to all its
// sessions at once (after a ring change, or resumes that came
// together). fn gets each message's sequence and the time the stream
// stored it, and may keep the message; an error from fn stops the
// replay and is returned.
func (j *Journal) ReplayAll(ctx context.Context, from uint64,
	fn func(seq uint64, stored time.Time, m *message.Message) error) (last uint64, err error) {
	j.m.replays.Add(1)
	_, last, err = j.Bounds(ctx)
	if err != nil || last == 0 || from > last {
		return last, err
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{j.prefix + ">"},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    max(from, 1),
	}
	return last, j.consume(ctx, cfg, last, fn)
}

// A record read back whose prev (the message appended to its subject
// just before it, with no result then) this replay did not deliver may
// be a withdrawn one: if prev never reached the stream, its publisher was
// not acknowledged and sends both again, and this copy is deleted
// (Withdraw) about overtakeGrace after the stream stored it. Delivered
// before that, it would come ahead of prev's next copy: out of its
// publisher's order. So such a record is delivered only once it is
// settleAge old, and only if the stream still holds it then. Most such
// records are the first of their subject in a replay (prev lies before
// the replay's start): they are old, and cost one question to the
// stream. A deletion slower than settleAge (a stream that just got a
// leader again) still lets one through.
const settleAge = 2 * time.Second

// recentIDs is how many ids a replay remembers for the prev check; an id
// pushed out only costs a wait.
const recentIDs = 1 << 13

// settled waits until the record at seq, stored at stored, is settleAge
// old, then reports whether the stream still holds it.
func (j *Journal) settled(ctx context.Context, seq uint64, stored time.Time) (bool, error) {
	if wait := min(time.Until(stored.Add(settleAge)), settleAge); wait > 0 { // the bound: clocks differ
		j.m.replayWaits.Add(1)
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
	return j.present(ctx, seq)
}

// consume runs an ordered consumer with cfg over the stream and calls fn
// for each message up to sequence last, with the time the stream stored
// it, then deletes the consumer.
func (j *Journal) consume(ctx context.Context, cfg jetstream.OrderedConsumerConfig, last uint64,
	fn func(seq uint64, stored time.Time, m *message.Message) error) error {
	// The server drops the consumer this long after the replay stopped
	// asking, should its deletion below fail.
	cfg.InactiveThreshold = max(30*time.Second, 2*j.cfg.Timeout)
	// A consumer lost mid-replay (a server restart) is made again a few
	// times, not forever: a replay that cannot go on returns.
	cfg.MaxResetAttempts = 3
	octx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	cons, err := j.js.OrderedConsumer(octx, j.stream, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("journal: replay consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(replayBatch))
	if err != nil {
		return fmt.Errorf("journal: replay consumer: %w", err)
	}
	defer func() {
		it.Stop()
		if info := cons.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.Background(), j.cfg.Timeout)
			j.js.DeleteConsumer(dctx, j.stream, info.Name)
			cancel()
		}
	}()
	if info := cons.CachedInfo(); info != nil && info.NumPending == 0 {
		return nil
	}
	progress := time.Now()
	// The ids this replay delivered lately: slot id%recentIDs holds id.
	delivered := make([]uint64, recentIDs)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		msg, err := it.Next(jetstream.NextMaxWait(stallCheck))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			// Nothing for a while: are messages still pending, or did
			// the bounds drop those the consumer counted?
			ictx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
			info, ierr := cons.Info(ictx)
			cancel()
			if ierr == nil && info.NumPending == 0 {
				return nil
			}
			if time.Since(progress) > j.cfg.Timeout {
				pending := "unknown"
				if ierr == nil {
					pending = strconv.FormatUint(info.NumPending, 10)
				}
				return fmt.Errorf("journal: replay stalled: no message for %v, pending %s (info: %v)",
					time.Since(progress).Round(time.Millisecond), pending, ierr)
			}
			continue
		}
		progress = time.Now()
		if err != nil {
			return fmt.Errorf("journal: replay: %w", err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("journal: replay: %w", err)
		}
		seq := meta.Sequence.Stream
		if seq > last {
			return nil
		}
		m, prev, err := DecodeRecord(msg.Data())
		switch {
		case err != nil:
			j.m.badRecords.Add(1)
			j.badLog.Warn(j.log, 10*time.Second, "journal: replay skipped a record it cannot decode",
				"subject", msg.Subject(), "seq", seq, "err", err)
		case prev != 0 && delivered[prev%recentIDs] != prev:
			kept, err := j.settled(ctx, seq, meta.Timestamp)
			if err != nil {
				return err
			}
			progress = time.Now() // the wait is not the stream stalling
			if !kept {
				j.m.replayWithdrawn.Add(1)
				break
			}
			fallthrough
		default:
			delivered[m.ID%recentIDs] = m.ID
			j.m.replayed.Add(1)
			if err := fn(seq, meta.Timestamp, m); err != nil {
				return err
			}
			// fn may wait (a slow client's window): that is not the
			// stream stalling.
			progress = time.Now()
		}
		if seq == last || meta.NumPending == 0 {
			return nil
		}
	}
}
