package router

import (
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// BenchmarkDeliverGroup1000 delivers one group message to 1,000 local
// connected sessions (real sockets, each drained by a reader that acks
// QoS 1) and reports, per delivered message: the wall time until every
// client has read every message (ns/delivery, clients included, on
// however many cores there are), the time spent in Deliver calls, and
// the allocations of the whole process. Each runs on both transports
// (epoll event loop, goroutines per connection), side by side, and on
// the event loop with MQTT 5.0 clients receiving a message that carries
// an expiry and a user property.
func BenchmarkDeliverGroup1000(b *testing.B) {
	for _, model := range []string{"epoll", "goroutines", "epoll-v5"} {
		for _, qos := range []byte{0, 1} {
			b.Run(fmt.Sprintf("%s/qos%d", model, qos), func(b *testing.B) {
				benchDeliver(b, 1000, qos, model == "goroutines", model == "epoll-v5")
			})
		}
	}
}

func benchDeliver(b *testing.B, n int, qos byte, goroutines, v5 bool) {
	// Default window (32); a queue deep enough that nothing is dropped
	// while QoS 1 acks catch up.
	e := newEnv(b, func(c *Config) {
		c.MaxQueued = 1 << 20
		c.GoroutinePerConn = goroutines
	})
	ids := make([]string, n)
	var wg sync.WaitGroup
	var received atomic.Int64
	for i := range ids {
		id := fmt.Sprintf("u%d", i)
		ids[i] = id
		e.auth.add(id, "tok-"+id)
		e.acl.setMember("bg", id, true)
		c, err := mqttc.Dial(e.addr, mqttc.Options{ClientID: "bench", Username: id, Password: "tok-" + id, MQTT5: v5})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Subscribe("/private/"+id+"/#", 1, 5*time.Second); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Run(func(_, _ []byte) { received.Add(1) })
		}()
	}
	payload := make([]byte, 64)
	msgs := make([]message.Message, b.N)
	for i := range msgs {
		msgs[i] = message.Message{ID: uint64(i + 1), Kind: message.Group, To: "bg", QoS: qos, Payload: payload}
		if v5 {
			msgs[i].Expires = time.Now().Add(time.Hour).UnixMilli()
			msgs[i].Props = []byte{packet.PropUser, 0, 1, 'k', 0, 1, 'v'}
		}
	}
	received.Store(0)
	want := int64(b.N) * int64(n)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	start := time.Now()
	for i := range msgs {
		e.srv.Deliver(&msgs[i], ids)
	}
	deliverTime := time.Since(start)
	// wait until every client has read every message
	for received.Load() < want {
		// Part of the measured time: a short poll adds little to it, and
		// sleeping leaves the cores to the clients being measured.
		time.Sleep(100 * time.Microsecond)
		if time.Since(start) > 60*time.Second {
			b.Fatalf("%d of %d received: %+v", received.Load(), want, e.srv.Stats())
		}
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	total := float64(b.N) * float64(n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/delivery")
	b.ReportMetric(float64(deliverTime.Nanoseconds())/total, "deliver-call-ns/delivery")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/total, "allocs/delivery")
	b.ReportMetric(0, "ns/op")
	if d := e.srv.Stats().QueueDropped; d != 0 {
		b.Fatalf("%d dropped", d)
	}
	e.srv.Close()
	wg.Wait()
}

// discardTransport is a transport whose socket is infinitely fast: what is
// appended is dropped at endWrite.
type discardTransport struct{ fakeTransport }

func (d *discardTransport) endWrite(b []byte) { d.out = b[:0]; d.mu.Unlock() }

// BenchmarkDeliverGroupCPU is the CPU cost of Deliver alone: one group
// message to 1,000 bound sessions whose transports discard the bytes.
func BenchmarkDeliverGroupCPU(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			acl := newMemACL()
			srv, err := New(cfg, newMemAuth(), acl, &loopFwd{acl: acl}, message.NewIDSource("b"))
			if err != nil {
				b.Fatal(err)
			}
			const n = 1000
			ids := make([]string, n)
			conns := make([]*mqttConn, n)
			for i := range ids {
				ids[i] = fmt.Sprintf("u%d", i)
				acl.setMember("bg", ids[i], true)
				c := newMQTTConn(srv, &discardTransport{})
				c.id, c.clientID, c.clean = Identity{ID: ids[i]}, "c", true
				srv.bind(c, func(b []byte, _ bool) []byte { return b })
				c.sess.Load().subscribe(c, "/private/"+ids[i]+"/#", 1, subTarget{})
				conns[i] = c
			}
			payload := make([]byte, 64)
			msgs := make([]message.Message, b.N)
			for i := range msgs {
				msgs[i] = message.Message{ID: uint64(i + 1), Kind: message.Group, To: "bg", QoS: qos, Payload: payload}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range msgs {
				srv.Deliver(&msgs[i], ids)
				if qos == 1 {
					// ack at once so the window never fills
					for _, c := range conns {
						s := c.sess.Load()
						s.ack(c, s.inflight[0].pid)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}
