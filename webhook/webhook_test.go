package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/testutil"
)

func TestSignVerify(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	body := []byte(`{"id":"x"}`)
	sig := Sign("whsec_1", ts, body)
	if !Verify("whsec_1", "1700000000", sig, body, ts.Add(time.Minute), 5*time.Minute) {
		t.Fatal("a signature does not verify")
	}
	if Verify("whsec_1", "1700000000", sig, body, ts.Add(6*time.Minute), 5*time.Minute) {
		t.Fatal("a request 6 minutes old verifies")
	}
	for _, c := range []struct{ secret, ts, sig, body string }{
		{"whsec_2", "1700000000", sig, string(body)},
		{"whsec_1", "1700000001", sig, string(body)},
		{"whsec_1", "1700000000", sig, `{"id":"y"}`},
		{"whsec_1", "x", sig, string(body)},
		{"whsec_1", "1700000000", "v1=00", string(body)},
	} {
		if Verify(c.secret, c.ts, c.sig, []byte(c.body), ts, 5*time.Minute) {
			t.Fatalf("verified %+v", c)
		}
	}
}

// recorder is an endpoint that records the events it took, answering
// with status(attempt of that id) (nil: 204).
type recorder struct {
	mu     sync.Mutex
	got    []Event
	tries  map[string]int
	status func(ev Event, attempt int) int
	block  chan struct{} // if set, every request waits for it to close
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.block != nil {
		<-r.block
	}
	body, _ := io.ReadAll(req.Body)
	var ev Event
	json.Unmarshal(body, &ev)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tries == nil {
		r.tries = map[string]int{}
	}
	r.tries[ev.ID]++
	if r.status != nil {
		if code := r.status(ev, r.tries[ev.ID]); code != 0 {
			w.WriteHeader(code)
			return
		}
	}
	r.got = append(r.got, ev)
	w.WriteHeader(http.StatusNoContent)
}

func (r *recorder) seqs() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []uint64
	for _, ev := range r.got {
		s = append(s, ev.Seq)
	}
	return s
}

func newDispatcher(t *testing.T, cfg Config) (*Dispatcher, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Node, cfg.Logger, cfg.Registerer = "n1", slog.New(slog.DiscardHandler), reg
	cfg.AllowPrivate = true // the receivers are on loopback
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, reg
}

func count(t *testing.T, reg *prometheus.Registry, result string) float64 {
	return testutil.MetricSeries(t, reg, "pushring_webhook_events_total")[`pushring_webhook_events_total{result="`+result+`"}`]
}

// TestOrderAndRetry: events reach an endpoint in emission order; one
// answered 500 twice is taken on its third attempt, before the events
// after it; one that fails every attempt is dropped and counted, and the
// next goes on.
func TestOrderAndRetry(t *testing.T) {
	rec := &recorder{status: func(ev Event, attempt int) int {
		switch {
		case ev.Seq == 3 && attempt < 3:
			return 500 // twice, then taken
		case ev.Seq == 6:
			return 503 // every time
		}
		return 0
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	d, reg := newDispatcher(t, Config{Backoff: time.Millisecond, MaxAttempts: 3})
	d.SetEndpoints([]Endpoint{{ID: "a", URL: srv.URL, Secret: "s"}})
	for i := range 8 {
		d.Emit(SessionConnected, map[string]int{"i": i})
	}
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if got := rec.seqs(); !slices.Equal(got, []uint64{1, 2, 3, 4, 5, 7, 8}) {
			return fmt.Errorf("took %v", got)
		}
		return nil
	})
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if f, dl := count(t, reg, resultFailed), count(t, reg, resultDelivered); f != 1 || dl != 7 {
			return fmt.Errorf("failed %v, delivered %v; want 1, 7", f, dl)
		}
		return nil
	})
}

