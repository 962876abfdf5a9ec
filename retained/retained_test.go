package retained

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// server is an embedded NATS with JetStream on a test directory that
// outlives a restart.
type server struct {
	dir string
	srv *natsembed.Server
}

func startServer(t *testing.T) *server {
	t.Helper()
	s := &server{dir: t.TempDir()}
	s.start(t)
	t.Cleanup(func() { s.srv.Stop() })
	return s
}

func (s *server) start(t *testing.T) {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: s.dir})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = srv
}

// open connects and opens a Store, closed at cleanup.
func (s *server) open(t *testing.T, cfg Config) (*Store, jetstream.JetStream, *prometheus.Registry) {
	t.Helper()
	nc, err := s.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg.Logger, cfg.Registerer = slog.New(slog.DiscardHandler), reg
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The bucket as the store makes its MQTT session records' one.
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "pushring_mqtt", History: 1,
		LimitMarkerTTL: time.Minute, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	st, err := Open(ctx, nc, kv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		nc.Close()
	})
	return st, js, reg
}

func groupMsg(id uint64, gid, payload string) *message.Message {
	return &message.Message{ID: id, Kind: message.Group, From: "dev", To: gid, QoS: 1, Payload: []byte(payload)}
}

// retain calls Retain and waits for its answer.
func retain(t *testing.T, st *Store, m *message.Message) error {
	t.Helper()
	ch := make(chan error, 1)
	st.Retain(m, func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
		return nil
	}
}

// payloadOf is gid's retained payload on st, "" for none.
func payloadOf(st *Store, gid string) string {
	if m := st.Retained(gid); m != nil {
		return string(m.Payload)
	}
	return ""
}

func waitPayload(t *testing.T, st *Store, gid, want string) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := payloadOf(st, gid); got != want {
			return fmt.Errorf("%s: retained %q, want %q", gid, got, want)
		}
		return nil
	})
}

// TestRetainAcrossNodes: a put is on the putting node's copy when it is
// answered, reaches another node's copy through its watch, is replaced
// by the next put, and an empty payload clears it on both.
func TestRetainAcrossNodes(t *testing.T) {
	srv := startServer(t)
	a, _, reg := srv.open(t, Config{})
	b, _, _ := srv.open(t, Config{})

	m := groupMsg(1, "g.1", "first")
	m.Props = []byte{0x03, 0x00, 0x04, 't', 'e', 'x', 't'}
	m.Seq = 99
	if err := retain(t, a, m); err != nil {
		t.Fatal(err)
	}
	m.Payload[0] = 'X' // Retain copied it
	got := a.Retained("g.1")
	if got == nil || string(got.Payload) != "first" || got.Seq != 0 || !bytes.Equal(got.Props, m.Props) || got.ID != 1 || got.From != "dev" {
		t.Fatalf("a's copy right after the answer: %+v", got)
	}
	waitPayload(t, b, "g.1", "first")

	if err := retain(t, b, groupMsg(2, "g.1", "second")); err != nil {
		t.Fatal(err)
	}
	waitPayload(t, a, "g.1", "second")
	if err := retain(t, a, groupMsg(3, "g.1", "")); err != nil {
		t.Fatal(err)
	}
	if payloadOf(a, "g.1") != "" {
		t.Fatal("cleared, still on a")
	}
	waitPayload(t, b, "g.1", "")
	if a.Retained("other") != nil {
		t.Fatal("a group never retained has a message")
	}
	if err := retain(t, a, &message.Message{ID: 4, Kind: message.Direct, To: "u", Payload: []byte("x")}); !errors.Is(err, ErrNotGroup) {
		t.Fatalf("direct message: %v", err)
	}
	s := testutil.MetricSeries(t, reg, "pushring_retained_")
	if s[`pushring_retained_writes_total{result="stored"}`] != 1 || s[`pushring_retained_writes_total{result="cleared"}`] != 1 {
		t.Fatalf("metrics: %v", s)
	}
}

