package journal

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
)

// counter is an Appended that counts.
type counter struct {
	n, failed atomic.Int64
}

func (c *counter) Appended(_, _ uint64, err error) {
	if err != nil {
		c.failed.Add(1)
	}
	c.n.Add(1)
}

// BenchmarkAppend: Appends of a 64-byte direct message to a few
// destinations, through to their Appended calls, on the embedded server.
func BenchmarkAppend(b *testing.B) {
	n := startNATS(b)
	j, _ := n.open(b, Config{})
	c := &counter{}
	m := &message.Message{Kind: message.Direct, From: "dev", QoS: 1, Payload: make([]byte, 64)}
	tos := []string{"alice", "bob", "carol.x", "dave"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m.ID = uint64(i)
		m.To = tos[i%len(tos)]
		if err := j.Append(m, c, uint64(i)); err != nil {
			b.Fatal(err)
		}
	}
	testutil.CheckFor(b, 30*time.Second, time.Millisecond, func() error {
		if c.n.Load() < int64(b.N) {
			return context.DeadlineExceeded
		}
		return nil
	})
	if c.failed.Load() != 0 {
		b.Fatalf("%d failed", c.failed.Load())
	}
}

// windowed is a publisher's Appended: each result frees one place of
// its window.
type windowed chan error

func (w windowed) Appended(_, _ uint64, err error) { w <- err }

// BenchmarkAppendWindow: closed-loop publishers, each keeping a window
// of Appends in flight and sending the next one when a result comes: 1 ×
// 1 gives the round trip of one store, 4 × 16 the window of the
// benchmark suite's direct QoS 1 entry (4 senders, 16 in flight each),
// whose PUBACKs wait for these results. Reports messages per second and
// the mean time from Append to result (window / throughput).
func BenchmarkAppendWindow(b *testing.B) {
	for _, bc := range []struct{ publishers, window int }{{1, 1}, {4, 16}} {
		b.Run(fmt.Sprintf("publishers=%d/window=%d", bc.publishers, bc.window), func(b *testing.B) {
			n := startNATS(b)
			j, _ := n.open(b, Config{})
			errs := make(chan error, bc.publishers)
			b.ResetTimer()
			for p := range bc.publishers {
				go func() {
					w := make(windowed, bc.window)
					m := &message.Message{Kind: message.Direct, From: "dev", To: fmt.Sprintf("p%d", p), QoS: 1, Payload: make([]byte, 64)}
					each := b.N / bc.publishers
					send := func(i int) error {
						m.ID = uint64(p*each + i + 1)
						return j.Append(m, w, uint64(i))
					}
					sent := 0
					for ; sent < min(bc.window, each); sent++ {
						if err := send(sent); err != nil {
							errs <- err
							return
						}
					}
					for range each {
						if err := <-w; err != nil {
							errs <- err
							return
						}
						if sent < each {
							if err := send(sent); err != nil {
								errs <- err
								return
							}
							sent++
						}
					}
					errs <- nil
				}()
			}
			for range bc.publishers {
				if err := <-errs; err != nil {
					b.Fatal(err)
				}
			}
			el := b.Elapsed()
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			b.ReportMetric(float64(el.Microseconds())*float64(bc.publishers*bc.window)/float64(b.N), "µs/store")
		})
	}
}

// BenchmarkPublishMsgAsync is the same traffic through nats.go's
// asynchronous JetStream publish, its futures waited for in order by one
// goroutine (what Append's ordering needs): the alternative Append was
// measured against.
func BenchmarkPublishMsgAsync(b *testing.B) {
	n := startNATS(b)
	j, nc := n.open(b, Config{})
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	futures := make(chan jetstream.PubAckFuture, 4096)
	done := make(chan int)
	go func() {
		failed := 0
		for f := range futures {
			select {
			case <-f.Ok():
			case <-f.Err():
				failed++
			}
		}
		done <- failed
	}()
	payload := make([]byte, 64)
	tos := []string{"alice", "bob", "carol=x", "dave"}
	subjects := make([]string, len(tos))
	for i, to := range tos {
		subjects[i] = j.prefix + "n1.d." + to
	}
	rec := AppendRecord(nil, &message.Message{Kind: message.Direct, From: "dev", To: "alice", QoS: 1, Payload: payload}, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: subjects[i%len(subjects)], Data: rec})
		if err != nil {
			b.Fatal(err)
		}
		futures <- f
	}
	close(futures)
	if failed := <-done; failed != 0 {
		b.Fatalf("%d failed", failed)
	}
}

// BenchmarkReplay: one replay of a principal's backlog, its direct
// messages and two groups' (half of a 20,000-message stream), and of a
// principal in 100 groups (past maxGroupFilters: every group message is
// read and the others skipped).
func BenchmarkReplay(b *testing.B) {
	n := startNATS(b)
	j, _ := n.open(b, Config{})
	var msgs []*message.Message
	for i := range 20000 {
		m := &message.Message{ID: uint64(i + 1), Kind: message.Direct, From: "dev", QoS: 1, Payload: make([]byte, 64)}
		switch i % 4 {
		case 0:
			m.To = "alice"
		case 1:
			m.To = "bob"
		case 2:
			m.Kind, m.To = message.Group, "g.1"
		case 3:
			m.Kind, m.To = message.Group, "g."+string(rune('a'+i%7))
		}
		msgs = append(msgs, m)
	}
	appendAll(b, j, msgs...)
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("x.%d", i))
	}
	many = append(many, "g.1")
	// want counts the messages of alice and groups.
	want := func(groups []string) (n int) {
		for _, m := range msgs {
			if m.Kind == message.Direct && m.To == "alice" || m.Kind == message.Group && slices.Contains(groups, m.To) {
				n++
			}
		}
		return n
	}
	for _, bc := range []struct {
		name   string
		groups []string
	}{
		{"groups=2", []string{"g.1", "g.c"}},
		{"groups=101", many},
	} {
		want := want(bc.groups)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			total := 0
			for range b.N {
				got := 0
				_, _, err := j.Replay(context.Background(), 0, "alice", bc.groups, false, func(uint64, time.Time, *message.Message) error {
					got++
					return nil
				})
				if err != nil || got != want {
					b.Fatalf("%d replayed, want %d: %v", got, want, err)
				}
				total += got
			}
			b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
