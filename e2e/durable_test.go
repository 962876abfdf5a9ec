package e2e

// Durable QoS 1 from the outside: persistent sessions that went offline
// get every message acknowledged to its publisher, in order per
// publisher, whichever node they reconnect through, after their node
// restarts (SIGTERM or kill -9, same data dir), and one client id holds
// one session in the whole cluster.
//
// Payloads are "<publisher> <seq>": seq counts up per publisher, across
// every topic it publishes to, in the order the publisher got its
// PUBACKs. A subscriber checks that the first copy of each message arrives
// in seq order per publisher; later copies are duplicates, allowed at QoS
// 1 and counted.

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pushring/pushring/internal/testutil"
)

// inbox records what one MQTT connection received, in arrival order.
type inbox struct {
	mu  sync.Mutex
	got []string
}

func (b *inbox) handle(_ mqtt.Client, m mqtt.Message) {
	b.mu.Lock()
	b.got = append(b.got, string(m.Payload()))
	b.mu.Unlock()
}

func (b *inbox) payloads() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

func (b *inbox) count(payload string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, p := range b.got {
		if p == payload {
			n++
		}
	}
	return n
}

// tally compares what a subscriber received with what it should have, both
// "<publisher> <seq>" payloads, want in publish order.
type tally struct {
	want, delivered, missing, dups, disorder int
	firstMissing, firstDisorder              string
}

func tallyOf(got, want []string) tally {
	t := tally{want: len(want)}
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w] = true
	}
	seen := map[string]bool{}
	last := map[string]int{} // publisher → seq of its latest first copy
	for _, p := range got {
		if seen[p] {
			t.dups++
			continue
		}
		seen[p] = true
		if !wanted[p] {
			continue // a probe or another test's message: not ours to judge
		}
		t.delivered++
		pub, seqText, _ := strings.Cut(p, " ")
		seq, _ := strconv.Atoi(seqText)
		if seq < last[pub] {
			t.disorder++
			if t.firstDisorder == "" {
				t.firstDisorder = fmt.Sprintf("%q after %s %d", p, pub, last[pub])
			}
		}
		last[pub] = max(last[pub], seq)
	}
	for _, w := range want {
		if !seen[w] {
			t.missing++
			if t.firstMissing == "" {
				t.firstMissing = w
			}
		}
	}
	return t
}

func (t *tally) add(o tally) {
	t.want += o.want
	t.delivered += o.delivered
	t.missing += o.missing
	t.dups += o.dups
	t.disorder += o.disorder
}

// durableUser is a user with a login token, one fixed client id and the
// inbox of its current connection.
type durableUser struct {
	id, token, clientID string
	mqtt                []string // from the login answer, home first
	box                 inbox
	client              mqtt.Client
	present             bool // session present in the CONNACK of the latest connect
	want                []string
}

// sessionConn is one paho connection that never reconnects by itself: a
// connection the server closes stays closed, so a takeover is seen.
type sessionConn struct {
	client  mqtt.Client
	present bool
	lost    chan struct{} // closed when the connection is lost (not on our Disconnect)
}

// dial connects to addr as user with clientID, persistent unless clean.
// Every message, also those a resumed session delivers before any
// SUBSCRIBE, goes to box.
func dial(addr, user, password, clientID string, clean bool, box *inbox) (*sessionConn, error) {
	s := &sessionConn{lost: make(chan struct{})}
	lostOnce := sync.OnceFunc(func() { close(s.lost) })
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(clientID).
		SetUsername(user).SetPassword(password).SetCleanSession(clean).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).
		SetKeepAlive(5 * time.Second).SetPingTimeout(2 * time.Second).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(box.handle).
		SetConnectionLostHandler(func(mqtt.Client, error) { lostOnce() })
	s.client = mqtt.NewClient(opts)
	tok := s.client.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect %s to %s: no CONNACK in 10 s", clientID, addr)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", clientID, addr, err)
	}
	s.present = tok.(*mqtt.ConnectToken).SessionPresent()
	return s, nil
}

