package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/natsembed"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/store"
)

// testCluster is N nodes in this process on loopback, sharing one NATS
// server (as production nodes share a NATS cluster), gossiping with real
// memberlist.
type testCluster struct {
	nats  *sharedNATS
	url   string
	nodes []*Node
	mod   func(*Config) // applied to every node's config last
}

func startCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	return startClusterWith(t, n, nil)
}

// startClusterWith is startCluster with mod applied to each node's config.
func startClusterWith(t *testing.T, n int, mod func(*Config)) *testCluster {
	t.Helper()
	tc := &testCluster{mod: mod}
	tc.nats = startSharedNATS(t, natsembed.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	tc.url = "nats://" + tc.nats.Addr().String()
	for range n {
		tc.add(t)
	}
	tc.waitConverged(t)
	return tc
}

// add starts one more node that joins the first.
func (tc *testCluster) add(t *testing.T) *Node {
	t.Helper()
	i := len(tc.nodes) + 1
	var join []string
	if len(tc.nodes) > 0 {
		join = []string{tc.nodes[0].cluster.GossipAddr()}
	}
	dir := filepath.Join(t.TempDir(), strconv.Itoa(i))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tc.nats.authorize(t, "pushring", "n"+strconv.Itoa(i), dir)
	node := startNode(t, dir, func(c *Config) {
		c.NodeID = "n" + strconv.Itoa(i)
		c.NATSURL = tc.url
		c.AdminKey = "cluster-admin-key"
		c.Join = join
		if tc.mod != nil {
			tc.mod(c)
		}
	})
	t.Cleanup(func() { node.Close() })
	tc.nodes = append(tc.nodes, node)
	return node
}

// waitConverged waits until every live node sees all live nodes.
func (tc *testCluster) waitConverged(t *testing.T) {
	t.Helper()
	testutil.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		for _, n := range tc.nodes {
			if got := len(n.cluster.Ring().Nodes()); got != len(tc.nodes) {
				return fmt.Errorf("%s sees %d nodes, want %d", n.cfg.NodeID, got, len(tc.nodes))
			}
		}
		return nil
	})
}

// waitMembers waits until every node's directory has n members in gid.
func (tc *testCluster) waitMembers(t *testing.T, gid string, n int) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, node := range tc.nodes {
			if got := len(node.dir.Members(gid)); got != n {
				return fmt.Errorf("%s knows %d members of %s, want %d", node.cfg.NodeID, got, gid, n)
			}
		}
		return nil
	})
}

func (tc *testCluster) byID(id string) *Node {
	for _, n := range tc.nodes {
		if n.cfg.NodeID == id {
			return n
		}
	}
	return nil
}

// user creates a user with a live session straight in the shared store
// (HTTP login would spend an argon2 hash per user; login itself is tested
// elsewhere) and returns its token.
func (tc *testCluster) user(t *testing.T, id string) string {
	t.Helper()
	ctx := context.Background()
	st := tc.nodes[0].dir
	if err := st.CreatePrincipal(ctx, store.Principal{ID: id, Kind: store.User, SecretHash: "x"}); err != nil {
		t.Fatal(err)
	}
	token, hash, err := store.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateSession(ctx, store.Session{TokenHash: hash, PrincipalID: id, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return token
}

// inbox records the payloads one raw subscriber received.
type inbox struct {
	mu   sync.Mutex
	msgs []string
}

func (b *inbox) add(topic, payload []byte) {
	b.mu.Lock()
	b.msgs = append(b.msgs, string(topic)+" "+string(payload))
	b.mu.Unlock()
}

func (b *inbox) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.msgs)
}

// listen connects a raw MQTT 3.1.1 client, subscribes to the private
// tree at QoS 1 and records every PUBLISH (acknowledging it).
func listen(t *testing.T, addr, id, token string, box *inbox) *mqttc.Conn {
	t.Helper()
	return listenSlow(t, addr, id, token, box, 0)
}

