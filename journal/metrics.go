package journal

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	storedDesc = prometheus.NewDesc("pushring_journal_stored_total",
		"Messages the journal stream acknowledged.", nil, nil)
	storedBytesDesc = prometheus.NewDesc("pushring_journal_stored_bytes_total",
		"Bytes of the records the journal stream acknowledged.", nil, nil)
	storeErrorsDesc = prometheus.NewDesc("pushring_journal_store_errors_total",
		"Messages the journal could not store: timeout (no acknowledgement within the timeout), refused (by the server, or the publish failed), closed (the journal or its connection closed first), lost (unanswered while a later message was stored).",
		[]string{"reason"}, nil)
	replayedDesc = prometheus.NewDesc("pushring_journal_replayed_total",
		"Messages read back from the journal stream by replays.", nil, nil)
	replaysDesc = prometheus.NewDesc("pushring_journal_replays_total",
		"Replays begun (Replay and ReplayAll).", nil, nil)
	badRecordsDesc = prometheus.NewDesc("pushring_journal_bad_records_total",
		"Stored records a replay could not decode and skipped.", nil, nil)
	withdrawnDesc = prometheus.NewDesc("pushring_journal_withdrawn_total",
		"Stored messages withdrawn (deleted, or found gone already) because their publishers were not acknowledged (an earlier message failed to store, a takeover, a shutdown): the publishers send them again.", nil, nil)
	withdrawDroppedDesc = prometheus.NewDesc("pushring_journal_withdraw_dropped_total",
		"Stored messages that should have been withdrawn but stayed (too many waiting, or the journal closed first): a replay may deliver them ahead of earlier messages of their publisher.", nil, nil)
	replayWaitsDesc = prometheus.NewDesc("pushring_journal_replay_waits_total",
		"Young records a replay waited for, to see whether they were withdrawn: the message appended just before to their subject had no result yet when they were appended, and the replay had not delivered it.", nil, nil)
	replayWithdrawnDesc = prometheus.NewDesc("pushring_journal_replay_withdrawn_total",
		"Records a replay read and then found withdrawn, and so did not deliver.", nil, nil)
)

// metrics are the journal's counters: atomics read at scrape time, and
// a histogram of the time from Append to acknowledgement (an Observe is
// a few atomic operations).
type metrics struct {
	created         time.Time
	stored          atomic.Uint64
	storedBytes     atomic.Uint64
	errors          [numReasons]atomic.Uint64
	replayed        atomic.Uint64
	replays         atomic.Uint64
	badRecords      atomic.Uint64
	withdrawn       atomic.Uint64
	withdrawDropped atomic.Uint64
	replayWaits     atomic.Uint64
	replayWithdrawn atomic.Uint64
	latency         prometheus.Histogram
	reg             prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		created: time.Now(),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pushring_journal_store_seconds",
			Help: "Time from Append to the journal stream's acknowledgement, of the messages stored.",
			// From an in-process server's sub-millisecond answer to
			// the 5 s timeout.
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}),
		reg: reg,
	}
	if reg != nil {
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("journal: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) unregister() {
	if m.reg != nil {
		m.reg.Unregister(m)
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{storedDesc, storedBytesDesc, storeErrorsDesc, replayedDesc, replaysDesc, badRecordsDesc, withdrawnDesc, withdrawDroppedDesc, replayWaitsDesc, replayWithdrawnDesc} {
		ch <- d
	}
	m.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ch <- m.counter(storedDesc, &m.stored)
	ch <- m.counter(storedBytesDesc, &m.storedBytes)
	for i, r := range reasonNames {
		ch <- m.counter(storeErrorsDesc, &m.errors[i], r)
	}
	ch <- m.counter(replayedDesc, &m.replayed)
	ch <- m.counter(replaysDesc, &m.replays)
	ch <- m.counter(badRecordsDesc, &m.badRecords)
	ch <- m.counter(withdrawnDesc, &m.withdrawn)
	ch <- m.counter(withdrawDroppedDesc, &m.withdrawDropped)
	ch <- m.counter(replayWaitsDesc, &m.replayWaits)
	ch <- m.counter(replayWithdrawnDesc, &m.replayWithdrawn)
	m.latency.Collect(ch)
}

func (m *metrics) counter(d *prometheus.Desc, n *atomic.Uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetricWithCreatedTimestamp(d, prometheus.CounterValue, float64(n.Load()), m.created, labels...)
}
