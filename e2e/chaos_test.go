//go:build linux

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pushring/pushring/internal/natsauth"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/ring"
)

// The chaos run's load: chaosMembers users in group "all", one device
// publishing group messages every chaosGroupEvery, another sending a
// direct message every chaosDirectEvery to one of chaosDirectTargets
// members in turn (every tenth member: each gets one every 1.5 s at full
// pace, enough to check their order).
const (
	chaosMembers       = 300
	chaosDirectTargets = 30
	chaosTail          = 5 * time.Second  // traffic after the last step
	chaosSettle        = 30 * time.Second // for deliveries after the traffic
)

// The publishers' pace: 40 group and 20 direct messages a second, 12,000
// member deliveries a second.
const (
	chaosGroupEvery  = 25 * time.Millisecond
	chaosDirectEvery = 50 * time.Millisecond
)

// racePace is a publisher's pace, halved under the race detector: the
// test process runs the clients, and instrumented, on 2 cores, it cannot
// take the full load (its clients miss their keep-alives, and the
// numbers measure the test, not the service).
func racePace(every time.Duration) time.Duration {
	if raceEnabled {
		return 2 * every
	}
	return every
}

// chaosSchedule is the run's faults, a few seconds of traffic apart. The
// targets are roles (resolved once the cluster runs): "owner" is the node
// that resolves the group's messages, "group-home" the home (and node) of
// the group publisher, "direct-home" that of the direct publisher; the
// three are different nodes. "nats:leader" is the JetStream meta leader
// when the step runs; "nats:of-<role>" the NATS server that role's node
// is connected to (the harshest NATS fault: that node's connection
// drops, and what is in flight to it is lost).
var chaosSchedule = []fault{
	{4 * time.Second, "kill9", "owner"},
	{10 * time.Second, "start", "owner"},
	{16 * time.Second, "kill9", "nats:of-owner"},
	{20 * time.Second, "start", "nats:of-owner"},
	{26 * time.Second, "term", "direct-home"},
	{28 * time.Second, "start", "direct-home"},
	{34 * time.Second, "stop", "group-home"},
	{40 * time.Second, "cont", "group-home"},
}

