package router

import (
	"fmt"
	"sync/atomic"
	"time"

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
	SlowSessions    uint64 // backlogged sessions no longer waited for: confirmations stopped being withheld for them (withhold.go)
	TLSConnections  int64  // MQTT connections over TLS open now (handshake done)
	TLSTimeouts     uint64 // TLS handshakes cut off by TLSHandshakeTimeout
	TLSErrors       uint64 // TLS handshakes that failed otherwise
	TLSBusy         uint64 // TLS connections closed unshaken: MaxTLSHandshakes in progress
	Throttled       uint64 // pauses of a connection whose principal went over its publish rate (limits.go)
	Replays         uint64 // journal replays started for durable sessions (durable.go)
	Replayed        uint64 // messages read back from the journal into sessions
	Rewound         uint64 // saved positions taken back under a late stored message (durable.go)
	Gaps            uint64 // replays that found messages aged out of the journal
	// Messages replays dropped over a session's backlog bounds, by
	// bound (bounds.go): SessionBacklogMessages, SessionBacklogBytes,
	// SessionBacklogAge.
	BacklogDroppedMessages uint64
	BacklogDroppedBytes    uint64
	BacklogDroppedAge      uint64
	StoreErrors            uint64 // session claims and replays the store failed
	Kicked                 uint64 // sessions closed here because their client connected to another node
	Rebalanced             uint64 // connections closed to move their clients toward their home nodes (balance.go)
	// At shutdown (drain.go), messages the sessions had not delivered:
	// dropped with the node, or stored and replayed by the sessions'
	// next nodes.
	ShutdownDropped, ShutdownStored uint64
	SlowConsumers                   uint64 // connections closed because their client did not read: backlog over the limit, or no write progress for WriteTimeout
	PositionLag                     uint64 // at the last position tick: the journal's end as known here (SetJournalEnd, sequences offered) less the lowest saved position of a connected persistent session
}

// TLS handshake failures: indexes of Server's counts and the values of
// pushring_mqtt_tls_handshake_failures_total{reason}.
const (
	tlsTimeout = iota // stalled past TLSHandshakeTimeout
	tlsError          // garbage, a bad or refused certificate, a reset
	tlsBusy           // not begun: MaxTLSHandshakes in progress
)

var tlsFailureReasons = [...]string{tlsTimeout: "timeout", tlsError: "error", tlsBusy: "busy"}

// Per-session backlog bounds (bounds.go): indexes of metrics.backlogDrops
// and the values of pushring_session_backlog_dropped_total{bound}.
const (
	boundMessages = iota // SessionBacklogMessages
	boundBytes           // SessionBacklogBytes
	boundAge             // SessionBacklogAge
)

var backlogBounds = [...]string{boundMessages: "messages", boundBytes: "bytes", boundAge: "age"}

// Connect results, the values of pushring_mqtt_connects_total{result}.
const (
	resultAccepted       = "accepted"
	resultBadProtocol    = "bad_protocol"
	resultIDRejected     = "id_rejected"
	resultUnavailable    = "unavailable"
	resultBadCredentials = "bad_credentials"
	resultNotAuthorized  = "not_authorized"
	resultAuthTopicFail  = "auth_topic_failed"
	resultBadAuthMethod  = "bad_auth_method" // a 5.0 CONNECT asking for enhanced authentication
	resultRedirected     = "redirected"      // a 5.0 client sent to its home node (Config.RedirectHome)
)

// connectResults are the values of pushring_mqtt_connects_total{result};
// accepted comes first (see stats).
var connectResults = []string{resultAccepted, resultBadProtocol, resultIDRejected,
	resultUnavailable, resultBadCredentials, resultNotAuthorized, resultAuthTopicFail, resultBadAuthMethod, resultRedirected}