// TestRetainSurvivesRestart: a new node on a restarted server loads what
// was retained before.
func TestRetainSurvivesRestart(t *testing.T) {
	srv := startServer(t)
	a, _, _ := srv.open(t, Config{})
	for i, gid := range []string{"g1", "g2", "g3"} {
		if err := retain(t, a, groupMsg(uint64(i+1), gid, "state of "+gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := retain(t, a, groupMsg(9, "g2", "")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	srv.srv.Stop()
	srv.start(t)
	b, _, reg := srv.open(t, Config{})
	// Open returns once the bucket is loaded: no waiting.
	if payloadOf(b, "g1") != "state of g1" || payloadOf(b, "g3") != "state of g3" || payloadOf(b, "g2") != "" {
		t.Fatalf("after restart: g1 %q g2 %q g3 %q", payloadOf(b, "g1"), payloadOf(b, "g2"), payloadOf(b, "g3"))
	}
	if s := testutil.MetricSeries(t, reg, "pushring_retained_"); s["pushring_retained_messages"] != 2 ||
		s["pushring_retained_bytes"] != float64(2*len("state of g1")) {
		t.Fatalf("metrics: %v", s)
	}
}

// TestRetainFull: past MaxBytes (or MaxValueBytes) a put is refused with
// ErrFull and counted, and what was kept stays; clearing a group's
// message makes room again.
func TestRetainFull(t *testing.T) {
	srv := startServer(t)
	st, _, reg := srv.open(t, Config{MaxBytes: 1 << 20, MaxValueBytes: 200 << 10})
	if err := retain(t, st, groupMsg(99, "huge", strings.Repeat("x", 201<<10))); !errors.Is(err, ErrFull) {
		t.Fatalf("over MaxValueBytes: %v", err)
	}
	big := strings.Repeat("x", 150<<10)
	var full int
	for i := range 10 {
		err := retain(t, st, groupMsg(uint64(i+1), fmt.Sprintf("g%d", i), big))
		if errors.Is(err, ErrFull) {
			full = i
			break
		}
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if full == 0 {
		t.Fatal("1 MiB took ten 150 KiB messages")
	}
	if payloadOf(st, fmt.Sprintf("g%d", full)) != "" || payloadOf(st, "g0") != big {
		t.Fatal("a refused put changed the copy")
	}
	if err := retain(t, st, groupMsg(100, "g0", "")); err != nil {
		t.Fatalf("clear when full: %v", err)
	}
	if s := testutil.MetricSeries(t, reg, "pushring_retained_"); s[`pushring_retained_writes_total{result="full"}`] != 2 {
		t.Fatalf("metrics: %v", s)
	}
	// The cleared group's room is the server's once the delete lands;
	// a new message fits again.
	if err := retain(t, st, groupMsg(101, "g.new", "small")); err != nil {
		t.Fatalf("put after clearing: %v", err)
	}
}

// TestRetainExpires: a message with an expiry is not returned after it,
// and the server drops it (a node opened later does not load it).
func TestRetainExpires(t *testing.T) {
	srv := startServer(t)
	a, js, _ := srv.open(t, Config{})
	m := groupMsg(1, "g", "short-lived")
	deadline := time.Now().Add(1500 * time.Millisecond)
	m.Expires = deadline.UnixMilli()
	if err := retain(t, a, m); err != nil {
		t.Fatal(err)
	}
	if payloadOf(a, "g") != "short-lived" {
		t.Fatal("not retained")
	}
	waitPayload(t, a, "g", "")
	if early := time.Until(deadline); early > 5*time.Millisecond {
		t.Fatalf("gone %v before it expired", early)
	}
	kv, err := js.KeyValue(context.Background(), "pushring_mqtt")
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, err := kv.Get(context.Background(), "r.g"); !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("the server still has it: %v", err)
		}
		return nil
	})
	// A message that expired on its way clears the group's.
	if err := retain(t, a, groupMsg(2, "g", "kept")); err != nil {
		t.Fatal(err)
	}
	expired := groupMsg(3, "g", "expired already")
	expired.Expires = time.Now().Add(-time.Second).UnixMilli()
	if err := retain(t, a, expired); err != nil || payloadOf(a, "g") != "" {
		t.Fatalf("expired on arrival: %v, %q", err, payloadOf(a, "g"))
	}
}

// TestRetainSkipsCorrupt: a record that is not a message for its key is
// skipped and counted, and the watch goes on.
func TestRetainSkipsCorrupt(t *testing.T) {
	srv := startServer(t)
	st, js, reg := srv.open(t, Config{})
	kv, err := js.KeyValue(context.Background(), "pushring_mqtt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "s.other", []byte("not ours: never read")); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "r.bad", []byte("not a record")); err != nil {
		t.Fatal(err)
	}
	// A valid record under another group's key.
	other, _, _ := srv.open(t, Config{})
	if err := retain(t, other, groupMsg(1, "g1", "for g1")); err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), "r.g1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "r.g2", e.Value()); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(context.Background(), "r.g3", e.Value()); err != nil {
		t.Fatal(err)
	}
	waitPayload(t, st, "g1", "for g1")
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := testutil.MetricSeries(t, reg, "pushring_retained_")["pushring_retained_corrupt_total"]; n != 3 {
			return fmt.Errorf("corrupt %v, want 3", n)
		}
		return nil
	})
	if st.Retained("bad") != nil || st.Retained("g2") != nil {
		t.Fatal("a corrupt record was loaded")
	}
}