// listenSlow is listen for a client that spends delay on every message
// before it reads the next; its PUBACKs go out once it has worked through
// what it had read (mqttc.Conn.Run), so a slow client is also slow to
// acknowledge.
func listenSlow(t *testing.T, addr, id, token string, box *inbox, delay time.Duration) *mqttc.Conn {
	t.Helper()
	return rawSubscriber(t, addr, id, token, "/private/"+id+"/#", 1, func(topic, payload []byte) {
		box.add(topic, payload)
		if delay > 0 {
			time.Sleep(delay) // the slow client's work on each message
		}
	})
}

// TestClusterGroupFanout: 3 nodes, 300 users homed over all three, one
// group of all 300. A device connected at its home, which is not the
// group's owner, publishes 100 QoS 1 messages: every member gets each
// exactly once; per message the ingress sent the owner one Resolve
// envelope and the owner sent each home node exactly one Deliver envelope
// (pushring_fanout_envelopes_sent_total by peer), never one per member,
// and no node sent anything else.
func TestClusterGroupFanout(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := context.Background()
	st := tc.nodes[0].dir
	const users, msgs = 300, 100
	if err := st.CreateGroup(ctx, store.Group{ID: "all"}); err != nil {
		t.Fatal(err)
	}
	homes := map[string]int{}
	boxes := map[string]*inbox{}
	for i := range users {
		id := fmt.Sprintf("u%03d", i)
		token := tc.user(t, id)
		if err := st.SetRole(ctx, "all", id, store.Member, true); err != nil {
			t.Fatal(err)
		}
		home := tc.nodes[0].cluster.Home(id)
		homes[home]++
		boxes[id] = &inbox{}
		listen(t, tc.byID(home).MQTTAddr(), id, token, boxes[id])
	}
	if len(homes) != 3 {
		t.Fatalf("members' homes %v: want all three nodes", homes)
	}
	// The device is homed away from the group's owner and connects at its
	// home (so no attach record is made): the Resolve hop to the owner runs.
	owner := tc.nodes[0].cluster.Owner("all")
	dev := ""
	for i := 0; dev == "" && i < 100; i++ {
		if id := fmt.Sprint("d", i); tc.nodes[0].cluster.Home(id) != owner {
			dev = id
		}
	}
	if dev == "" {
		t.Fatalf("no device id homed away from the owner %s", owner)
	}
	key := tc.device(t, dev)
	if err := st.SetRole(ctx, "all", dev, store.Publisher, true); err != nil {
		t.Fatal(err)
	}
	// Every node's directory must have the group before publishing.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, n := range tc.nodes {
			if got := len(n.dir.Members("all")); got != users {
				return fmt.Errorf("%s knows %d members", n.cfg.NodeID, got)
			}
		}
		return nil
	})

	ingress := tc.byID(tc.nodes[0].cluster.Home(dev))
	d1 := connect(t, ingress, clientOpts{user: dev, password: key}, nil)
	before := tc.delivers()
	sentBefore := tc.sentByPeer(t)
	acksBefore := tc.byPeer(t, "pushring_fanout_acks_sent_total")
	resolvesBefore := ingress.fan.Stats().ResolvesSent
	ownerResolvesBefore := tc.byID(owner).fan.Stats().ResolvesReceived
	changes := tc.ringChanges()
	for i := range msgs {
		publish(t, d1, "/group/all", 1, fmt.Sprint("m", i))
	}
	testutil.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		for id, b := range boxes {
			if n := len(b.list()); n < msgs {
				return fmt.Errorf("%s has %d of %d (ring changes during the run: %d)", id, n, msgs, tc.ringChanges()-changes)
			}
		}
		return nil
	})
	for id, b := range boxes {
		got := b.list()
		if len(got) != msgs {
			t.Fatalf("%s got %d messages, want %d", id, len(got), msgs)
		}
		seen := map[string]bool{}
		for _, m := range got {
			if !strings.HasPrefix(m, "/private/"+id+"/group/all m") || seen[m] {
				t.Fatalf("%s: unexpected or duplicate %q", id, m)
			}
			seen[m] = true
		}
	}
	if got, want := tc.delivers()-before, uint64(msgs*len(homes)); got != want {
		t.Fatalf("Deliver envelopes sent: %d, want %d (one per home node per message)", got, want)
	}
	// Per sender and peer: the ingress sent the owner one Resolve per
	// message, the owner sent each home node one Deliver per message
	// (its own included, over the bus like the others), nothing else moved.
	if changes := tc.ringChanges() - changes; changes != 0 {
		t.Fatalf("%d ring changes during the run: the per-peer counts below would not hold", changes)
	}
	if got := ingress.fan.Stats().ResolvesSent - resolvesBefore; got != msgs {
		t.Errorf("ingress %s sent %d Resolve envelopes, want %d (one per message)", ingress.cfg.NodeID, got, msgs)
	}
	if got := tc.byID(owner).fan.Stats().ResolvesReceived - ownerResolvesBefore; got != msgs {
		t.Errorf("owner %s received %d Resolve envelopes, want %d", owner, got, msgs)
	}
	sent := tc.sentByPeer(t)
	for _, from := range tc.nodes {
		for _, to := range tc.nodes {
			k := [2]string{from.cfg.NodeID, to.cfg.NodeID}
			want := 0.0
			switch {
			case from.cfg.NodeID == owner && homes[to.cfg.NodeID] > 0:
				want = msgs // Deliver
			case from == ingress && to.cfg.NodeID == owner:
				want = msgs // Resolve
			}
			if got := sent[k] - sentBefore[k]; got != want {
				t.Errorf("pushring_fanout_envelopes_sent_total{peer=%q} on %s rose by %v, want %v", k[1], k[0], got, want)
			}
		}
	}
	// QoS 1 confirmations (fanout/ack.go) go to the ingress only, batched:
	// from the owner (its count, and its delivery if it is a home) and
	// from each other home node, never more than two per message.
	acks := tc.byPeer(t, "pushring_fanout_acks_sent_total")
	var ackTotal float64
	for _, from := range tc.nodes {
		for _, to := range tc.nodes {
			k := [2]string{from.cfg.NodeID, to.cfg.NodeID}
			got := acks[k] - acksBefore[k]
			ackTotal += got
			confirms := from != ingress && (from.cfg.NodeID == owner || homes[from.cfg.NodeID] > 0)
			switch {
			case to != ingress && got != 0:
				t.Errorf("%s sent %v Ack envelopes to %s, which published nothing", k[0], got, k[1])
			case to == ingress && confirms && (got < 1 || got > 2*msgs):
				t.Errorf("%s sent %v Ack envelopes to the ingress for %d messages", k[0], got, msgs)
			case to == ingress && !confirms && got != 0:
				t.Errorf("%s sent %v Ack envelopes but neither owns the group nor delivers", k[0], got)
			}
		}
	}
	t.Logf("per message: 1 Resolve %s→%s, 1 Deliver from %s to each of %d home nodes (%v members); %v Ack envelopes in all for %d QoS 1 messages",
		ingress.cfg.NodeID, owner, owner, len(homes), homes, ackTotal, msgs)
}

