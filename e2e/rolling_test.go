//go:build linux

package e2e

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/chaos"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/ring"
)

// The rolling restart's load: rollingMembers users of group "all", 30
// group messages a second (1,800 member deliveries) and 10 direct ones,
// halved under the race detector (see racePace).
const (
	rollingMembers = 60
	rollingGap     = 3 * time.Second  // traffic before each restart, and after the last
	rollingSettle  = 30 * time.Second // for deliveries after the traffic
	// rollingShutdownTimeout is the nodes' --shutdown-timeout default:
	// a SIGTERM must end the process within it.
	rollingShutdownTimeout = 20 * time.Second
)

var (
	rollingGroupEvery  = racePace(33 * time.Millisecond)
	rollingDirectEvery = racePace(100 * time.Millisecond)
)

// TestRollingRestart: a deploy, one node at a time, under QoS 1 load,
// loses nothing. Three pushring nodes on a cluster of three NATS servers
// (JetStream R3); rollingMembers users of one group hold persistent
// sessions (paho, reconnecting through the addresses their login
// returned); a device publishes numbered QoS 1 group messages and
// another numbered direct messages to every second member in turn, every
// PUBACK recorded. Each node in turn gets SIGTERM, must exit 0 within
// its shutdown timeout, and is restarted with the same data dir; the
// next one goes once it is ready and back in every node's ring, after
// rollingGap of traffic.
//
// Every message that got its PUBACK must reach every member (group) or
// its addressee (direct) at least once, first deliveries in the order
// the publisher sent them: the chaos test's checker, whose report lines
// here start with "rolling:" (per restart: duplicates, and the time from
// the SIGTERM to each disconnected client's first delivery after it
// reconnected). It takes about 60 s.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("a rolling restart of three nodes takes a minute")
	}
	epoch := time.Now()
	cc := newChaosCluster(t, 3)
	nodes := cc.nodes

	r := ring.New(cc.IDs(), ring.DefaultConfig())
	gpub, dpub := "gpub0", "dpub0"
	members := cc.group(epoch, rollingMembers)
	t.Logf("rolling: setup %v; group publisher %s homed on %s, direct publisher %s on %s",
		time.Since(epoch).Round(time.Millisecond), gpub, r.Home(gpub), dpub, r.Home(dpub))

	group, direct := cc.publishers(gpub, dpub, members, rollingGroupEvery, rollingDirectEvery, epoch)
	stopTraffic := chaos.StartTraffic(10*time.Second, group, direct)
	t.Cleanup(stopTraffic)
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error { return chaos.Publishing(group, direct) })
	t0 := time.Now()
	t0d := t0.Sub(epoch)

	// The restarts, one node at a time.
	var events []chaos.Event
	var drains []string
	for _, n := range nodes {
		time.Sleep(rollingGap) // steady traffic between restarts: the load is what is measured
		ev := chaos.Event{Fault: chaos.Fault{Action: "term", Target: n.ID}, Resolved: n.ID, Began: time.Since(t0)}
		sawLeave := watchLeave(cc, n)
		if err := n.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := n.WaitExit(rollingShutdownTimeout + 5*time.Second); err != nil {
			t.Fatal(err)
		}
		took := time.Since(t0) - ev.Began
		// The drain's order: the peers dropped the node before it closed
		// its first client.
		left := <-sawLeave
		firstClosed := firstLoss(members, epoch.Add(t0d+ev.Began))
		if left < 0 {
			t.Errorf("%s: a peer still listed it alive when it exited", n.p.id)
		} else if firstClosed >= 0 && left > firstClosed+leavePoll {
			t.Errorf("%s closed a client %v after the SIGTERM, before both peers had it leave (%v)", n.p.id, firstClosed, left)
		}
		if code := n.ExitCode(); code != 0 {
			t.Errorf("%s exited with status %d after SIGTERM, want 0", n.p.id, code)
		}
		if took > rollingShutdownTimeout {
			t.Errorf("%s took %v to exit after SIGTERM, over its shutdown timeout %v", n.p.id, took, rollingShutdownTimeout)
		}
		drains = append(drains, fmt.Sprintf("%s exited in %v, the peers saw it leave within %v, its first client closed after %v (%s)",
			n.p.id, took.Round(time.Millisecond), left.Round(time.Millisecond), firstClosed.Round(time.Millisecond), shutdownReport(n.Log)))
		if _, _, err := cc.Apply(chaos.Fault{Action: "start", Target: n.ID}); err != nil {
			t.Fatal(err)
		}
		ev.End = time.Since(t0)
		ev.Note = fmt.Sprintf("back in the ring after %v", (ev.End - ev.Began).Round(time.Millisecond))
		t.Logf("rolling step: SIGTERM %s at %v, %s", n.p.id, ev.Began.Round(time.Millisecond), ev.Note)
		events = append(events, ev)
	}
	time.Sleep(rollingGap)
	trafficEnd := time.Since(epoch)
	stopTraffic()

	grecs, drecs := group.Records(), direct.Records()
	settled := chaos.Settle(nil, rollingSettle, members, grecs, drecs)

	wins := chaos.Windows(events, t0d, trafficEnd)
	total := chaos.Analyze(members, grecs, drecs, wins)
	for _, d := range drains {
		t.Logf("rolling: drain: %s", d)
	}
	for _, w := range wins {
		t.Logf("rolling: %s", w.Line())
	}
	t.Logf("rolling: total %s; traffic %v, settled in %v, %d members, publishers reconnected %d (group) and %d (direct) times",
		total.Line(), (trafficEnd - t0d).Round(time.Millisecond), settled.Round(time.Millisecond),
		len(members), group.Reconnects(), direct.Reconnects())

	checkDelivered(t, members, grecs, drecs, t0d, total, 100, 30)
	for _, w := range wins[1:] {
		if w.Disconnected == 0 {
			t.Errorf("%s: no member was disconnected: the restart did not reach the clients", w.Name)
		}
	}
}

