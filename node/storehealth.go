package node

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/fanout"
	"github.com/pushring/pushring/journal"
)

// Store health, for /readyz: a node whose store cannot be written takes
// QoS 1 publishes only to refuse them (the publisher's connection is
// closed without PUBACK, HTTP answers 503), so a load balancer should
// send clients elsewhere.
//
// A request to /readyz never waits for JetStream. A goroutine checks the
// store instead: one stream info request for the journal and one for the
// MQTT session records' bucket, each bounded by storeCheckTimeout, every
// storeCheckEvery, and every second while the journal's answers are
// failing (fanout.StoreFailing), so a failure seen by publishers is
// confirmed or cleared within about a second. The result stands until
// the next check. Stream info is answered by the stream's leader, so a
// stream without one (its servers down, no quorum) fails the check as
// appends to it would.
//
// What this does not see: a store that answers stream info but times out
// appends (a full or very slow disk). Those failures are counted
// (pushring_journal_store_errors_total) and logged; readiness does not
// follow them, since a node whose failing publishers were all
// disconnected appends nothing more, and would stay unready once the
// store came back.
const (
	storeCheckEvery   = 5 * time.Second
	storeCheckTimeout = 2 * time.Second
)

// storeHealth is the result of the last check of the store.
type storeHealth struct {
	err     atomic.Pointer[error] // nil: reachable at the last check
	checked atomic.Int64          // unix ns of the last check's end
	fails   atomic.Uint64         // checks that failed
}

func (h *storeHealth) get() error {
	if p := h.err.Load(); p != nil {
		return *p
	}
	return nil
}

// checkStore checks the journal's stream and the session records'
// bucket: nil when both answered within storeCheckTimeout.
func checkStore(ctx context.Context, j *journal.Journal, js jetstream.JetStream, mqttBucket string) error {
	ctx, cancel := context.WithTimeout(ctx, storeCheckTimeout)
	defer cancel()
	if _, _, err := j.Bounds(ctx); err != nil {
		return err
	}
	if _, err := js.Stream(ctx, "KV_"+mqttBucket); err != nil {
		return fmt.Errorf("session records (bucket %s): %w", mqttBucket, err)
	}
	return nil
}

// watchStore runs the checks until ctx is done. It logs each change
// (unreachable, reachable again) once, not every failed check.
func (n *Node) watchStore(ctx context.Context, check func(context.Context) error, fan *fanout.Fanout) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		if fan.StoreFailing().IsZero() && now.Sub(last) < storeCheckEvery {
			continue
		}
		last = now
		err := check(ctx)
		if ctx.Err() != nil {
			return
		}
		was := n.store.get()
		n.store.checked.Store(time.Now().UnixNano())
		if err != nil {
			n.store.fails.Add(1)
			n.store.err.Store(&err)
			if was == nil {
				n.log.Error("store unreachable: /readyz fails until it is back; QoS 1 publishes are refused meanwhile", "err", err)
			}
			continue
		}
		fan.StoreReachable(now)
		n.store.err.Store(nil)
		if was != nil {
			n.log.Info("store reachable again", "was", was)
		}
	}
}

// storeReady is ready's part for the store.
func (n *Node) storeReady() error {
	if err := n.store.get(); err != nil {
		return fmt.Errorf("store unreachable: %w", err)
	}
	return nil
}

// storeMetrics registers the store check's gauge and counter.
func (n *Node) storeMetrics() error {
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushring_store_reachable",
		Help: "1 while the last check of the store (the journal's stream and the session records' bucket) succeeded, else 0; /readyz fails meanwhile.",
	}, func() float64 {
		if n.store.get() != nil {
			return 0
		}
		return 1
	})
	fails := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "pushring_store_check_failures_total",
		Help: "Checks of the store (journal stream and session records bucket) that failed or timed out.",
	}, func() float64 { return float64(n.store.fails.Load()) })
	for _, c := range []prometheus.Collector{up, fails} {
		if err := n.registry.Register(c); err != nil {
			return err
		}
	}
	return nil
}
