package retained

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Store's pushring_retained_* series.
type metrics struct {
	stored, cleared, full, failed, corrupt prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, s *Store) (*metrics, error) {
	writes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushring_retained_writes_total",
		Help: "Retained message writes by result: stored, cleared (an empty payload), full (the bucket had no room), failed (timeout, server error, too many in flight).",
	}, []string{"result"})
	m := &metrics{
		stored:  writes.WithLabelValues("stored"),
		cleared: writes.WithLabelValues("cleared"),
		full:    writes.WithLabelValues("full"),
		failed:  writes.WithLabelValues("failed"),
	}
	corrupt := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushring_retained_corrupt_total",
		Help: "Retained message records this node could not read and skipped.",
	})
	m.corrupt = corrupt
	count := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushring_retained_messages",
		Help: "Groups with a retained message, as this node's copy of the bucket holds them.",
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
		Help: "Payload and property bytes of the retained messages this node holds in memory.",
	}, func() float64 {
		s.mu.RLock()
		defer s.mu.RUnlock()
		return float64(s.bytes)
	})
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{writes, corrupt, count, bytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