// TestChaos: durable QoS 1 under faults. Three pushring nodes run on a
// cluster of three NATS servers (separate processes, JetStream R3, each
// node signing in with its own nkey and the permissions natsauth gives
// it); chaosMembers users of one group hold persistent sessions (paho,
// clean session off, reconnecting through the addresses their login
// returned); a device publishes numbered QoS 1 group messages at a steady
// rate and another sends numbered direct messages. While they run, the
// steps of chaosSchedule kill -9 a node and restart it, kill -9 a NATS
// server and restart it, SIGTERM a node and restart it, and SIGSTOP a node
// until the others declared it dead, then SIGCONT it.
//
// Every message that got its PUBACK must reach every member (group) or
// its addressee (direct) at least once, first deliveries in the order the
// publisher sent them. The test logs, for the time before the first fault
// and for each fault until the next one (grep "chaos:" in a -v log),
// messages sent and acknowledged, lost and duplicate deliveries, first
// deliveries out of order, the time from the fault to each disconnected
// client's first delivery after it reconnected, and the longest silence a
// member saw; then the total. A message counts in the window it was made
// in: one made just before a fault and lost by it counts in the window
// before. It fails if anything acknowledged is lost or out of order.
// With go test -artifacts it keeps chaos.tsv (one line per message) and
// the servers' logs. It takes about 100 s, 25 of them setting up (300
// users created and logged in: two argon2 hashes each).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos run takes minutes")
	}
	if raceEnabled {
		// The 300 clients run in this process: instrumented, on 2
		// cores, they fall behind the traffic and the run measures
		// them. make test runs it in a go test of its own, without
		// -race.
		t.Skip("the chaos test runs without the race detector")
	}
	epoch := time.Now() // every time below is measured since it
	cc := newChaosCluster(t, 3)
	c, nodes := cc.c, cc.nodes

	// Roles: the group's owner, and publishers homed on the two others.
	r := ring.New(cc.ids(), ring.DefaultConfig())
	owner := r.GroupOwner("all")
	pick := func(prefix string, not ...string) string {
		for i := 0; ; i++ {
			id := prefix + strconv.Itoa(i)
			if !slices.Contains(not, r.Home(id)) {
				return id
			}
		}
	}
	gpub := pick("gpub", owner)
	dpub := pick("dpub", owner, r.Home(gpub))
	cc.roles = map[string]string{"owner": owner, "group-home": r.Home(gpub), "direct-home": r.Home(dpub)}
	for _, id := range []string{gpub, dpub} {
		if got := c.home(nodes[0].p, id); got != r.Home(id) {
			t.Fatalf("the cluster homes %s on %s, the test's ring on %s: the ring settings differ", id, got, r.Home(id))
		}
	}

	// The group, its members, the two devices.
	c.mustAPI(nodes[0].p, "POST", "/v1/groups", map[string]any{"id": "all"}, nil)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, n := range nodes {
			if err := c.api(n.p, "GET", "/v1/groups/all", nil, nil); err != nil {
				return err // the others learn of it through the store's watch
			}
		}
		return nil
	})
	members := connectChaosMembers(t, c, nodes, epoch, chaosMembers)
	warmUp(t, c, nodes[0].p, members)
	homes := map[string]int{}
	for _, m := range members {
		homes[r.Home(m.id)]++
	}
	t.Logf("chaos: setup %v: NATS %s; owner of the group %s, group publisher %s on %s (%v a message), direct publisher %s on %s (%v a message); members homed %v",
		time.Since(epoch).Round(time.Millisecond), strings.Join(cc.urls, ","), owner, gpub, cc.roles["group-home"], chaosGroupEvery,
		dpub, cc.roles["direct-home"], chaosDirectEvery, homes)

	// Traffic.
	group := &qos1Publisher{name: gpub, clientID: gpub + "-dev", user: gpub, password: cc.device(gpub),
		addrs: cc.mqttAddrs(cc.roles["group-home"]), every: chaosGroupEvery, epoch: epoch,
		message: func(seq int) (string, string) { return "/group/all", "g " + strconv.Itoa(seq) }}
	direct := &qos1Publisher{name: dpub, clientID: dpub + "-dev", user: dpub, password: cc.device(dpub),
		addrs: cc.mqttAddrs(cc.roles["direct-home"]), every: chaosDirectEvery, epoch: epoch,
		message: func(seq int) (string, string) {
			return "/private/" + members[directTarget(seq, len(members))].id, "d " + strconv.Itoa(seq)
		}}
	group.start()
	direct.start()
	stopTraffic := sync.OnceFunc(func() {
		var wg sync.WaitGroup
		for _, p := range []*qos1Publisher{group, direct} {
			wg.Go(func() { p.finish(10 * time.Second) })
		}
		wg.Wait()
	})
	t.Cleanup(stopTraffic)
	// The schedule's clock starts once both publishers had a PUBACK: the
	// devices' CONNECT (a key check) is not part of the first window.
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		for _, p := range []*qos1Publisher{group, direct} {
			if r := p.records(); len(r) == 0 || r[0].acked == 0 {
				return fmt.Errorf("%s has no PUBACK yet", p.name)
			}
		}
		return nil
	})
	t0 := time.Now()

	// Faults.
	events := runFaults(t, t0, chaosSchedule, cc.apply)
	time.Sleep(chaosTail) // traffic after the last fault, by the clock: the load is what is measured
	trafficEnd := time.Since(epoch)
	stopTraffic()

	// Settle: everything acknowledged delivered, or chaosSettle passed.
	grecs, drecs := group.records(), direct.records()
	settleFrom := time.Now()
	for time.Since(settleFrom) < chaosSettle {
		if n, _ := chaosMissing(members, grecs, drecs, 0); n == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	settled := time.Since(settleFrom)

	// Report.
	t0d := t0.Sub(epoch)
	wins := chaosWindows(events, t0d, trafficEnd)
	total := chaosAnalyze(members, grecs, drecs, wins)
	for _, w := range wins {
		t.Logf("chaos: %s", w.line())
	}
	t.Logf("chaos: total %s; traffic %v, settled in %v, %d members, publishers reconnected %d (group) and %d (direct) times",
		total.line(), (trafficEnd - t0d).Round(time.Millisecond), settled.Round(time.Millisecond),
		len(members), len(group.conns)-1, len(direct.conns)-1)
	var conns []string
	for _, n := range nodes {
		conns = append(conns, fmt.Sprintf("%s=%v", n.p.id, metricValue(n.p, "pushring_mqtt_connections")))
	}
	t.Logf("chaos: MQTT connections at the end (members and devices): %s", strings.Join(conns, " "))
	for _, n := range nodes {
		var parts []string
		for _, m := range []string{"pushring_fanout_resent_total", "pushring_fanout_ack_timeouts_total", "pushring_session_replays_total", "pushring_session_replayed_total", "pushring_queue_dropped_total", "pushring_fanout_withhold_timeouts_total", "pushring_session_kicked_total", "pushring_mqtt_slow_sessions_total"} {
			parts = append(parts, fmt.Sprintf("%s=%v", strings.TrimPrefix(m, "pushring_"), metricValue(n.p, m)))
		}
		t.Logf("chaos: counters of %s (since its last start): %s", n.p.id, strings.Join(parts, " "))
	}
	chaosDump(t, members, t0d, map[string][]pubRecord{"g": grecs, "d": drecs})

	// The harness did what it says: traffic flowed and the faults hit.
	if want := int((trafficEnd - t0d) / chaosGroupEvery); total.gMade < want*8/10 {
		t.Logf("chaos: warning: the group publisher made %d messages where its pace gives %d: the test process was short of CPU, and its clients may have been too",
			total.gMade, want)
	}
	if total.gAcked < 100 || total.dAcked < 50 {
		t.Fatalf("only %d group and %d direct messages acknowledged: the traffic did not flow", total.gAcked, total.dAcked)
	}
	if total.strays > 0 {
		t.Errorf("%d deliveries were not for the member that got them, or unreadable", total.strays)
	}
	if total.lost > 0 {
		_, sample := chaosMissing(members, grecs, drecs, t0d)
		t.Errorf("%d acknowledged member deliveries lost (group %d, direct %d), for example %s",
			total.lost, total.lostG, total.lostD, sample)
	}
	if total.reordered > 0 {
		t.Errorf("%d first deliveries of acknowledged messages came after a later message of the same publisher", total.reordered)
	}
}