// connectRefusals are the refusal reasons of refused CONNECTs (Events),
// made once: "connect_" and the result, by connectResults' index.
var connectRefusals = func() []string {
	out := make([]string, len(connectResults))
	for i, r := range connectResults {
		out[i] = "connect_" + r
	}
	return out
}()

// Each Prometheus family of the server.
var (
	connectionsDesc = prometheus.NewDesc("pushring_mqtt_connections",
		"MQTT clients connected to this node.", nil, nil)
	connectsDesc = prometheus.NewDesc("pushring_mqtt_connects_total",
		"MQTT connection attempts by result.", []string{"result"}, nil)
	messagesInDesc = prometheus.NewDesc("pushring_messages_in_total",
		"Messages accepted from publishers.", []string{"proto", "kind"}, nil)
	deliveriesDesc = prometheus.NewDesc("pushring_deliveries_total",
		"PUBLISH packets written to MQTT clients, by QoS.", []string{"qos"}, nil)
	refusalsDesc = prometheus.NewDesc("pushring_mqtt_refusals_total",
		"Publishes, subscriptions, wills and deliveries refused by the ACL or limits, and connections closed for bad input.", []string{"reason"}, nil)
	queueDroppedDesc = prometheus.NewDesc("pushring_queue_dropped_total",
		"Messages dropped from a full session queue or for a slow consumer.", nil, nil)
	panicsDesc = prometheus.NewDesc("pushring_mqtt_panics_total",
		"Panics recovered in connection goroutines.", nil, nil)
	tlsConnsDesc = prometheus.NewDesc("pushring_mqtt_tls_connections",
		"MQTT connections over TLS open now (handshake done), logged in or not.", nil, nil)
	tlsFailuresDesc = prometheus.NewDesc("pushring_mqtt_tls_handshake_failures_total",
		"MQTT TLS handshakes that failed: timeout (stalled past the handshake timeout), error (garbage, bad or refused certificate, reset) or busy (not begun: too many in progress).", []string{"reason"}, nil)
	slowDesc = prometheus.NewDesc("pushring_mqtt_slow_sessions_total",
		"Times a session backlogged for over a second stopped having the confirmations of QoS 1 deliveries withheld for it (too slow to wait for).", nil, nil)
	replaysDesc = prometheus.NewDesc("pushring_session_replays_total",
		"Journal replays started for persistent sessions (resumed here, or their queue dropped stored messages).", nil, nil)
	replayedDesc = prometheus.NewDesc("pushring_session_replayed_total",
		"Messages read back from the journal into persistent sessions.", nil, nil)
	rewoundDesc = prometheus.NewDesc("pushring_session_positions_rewound_total",
		"Saved positions of persistent sessions taken back under a stored message that reached the session after its position had passed it.", nil, nil)
	gapsDesc = prometheus.NewDesc("pushring_session_gaps_total",
		"Replays that found messages for the session already aged out of the journal.", nil, nil)
	backlogDroppedDesc = prometheus.NewDesc("pushring_session_backlog_dropped_total",
		"Messages a persistent session's replay dropped, the oldest first, over its backlog bounds: messages (count), bytes (payload), age (time stored).", []string{"bound"}, nil)
	sessionStoreErrorsDesc = prometheus.NewDesc("pushring_session_store_errors_total",
		"Session claims (CONNECT refused) and replays that the store failed.", nil, nil)
	kickedDesc = prometheus.NewDesc("pushring_session_kicked_total",
		"Sessions closed on this node because their client id connected to another node.", nil, nil)
	rebalancedDesc = prometheus.NewDesc("pushring_mqtt_rebalanced_total",
		"Connections closed so that their clients, homed on another node, reconnect there (after a failover or a join).", nil, nil)
	shutdownDroppedDesc = prometheus.NewDesc("pushring_mqtt_shutdown_dropped_total",
		"Messages queued or in flight in sessions when the node shut down and not in the journal (wills, QoS 2 publishes) or for clean sessions: dropped with the node.", nil, nil)
	shutdownStoredDesc = prometheus.NewDesc("pushring_mqtt_shutdown_stored_total",
		"Messages queued or in flight in persistent sessions when the node shut down, stored in the journal: replayed where the sessions resume, not dropped.", nil, nil)
	slowConsumersDesc = prometheus.NewDesc("pushring_mqtt_slow_consumers_total",
		"Connections closed because their client did not read: backlog (outbound bytes over four times MaxOutboundBytes) or write_timeout (no write progress for WriteTimeout).",
		[]string{"reason"}, nil)
	posLagDesc = prometheus.NewDesc("pushring_session_position_lag_max",
		"Journal sequences between the journal's end as this node knows it (its own appends, the stored messages offered here) and the lowest saved position of a connected persistent session (what a restart would replay), at the last position tick.", nil, nil)
	throttledDesc = prometheus.NewDesc("pushring_mqtt_publish_throttled_total",
		"Times a connection stopped being read because its principal went over its publish rate (messages or bytes a second).", nil, nil)
)

