package node

import (
	"errors"
	"net"
	"os"
	"path/filepath"

	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pushring/pushring/fanout"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// TestPushFlow is the single-node acceptance scenario: group fan-out over
// MQTT and HTTP into private topics, direct messages, and nothing for
// non-members. Everything goes through the real stack: embedded NATS with
// JetStream KV, fanout over NATS, the MQTT router, paho clients.
func TestPushFlow(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)

	var sinks = map[string]*received{"alice": {}, "bob": {}, "carol": {}}
	for _, u := range []string{"alice", "bob", "carol"} {
		s := w.api.login(u, passwordOf(u))
		if s.PrivateTopic != "/private/"+u || len(s.MQTT) == 0 || s.MQTT[0] != n.MQTTAddr() {
			t.Fatalf("login %s: %+v", u, s)
		}
		c := connect(t, n, clientOpts{user: u, password: s.Token}, sinks[u])
		if code := subscribe(t, c, "/private/"+u+"/#", 1, sinks[u]); code != 1 {
			t.Fatalf("%s: granted %#x, want 1", u, code)
		}
	}

	// Fan-out goes over NATS even on one node: a plain nats.go
	// subscriber on the node's subject, signed in with the node's key,
	// sees the envelopes (checked below).
	_, auth := nodeKey(t, n.cfg.DataDir)
	raw, err := n.embedded.Connect(auth)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	envelopes, err := raw.SubscribeSync("pushring." + n.cfg.Cluster + ".node." + n.cfg.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
	fanBefore := n.fan.Stats()
	peer := map[string]string{"peer": n.cfg.NodeID}
	sentBefore := counter(t, n, "pushring_fanout_envelopes_sent_total", peer)
	receivedBefore := counter(t, n, "pushring_fanout_envelopes_received_total", peer)

	d1 := connect(t, n, clientOpts{user: "d1", password: w.d1Key}, nil)
	publish(t, d1, "/group/g1", 1, "over-mqtt")
	w.api.must(202, "POST", "/v1/groups/g1/messages", basic("d1", w.d1Key), map[string]any{"payload": "over-http"}, nil)
	w.api.must(202, "POST", "/v1/users/alice/messages", w.admin, map[string]any{"payload_base64": base64.StdEncoding.EncodeToString([]byte("direct-hi"))}, nil)

	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if sinks["alice"].count() < 3 || sinks["bob"].count() < 2 {
			return fmt.Errorf("alice %v, bob %v", sinks["alice"].list(), sinks["bob"].list())
		}
		return nil
	})
	// Let any duplicate arrive before judging "exactly once": a second,
	// independent message to bob travels the same path behind them.
	w.api.must(202, "POST", "/v1/users/bob/messages", w.admin, map[string]any{"payload": "marker"}, nil)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !slices.Contains(sinks["bob"].list(), "/private/bob marker") {
			return fmt.Errorf("bob has no marker yet: %v", sinks["bob"].list())
		}
		return nil
	})

	alice := sinks["alice"].list()
	slices.Sort(alice)
	wantAlice := []string{"/private/alice direct-hi", "/private/alice/group/g1 over-http", "/private/alice/group/g1 over-mqtt"}
	if !slices.Equal(alice, wantAlice) {
		t.Errorf("alice got\n%s\nwant\n%s", joinLines(alice), joinLines(wantAlice))
	}
	bob := sinks["bob"].list()
	slices.Sort(bob)
	wantBob := []string{"/private/bob marker", "/private/bob/group/g1 over-http", "/private/bob/group/g1 over-mqtt"}
	if !slices.Equal(bob, wantBob) {
		t.Errorf("bob got\n%s\nwant\n%s", joinLines(bob), joinLines(wantBob))
	}
	if got := sinks["carol"].list(); len(got) != 0 {
		t.Errorf("carol got %v, want nothing", got)
	}

	// Two group messages and two direct ones: one Deliver envelope each,
	// published to this node's subject and received from it.
	fs := n.fan.Stats()
	if g, d, sent, recv := fs.GroupMessages-fanBefore.GroupMessages, fs.DirectMessages-fanBefore.DirectMessages,
		fs.DeliversSent-fanBefore.DeliversSent, fs.DeliversReceived-fanBefore.DeliversReceived; g != 2 || d != 2 || sent != 4 || recv != 4 {
		t.Errorf("fanout: %d group and %d direct messages, %d deliver envelopes sent and %d received; want 2, 2, 4, 4", g, d, sent, recv)
	}
	if sent := counter(t, n, "pushring_fanout_envelopes_sent_total", peer) - sentBefore; sent < 4 {
		t.Errorf("pushring_fanout_envelopes_sent_total{peer=%q} rose by %v, want at least 4", n.cfg.NodeID, sent)
	}
	if recv := counter(t, n, "pushring_fanout_envelopes_received_total", peer) - receivedBefore; recv < 4 {
		t.Errorf("pushring_fanout_envelopes_received_total{peer=%q} rose by %v, want at least 4", n.cfg.NodeID, recv)
	}
	var groupEnvelopes []string
	for {
		m, err := envelopes.NextMsg(time.Second)
		if err != nil {
			break
		}
		env, err := fanout.DecodeEnvelope(m.Data)
		if err != nil {
			t.Fatalf("envelope on %s: %v", m.Subject, err)
		}
		if env.Kind == fanout.KindDeliver && env.Msg.Kind == message.Group {
			rcpts := slices.Sorted(slices.Values(env.Recipients))
			groupEnvelopes = append(groupEnvelopes, fmt.Sprintf("%s from %s to %v", env.Msg.Payload, env.Sender, rcpts))
		}
	}
	slices.Sort(groupEnvelopes)
	wantEnvelopes := []string{"over-http from n1 to [alice bob]", "over-mqtt from n1 to [alice bob]"}
	if !slices.Equal(groupEnvelopes, wantEnvelopes) {
		t.Errorf("group envelopes on the node's NATS subject:\n%s\nwant\n%s", joinLines(groupEnvelopes), joinLines(wantEnvelopes))
	}
}

