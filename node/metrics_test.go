package node

import (
	"context"
	"net/http"
	"testing"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The pushring families a started node serves on /metrics once it has
// sent an envelope (the fanout's per-peer families appear with the first
// peer) and /metrics has been asked for (the HTTP API counts requests):
// dashboards and alerts depend on these names, types, labels and help
// texts.
var goldenNodeFamilies = []string{
	`pushring_cluster_nodes gauge [] "Nodes on this node's hash ring."`,
	`pushring_deliveries_total counter [qos] "PUBLISH packets written to MQTT clients, by QoS."`,
	`pushring_fanout_ack_timeouts_total counter [] "QoS 1 publishes whose deliveries were not all confirmed within AckTimeout (the publisher goes on; a stored message is forwarded again)."`,
	`pushring_fanout_acks_sent_total counter [peer] "Ack envelopes (confirmations of QoS 1 deliveries, batched) published, by destination node."`,
	`pushring_fanout_acks_withheld_total counter [] "QoS 1 deliveries whose confirmation was withheld while a recipient's session was backlogged."`,
	`pushring_fanout_attach_forwards_total counter [] "Deliver envelopes sent on to a node where recipients are present away from their home (attach records)."`,
	`pushring_fanout_attach_records gauge [] "Attach records (principal present on another node) in this node's table."`,
	`pushring_fanout_catchup_errors_total counter [] "Catch-ups that could not read the store (the messages missed come when their publishers' nodes send them again, out of order)."`,
	`pushring_fanout_catchup_overflow_total counter [] "Group messages resolved at once, not in order, because too many were waiting for a catch-up."`,
	`pushring_fanout_catchups_total counter [] "Times this node, as groups' owner, read the stored group messages back after its NATS connection dropped (or NATS dropped envelopes for it)."`,
	`pushring_fanout_caught_up_total counter [] "Stored group messages resolved again by catch-ups: those this node had not resolved."`,
	`pushring_fanout_decode_errors_total counter [] "Envelopes dropped because they could not be decoded."`,
	`pushring_fanout_dropped_repeats_total counter [] "Notices that this node's NATS connection dropped sent again while its catch-up of stored group messages still ran, so the other nodes keep holding their sessions."`,
	`pushring_fanout_envelopes_received_total counter [peer] "Envelopes received and decoded, by sending node."`,
	`pushring_fanout_envelopes_sent_total counter [peer] "Envelopes published, by destination node; Ack envelopes are counted in acks_sent_total."`,
	`pushring_fanout_held_back_total counter [] "Stored QoS 1 messages not forwarded because their publisher was not acknowledged (an earlier message could not be stored, a takeover, a shutdown): the publisher sends them again, and the stored copies are withdrawn."`,
	`pushring_fanout_hop_limit_drops_total counter [] "Group messages resolved off-owner because owners still disagreed after HopLimit re-sends."`,
	`pushring_fanout_messages_total counter [kind] "Messages handed on by Forward, by kind (group, direct, topic)."`,
	`pushring_fanout_muted_total counter [] "Stored messages whose envelopes were not sent because this node's NATS connection was down, or the other nodes were not yet told it is back: the nodes of their recipients read them from the journal (and the wait sends them again)."`,
	`pushring_fanout_peer_drops_total counter [] "Notices from other nodes that their NATS connection dropped and is back: each holds this node's sessions as a ring change does."`,
	`pushring_fanout_publish_errors_total counter [] "Envelopes the bus refused to publish."`,
	`pushring_fanout_recipients_total counter [] "Recipients handed to local delivery."`,
	`pushring_fanout_resent_total counter [] "Stored QoS 1 messages forwarded again because their deliveries were not confirmed in time."`,
	`pushring_fanout_topic_envelopes_received_total counter [] "Topic envelopes received and decoded: at most one per topic message, however many of this node's filters match it."`,
	`pushring_fanout_topic_envelopes_sent_total counter [] "Topic envelopes published, one per topic message, on the topic's subject (NATS brings each to every node watching a matching filter)."`,
	`pushring_fanout_topic_filters gauge [] "MQTT topic filters this node watches (subscribed to on NATS) for its sessions."`,
	`pushring_fanout_view_mismatches_total counter [] "Deliver envelopes of stored messages routed by their sender under another hash ring than this node's (views converging): the first in 10 s holds the sessions as a ring change does."`,
	`pushring_fanout_withhold_timeouts_total counter [] "Withheld QoS 1 confirmations sent after AckWithhold although the backlog had not drained."`,
	`pushring_gossip_auth_failures_total counter [] "Gossip packets and streams dropped because no key of the keyring decrypts them, or because they came in clear."`,
	`pushring_http_conns_refused_total counter [] "HTTP connections refused at once because the connection cap was reached."`,
	`pushring_http_forwarded_invalid_total counter [] "Requests from a trusted proxy whose Forwarded or X-Forwarded-For header did not parse (the proxy's address was used)."`,
	`pushring_http_login_lockouts_total counter [] "Times a login id entered a backoff after repeated failed logins."`,
	`pushring_http_open_conns gauge [] "HTTP connections open now, over every limited listener."`,
	`pushring_http_requests_total counter [code route] "HTTP API requests by route pattern and status code."`,
	`pushring_http_tls_handshake_failures_total counter [] "HTTPS handshakes that failed: garbage, a plaintext request, a stall past the read deadline, a refused certificate."`,
	`pushring_journal_bad_records_total counter [] "Stored records a replay could not decode and skipped."`,
	`pushring_journal_replay_waits_total counter [] "Young records a replay waited for, to see whether they were withdrawn: the message appended just before to their subject had no result yet when they were appended, and the replay had not delivered it."`,
	`pushring_journal_replay_withdrawn_total counter [] "Records a replay read and then found withdrawn, and so did not deliver."`,
	`pushring_journal_replayed_total counter [] "Messages read back from the journal stream by replays."`,
	`pushring_journal_replays_total counter [] "Replays begun (Replay and ReplayAll)."`,
	`pushring_journal_store_errors_total counter [reason] "Messages the journal could not store: timeout (no acknowledgement within the timeout), refused (by the server, or the publish failed), closed (the journal or its connection closed first), lost (unanswered while a later message was stored)."`,
	`pushring_journal_store_seconds histogram [] "Time from Append to the journal stream's acknowledgement, of the messages stored."`,
	`pushring_journal_stored_bytes_total counter [] "Bytes of the records the journal stream acknowledged."`,
	`pushring_journal_stored_total counter [] "Messages the journal stream acknowledged."`,
	`pushring_journal_withdraw_dropped_total counter [] "Stored messages that should have been withdrawn but stayed (too many waiting, or the journal closed first): a replay may deliver them ahead of earlier messages of their publisher."`,
	`pushring_journal_withdrawn_total counter [] "Stored messages withdrawn (deleted, or found gone already) because their publishers were not acknowledged (an earlier message failed to store, a takeover, a shutdown): the publishers send them again."`,
	`pushring_messages_in_total counter [kind proto] "Messages accepted from publishers."`,
	`pushring_mqtt_connections gauge [] "MQTT clients connected to this node."`,
	`pushring_mqtt_connects_total counter [result] "MQTT connection attempts by result."`,
	`pushring_mqtt_panics_total counter [] "Panics recovered in connection goroutines."`,
	`pushring_mqtt_publish_throttled_total counter [] "Times a connection stopped being read because its principal went over its publish rate (messages or bytes a second)."`,
	`pushring_mqtt_rebalanced_total counter [] "Connections closed so that their clients, homed on another node, reconnect there (after a failover or a join)."`,
	`pushring_mqtt_refusals_total counter [reason] "Publishes, subscriptions, wills and deliveries refused by the ACL or limits, and connections closed for bad input."`,
	`pushring_mqtt_session_records_pos_batch_writes_total counter [result] "Batched delivery position writes, by result (ok; stale: the session was taken over; error: retried next round)."`,
	`pushring_mqtt_session_records_pos_noted_total counter [] "Delivery positions noted for batched writing (each session's latest is written once per interval)."`,
	`pushring_mqtt_session_records_pos_pending gauge [] "MQTT sessions with a noted delivery position not written yet."`,
	`pushring_mqtt_shutdown_dropped_total counter [] "Messages queued or in flight in sessions when the node shut down and not in the journal (wills, QoS 2 publishes) or for clean sessions: dropped with the node."`,
	`pushring_mqtt_shutdown_stored_total counter [] "Messages queued or in flight in persistent sessions when the node shut down, stored in the journal: replayed where the sessions resume, not dropped."`,
	`pushring_mqtt_slow_consumers_total counter [reason] "Connections closed because their client did not read: backlog (outbound bytes over four times MaxOutboundBytes) or write_timeout (no write progress for WriteTimeout)."`,
	`pushring_mqtt_slow_sessions_total counter [] "Times a session backlogged for over a second stopped having the confirmations of QoS 1 deliveries withheld for it (too slow to wait for)."`,
	`pushring_mqtt_tls_connections gauge [] "MQTT connections over TLS open now (handshake done), logged in or not."`,
	`pushring_mqtt_tls_handshake_failures_total counter [reason] "MQTT TLS handshakes that failed: timeout (stalled past the handshake timeout), error (garbage, bad or refused certificate, reset) or busy (not begun: too many in progress)."`,
	`pushring_nats_in_bytes_total counter [] "Payload bytes this node's NATS connection received."`,
	`pushring_nats_in_messages_total counter [] "Messages this node's NATS connection received (acknowledgements, envelopes, KV updates, replies)."`,
	`pushring_nats_out_bytes_total counter [] "Payload bytes this node's NATS connection published."`,
	`pushring_nats_out_messages_total counter [] "Messages this node's NATS connection published (journal appends, envelopes, KV writes, JetStream API requests)."`,
	`pushring_nats_refusals_total counter [reason] "Clients the embedded NATS server refused, by reason: authentication (unknown or revoked key), permission (a subject outside the client's permissions), tls (failed handshake)."`,
	`pushring_queue_dropped_total counter [] "Messages dropped from a full session queue or for a slow consumer."`,
	`pushring_retained_bytes gauge [] "Payload and property bytes of the retained messages this node holds in memory (bounded by --retained-max-bytes)."`,
	`pushring_retained_corrupt_total counter [] "Retained message records this node could not read and skipped."`,
	`pushring_retained_messages gauge [] "Groups with a retained message, as this node's copy holds them."`,
	`pushring_retained_writes_total counter [result] "Retained message writes by result: stored, cleared (an empty payload), full (no room), failed (timeout, server error, too many in flight)."`,
	`pushring_ring_changes_total counter [] "Changes of the set of nodes on this node's hash ring."`,
	`pushring_session_backlog_dropped_total counter [bound] "Messages a persistent session's replay dropped, the oldest first, over its backlog bounds: messages (count), bytes (payload), age (time stored)."`,
	`pushring_session_gaps_total counter [] "Replays that found messages for the session already aged out of the journal."`,
	`pushring_session_kicked_total counter [] "Sessions closed on this node because their client id connected to another node."`,
	`pushring_session_position_lag_max gauge [] "Journal sequences between the journal's end as this node knows it (its own appends, the stored messages offered here) and the lowest saved position of a connected persistent session (what a restart would replay), at the last position tick."`,
	`pushring_session_positions_rewound_total counter [] "Saved positions of persistent sessions taken back under a stored message that reached the session after its position had passed it."`,
	`pushring_session_replayed_total counter [] "Messages read back from the journal into persistent sessions."`,
	`pushring_session_replays_total counter [] "Journal replays started for persistent sessions (resumed here, or their queue dropped stored messages)."`,
	`pushring_session_store_errors_total counter [] "Session claims (CONNECT refused) and replays that the store failed."`,
	`pushring_store_check_failures_total counter [] "Checks of the store (journal stream and session records bucket) that failed or timed out."`,
	`pushring_store_reachable gauge [] "1 while the last check of the store (the journal's stream and the session records' bucket) succeeded, else 0; /readyz fails meanwhile."`,
	`pushring_webhook_attempts_total counter [result] "Webhook POSTs by result: ok (2xx), status (another status), error (no answer)."`,
	`pushring_webhook_events_total counter [result] "Webhook events, once per endpoint that takes them, by what became of them: delivered, or dropped (queue_full, failed, removed)."`,
	`pushring_webhook_queued gauge [] "Webhook events waiting to be sent, all endpoints together."`,
	`pushring_webhook_skipped_total counter [type] "Occasions for webhook events not worked out because every endpoint taking their type had a full queue, by type (message.offline: one per message)."`,
	`pushring_ws_connections_total counter [] "MQTT over WebSocket connections upgraded and handed to the MQTT server."`,
	`pushring_ws_refusals_total counter [reason] "MQTT over WebSocket upgrades refused (origin, subprotocol, handshake) and connections closed for a text or oversized message."`,
}

func TestMetricsServed(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	scrape := func() []*dto.MetricFamily {
		t.Helper()
		resp, err := http.Get("http://" + n.HTTPAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics: %s", resp.Status)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		byName, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var out []*dto.MetricFamily
		for _, mf := range byName {
			out = append(out, mf)
		}
		return out
	}
	if err := n.fan.Forward(context.Background(), &message.Message{ID: 1, Kind: message.Direct, To: "nobody"}); err != nil {
		t.Fatal(err)
	}
	scrape()
	served := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return scrape(), nil })
	testutil.CheckLines(t, "families", testutil.MetricFamilies(t, served, "pushring_"), goldenNodeFamilies)
}
