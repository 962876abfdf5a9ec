package fanout

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"

	"github.com/prometheus/client_golang/prometheus"
)

// The fanout's metric families, and its series when it starts and once
// it has exchanged envelopes with two peers: dashboards and alerts depend
// on these names, types, labels and help texts. A peer's three series
// appear together, at zero, when the node first sends to or hears from
// it, and stay until Close.
var (
	goldenFamilies = []string{
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
	}
	goldenStart = []string{
		`pushring_fanout_ack_timeouts_total`,
		`pushring_fanout_acks_withheld_total`,
		`pushring_fanout_attach_forwards_total`,
		`pushring_fanout_attach_records`,
		`pushring_fanout_catchup_errors_total`,
		`pushring_fanout_catchup_overflow_total`,
		`pushring_fanout_catchups_total`,
		`pushring_fanout_caught_up_total`,
		`pushring_fanout_decode_errors_total`,
		`pushring_fanout_dropped_repeats_total`,
		`pushring_fanout_held_back_total`,
		`pushring_fanout_hop_limit_drops_total`,
		`pushring_fanout_messages_total{kind="direct"}`,
		`pushring_fanout_messages_total{kind="group"}`,
		`pushring_fanout_messages_total{kind="topic"}`,
		`pushring_fanout_muted_total`,
		`pushring_fanout_peer_drops_total`,
		`pushring_fanout_publish_errors_total`,
		`pushring_fanout_recipients_total`,
		`pushring_fanout_resent_total`,
		`pushring_fanout_topic_envelopes_received_total`,
		`pushring_fanout_topic_envelopes_sent_total`,
		`pushring_fanout_topic_filters`,
		`pushring_fanout_view_mismatches_total`,
		`pushring_fanout_withhold_timeouts_total`,
	}
	goldenPeers = []string{
		`pushring_fanout_ack_timeouts_total`,
		`pushring_fanout_acks_sent_total{peer="n2"}`,
		`pushring_fanout_acks_sent_total{peer="n3"}`,
		`pushring_fanout_acks_withheld_total`,
		`pushring_fanout_attach_forwards_total`,
		`pushring_fanout_attach_records`,
		`pushring_fanout_catchup_errors_total`,
		`pushring_fanout_catchup_overflow_total`,
		`pushring_fanout_catchups_total`,
		`pushring_fanout_caught_up_total`,
		`pushring_fanout_decode_errors_total`,
		`pushring_fanout_dropped_repeats_total`,
		`pushring_fanout_envelopes_received_total{peer="n2"}`,
		`pushring_fanout_envelopes_received_total{peer="n3"}`,
		`pushring_fanout_envelopes_sent_total{peer="n2"}`,
		`pushring_fanout_envelopes_sent_total{peer="n3"}`,
		`pushring_fanout_held_back_total`,
		`pushring_fanout_hop_limit_drops_total`,
		`pushring_fanout_messages_total{kind="direct"}`,
		`pushring_fanout_messages_total{kind="group"}`,
		`pushring_fanout_messages_total{kind="topic"}`,
		`pushring_fanout_muted_total`,
		`pushring_fanout_peer_drops_total`,
		`pushring_fanout_publish_errors_total`,
		`pushring_fanout_recipients_total`,
		`pushring_fanout_resent_total`,
		`pushring_fanout_topic_envelopes_received_total`,
		`pushring_fanout_topic_envelopes_sent_total`,
		`pushring_fanout_topic_filters`,
		`pushring_fanout_view_mismatches_total`,
		`pushring_fanout_withhold_timeouts_total`,
	}
)

