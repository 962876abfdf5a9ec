package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/testutil"
)

// countingSessions counts SaveMQTTPos calls and the most in flight at
// once; with gate set, each call waits for it to close.
type countingSessions struct {
	MQTTSessions
	calls, inflight, maxInflight atomic.Int64
	gate                         chan struct{}
}

func (c *countingSessions) SaveMQTTPos(ctx context.Context, p, id string, gen, pos uint64) error {
	c.calls.Add(1)
	n := c.inflight.Add(1)
	defer c.inflight.Add(-1)
	for {
		m := c.maxInflight.Load()
		if n <= m || c.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	if c.gate != nil {
		<-c.gate
	}
	return c.MQTTSessions.SaveMQTTPos(ctx, p, id, gen, pos)
}

func newBatcher(t *testing.T, s MQTTSessions, cfg MQTTPosBatcherConfig) *MQTTPosBatcher {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := NewMQTTPosBatcher(s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	return b
}

// TestMQTTPosBatcherCoalesces: a thousand notes over three sessions make
// three writes, each of the session's latest position; a flush with
// nothing new writes nothing, and lower positions are no news.
func TestMQTTPosBatcherCoalesces(t *testing.T) {
	m := NewMemory()
	cs := &countingSessions{MQTTSessions: m}
	reg := prometheus.NewRegistry()
	b := newBatcher(t, cs, MQTTPosBatcherConfig{Interval: time.Hour, Registerer: reg})
	ctx := ctxT(t)
	ids := []string{"a", "b", "c"}
	gens := map[string]uint64{}
	for _, id := range ids {
		_, _, c := mustClaim(t, m, "alice", id, "n1", false, 0)
		gens[id] = c.Gen
	}
	for i := 1; i <= 1000; i++ {
		id := ids[i%3]
		b.Note("alice", id, gens[id], uint64(i))
		b.Note("alice", id, gens[id], uint64(i/2)) // lower: ignored
	}
	if got := testutil.MetricSeries(t, reg, "pushring_mqtt_session_records_pos_pending")["pushring_mqtt_session_records_pos_pending"]; got != 3 {
		t.Errorf("pending %v, want 3", got)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := cs.calls.Load(); n != 3 {
		t.Fatalf("%d writes for 3 sessions, want 3", n)
	}
	for _, id := range ids {
		want := map[string]uint64{"a": 999, "b": 1000, "c": 998}[id]
		if got := mustGet(t, m, "alice", id); got.Pos != want {
			t.Errorf("%s: pos %d, want %d", id, got.Pos, want)
		}
	}
	b.Note("alice", "a", gens["a"], 10)
	if err := b.Flush(ctx); err != nil || cs.calls.Load() != 3 {
		t.Fatalf("flush with nothing new: %v, %d writes", err, cs.calls.Load())
	}
	s := testutil.MetricSeries(t, reg, "pushring_mqtt_session_records_pos")
	for name, want := range map[string]float64{
		"pushring_mqtt_session_records_pos_noted_total":                        2001,
		"pushring_mqtt_session_records_pos_pending":                            0,
		`pushring_mqtt_session_records_pos_batch_writes_total{result="ok"}`:    3,
		`pushring_mqtt_session_records_pos_batch_writes_total{result="stale"}`: 0,
		`pushring_mqtt_session_records_pos_batch_writes_total{result="error"}`: 0,
	} {
		if s[name] != want {
			t.Errorf("%s = %v, want %v", name, s[name], want)
		}
	}
}

// TestMQTTPosBatcherInterval: without Flush, the rounds write the latest
// position every Interval, once per session per round.
func TestMQTTPosBatcherInterval(t *testing.T) {
	m := NewMemory()
	cs := &countingSessions{MQTTSessions: m}
	b := newBatcher(t, cs, MQTTPosBatcherConfig{Interval: 20 * time.Millisecond})
	_, _, c := mustClaim(t, m, "alice", "phone", "n1", false, 0)
	for i := uint64(1); i <= 100; i++ {
		b.Note("alice", "phone", c.Gen, i)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := mustGet(t, m, "alice", "phone").Pos; got != 100 {
			return fmt.Errorf("pos %d", got)
		}
		return nil
	})
	// Let a few more rounds pass: nothing new, nothing written.
	n := cs.calls.Load()
	r := b.rounds.Load()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if b.rounds.Load() < r+3 {
			return errors.New("rounds not running")
		}
		return nil
	})
	if cs.calls.Load() != n || n > 2 {
		t.Fatalf("%d writes for one burst of notes (then %d)", n, cs.calls.Load())
	}
}

