package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// dropLink is the client's side of an in-process connection to the NATS
// server that loses, on the way to the server, the first publish whose
// payload holds marker, as a connection that drops (or a stream leader
// that dies) with a message in flight does. Everything else passes
// unchanged.
type dropLink struct {
	net.Conn
	marker []byte

	mu      sync.Mutex
	pending []byte // client bytes not yet forwarded: an incomplete frame
	dropped bool
}

type dropProvider struct {
	srv    nats.InProcessConnProvider
	marker []byte
}

func (p dropProvider) InProcessConn() (net.Conn, error) {
	c, err := p.srv.InProcessConn()
	if err != nil {
		return nil, err
	}
	return &dropLink{Conn: c, marker: p.marker}, nil
}

// Write forwards every complete protocol line or frame, except the one
// publish it drops.
func (l *dropLink) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, b...)
	var out []byte
	for {
		eol := bytes.Index(l.pending, []byte("\r\n"))
		if eol < 0 {
			break
		}
		line := l.pending[:eol]
		size := 0
		if f := bytes.Fields(line); len(f) >= 3 && (bytes.Equal(f[0], []byte("PUB")) || bytes.Equal(f[0], []byte("HPUB"))) {
			n, err := strconv.Atoi(string(f[len(f)-1]))
			if err != nil {
				return 0, err
			}
			size = n + 2 // payload and its CRLF
		}
		end := eol + 2 + size
		if end > len(l.pending) {
			break // the frame's payload is still to come
		}
		frame := l.pending[:end]
		if size > 0 && !l.dropped && bytes.Contains(frame[eol+2:], l.marker) {
			l.dropped = true
		} else {
			out = append(out, frame...)
		}
		l.pending = l.pending[end:]
	}
	if len(out) > 0 {
		if _, err := l.Conn.Write(out); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// TestLostWhenOvertaken: a publish the server never got is reported lost
// once a later one is stored and overtakeGrace passed, long before the
// timeout; the later one is reported after it, stored.
func TestLostWhenOvertaken(t *testing.T) {
	n := startNATS(t)
	const timeout = 20 * time.Second
	reg := prometheus.NewRegistry()
	j, _ := n.open(t, Config{Timeout: timeout, Registerer: reg}, nats.InProcessServer(dropProvider{srv: n.srv.Server, marker: []byte("LOSE-ME")}))
	appendAll(t, j, direct(1, "a")) // the stream answers

	r := &recorder{}
	lost := direct(2, "a")
	lost.Payload = []byte("LOSE-ME")
	start := time.Now()
	if err := j.Append(lost, r, 2); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(direct(3, "a"), r, 3); err != nil {
		t.Fatal(err)
	}
	got := r.wait(t, 2, timeout/2)
	took := time.Since(start)
	if !errors.Is(got[0].err, ErrLost) || got[0].tag != 2 {
		t.Fatalf("first result %+v, want tag 2 lost", got[0])
	}
	if got[1].err != nil || got[1].tag != 3 || got[1].seq != 2 {
		t.Fatalf("second result %+v, want tag 3 stored at 2", got[1])
	}
	if took < overtakeGrace {
		t.Fatalf("reported lost after %v, before the grace of %v", took, overtakeGrace)
	}
	t.Logf("lost reported after %v (timeout %v)", took.Round(time.Millisecond), timeout)
	if s := counters(t, reg); s[`pushring_journal_store_errors_total{reason="lost"}`] != 1 {
		t.Fatalf("store_errors_total{lost} = %v", s[`pushring_journal_store_errors_total{reason="lost"}`])
	}
}

// TestReplaySkipsWithdrawn: a publish lost on the way, and two later
// messages to its subject that the stream stored. A replay that reads
// those before they are withdrawn waits, finds them gone, and does not
// deliver them: their publisher sends them again after the lost one.
// Messages whose prev the replay delivered pass without a wait.
func TestReplaySkipsWithdrawn(t *testing.T) {
	n := startNATS(t)
	const timeout = 20 * time.Second
	j, _ := n.open(t, Config{Timeout: timeout}, nats.InProcessServer(dropProvider{srv: n.srv.Server, marker: []byte("LOSE-ME")}))
	appendAll(t, j, direct(1, "a"), direct(2, "a"), direct(3, "a")) // seqs 1-3

	r := &recorder{}
	lost := direct(4, "a")
	lost.Payload = []byte("LOSE-ME")
	for _, m := range []*message.Message{lost, direct(5, "a"), direct(6, "a")} {
		if err := j.Append(m, r, m.ID); err != nil {
			t.Fatal(err)
		}
	}
	// The replay starts while 4 has no result: 5 and 6 are stored.
	testutil.CheckFor(t, timeout/2, time.Millisecond, func() error {
		if _, last, err := j.Bounds(context.Background()); err != nil || last != 5 {
			return fmt.Errorf("last %d, %v", last, err)
		}
		return nil
	})
	type read struct {
		ids []uint64
		err error
	}
	done := make(chan read, 1)
	go func() {
		var ids []uint64
		_, _, err := j.Replay(context.Background(), 1, "a", nil, false, func(_ uint64, _ time.Time, m *message.Message) error {
			ids = append(ids, m.ID)
			return nil
		})
		done <- read{ids, err}
	}()
	// As the fanout does once 4 is reported lost: withdraw what its
	// connection stored after it.
	got := r.wait(t, 3, timeout/2)
	if !errors.Is(got[0].err, ErrLost) || got[1].seq != 4 || got[2].seq != 5 {
		t.Fatalf("results %+v: want 4 lost, 5 and 6 stored at 4 and 5", got)
	}
	testutil.CheckFor(t, timeout/2, time.Millisecond, func() error {
		if w := j.m.replayWaits.Load(); w == 0 {
			return errors.New("the replay has not met 5 yet")
		}
		return nil
	})
	j.Withdraw(4)
	j.Withdraw(5)
	res := <-done
	if res.err != nil || !slices.Equal(res.ids, []uint64{1, 2, 3}) {
		t.Fatalf("replayed %v, %v; want 1 2 3", res.ids, res.err)
	}
	if w := j.m.replayWithdrawn.Load(); w != 2 {
		t.Fatalf("replay_withdrawn %d, want 2", w)
	}
	if w := j.m.replayWaits.Load(); w != 1 {
		t.Fatalf("replay_waits %d, want 1 (6 is old enough once 5 was waited for)", w)
	}
}