// chaosCluster is n pushring nodes (separate processes) on a cluster of
// three NATS servers (separate processes), and what the fault schedule
// does to them.
type chaosCluster struct {
	t     *testing.T
	c     *cluster // the API helpers
	nats  []*natsServer
	urls  []string
	nodes []*chaosNode
	procs []*proc
	// roles maps a schedule's target names to node or server names.
	roles     map[string]string
	stoppedAt map[string]time.Time
}

// chaosNode is one pushring node process of the chaos run.
type chaosNode struct {
	*daemon
	p    *proc    // id and addresses, for the cluster's API helpers
	base []string // its flags but --join
}

// newChaosCluster starts three NATS servers, then n nodes n1…n<n> on them
// (KV replicas 3, one gossip key, each its own nkey and data dir), and
// waits until every node sees all n.
func newChaosCluster(t *testing.T, n int) *chaosCluster {
	t.Helper()
	cc := &chaosCluster{t: t, c: &cluster{t: t}, roles: map[string]string{}, stoppedAt: map[string]time.Time{}}
	bin := pushringBinary(t)
	// Each node's nkey first: the NATS servers' authorization lists them.
	const clusterName = "pushring"
	dirs := make([]string, n)
	var keys []natsauth.Key
	for i := range dirs {
		dirs[i] = t.TempDir()
		kp, _, err := natsauth.LoadOrCreateSeed(filepath.Join(dirs[i], "nats.nk"))
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		keys = append(keys, natsauth.Key{NodeID: "n" + strconv.Itoa(i+1), PublicKey: pub})
	}
	cc.nats = startNATSCluster(t, 3, clusterName, keys)
	for _, s := range cc.nats {
		cc.urls = append(cc.urls, s.url())
	}
	for i, dir := range dirs {
		id := keys[i].NodeID
		p := &proc{id: id, mqtt: freeAddr(t), http: freeAddr(t), gossip: freeAddr(t)}
		adminFile := filepath.Join(dir, "admin.key")
		if err := os.WriteFile(adminFile, []byte(adminKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		base := []string{"--node-id", id, "--data-dir", dir, "--admin-key-file", adminFile,
			"--nats-url", strings.Join(cc.urls, ","), "--kv-replicas", "3", "--cluster", clusterName,
			"--mqtt-addr", p.mqtt, "--http-addr", p.http, "--gossip-addr", p.gossip,
			"--gossip-key-file", writeKeyFile(t, dir, clusterKey),
			"--log-level", "info", "--login-rate", "-1"} // the test logs in many users from one address
		cc.nodes = append(cc.nodes, &chaosNode{daemon: newDaemon(t, id, bin, dir), p: p, base: base})
		cc.procs = append(cc.procs, p)
	}
	// With go test -artifacts, the servers' logs are kept.
	t.Cleanup(func() {
		var logs []string
		for _, s := range cc.nats {
			logs = append(logs, s.log)
		}
		for _, n := range cc.nodes {
			logs = append(logs, n.log)
		}
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil {
				os.WriteFile(filepath.Join(t.ArtifactDir(), filepath.Base(l)), b, 0o600)
			}
		}
	})
	for _, n := range cc.nodes {
		cc.startNode(n)
	}
	cc.c.waitRing(cc.procs, n)
	return cc
}

func (cc *chaosCluster) ids() []string {
	var out []string
	for _, n := range cc.nodes {
		out = append(out, n.p.id)
	}
	return out
}

func (cc *chaosCluster) node(id string) *chaosNode {
	for _, n := range cc.nodes {
		if n.p.id == id {
			return n
		}
	}
	return nil
}

// others are the nodes but n.
func (cc *chaosCluster) others(n *chaosNode) []*proc {
	var out []*proc
	for _, o := range cc.nodes {
		if o != n {
			out = append(out, o.p)
		}
	}
	return out
}

// mqttAddrs is every node's MQTT address, home's first.
func (cc *chaosCluster) mqttAddrs(home string) []string {
	out := []string{cc.node(home).p.mqtt}
	for _, n := range cc.nodes {
		if n.p.id != home {
			out = append(out, n.p.mqtt)
		}
	}
	return out
}

// device creates device id, a publisher of group "all", and returns its key.
func (cc *chaosCluster) device(id string) string {
	var d struct {
		Key string `json:"key"`
	}
	via := cc.nodes[0].p
	cc.c.mustAPI(via, "POST", "/v1/devices", map[string]any{"id": id}, &d)
	cc.c.mustAPI(via, "PUT", "/v1/groups/all/publishers/"+id, nil, nil)
	return d.Key
}

// startNode (re)starts n, joining the nodes that run, and waits until it
// is ready.
func (cc *chaosCluster) startNode(n *chaosNode) {
	t := cc.t
	t.Helper()
	var join []string
	for _, o := range cc.nodes {
		if o != n && o.running() && !o.stopped {
			join = append(join, o.p.gossip)
		}
	}
	n.args = slices.Clone(n.base)
	if len(join) > 0 {
		n.args = append(n.args, "--join", strings.Join(join, ","))
	}
	before := n.logCount(`msg="pushring node started"`)
	n.start(t)
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if !n.running() {
			b, _ := os.ReadFile(n.log)
			t.Fatalf("%s exited:\n%s", n.name, tail(b, 3000))
		}
		if n.logCount(`msg="pushring node started"`) == before {
			return fmt.Errorf("%s has not started yet", n.name)
		}
		return httpOK("http://" + n.p.http + "/readyz")
	})
}

