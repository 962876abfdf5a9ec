package bench

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestParseFaults: the default schedule parses; steps that do not follow
// a process's life, unknown targets and actions, and times out of order
// are refused with a message naming the step.
func TestParseFaults(t *testing.T) {
	fs, err := ParseFaults(DefaultFaults, 3)
	if err != nil {
		t.Fatalf("default schedule: %v", err)
	}
	if len(fs) != 8 || fs[0] != (Fault{10 * time.Second, "kill9", "n2"}) || fs[7] != (Fault{55 * time.Second, "start", "nats-leader"}) {
		t.Errorf("default schedule parsed as %+v", fs)
	}
	for _, tc := range []struct{ in, want string }{
		{"1s:kill9:n2,2s:kill9:n2", "cannot kill9 (it is not running then)"},
		{"1s:start:n1", "cannot start (it is running then)"},
		{"1s:cont:nats1", "cannot cont (it is running then)"},
		{"1s:stop:n1,2s:term:n1", "cannot term (it is stopped then)"},
		{"1s:kill9:n4", `unknown target "n4"`},
		{"1s:kill9:nats4", `unknown target "nats4"`},
		{"1s:kill9:x", `unknown target "x"`},
		{"1s:nuke:n1", `unknown action "nuke"`},
		{"2s:kill9:n1,1s:start:n1", "time order"},
		{"soon:kill9:n1", "bad time"},
		{"1s:kill9", "TIME:ACTION:TARGET"},
	} {
		_, err := ParseFaults(tc.in, 3)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFaults(%q) = %v, want an error with %q", tc.in, err, tc.want)
		}
	}
	if fs, err := ParseFaults("1s:stop:nats-leader, 3s:cont:nats-leader,4s:term:n3,9s:start:n3", 3); err != nil || len(fs) != 4 {
		t.Errorf("a valid schedule: %v, %v", fs, err)
	}
}

