package router

import (
	"sync/atomic"

	"github.com/pushring/pushring/message"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats is a snapshot of the server's counters (for tests and debugging;
// Prometheus gets the same numbers).
type Stats struct {
	Connections     int64  // clients connected now (CONNACK 0 sent, not yet closed)
	Sessions        int64  // sessions held now, connected or persistent offline
	ConnectsOK      uint64 // CONNACK 0 sent
	ConnectsRefused uint64 // CONNACK != 0 sent, or auth-topic login failed
	MessagesIn      uint64 // PUBLISHes (and wills) accepted and forwarded
	Deliveries      uint64 // PUBLISHes written to clients (first sends and resends)
	Refusals        uint64 // refused publishes, subscriptions, wills, replays, connections over the rate or closed for bad input
	QueueDropped    uint64 // messages dropped by a full queue or a slow consumer
	Panics          uint64 // recovered panics (each closed one connection)
	SlowSessions    uint64 // backlogged sessions that stopped holding QoS 1 publishers (hold.go)
}

// Connect results, the values of pushring_mqtt_connects_total{result}.
const (
	resultAccepted       = "accepted"
	resultBadProtocol    = "bad_protocol"
	resultIDRejected     = "id_rejected"
	resultUnavailable    = "unavailable"
	resultBadCredentials = "bad_credentials"
	resultNotAuthorized  = "not_authorized"
	resultAuthTopicFail  = "auth_topic_failed"
)

type metrics struct {
	connections  prometheus.Gauge
	connects     *prometheus.CounterVec
	messagesIn   *prometheus.CounterVec
	inGroup      prometheus.Counter
	inDirect     prometheus.Counter
	deliveries   [2]prometheus.Counter // by QoS
	refusals     *prometheus.CounterVec
	queueDropped prometheus.Counter
	panics       prometheus.Counter
	slow         prometheus.Counter

	// plain counters behind Stats
	nConnections atomic.Int64
	nSessions    atomic.Int64
	nConnectsOK  atomic.Uint64
	nRefusedConn atomic.Uint64
	nMessagesIn  atomic.Uint64
	nDeliveries  atomic.Uint64
	nRefusals    atomic.Uint64
	nDropped     atomic.Uint64
	nPanics      atomic.Uint64
	nSlow        atomic.Uint64
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushring_mqtt_connections",
			Help: "MQTT clients connected to this node.",
		}),
		connects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushring_mqtt_connects_total",
			Help: "MQTT connection attempts by result.",
		}, []string{"result"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushring_messages_in_total",
			Help: "Messages accepted from publishers.",
		}, []string{"proto", "kind"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushring_mqtt_refusals_total",
			Help: "Publishes, subscriptions, wills and deliveries refused by the ACL or limits, and connections closed for bad input.",
		}, []string{"reason"}),
		queueDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushring_queue_dropped_total",
			Help: "Messages dropped from a full session queue or for a slow consumer.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushring_mqtt_panics_total",
			Help: "Panics recovered in connection goroutines.",
		}),
		slow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pushring_mqtt_slow_sessions_total",
			Help: "Times a session backlogged for over a second stopped holding the acknowledgements of QoS 1 publishers.",
		}),
	}
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushring_deliveries_total",
		Help: "PUBLISH packets written to MQTT clients, by QoS.",
	}, []string{"qos"})
	m.deliveries[0] = deliveries.WithLabelValues("0")
	m.deliveries[1] = deliveries.WithLabelValues("1")
	for _, r := range []string{resultAccepted, resultBadProtocol, resultIDRejected,
		resultUnavailable, resultBadCredentials, resultNotAuthorized, resultAuthTopicFail} {
		m.connects.WithLabelValues(r)
	}
	for _, r := range allReasons {
		m.refusals.WithLabelValues(r)
	}
	m.inGroup = m.messagesIn.WithLabelValues("mqtt", "group")
	m.inDirect = m.messagesIn.WithLabelValues("mqtt", "direct")
	if reg != nil {
		reg.MustRegister(m.connections, m.connects, m.messagesIn, deliveries,
			m.refusals, m.queueDropped, m.panics, m.slow)
	}
	return m
}

func (m *metrics) connect(result string) {
	m.connects.WithLabelValues(result).Inc()
	if result == resultAccepted {
		m.nConnectsOK.Add(1)
	} else {
		m.nRefusedConn.Add(1)
	}
}

func (m *metrics) refusal(reason string) {
	m.refusals.WithLabelValues(reason).Inc()
	m.nRefusals.Add(1)
}

func (m *metrics) messageIn(kind message.Kind) {
	if kind == message.Group {
		m.inGroup.Inc()
	} else {
		m.inDirect.Inc()
	}
	m.nMessagesIn.Add(1)
}

func (m *metrics) delivered(qos byte) {
	m.deliveries[qos&1].Inc()
	m.nDeliveries.Add(1)
}

func (m *metrics) dropped() {
	m.queueDropped.Inc()
	m.nDropped.Add(1)
}

func (m *metrics) slowSession() {
	m.slow.Inc()
	m.nSlow.Add(1)
}

func (m *metrics) connUp() {
	m.connections.Inc()
	m.nConnections.Add(1)
}

func (m *metrics) connDown() {
	m.connections.Dec()
	m.nConnections.Add(-1)
}

func (m *metrics) stats() Stats {
	return Stats{
		Connections:     m.nConnections.Load(),
		Sessions:        m.nSessions.Load(),
		ConnectsOK:      m.nConnectsOK.Load(),
		ConnectsRefused: m.nRefusedConn.Load(),
		MessagesIn:      m.nMessagesIn.Load(),
		Deliveries:      m.nDeliveries.Load(),
		Refusals:        m.nRefusals.Load(),
		QueueDropped:    m.nDropped.Load(),
		Panics:          m.nPanics.Load(),
		SlowSessions:    m.nSlow.Load(),
	}
}
