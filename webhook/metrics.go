package webhook

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/lograte"
)

// Results of an event, the values of pushring_webhook_events_total.
const (
	resultDelivered = "delivered"  // an endpoint answered 2xx
	resultQueueFull = "queue_full" // dropped: the endpoint's queue was full
	resultFailed    = "failed"     // dropped: every attempt failed
	resultRemoved   = "removed"    // dropped: the endpoint was removed or changed, or the node stopped
)

type metrics struct {
	events   *prometheus.CounterVec
	attempts *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	failLog  lograte.Limiter
}

func (m *metrics) register(reg prometheus.Registerer, d *Dispatcher) error {
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushring_webhook_events_total",
		Help: "Webhook events, once per endpoint that takes them, by what became of them: delivered, or dropped (queue_full, failed, removed).",
	}, []string{"result"})
	m.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushring_webhook_attempts_total",
		Help: "Webhook POSTs by result: ok (2xx), status (another status), error (no answer).",
	}, []string{"result"})
	m.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushring_webhook_skipped_total",
		Help: "Occasions for webhook events not worked out because every endpoint taking their type had a full queue, by type (message.offline: one per message).",
	}, []string{"type"})
	for _, t := range Types {
		m.skipped.WithLabelValues(t)
	}
	for _, r := range []string{resultDelivered, resultQueueFull, resultFailed, resultRemoved} {
		m.events.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "status", "error"} {
		m.attempts.WithLabelValues(r)
	}
	if reg == nil {
		return nil
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushring_webhook_queued",
		Help: "Webhook events waiting to be sent, all endpoints together.",
	}, func() float64 { return float64(d.queued()) })
	for _, c := range []prometheus.Collector{m.events, m.attempts, m.skipped, queued} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
