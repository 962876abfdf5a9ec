package membership

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/ring"
)

// logs collects every node's log of a test; it is printed if the test fails.
type logs struct {
	buf testutil.SyncBuffer
}

func newLogs(t *testing.T) *logs {
	l := &logs{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("cluster log:\n" + l.buf.String())
		}
	})
	return l
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&l.buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testKey is the gossip key of the test clusters: they run as deployed
// clusters do, encrypted.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func testConfig(l *logs, id string, join ...string) Config {
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.Keys = [][]byte{testKey}
	cfg.GossipAddr = "127.0.0.1:0"
	cfg.Join = join
	cfg.MQTT = []string{"127.0.0.1:1883"}
	cfg.HTTP = "127.0.0.1:8080"
	cfg.Version = "test"
	cfg.Logger = l.logger()
	return cfg
}

func start(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	c, err := Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startCluster starts n nodes n1…nN, each joining n1, and waits until all
// see all.
func startCluster(t *testing.T, l *logs, n int) []*Cluster {
	t.Helper()
	cs := []*Cluster{start(t, testConfig(l, "n1"))}
	for i := 2; i <= n; i++ {
		cs = append(cs, start(t, testConfig(l, "n"+strconv.Itoa(i), cs[0].GossipAddr())))
	}
	waitRing(t, cs, ids(n)...)
	return cs
}

func ids(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = "n" + strconv.Itoa(i+1)
	}
	return s
}

// waitRing waits until every cluster's ring is exactly nodes.
func waitRing(t *testing.T, cs []*Cluster, nodes ...string) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, c := range cs {
			if got := c.Ring().Nodes(); !slices.Equal(got, nodes) {
				return fmt.Errorf("%s sees %v, want %v", c.Self().ID, got, nodes)
			}
		}
		return nil
	})
}

func TestClusterConverges(t *testing.T) {
	l := newLogs(t)
	cs := startCluster(t, l, 3)

	for _, c := range cs {
		nodes := c.Nodes()
		if len(nodes) != 3 {
			t.Fatalf("%s: Nodes = %+v", c.Self().ID, nodes)
		}
		var sum float64
		for i, n := range nodes {
			if n.ID != "n"+strconv.Itoa(i+1) || n.State != StateAlive || n.HTTP != "127.0.0.1:8080" ||
				!slices.Equal(n.MQTT, []string{"127.0.0.1:1883"}) || n.Version != "test" || n.RingPart < 0.2 {
				t.Errorf("%s: node %+v", c.Self().ID, n)
			}
			sum += n.RingPart
		}
		if sum < 0.999 || sum > 1.001 {
			t.Errorf("shares add up to %v", sum)
		}
		if s := c.Self(); s.State != StateAlive || s.RingPart < 0.2 {
			t.Errorf("Self = %+v", s)
		}
	}
	for i := range 1000 {
		id := "user-" + strconv.Itoa(i)
		h := cs[0].Home(id)
		for _, c := range cs[1:] {
			if c.Home(id) != h || c.Owner(id) != cs[0].Owner(id) || c.HomeNode(id).ID != h {
				t.Fatalf("%s: homes disagree: %s vs %s", id, c.Home(id), h)
			}
		}
	}
}

func TestClusterCrash(t *testing.T) {
	l := newLogs(t)
	cs := startCluster(t, l, 3)
	// A crash: gossip stops without a leave.
	crashed := time.Now()
	cs[2].Close()
	survivors := cs[:2]

	var mu sync.Mutex
	seen := map[string]time.Duration{}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, c := range survivors {
			id := c.Self().ID
			if c.Ring().Has("n3") {
				return fmt.Errorf("%s still has n3 on its ring", id)
			}
			mu.Lock()
			if _, ok := seen[id]; !ok {
				seen[id] = time.Since(crashed)
			}
			mu.Unlock()
		}
		return nil
	})
	t.Logf("crashed node off the survivors' rings after %v", seen)
	for _, c := range survivors {
		n, ok := c.Member("n3")
		if !ok || n.State != StateDead || n.RingPart != 0 {
			t.Errorf("%s: n3 is %+v, want dead", c.Self().ID, n)
		}
		if len(c.Nodes()) != 2 {
			t.Errorf("%s: Nodes = %+v", c.Self().ID, c.Nodes())
		}
	}
	if !l.buf.Contains("node failed") {
		t.Error("no \"node failed\" log line")
	}
	waitRing(t, survivors, "n1", "n2")
}