// sentByPeer reads pushring_fanout_envelopes_sent_total on every node,
// keyed by {sending node, peer label}.
func (tc *testCluster) sentByPeer(t *testing.T) map[[2]string]float64 {
	t.Helper()
	return tc.byPeer(t, "pushring_fanout_envelopes_sent_total")
}

// byPeer reads counter name (labelled by peer) on every node, keyed by
// {sending node, peer label}.
func (tc *testCluster) byPeer(t *testing.T, name string) map[[2]string]float64 {
	t.Helper()
	out := map[[2]string]float64{}
	for _, from := range tc.nodes {
		for _, to := range tc.nodes {
			out[[2]string{from.cfg.NodeID, to.cfg.NodeID}] = counter(t, from, name, map[string]string{"peer": to.cfg.NodeID})
		}
	}
	return out
}

// ringChanges sums the ring changes the nodes have seen.
func (tc *testCluster) ringChanges() uint64 {
	var sum uint64
	for _, n := range tc.nodes {
		sum += n.cluster.RingChanges()
	}
	return sum
}

// delivers sums the Deliver envelopes the nodes have sent.
func (tc *testCluster) delivers() uint64 {
	var sum uint64
	for _, n := range tc.nodes {
		sum += n.fan.Stats().DeliversSent
	}
	return sum
}

