package bench_test

import (
	"testing"
	"time"
)

// TestSmokeChurn runs a 2 s churn with 4 workers (20 users log in, then 4
// devices reconnect) against a node pushbench starts: logins and connects
// were measured, no errors, valid JSON.
func TestSmokeChurn(t *testing.T) {
	rep, _ := runPushbench(t, time.Minute, 1,
		"--scenario", "churn", "--users", "20", "--workers", "4",
		"--duration", "2s", "--warmup", "300ms")
	r := rep.Results[0]
	switch {
	case r.System != "pushring" || r.Scenario != "churn" || r.Workers != 4:
		t.Errorf("system %q scenario %q workers %d", r.System, r.Scenario, r.Workers)
	case r.LoginsPerS == nil || *r.LoginsPerS <= 0 || r.LoginP99ms == nil || *r.LoginP99ms <= 0:
		t.Errorf("logins/s %v, login p99 %v: no logins measured", r.LoginsPerS, r.LoginP99ms)
	case r.ConnectsPerS == nil || *r.ConnectsPerS <= 0 || r.ConnectP99ms == nil || *r.ConnectP99ms <= 0:
		t.Errorf("connects/s %v, connect p99 %v: no connects measured", r.ConnectsPerS, r.ConnectP99ms)
	case r.Errors != 0:
		t.Errorf("%d errors", r.Errors)
	}
}

// TestSmokeCluster runs a 2 s QoS 1 fanout (1 × 40, 100 msgs/s) on one
// node and on a 2-node cluster, both started by pushbench: no loss, no
// duplicates, at most one inter-node envelope per node per group publish.
func TestSmokeCluster(t *testing.T) {
	rep, _ := runPushbench(t, time.Minute, 2,
		"--scenario", "cluster", "--nodes", "2", "--groups", "1", "--members", "40", "--devices", "1",
		"--rate", "100", "--qos", "1", "--duration", "2s", "--warmup", "300ms")
	for i, want := range []struct {
		system string
		nodes  int
	}{{"pushring-single", 1}, {"pushring-cluster", 2}} {
		r := rep.Results[i]
		switch {
		case r.System != want.system || r.Scenario != "cluster" || r.Nodes != want.nodes || len(r.ClusterNodes) != want.nodes:
			t.Errorf("result %d: system %q scenario %q nodes %d (%d listed), want %s with %d", i, r.System, r.Scenario, r.Nodes,
				len(r.ClusterNodes), want.system, want.nodes)
		case r.Sent == 0 || r.DeliveriesPerS <= 0:
			t.Errorf("%s: sent %d deliveries/s %v: nothing measured", r.System, r.Sent, r.DeliveriesPerS)
		case !r.lossless():
			t.Errorf("%s: %s", r.System, r.losses())
		case r.EnvelopesPerPublish == nil || *r.EnvelopesPerPublish > float64(r.Nodes):
			t.Errorf("%s: inter-node envelopes per publish %v, want at most %d", r.System, r.EnvelopesPerPublish, r.Nodes)
		case r.AcksPerPublish == nil:
			t.Errorf("%s: no acks per publish", r.System)
		case r.Nodes == 1 && *r.AcksPerPublish != 0:
			// One node confirms to itself without the bus.
			t.Errorf("%s: %v Ack envelopes per publish on one node, want 0", r.System, *r.AcksPerPublish)
		case r.Nodes > 1 && (*r.AcksPerPublish <= 0 || *r.AcksPerPublish > 2*float64(r.Nodes)):
			t.Errorf("%s: %v Ack envelopes per QoS 1 publish, want some and at most %d", r.System, *r.AcksPerPublish, 2*r.Nodes)
		}
		members := 0
		for _, n := range r.ClusterNodes {
			members += n.Members
		}
		if members != 40 {
			t.Errorf("%s: %d members homed over the nodes, want 40", r.System, members)
		}
	}
	if c := rep.Results[1]; c.ClusterOverSingle == nil || *c.ClusterOverSingle <= 0 {
		t.Errorf("cluster_over_single %v, want > 0", c.ClusterOverSingle)
	}
}
