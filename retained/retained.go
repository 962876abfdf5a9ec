// Package retained keeps the retained message of every group: the last
// message published to a group with MQTT's retain flag (or an HTTP
// publish with "retain"), which members get when they subscribe.
//
// The messages live in a JetStream key-value bucket the node's store
// already has (the MQTT session records' bucket, "<cluster>_mqtt"), under
// keys "r.<gid>" (every '.' of the id written '='): no bucket, stream or
// permission of their own, since a node's NATS credentials carry every
// subject it may use and a JWT's CONNECT is capped at 4 KiB. The value is
// the message's journal record; a put with an empty payload deletes the
// key. The messages are bounded in bytes (Config.MaxBytes, checked by each
// node against its copy of all of them: a put that does not fit is
// refused, ErrFull) and, with one key per group, never more than there are
// groups. A message with an expiry is put with a per-message TTL (the
// bucket allows them): the server drops it when it expires, and Retained
// never returns it after.
//
// Every node holds all of them in memory, fresh through a watch, so a
// SUBSCRIBE reads them without waiting (Retained). A put is answered (its
// done callback) once the server stored it, and this node's copy changes
// then, before its watch brings it: a client that got its PUBACK finds
// the message on the same node at once, on other nodes as soon as their
// watch brings it (milliseconds). Revisions order the two sources: a
// local answer is applied only if the watch has not gone past it, and
// never over a newer revision.
package retained

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/journal"
	"github.com/pushring/pushring/message"
)

var (
	// ErrFull: no room for the message (Config.MaxBytes, MaxValueBytes).
	ErrFull = errors.New("retained: store full")
	// ErrTimeout: the server did not answer within Config.Timeout.
	ErrTimeout = errors.New("retained: no answer")
	// ErrClosed: the Store closed before the put was answered.
	ErrClosed = errors.New("retained: closed")
	// ErrBusy: MaxPending puts wait for their answer already.
	ErrBusy = errors.New("retained: too many puts in flight")
	// ErrNotGroup: only group messages are retained (a caller's bug).
	ErrNotGroup = errors.New("retained: not a group message")
)

// keyPrefix starts the keys of retained messages in the bucket.
const keyPrefix = "r."

// Config configures a Store. Zero fields take DefaultConfig's values.
type Config struct {
	// MaxBytes bounds the retained messages: payload and properties of
	// all of them. Default 64 MiB: every node holds them in memory.
	MaxBytes int64
	// MaxValueBytes bounds one message's payload and properties: set it
	// to the largest message the node accepts. Default 1 MiB.
	MaxValueBytes int
	// MaxPending bounds the puts waiting for their answer; past it a put
	// fails at once (ErrBusy). Default 4096.
	MaxPending int
	// Timeout bounds the wait for one answer, from the put. Default 5 s.
	Timeout time.Duration
	// Logger: nil is slog.Default().
	Logger *slog.Logger
	// Registerer gets the pushring_retained_* metrics once Open
	// succeeded; nil: none.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxBytes:      64 << 20,
		MaxValueBytes: 1 << 20,
		MaxPending:    4096,
		Timeout:       5 * time.Second,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.MaxBytes = cmp.Or(c.MaxBytes, d.MaxBytes)
	c.MaxValueBytes = cmp.Or(c.MaxValueBytes, d.MaxValueBytes)
	c.MaxPending = cmp.Or(c.MaxPending, d.MaxPending)
	c.Timeout = cmp.Or(c.Timeout, d.Timeout)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

// ErrInvalidConfig is matched by every error Validate returns.
var ErrInvalidConfig = errors.New("retained: invalid config")

var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "retained"}

// Validate reports the first field out of range.
func (c Config) Validate() error {
	c = c.withDefaults()
	return configerr.First(
		check.If(c.MaxBytes < 1<<20, "MaxBytes must be at least 1 MiB (got %d)", c.MaxBytes),
		check.If(c.MaxValueBytes < 1<<10 || int64(c.MaxValueBytes) > c.MaxBytes,
			"MaxValueBytes must be at least 1 KiB and at most MaxBytes (got %d)", c.MaxValueBytes),
		configerr.Positive(check, "MaxPending", c.MaxPending),
		configerr.Positive(check, "Timeout", c.Timeout),
	)
}

// Store is the retained messages of one cluster, as one node sees them.
// Goroutine-safe.
type Store struct {
	cfg     Config
	js      jetstream.JetStream // its own context: async puts time out
	kv      jetstream.KeyValue
	subject string // "$KV.<bucket>.r.": a group's subject is subject + encodeKey(gid)
	log     *slog.Logger

	mu      sync.RWMutex
	cache   map[string]entry // by group id
	bytes   int64            // payload and property bytes of the messages in cache
	watched uint64           // the highest revision the watch brought

	pending chan put // puts waiting for their answer, in publish order
	stop    context.CancelFunc
	closing chan struct{}
	closeMu sync.Mutex // orders Retain's send on pending against Close
	closed  bool
	wg      sync.WaitGroup
	met     *metrics
}