// TestGroupTopicSubscriberGetsOneCopy: a member subscribed to both its
// private tree and /group/<gid> gets each group message once.
func TestGroupTopicSubscriberGetsOneCopy(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)
	s := w.api.login("alice", passwordOf("alice"))
	sink := &received{}
	c := connect(t, n, clientOpts{user: "alice", password: s.Token}, sink)
	subscribe(t, c, "/private/alice/#", 1, sink)
	if code := subscribe(t, c, "/group/g1", 1, sink); code != 1 {
		t.Fatalf("member subscribing /group/g1: granted %#x", code)
	}
	for i := range 3 {
		w.api.must(202, "POST", "/v1/groups/g1/messages", w.admin, map[string]any{"payload": fmt.Sprint("m", i)}, nil)
	}
	w.api.must(202, "POST", "/v1/users/alice/messages", w.admin, map[string]any{"payload": "marker"}, nil)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !slices.Contains(sink.list(), "/private/alice marker") {
			return fmt.Errorf("no marker: %v", sink.list())
		}
		return nil
	})
	got := sink.list()
	if len(got) != 4 {
		t.Fatalf("got %d messages, want 3 group messages once each and the marker:\n%s", len(got), joinLines(got))
	}
}

// TestRefusals: bad credentials, ACL on SUBSCRIBE and PUBLISH.
func TestRefusals(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)

	if _, err := tryConnect(n, clientOpts{user: "alice", password: "not-a-token"}, nil); err == nil {
		t.Error("wrong token accepted")
	}
	bobSession := w.api.login("bob", passwordOf("bob"))
	if _, err := tryConnect(n, clientOpts{user: "alice", password: bobSession.Token}, nil); err == nil {
		t.Error("alice connected with bob's token")
	}
	if _, err := tryConnect(n, clientOpts{user: "d1", password: "wrong-key"}, nil); err == nil {
		t.Error("wrong device key accepted")
	}

	// Revoked token: logout, then the token no longer connects.
	s := w.api.login("alice", passwordOf("alice"))
	w.api.must(204, "DELETE", "/v1/sessions/current", "Bearer "+s.Token, nil, nil)
	if _, err := tryConnect(n, clientOpts{user: "alice", password: s.Token}, nil); err == nil {
		t.Error("revoked token accepted")
	}

	s = w.api.login("alice", passwordOf("alice"))
	alice := &received{}
	ac := connect(t, n, clientOpts{user: "alice", password: s.Token}, alice)
	if code := subscribe(t, ac, "/private/bob/#", 1, alice); code != 0x80 {
		t.Errorf("alice subscribing /private/bob/#: %#x, want 0x80", code)
	}
	for _, f := range []string{"#", "/private/+", "/private/#", "/group/+", "/private/alice2", "$share/x/private/bob"} {
		if code := subscribe(t, ac, f, 1, alice); code != 0x80 {
			t.Errorf("alice subscribing %q: %#x, want 0x80", f, code)
		}
	}
	subscribe(t, ac, "/private/alice/#", 1, alice)

	// carol is no member and no publisher of g1: her publish is dropped
	// and counted, never delivered.
	cs := w.api.login("carol", passwordOf("carol"))
	cc := connect(t, n, clientOpts{user: "carol", password: cs.Token}, nil)
	before := counter(t, n, "pushring_mqtt_refusals_total", nil)
	groupACL := map[string]string{"reason": "group_acl"}
	directACL := map[string]string{"reason": "direct_acl"}
	groupBefore := counter(t, n, "pushring_mqtt_refusals_total", groupACL)
	directBefore := counter(t, n, "pushring_mqtt_refusals_total", directACL)
	publish(t, cc, "/group/g1", 1, "from-carol")
	publish(t, cc, "/private/alice", 1, "carol-direct") // shares no group with alice
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := counter(t, n, "pushring_mqtt_refusals_total", nil); got < before+2 {
			return fmt.Errorf("refusals %v, want %v", got, before+2)
		}
		return nil
	})
	// each under its own reason
	if got := counter(t, n, "pushring_mqtt_refusals_total", groupACL) - groupBefore; got != 1 {
		t.Errorf("refusals{reason=group_acl} rose by %v after carol published to /group/g1, want 1", got)
	}
	if got := counter(t, n, "pushring_mqtt_refusals_total", directACL) - directBefore; got != 1 {
		t.Errorf("refusals{reason=direct_acl} rose by %v after carol published to /private/alice, want 1", got)
	}
	// Revocation of a live session disconnects it at once.
	w.api.must(204, "DELETE", "/v1/sessions/current", "Bearer "+s.Token, nil, nil)
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if ac.IsConnectionOpen() {
			return fmt.Errorf("alice still connected after logout")
		}
		return nil
	})
	if got := alice.list(); len(got) != 0 {
		t.Errorf("alice received refused messages: %v", got)
	}
}

