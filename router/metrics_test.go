package router

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/packet"

	"github.com/prometheus/client_golang/prometheus"
)

// The router's metric families and the series a fresh server exports:
// dashboards and alerts depend on these names, types, labels and help
// texts, and on every result and reason being there at zero.
var (
	goldenFamilies = []string{
		`pushring_deliveries_total counter [qos] "PUBLISH packets written to MQTT clients, by QoS."`,
		`pushring_messages_in_total counter [kind proto] "Messages accepted from publishers."`,
		`pushring_mqtt_connections gauge [] "MQTT clients connected to this node."`,
		`pushring_mqtt_connects_total counter [result] "MQTT connection attempts by result."`,
		`pushring_mqtt_panics_total counter [] "Panics recovered in connection goroutines."`,
		`pushring_mqtt_publish_throttled_total counter [] "Times a connection stopped being read because its principal went over its publish rate (messages or bytes a second)."`,
		`pushring_mqtt_rebalanced_total counter [] "Connections closed so that their clients, homed on another node, reconnect there (after a failover or a join)."`,
		`pushring_mqtt_refusals_total counter [reason] "Publishes, subscriptions, wills and deliveries refused by the ACL or limits, and connections closed for bad input."`,
		`pushring_mqtt_shutdown_dropped_total counter [] "Messages queued or in flight in sessions when the node shut down and not in the journal (wills, QoS 2 publishes) or for clean sessions: dropped with the node."`,
		`pushring_mqtt_shutdown_stored_total counter [] "Messages queued or in flight in persistent sessions when the node shut down, stored in the journal: replayed where the sessions resume, not dropped."`,
		`pushring_mqtt_slow_consumers_total counter [reason] "Connections closed because their client did not read: backlog (outbound bytes over four times MaxOutboundBytes) or write_timeout (no write progress for WriteTimeout)."`,
		`pushring_mqtt_slow_sessions_total counter [] "Times a session backlogged for over a second stopped having the confirmations of QoS 1 deliveries withheld for it (too slow to wait for)."`,
		`pushring_mqtt_tls_connections gauge [] "MQTT connections over TLS open now (handshake done), logged in or not."`,
		`pushring_mqtt_tls_handshake_failures_total counter [reason] "MQTT TLS handshakes that failed: timeout (stalled past the handshake timeout), error (garbage, bad or refused certificate, reset) or busy (not begun: too many in progress)."`,
		`pushring_queue_dropped_total counter [] "Messages dropped from a full session queue or for a slow consumer."`,
		`pushring_session_backlog_dropped_total counter [bound] "Messages a persistent session's replay dropped, the oldest first, over its backlog bounds: messages (count), bytes (payload), age (time stored)."`,
		`pushring_session_gaps_total counter [] "Replays that found messages for the session already aged out of the journal."`,
		`pushring_session_kicked_total counter [] "Sessions closed on this node because their client id connected to another node."`,
		`pushring_session_position_lag_max gauge [] "Journal sequences between the journal's end as this node knows it (its own appends, the stored messages offered here) and the lowest saved position of a connected persistent session (what a restart would replay), at the last position tick."`,
		`pushring_session_positions_rewound_total counter [] "Saved positions of persistent sessions taken back under a stored message that reached the session after its position had passed it."`,
		`pushring_session_replayed_total counter [] "Messages read back from the journal into persistent sessions."`,
		`pushring_session_replays_total counter [] "Journal replays started for persistent sessions (resumed here, or their queue dropped stored messages)."`,
		`pushring_session_store_errors_total counter [] "Session claims (CONNECT refused) and replays that the store failed."`,
	}
	goldenSeries = []string{
		`pushring_deliveries_total{qos="0"}`,
		`pushring_deliveries_total{qos="1"}`,
		`pushring_deliveries_total{qos="2"}`,
		`pushring_messages_in_total{kind="direct",proto="mqtt"}`,
		`pushring_messages_in_total{kind="group",proto="mqtt"}`,
		`pushring_messages_in_total{kind="topic",proto="mqtt"}`,
		`pushring_mqtt_connections`,
		`pushring_mqtt_connects_total{result="accepted"}`,
		`pushring_mqtt_connects_total{result="auth_topic_failed"}`,
		`pushring_mqtt_connects_total{result="bad_auth_method"}`,
		`pushring_mqtt_connects_total{result="bad_credentials"}`,
		`pushring_mqtt_connects_total{result="bad_protocol"}`,
		`pushring_mqtt_connects_total{result="id_rejected"}`,
		`pushring_mqtt_connects_total{result="not_authorized"}`,
		`pushring_mqtt_connects_total{result="redirected"}`,
		`pushring_mqtt_connects_total{result="unavailable"}`,
		`pushring_mqtt_panics_total`,
		`pushring_mqtt_publish_throttled_total`,
		`pushring_mqtt_rebalanced_total`,
		`pushring_mqtt_refusals_total{reason="connect_rate"}`,
		`pushring_mqtt_refusals_total{reason="deliver_acl"}`,
		`pushring_mqtt_refusals_total{reason="direct_acl"}`,
		`pushring_mqtt_refusals_total{reason="expired"}`,
		`pushring_mqtt_refusals_total{reason="filter_too_long"}`,
		`pushring_mqtt_refusals_total{reason="forward_failed"}`,
		`pushring_mqtt_refusals_total{reason="group_acl"}`,
		`pushring_mqtt_refusals_total{reason="malformed"}`,
		`pushring_mqtt_refusals_total{reason="protocol"}`,
		`pushring_mqtt_refusals_total{reason="proxy_header"}`,
		`pushring_mqtt_refusals_total{reason="proxy_untrusted"}`,
		`pushring_mqtt_refusals_total{reason="replay_acl"}`,
		`pushring_mqtt_refusals_total{reason="retained_failed"}`,
		`pushring_mqtt_refusals_total{reason="retained_full"}`,
		`pushring_mqtt_refusals_total{reason="service"}`,
		`pushring_mqtt_refusals_total{reason="store_failed"}`,
		`pushring_mqtt_refusals_total{reason="subscribe_acl"}`,
		`pushring_mqtt_refusals_total{reason="subscribe_max"}`,
		`pushring_mqtt_refusals_total{reason="subscription_bytes"}`,
		`pushring_mqtt_refusals_total{reason="timeout"}`,
		`pushring_mqtt_refusals_total{reason="too_large"}`,
		`pushring_mqtt_refusals_total{reason="too_large_for_client"}`,
		`pushring_mqtt_refusals_total{reason="topic"}`,
		`pushring_mqtt_refusals_total{reason="topic_acl"}`,
		`pushring_mqtt_refusals_total{reason="will_acl"}`,
		`pushring_mqtt_shutdown_dropped_total`,
		`pushring_mqtt_shutdown_stored_total`,
		`pushring_mqtt_slow_consumers_total{reason="backlog"}`,
		`pushring_mqtt_slow_consumers_total{reason="write_timeout"}`,
		`pushring_mqtt_slow_sessions_total`,
		`pushring_mqtt_tls_connections`,
		`pushring_mqtt_tls_handshake_failures_total{reason="busy"}`,
		`pushring_mqtt_tls_handshake_failures_total{reason="error"}`,
		`pushring_mqtt_tls_handshake_failures_total{reason="timeout"}`,
		`pushring_queue_dropped_total`,
		`pushring_session_backlog_dropped_total{bound="age"}`,
		`pushring_session_backlog_dropped_total{bound="bytes"}`,
		`pushring_session_backlog_dropped_total{bound="messages"}`,
		`pushring_session_gaps_total`,
		`pushring_session_kicked_total`,
		`pushring_session_position_lag_max`,
		`pushring_session_positions_rewound_total`,
		`pushring_session_replayed_total`,
		`pushring_session_replays_total`,
		`pushring_session_store_errors_total`,
	}
)

func TestMetricFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	newEnv(t, func(c *Config) { c.Registerer = reg })
	testutil.CheckLines(t, "families", testutil.MetricFamilies(t, reg, ""), goldenFamilies)
	series := testutil.MetricSeries(t, reg, "")
	testutil.CheckLines(t, "series", testutil.SeriesNames(series), goldenSeries)
	testutil.CheckCreated(t, reg, "")
	for name, v := range series {
		if v != 0 {
			t.Errorf("%s = %v at start", name, v)
		}
	}
}

// TestStatsMatchMetrics checks that each Stats field and the Prometheus
// series that count the same events move together.
func TestStatsMatchMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) { c.Registerer = reg })
	check := func(step string) Stats {
		t.Helper()
		st := e.srv.Stats()
		s := testutil.MetricSeries(t, reg, "")
		refused := testutil.SumSeries(s, "pushring_mqtt_connects_total") - s[`pushring_mqtt_connects_total{result="accepted"}`]
		for _, c := range []struct {
			field  string
			stat   float64
			metric float64
		}{
			{"Connections", float64(st.Connections), s["pushring_mqtt_connections"]},
			{"ConnectsOK", float64(st.ConnectsOK), s[`pushring_mqtt_connects_total{result="accepted"}`]},
			{"ConnectsRefused", float64(st.ConnectsRefused), refused},
			{"MessagesIn", float64(st.MessagesIn), testutil.SumSeries(s, "pushring_messages_in_total")},
			{"Deliveries", float64(st.Deliveries), testutil.SumSeries(s, "pushring_deliveries_total")},
			{"Refusals", float64(st.Refusals), testutil.SumSeries(s, "pushring_mqtt_refusals_total")},
			{"QueueDropped", float64(st.QueueDropped), s["pushring_queue_dropped_total"]},
			{"Panics", float64(st.Panics), s["pushring_mqtt_panics_total"]},
			{"SlowSessions", float64(st.SlowSessions), s["pushring_mqtt_slow_sessions_total"]},
			{"TLSConnections", float64(st.TLSConnections), s["pushring_mqtt_tls_connections"]},
			{"TLSTimeouts", float64(st.TLSTimeouts), s[`pushring_mqtt_tls_handshake_failures_total{reason="timeout"}`]},
			{"TLSErrors", float64(st.TLSErrors), s[`pushring_mqtt_tls_handshake_failures_total{reason="error"}`]},
			{"TLSBusy", float64(st.TLSBusy), s[`pushring_mqtt_tls_handshake_failures_total{reason="busy"}`]},
			{"Throttled", float64(st.Throttled), s["pushring_mqtt_publish_throttled_total"]},
			{"Replays", float64(st.Replays), s["pushring_session_replays_total"]},
			{"Replayed", float64(st.Replayed), s["pushring_session_replayed_total"]},
			{"Rewound", float64(st.Rewound), s["pushring_session_positions_rewound_total"]},
			{"Gaps", float64(st.Gaps), s["pushring_session_gaps_total"]},
			{"BacklogDroppedMessages", float64(st.BacklogDroppedMessages), s[`pushring_session_backlog_dropped_total{bound="messages"}`]},
			{"BacklogDroppedBytes", float64(st.BacklogDroppedBytes), s[`pushring_session_backlog_dropped_total{bound="bytes"}`]},
			{"BacklogDroppedAge", float64(st.BacklogDroppedAge), s[`pushring_session_backlog_dropped_total{bound="age"}`]},
			{"StoreErrors", float64(st.StoreErrors), s["pushring_session_store_errors_total"]},
			{"Kicked", float64(st.Kicked), s["pushring_session_kicked_total"]},
			{"Rebalanced", float64(st.Rebalanced), s["pushring_mqtt_rebalanced_total"]},
			{"ShutdownDropped", float64(st.ShutdownDropped), s["pushring_mqtt_shutdown_dropped_total"]},
			{"ShutdownStored", float64(st.ShutdownStored), s["pushring_mqtt_shutdown_stored_total"]},
			{"SlowConsumers", float64(st.SlowConsumers), testutil.SumSeries(s, "pushring_mqtt_slow_consumers_total")},
			{"PositionLag", float64(st.PositionLag), s["pushring_session_position_lag_max"]},
		} {
			if c.stat != c.metric {
				t.Errorf("%s: Stats().%s = %v, Prometheus %v", step, c.field, c.stat, c.metric)
			}
		}
		return st
	}
	check("start")

	alice := connectRaw(t, e, "alice", "a", true)
	alice.subscribe(1, "/private/alice/#")
	bob := connectRaw(t, e, "bob", "b", true)
	bob.subscribe(1, "/group/g1")
	bad := dialRaw(t, e.addr)
	bad.send(connectPacket("alice", "wrong", "x", true, 60))
	bad.expectConnack(packet.ConnBadCredentials)
	st := check("connected")
	if st.Connections != 2 || st.ConnectsOK != 2 || st.ConnectsRefused != 1 {
		t.Errorf("connected: %+v", st)
	}

	dev := connectRaw(t, e, "d1", "d", true)
	dev.publish(0, 0, "/group/g1", "qos0")
	dev.publish(1, 1, "/group/g1", "qos1")
	dev.mustRead(packet.PUBACK)
	dev.publish(0, 0, "/group/g2", "refused") // d1 does not publish to g2
	alice.readPublish()
	alice.readPublish()
	bob.readPublish()
	bob.readPublish()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := e.srv.Stats(); s.Deliveries != 4 || s.Refusals != 1 {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
	st = check("published")
	if st.MessagesIn != 2 || st.Connections != 3 || st.ConnectsOK != 3 {
		t.Errorf("published: %+v", st)
	}
	s := testutil.MetricSeries(t, reg, "")
	for name, want := range map[string]float64{
		`pushring_deliveries_total{qos="0"}`:                     2,
		`pushring_deliveries_total{qos="1"}`:                     2,
		`pushring_messages_in_total{kind="group",proto="mqtt"}`:  2,
		`pushring_mqtt_refusals_total{reason="group_acl"}`:       1,
		`pushring_mqtt_connects_total{result="bad_credentials"}`: 1,
	} {
		if s[name] != want {
			t.Errorf("%s = %v, want %v", name, s[name], want)
		}
	}

	bob.Abort()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 2 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	check("disconnected")
}
