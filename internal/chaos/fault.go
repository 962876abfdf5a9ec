package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fault is one step of a fault schedule: at At (after the traffic
// started) do Action to Target. A step starts at its time or when the
// step before it has finished, whichever is later. Actions (Apply):
//
//	kill9  SIGKILL; a node: wait until the others see it gone
//	term   SIGTERM, then wait for the process to exit
//	stop   SIGSTOP
//	cont   a node: wait until the others declared it dead (so a pause
//	       always outlasts the failure detector); SIGCONT, then wait
//	       until it is back
//	start  restart with the same command line, data dir and ports, and
//	       wait until it is back (ready and in the ring, or JetStream
//	       healthy)
//
// Targets are names Cluster.Resolve maps when the step runs.
type Fault struct {
	At     time.Duration // in the JSON: at_s, seconds
	Action string
	Target string
}

// Disruptive reports whether f starts a fault (rather than ending one).
func (f Fault) Disruptive() bool {
	return f.Action == "kill9" || f.Action == "term" || f.Action == "stop"
}

// faultJSON is a Fault in the JSON: its time in seconds.
type faultJSON struct {
	At     float64 `json:"at_s"`
	Action string  `json:"action"`
	Target string  `json:"target"`
}

func (f Fault) toJSON() faultJSON { return faultJSON{f.At.Seconds(), f.Action, f.Target} }

func (j faultJSON) fault() Fault { return Fault{seconds(j.At), j.Action, j.Target} }

// seconds is s seconds, to the millisecond.
func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

// MarshalJSON writes At in seconds.
func (f Fault) MarshalJSON() ([]byte, error) { return json.Marshal(f.toJSON()) }

// UnmarshalJSON reads At in seconds.
func (f *Fault) UnmarshalJSON(b []byte) error {
	var j faultJSON
	err := json.Unmarshal(b, &j)
	*f = j.fault()
	return err
}

// FaultsHelp documents the syntax of ParseFaults.
const FaultsHelp = `comma-separated steps TIME:ACTION:TARGET, TIME after the traffic started (Go duration, e.g. 10s).
ACTION: kill9 (SIGKILL; a node: wait until the others see it gone), term (SIGTERM, wait for the exit),
stop (SIGSTOP), cont (a node: wait until the others declared it dead, then SIGCONT and wait until it is back),
start (restart with the same flags, data dir and ports; wait until ready and back in the ring / JetStream healthy).
TARGET: n1..nN (pushring nodes), nats1..nats3 (NATS servers), nats-leader (the JetStream meta leader when
the step runs; later steps naming it mean the same server). A step starts at its time or when the step before
it is done, whichever is later; steps must follow each process's life (kill9/term/stop a running one, cont a
stopped one, start an exited one)`

// DefaultFaults covers kill -9 and restart, SIGTERM and restart,
// SIGSTOP/SIGCONT of a node, and a kill -9 and restart of the JetStream
// meta leader.
const DefaultFaults = "10s:kill9:n2,18s:start:n2,25s:term:n3,30s:start:n3,35s:stop:n1,43s:cont:n1,50s:kill9:nats-leader,55s:start:nats-leader"

// ParseFaults parses a schedule (FaultsHelp) for a cluster of nodes
// pushring nodes and three NATS servers, and checks that its steps follow
// each process's life.
func ParseFaults(s string, nodes int) ([]Fault, error) {
	var out []Fault
	state := map[string]string{} // target → "run", "stop", "down"; "": run
	var last time.Duration
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("fault %q: want TIME:ACTION:TARGET", part)
		}
		at, err := time.ParseDuration(f[0])
		if err != nil || at < 0 {
			return nil, fmt.Errorf("fault %q: bad time %q", part, f[0])
		}
		if at < last {
			return nil, fmt.Errorf("fault %q: steps must be in time order", part)
		}
		last = at
		action, target := f[1], f[2]
		valid := target == "nats-leader"
		if n, ok := strings.CutPrefix(target, "nats"); ok && !valid {
			i, err := strconv.Atoi(n)
			valid = err == nil && i >= 1 && i <= 3
		} else if n, ok := strings.CutPrefix(target, "n"); ok && !valid {
			i, err := strconv.Atoi(n)
			valid = err == nil && i >= 1 && i <= nodes
		}
		if !valid {
			return nil, fmt.Errorf("fault %q: unknown target %q (n1..n%d, nats1..nats3, nats-leader)", part, target, nodes)
		}
		st := state[target]
		next := ""
		switch action {
		case "kill9", "term":
			if st == "" || st == "run" {
				next = "down"
			}
		case "stop":
			if st == "" || st == "run" {
				next = "stop"
			}
		case "cont":
			if st == "stop" {
				next = "run"
			}
		case "start":
			if st == "down" {
				next = "run"
			}
		default:
			return nil, fmt.Errorf("fault %q: unknown action %q (kill9, term, stop, cont, start)", part, action)
		}
		if next == "" {
			return nil, fmt.Errorf("fault %q: %s cannot %s (it is %s then)", part, target, action,
				map[string]string{"": "running", "run": "running", "stop": "stopped", "down": "not running"}[st])
		}
		state[target] = next
		out = append(out, Fault{At: at, Action: action, Target: target})
	}
	return out, nil
}

// Event is a step as it ran: when it began and ended (since the traffic
// started), the target it resolved to, what it observed, and its error.
type Event struct {
	Fault
	Resolved   string
	Began, End time.Duration
	Note       string
	Error      string
}

// eventJSON is an Event in the JSON: the step's fields next to the
// event's (Fault's own methods would otherwise stand for the whole).
type eventJSON struct {
	faultJSON
	Resolved string  `json:"resolved"`
	BeganS   float64 `json:"began_s"`
	EndS     float64 `json:"end_s"`
	Note     string  `json:"note,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// MarshalJSON writes the times in seconds, next to the step's fields.
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(eventJSON{e.Fault.toJSON(), e.Resolved, e.Began.Seconds(), e.End.Seconds(), e.Note, e.Error})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (e *Event) UnmarshalJSON(b []byte) error {
	var j eventJSON
	err := json.Unmarshal(b, &j)
	*e = Event{Fault: j.fault(), Resolved: j.Resolved, Began: seconds(j.BeganS), End: seconds(j.EndS), Note: j.Note, Error: j.Error}
	return err
}

// Play plays schedule from start (the traffic's start) on, a timetable:
// it calls apply for each step once its time has come and the step before
// it is done, and done (if not nil) with each step as it ran. It stops at
// the first step that fails, with that step's error, or when ctx ends.
// apply returns the resolved target and a note (Cluster.Apply).
func Play(ctx context.Context, start time.Time, schedule []Fault, apply func(Fault) (string, string, error), done func(Event)) ([]Event, error) {
	var out []Event
	for _, f := range schedule {
		if wait := f.At - time.Since(start); wait > 0 {
			select { // the clock is what a schedule is about
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		ev := Event{Fault: f, Began: time.Since(start)}
		resolved, note, err := apply(f)
		ev.Resolved, ev.Note, ev.End = resolved, note, time.Since(start)
		if err != nil {
			ev.Error = err.Error()
		}
		if done != nil {
			done(ev)
		}
		out = append(out, ev)
		if err != nil {
			return out, fmt.Errorf("step %s:%s:%s: %w", f.At, f.Action, f.Target, err)
		}
	}
	return out, nil
}