// subscribe subscribes to filter at QoS 1 and waits for the SUBACK.
func (s *sessionConn) subscribe(filter string) error {
	tok := s.client.Subscribe(filter, 1, nil) // nil: the default handler, the inbox
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("subscribe %s: no SUBACK in 10 s", filter)
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if codes := tok.(*mqtt.SubscribeToken).Result(); codes[filter] != 1 {
		return fmt.Errorf("subscribe %s: granted %#x, want 1", filter, codes[filter])
	}
	return nil
}

// publish1 publishes payload to topic at QoS 1 and waits for its PUBACK.
func publish1(cl mqtt.Client, topic, payload string) error {
	tok := cl.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10 * time.Second) {
		return fmt.Errorf("publish %q to %s: no PUBACK in 10 s", payload, topic)
	}
	return tok.Error()
}

// durableSetup creates, through p, group gid, n users u<k> (members of
// it) and device dev (a publisher of it, so it may also send each member a
// direct message), and logs each user in through p. It returns the users
// and the device's key.
func (c *cluster) durableSetup(p *proc, gid, dev string, n int) ([]*durableUser, string) {
	t := c.t
	t.Helper()
	c.mustAPI(p, "POST", "/v1/groups", map[string]any{"id": gid}, nil)
	var device struct {
		Key string `json:"key"`
	}
	c.mustAPI(p, "POST", "/v1/devices", map[string]any{"id": dev}, &device)
	c.mustAPI(p, "PUT", "/v1/groups/"+gid+"/publishers/"+dev, nil, nil)
	users := make([]*durableUser, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 4) // argon2 costs 19 MiB and ~50 ms per call
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			u := &durableUser{id: fmt.Sprintf("%s-u%02d", gid, i)}
			u.clientID = u.id + "-phone"
			pw := memberPassword(u.id)
			if err := c.api(p, "POST", "/v1/users", map[string]any{"id": u.id, "password": pw}, nil); err != nil {
				errs <- err
				return
			}
			if err := c.api(p, "PUT", "/v1/groups/"+gid+"/members/"+u.id, nil, nil); err != nil {
				errs <- err
				return
			}
			var login struct {
				Token string   `json:"token"`
				MQTT  []string `json:"mqtt"`
			}
			req, _ := newLogin(p, u.id, pw)
			if err := doJSON(req, &login); err != nil {
				errs <- err
				return
			}
			if len(login.MQTT) == 0 {
				errs <- fmt.Errorf("login of %s: no MQTT address", u.id)
				return
			}
			u.token, u.mqtt = login.Token, login.MQTT
			users[i] = u
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return users, device.Key
}

// goOffline connects each user to the address addrOf picks, persistent,
// subscribes /private/<id>/# at QoS 1 and disconnects cleanly; then it
// waits until no node of ps counts an MQTT connection, so what is
// published next finds every session offline.
func (c *cluster) goOffline(users []*durableUser, addrOf func(*durableUser) string, ps []*proc) {
	t := c.t
	t.Helper()
	errs := make(chan error, len(users))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s, err := dial(addrOf(u), u.id, u.token, u.clientID, false, &u.box)
			if err != nil {
				errs <- err
				return
			}
			if err := s.subscribe("/private/" + u.id + "/#"); err != nil {
				errs <- fmt.Errorf("%s: %w", u.id, err)
			}
			s.client.Disconnect(250)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.waitNoConnections(ps)
}

// waitNoConnections waits until pushring_mqtt_connections is 0 on each
// of ps.
func (c *cluster) waitNoConnections(ps []*proc) {
	c.t.Helper()
	testutil.CheckFor(c.t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, p := range ps {
			if v := c.gauge(p, "pushring_mqtt_connections"); v != 0 {
				return fmt.Errorf("%s still counts %v MQTT connections", p.id, v)
			}
		}
		return nil
	})
}

// gauge reads an unlabelled series from p's /metrics.
func (c *cluster) gauge(p *proc, name string) float64 {
	c.t.Helper()
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				c.t.Fatal(err)
			}
			return f
		}
	}
	c.t.Fatalf("%s: no %s in /metrics", p.id, name)
	return 0
}

// deviceConn connects device dev with key to addr (clean session).
func deviceConn(t *testing.T, addr, dev, key string) mqtt.Client {
	t.Helper()
	var box inbox
	s, err := dial(addr, dev, key, dev+"-pub", true, &box)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.client.Disconnect(50) })
	return s.client
}