// device creates a device over HTTP and returns its key.
func (tc *testCluster) device(t *testing.T, id string) string {
	t.Helper()
	var dev struct{ Key string }
	newAPI(t, tc.nodes[0]).must(201, "POST", "/v1/devices", "Bearer cluster-admin-key", map[string]any{"id": id}, &dev)
	return dev.Key
}

// TestClusterDirectAndMembership: direct messages reach users homed on
// each node whichever node the sender used; GET /v1/cluster on every node
// lists each member alive with its MQTT and HTTP addresses and a ring
// share (the shares sum to 1); route and login, through any node, answer
// with the home node's MQTT address first; a member added and then
// removed through a node that is not the group's owner is in force at the
// owner within 1 s each time: the added member receives the group's next
// message, the removed one no longer does.
func TestClusterDirectAndMembership(t *testing.T) {
	tc := startCluster(t, 3)
	// One user homed on each node.
	byHome := map[string]string{}
	for i := 0; len(byHome) < 3 && i < 100; i++ {
		id := fmt.Sprintf("user%d", i)
		if h := tc.nodes[0].cluster.Home(id); byHome[h] == "" {
			byHome[h] = id
		}
	}
	boxes := map[string]*inbox{}
	for home, id := range byHome {
		token := tc.user(t, id)
		boxes[id] = &inbox{}
		listen(t, tc.byID(home).MQTTAddr(), id, token, boxes[id])
	}
	for _, sender := range tc.nodes {
		for _, id := range byHome {
			newAPI(t, sender).must(202, "POST", "/v1/users/"+id+"/messages", "Bearer cluster-admin-key",
				map[string]any{"payload": "via-" + sender.cfg.NodeID}, nil)
		}
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for id, b := range boxes {
			got := b.list()
			slices.Sort(got)
			want := []string{"/private/" + id + " via-n1", "/private/" + id + " via-n2", "/private/" + id + " via-n3"}
			if !slices.Equal(got, want) {
				return fmt.Errorf("%s has %q", id, got)
			}
		}
		return nil
	})

	// Every node lists every member, alive, with its addresses and ring
	// share.
	admin := "Bearer cluster-admin-key"
	for _, via := range tc.nodes {
		var cl struct {
			Self  struct{ ID string } `json:"self"`
			Nodes []struct {
				ID    string   `json:"id"`
				MQTT  []string `json:"mqtt"`
				HTTP  string   `json:"http"`
				State string   `json:"state"`
				Share float64  `json:"ring_share"`
			} `json:"nodes"`
		}
		newAPI(t, via).must(200, "GET", "/v1/cluster", admin, nil, &cl)
		if cl.Self.ID != via.cfg.NodeID {
			t.Errorf("/v1/cluster on %s: self is %q", via.cfg.NodeID, cl.Self.ID)
		}
		if len(cl.Nodes) != len(tc.nodes) {
			t.Fatalf("/v1/cluster on %s lists %d nodes, want %d: %+v", via.cfg.NodeID, len(cl.Nodes), len(tc.nodes), cl.Nodes)
		}
		sum := 0.0
		for _, m := range cl.Nodes {
			n := tc.byID(m.ID)
			switch {
			case n == nil:
				t.Errorf("/v1/cluster on %s lists unknown node %+v", via.cfg.NodeID, m)
			case m.State != "alive" || len(m.MQTT) != 1 || m.MQTT[0] != n.MQTTAddr() || m.HTTP != n.HTTPAddr() || m.Share <= 0 || m.Share >= 1:
				t.Errorf("/v1/cluster on %s: %+v, want alive, mqtt [%s], http %s, a ring share in (0, 1)",
					via.cfg.NodeID, m, n.MQTTAddr(), n.HTTPAddr())
			}
			sum += m.Share
		}
		if sum < 0.999 || sum > 1.001 {
			t.Errorf("/v1/cluster on %s: ring shares sum to %v, want 1", via.cfg.NodeID, sum)
		}
	}

	// Route and login answer with the home node.
	for home, id := range byHome {
		var route struct {
			Node struct {
				ID   string   `json:"id"`
				MQTT []string `json:"mqtt"`
			} `json:"node"`
		}
		newAPI(t, tc.nodes[0]).must(200, "GET", "/v1/route/"+id, "Bearer cluster-admin-key", nil, &route)
		if route.Node.ID != home || len(route.Node.MQTT) == 0 || route.Node.MQTT[0] != tc.byID(home).MQTTAddr() {
			t.Fatalf("route %s: %+v, want home %s at %s", id, route, home, tc.byID(home).MQTTAddr())
		}
	}
	// Login (a real password, so a real argon2 check) through every node:
	// the home's MQTT address first, then the other nodes' as fallbacks.
	loginHome := map[string]string{} // home node → user
	for i := 0; len(loginHome) < 3 && i < 100; i++ {
		id := fmt.Sprintf("login%d", i)
		if h := tc.nodes[0].cluster.Home(id); loginHome[h] == "" {
			loginHome[h] = id
			newAPI(t, tc.nodes[i%3]).must(201, "POST", "/v1/users", admin, map[string]any{"id": id, "password": passwordOf(id)}, nil)
		}
	}
	if len(loginHome) != 3 {
		t.Fatalf("login users' homes %v: want all three nodes", loginHome)
	}
	for home, id := range loginHome {
		for _, via := range tc.nodes {
			got := newAPI(t, via).login(id, passwordOf(id)).MQTT
			var others []string
			for _, n := range tc.nodes {
				if n.cfg.NodeID != home {
					others = append(others, n.MQTTAddr())
				}
			}
			if len(got) != 3 || got[0] != tc.byID(home).MQTTAddr() || !slices.Equal(sorted(got[1:]), sorted(others)) {
				t.Errorf("login %s (home %s at %s) via %s: mqtt %q, want the home first, then %q",
					id, home, tc.byID(home).MQTTAddr(), via.cfg.NodeID, got, others)
			}
		}
	}

	// Membership change through one node, in force at the owner in 1 s.
	ctx := context.Background()
	if err := tc.nodes[0].dir.CreateGroup(ctx, store.Group{ID: "g-late"}); err != nil {
		t.Fatal(err)
	}
	owner := tc.byID(tc.nodes[0].cluster.Owner("g-late"))
	var via *Node
	for _, n := range tc.nodes {
		if n != owner {
			via = n
		}
	}
	id := byHome[owner.cfg.NodeID]
	// keeper stays in the group throughout, homed on via: after the
	// remove, its copy shows the group message was resolved and sent.
	keeper := byHome[via.cfg.NodeID]
	newAPI(t, via).must(204, "PUT", "/v1/groups/g-late/members/"+keeper, admin, nil, nil)
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if !owner.dir.IsMember("g-late", keeper) {
			return fmt.Errorf("owner %s does not see %s in g-late yet", owner.cfg.NodeID, keeper)
		}
		return nil
	})
	start := time.Now()
	newAPI(t, via).must(204, "PUT", "/v1/groups/g-late/members/"+id, "Bearer cluster-admin-key", nil, nil)
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if !owner.dir.IsMember("g-late", id) {
			return fmt.Errorf("owner %s does not see %s in g-late yet", owner.cfg.NodeID, id)
		}
		return nil
	})
	t.Logf("member added via %s: in force at owner %s %v after the request", via.cfg.NodeID, owner.cfg.NodeID, time.Since(start))
	has := func(b *inbox, m string) bool { return slices.Contains(b.list(), m) }
	// The new member receives the group's next message (published through
	// the non-owner, so it takes the Resolve hop to the owner).
	newAPI(t, via).must(202, "POST", "/v1/groups/g-late/messages", admin, map[string]any{"payload": "after-add"}, nil)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for _, u := range []string{id, keeper} {
			if m := "/private/" + u + "/group/g-late after-add"; !has(boxes[u], m) {
				return fmt.Errorf("%s has no %q: %q", u, m, boxes[u].list())
			}
		}
		return nil
	})

	// Remove through the same non-owner node: in force at the owner in 1 s.
	start = time.Now()
	newAPI(t, via).must(204, "DELETE", "/v1/groups/g-late/members/"+id, admin, nil, nil)
	testutil.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if owner.dir.IsMember("g-late", id) {
			return fmt.Errorf("owner %s still sees %s in g-late", owner.cfg.NodeID, id)
		}
		return nil
	})
	t.Logf("member removed via %s: in force at owner %s %v after the request", via.cfg.NodeID, owner.cfg.NodeID, time.Since(start))
	// The removed member no longer receives the group's messages. Both
	// the group message and the direct barrier after it are published
	// through the owner, which is also id's home: had the owner still
	// listed id, its Deliver envelope would be on the same subject, from
	// the same NATS connection, ahead of the barrier's.
	ownerAPI := newAPI(t, owner)
	ownerAPI.must(202, "POST", "/v1/groups/g-late/messages", admin, map[string]any{"payload": "after-remove"}, nil)
	ownerAPI.must(202, "POST", "/v1/users/"+id+"/messages", admin, map[string]any{"payload": "barrier"}, nil)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if m := "/private/" + keeper + "/group/g-late after-remove"; !has(boxes[keeper], m) {
			return fmt.Errorf("%s has no %q: %q", keeper, m, boxes[keeper].list())
		}
		if m := "/private/" + id + " barrier"; !has(boxes[id], m) {
			return fmt.Errorf("%s has no %q: %q", id, m, boxes[id].list())
		}
		return nil
	})
	if m := "/private/" + id + "/group/g-late after-remove"; has(boxes[id], m) {
		t.Fatalf("%s, removed from g-late, still received %q", id, m)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestClusterOnNATSCluster: three nodes, each on its own server of a real
// three-server NATS cluster (routes, clustered JetStream, R3 buckets):
// state written through one node is seen by all, and a group message
// fans out across servers.
func TestClusterOnNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("NATS cluster start takes seconds")
	}
	var routes, clients []string
	for range 3 {
		routes = append(routes, freeLoopback(t))
	}
	// Every server lets in the three nodes, each with its own key.
	var users []natsembed.User
	nodeDirs := make([]string, 3)
	for i := range 3 {
		nodeDirs[i] = t.TempDir()
		pub, _ := nodeKey(t, nodeDirs[i])
		users = append(users, nodeUser("pushring", fmt.Sprint("n", i+1), pub))
	}
	// The servers wait for each other's routes: start them together.
	servers := make([]*natsembed.Server, 3)
	errs := make(chan error, 3)
	for i := range 3 {
		dir := t.TempDir() // here: TempDir fails the test with t.Fatal
		go func() {
			s, err := natsembed.Start(natsembed.Config{
				StoreDir: dir, Listen: "127.0.0.1:0", Users: users, ServerName: fmt.Sprint("s", i),
				ClusterName: "pushring-test", ClusterListen: routes[i], Routes: routes,
			})
			servers[i] = s
			errs <- err
		}()
	}
	var failed error
	for range 3 {
		if err := <-errs; err != nil {
			failed = err
		}
	}
	// Every server that started stops at cleanup, even if another failed.
	for _, s := range servers {
		if s != nil {
			t.Cleanup(s.Stop)
		}
	}
	if failed != nil {
		t.Fatal(failed)
	}
	for _, s := range servers {
		clients = append(clients, "nats://"+s.Addr().String())
	}
	// JetStream's meta group needs a leader before buckets can be made.
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if !anyLeader(servers) {
			return fmt.Errorf("no JetStream meta leader yet")
		}
		for _, s := range servers {
			if !s.JetStreamIsCurrent() {
				return fmt.Errorf("JetStream on %s not current", s.Name())
			}
		}
		return nil
	})
	tc := &testCluster{}
	for i := range 3 {
		var join []string
		if i > 0 {
			join = []string{tc.nodes[0].cluster.GossipAddr()}
		}
		// The first node creates the R3 buckets: on a loaded machine the
		// new streams may still be electing leaders when the store's 5 s
		// per-call timeout runs out, so starting is retried a few times.
		var n *Node
		dir := nodeDirs[i]
		testutil.CheckFor(t, 60*time.Second, 100*time.Millisecond, func() (err error) {
			n, err = tryStartNode(t, dir, func(c *Config) {
				c.NodeID = fmt.Sprint("n", i+1)
				c.NATSURL = clients[i]
				c.KVReplicas = 3
				c.AdminKey = "cluster-admin-key"
				c.Join = join
			})
			return err
		})
		t.Cleanup(func() { n.Close() })
		tc.nodes = append(tc.nodes, n)
	}
	tc.waitConverged(t)

	ctx := context.Background()
	if err := tc.nodes[2].dir.CreateGroup(ctx, store.Group{ID: "g"}); err != nil {
		t.Fatal(err)
	}
	boxes := map[string]*inbox{}
	for i := range 12 {
		id := fmt.Sprintf("v%02d", i)
		token := tc.user(t, id)
		if err := tc.nodes[1].dir.SetRole(ctx, "g", id, store.Member, true); err != nil {
			t.Fatal(err)
		}
		boxes[id] = &inbox{}
		listen(t, tc.byID(tc.nodes[0].cluster.Home(id)).MQTTAddr(), id, token, boxes[id])
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, n := range tc.nodes {
			if len(n.dir.Members("g")) != 12 {
				return fmt.Errorf("%s knows %d members", n.cfg.NodeID, len(n.dir.Members("g")))
			}
		}
		return nil
	})
	newAPI(t, tc.nodes[0]).must(202, "POST", "/v1/groups/g/messages", "Bearer cluster-admin-key", map[string]any{"payload": "across"}, nil)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for id, b := range boxes {
			if got := b.list(); !slices.Equal(got, []string{"/private/" + id + "/group/g across"}) {
				return fmt.Errorf("%s has %q", id, got)
			}
		}
		return nil
	})
}

