package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/internal/lograte"
)

// MQTTPosBatcherConfig configures an MQTTPosBatcher. Zero fields take the
// DefaultMQTTPosBatcherConfig values.
type MQTTPosBatcherConfig struct {
	// Interval between two rounds of writes: each session's latest
	// position is written at most once per Interval, whatever the number
	// of Note calls. It is also how far behind the stored position may
	// be after a crash (a resumed session gets at most Interval's worth
	// of messages again, as duplicates). Default 1 s.
	Interval time.Duration
	// MaxConcurrent bounds the writes in flight of one round, so a round
	// of many sessions neither floods JetStream nor waits on one write at
	// a time. Default 16.
	MaxConcurrent int
	// Logger receives the failures of rounds, rate limited. Nil:
	// slog.Default().
	Logger *slog.Logger
	// Registerer gets the pushring_mqtt_session_records_pos_* metrics.
	// Nil (the default): not registered.
	Registerer prometheus.Registerer
}

// DefaultMQTTPosBatcherConfig returns the defaults.
func DefaultMQTTPosBatcherConfig() MQTTPosBatcherConfig {
	return MQTTPosBatcherConfig{Interval: time.Second, MaxConcurrent: 16}
}

// Validate reports the error NewMQTTPosBatcher would return for c.
func (c MQTTPosBatcherConfig) Validate() error { return c.withDefaults().validate() }

func (c MQTTPosBatcherConfig) withDefaults() MQTTPosBatcherConfig {
	d := DefaultMQTTPosBatcherConfig()
	c.Interval = cmp.Or(c.Interval, d.Interval)
	c.MaxConcurrent = cmp.Or(c.MaxConcurrent, d.MaxConcurrent)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

func (c MQTTPosBatcherConfig) validate() error {
	return configerr.First(
		configerr.Positive(check, "Interval", c.Interval),
		configerr.Positive(check, "MaxConcurrent", c.MaxConcurrent),
	)
}

// MQTTPosBatcher collects the positions of MQTT sessions (Note) and
// writes the latest of each session every Interval with SaveMQTTPos, at
// most MaxConcurrent at a time: a session acknowledging a thousand
// messages a second costs one write a second. Note never blocks on the
// store and, once a session has been seen, allocates nothing.
//
// A write refused with ErrStale (the session was taken over) drops that
// session's pending position; a write that fails otherwise is retried
// next round, unless a newer position was noted meanwhile (that one is
// written instead). Sessions not noted for evictRounds rounds are
// forgotten. All methods are goroutine-safe.
type MQTTPosBatcher struct {
	store MQTTSessions
	cfg   MQTTPosBatcherConfig
	log   *slog.Logger
	m     posMetrics
	logL  lograte.Limiter

	mu      sync.Mutex // guards entries, dirty, spare
	entries map[posKey]*posEntry
	dirty   []posKey // keys whose entry is dirty, in the order they became so
	spare   []posKey // the other buffer of dirty, reused

	roundMu sync.Mutex // one round at a time; guards work
	work    []posWrite
	rounds  atomic.Uint64 // rounds started; Note stamps entries with it

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// evictRounds: an entry not noted for this many rounds is dropped, so the
// map holds the sessions that are active, not every session ever seen.
const evictRounds = 64

type posKey struct{ principal, clientID string }

type posEntry struct {
	gen, pos uint64
	dirty    bool   // pos is not written yet
	set      bool   // pos is written even if lower than the stored one (Rewind)
	noted    uint64 // the round counter when last noted
}

type posWrite struct {
	key      posKey
	gen, pos uint64
	set      bool
	err      error
}

type posMetrics struct {
	noted   prometheus.Counter
	pending prometheus.Gauge
	writes  *prometheus.CounterVec // result: ok, stale, error
	ok      prometheus.Counter
	stale   prometheus.Counter
	failed  prometheus.Counter
}

func newPosMetrics(reg prometheus.Registerer) (posMetrics, error) {
	m := posMetrics{
		noted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushring_mqtt_session_records_pos_noted_total",
			Help: "Delivery positions noted for batched writing (each session's latest is written once per interval).",
		}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushring_mqtt_session_records_pos_pending",
			Help: "MQTT sessions with a noted delivery position not written yet.",
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushring_mqtt_session_records_pos_batch_writes_total",
			Help: "Batched delivery position writes, by result (ok; stale: the session was taken over; error: retried next round).",
		}, []string{"result"}),
	}
	if reg != nil {
		var err error
		if m.noted, err = registerOne(reg, m.noted); err != nil {
			return m, err
		}
		if m.pending, err = registerOne(reg, m.pending); err != nil {
			return m, err
		}
		if m.writes, err = registerVec(reg, m.writes); err != nil {
			return m, err
		}
	}
	m.ok, m.stale, m.failed = m.writes.WithLabelValues("ok"), m.writes.WithLabelValues("stale"), m.writes.WithLabelValues("error")
	return m, nil
}

// registerOne registers c, or returns the collector of the same type
// already registered under its name.
func registerOne[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		var zero C
		return zero, check.New("Registerer: %v", err)
	}
	return c, nil
}

// NewMQTTPosBatcher starts a batcher writing to s. Close it to stop its
// goroutine and write what is pending.
func NewMQTTPosBatcher(s MQTTSessions, cfg MQTTPosBatcherConfig) (*MQTTPosBatcher, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m, err := newPosMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	b := &MQTTPosBatcher{
		store:   s,
		cfg:     cfg,
		log:     cfg.Logger.With("component", "store"),
		m:       m,
		entries: make(map[posKey]*posEntry),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go b.loop()
	return b, nil
}

func (b *MQTTPosBatcher) loop() {
	defer close(b.done)
	t := time.NewTicker(b.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			// Failures are counted, logged and retried by round itself.
			_ = b.round(context.Background())
		}
	}
}