// metrics are the server's counters, one atomic per count. Stats reads
// them, and so does Prometheus when it scrapes (Collect): the two views
// cannot disagree, and an event costs one atomic add, with no label
// lookup on the delivery path. Every labelled series exists from the
// start, at zero, so the label values are fixed lists.
type metrics struct {
	created time.Time              // when the counters started, for Prometheus
	events  atomic.Pointer[Events] // SetEvents' hook, told of refusals here

	// connections is changed under Server.mu only, so that Server can
	// check MaxConnections against it and count in one step.
	connections   atomic.Int64
	connects      []atomic.Uint64  // by result, as connectResults
	messagesIn    [3]atomic.Uint64 // group, direct, topic
	deliveries    [3]atomic.Uint64 // by QoS
	refusals      []atomic.Uint64  // by reason, as allReasons
	queueDropped  atomic.Uint64
	panics        atomic.Uint64
	slow          atomic.Uint64
	tlsConns      atomic.Int64
	tlsFailures   [len(tlsFailureReasons)]atomic.Uint64 // by tlsTimeout, tlsError, tlsBusy
	throttles     atomic.Uint64
	replays       atomic.Uint64
	replayedMsgs  atomic.Uint64
	rewoundPos    atomic.Uint64
	gaps          atomic.Uint64
	backlogDrops  [len(backlogBounds)]atomic.Uint64
	storeErrors   atomic.Uint64
	kicks         atomic.Uint64
	rebalances    atomic.Uint64
	shutDropped   atomic.Uint64
	shutStored    atomic.Uint64
	posLag        atomic.Uint64 // set by positionLoop
	slowConsumers [len(slowConsumerReasons)]atomic.Uint64
}

