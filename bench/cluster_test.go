package bench

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseFanoutMetrics(t *testing.T) {
	in := `# HELP pushring_fanout_envelopes_sent_total Envelopes published, by destination node.
# TYPE pushring_fanout_envelopes_sent_total counter
pushring_fanout_envelopes_sent_total{peer="n1"} 12
pushring_fanout_envelopes_sent_total{peer="n2"} 1.234567e+06
pushring_fanout_envelopes_received_total{peer="n2"} 99
pushring_fanout_attach_forwards_total 3
pushring_fanout_acks_sent_total{peer="n3"} 7
`
	m, err := parseFanoutMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.sent) != 2 || m.sent["n1"] != 12 || m.sent["n2"] != 1234567 || m.attach != 3 || len(m.acks) != 1 || m.acks["n3"] != 7 {
		t.Errorf("sent %v attach %d acks %v", m.sent, m.attach, m.acks)
	}
}

func TestFillClusterRatios(t *testing.T) {
	rs := []Result{
		{System: "pushring-single", Scenario: "cluster", DeliveriesPerS: 1000,
			Runs: []Result{{Run: 1, DeliveriesPerS: 1000}, {Run: 2, DeliveriesPerS: 800}}},
		{System: "nats", Scenario: "cluster", DeliveriesPerS: 5000},
		{System: "pushring-cluster", Scenario: "cluster", DeliveriesPerS: 750,
			Runs: []Result{{Run: 2, DeliveriesPerS: 400}, {Run: 1, DeliveriesPerS: 900}}},
	}
	FillClusterRatios(rs)
	if r := rs[2].ClusterOverSingle; r == nil || *r != 0.75 {
		t.Errorf("cluster/single %v, want 0.75", r)
	}
	if r := rs[2].Runs[0].ClusterOverSingle; r == nil || *r != 0.5 {
		t.Errorf("run 2: %v, want 0.5", r)
	}
	if r := rs[2].Runs[1].ClusterOverSingle; r == nil || *r != 0.9 {
		t.Errorf("run 1: %v, want 0.9", r)
	}
	if rs[0].ClusterOverSingle != nil || rs[1].ClusterOverSingle != nil {
		t.Error("ratio set on a row other than the cluster's")
	}
}

// The churn and cluster fields stay out of the other scenarios' JSON.
func TestScenarioFieldsOmitted(t *testing.T) {
	b, err := json.Marshal(Result{System: "pushring", Scenario: "fanout"})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"logins_per_s", "connects_per_s", "workers", "errors", "nodes", "envelopes_per_publish", "cluster_nodes"} {
		if strings.Contains(string(b), `"`+k+`"`) {
			t.Errorf("%s in a fanout row: %s", k, b)
		}
	}
}