func TestClusterLeave(t *testing.T) {
	l := newLogs(t)
	cs := startCluster(t, l, 3)
	changed := make(chan [2]*ring.Ring, 8)
	cs[0].OnChange(func(old, new *ring.Ring) { changed <- [2]*ring.Ring{old, new} })

	t0 := time.Now()
	if err := cs[2].Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("Leave returned after %v", time.Since(t0))
	waitRing(t, cs[:2], "n1", "n2")
	t.Logf("left node off the others' rings after %v", time.Since(t0))
	for _, c := range cs[:2] {
		if n, ok := c.Member("n3"); !ok || n.State != StateLeft {
			t.Errorf("%s: n3 is %+v, want left", c.Self().ID, n)
		}
	}
	// The leaver places everything on the others from now on.
	if s := cs[2].Self(); s.State != StateLeft || cs[2].Ring().Has("n3") {
		t.Errorf("leaver: self %+v, ring %v", s, cs[2].Ring().Nodes())
	}
	if err := cs[2].Leave(time.Second); err != nil {
		t.Errorf("second Leave: %v", err)
	}
	// Closing after a leave does not turn it into a failure.
	cs[2].Close()
	if err := cs[2].Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Close: %v", err)
	}
	if err := cs[2].Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	select {
	case ch := <-changed:
		if !slices.Equal(ch[0].Nodes(), ids(3)) || !slices.Equal(ch[1].Nodes(), ids(2)) {
			t.Errorf("OnChange: %v → %v", ch[0].Nodes(), ch[1].Nodes())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnChange not called")
	}
	testutil.CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		for _, c := range cs[:2] {
			if n, _ := c.Member("n3"); n.State != StateLeft {
				return fmt.Errorf("%s: n3 is %s", c.Self().ID, n.State)
			}
		}
		return nil
	})
}

func TestClusterJoinMovesAQuarter(t *testing.T) {
	l := newLogs(t)
	reg := prometheus.NewRegistry()
	cfg := testConfig(l, "n1")
	cfg.Registerer = reg
	cs := []*Cluster{start(t, cfg)}
	for i := 2; i <= 3; i++ {
		cs = append(cs, start(t, testConfig(l, "n"+strconv.Itoa(i), cs[0].GossipAddr())))
	}
	waitRing(t, cs, ids(3)...)
	if got := cs[0].RingChanges(); got != 2 {
		t.Errorf("ring changes after two joins: %d", got)
	}

	const users = 10000
	before := make([]string, users)
	for i := range before {
		before[i] = cs[0].Home("user-" + strconv.Itoa(i))
	}
	sub, unsub := cs[0].Subscribe()
	defer unsub()
	var mu sync.Mutex
	var moves []int
	cs[0].OnChange(func(old, new *ring.Ring) {
		moved := 0
		for i := range users {
			id := "user-" + strconv.Itoa(i)
			if old.Home(id) != new.Home(id) {
				moved++
			}
		}
		mu.Lock()
		moves = append(moves, moved)
		mu.Unlock()
	})

	cs = append(cs, start(t, testConfig(l, "n4", cs[1].GossipAddr())))
	waitRing(t, cs, ids(4)...)

	moved := 0
	for i, was := range before {
		now := cs[0].Home("user-" + strconv.Itoa(i))
		if now != was {
			moved++
			if now != "n4" {
				t.Fatalf("user-%d moved %s → %s, not to the new node", i, was, now)
			}
		}
	}
	frac := float64(moved) / users
	t.Logf("4th node: %.1f%% of %d homes moved (n4's share %.1f%%)", 100*frac, users, 100*cs[0].Ring().Share("n4"))
	if frac < 0.18 || frac > 0.32 {
		t.Errorf("%.3f of homes moved, want about 0.25", frac)
	}
	select {
	case <-sub:
	case <-time.After(5 * time.Second):
		t.Fatal("Subscribe not signalled")
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(moves) != 1 || moves[0] != moved {
			return fmt.Errorf("OnChange saw moves %v, want [%d]", moves, moved)
		}
		return nil
	})
	if got := cs[0].RingChanges(); got != 3 {
		t.Errorf("ring changes: %d", got)
	}
	if got := counterValue(t, reg, "pushring_ring_changes_total"); got != 3 {
		t.Errorf("pushring_ring_changes_total = %v", got)
	}
	cs[0].Close()
	if n, _ := reg.Gather(); len(n) != 0 {
		t.Errorf("metrics still registered after Close: %d families", len(n))
	}
}