func TestMetricFamilies(t *testing.T) {
	reg := prometheus.NewRegistry()
	bus := NewMemoryBus()
	place := &mapPlacement{homes: map[string]string{"bob": "n2"}, def: "n1"}
	nodes := startNodes(t, []string{"n1"}, func(int) Bus { return bus }, staticMembers{},
		func(int) Placement { return place }, func(c *Config) { c.Registerer = reg })
	start := testutil.MetricSeries(t, reg, "")
	testutil.CheckLines(t, "series at start", testutil.SeriesNames(start), goldenStart)
	for name, v := range start {
		if v != 0 {
			t.Errorf("%s = %v at start", name, v)
		}
	}

	// A message for bob goes to n2 (no node is there to receive it), and
	// an envelope arrives from n3.
	if err := nodes[0].f.Forward(context.Background(), &message.Message{ID: 1, Kind: message.Direct, To: "bob"}); err != nil {
		t.Fatal(err)
	}
	env, err := AppendEnvelope(nil, &Envelope{Kind: KindDetach, Sender: "n3", Principal: "carol", Node: "n3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(Subject("test", "n1"), env); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if s := nodes[0].f.Stats(); s.EnvelopesReceived != 1 {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
	testutil.CheckLines(t, "families", testutil.MetricFamilies(t, reg, ""), goldenFamilies)
	series := testutil.MetricSeries(t, reg, "")
	testutil.CheckLines(t, "series with peers", testutil.SeriesNames(series), goldenPeers)
	testutil.CheckCreated(t, reg, "")
	for name, want := range map[string]float64{
		`pushring_fanout_envelopes_sent_total{peer="n2"}`:     1,
		`pushring_fanout_envelopes_sent_total{peer="n3"}`:     0,
		`pushring_fanout_envelopes_received_total{peer="n2"}`: 0,
		`pushring_fanout_envelopes_received_total{peer="n3"}`: 1,
		`pushring_fanout_acks_sent_total{peer="n2"}`:          0,
		`pushring_fanout_acks_sent_total{peer="n3"}`:          0,
		`pushring_fanout_messages_total{kind="direct"}`:       1,
	} {
		if series[name] != want {
			t.Errorf("%s = %v, want %v", name, series[name], want)
		}
	}
	nodes[0].f.Close()
	if got := testutil.MetricSeries(t, reg, ""); len(got) != 0 {
		t.Errorf("series left after Close: %v", testutil.SeriesNames(got))
	}
}

// Past maxPeers distinct node ids, the rest are counted together under
// peer "other".
func TestMetricsPeerOverflow(t *testing.T) {
	reg := prometheus.NewRegistry()
	bus := NewMemoryBus()
	nodes := startNodes(t, []string{"n1"}, func(int) Bus { return bus }, staticMembers{},
		func(int) Placement { return &mapPlacement{def: "n1"} }, func(c *Config) { c.Registerer = reg })
	const extra = 5
	for i := range maxPeers + extra {
		id := fmt.Sprintf("s%04d", i)
		env, err := AppendEnvelope(nil, &Envelope{Kind: KindDetach, Sender: id, Principal: "carol", Node: id})
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.Publish(Subject("test", "n1"), env); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if s := nodes[0].f.Stats(); s.EnvelopesReceived != maxPeers+extra {
			return fmt.Errorf("received %d", s.EnvelopesReceived)
		}
		return nil
	})
	series := testutil.MetricSeries(t, reg, "pushring_fanout_envelopes_received_total")
	if len(series) != maxPeers+1 {
		t.Errorf("%d received series, want %d", len(series), maxPeers+1)
	}
	if v := series[`pushring_fanout_envelopes_received_total{peer="other"}`]; v != extra {
		t.Errorf(`received{peer="other"} = %v, want %d`, v, extra)
	}
	if v := series[`pushring_fanout_envelopes_received_total{peer="s0000"}`]; v != 1 {
		t.Errorf(`received{peer="s0000"} = %v, want 1`, v)
	}
	if v := testutil.SumSeries(series, "pushring_fanout_envelopes_received_total"); v != maxPeers+extra {
		t.Errorf("received in all = %v, want %d", v, maxPeers+extra)
	}
}

// An id that cannot be a metric label never becomes one: an envelope
// that names one is refused (a decode error), and an id from elsewhere
// (the placement) is counted under "other". A label that is not UTF-8
// would fail every later scrape of the node.
func TestMetricsRefuseBadPeerIDs(t *testing.T) {
	reg := prometheus.NewRegistry()
	bus := NewMemoryBus()
	nodes := startNodes(t, []string{"n1"}, func(int) Bus { return bus }, staticMembers{},
		func(int) Placement { return &mapPlacement{def: "n1"} }, func(c *Config) { c.Registerer = reg })
	for _, b := range []string{
		"02 04 00 02 6eff 05 616c696365 02 6e32",    // Detach, sender "n\xff"
		"02 04 00 02 6e32 05 616c696365 02 6eff",    // Detach, node "n\xff"
		"02 05 00 02 6e32 02 6eff 01 05 616c696365", // AttachMany, node "n\xff"
	} {
		if err := bus.Publish(Subject("test", "n1"), unhex(t, b)); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if s := nodes[0].f.Stats(); s.DecodeErrors != 3 {
			return fmt.Errorf("%d decode errors", s.DecodeErrors)
		}
		return nil
	})
	nodes[0].f.peer("n\xff").sent.Add(1)
	series := testutil.MetricSeries(t, reg, "pushring_fanout_envelopes_sent_total") // fails on a Gather error
	if v := series[`pushring_fanout_envelopes_sent_total{peer="other"}`]; len(series) != 1 || v != 1 {
		t.Errorf("sent series %v, want one, other = 1", series)
	}
}

