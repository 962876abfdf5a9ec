package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/chaos"
)

// TestChaosReportOutput: a chaos row survives the JSON round trip that
// pushreport makes, and the HTML page and the text table print its row
// and every window (the kill's, by name, with its lost count).
func TestChaosReportOutput(t *testing.T) {
	p50, maxMs := 120.0, 340.0
	res := Result{System: "pushring-chaos", Scenario: "chaos", QoS: 1, Members: 10, Nodes: 3, Rate: 40, Sent: 90, Deliveries: 850, Lost: 7,
		Chaos: &ChaosReport{DirectRate: 20, TrafficS: 20,
			Events: []chaos.Event{{Fault: chaos.Fault{At: 5 * time.Second, Action: "kill9", Target: "n2"}, Resolved: "n2", Began: 5 * time.Second, End: 6500 * time.Millisecond, Note: "declared dead after 1.5s"}},
			Windows: []chaos.Window{{Name: "steady", ToS: 5, GroupAcked: 40, Expected: 400, Got: 400},
				{Name: "kill9 n2", FromS: 5, ToS: 20, Fault: true, GroupAcked: 45, DirectAcked: 5, Expected: 455, Got: 448, Lost: 7,
					Disconnected: 3, ReconnectFirstP50ms: &p50, ReconnectFirstMaxms: &maxMs}},
			Total: chaos.Window{Name: "total", Expected: 855, Got: 848, Lost: 7}}}
	b, err := json.Marshal(&Report{Results: []Result{res}})
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Results) != 1 || back.Results[0].Chaos == nil {
		t.Fatalf("round trip: %v\n%s", err, b)
	}
	if got := back.Results[0].Chaos.Events[0]; got.At != 5*time.Second || got.Resolved != "n2" || got.End != 6500*time.Millisecond {
		t.Errorf("event after the round trip: %+v", got)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, "t", &back); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pushring-chaos", "kill9 n2", "<td>448</td><td>7</td>", "20 direct msg/s", "declared dead after 1.5s"} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	var table bytes.Buffer
	if !back.WriteScenarioTable(&table) {
		t.Fatal("WriteScenarioTable did not take the chaos row")
	}
	lines := strings.Split(table.String(), "\n")
	if len(lines) < 5 || !strings.Contains(lines[2], "kill9 n2") || !strings.Contains(lines[2], " 448     7 ") || !strings.HasPrefix(strings.TrimSpace(lines[3]), "total") {
		t.Errorf("table:\n%s", table.String())
	}
}
