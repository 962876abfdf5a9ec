package bench_test

import (
	"testing"
	"time"
)

// TestSmokeMQTT5 runs pushbench --mqtt5: a QoS 1 fanout (1 × 40, 2 s at
// 200 msgs/s) whose clients all speak MQTT 5.0, in this process and in
// worker processes (--procs 2). Every delivery arrives once and the
// result says 5.0.
func TestSmokeMQTT5(t *testing.T) {
	for _, procs := range []string{"1", "2"} {
		t.Run("procs-"+procs, func(t *testing.T) {
			rep, _ := runPushbench(t, 2*time.Minute, 1, "--mqtt5", "--procs", procs, "--scenario", "fanout", "--members", "40",
				"--qos", "1", "--rate", "200", "--duration", "2s", "--warmup", "500ms")
			r := rep.Results[0]
			members := uint64(40)
			if procs != "1" {
				members = 0 // as before: with worker processes the whole run is TestSmokeProcs' to count
			}
			if !r.MQTT5 || r.Connections != 41 {
				t.Errorf("mqtt5 %v connections %d", r.MQTT5, r.Connections)
			} else if err := r.fannedOut(members); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestSmokeQoS2 runs pushbench --qos 2 (publisher and members at QoS 2,
// 3.1.1 and 5.0): every delivery arrives once, at no loss.
func TestSmokeQoS2(t *testing.T) {
	for _, v5 := range []bool{false, true} {
		args := []string{"--scenario", "fanout", "--members", "40", "--qos", "2", "--rate", "200", "--duration", "2s", "--warmup", "500ms"}
		if v5 {
			args = append(args, "--mqtt5")
		}
		rep, _ := runPushbench(t, 2*time.Minute, 1, args...)
		r := rep.Results[0]
		if r.QoS != 2 {
			t.Errorf("qos %d", r.QoS)
		} else if err := r.fannedOut(40); err != nil {
			t.Error(err)
		}
	}
}

// TestSmokeRuleTopics runs pushbench --rule-topics: a node with topic
// rules, members subscribed to a plain topic, QoS 1: every delivery
// arrives once, and the row says so.
func TestSmokeRuleTopics(t *testing.T) {
	rep, _ := runPushbench(t, 2*time.Minute, 1, "--rule-topics", "--scenario", "fanout", "--members", "40",
		"--qos", "1", "--rate", "200", "--duration", "2s", "--warmup", "500ms")
	r := rep.Results[0]
	if r.System != "pushring+topics" || r.Connections != 41 {
		t.Errorf("system %q connections %d", r.System, r.Connections)
	} else if err := r.fannedOut(40); err != nil {
		t.Error(err)
	}
}