// TestDeadEndpointNeverBlocks: with an endpoint that never answers, Emit
// returns at once every time; what does not fit its queue is dropped and
// counted, an endpoint beside it gets everything, and removing the dead
// one drops its queue (counted).
func TestDeadEndpointNeverBlocks(t *testing.T) {
	block := make(chan struct{})
	dead := httptest.NewServer(&recorder{block: block})
	defer func() { close(block); dead.Close() }()
	live := &recorder{}
	ok := httptest.NewServer(live)
	defer ok.Close()
	d, reg := newDispatcher(t, Config{QueueLen: 10, Timeout: time.Minute})
	d.SetEndpoints([]Endpoint{{ID: "dead", URL: dead.URL}, {ID: "live", URL: ok.URL, Events: []string{Refusal}}})
	if !d.Wants(Refusal) || !d.Wants(MessageOffline) {
		t.Fatal("Wants misses a type an endpoint takes")
	}
	// In batches the live endpoint keeps up with.
	for b := range 10 {
		for i := range 10 {
			d.Emit(Refusal, b*10+i)
		}
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if n := len(live.seqs()); n != 10*(b+1) {
				return fmt.Errorf("live endpoint took %d of %d", n, 10*(b+1))
			}
			return nil
		})
	}
	// The dead one holds one in flight and 10 queued: 89 or 90 dropped
	// (whether its sender took the first before the second came).
	if n := count(t, reg, resultQueueFull); n < 89 || n > 90 {
		t.Fatalf("queue_full %v, want 89 or 90", n)
	}
	// Full: a hot path asking first builds nothing, and the skip counts.
	if d.Room(MessageOffline) {
		t.Fatal("Room with the only message.offline endpoint's queue full")
	}
	if n := testutil.MetricSeries(t, reg, "pushring_webhook_skipped_total")[`pushring_webhook_skipped_total{type="message.offline"}`]; n != 1 {
		t.Fatalf("skipped %v, want 1", n)
	}
	if !d.Room(Refusal) {
		t.Fatal("no Room for refusals with the live endpoint's queue empty")
	}
	d.SetEndpoints([]Endpoint{{ID: "live", URL: ok.URL, Events: []string{Refusal}}})
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := count(t, reg, resultRemoved); n < 10 {
			return fmt.Errorf("removed %v, want the 10 queued and the one in flight", n)
		}
		return nil
	})
	if d.Wants(MessageOffline) {
		t.Fatal("Wants a type no endpoint takes any more")
	}
}