// leavePoll is how often watchLeave asks the peers.
const leavePoll = 10 * time.Millisecond

// watchLeave asks the peers of n for their view of the cluster until
// neither lists n alive, or n exits; the channel gets the time that took
// (an upper bound, to leavePoll), or -1 if n exited first.
func watchLeave(cc *chaosCluster, n *chaosNode) <-chan time.Duration {
	out := make(chan time.Duration, 1)
	start := time.Now()
	peers := cc.others(n)
	exited := n.Exited()
	go func() {
		for {
			gone := 0
			for _, p := range peers {
				view, err := cc.View(p)
				if err == nil && !slices.Contains(view, chaos.NodeState{ID: n.ID, State: "alive"}) {
					gone++
				}
			}
			if gone == len(peers) {
				out <- time.Since(start)
				return
			}
			select {
			case <-exited:
				out <- -1
				return
			case <-time.After(leavePoll):
			}
		}
	}()
	return out
}

// firstLoss is the time from since to the first connection loss a
// member saw after since (-1: none).
func firstLoss(ms []*chaos.Member, since time.Time) time.Duration {
	first := time.Duration(-1)
	from := since.Sub(ms[0].Epoch)
	for _, m := range ms {
		for _, at := range m.History().Lost {
			if at >= from && (first < 0 || at-from < first) {
				first = at - from
			}
		}
	}
	return first
}

// shutdownFields are the fields of a node's last shutdown that the
// rolling test reports, from its log.
var shutdownFields = regexp.MustCompile(`(dropped|stored_for_replay|took|clients_closed|skipped)=("[^"]*"|\S+)`)

// shutdownReport is what the node's log says of its last shutdown: what
// its sessions had not delivered, how long it took, what it cut short.
func shutdownReport(log string) string {
	b, _ := os.ReadFile(log)
	text := string(b)
	if i := strings.LastIndex(text, "=== start "); i >= 0 {
		text = text[i:] // the last run's
	}
	var parts []string
	lines := strings.Split(text, "\n")
	for _, msg := range []string{`msg="mqtt: shutdown: messages the sessions had not delivered"`, `msg="shutdown took longer`, `msg="pushring node stopped"`} {
		for i := len(lines) - 1; i >= 0; i-- {
			if strings.Contains(lines[i], msg) {
				for _, m := range shutdownFields.FindAllStringSubmatch(lines[i], -1) {
					parts = append(parts, m[1]+"="+m[2])
				}
				break
			}
		}
	}
	if len(parts) == 0 {
		return "no shutdown lines in its log"
	}
	return strings.Join(parts, " ")
}