// resolve maps a schedule target to a node or NATS server name (see
// chaosSchedule), remembering what a role resolved to.
func (cc *chaosCluster) resolve(target string) string {
	if name, ok := cc.roles[target]; ok {
		return name
	}
	if node, ok := strings.CutPrefix(target, "nats:of-"); ok {
		id := cc.resolve(node)
		for _, s := range cc.nats {
			if s.running() && !s.stopped {
				if on, err := s.hasClient("pushring-" + id); err == nil && on {
					cc.roles[target] = s.name
					return s.name
				}
			}
		}
		cc.t.Fatalf("no NATS server has %s's connection", id)
	}
	if target != "nats:leader" {
		return target
	}
	for _, s := range cc.nats {
		if s.running() && !s.stopped {
			if l, err := s.metaLeader(); err == nil && l != "" {
				cc.roles[target] = l
				return l
			}
		}
	}
	cc.t.Fatal("no NATS server names a JetStream meta leader")
	return ""
}

// apply does one step of a fault schedule (see fault) and returns the
// name of its target and what it observed.
func (cc *chaosCluster) apply(f fault) (string, string) {
	t := cc.t
	t.Helper()
	name := cc.resolve(f.target)
	at := time.Now()
	since := func() string { return time.Since(at).Round(time.Millisecond).String() }
	for _, s := range cc.nats {
		if s.name != name {
			continue
		}
		switch f.action {
		case "kill9":
			s.signal(t, syscall.SIGKILL)
			s.waitExit(t, 5*time.Second)
			return name, ""
		case "term":
			s.signal(t, syscall.SIGTERM)
			s.waitExit(t, 30*time.Second)
			return name, "exited after " + since()
		case "stop":
			s.signal(t, syscall.SIGSTOP)
			return name, ""
		case "cont":
			s.signal(t, syscall.SIGCONT)
		case "start":
			s.start(t)
		default:
			t.Fatalf("unknown action %q", f.action)
		}
		waitJetStream(t, cc.nats, 60*time.Second)
		return name, "JetStream healthy after " + since()
	}
	n := cc.node(name)
	if n == nil {
		t.Fatalf("fault %v: no node or NATS server %q", f, name)
	}
	switch f.action {
	case "kill9":
		n.signal(t, syscall.SIGKILL)
		n.waitExit(t, 5*time.Second)
		cc.c.waitRing(cc.others(n), len(cc.nodes)-1)
		return name, "declared dead after " + since()
	case "term":
		n.signal(t, syscall.SIGTERM)
		n.waitExit(t, 30*time.Second)
		return name, "exited after " + since()
	case "stop":
		n.signal(t, syscall.SIGSTOP)
		cc.stoppedAt[name] = at
		return name, ""
	case "cont":
		cc.c.waitRing(cc.others(n), len(cc.nodes)-1)
		dead := time.Since(cc.stoppedAt[name])
		n.signal(t, syscall.SIGCONT)
		cc.c.waitRing(cc.procs, len(cc.nodes))
		return name, fmt.Sprintf("declared dead %v after SIGSTOP, whole again %s after SIGCONT",
			dead.Round(time.Millisecond), since())
	case "start":
		cc.startNode(n)
		cc.c.waitRing(cc.procs, len(cc.nodes))
		return name, "ready and in the ring after " + since()
	}
	t.Fatalf("unknown action %q", f.action)
	return "", ""
}

