package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nkeys"
)

// dialAddr is the MQTT address c dials: its own (a cluster member's home
// node) or the system's.
func dialAddr(sys System, c Client) string {
	if c.Addr != "" {
		return c.Addr
	}
	return sys.MQTTAddr()
}

// ClusterNode is one node of a cluster run, in the JSON.
type ClusterNode struct {
	ID             string            `json:"id"`
	MQTT           string            `json:"mqtt"`
	Members        int               `json:"members"`         // members homed (and connected) here
	EnvelopesSent  map[string]uint64 `json:"envelopes_sent"`  // by destination peer, self included, from the end of setup to the end of the drain
	AcksSent       map[string]uint64 `json:"acks_sent"`       // Ack envelopes (QoS 1 confirmations, batched) by destination peer, same span
	AttachForwards uint64            `json:"attach_forwards"` // same span
	CPUs           float64           `json:"cpu_s"`           // same span
	RSSMiB         float64           `json:"rss_mib"`         // at the end
}

// LocalCluster is n pushring nodes the harness started on loopback: node
// n1 runs the embedded NATS server (--nats-listen, letting in the nkeys
// of the others, --nats-authorized-keys-file), the others use it
// (--nats-url, signed in with the nkey in their data dir) and
// join n1's gossip (--join). Setup goes through n1's HTTP API; each
// client dials its home node.
type LocalCluster struct {
	nodes []*Pushring
	ids   []string

	// set by SetupFanout
	members     []int // per node: members homed there
	homesPerGrp float64
	before      []nodeSample
}

type nodeSample struct {
	sent    map[string]uint64
	acks    map[string]uint64
	attach  uint64
	cpu     float64
	rssKiB  int64
	scraped bool
}

