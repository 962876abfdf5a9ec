package store

// Claim notices on KV: every claim is announced on the cluster's claims
// stream (natsauth.ClaimsStream), one subject, kept mqttNoticeTTL in
// memory, read by every node's WatchMQTTClaims from its start.
//
// A stream of its own rather than keys of the mqtt bucket: a key per
// session made the NATS server keep per-subject state (its subject
// index, a TTL entry, the file block's cache) for every connect of the
// last minute, most of an idle connection's memory in the store. Here
// notices are messages on one subject, several claims to a message, and
// no notice replaces another: a watcher that lags still reads both of
// two claims racing on two nodes, and gives way to the later.
//
// Notices are batched: claims made while a notice message is being
// stored go out together in the next one (one JSON array), so a burst
// of connects costs a handful of messages, and a lone claim waits for
// one store round trip as before. Claims that come while a publish is
// slow wait for it (at most the store's timeout) before theirs goes.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushring/pushring/internal/natsauth"
)

const (
	// claimsMaxBytes bounds the claims stream (JetStream memory, per
	// replica): about 350,000 notices; a connect storm beyond it within
	// mqttNoticeTTL drops the oldest, which live watchers have read
	// already.
	claimsMaxBytes = 32 << 20
	// noticeBatchBytes bounds one notice message's payload, far below
	// NATS's default 1 MiB.
	noticeBatchBytes = 64 << 10
)

// openClaims creates the claims stream if it is missing and makes the
// notices' writer.
func (k *KV) openClaims(ctx context.Context) error {
	k.claimsStream = natsauth.ClaimsStream(k.cfg.Cluster)
	k.notices = &noticer{js: k.js, subject: natsauth.ClaimsSubject(k.cfg.Cluster), timeout: k.cfg.Timeout, create: k.createClaims}
	return k.createClaims(ctx)
}

// createClaims creates the claims stream if it is missing. A node may
// only create it (natsauth.NodePermissions): the settings are constants,
// and a stream that exists with others (another replica count, another
// first sequence) is used as it is.
//
// The stream is in memory: a NATS server that restarts (standalone, or
// a whole cluster) comes back without it. Any node's next claim makes it
// again (noticer.run), and each watch's consumer carries on once it
// exists. It starts at a sequence made from the clock (milliseconds ×
// 1000), above any sequence the lost stream reached unless it stored
// more than a million notice messages a second: a running watch, whose
// consumer resumes after the last sequence it read, then reads the new
// stream from its first message instead of skipping up to that
// sequence.
func (k *KV) createClaims(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.cfg.Timeout)
	defer cancel()
	_, err := k.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        k.claimsStream,
		Description: "pushring MQTT claim notices (JSON arrays), kept a minute",
		Subjects:    []string{natsauth.ClaimsSubject(k.cfg.Cluster)},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      mqttNoticeTTL,
		MaxBytes:    claimsMaxBytes,
		Storage:     jetstream.MemoryStorage,
		Replicas:    k.cfg.Replicas,
		FirstSeq:    uint64(time.Now().UnixMilli()) * 1000,
	})
	var apiErr *jetstream.APIError
	if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNameInUse) {
		return unavailable("create stream "+k.claimsStream, err)
	}
	return nil
}

// noticer batches claim notices into messages of the claims stream.
type noticer struct {
	js      jetstream.JetStream
	subject string
	timeout time.Duration
	create  func(context.Context) error // the stream, when a publish finds none

	mu    sync.Mutex
	queue []*noticeBatch // waiting to be stored, oldest first
	busy  bool           // run is storing one
}

// noticeBatch is one message's notices, and their fate.
type noticeBatch struct {
	buf  []byte // '[' and the notices, comma-separated
	done chan struct{}
	err  error // set before done closes
}