func chaosDump(t *testing.T, ms []*chaosMember, t0 time.Duration, recs map[string][]pubRecord) {
	perMsg := func() map[string][]int {
		return map[string][]int{"g": make([]int, len(recs["g"])), "d": make([]int, len(recs["d"]))}
	}
	missing, copies, reordered := perMsg(), perMsg(), perMsg()
	firstMin, firstMax := map[string][]time.Duration{"g": nil, "d": nil}, map[string][]time.Duration{"g": nil, "d": nil}
	for _, k := range []string{"g", "d"} {
		firstMin[k] = make([]time.Duration, len(recs[k]))
		firstMax[k] = make([]time.Duration, len(recs[k]))
	}
	// The arrivals, connection losses and connections of the first few
	// members that got something out of order or missed something, to
	// see what overtook what.
	var sample strings.Builder
	sampled := 0
	for _, m := range ms {
		m.mu.Lock()
		seen := map[string][]bool{"g": make([]bool, len(recs["g"])), "d": make([]bool, len(recs["d"]))}
		memberReordered := 0
		maxAcked := map[string]int{"g": -1, "d": -1}
		for _, a := range m.got {
			k := string(a.kind)
			if int(a.seq) >= len(copies[k]) {
				continue
			}
			copies[k][a.seq]++
			if seen[k][a.seq] {
				continue
			}
			seen[k][a.seq] = true
			if firstMin[k][a.seq] == 0 || a.at < firstMin[k][a.seq] {
				firstMin[k][a.seq] = a.at
			}
			firstMax[k][a.seq] = max(firstMax[k][a.seq], a.at)
			if recs[k][a.seq].acked != 0 {
				if int(a.seq) < maxAcked[k] {
					reordered[k][a.seq]++
					if memberReordered == 0 {
						memberReordered = 1
					}
				} else {
					maxAcked[k] = int(a.seq)
				}
			}
		}
		missed := false
		for seq, r := range recs["g"] {
			if r.acked != 0 && !seen["g"][seq] {
				missed = true
				break
			}
		}
		if (memberReordered > 0 || missed) && sampled < 5 {
			sampled++
			for _, a := range m.got {
				fmt.Fprintf(&sample, "%s\t%c\t%d\t%.3f\n", m.id, a.kind, a.seq, (a.at - t0).Seconds())
			}
			for _, at := range m.lost {
				fmt.Fprintf(&sample, "%s\tlost\t-\t%.3f\n", m.id, (at - t0).Seconds())
			}
			for _, at := range m.conns {
				fmt.Fprintf(&sample, "%s\tconn\t-\t%.3f\n", m.id, (at - t0).Seconds())
			}
		}
		m.mu.Unlock()
		for seq := range recs["g"] {
			if !seen["g"][seq] {
				missing["g"][seq]++
			}
		}
		for seq := range recs["d"] {
			if m.directFor(seq) && !seen["d"][seq] {
				missing["d"][seq]++
			}
		}
	}
	var b strings.Builder
	b.WriteString("pub\tseq\tmade_s\tacked_s\tsends\tmissing\tcopies\treordered\tfirst_min_s\tfirst_max_s\n")
	sec := func(d time.Duration) string { return strconv.FormatFloat((d - t0).Seconds(), 'f', 3, 64) }
	for _, k := range []string{"g", "d"} {
		for seq, r := range recs[k] {
			acked := "-"
			if r.acked != 0 {
				acked = sec(r.acked)
			}
			fmt.Fprintf(&b, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", k, seq, sec(r.made), acked, r.sends, missing[k][seq], copies[k][seq],
				reordered[k][seq], sec(firstMin[k][seq]), sec(firstMax[k][seq]))
		}
	}
	if sampled > 0 {
		if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "sample-members.tsv"), []byte("member\tpub\tseq\tat_s\n"+sample.String()), 0o600); err != nil {
			t.Error(err)
		}
	}
	path := filepath.Join(t.ArtifactDir(), "chaos.tsv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Error(err)
	}
}

// metricValue is the value of the unlabelled metric name on p ("?" if
// p does not answer or has no such metric).
func metricValue(p *proc, name string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.http + "/metrics")
	if err != nil {
		return "?"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return "?"
}

// directTarget is the member the direct message seq is for, of a run of
// members members.
func directTarget(seq, members int) int {
	return seq % chaosDirectTargets * (members / chaosDirectTargets)
}

// directFor reports whether direct message seq is for m.
func (m *chaosMember) directFor(seq int) bool { return directTarget(seq, m.of) == m.idx }

// chaosMember is one user with a persistent session (paho, clean session
// off) that reconnects through the addresses its login returned.
type chaosMember struct {
	id, private, groupTopic string
	idx, of                 int // its index, of a run of of members
	epoch                   time.Time
	client                  mqtt.Client

	mu     sync.Mutex
	got    []arrival
	gseen  []bool         // by group message number
	dseen  map[int32]bool // direct message numbers
	warm   bool
	strays int
	lost   []time.Duration // connection losses
	conns  []time.Duration // connections made
}

// arrival is one delivery: 'g' group or 'd' direct, the message number,
// when (since the epoch).
type arrival struct {
	kind byte
	seq  int32
	at   time.Duration
}

func (m *chaosMember) onMessage(_ mqtt.Client, msg mqtt.Message) {
	m.receive(msg.Topic(), msg.Payload(), time.Since(m.epoch))
}