// entry is one group's retained message as this node knows it: m nil is
// a delete this node made whose watch event has not come yet.
type entry struct {
	m   *message.Message
	rev uint64
}

// put is one write waiting for the server's answer.
type put struct {
	fut      jetstream.PubAckFuture
	gid      string
	m        *message.Message // nil: a delete
	deadline time.Time
	done     func(error)
}

// Open loads the retained messages of kv (a bucket that allows
// per-message TTLs) and watches them until Close. It returns once this
// node's copy holds everything the bucket held when it began; metrics are
// registered then.
func Open(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	// Its own JetStream context, so that a put the server never answers
	// is dropped from the client's table after Timeout, and the table
	// is never what makes a put wait (pending is the bound).
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(cfg.Timeout),
		jetstream.WithPublishAsyncMaxPending(2*cfg.MaxPending))
	if err != nil {
		return nil, fmt.Errorf("retained: %w", err)
	}
	s := &Store{
		cfg: cfg, js: js, kv: kv, subject: "$KV." + kv.Bucket() + "." + keyPrefix, log: cfg.Logger,
		cache:   make(map[string]entry),
		pending: make(chan put, cfg.MaxPending),
		closing: make(chan struct{}),
		met:     newMetrics(),
	}
	wctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	ready := make(chan error, 1)
	s.wg.Add(2)
	go s.watch(wctx, ready)
	go s.answer()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err == nil {
		err = s.met.register(cfg.Registerer, s)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("retained: load from bucket %s: %w", kv.Bucket(), err)
	}
	return s, nil
}

// Retained returns gid's retained message, or nil: none, or expired. The
// message is shared and must not be changed. Never blocks on the server.
func (s *Store) Retained(gid string) *message.Message {
	s.mu.RLock()
	m := s.cache[gid].m
	s.mu.RUnlock()
	if m == nil || m.Expired(time.Now()) {
		return nil
	}
	return m
}

// Retain makes m its group's retained message, or, when m's payload is
// empty (or m expired already), clears the group's. It copies what it
// keeps of m before it returns and later calls done (if not nil) once,
// from any goroutine, possibly before Retain returns: nil once the server
// stored the change, else why not (ErrFull, ErrTimeout, ErrBusy,
// ErrClosed, or the server's error). A change whose answer failed may
// still have been stored.
func (s *Store) Retain(m *message.Message, done func(error)) {
	if done == nil {
		done = func(error) {}
	}
	if m.Kind != message.Group {
		done(ErrNotGroup)
		return
	}
	msg := &nats.Msg{Subject: s.subject + encodeKey(m.To), Header: nats.Header{}}
	var kept *message.Message
	var opts []jetstream.PublishOpt
	left := time.Duration(0)
	if m.Expires != 0 {
		left = time.Until(time.UnixMilli(m.Expires))
	}
	if len(m.Payload) == 0 || left < 0 {
		msg.Header.Set("KV-Operation", "DEL")
	} else {
		if m.Size() > s.cfg.MaxValueBytes || !s.fits(m) {
			s.met.full.Inc()
			done(ErrFull)
			return
		}
		kept = copyMessage(m)
		msg.Data = journal.AppendRecord(nil, kept, 0)
		if left > 0 {
			// Whole seconds, rounded up: never gone before it expires.
			opts = append(opts, jetstream.WithMsgTTL((left + time.Second - 1).Truncate(time.Second)))
		}
	}
	if err := s.send(msg, opts, m.To, kept, done); err != nil {
		s.met.failed.Inc()
		done(err)
	}
}

// fits reports whether m fits in MaxBytes in place of its group's
// message, as this node's copy counts.
func (s *Store) fits(m *message.Message) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.bytes + int64(m.Size())
	if old := s.cache[m.To].m; old != nil {
		n -= int64(old.Size())
	}
	return n <= s.cfg.MaxBytes
}

// send publishes msg and queues its answer for done; an error means
// done is not called.
func (s *Store) send(msg *nats.Msg, opts []jetstream.PublishOpt, gid string, kept *message.Message, done func(error)) error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if len(s.pending) == cap(s.pending) {
		return ErrBusy
	}
	deadline := time.Now().Add(s.cfg.Timeout)
	fut, err := s.js.PublishMsgAsync(msg, opts...)
	if err != nil {
		return fmt.Errorf("retained: put %s: %w", gid, err)
	}
	// Only send sends on pending, under closeMu, after the check above:
	// there is room.
	s.pending <- put{fut: fut, gid: gid, m: kept, deadline: deadline, done: done}
	return nil
}