// reconnectAll connects every user to addr with its client id, persistent
// and without subscribing (a resumed session keeps its subscriptions),
// into a fresh inbox, and records session present. Connections are
// closed at the end of the test.
func reconnectAll(t *testing.T, users []*durableUser, addr string) {
	t.Helper()
	errs := make(chan error, len(users))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			s, err := dial(addr, u.id, u.token, u.clientID, false, &u.box)
			if err != nil {
				errs <- err
				return
			}
			u.client, u.present = s.client, s.present
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, u := range users {
			if u.client != nil {
				u.client.Disconnect(50)
			}
		}
	})
}

// awaitBacklogs waits, at most timeout, until every user received each
// message it wants, then returns the totals and how long it waited.
func awaitBacklogs(users []*durableUser, timeout time.Duration) (tally, int, time.Duration) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		var sum tally
		present := 0
		for _, u := range users {
			sum.add(tallyOf(u.box.payloads(), u.want))
			if u.present {
				present++
			}
		}
		if sum.missing == 0 || time.Now().After(deadline) {
			return sum, present, time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkBacklogs reports every user that lacks a message, got one out of
// order or had no session present.
func checkBacklogs(t *testing.T, users []*durableUser) {
	t.Helper()
	bad := 0
	for _, u := range users {
		tl := tallyOf(u.box.payloads(), u.want)
		if !u.present || tl.missing > 0 || tl.disorder > 0 {
			bad++
			if bad <= 5 { // the totals are logged; a few examples say why
				t.Errorf("%s: session present %v, %d of %d messages (first missing %q), %d out of order (%s)",
					u.id, u.present, tl.delivered, tl.want, tl.firstMissing, tl.disorder, tl.firstDisorder)
			}
		}
	}
	if bad > 5 {
		t.Errorf("... and %d more sessions like these", bad-5)
	}
}

// TestReconnectAnywhere: with no fault, persistent sessions that went
// offline on their home nodes and come back through one node (as a load
// balancer may send them) find their session (session present 1) and
// every QoS 1 message published meanwhile, group and direct, in order.
func TestReconnectAnywhere(t *testing.T) {
	const users, groupMsgs, directMsgs = 18, 10, 2
	c := newCluster(t, 3)
	n1 := c.procs[0]
	us, key := c.durableSetup(n1, "ra", "ra-dev", users)
	byAddr := map[string]string{}
	for _, p := range c.procs {
		byAddr[p.mqtt] = p.id
	}
	away := 0
	for _, u := range us {
		if byAddr[u.mqtt[0]] != n1.id {
			away++
		}
	}
	if away == 0 {
		t.Fatalf("all %d users are homed on %s: nothing to reconnect across", users, n1.id)
	}
	c.goOffline(us, func(u *durableUser) string { return u.mqtt[0] }, c.procs)
	for _, u := range us {
		u.box = inbox{} // only what the reconnect brings counts
	}

	// One device on n2 publishes, each message PUBACKed before the next.
	dev := deviceConn(t, c.procs[1].mqtt, "ra-dev", key)
	seq := 0
	next := func() string { seq++; return fmt.Sprintf("ra-dev %d", seq) }
	for range groupMsgs {
		p := next()
		if err := publish1(dev, "/group/ra", p); err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			u.want = append(u.want, p)
		}
	}
	for range directMsgs {
		for _, u := range us {
			p := next()
			if err := publish1(dev, "/private/"+u.id, p); err != nil {
				t.Fatal(err)
			}
			u.want = append(u.want, p)
		}
	}

	reconnectAll(t, us, n1.mqtt)
	sum, present, took := awaitBacklogs(us, 15*time.Second)
	t.Logf("durable: reconnect anywhere: %d sessions (%d homed away from %s) reconnected through %s: session present %d/%d; delivered %d of %d (%d missing) in %v; %d duplicates, %d out of order",
		users, away, n1.id, n1.id, present, users, sum.delivered, sum.want, sum.missing, took.Round(time.Millisecond), sum.dups, sum.disorder)
	checkBacklogs(t, us)
}