// receive records a delivery of payload b on topic at at: "g <n>" on the
// member's group topic, "d <n>" on its private topic if direct message n
// is for it; anything else is a stray.
func (m *chaosMember) receive(topic string, b []byte, at time.Duration) {
	var kind byte
	seq := -1
	if len(b) > 2 && b[1] == ' ' {
		kind = b[0]
		if n, err := strconv.Atoi(string(b[2:])); err == nil {
			seq = n
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case kind == 'w' && topic == m.groupTopic:
		m.warm = true
		return
	case kind == 'g' && seq >= 0 && topic == m.groupTopic:
		for len(m.gseen) <= seq {
			m.gseen = append(m.gseen, false)
		}
		m.gseen[seq] = true
	case kind == 'd' && seq >= 0 && topic == m.private && m.directFor(seq):
		m.dseen[int32(seq)] = true
	default:
		m.strays++
		return
	}
	m.got = append(m.got, arrival{kind, int32(seq), at})
}

// connectChaosMembers creates n users in group "all" (through
// the nodes in turn), logs each in and connects it with a persistent
// session to the addresses its login returned, home first.
func connectChaosMembers(t *testing.T, c *cluster, nodes []*chaosNode, epoch time.Time, n int) []*chaosMember {
	t.Helper()
	out := make([]*chaosMember, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4) // argon2 costs 19 MiB and ~50 ms per call
	errs := make(chan error, n)
	var stale retries
	for i := range out {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			id := fmt.Sprintf("m%03d", i)
			via := nodes[i%len(nodes)].p
			pw := memberPassword(id)
			if err := c.api(via, "POST", "/v1/users", map[string]any{"id": id, "password": pw}, nil); err != nil {
				errs <- err
				return
			}
			// On R3 buckets a read right after a write may reach a
			// replica that has not applied it yet (404): try again.
			if err := retried(&stale, func() error { return c.api(via, "PUT", "/v1/groups/all/members/"+id, nil, nil) }); err != nil {
				errs <- err
				return
			}
			var login struct {
				Token string   `json:"token"`
				MQTT  []string `json:"mqtt"`
			}
			if err := retried(&stale, func() error {
				req, _ := newLogin(via, id, pw)
				return doJSON(req, &login)
			}); err != nil {
				errs <- err
				return
			}
			m := &chaosMember{id: id, idx: i, of: n, epoch: epoch, private: "/private/" + id,
				groupTopic: "/private/" + id + "/group/all", dseen: map[int32]bool{}}
			opts := mqtt.NewClientOptions().SetClientID(id + "-phone").SetUsername(id).SetPassword(login.Token)
			for _, a := range login.MQTT {
				opts.AddBroker("tcp://" + a)
			}
			opts.SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true)
			opts.SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(500 * time.Millisecond)
			opts.SetKeepAlive(3 * time.Second).SetPingTimeout(2 * time.Second).SetConnectTimeout(2 * time.Second)
			// A persistent session's backlog may arrive before the
			// SUBSCRIBE of a reconnect: the default handler takes it.
			opts.SetDefaultPublishHandler(m.onMessage)
			opts.SetConnectionLostHandler(func(mqtt.Client, error) {
				m.mu.Lock()
				m.lost = append(m.lost, time.Since(epoch))
				m.mu.Unlock()
			})
			opts.SetOnConnectHandler(func(cl mqtt.Client) {
				m.mu.Lock()
				m.conns = append(m.conns, time.Since(epoch))
				m.mu.Unlock()
				// The session keeps it; again is harmless, and needed
				// where the session did not survive.
				cl.Subscribe(m.private+"/#", 1, nil)
			})
			m.client = mqtt.NewClient(opts)
			if tok := m.client.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("%s connect: %v", id, tok.Error())
				return
			}
			out[i] = m
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range out {
			if m != nil {
				m.client.Disconnect(50)
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := stale.n.Load(); n > 0 {
		first, _ := stale.first.Load().(string)
		t.Logf("chaos: %d admin or login calls right after a user was created failed and were tried again; the first: %s", n, first)
	}
	return out
}

// retries counts the failed calls of retried and keeps the first error.
type retries struct {
	n     atomic.Int64
	first atomic.Value // string
}

// retried calls fn until it succeeds, for up to 10 s, counting the calls
// that failed in r.
func retried(r *retries, fn func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		r.n.Add(1)
		r.first.CompareAndSwap(nil, err.Error())
		time.Sleep(50 * time.Millisecond)
	}
}

// warmUp publishes group messages through p until every member received
// one: subscriptions and routes are in place.
func warmUp(t *testing.T, c *cluster, p *proc, ms []*chaosMember) {
	t.Helper()
	k := 0
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, m := range ms {
			m.mu.Lock()
			warm := m.warm
			m.mu.Unlock()
			if !warm {
				if err := c.publishAll(p, "w "+strconv.Itoa(k), 1); err != nil {
					return err
				}
				k++
				return fmt.Errorf("%s has no warm-up message yet", m.id)
			}
		}
		return nil
	})
}

// chaosMissing counts acknowledged member deliveries not (yet) made and
// describes the first few (times since t0).
func chaosMissing(ms []*chaosMember, grecs, drecs []pubRecord, t0 time.Duration) (int, string) {
	n := 0
	var sample []string
	note := func(s string) {
		n++
		if len(sample) < 5 {
			sample = append(sample, s)
		}
	}
	for _, m := range ms {
		m.mu.Lock()
		for seq, r := range grecs {
			if r.acked != 0 && (seq >= len(m.gseen) || !m.gseen[seq]) {
				note(fmt.Sprintf("%s lacks g %d (made at %v)", m.id, seq, (r.made - t0).Round(time.Millisecond)))
			}
		}
		for seq, r := range drecs {
			if r.acked != 0 && m.directFor(seq) && !m.dseen[int32(seq)] {
				note(fmt.Sprintf("%s lacks d %d (made at %v)", m.id, seq, (r.made - t0).Round(time.Millisecond)))
			}
		}
		m.mu.Unlock()
	}
	return n, strings.Join(sample, ", ")
}

