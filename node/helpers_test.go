package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"
	"github.com/pushring/pushring/mqtt/mqttc"
)

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PUSHRING_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startNode starts a node on loopback with ephemeral ports and the
// embedded NATS server under dir.
func startNode(t testing.TB, dir string, mod func(*Config)) *Node {
	t.Helper()
	n, err := tryStartNode(t, dir, mod)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	return n
}

// tryStartNode is startNode returning the error.
func tryStartNode(t testing.TB, dir string, mod func(*Config)) (*Node, error) {
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.NodeID = "n1"
	cfg.MQTTAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.GossipAddr = "127.0.0.1:0"
	// Several nodes share this process and two cores with the race
	// detector and other test packages: detect failures less eagerly than
	// production does, so a slow probe is not taken for a death (a flap
	// moves homes and loses in-flight messages, which these tests do not
	// study; e2e/ measures failover with the default timings).
	cfg.Membership.ProbeInterval = 500 * time.Millisecond
	cfg.Membership.ProbeTimeout = 400 * time.Millisecond
	cfg.Membership.SuspicionMult = 6
	// Clusters of these tests gossip encrypted, as deployed ones must
	// (Join without a key is refused).
	cfg.Membership.Keys = [][]byte{testGossipKey}
	// These tests place clients on chosen nodes: none is moved home.
	cfg.Router.RebalanceRate = -1
	cfg.Logger = testLogger(t)
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Start(ctx, cfg)
}

// testGossipKey is the gossip key of the test nodes.
var testGossipKey = []byte("node-test-gossip-key-32-bytes-ok")

// apiClient speaks the HTTP API like any client would.
type apiClient struct {
	t    testing.TB
	base string
}

func newAPI(t testing.TB, n *Node) *apiClient {
	return &apiClient{t: t, base: "http://" + n.HTTPAddr()}
}

// do sends a request with an Authorization header value (may be empty)
// and decodes the JSON answer into out (if non-nil); it returns the status.
func (c *apiClient) do(method, path, auth string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

// must fails the test unless the call answers want.
func (c *apiClient) must(want int, method, path, auth string, body, out any) {
	c.t.Helper()
	var raw json.RawMessage
	got := c.do(method, path, auth, body, &raw)
	if got != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, want, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatal(err)
		}
	}
}

type loginResp struct {
	Token        string   `json:"token"`
	ExpiresAt    string   `json:"expires_at"`
	PrivateTopic string   `json:"private_topic"`
	MQTT         []string `json:"mqtt"`
}

// passwordOf is the password of test user id: the API refuses passwords
// that are easy to guess, such as the id with "-password".
func passwordOf(id string) string { return id + "-velvet-orbit-canyon" }

func (c *apiClient) login(id, password string) loginResp {
	c.t.Helper()
	var r loginResp
	c.must(201, "POST", "/v1/sessions", "", map[string]any{"id": id, "password": password}, &r)
	return r
}

// world is the acceptance scenario's cast: users alice, bob, carol; device
// d1; group g1 = {alice, bob} with publisher d1; all made over HTTP.
type world struct {
	api   *apiClient
	admin string
	d1Key string
}

func setupWorld(t testing.TB, n *Node) *world {
	t.Helper()
	c := newAPI(t, n)
	w := &world{api: c, admin: "Bearer " + n.AdminKey()}
	for _, u := range []string{"alice", "bob", "carol"} {
		c.must(201, "POST", "/v1/users", w.admin, map[string]any{"id": u, "password": passwordOf(u)}, nil)
	}
	var dev struct{ ID, Key string }
	c.must(201, "POST", "/v1/devices", w.admin, map[string]any{"id": "d1"}, &dev)
	w.d1Key = dev.Key
	c.must(201, "POST", "/v1/groups", w.admin, map[string]any{"id": "g1", "members_can_publish": false}, nil)
	c.must(204, "PUT", "/v1/groups/g1/members/alice", w.admin, nil, nil)
	c.must(204, "PUT", "/v1/groups/g1/members/bob", w.admin, nil, nil)
	c.must(204, "PUT", "/v1/groups/g1/publishers/d1", w.admin, nil, nil)
	return w
}

// received collects messages per topic, in arrival order.
type received struct {
	mu   sync.Mutex
	msgs []mqtt.Message
}

func (r *received) handler(_ mqtt.Client, m mqtt.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

// list returns "topic payload" strings in arrival order.
func (r *received) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = m.Topic() + " " + string(m.Payload())
	}
	return out
}

func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

type clientOpts struct {
	user, password, clientID string
	persistent               bool
}

// connect opens a paho connection and fails the test if CONNECT fails.
func connect(t testing.TB, n *Node, o clientOpts, sink *received) mqtt.Client {
	t.Helper()
	c, err := tryConnect(n, o, sink)
	if err != nil {
		t.Fatalf("connect %s: %v", o.user, err)
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func tryConnect(n *Node, o clientOpts, sink *received) (mqtt.Client, error) {
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + n.MQTTAddr())
	if o.clientID == "" {
		o.clientID = o.user + "-test"
	}
	opts.SetClientID(o.clientID).SetUsername(o.user).SetPassword(o.password)
	opts.SetCleanSession(!o.persistent).SetAutoReconnect(false).SetConnectRetry(false)
	opts.SetProtocolVersion(4).SetConnectTimeout(5 * time.Second)
	if sink != nil {
		opts.SetDefaultPublishHandler(sink.handler)
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return c, nil
}

// subscribe subscribes and returns the granted code.
func subscribe(t testing.TB, c mqtt.Client, filter string, qos byte, sink *received) byte {
	t.Helper()
	var h mqtt.MessageHandler
	if sink != nil {
		h = sink.handler
	}
	tok := c.Subscribe(filter, qos, h)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	// One filter per call: take its code whatever key paho files it under
	// (paho strips "$share/<name>/" from the key).
	res := tok.(*mqtt.SubscribeToken).Result()
	if len(res) != 1 {
		t.Fatalf("subscribe %s: result %v", filter, res)
	}
	for _, code := range res {
		return code
	}
	return 0
}

func publish(t testing.TB, c mqtt.Client, topic string, qos byte, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// counter reads a counter or gauge from the node's registry, summed over
// the series whose labels include all of want.
func counter(t testing.TB, n *Node, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m, want) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k && lp.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func joinLines(s []string) string { return strings.Join(s, "\n") }

// rawSubscriber connects a raw MQTT 3.1.1 client as user (client id
// user), subscribes to filter at qos and, in a goroutine, hands every
// PUBLISH to onPublish (topic and payload valid during the call only),
// then acknowledges it at QoS 1. The connection is closed at cleanup.
func rawSubscriber(tb testing.TB, addr, user, pass, filter string, qos byte, onPublish func(topic, payload []byte)) *mqttc.Conn {
	tb.Helper()
	c, err := mqttc.Dial(addr, mqttc.Options{ClientID: user, Username: user, Password: pass})
	if err != nil {
		tb.Fatalf("%s at %s: %v", user, addr, err)
	}
	tb.Cleanup(func() { c.Abort() })
	if err := c.Subscribe(filter, qos, 10*time.Second); err != nil {
		tb.Fatalf("%s at %s: subscribe %s: %v", user, addr, filter, err)
	}
	go c.Run(onPublish)
	return c
}
