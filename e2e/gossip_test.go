package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// TestGossipAuth: the gossip key keeps strangers out and rotates without
// downtime.
//
// A 3-node cluster shares a key. Three rogue nodes try to join it for
// several gossip intervals: one without a key (--insecure-gossip) and two
// with a wrong key, through n1 or through n2 and n3. Until each honest node
// has refused at least rogueRounds of their joins, no rogue is in any
// node's /v1/cluster nor among the MQTT addresses of any login answer, and
// group and direct messages keep reaching members homed on all three
// nodes. A fourth node with the key joins. Then, with a publisher sending
// numbered QoS 1 group messages, the key is rotated: the new key added as
// second line of every node's key file, SIGHUP one node at a time; put
// first, SIGHUP one at a time; the old one removed, SIGHUP one at a time.
// No gossip fails to decrypt meanwhile, every member receives every
// message, a node with only the old key cannot join and one with only the
// new key can.
func TestGossipAuth(t *testing.T) {
	const rogueRounds = 5 // refused joins per honest node (rogues retry every second)
	// Full syncs every 500 ms: the rogue window spans about ten of them.
	// Failure detection is not under test: slower timings keep a loaded
	// machine's slow probe from passing for a death.
	c := newCluster(t, 3, "--gossip-push-pull-interval", "500ms",
		"--gossip-probe-interval", "500ms", "--gossip-probe-timeout", "400ms", "--gossip-suspicion-mult", "6")
	honest := slices.Clone(c.procs)
	ms := c.members(9, 1)
	c.probeUntilAllReceive(c.procs[0], ms, "hello")
	homes := map[string]bool{}
	for _, m := range ms {
		homes[c.home(c.procs[0], m.id)] = true
	}
	if len(homes) != 3 {
		t.Fatalf("members are homed on %v, want all three nodes", homes)
	}

	wrongKey := []byte("e2e-wrong-gossip-key-of-32-bytes")
	rogues := []*proc{
		c.launch("rogue-nokey", []string{honest[0].gossip}, nil, "--insecure-gossip"),
		c.launch("rogue-wrongkey", []string{honest[0].gossip}, [][]byte{wrongKey}),
		c.launch("rogue-wrongkey2", []string{honest[1].gossip, honest[2].gossip}, [][]byte{wrongKey}),
	}
	for _, r := range rogues[:1] {
		if b, _ := os.ReadFile(r.log); !bytes.Contains(b, []byte(`level=WARN msg="gossip is neither encrypted nor authenticated`)) {
			t.Errorf("%s did not warn of its insecure gossip", r.id)
		}
	}
	base := make([]float64, len(honest))
	for i, p := range honest {
		base[i] = c.authFailures(p)
	}
	honestMQTT := map[string]bool{}
	for _, p := range c.procs {
		honestMQTT[p.mqtt] = true
	}
	// The window: check, send, until every honest node refused enough.
	var sentGroup, sentDirect []string
	for round := 0; ; round++ {
		for _, r := range rogues {
			if err := r.alive(); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range honest {
			for _, n := range c.nodes(p) {
				if !strings.HasPrefix(n.ID, "n") || !honestMQTT[n.MQTT[0]] {
					t.Fatalf("%s lists %+v", p.id, n)
				}
			}
		}
		m := ms[round%len(ms)]
		p := honest[round%len(honest)]
		for _, a := range c.login(p, m.id) {
			if !honestMQTT[a] {
				t.Fatalf("login of %s on %s answered %s, not an honest node's address", m.id, p.id, a)
			}
		}
		g := fmt.Sprintf("window-group-%d", round)
		if err := c.publishAll(p, g, 1); err != nil {
			t.Fatal(err)
		}
		sentGroup = append(sentGroup, g)
		d := fmt.Sprintf("window-direct-%d-%s", round, m.id)
		if err := c.api(p, "POST", "/v1/users/"+m.id+"/messages", map[string]any{"payload": d, "qos": 1}, nil); err != nil {
			t.Fatal(err)
		}
		sentDirect = append(sentDirect, d)
		done := true
		for i, h := range honest {
			if c.authFailures(h)-base[i] < rogueRounds {
				done = false
			}
		}
		if done && round >= 3 {
			break
		}
		if round > 400 {
			t.Fatalf("honest nodes refused too few joins: %v (from %v)", c.allAuthFailures(honest), base)
		}
		time.Sleep(50 * time.Millisecond) // pace the checks; the end is the condition above
	}
	expectEach(t, ms, sentGroup)
	for _, d := range sentDirect {
		id := d[strings.LastIndexByte(d, '-')+1:]
		for _, m := range ms {
			if m.id == id && !m.has(d) {
				t.Errorf("%s lacks the direct message %q", id, d)
			}
		}
	}
	t.Logf("rogue window: %d rounds, auth failures counted %v (from %v)", len(sentGroup), c.allAuthFailures(honest), base)
	for _, p := range honest {
		// One line per source (all rogues dial from 127.0.0.1), however
		// many refusals.
		if b, _ := os.ReadFile(p.log); bytes.Count(b, []byte(`msg="gossip refused`)) != 1 {
			t.Errorf("%s logged %d refusal lines, want 1", p.id, bytes.Count(b, []byte(`msg="gossip refused`)))
		}
	}
	for _, r := range rogues {
		r.cmd.Process.Signal(os.Interrupt)
		<-r.exited
	}

	// A node with the key joins.
	n4 := c.start()
	c.waitRing(c.procs, 4)
	c.probeUntilAllReceive(n4, ms, "after-n4")

	// Rotation under load.
	var seq, refused atomic.Int64
	stop, stopped := make(chan struct{}), make(chan struct{})
	procs := slices.Clone(c.procs)
	go func() {
		defer close(stopped)
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.publishAll(procs[k%len(procs)], "rot-"+strconv.Itoa(k), 1); err != nil {
				refused.Add(1)
				t.Errorf("rot-%d refused: %v", k, err)
			}
			seq.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-stopped
	}()
	rotBase := c.allAuthFailures(procs)
	newKey := []byte("e2e-rotated-gossip-key-32-bytes!")
	for _, step := range []struct {
		name string
		keys [][]byte
	}{
		{"add the new key second", [][]byte{clusterKey, newKey}},
		{"make the new key first", [][]byte{newKey, clusterKey}},
		{"remove the old key", [][]byte{newKey}},
	} {
		for _, p := range procs {
			c.rekey(p, step.keys)
			// Let gossip and messages flow under mixed keyrings before
			// the next node: a few more messages reach every member.
			to := seq.Load() + 5
			testutil.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
				if seq.Load() < to {
					return fmt.Errorf("publisher at %d", seq.Load())
				}
				last := "rot-" + strconv.Itoa(int(to-1))
				for _, m := range ms {
					if !m.has(last) {
						return fmt.Errorf("%s lacks %s (%s, %s)", m.id, last, step.name, p.id)
					}
				}
				return nil
			})
		}
	}
	if got := c.allAuthFailures(procs); !slices.Equal(got, rotBase) {
		t.Errorf("auth failures during the rotation: %v, from %v", got, rotBase)
	}
	c.waitRing(procs, 4)

	// The old key is useless now; the new one admits a node.
	failures := c.authFailures(procs[0])
	old := c.launch("oldkey", []string{procs[0].gossip}, [][]byte{clusterKey})
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if err := old.alive(); err != nil {
			t.Fatal(err)
		}
		if got := c.authFailures(procs[0]) - failures; got < 3 {
			return fmt.Errorf("n1 refused %v joins of the old-key node", got)
		}
		return nil
	})
	for _, p := range procs {
		for _, n := range c.nodes(p) {
			if n.ID == old.id {
				t.Errorf("%s lists the node with the old key", p.id)
			}
		}
	}
	old.cmd.Process.Signal(os.Interrupt)
	<-old.exited

	// Every message published through the rotation and the old key's
	// attempt reached every member.
	close(stop)
	<-stopped
	total := int(seq.Load())
	testutil.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, m := range ms {
			for k := range total {
				if p := "rot-" + strconv.Itoa(k); !m.has(p) {
					return fmt.Errorf("%s lacks %s", m.id, p)
				}
			}
		}
		return nil
	})
	t.Logf("rotation: %d QoS 1 group messages through %d nodes, %d refused, each received by all %d members", total, len(procs), refused.Load(), len(ms))

	c.key = newKey
	c.start()
	c.waitRing(c.procs, 5)
}

