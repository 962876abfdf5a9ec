//go:build linux

package e2e

import (
	"context"
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
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pushring/pushring/internal/chaos"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/ring"
)

// The chaos run's load: chaosMembers users in group "all", one device
// publishing group messages every chaosGroupEvery, another sending a
// direct message every chaosDirectEvery to one of chaos.DirectTargets
// members in turn (every tenth member: each gets one every 1.5 s at full
// pace, enough to check their order).
const (
	chaosMembers = 300
	chaosTail    = 5 * time.Second  // traffic after the last step
	chaosSettle  = 30 * time.Second // for deliveries after the traffic
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
// three are different nodes. "nats:of-<role>" is the NATS server that
// role's node is connected to when the step runs (see chaos.Cluster.Resolve).
var chaosSchedule = []chaos.Fault{
	{At: 4 * time.Second, Action: "kill9", Target: "owner"},
	{At: 10 * time.Second, Action: "start", Target: "owner"},
	{At: 16 * time.Second, Action: "kill9", Target: "nats:of-owner"},
	{At: 20 * time.Second, Action: "start", Target: "nats:of-owner"},
	{At: 26 * time.Second, Action: "term", Target: "direct-home"},
	{At: 28 * time.Second, Action: "start", Target: "direct-home"},
	{At: 34 * time.Second, Action: "stop", Target: "group-home"},
	{At: 40 * time.Second, Action: "cont", Target: "group-home"},
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
	r := ring.New(cc.IDs(), ring.DefaultConfig())
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
	cc.Roles["owner"], cc.Roles["group-home"], cc.Roles["direct-home"] = owner, r.Home(gpub), r.Home(dpub)
	for _, id := range []string{gpub, dpub} {
		if got := c.home(nodes[0].p, id); got != r.Home(id) {
			t.Fatalf("the cluster homes %s on %s, the test's ring on %s: the ring settings differ", id, got, r.Home(id))
		}
	}

	// The group, its members, the two devices.
	members := cc.group(epoch, chaosMembers)
	homes := map[string]int{}
	for _, m := range members {
		homes[r.Home(m.ID)]++
	}
	t.Logf("chaos: setup %v: NATS %s; owner of the group %s, group publisher %s on %s (%v a message), direct publisher %s on %s (%v a message); members homed %v",
		time.Since(epoch).Round(time.Millisecond), strings.Join(cc.NATSURLs(), ","), owner, gpub, cc.Roles["group-home"], chaosGroupEvery,
		dpub, cc.Roles["direct-home"], chaosDirectEvery, homes)

	// Traffic.
	group, direct := cc.publishers(gpub, dpub, members, chaosGroupEvery, chaosDirectEvery, epoch)
	stopTraffic := chaos.StartTraffic(10*time.Second, group, direct)
	t.Cleanup(stopTraffic)
	// The schedule's clock starts once both publishers had a PUBACK: the
	// devices' CONNECT (a key check) is not part of the first window.
	testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error { return chaos.Publishing(group, direct) })
	t0 := time.Now()

	// Faults.
	events, err := chaos.Play(context.Background(), t0, chaosSchedule, cc.Apply, func(ev chaos.Event) {
		t.Logf("chaos step: %s %s (%s) at %v, done at %v %s%s", ev.Action, ev.Target, ev.Resolved,
			ev.Began.Round(time.Millisecond), ev.End.Round(time.Millisecond), ev.Note, ev.Error)
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(chaosTail) // traffic after the last fault, by the clock: the load is what is measured
	trafficEnd := time.Since(epoch)
	stopTraffic()

	// Settle: everything acknowledged delivered, or chaosSettle passed.
	grecs, drecs := group.Records(), direct.Records()
	settled := chaos.Settle(nil, chaosSettle, members, grecs, drecs)

	// Report.
	t0d := t0.Sub(epoch)
	wins := chaos.Windows(events, t0d, trafficEnd)
	total := chaos.Analyze(members, grecs, drecs, wins)
	for _, w := range wins {
		t.Logf("chaos: %s", w.Line())
	}
	t.Logf("chaos: total %s; traffic %v, settled in %v, %d members, publishers reconnected %d (group) and %d (direct) times",
		total.Line(), (trafficEnd - t0d).Round(time.Millisecond), settled.Round(time.Millisecond),
		len(members), group.Reconnects(), direct.Reconnects())
	var conns []string
	for _, n := range nodes {
		conns = append(conns, fmt.Sprintf("%s=%v", n.p.id, metricValue(n.p, "pushring_mqtt_connections")))
	}
	t.Logf("chaos: MQTT connections at the end (members and devices): %s", strings.Join(conns, " "))
	for _, n := range nodes {
		var parts []string
		for _, m := range []string{"pushring_fanout_resent_total", "pushring_fanout_ack_timeouts_total", "pushring_session_replays_total", "pushring_session_replayed_total", "pushring_session_positions_rewound_total", "pushring_queue_dropped_total", "pushring_fanout_withhold_timeouts_total", "pushring_session_kicked_total", "pushring_mqtt_slow_sessions_total", "pushring_fanout_muted_total", "pushring_fanout_peer_drops_total", "pushring_fanout_dropped_repeats_total", "pushring_journal_replay_withdrawn_total"} {
			parts = append(parts, fmt.Sprintf("%s=%v", strings.TrimPrefix(m, "pushring_"), metricValue(n.p, m)))
		}
		t.Logf("chaos: counters of %s (since its last start): %s", n.p.id, strings.Join(parts, " "))
	}
	chaosDump(t, members, t0d, map[string][]chaos.Record{"g": grecs, "d": drecs})

	// The harness did what it says: traffic flowed and the faults hit.
	if want := int((trafficEnd - t0d) / chaosGroupEvery); total.GroupMade < want*8/10 {
		t.Logf("chaos: warning: the group publisher made %d messages where its pace gives %d: the test process was short of CPU, and its clients may have been too",
			total.GroupMade, want)
	}
	checkDelivered(t, members, grecs, drecs, t0d, total, 100, 50)
}

// checkDelivered fails t unless the traffic flowed (at least minGroup
// group and minDirect direct messages acknowledged) and every
// acknowledged message reached every recipient, first deliveries in the
// order the publisher sent them, and nothing came to the wrong member.
func checkDelivered(t *testing.T, ms []*chaos.Member, grecs, drecs []chaos.Record, t0 time.Duration, total *chaos.Window, minGroup, minDirect int) {
	t.Helper()
	if total.GroupAcked < minGroup || total.DirectAcked < minDirect {
		t.Fatalf("only %d group and %d direct messages acknowledged: the traffic did not flow", total.GroupAcked, total.DirectAcked)
	}
	if total.Strays > 0 {
		t.Errorf("%d deliveries were not for the member that got them, or unreadable", total.Strays)
	}
	if total.Lost > 0 {
		_, sample := chaos.Missing(ms, grecs, drecs, t0)
		t.Errorf("%d acknowledged member deliveries lost (group %d, direct %d), for example %s",
			total.Lost, total.LostGroup, total.LostDirect, sample)
	}
	if total.OutOfOrder > 0 {
		t.Errorf("%d first deliveries of acknowledged messages came after a later message of the same publisher", total.OutOfOrder)
	}
}

// chaosCluster is n pushring nodes (separate processes) on a cluster of
// three NATS servers (separate processes): chaos.Cluster, and each node
// as the cluster's API helpers know it.
type chaosCluster struct {
	*chaos.Cluster
	c     *cluster // the API helpers
	nodes []*chaosNode
}

// chaosNode is one pushring node process of the chaos run.
type chaosNode struct {
	*chaos.Node
	p *proc // id and addresses, for the cluster's API helpers
}

// newChaosCluster starts three NATS servers, then n nodes n1…n<n> on them
// (see chaos.Start), and waits until every node sees all n. With go test
// -artifacts the servers' logs are kept; the end of each is logged if
// the test fails.
func newChaosCluster(t *testing.T, n int) *chaosCluster {
	t.Helper()
	cl, err := chaos.Start(chaos.Config{Bin: pushringBinary(t), NATSBin: natsServerBinary(t), Dir: t.TempDir(),
		AdminKey: adminKey, Nodes: n,
		Flags: []string{"--log-level", "info", "--login-rate", "-1"}}) // the test logs in many users from one address
	if cl != nil {
		t.Cleanup(func() {
			cl.Stop()
			for _, l := range cl.Logs() {
				b, err := os.ReadFile(l)
				if err != nil {
					continue
				}
				os.WriteFile(filepath.Join(t.ArtifactDir(), filepath.Base(l)), b, 0o600)
				if t.Failed() {
					t.Logf("--- log of %s (last 3000 bytes)\n%s", filepath.Base(l), tail(b, 3000))
				}
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	cc := &chaosCluster{Cluster: cl, c: &cluster{t: t}}
	for _, nd := range cl.Nodes {
		p := &proc{id: nd.ID, mqtt: nd.MQTT, http: nd.HTTP, gossip: nd.Gossip}
		cc.nodes = append(cc.nodes, &chaosNode{Node: nd, p: p})
	}
	return cc
}

// natsServerBinary builds the NATS server of go.mod once for the whole
// test binary: the version pushring is built and tested against.
func natsServerBinary(t *testing.T) string {
	return goBinary(t, "nats-server", "github.com/nats-io/nats-server/v2")
}

// others are the nodes but n.
func (cc *chaosCluster) others(n *chaosNode) []*chaos.Node {
	var out []*chaos.Node
	for _, o := range cc.Nodes {
		if o != n.Node {
			out = append(out, o)
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

// publishers are the run's two devices, made publishers of group "all":
// gpub publishes numbered group messages every gEvery, dpub numbered
// direct messages every dEvery to the members in turn (see
// chaos.DirectTarget). Each connects through its home node first.
func (cc *chaosCluster) publishers(gpub, dpub string, members []*chaos.Member, gEvery, dEvery time.Duration, epoch time.Time) (group, direct *chaos.Publisher) {
	r := ring.New(cc.IDs(), ring.DefaultConfig())
	publisher := func(id string, every time.Duration, message func(seq int) (string, []byte)) *chaos.Publisher {
		return &chaos.Publisher{Session: chaos.Session{ClientID: id + "-dev", Username: id, Password: cc.device(id)},
			Addrs: cc.MQTTAddrs(r.Home(id)), Every: every, Epoch: epoch, Message: message}
	}
	group = publisher(gpub, gEvery, func(seq int) (string, []byte) { return "/group/all", []byte("g " + strconv.Itoa(seq)) })
	direct = publisher(dpub, dEvery, func(seq int) (string, []byte) {
		return "/private/" + members[chaos.DirectTarget(seq, len(members))].ID, []byte("d " + strconv.Itoa(seq))
	})
	return group, direct
}

// chaosDump writes the artifacts of a run: chaos.tsv, one line per
// message (when made and acknowledged, how often sent, members missing
// it, copies, first deliveries out of order, the first and last first
// delivery), and sample-members.tsv, what the first few members that got
// something out of order or missed something saw, to see what overtook
// what. Times are since t0.
func chaosDump(t *testing.T, ms []*chaos.Member, t0 time.Duration, recs map[string][]chaos.Record) {
	perMsg := func() map[string][]int {
		return map[string][]int{"g": make([]int, len(recs["g"])), "d": make([]int, len(recs["d"]))}
	}
	missing, copies, reordered := perMsg(), perMsg(), perMsg()
	firstMin, firstMax := map[string][]time.Duration{}, map[string][]time.Duration{}
	for _, k := range []string{"g", "d"} {
		firstMin[k] = make([]time.Duration, len(recs[k]))
		firstMax[k] = make([]time.Duration, len(recs[k]))
	}
	var sample strings.Builder
	sampled := 0
	for _, m := range ms {
		h := m.History()
		seen := map[string][]bool{"g": make([]bool, len(recs["g"])), "d": make([]bool, len(recs["d"]))}
		memberReordered := false
		maxAcked := map[string]int{"g": -1, "d": -1}
		for _, a := range h.Got {
			k := string(a.Kind)
			if int(a.Seq) >= len(copies[k]) {
				continue
			}
			copies[k][a.Seq]++
			if seen[k][a.Seq] {
				continue
			}
			seen[k][a.Seq] = true
			if firstMin[k][a.Seq] == 0 || a.At < firstMin[k][a.Seq] {
				firstMin[k][a.Seq] = a.At
			}
			firstMax[k][a.Seq] = max(firstMax[k][a.Seq], a.At)
			if recs[k][a.Seq].Acked != 0 {
				if int(a.Seq) < maxAcked[k] {
					reordered[k][a.Seq]++
					memberReordered = true
				} else {
					maxAcked[k] = int(a.Seq)
				}
			}
		}
		missed := false
		for seq, r := range recs["g"] {
			if r.Acked != 0 && !seen["g"][seq] {
				missed = true
				break
			}
		}
		if (memberReordered || missed) && sampled < 5 {
			sampled++
			for _, a := range h.Got {
				fmt.Fprintf(&sample, "%s\t%c\t%d\t%.3f\n", m.ID, a.Kind, a.Seq, (a.At - t0).Seconds())
			}
			for _, at := range h.Lost {
				fmt.Fprintf(&sample, "%s\tlost\t-\t%.3f\n", m.ID, (at - t0).Seconds())
			}
			for _, at := range h.Conns {
				fmt.Fprintf(&sample, "%s\tconn\t-\t%.3f\n", m.ID, (at - t0).Seconds())
			}
		}
		for seq := range recs["g"] {
			if !seen["g"][seq] {
				missing["g"][seq]++
			}
		}
		for seq := range recs["d"] {
			if m.IsTarget(seq) && !seen["d"][seq] {
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
			if r.Acked != 0 {
				acked = sec(r.Acked)
			}
			fmt.Fprintf(&b, "%s\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", k, seq, sec(r.Made), acked, r.Sends, missing[k][seq], copies[k][seq],
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

// group creates group "all" and n members of it, connected and warm
// (see connectChaosMembers and warmUp).
func (cc *chaosCluster) group(epoch time.Time, n int) []*chaos.Member {
	c, nodes := cc.c, cc.nodes
	c.mustAPI(nodes[0].p, "POST", "/v1/groups", map[string]any{"id": "all"}, nil)
	testutil.CheckFor(c.t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, n := range nodes {
			if err := c.api(n.p, "GET", "/v1/groups/all", nil, nil); err != nil {
				return err // the others learn of it through the store's watch
			}
		}
		return nil
	})
	members := connectChaosMembers(c.t, c, nodes, epoch, n)
	warmUp(c.t, c, nodes[0].p, members)
	return members
}

// connectChaosMembers creates n users in group "all" (through
// the nodes in turn), logs each in and connects it with a persistent
// session to the addresses its login returned, home first.
func connectChaosMembers(t *testing.T, c *cluster, nodes []*chaosNode, epoch time.Time, n int) []*chaos.Member {
	t.Helper()
	out := make([]*chaos.Member, n)
	clients := make([]mqtt.Client, n)
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
			m := chaos.NewMember(id, i, n, epoch)
			opts := mqtt.NewClientOptions().SetClientID(id + "-phone").SetUsername(id).SetPassword(login.Token)
			for _, a := range login.MQTT {
				opts.AddBroker("tcp://" + a)
			}
			opts.SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true)
			opts.SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(500 * time.Millisecond)
			opts.SetKeepAlive(3 * time.Second).SetPingTimeout(2 * time.Second).SetConnectTimeout(2 * time.Second)
			// A persistent session's backlog may arrive before the
			// SUBSCRIBE of a reconnect: the default handler takes it.
			opts.SetDefaultPublishHandler(func(_ mqtt.Client, msg mqtt.Message) {
				m.Receive([]byte(msg.Topic()), msg.Payload(), time.Since(epoch))
			})
			opts.SetConnectionLostHandler(func(mqtt.Client, error) { m.Lost() })
			opts.SetOnConnectHandler(func(cl mqtt.Client) {
				m.Connected()
				// The session keeps it; again is harmless, and needed
				// where the session did not survive.
				cl.Subscribe(m.Direct+"/#", 1, nil)
			})
			cl := mqtt.NewClient(opts)
			clients[i] = cl
			if tok := cl.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
				errs <- fmt.Errorf("%s connect: %v", id, tok.Error())
				return
			}
			out[i] = m
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, cl := range clients {
			if cl != nil {
				cl.Disconnect(50)
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
func warmUp(t *testing.T, c *cluster, p *proc, ms []*chaos.Member) {
	t.Helper()
	k := 0
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		for _, m := range ms {
			if !m.Warm() {
				if err := c.publishAll(p, "w "+strconv.Itoa(k), 1); err != nil {
					return err
				}
				k++
				return fmt.Errorf("%s has no warm-up message yet", m.ID)
			}
		}
		return nil
	})
}