// TestMQTTPosBatcherStale: a session taken over by another node drops its
// pending position (counted), and is not written again.
func TestMQTTPosBatcherStale(t *testing.T) {
	m := NewMemory()
	cs := &countingSessions{MQTTSessions: m}
	reg := prometheus.NewRegistry()
	b := newBatcher(t, cs, MQTTPosBatcherConfig{Interval: time.Hour, Registerer: reg})
	ctx := ctxT(t)
	_, _, c1 := mustClaim(t, m, "alice", "phone", "n1", false, 0)
	b.Note("alice", "phone", c1.Gen, 5)
	_, _, c2 := mustClaim(t, m, "alice", "phone", "n2", false, 0)
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("a stale write is no error of Flush: %v", err)
	}
	if got := mustGet(t, m, "alice", "phone"); got.Pos != 0 || got.Gen != c2.Gen {
		t.Fatalf("record %+v after a stale write", got)
	}
	if err := b.Flush(ctx); err != nil || cs.calls.Load() != 1 {
		t.Fatalf("second flush: %v, %d writes, want 1", err, cs.calls.Load())
	}
	// A new gen on this node (it claimed the session back) starts over.
	_, _, c3 := mustClaim(t, m, "alice", "phone", "n1", false, 0)
	b.Note("alice", "phone", c3.Gen, 3)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, m, "alice", "phone"); got.Pos != 3 {
		t.Fatalf("pos %d after a new gen, want 3", got.Pos)
	}
	s := testutil.MetricSeries(t, reg, "pushring_mqtt_session_records_pos_batch")
	if s[`pushring_mqtt_session_records_pos_batch_writes_total{result="stale"}`] != 1 {
		t.Errorf("metrics %v", s)
	}
}

// TestMQTTPosBatcherRetries: while the store is down, Flush fails and the
// positions stay pending (one log line for several failed rounds); once
// it is back, they are written, the newest noted meanwhile included.
func TestMQTTPosBatcherRetries(t *testing.T) {
	m := NewMemory()
	logs := &testutil.SyncBuffer{}
	reg := prometheus.NewRegistry()
	b := newBatcher(t, m, MQTTPosBatcherConfig{Interval: time.Hour, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := ctxT(t)
	_, _, c := mustClaim(t, m, "alice", "phone", "n1", false, 0)
	_, _, d := mustClaim(t, m, "bob", "phone", "n1", false, 0)
	b.Note("alice", "phone", c.Gen, 5)
	b.Note("bob", "phone", d.Gen, 6)
	m.SetUnavailable(true)
	for range 3 {
		if err := b.Flush(ctx); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "2 of 2") {
			t.Fatalf("Flush with the store down: %v", err)
		}
	}
	b.Note("alice", "phone", c.Gen, 9)
	m.SetUnavailable(false)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if a, bb := mustGet(t, m, "alice", "phone").Pos, mustGet(t, m, "bob", "phone").Pos; a != 9 || bb != 6 {
		t.Fatalf("positions %d, %d after the store came back, want 9, 6", a, bb)
	}
	if n := strings.Count(logs.String(), "positions not saved"); n != 1 {
		t.Errorf("%d log lines for 3 failed rounds, want 1:\n%s", n, logs.String())
	}
	if got := testutil.MetricSeries(t, reg, "pushring_mqtt_session_records_pos_batch")[`pushring_mqtt_session_records_pos_batch_writes_total{result="error"}`]; got != 6 {
		t.Errorf("error writes %v, want 6", got)
	}
}

// TestMQTTPosBatcherConcurrency: a round of many sessions keeps exactly
// MaxConcurrent writes in flight.
func TestMQTTPosBatcherConcurrency(t *testing.T) {
	m := NewMemory()
	cs := &countingSessions{MQTTSessions: m, gate: make(chan struct{})}
	b := newBatcher(t, cs, MQTTPosBatcherConfig{Interval: time.Hour, MaxConcurrent: 4})
	for i := range 50 {
		id := fmt.Sprint("c", i)
		_, _, c := mustClaim(t, m, "alice", id, "n1", false, 0)
		b.Note("alice", id, c.Gen, 1)
	}
	done := make(chan error, 1)
	go func() { done <- b.Flush(context.Background()) }()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := cs.inflight.Load(); n != 4 {
			return fmt.Errorf("%d in flight", n)
		}
		return nil
	})
	close(cs.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if cs.calls.Load() != 50 || cs.maxInflight.Load() != 4 {
		t.Fatalf("%d writes, at most %d in flight; want 50, 4", cs.calls.Load(), cs.maxInflight.Load())
	}
}