func anyLeader(servers []*natsembed.Server) bool {
	for _, s := range servers {
		if s.JetStreamIsLeader() {
			return true
		}
	}
	return false
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestClusterAwayFromHome: a client connected to a node that is not its
// home still receives group and direct messages (its node attaches it at
// the home), and stops being forwarded to once it disconnects.
func TestClusterAwayFromHome(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := context.Background()
	st := tc.nodes[0].dir
	if err := st.CreateGroup(ctx, store.Group{ID: "g"}); err != nil {
		t.Fatal(err)
	}
	id := "wanderer"
	token := tc.user(t, id)
	if err := st.SetRole(ctx, "g", id, store.Member, true); err != nil {
		t.Fatal(err)
	}
	home := tc.nodes[0].cluster.Home(id)
	var away *Node
	for _, n := range tc.nodes {
		if n.cfg.NodeID != home {
			away = n
			break
		}
	}
	box := &inbox{}
	conn := listen(t, away.MQTTAddr(), id, token, box)
	admin := "Bearer cluster-admin-key"
	// The attach record travels asynchronously: probe until it is in place.
	k := 0
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if len(box.list()) > 0 {
			return nil
		}
		newAPI(t, tc.nodes[k%3]).must(202, "POST", "/v1/users/"+id+"/messages", admin, map[string]any{"payload": "probe"}, nil)
		k++
		return fmt.Errorf("no probe yet")
	})
	for _, via := range tc.nodes {
		newAPI(t, via).must(202, "POST", "/v1/groups/g/messages", admin, map[string]any{"payload": "g-via-" + via.cfg.NodeID}, nil)
		newAPI(t, via).must(202, "POST", "/v1/users/"+id+"/messages", admin, map[string]any{"payload": "d-via-" + via.cfg.NodeID}, nil)
	}
	want := []string{}
	for _, via := range tc.nodes {
		want = append(want, "/private/"+id+"/group/g g-via-"+via.cfg.NodeID, "/private/"+id+" d-via-"+via.cfg.NodeID)
	}
	slices.Sort(want)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var got []string
		for _, m := range box.list() {
			if !strings.HasSuffix(m, " probe") {
				got = append(got, m)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
	forwards := func() uint64 { return tc.byID(home).fan.Stats().AttachForwards }
	if forwards() == 0 {
		t.Fatalf("home %s forwarded nothing via attach", home)
	}
	conn.Abort()
	// Once released, the home drops the record and stops forwarding.
	h := tc.byID(home)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := h.fan.Stats().AttachRecords; n != 0 {
			return fmt.Errorf("home %s still has %d attach records", home, n)
		}
		return nil
	})
	before, received := forwards(), h.fan.Stats().DeliversReceived
	newAPI(t, tc.nodes[0]).must(202, "POST", "/v1/users/"+id+"/messages", admin, map[string]any{"payload": "after"}, nil)
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if h.fan.Stats().DeliversReceived == received {
			return fmt.Errorf("home has not received the message yet")
		}
		return nil
	})
	if forwards() != before {
		t.Fatalf("home forwarded after the client disconnected")
	}
}