// newMetrics makes the counters and registers them with reg (if not
// nil); a registry that already holds them is an error, not a panic.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		created:  time.Now(),
		connects: make([]atomic.Uint64, len(connectResults)),
		refusals: make([]atomic.Uint64, len(allReasons)),
	}
	if reg != nil {
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("router: registering metrics: %w", err)
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connectionsDesc, connectsDesc, messagesInDesc,
		deliveriesDesc, refusalsDesc, queueDroppedDesc, panicsDesc, slowDesc, tlsConnsDesc, tlsFailuresDesc, throttledDesc,
		replaysDesc, replayedDesc, rewoundDesc, gapsDesc, backlogDroppedDesc, sessionStoreErrorsDesc, kickedDesc, rebalancedDesc,
		shutdownDroppedDesc, shutdownStoredDesc, posLagDesc, slowConsumersDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(m.connections.Load()))
	for i, r := range connectResults {
		ch <- m.counter(connectsDesc, &m.connects[i], r)
	}
	ch <- m.counter(messagesInDesc, &m.messagesIn[0], "mqtt", "group")
	ch <- m.counter(messagesInDesc, &m.messagesIn[1], "mqtt", "direct")
	ch <- m.counter(messagesInDesc, &m.messagesIn[2], "mqtt", "topic")
	ch <- m.counter(deliveriesDesc, &m.deliveries[0], "0")
	ch <- m.counter(deliveriesDesc, &m.deliveries[1], "1")
	ch <- m.counter(deliveriesDesc, &m.deliveries[2], "2")
	for i, r := range allReasons {
		ch <- m.counter(refusalsDesc, &m.refusals[i], r)
	}
	ch <- m.counter(queueDroppedDesc, &m.queueDropped)
	ch <- m.counter(panicsDesc, &m.panics)
	ch <- m.counter(slowDesc, &m.slow)
	ch <- prometheus.MustNewConstMetric(tlsConnsDesc, prometheus.GaugeValue, float64(m.tlsConns.Load()))
	for i, reason := range tlsFailureReasons {
		ch <- m.counter(tlsFailuresDesc, &m.tlsFailures[i], reason)
	}
	ch <- m.counter(throttledDesc, &m.throttles)
	ch <- m.counter(replaysDesc, &m.replays)
	ch <- m.counter(replayedDesc, &m.replayedMsgs)
	ch <- m.counter(rewoundDesc, &m.rewoundPos)
	ch <- m.counter(gapsDesc, &m.gaps)
	for i, b := range backlogBounds {
		ch <- m.counter(backlogDroppedDesc, &m.backlogDrops[i], b)
	}
	ch <- m.counter(sessionStoreErrorsDesc, &m.storeErrors)
	ch <- m.counter(kickedDesc, &m.kicks)
	ch <- m.counter(rebalancedDesc, &m.rebalances)
	ch <- m.counter(shutdownDroppedDesc, &m.shutDropped)
	ch <- m.counter(shutdownStoredDesc, &m.shutStored)
	for i, r := range slowConsumerReasons {
		ch <- m.counter(slowConsumersDesc, &m.slowConsumers[i], r)
	}
	ch <- prometheus.MustNewConstMetric(posLagDesc, prometheus.GaugeValue, float64(m.posLag.Load()))
}

func (m *metrics) counter(d *prometheus.Desc, n *atomic.Uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetricWithCreatedTimestamp(d, prometheus.CounterValue, float64(n.Load()), m.created, labels...)
}

// index returns the position of v in values. Label values are package
// constants listed in values, so a miss is a programming error.
func index(values []string, v string) int {
	for i, x := range values {
		if x == v {
			return i
		}
	}
	panic("router: metric label value " + v + " is not listed")
}

func (m *metrics) connect(result string) {
	i := index(connectResults, result)
	m.connects[i].Add(1)
	if result != resultAccepted && result != resultRedirected {
		if e := m.hook(); e != nil {
			e.Refused(connectRefusals[i])
		}
	}
}

func (m *metrics) refusal(reason string) {
	m.refusals[index(allReasons, reason)].Add(1)
	if e := m.hook(); e != nil {
		e.Refused(reason)
	}
}

func (m *metrics) messageIn(kind message.Kind) {
	switch kind {
	case message.Group:
		m.messagesIn[0].Add(1)
	case message.Topic:
		m.messagesIn[2].Add(1)
	default:
		m.messagesIn[1].Add(1)
	}
}

func (m *metrics) delivered(qos byte) { m.deliveries[min(qos, 2)].Add(1) }

func (m *metrics) dropped() { m.queueDropped.Add(1) }

func (m *metrics) slowSession() { m.slow.Add(1) }

// SetJournalEnd gives the server the highest journal sequence the node
// knows of (its own appends), for the position lag gauge: with it the
// lag counts what the slowest connected session is behind the journal,
// not only behind what reached this node. Call it before Serve; without
// it (the default) the newest sequence offered here stands for the end.
func (s *Server) SetJournalEnd(end func() uint64) {
	s.journalEnd.Store(&end)
}