// TestOneSessionPerClientID: a client id holds one session in the whole
// cluster. Connecting with it on another node closes the first
// connection within a few seconds (whether the new one is persistent or
// clean), and a message sent afterwards arrives once, on the new
// connection only.
func TestOneSessionPerClientID(t *testing.T) {
	const closeWithin = 5 * time.Second
	c := newCluster(t, 3)
	n1, n2, n3 := c.procs[0], c.procs[1], c.procs[2]
	us, key := c.durableSetup(n1, "one", "one-dev", 2)
	dev := deviceConn(t, n1.mqtt, "one-dev", key)
	seq := 0

	for i, tc := range []struct {
		name  string
		clean bool // the second connection's clean session flag
	}{{"persistent", false}, {"clean", true}} {
		t.Run(tc.name, func(t *testing.T) {
			u := us[i]
			topic := "/private/" + u.id
			conns := []*sessionConn{}
			boxes := []*inbox{}
			connect := func(p *proc, clean bool) *sessionConn {
				t.Helper()
				box := &inbox{}
				s, err := dial(p.mqtt, u.id, u.token, u.clientID, clean, box)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.client.Disconnect(50) })
				if err := s.subscribe(topic + "/#"); err != nil {
					t.Fatal(err)
				}
				conns, boxes = append(conns, s), append(boxes, box)
				return s
			}
			// send publishes a direct message and a marker after it, and
			// waits until box has the marker: by then the message had
			// every chance to arrive, also twice.
			send := func(box *inbox) string {
				t.Helper()
				seq++
				msg := fmt.Sprintf("one-dev %d", seq)
				seq++
				marker := fmt.Sprintf("one-dev %d", seq)
				for _, p := range []string{msg, marker} {
					if err := publish1(dev, topic, p); err != nil {
						t.Fatal(err)
					}
				}
				deadline := time.Now().Add(10 * time.Second)
				for box.count(marker) == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				return msg
			}
			closedWithin := func(s *sessionConn) (time.Duration, bool) {
				start := time.Now()
				select {
				case <-s.lost:
					return time.Since(start), true
				case <-time.After(closeWithin):
					return closeWithin, false
				}
			}

			first := connect(n1, false)
			second := connect(n2, tc.clean)
			took, closed := closedWithin(first)
			if !closed {
				t.Errorf("%s: the connection to %s is still open %v after the same client id connected to %s: two sessions alive",
					u.clientID, n1.id, closeWithin, n2.id)
			}
			msg := send(boxes[1])
			t.Logf("durable: takeover %s→%s (second clean=%v): first closed %v after %v; second session present %v; the message reached the first %d×, the second %d×",
				n1.id, n2.id, tc.clean, closed, took.Round(time.Millisecond), second.present, boxes[0].count(msg), boxes[1].count(msg))
			if n := boxes[1].count(msg); n != 1 {
				t.Errorf("the connection to %s got %q %d times, want once", n2.id, msg, n)
			}
			if n := boxes[0].count(msg); n != 0 {
				t.Errorf("the replaced connection to %s got %q %d times, want 0", n1.id, msg, n)
			}
			if !tc.clean && !second.present {
				t.Errorf("persistent reconnect on %s: session present 0, want 1 (the session held on %s)", n2.id, n1.id)
			}

			// Taken over again, from a third node, while n2 holds it.
			connect(n3, false)
			took, closed = closedWithin(second)
			if !closed {
				t.Errorf("%s: the connection to %s is still open %v after the same client id connected to %s: two sessions alive",
					u.clientID, n2.id, closeWithin, n3.id)
			}
			msg = send(boxes[2])
			t.Logf("durable: takeover %s→%s: second closed %v after %v; third session present %v; the message reached the earlier ones %d× and %d×, the third %d×",
				n2.id, n3.id, closed, took.Round(time.Millisecond), conns[2].present, boxes[0].count(msg), boxes[1].count(msg), boxes[2].count(msg))
			if n := boxes[2].count(msg); n != 1 {
				t.Errorf("the connection to %s got %q %d times, want once", n3.id, msg, n)
			}
			for k, p := range []*proc{n1, n2} {
				if n := boxes[k].count(msg); n != 0 {
					t.Errorf("the replaced connection to %s got %q %d times, want 0", p.id, msg, n)
				}
			}
			// A clean session ends with its connection: taking it over
			// resumes nothing.
			if want := !tc.clean; conns[2].present != want {
				t.Errorf("persistent reconnect on %s: session present %v, want %v (the session held on %s was clean: %v)",
					n3.id, conns[2].present, want, n2.id, tc.clean)
			}
		})
	}
}