// A peer whose metadata is malformed, or names another node, is logged
// and kept off the ring; it does not disturb the others.
func TestClusterIgnoresBadMeta(t *testing.T) {
	l := newLogs(t)
	cs := startCluster(t, l, 2)
	for name, meta := range map[string][]byte{
		"garbage": []byte("\xff\x00not meta"),
		"liar":    mustMeta(t, meta{ID: "n1", VirtualNodes: 128}),
		"empty":   nil,
	} {
		mlc := memberlist.DefaultLocalConfig()
		mlc.Name, mlc.BindAddr, mlc.BindPort = name, "127.0.0.1", 0
		mlc.Delegate = rawMeta(meta)
		mlc.Logger = newMemberlistLogger(l.logger(), nil)
		kr, err := memberlist.NewKeyring(nil, testKey)
		if err != nil {
			t.Fatal(err)
		}
		mlc.Keyring = kr
		ml, err := memberlist.Create(mlc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ml.Shutdown() })
		if _, err := ml.Join([]string{cs[0].GossipAddr()}); err != nil {
			t.Fatal(err)
		}
		testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
			if !l.buf.Contains("peer=" + name) {
				return fmt.Errorf("%s not logged", name)
			}
			return nil
		})
	}
	// The second node hears of the strangers by gossip: seconds under
	// a loaded -race run, so the wait is long (it ends when met).
	testutil.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := strings.Count(l.buf.String(), "ignoring node with malformed metadata"); n < 6 {
			return fmt.Errorf("%d warnings, want one per node per peer", n)
		}
		return nil
	})
	for _, c := range cs {
		if got := c.Ring().Nodes(); !slices.Equal(got, ids(2)) {
			t.Errorf("%s: ring %v", c.Self().ID, got)
		}
		if len(c.Members()) != 2 {
			t.Errorf("%s: Members %+v", c.Self().ID, c.Members())
		}
	}
}

type rawMeta []byte

func (m rawMeta) NodeMeta(int) []byte               { return m }
func (rawMeta) NotifyMsg([]byte)                    {}
func (rawMeta) GetBroadcasts(int, int) [][]byte     { return nil }
func (rawMeta) LocalState(bool) []byte              { return nil }
func (rawMeta) MergeRemoteState(buf []byte, _ bool) {}

