package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// natsServer is an embedded NATS with JetStream on a test directory.
type natsServer struct {
	t   testing.TB
	dir string
	srv *natsembed.Server
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	n := &natsServer{t: t, dir: t.TempDir()}
	srv, err := natsembed.Start(natsembed.Config{StoreDir: n.dir})
	if err != nil {
		t.Fatal(err)
	}
	n.srv = srv
	t.Cleanup(func() { n.srv.Stop() })
	return n
}

// open connects to the server and opens a journal, closed at cleanup.
func (n *natsServer) open(t testing.TB, cfg Config, opts ...nats.Option) (*Journal, *nats.Conn) {
	t.Helper()
	nc, err := n.srv.Connect(opts...)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "n1"
	}
	j, err := Open(context.Background(), js, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		j.Close()
		nc.Close()
	})
	return j, nc
}

// result is one Appended call.
type result struct {
	tag, seq uint64
	err      error
}

// recorder is an Appended that keeps every call.
type recorder struct {
	mu  sync.Mutex
	got []result
}

func (r *recorder) Appended(tag, seq uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, result{tag, seq, err})
}

func (r *recorder) results() []result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// wait waits for n results.
func (r *recorder) wait(t testing.TB, n int, within time.Duration) []result {
	t.Helper()
	testutil.CheckFor(t, within, time.Millisecond, func() error {
		if got := len(r.results()); got < n {
			return fmt.Errorf("%d of %d Appended calls", got, n)
		}
		return nil
	})
	return r.results()
}