// checkStatsMatch waits until each Stats field of f and the Prometheus
// series in reg that count the same events agree.
func checkStatsMatch(t *testing.T, name string, f *Fanout, reg *prometheus.Registry) Stats {
	t.Helper()
	var st Stats
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		st = f.Stats()
		s := testutil.MetricSeries(t, reg, "pushring_fanout_")
		sum := func(name string) float64 { return testutil.SumSeries(s, "pushring_fanout_"+name) }
		for _, c := range []struct {
			field  string
			stat   uint64
			metric float64
		}{
			{"EnvelopesSent", st.EnvelopesSent, sum("envelopes_sent_total")},
			{"AcksSent", st.AcksSent, sum("acks_sent_total")},
			{"EnvelopesReceived", st.EnvelopesReceived, sum("envelopes_received_total")},
			{"GroupMessages", st.GroupMessages, s[`pushring_fanout_messages_total{kind="group"}`]},
			{"DirectMessages", st.DirectMessages, s[`pushring_fanout_messages_total{kind="direct"}`]},
			{"TopicMessages", st.TopicMessages, s[`pushring_fanout_messages_total{kind="topic"}`]},
			{"TopicEnvelopesSent", st.TopicEnvelopesSent, sum("topic_envelopes_sent_total")},
			{"TopicEnvelopesReceived", st.TopicEnvelopesReceived, sum("topic_envelopes_received_total")},
			{"TopicFilters", st.TopicFilters, sum("topic_filters")},
			{"HopLimitDrops", st.HopLimitDrops, sum("hop_limit_drops_total")},
			{"DecodeErrors", st.DecodeErrors, sum("decode_errors_total")},
			{"PublishErrors", st.PublishErrors, sum("publish_errors_total")},
			{"Recipients", st.Recipients, sum("recipients_total")},
			{"AttachForwards", st.AttachForwards, sum("attach_forwards_total")},
			{"AttachRecords", st.AttachRecords, sum("attach_records")},
			{"AckTimeouts", st.AckTimeouts, sum("ack_timeouts_total")},
			{"AcksWithheld", st.AcksWithheld, sum("acks_withheld_total")},
			{"WithholdTimeouts", st.WithholdTimeouts, sum("withhold_timeouts_total")},
		} {
			if float64(c.stat) != c.metric {
				return fmt.Errorf("%s: Stats().%s = %d, Prometheus %v", name, c.field, c.stat, c.metric)
			}
		}
		return nil
	})
	return st
}

