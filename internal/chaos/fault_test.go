package chaos

import (
	"context"
	"encoding/json"
	"errors"
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

// TestEventJSON: an event keeps its step's fields next to its own, times
// in seconds, and reads back as it was.
func TestEventJSON(t *testing.T) {
	ev := Event{Fault: Fault{At: 5 * time.Second, Action: "kill9", Target: "nats-leader"}, Resolved: "nats2",
		Began: 5250 * time.Millisecond, End: 6500 * time.Millisecond, Note: "declared dead after 1.25s"}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"at_s":5,"action":"kill9","target":"nats-leader","resolved":"nats2","began_s":5.25,"end_s":6.5,"note":"declared dead after 1.25s"}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || back != ev {
		t.Errorf("read back %+v (%v), want %+v", back, err, ev)
	}
}

// TestPlay: steps run in order, none before its time (and a late step
// right after the one before it); a failing step ends the schedule with
// its error, recorded in its event.
func TestPlay(t *testing.T) {
	start := time.Now()
	var ran []string
	apply := func(f Fault) (string, string, error) {
		ran = append(ran, f.Target)
		if f.Action == "fail" {
			return f.Target, "", errors.New("boom")
		}
		if since := time.Since(start); since < f.At {
			t.Errorf("step %s ran at %v, before its time %v", f.Target, since, f.At)
		}
		return f.Target + "!", "noted", nil
	}
	var done []Event
	schedule := []Fault{{0, "kill9", "a"}, {30 * time.Millisecond, "start", "a"}, {10 * time.Millisecond, "fail", "b"}, {0, "stop", "c"}}
	evs, err := Play(context.Background(), start, schedule, apply, func(ev Event) { done = append(done, ev) })
	if err == nil || !strings.Contains(err.Error(), "boom") || strings.Join(ran, ",") != "a,a,b" || len(evs) != 3 || len(done) != 3 {
		t.Fatalf("Play: %v, ran %v, events %+v", err, ran, evs)
	}
	if evs[1].Resolved != "a!" || evs[1].Note != "noted" || evs[1].Began < 30*time.Millisecond || evs[1].End < evs[1].Began || evs[2].Error != "boom" {
		t.Errorf("events %+v", evs)
	}
}