// TestExpiredToken: a session past its expiry no longer connects.
func TestExpiredToken(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.SessionTTL = 1500 * time.Millisecond })
	defer n.Close()
	w := setupWorld(t, n)
	s := w.api.login("alice", passwordOf("alice"))
	c, err := tryConnect(n, clientOpts{user: "alice", password: s.Token}, nil)
	if err != nil {
		t.Fatalf("fresh token refused: %v", err)
	}
	c.Disconnect(10)
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if c, err := tryConnect(n, clientOpts{user: "alice", password: s.Token}, nil); err == nil {
			c.Disconnect(10)
			return fmt.Errorf("token still accepted")
		}
		return nil
	})
}

// TestWildcardPublishClosesConnection: a wildcard in a PUBLISH topic is a
// protocol violation (3.1.1: close); other clients keep their messages.
func TestWildcardPublishClosesConnection(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)
	c, err := mqttc.Dial(n.MQTTAddr(), mqttc.Options{ClientID: "d1", Username: "d1", Password: w.d1Key, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Abort()
	c.WritePacket(packet.AppendPublish(nil, 0, false, false, 0, []byte("x"), "/group/+"), 5*time.Second)
	var ne net.Error
	if h, body, err := c.ReadPacket(5 * time.Second); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after wildcard publish: %#x % x %v", h, body, err)
	}
	// counted as a protocol error once the server has closed its side
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if got := counter(t, n, "pushring_mqtt_refusals_total", map[string]string{"reason": "protocol"}); got != 1 {
			return fmt.Errorf("refusals{reason=protocol} = %v, want 1", got)
		}
		return nil
	})
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// TestPersistentSession: alice (clean session off) goes offline, d1
// publishes 5 QoS 1 messages, alice reconnects and gets all 5 in order.
func TestPersistentSession(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)
	s := w.api.login("alice", passwordOf("alice"))
	opts := clientOpts{user: "alice", password: s.Token, clientID: "alice-phone", persistent: true}
	first := &received{}
	c, err := tryConnect(n, opts, first)
	if err != nil {
		t.Fatal(err)
	}
	subscribe(t, c, "/private/alice/#", 1, first)
	c.Disconnect(50)

	d1 := connect(t, n, clientOpts{user: "d1", password: w.d1Key}, nil)
	for i := range 5 {
		publish(t, d1, "/group/g1", 1, fmt.Sprint("msg-", i))
	}
	second := &received{}
	c2 := connect(t, n, opts, second)
	_ = c2
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if second.count() < 5 {
			return fmt.Errorf("got %v", second.list())
		}
		return nil
	})
	var want []string
	for i := range 5 {
		want = append(want, fmt.Sprint("/private/alice/group/g1 msg-", i))
	}
	if got := second.list(); !slices.Equal(got, want) {
		t.Fatalf("after reconnect got\n%s\nwant\n%s", joinLines(got), joinLines(want))
	}
}