func mustMeta(t *testing.T, m meta) []byte {
	b, err := appendMeta(nil, &m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStartErrors(t *testing.T) {
	l := newLogs(t)
	for name, mod := range map[string]func(*Config){
		"no id":            func(c *Config) { c.NodeID = "" },
		"space in id":      func(c *Config) { c.NodeID = "a b" },
		"bad addr":         func(c *Config) { c.GossipAddr = "nowhere" },
		"timeout≥interval": func(c *Config) { c.ProbeTimeout = c.ProbeInterval },
		"meta too big":     func(c *Config) { c.MQTT = slices.Repeat([]string{strings.Repeat("m", 200)}, 3) },
		"bad key":          func(c *Config) { c.Keys = [][]byte{[]byte("short")} },
	} {
		cfg := testConfig(l, "x")
		mod(&cfg)
		if c, err := Start(cfg); err == nil {
			c.Close()
			t.Errorf("%s: Start succeeded", name)
		}
	}
	// Nobody to join, no retry.
	cfg := testConfig(l, "x", freeAddr(t))
	if c, err := Start(cfg); !errors.Is(err, ErrJoin) {
		if c != nil {
			c.Close()
		}
		t.Errorf("join nobody: %v", err)
	}
}

// A node whose seed is not up yet keeps trying to join.
func TestClusterJoinRetry(t *testing.T) {
	l := newLogs(t)
	seed := freeAddr(t)
	cfg := testConfig(l, "n2", seed)
	cfg.JoinRetryInterval = 50 * time.Millisecond
	c2 := start(t, cfg)
	if !l.buf.Contains("retrying in the background") {
		t.Error("no retry warning")
	}
	cfg = testConfig(l, "n1")
	cfg.GossipAddr = seed
	c1 := start(t, cfg)
	waitRing(t, []*Cluster{c1, c2}, "n1", "n2")
}

// freeAddr returns a loopback address nothing listens on (for a moment).
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// A crashed node restarted on its old address under its old ID is back
// on every ring at once (it refutes its death with a new incarnation).
func TestClusterRestart(t *testing.T) {
	l := newLogs(t)
	cs := startCluster(t, l, 3)
	addr := cs[2].GossipAddr()
	cs[2].Close()
	waitRing(t, cs[:2], "n1", "n2")

	t0 := time.Now()
	cfg := testConfig(l, "n3", cs[0].GossipAddr())
	cfg.GossipAddr = addr
	cs[2] = start(t, cfg)
	waitRing(t, cs, ids(3)...)
	t.Logf("restarted node back on all rings after %v", time.Since(t0))
	for _, c := range cs[:2] {
		if n, _ := c.Member("n3"); n.State != StateAlive {
			t.Errorf("%s: n3 is %s", c.Self().ID, n.State)
		}
	}
}

// A lone node that leaves keeps placing everything on itself.
func TestLeaveAlone(t *testing.T) {
	l := newLogs(t)
	c := start(t, testConfig(l, "solo"))
	if err := c.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	if c.Home("alice") != "solo" || c.Self().State != StateLeft || c.RingChanges() != 0 {
		t.Errorf("after leave: home %q, self %+v, %d changes", c.Home("alice"), c.Self(), c.RingChanges())
	}
}

func TestVirtualNodesMismatchWarns(t *testing.T) {
	l := newLogs(t)
	c1 := start(t, testConfig(l, "n1"))
	cfg := testConfig(l, "n2", c1.GossipAddr())
	cfg.VirtualNodes = 64
	c2 := start(t, cfg)
	waitRing(t, []*Cluster{c1, c2}, "n1", "n2")
	if !l.buf.Contains("peer uses another number of virtual nodes") {
		t.Error("no warning")
	}
}

func TestDuplicateIDWarns(t *testing.T) {
	l := newLogs(t)
	c1 := start(t, testConfig(l, "n1"))
	c2 := start(t, testConfig(l, "n2", c1.GossipAddr()))
	waitRing(t, []*Cluster{c1, c2}, "n1", "n2")
	cfg := testConfig(l, "n2", c1.GossipAddr())
	if c, err := Start(cfg); err == nil {
		defer c.Close()
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if !l.buf.Contains("two nodes claim one node id") {
			return errors.New("no conflict warning")
		}
		return nil
	})
	waitRing(t, []*Cluster{c1, c2}, "n1", "n2")
}