// store appends msgs and waits for them: it returns their sequences.
func appendAll(t testing.TB, j *Journal, msgs ...*message.Message) []uint64 {
	t.Helper()
	r := &recorder{}
	for i, m := range msgs {
		if err := j.Append(m, r, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []uint64
	for i, res := range r.wait(t, len(msgs), 10*time.Second) {
		if res.err != nil || res.tag != uint64(i) {
			t.Fatalf("Stored %d: %+v", i, res)
		}
		seqs = append(seqs, res.seq)
	}
	return seqs
}

func direct(id uint64, to string) *message.Message {
	return &message.Message{ID: id, Kind: message.Direct, From: "dev", To: to, QoS: 1, Payload: []byte(fmt.Sprintf("d%d", id))}
}

func group(id uint64, to string) *message.Message {
	return &message.Message{ID: id, Kind: message.Group, From: "dev", To: to, QoS: 1, Payload: []byte(fmt.Sprintf("g%d", id))}
}

// replayed is what a replay handed to fn.
type replayed struct {
	seq uint64
	m   *message.Message
}

func replay(t testing.TB, j *Journal, from uint64, principal string, groups ...string) (got []replayed, first, last uint64) {
	t.Helper()
	first, last, err := j.Replay(context.Background(), from, principal, groups, false, func(seq uint64, stored time.Time, m *message.Message) error {
		// The stream's stored time: what per-session age bounds read.
		if age := time.Since(stored); age < -time.Second || age > time.Minute {
			t.Errorf("seq %d stored %v ago", seq, age)
		}
		got = append(got, replayed{seq, m})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got, first, last
}

func ids(got []replayed) []uint64 {
	var out []uint64
	for _, r := range got {
		out = append(out, r.m.ID)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{NodeID: "n1"}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "NodeID"},
		{Config{NodeID: "n.1"}, "NodeID"},
		{Config{NodeID: "n1", Cluster: "a.b"}, "Cluster"},
		{Config{NodeID: "n1", Replicas: 6}, "Replicas"},
		{Config{NodeID: "n1", MaxAge: -1}, "MaxAge"},
		{Config{NodeID: "n1", MaxBytes: -1}, "MaxBytes"},
		{Config{NodeID: "n1", MaxMsgs: -2}, "MaxMsgs"},
		{Config{NodeID: "n1", Timeout: -1}, "Timeout"},
		{Config{NodeID: "n1", MaxPending: maxMaxPending + 1}, "MaxPending"},
	} {
		err := tc.cfg.Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "journal: ") {
			t.Errorf("%+v: %v, want an error about %s", tc.cfg, err, tc.want)
		}
	}
}

// TestAppendReplay: a replay gets the principal's direct messages and
// its groups' messages, whichever node stored them, in stream order,
// and nothing addressed to anyone else.
func TestAppendReplay(t *testing.T) {
	n := startNATS(t)
	j1, _ := n.open(t, Config{NodeID: "n1"})
	j2, _ := n.open(t, Config{NodeID: "n2"})
	seqs := appendAll(t, j1,
		direct(1, "alice"), direct(2, "bob"), group(3, "team.a"), group(4, "team.b"),
		direct(5, "alice.x"), group(6, "team"), direct(7, "alice"))
	seqs = append(seqs, appendAll(t, j2, direct(8, "alice"), group(9, "team.a"), group(10, "other"))...)
	if !slices.IsSorted(seqs) || seqs[0] != 1 || seqs[len(seqs)-1] != 10 {
		t.Fatalf("sequences %v", seqs)
	}

	for _, tc := range []struct {
		principal string
		groups    []string
		want      []uint64
	}{
		{"alice", nil, []uint64{1, 7, 8}},
		{"alice.x", nil, []uint64{5}},
		{"bob", []string{"team.a"}, []uint64{2, 3, 9}},
		{"carol", []string{"team.a", "team.b", "team.a"}, []uint64{3, 4, 9}},
		{"carol", []string{"team"}, []uint64{6}},
		{"carol", []string{"nope"}, nil},
		{"alice", []string{"other", "team.b"}, []uint64{1, 4, 7, 8, 10}},
	} {
		got, first, last := replay(t, j2, 0, tc.principal, tc.groups...)
		if !slices.Equal(ids(got), tc.want) || first != 1 || last != 10 {
			t.Errorf("%s %v: %v (first %d, last %d), want %v", tc.principal, tc.groups, ids(got), first, last, tc.want)
		}
		for _, r := range got {
			if r.seq != r.m.ID { // stored in id order, one per sequence
				t.Errorf("message %d at sequence %d", r.m.ID, r.seq)
			}
		}
	}
	// The message comes back whole.
	got, _, _ := replay(t, j1, 0, "alice.x")
	if m := got[0].m; !sameMessage(m, direct(5, "alice.x")) {
		t.Errorf("replayed %+v", m)
	}
	// from: the messages at or above it only; above last: none.
	if got, _, _ := replay(t, j1, 7, "alice"); !slices.Equal(ids(got), []uint64{7, 8}) {
		t.Errorf("from 7: %v", ids(got))
	}
	if got, _, last := replay(t, j1, 11, "alice"); len(got) != 0 || last != 10 {
		t.Errorf("from 11: %v, last %d", ids(got), last)
	}
	// fn stops a replay with an error.
	stop := errors.New("stop")
	var calls int
	_, _, err := j1.Replay(context.Background(), 0, "alice", nil, false, func(uint64, time.Time, *message.Message) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("stopped replay: %v after %d calls", err, calls)
	}
	// Every replay deleted its consumer.
	info, err := j1.js.Stream(context.Background(), j1.stream)
	if err != nil || info.CachedInfo().State.Consumers != 0 {
		t.Errorf("consumers left after the replays: %v, %v", info.CachedInfo().State.Consumers, err)
	}
	// Ids that are not ids.
	if _, _, err := j1.Replay(context.Background(), 0, "a*", nil, false, nil); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("principal a*: %v", err)
	}
	if _, _, err := j1.Replay(context.Background(), 0, "a", []string{"x>"}, false, nil); !errors.Is(err, ErrInvalidMessage) {
		t.Errorf("group x>: %v", err)
	}
}

// TestReplayManyGroups: past maxGroupFilters groups, the replay still
// gets exactly its groups' messages.
// TestReplayTopics: rule topic messages are stored once per publish,
// whatever their topic, and a replay gets them all only when it asks
// for topics; they come back with their topic and in stream order
// among the principal's other messages.
func TestReplayTopics(t *testing.T) {
	n := startNATS(t)
	j1, _ := n.open(t, Config{NodeID: "n1"})
	j2, _ := n.open(t, Config{NodeID: "n2"})
	topic := func(id uint64, to string) *message.Message {
		return &message.Message{ID: id, Kind: message.Topic, From: "dev", To: to, QoS: 1, Payload: []byte("t")}
	}
	appendAll(t, j1, topic(1, "telemetry/d1/temp"), direct(2, "alice"), topic(3, "/a b/c.d/\u00e9/"))
	appendAll(t, j2, topic(4, "telemetry/d2"), group(5, "g"))
	got, _, _ := replay(t, j1, 0, "alice")
	if !slices.Equal(ids(got), []uint64{2}) {
		t.Errorf("without topics: %v", ids(got))
	}
	var topics []string
	_, _, err := j2.Replay(context.Background(), 0, "alice", []string{"g"}, true, func(_ uint64, _ time.Time, m *message.Message) error {
		topics = append(topics, fmt.Sprintf("%d %s %s", m.ID, m.Kind, m.To))
		return nil
	})
	want := []string{"1 topic telemetry/d1/temp", "2 direct alice", "3 topic /a b/c.d/\u00e9/", "4 topic telemetry/d2", "5 group g"}
	if err != nil || !slices.Equal(topics, want) {
		t.Errorf("with topics: %q, %v; want %q", topics, err, want)
	}
}

func TestReplayManyGroups(t *testing.T) {
	n := startNATS(t)
	j, _ := n.open(t, Config{})
	var groups []string
	for i := range maxGroupFilters + 10 {
		groups = append(groups, fmt.Sprintf("g.%d", i))
	}
	appendAll(t, j, group(1, "g.3"), group(2, "elsewhere"), direct(3, "alice"), group(4, "g.70"), group(5, "g.700"), direct(6, "bob"))
	if got, _, _ := replay(t, j, 0, "alice", groups...); !slices.Equal(ids(got), []uint64{1, 3, 4}) {
		t.Errorf("%v", ids(got))
	}
}

// TestReplayEmpty: a fresh stream replays nothing, and so does a
// principal without messages in a stream with many.
func TestReplayEmpty(t *testing.T) {
	n := startNATS(t)
	j, _ := n.open(t, Config{})
	if got, first, last := replay(t, j, 0, "alice", "g"); len(got) != 0 || first != 0 || last != 0 {
		t.Errorf("fresh: %v, first %d, last %d", ids(got), first, last)
	}
	appendAll(t, j, direct(1, "bob"), direct(2, "bob"))
	start := time.Now()
	if got, first, last := replay(t, j, 0, "alice", "g"); len(got) != 0 || first != 1 || last != 2 {
		t.Errorf("no messages of alice: %v, first %d, last %d", ids(got), first, last)
	}
	if d := time.Since(start); d > stallCheck/2 {
		t.Errorf("an empty replay took %v", d) // it must not wait for a stall check
	}
}

// TestReplayBounds: a stream capped by count drops the oldest messages;
// first says where the kept ones begin, so a replay from before it
// knows it missed some; and replays end at the last sequence of their
// start even while messages keep coming.
func TestReplayBounds(t *testing.T) {
	n := startNATS(t)
	j, _ := n.open(t, Config{MaxMsgs: 5})
	var msgs []*message.Message
	for i := range 12 {
		msgs = append(msgs, direct(uint64(i+1), "alice"))
	}
	appendAll(t, j, msgs...)
	got, first, last := replay(t, j, 3, "alice")
	if first != 8 || last != 12 || !slices.Equal(ids(got), []uint64{8, 9, 10, 11, 12}) {
		t.Fatalf("from 3: %v, first %d, last %d", ids(got), first, last)
	}
	f, l, err := j.Bounds(context.Background())
	if err != nil || f != 8 || l != 12 {
		t.Fatalf("Bounds: %d, %d, %v", f, l, err)
	}

	// Messages stored during a replay are left out of it.
	r := &recorder{}
	var more int
	_, _, err = j.Replay(context.Background(), 8, "alice", nil, false, func(seq uint64, _ time.Time, m *message.Message) error {
		if seq == 8 {
			for i := range 3 {
				if err := j.Append(direct(uint64(100+i), "alice"), r, uint64(i)); err != nil {
					return err
				}
			}
			r.wait(t, 3, 10*time.Second)
		}
		if seq > 12 {
			more++
		}
		return nil
	})
	if err != nil || more != 0 {
		t.Fatalf("replay during appends: %v, %d messages past its last", err, more)
	}
}

// TestReplayCappedByBytes: MaxBytes drops the oldest messages too.
func TestReplayCappedByBytes(t *testing.T) {
	n := startNATS(t)
	j, _ := n.open(t, Config{MaxBytes: 4096})
	var msgs []*message.Message
	for i := range 40 {
		m := direct(uint64(i+1), "alice")
		m.Payload = make([]byte, 500)
		msgs = append(msgs, m)
	}
	appendAll(t, j, msgs...)
	got, first, last := replay(t, j, 1, "alice")
	if first <= 1 || last != 40 || len(got) != int(last-first+1) || got[0].seq != first {
		t.Fatalf("%d messages, first %d, last %d", len(got), first, last)
	}
}

// TestStoredOrder: concurrent publishers each get their Appended calls in
// their Append order, with increasing sequences, one call per Append,
// and a payload reused right after Append returns is stored as it was.
func TestStoredOrder(t *testing.T) {
	n := startNATS(t)
	j, _ := n.open(t, Config{MaxPending: 16}) // small: Append blocks often
	const publishers, each = 4, 300
	recs := make([]*recorder, publishers)
	var wg sync.WaitGroup
	for p := range publishers {
		recs[p] = &recorder{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := &message.Message{Kind: message.Direct, From: "dev", To: fmt.Sprintf("p%d", p), QoS: 1, Payload: make([]byte, 8)}
			for i := range each {
				m.ID = uint64(p*each + i + 1)
				copy(m.Payload, fmt.Sprintf("%08d", i))
				if err := j.Append(m, recs[p], uint64(i)); err != nil {
					t.Error(err)
					return
				}
				clear(m.Payload) // the caller reuses it at once
			}
		}()
	}
	wg.Wait()
	for p, r := range recs {
		got := r.wait(t, each, 10*time.Second)
		for i, res := range got {
			if res.tag != uint64(i) || res.err != nil || i > 0 && res.seq <= got[i-1].seq {
				t.Fatalf("publisher %d, call %d: %+v (previous %+v)", p, i, res, got[max(i-1, 0)])
			}
		}
		msgs, _, _ := replay(t, j, 0, fmt.Sprintf("p%d", p))
		if len(msgs) != each {
			t.Fatalf("publisher %d: %d replayed", p, len(msgs))
		}
		for i, m := range msgs {
			if string(m.m.Payload) != fmt.Sprintf("%08d", i) || m.seq != got[i].seq {
				t.Fatalf("publisher %d, message %d: %q at %d, stored at %d", p, i, m.m.Payload, m.seq, got[i].seq)
			}
		}
	}
	j.Close() // every Appended call is made
	for _, r := range recs {
		if len(r.results()) != each {
			t.Fatalf("%d Appended calls, want %d", len(r.results()), each)
		}
	}
}

// TestStoreTimeout: with the server gone, each Append gets its error
// within Timeout, in order, counted and logged once; Close then has
// nothing left to wait for.
func TestStoreTimeout(t *testing.T) {
	n := startNATS(t)
	reg := prometheus.NewRegistry()
	var logs testutil.SyncBuffer
	nc, err := n.srv.Connect(nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	j, err := Open(context.Background(), js, Config{NodeID: "n1", Timeout: 300 * time.Millisecond, Registerer: reg},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	appendAll(t, j, direct(1, "alice"))
	n.srv.Stop()

	r := &recorder{}
	start := time.Now()
	for i := range 5 {
		if err := j.Append(group(uint64(10+i), "team.x"), r, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	got := r.wait(t, 5, 5*time.Second)
	took := time.Since(start)
	for i, res := range got {
		if res.tag != uint64(i) || !errors.Is(res.err, ErrTimeout) || res.seq != 0 {
			t.Errorf("Stored %d: %+v", i, res)
		}
	}
	if took < 300*time.Millisecond || took > 2*time.Second {
		t.Errorf("errors after %v, want about the 300ms timeout", took)
	}
	s := counters(t, reg)
	if s[`pushring_journal_store_errors_total{reason="timeout"}`] != 5 || s["pushring_journal_stored_total"] != 1 {
		t.Errorf("metrics %v", s)
	}
	if c := strings.Count(logs.String(), "journal: message not stored"); c != 1 ||
		!logs.Contains("kind=group") || !logs.Contains("to=team.x") || !logs.Contains("reason=timeout") {
		t.Errorf("%d lines logged:\n%s", c, logs.String())
	}
}

// TestStoreRefused: the server's refusal (here: no stream) reaches
// Appended as ErrRefused, at once, with the server's reason.
func TestStoreRefused(t *testing.T) {
	n := startNATS(t)
	reg := prometheus.NewRegistry()
	j, nc := n.open(t, Config{Registerer: reg})
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(context.Background(), j.stream); err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	j.Append(direct(1, "alice"), r, 7)
	res := r.wait(t, 1, time.Second)[0] // well within the 5 s timeout
	if !errors.Is(res.err, ErrRefused) || res.tag != 7 || res.seq != 0 {
		t.Fatalf("%+v", res)
	}
	t.Log(res.err)
	// Too large for the server.
	big := direct(2, "alice")
	big.Payload = make([]byte, 9<<20)
	j.Append(big, r, 8)
	res = r.wait(t, 2, time.Second)[1]
	if !errors.Is(res.err, ErrRefused) || res.tag != 8 {
		t.Fatalf("%+v", res)
	}
	t.Log(res.err)
	if s := counters(t, reg); s[`pushring_journal_store_errors_total{reason="refused"}`] != 2 {
		t.Errorf("metrics %v", s)
	}
}

// TestClose: Close reports the Appends in flight before it returns, and
// Append refuses afterwards.
func TestClose(t *testing.T) {
	n := startNATS(t)
	reg := prometheus.NewRegistry()
	j, nc := n.open(t, Config{Registerer: reg})
	appendAll(t, j, direct(1, "a"))
	// Acknowledgements can no longer come; their slots are in flight
	// until Close.
	j.sub.Unsubscribe()
	r := &recorder{}
	for i := range 3 {
		if err := j.Append(direct(uint64(i+2), "a"), r, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	nc.Close()
	start := time.Now()
	j.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v with the connection closed", d)
	}
	got := r.results()
	if len(got) != 3 {
		t.Fatalf("%d Appended calls before Close returned, want 3", len(got))
	}
	for i, res := range got {
		if res.tag != uint64(i) || !errors.Is(res.err, ErrClosed) {
			t.Errorf("Stored %d: %+v", i, res)
		}
	}
	if err := j.Append(direct(9, "a"), r, 9); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if s := testutil.SumSeries(counters(t, reg), "pushring_journal_store_errors_total"); s != 0 {
		t.Errorf("metrics still registered after Close: %v", s)
	}
}

// TestCloseWaits: Close with a live connection waits for the
// acknowledgements of the Appends in flight: they are stored.
func TestCloseWaits(t *testing.T) {
	n := startNATS(t)
	j, _ := n.open(t, Config{})
	r := &recorder{}
	for i := range 200 {
		if err := j.Append(direct(uint64(i+1), "a"), r, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	got := r.results()
	if len(got) != 200 {
		t.Fatalf("%d Appended calls, want 200", len(got))
	}
	for i, res := range got {
		if res.err != nil || res.tag != uint64(i) || res.seq != uint64(i+1) {
			t.Fatalf("Stored %d: %+v", i, res)
		}
	}
}

// TestAppendBlocks: Append waits while MaxPending Appends are in flight:
// it returns only once the oldest one was reported (here: timed out).
// Close releases a blocked Append with ErrClosed.
func TestAppendBlocks(t *testing.T) {
	n := startNATS(t)
	j, nc := n.open(t, Config{MaxPending: 2, Timeout: 200 * time.Millisecond})
	j.sub.Unsubscribe() // no acknowledgement comes
	r := &recorder{}
	for i := range 3 {
		if err := j.Append(direct(uint64(i+1), "a"), r, uint64(i)); err != nil {
			t.Fatal(err)
		}
		if got := len(r.results()); got < i-1 {
			t.Fatalf("Append %d returned with %d of the earlier ones reported, MaxPending 2", i, got)
		}
	}
	if got := r.results(); !errors.Is(got[0].err, ErrTimeout) {
		t.Fatalf("%+v", got)
	}

	r.wait(t, 3, 5*time.Second)

	// Full again, with acknowledgements that would take an hour: one
	// more Append blocks until Close.
	j, nc = n.open(t, Config{MaxPending: 2, Timeout: time.Hour})
	j.sub.Unsubscribe()
	for i := range 2 {
		j.Append(direct(uint64(i+10), "a"), r, uint64(i+3))
	}
	done := make(chan error)
	go func() { done <- j.Append(direct(20, "a"), r, 5) }()
	closed := make(chan struct{})
	go func() { j.Close(); close(closed) }()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Append: %v", err)
	}
	// Close waits for the two in flight; a closed connection ends the
	// wait.
	nc.Close()
	<-closed
	if got := r.results(); len(got) != 5 || !errors.Is(got[3].err, ErrClosed) || !errors.Is(got[4].err, ErrClosed) {
		t.Fatalf("%+v", got)
	}
}

// TestAppendInvalid: a message the subjects cannot carry is refused
// without a Appended call.
func TestAppendInvalid(t *testing.T) {
	n := startNATS(t)
	j, _ := n.open(t, Config{})
	r := &recorder{}
	for _, m := range []*message.Message{
		{Kind: message.Direct, To: "a*"},
		{Kind: message.Direct, To: "a=b"},
		{Kind: message.Direct, To: ""},
		{Kind: 4, To: "a"},
		{Kind: message.Topic, To: ""},
		{Kind: message.Topic, To: "a/+"},
		{Kind: message.Topic, To: "a/#"},
		{Kind: message.Group, To: "a", QoS: 3},
		{Kind: message.Group, To: "a", From: "x y"},
	} {
		if err := j.Append(m, r, 0); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("%+v: %v", m, err)
		}
	}
	appendAll(t, j, direct(1, "a"))
	if got := r.results(); len(got) != 0 {
		t.Errorf("Appended calls %v", got)
	}
}

// TestMetrics: the families and what one append and one replay count.
func TestMetrics(t *testing.T) {
	n := startNATS(t)
	reg := prometheus.NewRegistry()
	j, _ := n.open(t, Config{Registerer: reg})
	// One at a time: the second one's record has no prev.
	appendAll(t, j, direct(1, "alice"))
	appendAll(t, j, direct(2, "alice"))
	replay(t, j, 0, "alice")
	testutil.CheckLines(t, "families", testutil.MetricFamilies(t, reg, "pushring_journal_"), []string{
		`pushring_journal_bad_records_total counter [] "Stored records a replay could not decode and skipped."`,
		`pushring_journal_replay_waits_total counter [] "Young records a replay waited for, to see whether they were withdrawn: the message appended just before to their subject had no result yet when they were appended, and the replay had not delivered it."`,
		`pushring_journal_replay_withdrawn_total counter [] "Records a replay read and then found withdrawn, and so did not deliver."`,
		`pushring_journal_replayed_total counter [] "Messages read back from the journal stream by replays."`,
		`pushring_journal_replays_total counter [] "Replays begun (Replay and ReplayAll)."`,
		`pushring_journal_store_errors_total counter [reason] "Messages the journal could not store: timeout (no acknowledgement within the timeout), refused (by the server, or the publish failed), closed (the journal or its connection closed first), lost (unanswered while a later message was stored)."`,
		`pushring_journal_store_seconds histogram [] "Time from Append to the journal stream's acknowledgement, of the messages stored."`,
		`pushring_journal_stored_bytes_total counter [] "Bytes of the records the journal stream acknowledged."`,
		`pushring_journal_stored_total counter [] "Messages the journal stream acknowledged."`,
		`pushring_journal_withdraw_dropped_total counter [] "Stored messages that should have been withdrawn but stayed (too many waiting, or the journal closed first): a replay may deliver them ahead of earlier messages of their publisher."`,
		`pushring_journal_withdrawn_total counter [] "Stored messages withdrawn (deleted, or found gone already) because their publishers were not acknowledged (an earlier message failed to store, a takeover, a shutdown): the publishers send them again."`,
	})
	testutil.CheckCreated(t, reg, "pushring_journal_")
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		switch mf.GetName() {
		case "pushring_journal_stored_total", "pushring_journal_replayed_total":
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 2 {
				t.Errorf("%s = %v", mf.GetName(), v)
			}
		case "pushring_journal_stored_bytes_total":
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != float64(2*recordSize(direct(1, "alice"), 0)) {
				t.Errorf("%s = %v", mf.GetName(), v)
			}
		case "pushring_journal_store_seconds":
			if c := mf.GetMetric()[0].GetHistogram().GetSampleCount(); c != 2 {
				t.Errorf("%s count = %v", mf.GetName(), c)
			}
		}
	}
}

// counters are the journal's counter series (testutil.MetricSeries takes
// no histogram).
func counters(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if m.Counter == nil {
				continue
			}
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
			}
			out[name] = m.Counter.GetValue()
		}
	}
	return out
}

// TestStream: Open creates the stream as configured, and a later Open
// with other bounds updates it; messages are stored under
// pushring.<cluster>.m.<ingress>.<d|g>.<to>, the id's dots as '='.
func TestStream(t *testing.T) {
	n := startNATS(t)
	j, nc := n.open(t, Config{Cluster: "c-1", NodeID: "node-a", MaxAge: time.Hour, MaxBytes: 1 << 20, MaxMsgs: 100})
	js, _ := jetstream.New(nc)
	info := func() jetstream.StreamConfig {
		t.Helper()
		s, err := js.Stream(context.Background(), "MSGS_c-1")
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config
	}
	c := info()
	if !slices.Equal(c.Subjects, []string{"pushring.c-1.m.>"}) || c.Storage != jetstream.FileStorage || c.Replicas != 1 ||
		c.MaxAge != time.Hour || c.MaxBytes != 1<<20 || c.MaxMsgs != 100 || c.Discard != jetstream.DiscardOld ||
		c.Retention != jetstream.LimitsPolicy {
		t.Errorf("stream config %+v", c)
	}
	seqs := appendAll(t, j, direct(1, "alice.x"), group(2, "team.a.b"))
	for i, want := range []string{"pushring.c-1.m.node-a.d.alice=x", "pushring.c-1.m.node-a.g.team=a=b"} {
		s, _ := js.Stream(context.Background(), "MSGS_c-1")
		raw, err := s.GetMsg(context.Background(), seqs[i])
		if err != nil || raw.Subject != want {
			t.Errorf("message %d: subject %v, %v; want %s", i, raw, err, want)
		}
	}
	n.open(t, Config{Cluster: "c-1", NodeID: "node-b", MaxAge: 2 * time.Hour})
	if c := info(); c.MaxAge != 2*time.Hour || c.MaxBytes != 1<<30 || c.MaxMsgs != -1 {
		t.Errorf("updated stream config %+v", c)
	}
}

// TestReplayBadRecord: a record that does not decode is skipped,
// counted and logged once; the replay goes on.
func TestReplayBadRecord(t *testing.T) {
	n := startNATS(t)
	reg := prometheus.NewRegistry()
	var logs testutil.SyncBuffer
	nc, err := n.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	j, err := Open(context.Background(), js, Config{NodeID: "n1", Registerer: reg}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	appendAll(t, j, direct(1, "alice"))
	for range 3 {
		if _, err := js.Publish(context.Background(), "pushring.pushring.m.n9.d.alice", []byte("\x01garbage")); err != nil {
			t.Fatal(err)
		}
	}
	appendAll(t, j, direct(5, "alice"))
	got, _, _ := replay(t, j, 0, "alice")
	if !slices.Equal(ids(got), []uint64{1, 5}) {
		t.Errorf("replayed %v", ids(got))
	}
	if s := counters(t, reg); s["pushring_journal_bad_records_total"] != 3 || s["pushring_journal_replayed_total"] != 2 {
		t.Errorf("metrics %v", s)
	}
	if c := strings.Count(logs.String(), "cannot decode"); c != 1 {
		t.Errorf("%d lines logged:\n%s", c, logs.String())
	}
}

// TestConnectionClosed: when the connection closes under the journal,
// the Appends in flight get ErrClosed at once, not after Timeout, and so
// do later ones.
func TestConnectionClosed(t *testing.T) {
	n := startNATS(t)
	reg := prometheus.NewRegistry()
	j, nc := n.open(t, Config{Registerer: reg, Timeout: time.Hour})
	j.sub.Unsubscribe() // keep the first ones in flight
	r := &recorder{}
	for i := range 3 {
		j.Append(direct(uint64(i+1), "a"), r, uint64(i))
	}
	nc.Close()
	j.Append(direct(4, "a"), r, 3)
	got := r.wait(t, 4, 10*time.Second)
	for i, res := range got {
		if res.tag != uint64(i) || !errors.Is(res.err, ErrClosed) {
			t.Errorf("Stored %d: %+v", i, res)
		}
	}
	if s := counters(t, reg); s[`pushring_journal_store_errors_total{reason="closed"}`] != 4 {
		t.Errorf("metrics %v", s)
	}
}
