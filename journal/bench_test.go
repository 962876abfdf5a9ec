package journal

import (
	"context"
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
	rec := AppendRecord(nil, &message.Message{Kind: message.Direct, From: "dev", To: "alice", QoS: 1, Payload: payload})
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