// knownJournalEnd is the end SetJournalEnd gives, 0 without one.
func (s *Server) knownJournalEnd() uint64 {
	if f := s.journalEnd.Load(); f != nil {
		return (*f)()
	}
	return 0
}

// Slow consumers, the values of pushring_mqtt_slow_consumers_total{reason}.
const (
	slowBacklog      = iota // outbound backlog over the hard limit
	slowWriteTimeout        // no write progress for WriteTimeout
)

var slowConsumerReasons = [...]string{slowBacklog: "backlog", slowWriteTimeout: "write_timeout"}

// slowConsumer counts a connection closed because its client did not
// read, and logs it, once a second at most: a stalled network can cut
// off thousands at once.
func (s *Server) slowConsumer(reason int, remote string) {
	s.m.slowConsumers[reason].Add(1)
	if ok, n := s.slowLog.Allow(time.Second); ok {
		s.log.Warn("mqtt: closing a connection whose client does not read (slow consumer)",
			"reason", slowConsumerReasons[reason], "remote", remote, "since_last_logged", n)
	}
}

func (m *metrics) replay()     { m.replays.Add(1) }
func (m *metrics) replayed()   { m.replayedMsgs.Add(1) }
func (m *metrics) rewound()    { m.rewoundPos.Add(1) }
func (m *metrics) gap()        { m.gaps.Add(1) }
func (m *metrics) storeError() { m.storeErrors.Add(1) }

func (m *metrics) backlogDropped(bound int, n uint64) { m.backlogDrops[bound].Add(n) }
func (m *metrics) kicked()                            { m.kicks.Add(1) }

func (m *metrics) rebalanced(n int) { m.rebalances.Add(uint64(n)) }

func (m *metrics) shutdownUnsent(dropped, stored int) {
	m.shutDropped.Add(uint64(dropped))
	m.shutStored.Add(uint64(stored))
}

func (m *metrics) throttled() { m.throttles.Add(1) }

func (m *metrics) connUp() { m.connections.Add(1) }

func (m *metrics) connDown() { m.connections.Add(-1) }

// stats returns the counters but Sessions, which Server fills in.
func (m *metrics) stats() Stats {
	return Stats{
		Connections:            m.connections.Load(),
		ConnectsOK:             m.connects[0].Load(),
		ConnectsRefused:        sum(m.connects[1:]),
		MessagesIn:             sum(m.messagesIn[:]),
		Deliveries:             sum(m.deliveries[:]),
		Refusals:               sum(m.refusals),
		QueueDropped:           m.queueDropped.Load(),
		Panics:                 m.panics.Load(),
		SlowSessions:           m.slow.Load(),
		TLSConnections:         m.tlsConns.Load(),
		TLSTimeouts:            m.tlsFailures[tlsTimeout].Load(),
		TLSErrors:              m.tlsFailures[tlsError].Load(),
		TLSBusy:                m.tlsFailures[tlsBusy].Load(),
		Throttled:              m.throttles.Load(),
		Replays:                m.replays.Load(),
		Replayed:               m.replayedMsgs.Load(),
		Rewound:                m.rewoundPos.Load(),
		Gaps:                   m.gaps.Load(),
		BacklogDroppedMessages: m.backlogDrops[boundMessages].Load(),
		BacklogDroppedBytes:    m.backlogDrops[boundBytes].Load(),
		BacklogDroppedAge:      m.backlogDrops[boundAge].Load(),
		StoreErrors:            m.storeErrors.Load(),
		Kicked:                 m.kicks.Load(),
		Rebalanced:             m.rebalances.Load(),
		ShutdownDropped:        m.shutDropped.Load(),
		ShutdownStored:         m.shutStored.Load(),
		SlowConsumers:          sum(m.slowConsumers[:]),
		PositionLag:            m.posLag.Load(),
	}
}

func sum(ns []atomic.Uint64) uint64 {
	var total uint64
	for i := range ns {
		total += ns[i].Load()
	}
	return total
}