// Note records that the session (principal, clientID) held with gen has
// acknowledged everything up to pos. Only the latest position of each
// session is written; a pos at or below one noted for the same gen is
// ignored, and a new gen replaces the position of the old one.
func (b *MQTTPosBatcher) Note(principal, clientID string, gen, pos uint64) {
	b.m.noted.Inc()
	k := posKey{principal, clientID}
	b.mu.Lock()
	e := b.entries[k]
	if e == nil {
		e = &posEntry{gen: gen}
		b.entries[k] = e
	}
	e.noted = b.rounds.Load()
	switch {
	case gen != e.gen:
		e.gen, e.pos = gen, pos
	case pos > e.pos:
		e.pos = pos
	default:
		b.mu.Unlock()
		return
	}
	if !e.dirty {
		e.dirty = true
		b.dirty = append(b.dirty, k)
		b.m.pending.Set(float64(len(b.dirty)))
	}
	b.mu.Unlock()
}

// Rewind records that the session (principal, clientID) held with gen
// is back at pos, lower than what was noted or written before (a stored
// message reached it after its position had passed it): pos is written
// whatever the stored position, unless a later Note moves it up again
// first.
func (b *MQTTPosBatcher) Rewind(principal, clientID string, gen, pos uint64) {
	b.m.noted.Inc()
	k := posKey{principal, clientID}
	b.mu.Lock()
	e := b.entries[k]
	if e == nil {
		e = &posEntry{}
		b.entries[k] = e
	}
	e.noted = b.rounds.Load()
	e.gen, e.pos, e.set = gen, pos, true
	if !e.dirty {
		e.dirty = true
		b.dirty = append(b.dirty, k)
		b.m.pending.Set(float64(len(b.dirty)))
	}
	b.mu.Unlock()
}

// Forget drops the session's pending position and state (its record was
// deleted, or the session is gone from this node and its last position
// does not matter).
func (b *MQTTPosBatcher) Forget(principal, clientID string) {
	b.mu.Lock()
	delete(b.entries, posKey{principal, clientID})
	b.mu.Unlock()
}

// Flush writes every pending position now and waits for the writes
// (and for a round already under way). It returns an error if some
// failed other than for a stale gen; they stay pending.
func (b *MQTTPosBatcher) Flush(ctx context.Context) error { return b.round(ctx) }

// Close stops the periodic rounds and flushes (Flush's error). Notes
// after Close stay pending until a Flush.
func (b *MQTTPosBatcher) Close(ctx context.Context) error {
	b.closeOnce.Do(func() { close(b.stop) })
	<-b.done
	return b.Flush(ctx)
}

// round writes the pending positions.
func (b *MQTTPosBatcher) round(ctx context.Context) error {
	b.roundMu.Lock()
	defer b.roundMu.Unlock()
	round := b.rounds.Add(1)

	b.mu.Lock()
	work := b.work[:0]
	for _, k := range b.dirty {
		if e := b.entries[k]; e != nil && e.dirty {
			e.dirty = false
			work = append(work, posWrite{key: k, gen: e.gen, pos: e.pos, set: e.set})
			e.set = false
		}
	}
	clear(b.dirty) // drop the strings for the collector
	b.dirty, b.spare = b.spare[:0], b.dirty[:0]
	b.m.pending.Set(0)
	if round%evictRounds == 0 {
		for k, e := range b.entries {
			if !e.dirty && round-e.noted > evictRounds {
				delete(b.entries, k)
			}
		}
	}
	b.mu.Unlock()

	if len(work) > 0 {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(b.cfg.MaxConcurrent, len(work)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < len(work); i = int(next.Add(1) - 1) {
					w := &work[i]
					save := b.store.SaveMQTTPos
					if w.set {
						save = b.store.SetMQTTPos
					}
					w.err = save(ctx, w.key.principal, w.key.clientID, w.gen, w.pos)
				}
			}()
		}
		wg.Wait()
	}

	var failed int
	var first error
	b.mu.Lock()
	for i := range work {
		w := &work[i]
		switch {
		case w.err == nil:
			b.m.ok.Inc()
		case errors.Is(w.err, ErrStale):
			b.m.stale.Inc()
			if e := b.entries[w.key]; e != nil && e.gen == w.gen {
				delete(b.entries, w.key) // another holder has it now
			}
		default:
			b.m.failed.Inc()
			failed++
			first = cmp.Or(first, w.err)
			if e := b.entries[w.key]; e != nil && e.gen == w.gen {
				// A failed Rewind must still go lower than what is
				// stored, whatever was noted since.
				e.set = e.set || w.set
				if !e.dirty {
					e.dirty = true
					b.dirty = append(b.dirty, w.key)
				}
			}
		}
	}
	b.m.pending.Set(float64(len(b.dirty)))
	b.mu.Unlock()
	clear(work)
	b.work = work[:0]
	if failed == 0 {
		return nil
	}
	err := fmt.Errorf("store: %d of %d mqtt session position writes failed (kept for the next round): %w", failed, len(work), first)
	b.logL.Warn(b.log, logEvery, "store: mqtt session positions not saved; retrying next round", "failed", failed, "of", len(work), "err", first)
	return err
}