// single is one pushring node with its own embedded NATS server, which
// can be stopped and started again on the same data dir and addresses.
type single struct {
	c                  *cluster // for api, waitReady; no shared NATS
	dir                string
	mqtt, http, gossip string
	p                  *proc
	starts             int
}

func newSingle(t *testing.T) *single {
	t.Helper()
	s := &single{c: &cluster{t: t}, dir: t.TempDir(), mqtt: freeAddr(t), http: freeAddr(t), gossip: freeAddr(t)}
	if err := os.WriteFile(filepath.Join(s.dir, "admin.key"), []byte(adminKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	return s
}

// start runs the node (no --nats-url: the embedded server, its JetStream
// files in the data dir) and waits until it is ready.
func (s *single) start() {
	t := s.c.t
	t.Helper()
	s.starts++
	p := &proc{id: "solo", mqtt: s.mqtt, http: s.http, gossip: s.gossip, exited: make(chan struct{})}
	p.log = filepath.Join(s.dir, fmt.Sprintf("node-%d.log", s.starts))
	p.run(t, "--node-id", p.id, "--data-dir", s.dir,
		"--admin-key-file", filepath.Join(s.dir, "admin.key"),
		"--mqtt-addr", p.mqtt, "--http-addr", p.http, "--gossip-addr", p.gossip,
		"--log-level", "info", "--login-rate", "-1")
	s.p = p
	s.c.procs = []*proc{p}
	s.c.waitReady(p)
}

// stop sends sig and waits, at most 30 s, for the process to exit; it
// returns the exit code (-1: killed by a signal).
func (s *single) stop(sig syscall.Signal) int {
	t := s.c.t
	t.Helper()
	if err := s.p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.p.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30 s after %v", s.p.id, sig)
	}
	return s.p.cmd.ProcessState.ExitCode()
}

// TestRestartKeepsBacklog: a single node on its embedded NATS server
// holds 20 offline persistent sessions with 50 QoS 1 direct messages each
// (all PUBACKed). After SIGTERM (exit 0) or kill -9 and a restart on the
// same data dir, every session is present again and gets its 50
// messages, in order.
func TestRestartKeepsBacklog(t *testing.T) {
	const users, perUser = 20, 50
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{{"sigterm", syscall.SIGTERM}, {"kill9", syscall.SIGKILL}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSingle(t)
			c := s.c
			us, key := c.durableSetup(s.p, "rk", "rk-dev", users)
			c.goOffline(us, func(*durableUser) string { return s.mqtt }, c.procs)

			// 1,000 QoS 1 messages in flight together, round robin over
			// the users; each user's 50 are in order on one connection.
			dev := deviceConn(t, s.mqtt, "rk-dev", key)
			var toks []mqtt.Token
			seq := 0
			for range perUser {
				for _, u := range us {
					seq++
					p := fmt.Sprintf("rk-dev %d", seq)
					toks = append(toks, dev.Publish("/private/"+u.id, 1, false, p))
					u.want = append(u.want, p)
				}
			}
			for i, tok := range toks {
				if !tok.WaitTimeout(20 * time.Second) {
					t.Fatalf("message %d of %d: no PUBACK in 20 s", i+1, len(toks))
				}
				if err := tok.Error(); err != nil {
					t.Fatalf("message %d of %d: %v", i+1, len(toks), err)
				}
			}
			dev.Disconnect(250)
			for _, u := range us {
				u.box = inbox{}
			}

			stopped := time.Now()
			code := s.stop(tc.sig)
			if tc.sig == syscall.SIGTERM && code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0", code)
			}
			down := time.Since(stopped)
			s.start()
			reconnectAll(t, us, s.mqtt)
			sum, present, took := awaitBacklogs(us, 20*time.Second)
			t.Logf("durable: restart after %s (exit %d in %v): %d sessions, session present %d/%d; delivered %d of %d (%d missing) in %v; %d duplicates, %d out of order",
				tc.name, code, down.Round(time.Millisecond), users, present, users, sum.delivered, sum.want, sum.missing, took.Round(time.Millisecond), sum.dups, sum.disorder)
			checkBacklogs(t, us)
		})
	}
}