// chaosWindow is a stretch of the run: before the first fault, or from a
// fault to the next one. Messages belong to the window they were made in.
type chaosWindow struct {
	name     string
	from, to time.Duration // since the epoch
	fault    bool

	gMade, gAcked, dMade, dAcked int
	lost, lostG, lostD, dup      int
	reordered, strays            int
	affected, never              int
	firsts, stalls               []time.Duration
}

// chaosWindows cuts [t0, end) at each disruptive step of events (whose
// times are since t0).
func chaosWindows(events []faultEvent, t0, end time.Duration) []*chaosWindow {
	wins := []*chaosWindow{{name: "steady", from: t0}}
	for _, ev := range events {
		if !ev.disruptive() {
			continue
		}
		at := t0 + ev.began
		wins[len(wins)-1].to = at
		wins = append(wins, &chaosWindow{name: fmt.Sprintf("%s %s (%s) at %v", ev.action, ev.resolved, ev.target,
			ev.began.Round(100*time.Millisecond)), from: at, fault: true})
	}
	wins[len(wins)-1].to = end
	return wins
}

func (w *chaosWindow) of(at time.Duration) bool { return at >= w.from && at < w.to }

// chaosAnalyze fills the windows (a message made after the last window's
// end belongs to it) and returns the totals.
func chaosAnalyze(ms []*chaosMember, grecs, drecs []pubRecord, wins []*chaosWindow) *chaosWindow {
	winOf := func(at time.Duration) *chaosWindow {
		if at < wins[0].from {
			return wins[0]
		}
		for _, w := range wins {
			if w.of(at) {
				return w
			}
		}
		return wins[len(wins)-1]
	}
	for _, r := range grecs {
		w := winOf(r.made)
		w.gMade++
		if r.acked != 0 {
			w.gAcked++
		}
	}
	for _, r := range drecs {
		w := winOf(r.made)
		w.dMade++
		if r.acked != 0 {
			w.dAcked++
		}
	}
	for _, m := range ms {
		m.mu.Lock()
		got := slices.Clone(m.got)
		lost, conns := slices.Clone(m.lost), slices.Clone(m.conns)
		wins[0].strays += m.strays
		m.mu.Unlock()

		// Copies, and first deliveries out of order, per publisher.
		gcount := make([]int, len(grecs))
		dcount := make([]int, len(drecs))
		maxG, maxD := -1, -1
		for _, a := range got {
			seq := int(a.seq)
			switch {
			case a.kind == 'g' && seq < len(grecs):
				gcount[seq]++
				if gcount[seq] == 1 && grecs[seq].acked != 0 {
					if seq < maxG {
						winOf(grecs[seq].made).reordered++
					} else {
						maxG = seq
					}
				}
			case a.kind == 'd' && seq < len(drecs):
				dcount[seq]++
				if dcount[seq] == 1 && drecs[seq].acked != 0 {
					if seq < maxD {
						winOf(drecs[seq].made).reordered++
					} else {
						maxD = seq
					}
				}
			}
		}
		for seq, r := range grecs {
			if r.acked == 0 {
				continue
			}
			w := winOf(r.made)
			switch n := gcount[seq]; {
			case n == 0:
				w.lost++
				w.lostG++
			case n > 1:
				w.dup += n - 1
			}
		}
		for seq, r := range drecs {
			if r.acked == 0 || !m.directFor(seq) {
				continue
			}
			w := winOf(r.made)
			switch n := dcount[seq]; {
			case n == 0:
				w.lost++
				w.lostD++
			case n > 1:
				w.dup += n - 1
			}
		}

		for _, w := range wins {
			// The longest silence (no group message) within w.
			var stall time.Duration
			last := w.from
			for _, a := range got {
				if a.kind != 'g' || a.at < w.from {
					continue
				}
				stall = max(stall, min(a.at, w.to)-last)
				if a.at >= w.to {
					break
				}
				last = a.at
			}
			stall = max(stall, w.to-last)
			w.stalls = append(w.stalls, stall)

			if !w.fault {
				continue
			}
			// A member disconnected by the fault: the time from the fault
			// to its first delivery after it reconnected.
			i := slices.IndexFunc(lost, w.of)
			if i < 0 {
				continue
			}
			w.affected++
			j := slices.IndexFunc(conns, func(at time.Duration) bool { return at > lost[i] })
			k := -1
			if j >= 0 {
				k = slices.IndexFunc(got, func(a arrival) bool { return a.at > conns[j] })
			}
			if k < 0 {
				w.never++
				continue
			}
			w.firsts = append(w.firsts, got[k].at-w.from)
		}
	}
	total := &chaosWindow{name: "total"}
	for _, w := range wins {
		total.gMade += w.gMade
		total.gAcked += w.gAcked
		total.dMade += w.dMade
		total.dAcked += w.dAcked
		total.lost += w.lost
		total.lostG += w.lostG
		total.lostD += w.lostD
		total.dup += w.dup
		total.reordered += w.reordered
		total.strays += w.strays
	}
	return total
}

