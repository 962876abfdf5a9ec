package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAnalyze: the chaos report's arithmetic on a made-up run. Two
// members (0 and 1); six group messages (g3 never acknowledged) and two
// direct ones, d0 for member 0 and d1 for member 1; a kill at 10 s.
// Member 0 misses g3 (not owed), gets g4 twice and d0; member 1 gets g2
// before g1 (out of order), never g4 (lost, in the fault's window), not
// d1 (lost) but d0 (a stray: not for it). Member 1 is disconnected at
// 11 s, reconnects at 12 s and gets its next message at 13 s: 3 s after
// the fault.
func TestAnalyze(t *testing.T) {
	s := time.Second
	rec := func(made time.Duration, acked bool) Record {
		r := Record{Made: made}
		if acked {
			r.Acked = made + 10*time.Millisecond
		}
		return r
	}
	grecs := []Record{rec(1*s, true), rec(2*s, true), rec(3*s, true), rec(4*s, false), rec(11*s, true), rec(12*s, true)}
	drecs := []Record{rec(5*s, true), rec(14*s, true)}
	a, b := NewMember("a", 0, 2, time.Time{}), NewMember("b", 1, 2, time.Time{})
	for _, d := range []struct {
		m       *Member
		group   bool
		payload string
		at      time.Duration
	}{
		{a, true, "g 0", 1 * s}, {a, true, "g 1", 2 * s}, {a, true, "g 2", 3 * s}, {a, false, "d 0", 5 * s},
		{a, true, "g 4", 11 * s}, {a, true, "g 4", 11 * s}, {a, true, "g 5", 12 * s},
		{b, true, "g 0", 1 * s}, {b, true, "g 2", 3 * s}, {b, true, "g 1", 4 * s}, {b, true, "g 5", 13 * s},
		{b, false, "d 0", 6 * s}, // for member 0: a stray
		{b, true, "w 1", 0},      // a warm-up message: not counted
		{b, true, "x", 0},        // unreadable: a stray
	} {
		topic := d.m.Direct
		if d.group {
			topic = d.m.GroupPrefix + "all"
		}
		d.m.Receive([]byte(topic), []byte(d.payload), d.at)
	}
	if a.Warm() || !b.Warm() {
		t.Errorf("warm: a %v, b %v; want only b (it got the warm-up message)", a.Warm(), b.Warm())
	}
	b.lost, b.conns = []time.Duration{11 * s}, []time.Duration{0, 12 * s}
	events := []Event{
		{Fault: Fault{Action: "kill9", Target: "nats-leader"}, Resolved: "nats2", Began: 10 * s},
		{Fault: Fault{Action: "start", Target: "nats-leader"}, Resolved: "nats2", Began: 15 * s},
	}
	wins := Windows(events, 0, 20*s)
	if len(wins) != 2 || wins[1].Name != "kill9 nats2 (nats-leader)" {
		t.Fatalf("windows %+v, want steady and kill9 nats2", wins)
	}
	total := Analyze([]*Member{a, b}, grecs, drecs, wins)
	type counts struct{ gMade, gAcked, dMade, dAcked, expected, got, lostG, lostD, dup, ooo, disc int }
	got := func(w *Window) counts {
		return counts{w.GroupMade, w.GroupAcked, w.DirectMade, w.DirectAcked, w.Expected, w.Got, w.LostGroup, w.LostDirect, w.Duplicates, w.OutOfOrder, w.Disconnected}
	}
	for _, tc := range []struct {
		w    *Window
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
	if total.Lost != 2 || total.Strays != 2 {
		t.Errorf("total lost %d, strays %d, want 2 and 2", total.Lost, total.Strays)
	}
	if !slices.Equal(wins[1].firsts, []time.Duration{3 * s}) {
		t.Errorf("first deliveries after reconnect %v, want [3s]", wins[1].firsts)
	}
	// The longest silences in the fault window (10 s to 20 s): member 0's
	// last group message came at 12 s, member 1's at 13 s.
	if !slices.Equal(wins[1].silences, []time.Duration{8 * s, 7 * s}) {
		t.Errorf("silences in the fault window %v, want [8s 7s]", wins[1].silences)
	}
	line := wins[1].Line()
	if want := "kill9 nats2 (nats-leader) at 10s: lost=2 (group 1, direct 1) dup=1 reordered=0; group 2 made 2 acked, direct 1 made 1 acked; " +
		"disconnected 1, reconnect_first_delivery max=3s p50=3s min=3s; longest silence max=8s p50=8s"; line != want {
		t.Errorf("window line\n%q, want\n%q", line, want)
	}
	if line := total.Line(); strings.Contains(line, "silence") || !strings.HasPrefix(line, "lost=2 (group 1, direct 1) dup=1 reordered=1;") {
		t.Errorf("total line %q", line)
	}
	wins[1].Finish(0)
	if p := wins[1].ReconnectFirstMaxms; p == nil || *p != 3000 || wins[1].FromS != 10 || wins[1].ToS != 20 {
		t.Errorf("finished window: reconnect-to-delivery max %v ms, from %v s to %v s; want 3000 ms, 10 to 20 s", p, wins[1].FromS, wins[1].ToS)
	}
	n, sample := Missing([]*Member{a, b}, grecs, drecs, 0)
	if n != 2 || sample != "b lacks g 4 (made at 11s), b lacks d 1 (made at 14s)" {
		t.Errorf("Missing: %d (%s), want 2", n, sample)
	}
}

// TestDirectTarget: direct messages go to DirectTargets members spread
// over the run, in turn; a run smaller than that has each member in turn.
func TestDirectTarget(t *testing.T) {
	for _, tc := range []struct{ seq, members, want int }{
		{0, 300, 0}, {1, 300, 10}, {29, 300, 290}, {30, 300, 0}, {1, 60, 2}, {3, 2, 1}, {4, 2, 0},
	} {
		if got := DirectTarget(tc.seq, tc.members); got != tc.want {
			t.Errorf("DirectTarget(%d, %d) = %d, want %d", tc.seq, tc.members, got, tc.want)
		}
	}
}