// answer waits for the puts' answers in publish order, applies the ones
// stored to this node's copy and tells their callers. Each put waits at
// most until its own deadline, however many wait before it.
func (s *Store) answer() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		var p put
		select {
		case p = <-s.pending:
		case <-s.closing:
			s.failPending()
			return
		}
		var err error
		t.Reset(time.Until(p.deadline))
		select {
		case ack := <-p.fut.Ok():
			s.apply(p.gid, p.m, ack.Sequence, false)
		case err = <-p.fut.Err():
			err = classify(p.gid, err)
		case <-t.C:
			err = ErrTimeout
		case <-s.closing:
			err = ErrClosed
		}
		t.Stop()
		switch {
		case err == nil && p.m == nil:
			s.met.cleared.Inc()
		case err == nil:
			s.met.stored.Inc()
		case errors.Is(err, ErrFull):
			s.met.full.Inc()
		default:
			s.met.failed.Inc()
		}
		p.done(err)
	}
}

// failPending answers every put still waiting with ErrClosed.
func (s *Store) failPending() {
	for {
		select {
		case p := <-s.pending:
			p.done(ErrClosed)
		default:
			return
		}
	}
}

// classify names the server's refusal of a put to gid's key.
func classify(gid string, err error) error {
	var api *jetstream.APIError
	if errors.As(err, &api) && strings.Contains(api.Description, "maximum bytes") {
		return fmt.Errorf("%w: %s", ErrFull, api.Description)
	}
	if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		return ErrTimeout
	}
	return fmt.Errorf("retained: put %s: %w", gid, err)
}

// apply sets gid's message at revision rev (m nil: deleted). From the
// watch (watched), it is applied unless this node knows a newer revision
// of gid, and a delete drops the entry. A local answer is applied only
// past everything the watch brought (the watch has it otherwise, and
// maybe newer changes too); a delete then stays as a marker until its
// watch event comes, so an older put the watch still brings cannot bring
// the message back.
func (s *Store) apply(gid string, m *message.Message, rev uint64, watched bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if watched {
		s.watched = max(s.watched, rev)
	} else if rev <= s.watched {
		return
	}
	old, ok := s.cache[gid]
	if ok && old.rev > rev {
		return
	}
	if old.m != nil {
		s.bytes -= int64(old.m.Size())
	}
	switch {
	case m != nil:
		s.cache[gid] = entry{m: m, rev: rev}
		s.bytes += int64(m.Size())
	case watched:
		delete(s.cache, gid)
	default:
		s.cache[gid] = entry{rev: rev}
	}
}

// watch keeps this node's copy fresh: the bucket's retained messages
// first (then ready gets nil), every change after. A watch that ends (the
// server went away and the watcher gave up) starts again after a pause,
// and reads them all again.
func (s *Store) watch(ctx context.Context, ready chan<- error) {
	defer s.wg.Done()
	first := true
	for ctx.Err() == nil {
		err := s.watchOnce(ctx, func() {
			if first {
				first = false
				ready <- nil
			}
		})
		if ctx.Err() != nil {
			return
		}
		if first {
			ready <- err
			return
		}
		s.log.Warn("retained: watch ended; starting again", "err", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

func (s *Store) watchOnce(ctx context.Context, loaded func()) error {
	w, err := s.kv.Watch(ctx, keyPrefix+">")
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case e, ok = <-w.Updates():
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return errors.New("watch closed")
		}
		if e == nil {
			loaded()
			continue
		}
		gid := decodeKey(strings.TrimPrefix(e.Key(), keyPrefix))
		if e.Operation() != jetstream.KeyValuePut {
			s.apply(gid, nil, e.Revision(), true)
			continue
		}
		m, _, err := journal.DecodeRecord(e.Value())
		if err != nil || m.Kind != message.Group || m.To != gid {
			s.met.corrupt.Inc()
			s.log.Warn("retained: unreadable record skipped", "key", e.Key(), "revision", e.Revision(), "err", err)
			continue
		}
		s.apply(gid, m, e.Revision(), true)
	}
}

// Close stops the watch and answers every put still waiting (ErrClosed).
// The messages stay in the bucket.
func (s *Store) Close() {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return
	}
	s.closed = true
	close(s.closing)
	s.closeMu.Unlock()
	s.stop()
	s.wg.Wait()
	s.failPending()
}

// IsFull reports whether err says there was no room (ErrFull).
func (*Store) IsFull(err error) bool { return errors.Is(err, ErrFull) }

// copyMessage is a copy of m that owns its payload and properties, with
// no sequence: a retained message is not a position in the journal.
func copyMessage(m *message.Message) *message.Message {
	c := *m
	c.Seq = 0
	c.Payload = append([]byte(nil), m.Payload...)
	if len(m.Props) > 0 {
		c.Props = append([]byte(nil), m.Props...)
	}
	return &c
}

// encodeKey is gid's key token: ids may hold '.', which separates the
// tokens of a key, and never '=', which a key may hold.
func encodeKey(gid string) string { return strings.ReplaceAll(gid, ".", "=") }

func decodeKey(key string) string { return strings.ReplaceAll(key, "=", ".") }