// rekey writes keys into p's key file, sends it SIGHUP and waits until it
// logged the keys installed.
func (c *cluster) rekey(p *proc, keys [][]byte) {
	t := c.t
	t.Helper()
	count := func() int {
		b, _ := os.ReadFile(p.log)
		return bytes.Count(b, []byte(`msg="gossip keys installed"`))
	}
	before := count()
	if err := os.WriteFile(p.keyFile, []byte(keyFileText(keys...)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if err := p.alive(); err != nil {
			t.Fatal(err)
		}
		if count() == before {
			return fmt.Errorf("%s has not installed the keys yet", p.id)
		}
		return nil
	})
}

// clusterNode is a node as /v1/cluster lists it.
type clusterNode struct {
	ID    string   `json:"id"`
	State string   `json:"state"`
	MQTT  []string `json:"mqtt"`
}

// nodes is p's /v1/cluster list, dead and left nodes included.
func (c *cluster) nodes(p *proc) []clusterNode {
	c.t.Helper()
	var cl struct {
		Nodes []clusterNode `json:"nodes"`
	}
	c.mustAPI(p, "GET", "/v1/cluster", nil, &cl)
	return cl.Nodes
}

// login logs member id in through p and returns the MQTT addresses of
// the answer.
func (c *cluster) login(p *proc, id string) []string {
	c.t.Helper()
	var login struct {
		MQTT []string `json:"mqtt"`
	}
	req, _ := newLogin(p, id, memberPassword(id))
	if err := doJSON(req, &login); err != nil {
		c.t.Fatal(err)
	}
	if len(login.MQTT) == 0 {
		c.t.Fatalf("login of %s on %s: no MQTT address", id, p.id)
	}
	return login.MQTT
}

// authFailures is p's pushring_gossip_auth_failures_total.
func (c *cluster) authFailures(p *proc) float64 {
	c.t.Helper()
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "pushring_gossip_auth_failures_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				c.t.Fatal(err)
			}
			return f
		}
	}
	c.t.Fatalf("%s: no pushring_gossip_auth_failures_total in /metrics", p.id)
	return 0
}

func (c *cluster) allAuthFailures(ps []*proc) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = c.authFailures(p)
	}
	return out
}