// TestMQTTPosBatcherClose: Close writes what is pending.
func TestMQTTPosBatcherClose(t *testing.T) {
	m := NewMemory()
	b, err := NewMQTTPosBatcher(m, MQTTPosBatcherConfig{Interval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	_, _, c := mustClaim(t, m, "alice", "phone", "n1", false, 0)
	b.Note("alice", "phone", c.Gen, 7)
	if err := b.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, m, "alice", "phone").Pos; got != 7 {
		t.Fatalf("pos %d after Close, want 7", got)
	}
}

// TestMQTTPosBatcherNoteAllocs: Note of a session already seen allocates
// nothing.
func TestMQTTPosBatcherNoteAllocs(t *testing.T) {
	b := newBatcher(t, NewMemory(), MQTTPosBatcherConfig{Interval: time.Hour})
	ids := make([]string, 64)
	for i := range ids {
		ids[i] = fmt.Sprint("client-", i)
		b.Note("alice", ids[i], 1, 1)
	}
	pos := uint64(1)
	if n := testing.AllocsPerRun(1000, func() {
		pos++
		b.Note("alice", ids[pos%64], 1, pos)
	}); n != 0 {
		t.Fatalf("Note: %v allocations per call", n)
	}
}

func TestMQTTPosBatcherConfig(t *testing.T) {
	if err := DefaultMQTTPosBatcherConfig().Validate(); err != nil {
		t.Error(err)
	}
	if err := (MQTTPosBatcherConfig{}).Validate(); err != nil {
		t.Error(err)
	}
	for _, tc := range []struct {
		field string
		cfg   MQTTPosBatcherConfig
	}{
		{"Interval", MQTTPosBatcherConfig{Interval: -time.Second}},
		{"MaxConcurrent", MQTTPosBatcherConfig{MaxConcurrent: -1}},
	} {
		if err := testutil.ConfigError(tc.cfg.Validate(), ErrInvalidConfig, "store: ", tc.field); err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkMQTTPosBatcherNote: the cost of Note for sessions already
// seen, from parallel goroutines.
func BenchmarkMQTTPosBatcherNote(b *testing.B) {
	bt, err := NewMQTTPosBatcher(NewMemory(), MQTTPosBatcherConfig{Interval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer bt.Close(context.Background())
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprint("client-", i)
		bt.Note("alice", ids[i], 1, 1)
	}
	var pos atomic.Uint64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p := pos.Add(1)
			bt.Note("alice", ids[p%1024], 1, p)
		}
	})
}

// TestMQTTPosBatcherRewind: a Rewind writes a position lower than the
// stored one; a Note after it, higher, wins within the round; notes lower
// than the rewound position are ignored as usual.
func TestMQTTPosBatcherRewind(t *testing.T) {
	m := NewMemory()
	b := newBatcher(t, m, MQTTPosBatcherConfig{Interval: time.Hour})
	ctx := ctxT(t)
	_, _, c := mustClaim(t, m, "alice", "phone", "n1", false, 0)
	pos := func() uint64 { return mustGet(t, m, "alice", "phone").Pos }
	b.Note("alice", "phone", c.Gen, 10)
	if err := b.Flush(ctx); err != nil || pos() != 10 {
		t.Fatalf("after Note(10): %d, %v", pos(), err)
	}
	b.Rewind("alice", "phone", c.Gen, 4)
	b.Note("alice", "phone", c.Gen, 3) // lower than the rewind: ignored
	if err := b.Flush(ctx); err != nil || pos() != 4 {
		t.Fatalf("after Rewind(4): %d, %v", pos(), err)
	}
	b.Rewind("alice", "phone", c.Gen, 2)
	b.Note("alice", "phone", c.Gen, 6) // the late message acknowledged: up again
	if err := b.Flush(ctx); err != nil || pos() != 6 {
		t.Fatalf("after Rewind(2), Note(6): %d, %v", pos(), err)
	}
	b.Note("alice", "phone", c.Gen, 12)
	if err := b.Flush(ctx); err != nil || pos() != 12 {
		t.Fatalf("after Note(12): %d, %v", pos(), err)
	}
}