// TestEndpointsAcrossNodes: an endpoint created through one Endpoints is
// in force on another over the same bucket (another node), and so is its
// removal; bad ones are refused.
func TestEndpointsAcrossNodes(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	open := func() (*Endpoints, *Dispatcher) {
		nc, err := srv.Connect()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "pushring_mqtt", History: 1,
			LimitMarkerTTL: time.Minute, Storage: jetstream.FileStorage})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := newDispatcher(t, Config{})
		e, err := Open(ctx, kv, d)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Close)
		return e, d
	}
	e1, _ := open()
	e2, d2 := open()
	ctx := context.Background()
	ep, err := e1.Create(ctx, "https://hooks.example.com/pushring?x=1", []string{Refusal, MessageOffline, Refusal})
	if err != nil {
		t.Fatal(err)
	}
	if len(ep.Secret) < 32 || !slices.Equal(ep.Events, []string{MessageOffline, Refusal}) {
		t.Fatalf("created %+v", ep)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if l := e2.List(); len(l) != 1 || l[0].ID != ep.ID || l[0].Secret != ep.Secret {
			return fmt.Errorf("the other node has %+v", l)
		}
		if !d2.Wants(Refusal) || d2.Wants(SessionConnected) {
			return errors.New("the other node's dispatcher does not have it")
		}
		return nil
	})
	for _, bad := range []string{"ftp://x", "http://", "http://user:pw@x/", "http://x/#f", "not a url"} {
		if _, err := e1.Create(ctx, bad, nil); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Create(%q): %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := e1.Create(ctx, "http://x", []string{"nope"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown type: %v", err)
	}
	if err := e2.Delete(ctx, ep.ID); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if l := e1.List(); len(l) != 0 {
			return fmt.Errorf("still listed on the first: %+v", l)
		}
		return nil
	})
	if err := e1.Delete(ctx, ep.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// TestDrain: Drain returns once an answering endpoint has every event;
// with one that never answers it returns at its deadline.
func TestDrain(t *testing.T) {
	live := &recorder{}
	ok := httptest.NewServer(live)
	defer ok.Close()
	d, _ := newDispatcher(t, Config{})
	d.SetEndpoints([]Endpoint{{ID: "live", URL: ok.URL}})
	for i := range 50 {
		d.Emit(Refusal, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Drain(ctx); err != nil || len(live.seqs()) != 50 {
		t.Fatalf("Drain: %v with %d of 50 taken", err, len(live.seqs()))
	}
	block := make(chan struct{})
	dead := httptest.NewServer(&recorder{block: block})
	defer func() { close(block); dead.Close() }()
	d.SetEndpoints([]Endpoint{{ID: "dead", URL: dead.URL}})
	d.Emit(Refusal, 0)
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := d.Drain(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a dead endpoint: %v, want its deadline", err)
	}
}

// TestQueueBytes: an endpoint's queue is bounded in bytes too: large
// events past QueueBytes are dropped and counted, whatever their count.
func TestQueueBytes(t *testing.T) {
	block := make(chan struct{})
	dead := httptest.NewServer(&recorder{block: block})
	defer func() { close(block); dead.Close() }()
	d, reg := newDispatcher(t, Config{QueueBytes: 3000, Timeout: time.Minute})
	d.SetEndpoints([]Endpoint{{ID: "dead", URL: dead.URL}})
	big := strings.Repeat("x", 1000)
	for range 10 {
		d.Emit(MessageOffline, big)
	}
	// One in flight (its bytes no longer queued), two queued (~2.2 KB);
	// a third would pass 3,000 bytes.
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := count(t, reg, resultQueueFull); n < 7 || n > 8 {
			return fmt.Errorf("queue_full %v, want 7 or 8", n)
		}
		return nil
	})
}

// TestPrivateRefused: without AllowPrivate, a loopback endpoint gets no
// request: the dial is refused, the attempts count as errors.
func TestPrivateRefused(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	d, err := New(Config{Node: "n1", Logger: slog.New(slog.DiscardHandler), Registerer: reg, Backoff: time.Millisecond, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetEndpoints([]Endpoint{{ID: "lo", URL: srv.URL}})
	d.Emit(Refusal, 1)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := count(t, reg, resultFailed); n != 1 {
			return fmt.Errorf("failed %v, want 1", n)
		}
		return nil
	})
	if n := len(rec.seqs()); n != 0 {
		t.Fatalf("a loopback endpoint got %d requests", n)
	}
	for ip, want := range map[string]bool{"8.8.8.8": true, "2606:4700::1": true, "127.0.0.1": false, "10.1.2.3": false,
		"169.254.169.254": false, "::1": false, "fd00::1": false, "100.64.0.1": false, "0.0.0.0": false, "::ffff:127.0.0.1": false} {
		if got := public(netip.MustParseAddr(ip)); got != want {
			t.Errorf("public(%s) = %v, want %v", ip, got, want)
		}
	}
}

// TestBodyAsIs: an event's body keeps < > & as they are (not six-byte
// escapes) and ends with the JSON object, no newline.
func TestBodyAsIs(t *testing.T) {
	var mu sync.Mutex
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = b
		mu.Unlock()
	}))
	defer srv.Close()
	d, _ := newDispatcher(t, Config{})
	d.SetEndpoints([]Endpoint{{ID: "a", URL: srv.URL}})
	d.Emit(Refusal, map[string]string{"reason": "<b>&"})
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !bytes.Contains(got, []byte(`"<b>&"`)) || bytes.HasSuffix(got, []byte("\n")) {
			return fmt.Errorf("body %q", got)
		}
		return nil
	})
}

// TestRefusalRate: refusal events past RefusalRate (bursts of ten times
// as many) find no Room, counted as skipped; other types are not held.
func TestRefusalRate(t *testing.T) {
	live := &recorder{}
	ok := httptest.NewServer(live)
	defer ok.Close()
	d, reg := newDispatcher(t, Config{RefusalRate: 0.001}) // a burst of 1, then almost nothing
	d.SetEndpoints([]Endpoint{{ID: "a", URL: ok.URL}})
	if !d.Room(Refusal) {
		t.Fatal("no room for the first refusal")
	}
	if d.Room(Refusal) {
		t.Fatal("room for a refusal past the rate")
	}
	if !d.Room(SessionConnected) {
		t.Fatal("the refusal rate held another type")
	}
	if n := testutil.MetricSeries(t, reg, "pushring_webhook_skipped_total")[`pushring_webhook_skipped_total{type="refusal"}`]; n != 1 {
		t.Fatalf("skipped refusals %v, want 1", n)
	}
}
