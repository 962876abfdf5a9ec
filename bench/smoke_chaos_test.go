package bench_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// smokeChaos is the chaos row's own part of pushbench's JSON.
type smokeChaos struct {
	Chaos *struct {
		Events []struct {
			Action, Resolved, Error string
		} `json:"events"`
		Windows []smokeChaosWindow `json:"windows"`
		Total   smokeChaosWindow   `json:"total"`
	} `json:"chaos"`
}

type smokeChaosWindow struct {
	Name                string   `json:"name"`
	Fault               bool     `json:"fault"`
	GroupAcked          int      `json:"group_acked"`
	DirectAcked         int      `json:"direct_acked"`
	Expected            int      `json:"expected"`
	Got                 int      `json:"got"`
	Lost                *int     `json:"lost"`
	Disconnected        int      `json:"disconnected"`
	ReconnectFirstP50ms *float64 `json:"reconnect_first_delivery_p50_ms"`
}

// TestSmokeChaos runs the chaos scenario tiny: 2 nodes on 3 NATS servers,
// 20 persistent members, QoS 1 group and direct traffic for 10 s, n2
// killed with SIGKILL at 3 s and restarted at 6 s. The report is
// complete (the schedule ran, a steady window and the kill's window, the
// members homed on n2 were disconnected and got deliveries again), every
// acknowledged message reached every recipient (lost 0), and the HTML
// report is written. About 20 s (the NATS server is built once into the
// user cache dir first: a minute more the first time).
func TestSmokeChaos(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report.html")
	rep, raw := runPushbench(t, 4*time.Minute, 1,
		"--scenario", "chaos", "--nodes", "2", "--members", "20", "--faults", "3s:kill9:n2,6s:start:n2",
		"--duration", "10s", "--drain", "20s", "--report", report)
	if st, err := os.Stat(report); err != nil || st.Size() == 0 {
		t.Errorf("--report: %v (%v)", st, err)
	}
	r := rep.Results[0]
	if r.System != "pushring-chaos" || r.Scenario != "chaos" || r.Nodes != 2 || r.Members != 20 {
		t.Errorf("system %q scenario %q nodes %d members %d", r.System, r.Scenario, r.Nodes, r.Members)
	}
	var c struct {
		Results []smokeChaos `json:"results"`
	}
	if err := json.Unmarshal(raw, &c); err != nil || len(c.Results) != 1 || c.Results[0].Chaos == nil {
		t.Fatalf("no chaos report (%v):\n%s", err, raw)
	}
	ch := c.Results[0].Chaos
	if len(ch.Events) != 2 || ch.Events[0].Action != "kill9" || ch.Events[0].Resolved != "n2" || ch.Events[1].Action != "start" {
		t.Errorf("events %+v, want kill9 n2 then start n2", ch.Events)
	}
	for _, ev := range ch.Events {
		if ev.Error != "" {
			t.Errorf("step %s %s failed: %s", ev.Action, ev.Resolved, ev.Error)
		}
	}
	if len(ch.Windows) != 2 || ch.Windows[0].Name != "steady" || ch.Windows[1].Name != "kill9 n2" || !ch.Windows[1].Fault {
		t.Fatalf("windows %+v, want steady and kill9 n2", ch.Windows)
	}
	expected := 0
	for _, w := range ch.Windows {
		if w.GroupAcked == 0 || w.DirectAcked == 0 || w.Lost == nil {
			t.Errorf("window %s: %d group and %d direct messages acknowledged, lost %v: the traffic did not flow through it",
				w.Name, w.GroupAcked, w.DirectAcked, w.Lost)
		}
		expected += w.Expected
	}
	tot := ch.Total
	switch {
	case tot.Expected != expected || tot.Expected != (tot.GroupAcked*20+tot.DirectAcked):
		t.Errorf("total expected %d, windows' sum %d, acknowledged %d group × 20 + %d direct", tot.Expected, expected, tot.GroupAcked, tot.DirectAcked)
	case tot.Lost == nil || *tot.Lost != 0 || tot.Got != tot.Expected || r.Lost == nil || *r.Lost != 0:
		t.Errorf("lost %v (row %v), got %d of %d: acknowledged messages did not reach their recipients", tot.Lost, r.Lost, tot.Got, tot.Expected)
	case ch.Windows[1].Disconnected == 0 || ch.Windows[1].ReconnectFirstP50ms == nil:
		t.Errorf("kill9 n2: %d members disconnected, reconnect-to-delivery %v: the fault did not hit the members homed there",
			ch.Windows[1].Disconnected, ch.Windows[1].ReconnectFirstP50ms)
	}
}