// StartCluster starts n nodes of bin (n1 first, then the others at once)
// on free loopback ports, each with its own temp data dir (removed on
// Stop), one shared admin key, connection and login rate limits off, and
// waits until every node sees all n alive. extra flags go to every node.
func StartCluster(bin string, n int, extra ...string) (*LocalCluster, error) {
	if n < 1 {
		return nil, errors.New("a cluster needs at least one node")
	}
	key := randHex(32)
	// The nodes gossip encrypted, as a cluster joined with --join must:
	// one key file line, base64 of 32 bytes (AES-256).
	gossipKey := make([]byte, 32)
	rand.Read(gossipKey)
	keyLine := base64.StdEncoding.EncodeToString(gossipKey) + "\n"
	c := &LocalCluster{}
	var gossip1, natsAddr, natsURL string
	// Each node signs in to n1's NATS with its own nkey: made before the
	// start, in the data dir where the node looks for it, and listed in
	// n1's authorized-keys file.
	dirs := make([]string, n)
	var authorized strings.Builder
	for i := range dirs {
		dir, err := os.MkdirTemp("", "pushbench-cluster-")
		if err == nil {
			dirs[i] = dir
			err = os.MkdirAll(filepath.Join(dir, "data"), 0o700)
		}
		if err == nil && i > 0 {
			var pub string
			if pub, err = writeNKey(filepath.Join(dir, "data", "nats.nk")); err == nil {
				fmt.Fprintf(&authorized, "n%d %s\n", i+1, pub)
			}
		}
		if err != nil {
			for _, d := range dirs {
				if d != "" {
					os.RemoveAll(d)
				}
			}
			return nil, err
		}
	}
	authorizedFile := filepath.Join(dirs[0], "authorized_keys")
	if err := os.WriteFile(authorizedFile, []byte(authorized.String()), 0o600); err != nil {
		for _, d := range dirs {
			os.RemoveAll(d)
		}
		return nil, err
	}
	start := func(i int) (*Pushring, error) {
		dir := dirs[i]
		var err error
		var ports [4]int
		for j := range ports {
			if ports[j], err = freePort(); err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
		}
		id := "n" + strconv.Itoa(i+1)
		mqtt := "127.0.0.1:" + strconv.Itoa(ports[0])
		httpAddr := "127.0.0.1:" + strconv.Itoa(ports[1])
		gossip := "127.0.0.1:" + strconv.Itoa(ports[2])
		keyFile := filepath.Join(dir, "gossip.key")
		if err := os.WriteFile(keyFile, []byte(keyLine), 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		args := []string{
			"--data-dir", filepath.Join(dir, "data"), "--gossip-key-file", keyFile,
			"--mqtt-addr", mqtt, "--http-addr", httpAddr, "--gossip-addr", gossip,
			"--node-id", id,
			"--connect-rate", "-1", "--login-rate", "-1", "--publish-rate", "-1", "--publish-bytes-rate", "-1", "--log-level", "warn"}
		switch {
		case i == 0 && n > 1:
			natsAddr, gossip1 = "127.0.0.1:"+strconv.Itoa(ports[3]), gossip
			args = append(args, "--nats-listen", natsAddr, "--nats-authorized-keys-file", authorizedFile)
		case i > 0:
			args = append(args, "--join", gossip1, "--nats-url", natsURL)
		}
		p, err := startProcess(dir, id+".log", []string{"PUSHRING_ADMIN_KEY=" + key}, bin, append(args, extra...)...)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s := NewPushring(mqtt, "http://"+httpAddr, key, p.pid())
		s.proc = p
		return s, nil
	}
	fail := func(err error) (*LocalCluster, error) {
		c.Stop()
		for _, d := range dirs[len(c.nodes):] { // not started: Stop leaves them
			os.RemoveAll(d)
		}
		return nil, err
	}

	n1, err := start(0)
	if err != nil {
		return nil, err
	}
	c.nodes, c.ids = append(c.nodes, n1), append(c.ids, "n1")
	if err := n1.waitReady(60 * time.Second); err != nil {
		return fail(fmt.Errorf("n1: %w", err))
	}
	natsURL = "nats://" + natsAddr
	for i := 1; i < n; i++ {
		s, err := start(i)
		if err != nil {
			return fail(err)
		}
		c.nodes, c.ids = append(c.nodes, s), append(c.ids, "n"+strconv.Itoa(i+1))
	}
	for i, s := range c.nodes[1:] {
		if err := s.waitReady(60 * time.Second); err != nil {
			return fail(fmt.Errorf("%s: %w", c.ids[i+1], err))
		}
	}
	// Every node must see every other alive before homes are computed.
	deadline := time.Now().Add(30 * time.Second)
	for i, s := range c.nodes {
		for {
			alive := 0
			if cl, err := s.api.Cluster(context.Background()); err == nil {
				for _, nd := range cl.AllNodes() {
					if nd.State == "" || nd.State == "alive" {
						alive++
					}
				}
			}
			if alive == n {
				break
			}
			if time.Now().After(deadline) {
				return fail(fmt.Errorf("%s sees %d of %d nodes alive after 30 s: %s", c.ids[i], alive, n, s.proc.logTail()))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c, nil
}

// waitReady polls /readyz until 200, the process exits or timeout.
func (s *Pushring) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.proc.done:
			return fmt.Errorf("pushring exited (%v): %s", s.proc.err, s.proc.logTail())
		default:
		}
		if resp, err := s.hc.Get(s.http + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %s", timeout, s.proc.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Name is pushring-cluster, or pushring-single for one node.
func (c *LocalCluster) Name() string {
	if len(c.nodes) == 1 {
		return "pushring-single"
	}
	return "pushring-cluster"
}

// MQTTAddr is n1's: clients of a cluster plan dial their Addr instead.
func (c *LocalCluster) MQTTAddr() string { return c.nodes[0].mqtt }

// PID is 0: the nodes' CPU and RSS are summed by RunClusterFanout instead.
func (c *LocalCluster) PID() int { return 0 }

// Stop stops the nodes, n1 (the NATS server) last.
func (c *LocalCluster) Stop() error {
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, s := range c.nodes[min(1, len(c.nodes)):] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Stop(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(c.nodes) > 0 {
		errs = append(errs, c.nodes[0].Stop())
	}
	return errors.Join(errs...)
}

// SetupFanout sets up G groups × M members and D devices per group through
// n1 (as Pushring.SetupFanout), then gives every client the first MQTT
// address GET /v1/route/{id} returns for it (its home node) and samples
// every node's /metrics and /proc.
func (c *LocalCluster) SetupFanout(ctx context.Context, groups, members, devices int) (*FanoutPlan, error) {
	n1 := c.nodes[0]
	plan, err := n1.SetupFanout(ctx, groups, members, devices)
	if err != nil {
		return nil, err
	}
	byAddr := map[string]int{}
	for i, s := range c.nodes {
		byAddr[s.mqtt] = i
	}
	clients := make([]*Client, 0, len(plan.Members)+len(plan.Publishers))
	for i := range plan.Members {
		clients = append(clients, &plan.Members[i])
	}
	for i := range plan.Publishers {
		clients = append(clients, &plan.Publishers[i])
	}
	home := make([]int, len(clients))
	if err := parallel(ctx, len(clients), 16, func(ctx context.Context, i int) error {
		r, err := n1.api.Route(ctx, clients[i].ID)
		if err != nil {
			return err
		}
		nd := r.HomeNode()
		if len(nd.MQTT) == 0 {
			return fmt.Errorf("route %s: no MQTT address", clients[i].ID)
		}
		n, ok := byAddr[nd.MQTT[0]]
		if !ok {
			return fmt.Errorf("route %s: home %s (%s) is none of the started nodes", clients[i].ID, nd.ID, nd.MQTT[0])
		}
		clients[i].Addr, home[i] = nd.MQTT[0], n
		return nil
	}); err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	c.members = make([]int, len(c.nodes))
	homes := make([]map[int]bool, groups)
	for i, m := range plan.Members {
		c.members[home[i]]++
		if homes[m.Group] == nil {
			homes[m.Group] = map[int]bool{}
		}
		homes[m.Group][home[i]] = true
	}
	var sum int
	for _, h := range homes {
		sum += len(h)
	}
	c.homesPerGrp = float64(sum) / float64(groups)
	plan.Note += "; each client dials its home node (first MQTT address of GET /v1/route/{id})"
	c.before = c.sample(ctx)
	return plan, nil
}

func (c *LocalCluster) SetupDirect(ctx context.Context, users, senders int) (*FanoutPlan, error) {
	return nil, errors.New("the cluster runs fanout only")
}

func (c *LocalCluster) SetupIdle(ctx context.Context, k int) (*FanoutPlan, error) {
	return nil, errors.New("the cluster runs fanout only")
}

// sample reads every node's envelope counters (/metrics) and /proc.
func (c *LocalCluster) sample(ctx context.Context) []nodeSample {
	out := make([]nodeSample, len(c.nodes))
	for i, s := range c.nodes {
		m, err := s.scrapeFanout(ctx)
		out[i] = nodeSample{sent: m.sent, acks: m.acks, attach: m.attach, scraped: err == nil}
		if p, err := ReadProc(s.pid); err == nil {
			out[i].cpu, out[i].rssKiB = p.CPUSeconds, p.RSSKiB
		}
	}
	return out
}

// fanoutMetrics are a node's envelope counters.
type fanoutMetrics struct {
	sent   map[string]uint64 // pushring_fanout_envelopes_sent_total by peer
	acks   map[string]uint64 // pushring_fanout_acks_sent_total by peer
	attach uint64            // pushring_fanout_attach_forwards_total
}

// scrapeFanout reads the node's envelope counters from its /metrics.
func (s *Pushring) scrapeFanout(ctx context.Context) (fanoutMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.http+"/metrics", nil)
	if err != nil {
		return fanoutMetrics{}, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return fanoutMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fanoutMetrics{}, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseFanoutMetrics(resp.Body)
}

func parseFanoutMetrics(r io.Reader) (fanoutMetrics, error) {
	m := fanoutMetrics{sent: map[string]uint64{}, acks: map[string]uint64{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	value := func(s string) uint64 {
		f, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
		return uint64(f)
	}
	byPeer := func(line, prefix string, into map[string]uint64) bool {
		rest, ok := strings.CutPrefix(line, prefix+`{peer="`)
		if !ok {
			return false
		}
		if peer, v, ok := strings.Cut(rest, `"} `); ok {
			into[peer] = value(v)
		}
		return true
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case byPeer(line, "pushring_fanout_envelopes_sent_total", m.sent):
		case byPeer(line, "pushring_fanout_acks_sent_total", m.acks):
		default:
			if v, ok := strings.CutPrefix(line, "pushring_fanout_attach_forwards_total "); ok {
				m.attach = value(v)
			}
		}
	}
	return m, sc.Err()
}

// RunClusterFanout runs the fanout of the cluster scenario on sys: on a
// LocalCluster (pushring-cluster, or pushring-single for one node) with
// its figures (envelopes per publish, home nodes per group, per-node
// details, the nodes' CPU and RSS); on a plain broker the plain fanout.
// The row's scenario is cluster; FillClusterRatios sets the cluster's
// deliveries/s over the single node's once both ran.
func RunClusterFanout(ctx context.Context, sys System, cfg FanoutConfig) Result {
	res := RunFanout(ctx, sys, cfg)
	res.Scenario, res.Nodes = "cluster", 1
	if lc, ok := sys.(*LocalCluster); ok {
		res.Nodes = len(lc.nodes)
		if res.Error == "" && lc.before != nil {
			lc.finish(ctx, &res)
		}
	}
	return res
}

// FillClusterRatios sets cluster_over_single on the pushring-cluster row
// (and on each of its Runs, from the single node's run of the same
// number): its deliveries/s over pushring-single's.
func FillClusterRatios(results []Result) {
	var single, cluster *Result
	for i := range results {
		switch x := &results[i]; {
		case x.Error != "" || x.Scenario != "cluster":
		case x.System == "pushring-single":
			single = x
		case x.System == "pushring-cluster":
			cluster = x
		}
	}
	if single == nil || cluster == nil {
		return
	}
	if single.DeliveriesPerS > 0 {
		r := cluster.DeliveriesPerS / single.DeliveriesPerS
		cluster.ClusterOverSingle = &r
	}
	for i := range cluster.Runs {
		for _, s := range single.Runs {
			if c := &cluster.Runs[i]; s.Run == c.Run && s.Error == "" && c.Error == "" && s.DeliveriesPerS > 0 {
				r := c.DeliveriesPerS / s.DeliveriesPerS
				c.ClusterOverSingle = &r
			}
		}
	}
}

// finish fills the cluster figures of res from the nodes' samples since
// the end of setup.
func (c *LocalCluster) finish(ctx context.Context, res *Result) {
	after := c.sample(ctx)
	var inter, acks uint64
	var cpu float64
	var rss int64
	scraped := true
	for i, s := range c.nodes {
		b, a := c.before[i], after[i]
		scraped = scraped && b.scraped && a.scraped
		nd := ClusterNode{ID: c.ids[i], MQTT: s.mqtt, Members: c.members[i], EnvelopesSent: map[string]uint64{}, AcksSent: map[string]uint64{},
			AttachForwards: a.attach - min(b.attach, a.attach), CPUs: a.cpu - b.cpu, RSSMiB: float64(a.rssKiB) / 1024}
		for peer, v := range a.acks {
			d := v - min(b.acks[peer], v)
			nd.AcksSent[peer] = d
			acks += d // an Ack never goes to its own node (it skips the bus)
		}
		for peer, v := range a.sent {
			d := v - min(b.sent[peer], v)
			nd.EnvelopesSent[peer] = d
			if peer != c.ids[i] {
				inter += d
			}
		}
		cpu += nd.CPUs
		rss += a.rssKiB
		res.ClusterNodes = append(res.ClusterNodes, nd)
	}
	rssMiB := float64(rss) / 1024
	res.NodesCPUs, res.NodesRSSMiB = &cpu, &rssMiB
	h := c.homesPerGrp
	res.HomeNodesPerGroup = &h
	if scraped && res.Sent > 0 {
		e := float64(inter) / float64(res.Sent)
		res.EnvelopesPerPublish = &e
		a := float64(acks) / float64(res.Sent)
		res.AcksPerPublish = &a
	}
	var parts []string
	for _, nd := range res.ClusterNodes {
		pe, pa := nonZeroByPeer(nd.EnvelopesSent), nonZeroByPeer(nd.AcksSent)
		parts = append(parts, fmt.Sprintf("%s (%d members) sent {%s}, acks {%s}", nd.ID, nd.Members, strings.Join(pe, " "), strings.Join(pa, " ")))
	}
	res.Note += fmt.Sprintf("; envelopes over %d group publishes: %s; nodes' CPU and RSS summed, from the end of setup to the end of the drain",
		res.Sent, strings.Join(parts, ", "))
}

// nonZeroByPeer lists the non-zero counts of m as "peer:count", by peer.
func nonZeroByPeer(m map[string]uint64) []string {
	var out []string
	for _, p := range slices.Sorted(maps.Keys(m)) {
		if v := m[p]; v > 0 {
			out = append(out, fmt.Sprintf("%s:%d", p, v))
		}
	}
	return out
}

// WriteClusterTable prints the cluster rows (and any baseline fanout rows
// of the same run): deliveries, latency, loss, inter-node envelopes per
// group publish, the members' home nodes per group, and the cluster's
// deliveries/s over each row's.
func (r *Report) WriteClusterTable(out io.Writer) {
	tw := newTable(out)
	fmt.Fprintln(tw, "system\tnodes\tqos\tconns\tdeliveries/s\tp50 ms\tp90 ms\tp99 ms\tmax ms\tlost\tdups\tenvelopes/publish\tacks/publish\thome nodes/group\tnodes CPU s\tnodes RSS MiB\tcluster/this deliv/s\t")
	var cl *Result
	for i, x := range r.Results {
		if x.System == "pushring-cluster" && x.Error == "" {
			cl = &r.Results[i]
		}
	}
	for _, x := range r.Results {
		if x.Error != "" {
			fmt.Fprintf(tw, "%s\t%d\t%d\tfailed\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", x.System, x.Nodes, x.QoS)
			continue
		}
		nodes := x.Nodes
		if nodes == 0 {
			nodes = 1
		}
		ratio := "-"
		if cl != nil && x.DeliveriesPerS > 0 {
			ratio = fmt.Sprintf("%.2f", cl.DeliveriesPerS/x.DeliveriesPerS)
		}
		cpu, rss := x.NodesCPUs, x.NodesRSSMiB
		if cpu == nil {
			cpu, rss = x.ServerCPUs, x.ServerRSSMiB
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			x.System, nodes, x.QoS, x.Connections, x.DeliveriesPerS, x.P50ms, x.P90ms, x.P99ms, x.Maxms, x.Lost, x.Duplicates,
			optf(x.EnvelopesPerPublish, "%.2f"), optf(x.AcksPerPublish, "%.2f"), optf(x.HomeNodesPerGroup, "%.1f"), optf(cpu, "%.2f"), optf(rss, "%.1f"), ratio)
	}
	tw.Flush()
	if cl != nil && cl.ClusterOverSingle != nil {
		fmt.Fprintf(out, "cluster/single deliveries/s: %.2f (target >= 0.7); inter-node envelopes per group publish: %s "+
			"(members' home nodes per group: %s; ideal: one Deliver per home node other than the group's owner, plus one Resolve when the publisher's node is not the owner); "+
			"QoS 1 confirmation (Ack) envelopes per publish: %s (batched; at most one per delivering node other than the publisher's, plus the owner's count)\n",
			*cl.ClusterOverSingle, optf(cl.EnvelopesPerPublish, "%.2f"), optf(cl.HomeNodesPerGroup, "%.1f"), optf(cl.AcksPerPublish, "%.2f"))
	}
	writeNotes(out, r.Results)
}

// WriteScenarioTable prints the churn, cluster or chaos table when the results
// are of that scenario and reports whether it did; WriteTable prints the
// others.
func (r *Report) WriteScenarioTable(out io.Writer) bool {
	for _, x := range r.Results {
		switch x.Scenario {
		case "churn":
			r.WriteChurnTable(out)
			return true
		case "cluster":
			r.WriteClusterTable(out)
			return true
		case "chaos":
			r.WriteChaosTable(out)
			return true
		}
	}
	return false
}

func newTable(out io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
}

func writeNotes(out io.Writer, results []Result) {
	for _, x := range results {
		switch {
		case x.Error != "":
			fmt.Fprintf(out, "%s: FAILED: %s\n", x.System, x.Error)
		case x.Note != "":
			fmt.Fprintf(out, "%s: %s\n", x.System, x.Note)
		}
	}
}

// writeNKey writes a new user nkey seed to path (mode 0600) and returns
// its public key.
func writeNKey(path string) (string, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", err
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	return pub, os.WriteFile(path, append(seed, '\n'), 0o600)
}