// TestRetainApplyOrder: an older revision never replaces a newer one; a
// delete made here holds off an older put the watch brings late; a local
// answer the watch has gone past is not applied (the watch brought it,
// and maybe a newer change).
func TestRetainApplyOrder(t *testing.T) {
	s := &Store{cache: map[string]entry{}}
	s.apply("g", groupMsg(2, "g", "new"), 5, false)
	s.apply("g", groupMsg(1, "g", "old"), 4, true)
	if payloadOf(s, "g") != "new" {
		t.Fatal("older revision applied")
	}
	s.apply("g", nil, 6, false)
	s.apply("g", groupMsg(2, "g", "new"), 5, true)
	if payloadOf(s, "g") != "" {
		t.Fatal("the watch's older put undid a delete made here")
	}
	s.apply("g", nil, 6, true)
	if _, ok := s.cache["g"]; ok {
		t.Fatal("the delete marker stayed after the watch brought the delete")
	}
	// This node put X (rev 10), another cleared it (rev 11); the watch
	// brought both before X's answer came.
	s.apply("h", groupMsg(3, "h", "x"), 10, true)
	s.apply("h", nil, 11, true)
	s.apply("h", groupMsg(3, "h", "x"), 10, false)
	if payloadOf(s, "h") != "" {
		t.Fatal("a late local answer brought back a cleared message")
	}
	// A local delete the watch brought first leaves no marker.
	s.apply("k", groupMsg(4, "k", "y"), 12, true)
	s.apply("k", nil, 13, true)
	s.apply("k", nil, 13, false)
	if len(s.cache) != 0 || s.bytes != 0 {
		t.Fatalf("cache %v, bytes %d", s.cache, s.bytes)
	}
}

// TestRetainClosed: puts after Close fail with ErrClosed, and Close
// answers what was waiting.
func TestRetainClosed(t *testing.T) {
	srv := startServer(t)
	st, _, _ := srv.open(t, Config{})
	st.Close()
	if err := retain(t, st, groupMsg(1, "g", "x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestConfigValidate: out-of-range fields are refused.
func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []Config{{MaxBytes: 1000}, {MaxValueBytes: 10}, {MaxValueBytes: 128 << 20}, {MaxPending: -1}, {Timeout: -1}} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
