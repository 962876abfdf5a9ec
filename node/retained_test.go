package node

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/store"
)

// waitMsgs waits until r holds n messages and returns them.
func (r *received) waitMsgs(t *testing.T, n int) []mqtt.Message {
	t.Helper()
	var got []mqtt.Message
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		r.mu.Lock()
		got = append([]mqtt.Message(nil), r.msgs...)
		r.mu.Unlock()
		if len(got) < n {
			return fmt.Errorf("%d messages, want %d", len(got), n)
		}
		return nil
	})
	return got
}

// flagged waits for n messages and returns them as "R topic payload"
// (retain flag set) or "L topic payload" (live), in arrival order.
func (r *received) flagged(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for _, m := range r.waitMsgs(t, n) {
		flag := "L"
		if m.Retained() {
			flag = "R"
		}
		out = append(out, flag+" "+m.Topic()+" "+string(m.Payload()))
	}
	return out
}

// TestRetainedMessages, through real clients on a real node: a retained
// message published with mosquitto_pub (3.1.1) reaches mosquitto_sub
// (5.0) subscribing to the group topic, flagged retained; one published
// over HTTP reaches a new session's private tree (paho, 3.1.1); both
// survive a restart of the node; an empty retained payload clears it;
// a direct message cannot be retained over HTTP.
func TestRetainedMessages(t *testing.T) {
	dir := t.TempDir()
	m := newMosqTest(t, dir)
	sub, pub, n, w, host, port, ctx := m.sub, m.pub, m.n, m.w, m.host, m.port, m.ctx

	if out, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1", "-r",
		"-i", "d1-mosq", "-u", "d1", "-P", w.d1Key, "-t", "/group/g1", "-m", "door open").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub -r: %v: %s", err, out)
	}
	alice := w.api.login("alice", passwordOf("alice"))
	// -C 1: the retained message alone ends it; -F %r is the retain flag.
	out, err := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-C", "1", "-W", "10",
		"-i", "alice-mosq5", "-u", "alice", "-P", alice.Token, "-t", "/group/g1", "-F", "%r %t %p").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1 /group/g1 door open" {
		t.Fatalf("mosquitto_sub -V mqttv5 on the group topic: %v: %q", err, out)
	}

	// Over HTTP, admin: replaces the group's retained message.
	w.api.must(202, "POST", "/v1/groups/g1/messages", w.admin, map[string]any{"payload": "door closed", "retain": true}, nil)
	w.api.must(400, "POST", "/v1/users/bob/messages", w.admin, map[string]any{"payload": "x", "retain": true}, nil)
	bob := w.api.login("bob", passwordOf("bob"))
	sink := &received{}
	c := connect(t, n, clientOpts{user: "bob", password: bob.Token}, nil)
	subscribe(t, c, "/private/bob/#", 1, sink)
	if got := sink.flagged(t, 1); got[0] != "R /private/bob/group/g1 door closed" {
		t.Fatalf("bob's new session got %q", got)
	}
	c.Disconnect(100)

	// The node restarts on its data: the message is still there.
	n.Close()
	n = startNode(t, dir, nil)
	defer n.Close()
	sink = &received{}
	c = connect(t, n, clientOpts{user: "alice", password: alice.Token}, nil)
	subscribe(t, c, "/group/g1", 1, sink)
	if got := sink.flagged(t, 1); got[0] != "R /group/g1 door closed" {
		t.Fatalf("after a restart: %q", got)
	}

	// An empty retained payload clears it, and is delivered live.
	if out, err := exec.CommandContext(ctx, pub, "-h", host, "-p", portOf(n), "-V", "mqttv5", "-q", "1", "-r", "-n",
		"-i", "d1-mosq", "-u", "d1", "-P", w.d1Key, "-t", "/group/g1").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub -r -n: %v: %s", err, out)
	}
	if got := sink.flagged(t, 2); got[1] != "L /group/g1 " {
		t.Fatalf("the clearing message: %q", got)
	}
	// A new subscriber gets no retained message: the first message it
	// sees is the next one published.
	sink2 := &received{}
	c2 := connect(t, n, clientOpts{user: "bob", password: bob.Token, clientID: "bob-2"}, nil)
	subscribe(t, c2, "/group/g1", 1, sink2)
	publish(t, connect(t, n, clientOpts{user: "d1", password: w.d1Key}, nil), "/group/g1", 1, "after")
	if got := sink2.flagged(t, 1); got[0] != "L /group/g1 after" {
		t.Fatalf("after clearing: %q", got)
	}
	if v := counter(t, n, "pushring_retained_writes_total", map[string]string{"result": "cleared"}); v != 1 {
		t.Fatalf("cleared writes %v", v)
	}
}

func portOf(n *Node) string {
	_, port, _ := net.SplitHostPort(n.MQTTAddr())
	return port
}

// TestRetainedAcrossNodes: a retained message published on one node of a
// cluster reaches a subscriber on the other node.
func TestRetainedAcrossNodes(t *testing.T) {
	tc := startCluster(t, 2)
	ctx := context.Background()
	a, b := tc.nodes[0], tc.nodes[1]
	token := tc.user(t, "u1")
	key := tc.device(t, "dev")
	st := a.dir
	if err := st.CreateGroup(ctx, store.Group{ID: "g"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetRole(ctx, "g", "u1", store.Member, true); err != nil {
		t.Fatal(err)
	}
	if err := st.SetRole(ctx, "g", "dev", store.Publisher, true); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !a.dir.CanPublishGroup("dev", "g") || !b.dir.IsMember("g", "u1") {
			return fmt.Errorf("roles not seen yet")
		}
		return nil
	})
	d := connect(t, a, clientOpts{user: "dev", password: key}, nil)
	if tok := d.Publish("/group/g", 1, true, "on"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	// The other node's copy follows its watch.
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if b.retained.Retained("g") == nil {
			return fmt.Errorf("not on %s yet", b.cfg.NodeID)
		}
		return nil
	})
	sink := &received{}
	c := connect(t, b, clientOpts{user: "u1", password: token, clientID: "u1-b"}, nil)
	subscribe(t, c, "/group/g", 1, sink)
	if got := sink.flagged(t, 1); got[0] != "R /group/g on" {
		t.Fatalf("on the other node: %q", got)
	}
}