// One connection per client id across the cluster, whatever the kind of
// session: a clean session keeps no record in the store, yet closes the
// connection its client id holds on another node (by its claim's
// notice), and is closed by a later one there, clean or persistent.
func TestClusterTakeover(t *testing.T) {
	tc := startCluster(t, 2)
	token := tc.user(t, "alice")
	steps := []struct {
		on         *Node
		persistent bool
	}{{tc.nodes[0], false}, {tc.nodes[1], false}, {tc.nodes[0], true}, {tc.nodes[1], false}, {tc.nodes[0], false}, {tc.nodes[1], true}}
	var prevEnded chan error
	for i, s := range steps {
		c, err := mqttc.Dial(s.on.MQTTAddr(), mqttc.Options{ClientID: "phone", Username: "alice", Password: token, Persistent: s.persistent})
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		ended := make(chan error, 1)
		go func() { ended <- c.Run(nil) }()
		if prevEnded != nil {
			select {
			case <-prevEnded:
			case <-time.After(10 * time.Second):
				t.Fatalf("step %d (%s, persistent %v): the connection before it is still open", i, s.on.cfg.NodeID, s.persistent)
			}
		}
		_, err = tc.nodes[0].sessions.recs.GetMQTT(context.Background(), "alice", "phone")
		if s.persistent && err != nil || !s.persistent && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("step %d (persistent %v): the session's record: %v", i, s.persistent, err)
		}
		prevEnded = ended
	}
	select {
	case err := <-prevEnded:
		t.Fatalf("the last connection closed: %v", err)
	default:
	}
	kicked := 0.0
	for _, n := range tc.nodes {
		kicked += counter(t, n, "pushring_session_kicked_total", nil)
	}
	if kicked != float64(len(steps)-1) {
		t.Fatalf("%v sessions kicked, want %d", kicked, len(steps)-1)
	}
}