// TestStatsMatchMetrics drives every counter that has a Prometheus series
// and checks that Stats and the series move together.
func TestStatsMatchMetrics(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	members, homes := groupOf(9, ids)
	homes["alice"], homes["bob"], homes["ghost-user"], homes["lost-user"] = "n1", "n2", "ghost", "lost"
	// n1 and n2 each think the other owns "bounce": its Resolve goes back
	// and forth until the hop limit.
	places := map[string]*mapPlacement{
		"n1": {homes: homes, owners: map[string]string{"g": "n2", "bounce": "n2"}, def: "n1"},
		"n2": {homes: homes, owners: map[string]string{"g": "n2", "bounce": "n1"}, def: "n1"},
		"n3": {homes: homes, owners: map[string]string{"g": "n2", "bounce": "n2"}, def: "n1"},
	}
	mem := NewMemoryBus()
	nodes := map[string]*ackNode{}
	regs := map[string]*prometheus.Registry{}
	clock := &testClock{}
	for _, id := range ids {
		cfg := DefaultConfig()
		cfg.NodeID, cfg.Cluster = id, "test"
		cfg.HopLimit = 1
		cfg.AckTimeout = 2 * time.Hour
		cfg.AckWithhold = time.Hour
		cfg.Now = clock.now
		regs[id] = prometheus.NewRegistry()
		cfg.Registerer = regs[id]
		var bus Bus = mem
		if id == "n1" {
			bus = &failingBus{Bus: mem, subject: Subject("test", "lost")}
		}
		d := &gatedDeliverer{recorder: newRecorder()}
		f := mustNew(t, cfg, bus, staticMembers{"g": members, "bounce": members[:3]}, places[id], d)
		f.ackTick = 5 * time.Millisecond
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		nodes[id] = &ackNode{f: f, d: d}
	}
	check := func(step string) map[string]Stats {
		t.Helper()
		out := map[string]Stats{}
		for _, id := range ids {
			out[id] = checkStatsMatch(t, step+" "+id, nodes[id].f, regs[id])
		}
		return out
	}
	check("start")
	n1 := nodes["n1"].f
	ctx := context.Background()

	// QoS 1 to a group, with n3's confirmation withheld until its gate opens;
	// a direct message; a group message bounced to the hop limit.
	gate := make(chan struct{})
	nodes["n3"].d.setGate(gate)
	r := make(receipts, 4)
	if err := n1.ForwardAcked(&message.Message{ID: 1, Kind: message.Group, To: "g", QoS: 1}, r, 1); err != nil {
		t.Fatal(err)
	}
	if err := n1.Forward(ctx, &message.Message{ID: 2, Kind: message.Direct, To: "bob"}); err != nil {
		t.Fatal(err)
	}
	if err := n1.Forward(ctx, &message.Message{ID: 3, Kind: message.Group, To: "bounce"}); err != nil {
		t.Fatal(err)
	}
	close(gate)
	r.waitTag(t, 1)
	// The bounced message comes back to n1 through the bus on its own
	// time, after the receipt maybe.
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := n1.Stats().HopLimitDrops; n != 1 {
			return fmt.Errorf("hop limit drops %d", n)
		}
		return nil
	})
	st := check("delivered")
	if s := st["n3"]; s.AcksWithheld != 1 || s.AcksSent == 0 {
		t.Errorf("n3: %+v", s)
	}
	if s := st["n1"]; s.GroupMessages != 2 || s.DirectMessages != 1 || s.HopLimitDrops != 1 {
		t.Errorf("n1: %+v", s)
	}
	if s := st["n2"]; s.Recipients == 0 {
		t.Errorf("n2: %+v", s)
	}

	// A confirmation that never comes, one withheld past AckWithhold, an
	// envelope that does not decode, a publish the bus refuses.
	never := make(chan struct{}) // opened only at cleanup, so no goroutine outlives the test
	t.Cleanup(func() { close(never) })
	nodes["n2"].d.setGate(never)
	if err := n1.ForwardAcked(&message.Message{ID: 4, Kind: message.Direct, To: "ghost-user", QoS: 1}, r, 4); err != nil {
		t.Fatal(err)
	}
	if err := n1.ForwardAcked(&message.Message{ID: 5, Kind: message.Direct, To: "bob", QoS: 1}, r, 5); err != nil {
		t.Fatal(err)
	}
	mem.Publish(Subject("test", "n1"), []byte{1, 2, 3})
	if err := n1.Forward(ctx, &message.Message{ID: 6, Kind: message.Direct, To: "lost-user"}); err == nil {
		t.Fatalf("forward to lost: %v", err)
	}
	// n2 withholds 5's confirmation: past AckWithhold it sends it anyway, in
	// time for n1's wait; AckTimeout later n1 gives up on 4.
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if n := nodes["n2"].f.Stats().AcksWithheld; n != 1 {
			return fmt.Errorf("n2 withholds %d confirmations, want 1", n)
		}
		return nil
	})
	clock.advance(time.Hour + time.Second)
	r.waitTag(t, 5)
	clock.advance(time.Hour)
	r.waitTag(t, 4)
	st = check("timeouts")
	if s := st["n1"]; s.AckTimeouts != 1 || s.DecodeErrors != 1 || s.PublishErrors != 1 {
		t.Errorf("n1: %+v", s)
	}
	if s := st["n2"]; s.WithholdTimeouts != 1 {
		t.Errorf("n2: %+v", s)
	}

	// alice is present on n2, homed at n1: n1 keeps an attach record and sends
	// her messages on to n2.
	nodes["n2"].f.Arrived("alice")
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n := n1.Stats().AttachRecords; n != 1 {
			return fmt.Errorf("%d attach records", n)
		}
		return nil
	})
	if err := nodes["n3"].f.Forward(ctx, &message.Message{ID: 7, Kind: message.Direct, To: "alice"}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n := n1.Stats().AttachForwards; n != 1 {
			return fmt.Errorf("%d attach forwards", n)
		}
		return nil
	})
	check("attached")

	// n2 watches a topic filter and gets n1's topic message (its Deliverer
	// takes no topic messages: counted and dropped).
	if err := nodes["n2"].f.Watch("t/#"); err != nil {
		t.Fatal(err)
	}
	if err := n1.Forward(ctx, &message.Message{ID: 8, Kind: message.Topic, To: "t/x"}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n := nodes["n2"].f.Stats().TopicEnvelopesReceived; n != 1 {
			return fmt.Errorf("%d topic envelopes received", n)
		}
		return nil
	})
	st = check("topics")
	if s := st["n1"]; s.TopicMessages != 1 || s.TopicEnvelopesSent != 1 {
		t.Errorf("n1: %+v", s)
	}
	if s := st["n2"]; s.TopicFilters != 1 {
		t.Errorf("n2: %+v", s)
	}
}