// TestRestartKeepsState: users, groups and devices survive a restart with
// the same data dir, and so does the generated admin key.
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil)
	w := setupWorld(t, n)
	key := n.AdminKey()
	n.Close()

	n = startNode(t, dir, nil)
	defer n.Close()
	if n.AdminKey() != key {
		t.Fatalf("admin key changed across restart")
	}
	c := newAPI(t, n)
	var g struct {
		ID         string   `json:"id"`
		Members    []string `json:"members"`
		Publishers []string `json:"publishers"`
	}
	c.must(200, "GET", "/v1/groups/g1", w.admin, nil, &g)
	if !slices.Equal(g.Members, []string{"alice", "bob"}) || !slices.Equal(g.Publishers, []string{"d1"}) {
		t.Fatalf("group after restart: %+v", g)
	}
	s := c.login("alice", passwordOf("alice"))
	sink := &received{}
	ac := connect(t, n, clientOpts{user: "alice", password: s.Token}, sink)
	subscribe(t, ac, "/private/alice/#", 1, sink)
	d1 := connect(t, n, clientOpts{user: "d1", password: w.d1Key}, nil)
	publish(t, d1, "/group/g1", 1, "after-restart")
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !slices.Contains(sink.list(), "/private/alice/group/g1 after-restart") {
			return fmt.Errorf("got %v", sink.list())
		}
		return nil
	})
}

// TestAuthTopic: the auth-topic login — connect without credentials,
// publish the token to the auth topic — and its failure path.
func TestAuthTopic(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) { c.AuthTopic = true })
	defer n.Close()
	w := setupWorld(t, n)
	s := w.api.login("alice", passwordOf("alice"))

	for _, topic := range []string{"/service/auth", "service/auth"} {
		sink := &received{}
		c := connect(t, n, clientOpts{user: "", password: "", clientID: "proto-" + strings.ReplaceAll(topic, "/", "_")}, sink)
		publish(t, c, topic, 0, s.Token)
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if sink.count() == 0 {
				return fmt.Errorf("no auth answer")
			}
			return nil
		})
		got := sink.list()[0]
		if !strings.Contains(got, `"ok":true`) || !strings.Contains(got, `"id":"alice"`) || !strings.Contains(got, `"private_topic":"/private/alice"`) {
			t.Fatalf("auth answer on %s: %s", topic, got)
		}
		subscribe(t, c, "/private/alice/#", 1, sink)
		w.api.must(202, "POST", "/v1/users/alice/messages", w.admin, map[string]any{"payload": "hello-" + topic}, nil)
		testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if !slices.Contains(sink.list(), "/private/alice hello-"+topic) {
				return fmt.Errorf("got %v", sink.list())
			}
			return nil
		})
		c.Disconnect(10)
	}

	// Bad token: the failure answer arrives on the auth topic, then close.
	sink := &received{}
	c := connect(t, n, clientOpts{clientID: "proto-bad"}, sink)
	c.Publish("/service/auth", 0, false, "bogus-token")
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if sink.count() == 0 || c.IsConnectionOpen() {
			return fmt.Errorf("answer %v, open %v", sink.list(), c.IsConnectionOpen())
		}
		return nil
	})
	if got := sink.list()[0]; !strings.Contains(got, `"ok":false`) || !strings.HasPrefix(got, "/service/auth ") {
		t.Fatalf("failure answer: %s", got)
	}
}

// TestNATSListenNeedsNKey: an embedded NATS server opened to other
// processes lets in only the node's own key (generated mode 0600 in its
// data dir) and the authorized ones; nobody else reaches the KV buckets
// or the node subjects, not even with a token.
func TestNATSListenNeedsNKey(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, func(c *Config) { c.NATSListen = "127.0.0.1:0" })
	defer n.Close()
	fi, err := os.Stat(filepath.Join(dir, "nats.nk"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("nats.nk mode %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, "nats.token")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("nats.token: %v, want none", err)
	}
	addr := "nats://" + n.embedded.Addr().String()
	_, stranger := nodeKey(t, t.TempDir())
	for name, opts := range map[string][]nats.Option{"no credentials": nil, "token": {nats.Token("x")}, "unlisted key": {stranger}} {
		if nc, err := nats.Connect(addr, opts...); err == nil {
			nc.Close()
			t.Fatalf("%s: connected to the node's NATS", name)
		}
	}
	pub, auth := nodeKey(t, dir)
	if pub != n.natsPub {
		t.Fatalf("key on disk %s, node signs with %s", pub, n.natsPub)
	}
	nc, err := nats.Connect(addr, auth)
	if err != nil {
		t.Fatalf("with the node's key: %v", err)
	}
	nc.Close()
}