// announce stores n in the claims stream, with whatever other claims
// are waiting, and returns once it is stored (or ctx is done: the
// notice may still go out).
func (q *noticer) announce(ctx context.Context, n claimNotice) error {
	entry, err := json.Marshal(n)
	if err != nil {
		return err
	}
	q.mu.Lock()
	var b *noticeBatch
	if l := len(q.queue); l > 0 && len(q.queue[l-1].buf)+len(entry)+2 <= noticeBatchBytes { // ',' and the closing ']'
		b = q.queue[l-1]
		b.buf = append(b.buf, ',')
	} else {
		b = &noticeBatch{buf: make([]byte, 1, 1+len(entry)+1), done: make(chan struct{})}
		b.buf[0] = '['
		q.queue = append(q.queue, b)
	}
	b.buf = append(b.buf, entry...)
	if !q.busy {
		q.busy = true
		go q.run()
	}
	q.mu.Unlock()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run stores the waiting batches one at a time, until none is left.
func (q *noticer) run() {
	for {
		q.mu.Lock()
		if len(q.queue) == 0 {
			q.busy = false
			q.mu.Unlock()
			return
		}
		b := q.queue[0]
		q.queue[0] = nil
		q.queue = q.queue[1:]
		q.mu.Unlock()
		b.buf = append(b.buf, ']')
		b.err = q.publish(b.buf)
		close(b.done)
	}
}

// publish stores one notice message; if no stream answers (the NATS
// server lost the in-memory stream), it makes the stream and tries once
// more.
func (q *noticer) publish(data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
	defer cancel()
	_, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: q.subject, Data: data})
	if !errors.Is(err, jetstream.ErrNoStreamResponse) && !errors.Is(err, nats.ErrNoResponders) {
		return err
	}
	if err := q.create(ctx); err != nil {
		return err
	}
	_, err = q.js.PublishMsg(ctx, &nats.Msg{Subject: q.subject, Data: data})
	return err
}

// WatchMQTTClaims implements MQTTSessions.WatchMQTTClaims with an
// ordered consumer of the claims stream from its start: every notice of
// the last mqttNoticeTTL, then every new one. The consumer makes itself
// again after a break, from where it was; a break longer than the
// notices are kept loses those it missed.
func (k *KV) WatchMQTTClaims(ctx context.Context, fn func(principal, clientID, node string, gen uint64), ready func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	select {
	case <-k.done:
		return fmt.Errorf("store: %w: closed", ErrUnavailable)
	default:
	}
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: max(30*time.Second, 2*k.cfg.Timeout), // the server drops it after a node died
	}
	octx, ocancel := context.WithTimeout(ctx, k.cfg.Timeout)
	cons, err := k.js.OrderedConsumer(octx, k.claimsStream, cfg)
	if errors.Is(err, jetstream.ErrStreamNotFound) && k.createClaims(octx) == nil {
		cons, err = k.js.OrderedConsumer(octx, k.claimsStream, cfg) // the NATS server lost it (createClaims)
	}
	ocancel()
	if err != nil {
		return k.fail(opWatch, "", "", unavailable("watch mqtt claims", err))
	}
	it, err := cons.Messages()
	if err != nil {
		return k.fail(opWatch, "", "", unavailable("watch mqtt claims", err))
	}
	defer it.Stop()
	go func() {
		select {
		case <-ctx.Done():
		case <-k.done:
		}
		it.Stop()
	}()
	// The consumer delivers every notice kept, later ones included.
	if ready != nil {
		ready()
	}
	var batch []claimNotice
	for {
		msg, err := it.Next()
		if err != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-k.done:
				return nil
			default:
			}
			return k.fail(opWatch, "", "", unavailable("watch mqtt claims", err))
		}
		// (Unmarshal decodes into the slice's old elements, keeping
		// the fields a notice leaves out: cleared first.)
		clear(batch[:cap(batch)])
		batch = batch[:0]
		if err := json.Unmarshal(msg.Data(), &batch); err != nil {
			k.badNotice(err)
			continue
		}
		for _, n := range batch {
			if !ValidID(n.Principal) || !validClientID(n.ClientID) {
				k.badNotice(ErrInvalidID)
				continue
			}
			k.gens.saw(n.Gen)
			fn(n.Principal, n.ClientID, n.Node, n.Gen)
		}
	}
}

// badNotice counts and logs (at most every logEvery) a notice the watch
// skips: nothing but nodes of the cluster may write the stream, so this
// is a bug or an intruder, not a client's doing.
func (k *KV) badNotice(err error) {
	k.mqttM.errors.WithLabelValues(opWatch).Inc()
	k.mqttL.failed.Warn(k.mqttL.log, logEvery, "store: skipped a claim notice that does not decode", "err", err)
}