// line is the window's report.
func (w *chaosWindow) line() string {
	var b strings.Builder
	if w.name != "total" {
		fmt.Fprintf(&b, "%s: ", w.name)
	}
	fmt.Fprintf(&b, "lost=%d (group %d, direct %d) dup=%d reordered=%d; group %d made %d acked, direct %d made %d acked",
		w.lost, w.lostG, w.lostD, w.dup, w.reordered, w.gMade, w.gAcked, w.dMade, w.dAcked)
	r := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
	if w.fault {
		fmt.Fprintf(&b, "; disconnected %d", w.affected)
		if len(w.firsts) > 0 {
			slices.Sort(w.firsts)
			fmt.Fprintf(&b, ", reconnect_first_delivery max=%s p50=%s min=%s", r(w.firsts[len(w.firsts)-1]),
				r(w.firsts[len(w.firsts)/2]), r(w.firsts[0]))
		}
		if w.never > 0 {
			fmt.Fprintf(&b, ", %d never got one", w.never)
		}
	}
	if len(w.stalls) > 0 {
		slices.Sort(w.stalls)
		fmt.Fprintf(&b, "; longest silence max=%s p50=%s", r(w.stalls[len(w.stalls)-1]), r(w.stalls[len(w.stalls)/2]))
	}
	return b.String()
}

// TestChaosAnalyze: the chaos report's arithmetic on a made-up run. Two
// members; six group messages (g3 never acknowledged) and two direct ones,
// one per member; a fault at 10 s. Member m000 misses g3 (not owed), gets
// g4 twice and its direct message; m010 gets g2 before g1 (out of order),
// never g4 (lost, in the fault's window) and not its direct message
// (lost), but m000's (a stray). m010 is disconnected at 11 s, reconnects at 12 s and gets its
// next message at 13 s: 3 s after the fault.
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
	drecs := []pubRecord{rec(5*s, true), rec(14*s, true)} // for members 0 and 10
	member := func(idx int) *chaosMember {
		id := fmt.Sprintf("m%03d", idx)
		return &chaosMember{id: id, idx: idx, of: chaosMembers, private: "/private/" + id, groupTopic: "/private/" + id + "/group/all", dseen: map[int32]bool{}}
	}
	a, b := member(0), member(10)
	for _, d := range []struct {
		m       *chaosMember
		group   bool
		payload string
		at      time.Duration
	}{
		{a, true, "g 0", 1 * s}, {a, true, "g 1", 2 * s}, {a, true, "g 2", 3 * s}, {a, false, "d 0", 5 * s},
		{a, true, "g 4", 11 * s}, {a, true, "g 4", 11 * s}, {a, true, "g 5", 12 * s},
		{b, true, "g 0", 1 * s}, {b, true, "g 2", 3 * s}, {b, true, "g 1", 4 * s}, {b, true, "g 5", 13 * s},
		{b, false, "d 0", 6 * s}, // for m000: a stray
		{b, true, "w 1", 0},      // a warm-up message: not counted
	} {
		topic := d.m.private
		if d.group {
			topic = d.m.groupTopic
		}
		d.m.receive(topic, []byte(d.payload), d.at)
	}
	b.lost, b.conns = []time.Duration{11 * s}, []time.Duration{0, 12 * s}
	if directTarget(0, chaosMembers) != 0 || directTarget(1, chaosMembers) != 10 {
		t.Fatalf("directTarget(0), (1) = %d, %d, want 0, 10", directTarget(0, chaosMembers), directTarget(1, chaosMembers))
	}
	events := []faultEvent{{fault: fault{action: "kill9", target: "owner"}, resolved: "n1", began: 10 * s}}
	wins := chaosWindows(events, 0, 20*s)
	total := chaosAnalyze([]*chaosMember{a, b}, grecs, drecs, wins)
	type counts struct{ gMade, gAcked, dMade, dAcked, lostG, lostD, dup, reordered, affected int }
	got := func(w *chaosWindow) counts {
		return counts{w.gMade, w.gAcked, w.dMade, w.dAcked, w.lostG, w.lostD, w.dup, w.reordered, w.affected}
	}
	for _, tc := range []struct {
		w    *chaosWindow
		want counts
	}{
		{wins[0], counts{gMade: 4, gAcked: 3, dMade: 1, dAcked: 1, reordered: 1}},
		{wins[1], counts{gMade: 2, gAcked: 2, dMade: 1, dAcked: 1, lostG: 1, lostD: 1, dup: 1, affected: 1}},
		{total, counts{gMade: 6, gAcked: 5, dMade: 2, dAcked: 2, lostG: 1, lostD: 1, dup: 1, reordered: 1}},
	} {
		if g := got(tc.w); g != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.w.name, g, tc.want)
		}
	}
	if total.lost != 2 || total.strays != 1 {
		t.Errorf("total lost %d, strays %d, want 2 and 1", total.lost, total.strays)
	}
	if !slices.Equal(wins[1].firsts, []time.Duration{3 * s}) {
		t.Errorf("first deliveries after reconnect %v, want [3s]", wins[1].firsts)
	}
	if n, sample := chaosMissing([]*chaosMember{a, b}, grecs, drecs, 0); n != 2 {
		t.Errorf("chaosMissing: %d (%s), want 2", n, sample)
	}
	if line := wins[1].line(); !strings.HasPrefix(line, "kill9 n1 (owner) at 10s: lost=2 (group 1, direct 1) dup=1 reordered=0;") ||
		!strings.Contains(line, "reconnect_first_delivery max=3s") {
		t.Errorf("report line %q", line)
	}
}
