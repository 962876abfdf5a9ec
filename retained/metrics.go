package retained

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Store's pushring_retained_* series.
type metrics struct {
	writes                                 *prometheus.CounterVec
	stored, cleared, full, failed, corrupt prometheus.Counter
}

func newMetrics() *metrics {
	writes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushring_retained_writes_total",
		Help: "Retained message writes by result: stored, cleared (an empty payload), full (no room), failed (timeout, server error, too many in flight).",
	}, []string{"result"})
	corrupt := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushring_retained_corrupt_total",
		Help: "Retained message records this node could not read and skipped.",
	})
	return &metrics{
		writes:  writes,
		stored:  writes.WithLabelValues("stored"),
		cleared: writes.WithLabelValues("cleared"),
		full:    writes.WithLabelValues("full"),
		failed:  writes.WithLabelValues("failed"),
		corrupt: corrupt,
	}
}

// register registers the series with reg (nil: none), the gauges reading
// s's copy.
func (m *metrics) register(reg prometheus.Registerer, s *Store) error {
	if reg == nil {
		return nil
	}
	count := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushring_retained_messages",
		Help: "Groups with a retained message, as this node's copy holds them.",
	}, func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		n := 0
		for _, e := range s.cache {
			if e.m != nil {
				n++
			}
		}
		return float64(n)
	})
	bytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushring_retained_bytes",
		Help: "Payload and property bytes of the retained messages this node holds in memory (bounded by --retained-max-bytes).",
	}, func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(s.bytes)
	})
	for _, c := range []prometheus.Collector{m.writes, m.corrupt, count, bytes} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
