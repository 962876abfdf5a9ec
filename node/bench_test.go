package node

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/mqttc"
)

// BenchmarkGroupFanout measures the whole single-node path of one group
// message: fanout resolves the group, sends one envelope over the embedded
// NATS, the router encodes and writes a PUBLISH into every member's
// connection. Members are raw-socket MQTT clients that only count PUBLISH
// packets, so the node, not the clients, is what is measured. It reports
// deliveries per second and heap allocations per delivered message
// (process-wide, so the readers' share is included; they allocate nothing
// per packet).
func BenchmarkGroupFanout(b *testing.B) {
	for _, members := range []int{100, 1000} {
		for _, qos := range []byte{0, 1} {
			b.Run(fmt.Sprintf("members=%d/qos=%d", members, qos), func(b *testing.B) {
				benchGroupFanout(b, members, qos)
			})
		}
	}
}

func benchGroupFanout(b *testing.B, members int, qos byte) {
	n := startNode(b, b.TempDir(), unlimitedPublish)
	defer n.Close()
	c := newAPI(b, n)
	admin := "Bearer " + n.AdminKey()
	c.must(201, "POST", "/v1/groups", admin, map[string]any{"id": "big"}, nil)
	var delivered atomic.Int64
	for i := range members {
		id := fmt.Sprintf("m%04d", i)
		var dev struct{ Key string }
		c.must(201, "POST", "/v1/devices", admin, map[string]any{"id": id}, &dev)
		c.must(204, "PUT", "/v1/groups/big/members/"+id, admin, nil, nil)
		rawSubscriber(b, n.MQTTAddr(), id, dev.Key, "/private/"+id+"/#", qos, func(_, _ []byte) { delivered.Add(1) })
	}
	payload := make([]byte, 64)
	ctx := context.Background()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		m := &message.Message{ID: uint64(i + 1), Kind: message.Group, From: "bench", To: "big", QoS: qos, Payload: payload}
		if err := n.fan.Forward(ctx, m); err != nil {
			b.Fatal(err)
		}
		// Keep at most a few messages in flight so QoS 1 windows and
		// queues never overflow: this measures the path, not the drops.
		for int64(i+1-4)*int64(members) > delivered.Load() {
			runtime.Gosched()
		}
	}
	want := int64(b.N) * int64(members)
	deadline := time.Now().Add(30 * time.Second)
	for delivered.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d", delivered.Load(), want)
		}
		// Part of the measured time: a short poll adds little to it, and
		// sleeping leaves the cores to the delivery being measured.
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(want)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(want), "allocs/delivery")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(want), "B/delivery")
}

// BenchmarkDirect measures direct messages through one node end to end:
// 4 publishers (the harness's lean client, a QoS 1 window of 16 each)
// send b.N messages round robin to 100 receivers (raw clients that count
// and acknowledge). At QoS 1 a PUBACK waits for the delivering node's
// confirmation (fanout/ack.go), so this is the flow-controlled path. It
// reports messages per second and heap allocations per message
// (process-wide: the clients' share is included).
func BenchmarkDirect(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos=%d", qos), func(b *testing.B) { benchDirect(b, qos) })
	}
}

func benchDirect(b *testing.B, qos byte) {
	const receivers, publishers = 100, 4
	n := startNode(b, b.TempDir(), unlimitedPublish)
	defer n.Close()
	c := newAPI(b, n)
	admin := "Bearer " + n.AdminKey()
	c.must(201, "POST", "/v1/groups", admin, map[string]any{"id": "all"}, nil)
	device := func(id string) string {
		var dev struct{ Key string }
		c.must(201, "POST", "/v1/devices", admin, map[string]any{"id": id}, &dev)
		c.must(204, "PUT", "/v1/groups/all/members/"+id, admin, nil, nil)
		return dev.Key
	}
	var delivered atomic.Int64
	for i := range receivers {
		id := fmt.Sprintf("r%03d", i)
		rawSubscriber(b, n.MQTTAddr(), id, device(id), "/private/"+id+"/#", qos, func(_, _ []byte) { delivered.Add(1) })
	}
	pubs := make([]*mqttc.Conn, publishers)
	for i := range pubs {
		id := fmt.Sprintf("p%d", i)
		p, err := mqttc.Dial(n.MQTTAddr(), mqttc.Options{ClientID: id, Username: id, Password: device(id), Inflight: 16})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		go p.Run(nil)
		pubs[i] = p
	}
	topics := make([]string, receivers)
	for i := range topics {
		topics[i] = fmt.Sprintf("/private/r%03d", i)
	}
	payload := make([]byte, 64)
	done := make(chan struct{})
	defer close(done)
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	cpu0 := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	for pi, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := pi; i < b.N; i += publishers {
				if !p.Publish(topics[i%receivers], qos, payload, done) {
					return
				}
				if qos == 0 {
					// No window at QoS 0: stay a little ahead of delivery
					// so that this measures the path, not drops.
					for int64(i-512) > delivered.Load() {
						p.Flush()
						runtime.Gosched()
					}
				}
			}
			p.Flush()
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for delivered.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d", delivered.Load(), b.N)
		}
		// Part of the measured time: a short poll adds little to it, and
		// sleeping leaves the cores to the delivery being measured.
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	// CPU time per message (the process's: node and clients) moves far
	// less than msgs/s when other processes share the cores.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-us/msg")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/msg")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "B/msg")
}

// unlimitedPublish turns the per-principal publish limits off: the
// benchmarks publish from one principal as fast as they can, which the
// limits (1,000 messages a second by default) would measure instead.
func unlimitedPublish(c *Config) { c.Router.PublishRate, c.Router.PublishByteRate = -1, -1 }