// TestChaosAnalyze: the chaos report's arithmetic on a made-up run. Two
// members (0 and 1); six group messages (g3 never acknowledged) and two
// direct ones, d0 for member 0 and d1 for member 1; a kill at 10 s. Member
// 0 misses g3 (not owed), gets g4 twice and d0; member 1 gets g2 before g1
// (out of order), never g4 (lost, in the fault's window), not d1 (lost)
// but d0 (a stray: not for it). Member 1 is disconnected at 11 s,
// reconnects at 12 s and gets its next message at 13 s: 3 s after the
// fault.
func TestChaosAnalyze(t *testing.T) {
	s := time.Second
	rec := func(made time.Duration, acked bool) pubRecord {
		r := pubRecord{made: made}
		if acked {
			r.acked = made + 10*time.Millisecond
		}
		return r
	}
	grecs := []pubRecord{rec(1*s, true), rec(2*s, true), rec(3*s, true), rec(4*s, false), rec(11*s, true), rec(12*s, true)}
	drecs := []pubRecord{rec(5*s, true), rec(14*s, true)}
	target := func(seq int) int { return seq % 2 }
	member := func(idx int, id string) *chaosMember {
		m := &chaosMember{idx: idx, direct: "/private/" + id, groupPrefix: "/private/" + id + "/group/"}
		m.isTarget = func(seq int) bool { return target(seq) == m.idx }
		return m
	}
	a, b := member(0, "a"), member(1, "b")
	for _, d := range []struct {
		m       *chaosMember
		group   bool
		payload string
		at      time.Duration
	}{
		{a, true, "g 0", 1 * s}, {a, true, "g 1", 2 * s}, {a, true, "g 2", 3 * s}, {a, false, "d 0", 5 * s},
		{a, true, "g 4", 11 * s}, {a, true, "g 4", 11 * s}, {a, true, "g 5", 12 * s},
		{b, true, "g 0", 1 * s}, {b, true, "g 2", 3 * s}, {b, true, "g 1", 4 * s}, {b, true, "g 5", 13 * s},
		{b, false, "d 0", 6 * s}, // for member 0: a stray
		{b, true, "w 1", 0},      // a warm-up message: not counted
	} {
		topic := d.m.direct
		if d.group {
			topic = d.m.groupPrefix + "g"
		}
		d.m.receive([]byte(topic), []byte(d.payload), d.at)
	}
	if !b.warm {
		t.Error("the warm-up message did not warm member 1")
	}
	b.lost, b.conns = []time.Duration{11 * s}, []time.Duration{0, 12 * s}
	events := []FaultEvent{{Fault: Fault{Action: "kill9", Target: "nats-leader"}, Resolved: "nats2", BeganS: 10}, {Fault: Fault{Action: "start", Target: "nats-leader"}, Resolved: "nats2", BeganS: 15}}
	wins := chaosWindows(events, 0, 20*s)
	if len(wins) != 2 || wins[1].Name != "kill9 nats2 (nats-leader)" {
		t.Fatalf("windows %+v, want steady and kill9 nats2", wins)
	}
	total := chaosAnalyze([]*chaosMember{a, b}, grecs, drecs, target, wins)
	type counts struct{ gMade, gAcked, dMade, dAcked, expected, got, lostG, lostD, dup, ooo, disc int }
	got := func(w *ChaosWindow) counts {
		return counts{w.GroupMade, w.GroupAcked, w.DirectMade, w.DirectAcked, w.Expected, w.Got, w.LostGroup, w.LostDirect, w.Duplicates, w.OutOfOrder, w.Disconnected}
	}
	for _, tc := range []struct {
		w    *ChaosWindow
		want counts
	}{
		{wins[0], counts{gMade: 4, gAcked: 3, dMade: 1, dAcked: 1, expected: 7, got: 7, ooo: 1}},
		{wins[1], counts{gMade: 2, gAcked: 2, dMade: 1, dAcked: 1, expected: 5, got: 3, lostG: 1, lostD: 1, dup: 1, disc: 1}},
		{total, counts{gMade: 6, gAcked: 5, dMade: 2, dAcked: 2, expected: 12, got: 10, lostG: 1, lostD: 1, dup: 1, ooo: 1, disc: 1}},
	} {
		if g := got(tc.w); g != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.w.Name, g, tc.want)
		}
	}
	if total.Lost != 2 || total.Strays != 1 {
		t.Errorf("total lost %d, strays %d, want 2 and 1", total.Lost, total.Strays)
	}
	if !slices.Equal(wins[1].firsts, []time.Duration{3 * s}) {
		t.Errorf("first deliveries after reconnect %v, want [3s]", wins[1].firsts)
	}
	wins[1].finish(0)
	if p := wins[1].ReconnectFirstMaxms; p == nil || *p != 3000 {
		t.Errorf("reconnect-to-delivery max %v ms, want 3000", p)
	}
	if n := chaosMissing([]*chaosMember{a, b}, grecs, drecs); n != 2 {
		t.Errorf("chaosMissing: %d, want 2", n)
	}
}

// TestChaosReportOutput: a chaos row survives the JSON round trip that
// pushreport makes, and the HTML page and the text table print its row
// and every window (the kill's, by name, with its lost count).
func TestChaosReportOutput(t *testing.T) {
	p50, maxMs := 120.0, 340.0
	res := Result{System: "pushring-chaos", Scenario: "chaos", QoS: 1, Members: 10, Nodes: 3, Rate: 40, Sent: 90, Deliveries: 850, Lost: 7,
		Chaos: &ChaosReport{DirectRate: 20, TrafficS: 20,
			Events: []FaultEvent{{Fault: Fault{At: 5 * time.Second, Action: "kill9", Target: "n2"}, Resolved: "n2", BeganS: 5, EndS: 6.5, Note: "declared dead after 1.5s"}},
			Windows: []ChaosWindow{{Name: "steady", ToS: 5, GroupAcked: 40, Expected: 400, Got: 400},
				{Name: "kill9 n2", FromS: 5, ToS: 20, Fault: true, GroupAcked: 45, DirectAcked: 5, Expected: 455, Got: 448, Lost: 7,
					Disconnected: 3, ReconnectFirstP50ms: &p50, ReconnectFirstMaxms: &maxMs}},
			Total: ChaosWindow{Name: "total", Expected: 855, Got: 848, Lost: 7}}}
	b, err := json.Marshal(&Report{Results: []Result{res}})
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || len(back.Results) != 1 || back.Results[0].Chaos == nil {
		t.Fatalf("round trip: %v\n%s", err, b)
	}
	if got := back.Results[0].Chaos.Events[0]; got.At != 5*time.Second || got.Resolved != "n2" || got.EndS != 6.5 {
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
