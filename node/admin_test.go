package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
	"github.com/pushring/pushring/store"
)

// closedAt runs c's read loop and reports when the server closed it.
func closedAt(c *mqttc.Conn, onPublish func(topic, payload []byte)) <-chan time.Time {
	done := make(chan time.Time, 1)
	go func() {
		c.Run(onPublish)
		done <- time.Now()
	}()
	return done
}

// TestAdminDeleteAcrossCluster: on a 3-node cluster, deleting a user
// through one node's API closes her connections on every node within a
// second, drops her offline persistent session (a message published to
// her group after the delete is never delivered to her, not even to the
// same id made again), and leaves the other members' deliveries alone;
// deleting a device and rotating a device key close its connections on
// whichever node holds them; a deleted group is gone from every node.
func TestAdminDeleteAcrossCluster(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := context.Background()
	st := tc.nodes[0].dir
	adminKey := "Bearer cluster-admin-key"
	if err := st.CreateGroup(ctx, store.Group{ID: "g"}); err != nil {
		t.Fatal(err)
	}
	aliceTok, bobTok := tc.user(t, "alice"), tc.user(t, "bob")
	d1Key, d2Key, d3Key := tc.device(t, "d1"), tc.device(t, "d2"), tc.device(t, "d3")
	for _, r := range []struct {
		id   string
		role store.Role
	}{{"alice", store.Member}, {"bob", store.Member}, {"d1", store.Publisher}} {
		if err := st.SetRole(ctx, "g", r.id, r.role, true); err != nil {
			t.Fatal(err)
		}
	}
	tc.waitMembers(t, "g", 2)
	home := tc.byID(tc.nodes[0].cluster.Home("alice"))

	// alice's persistent session, offline, at her home.
	p, err := mqttc.Dial(home.MQTTAddr(), mqttc.Options{ClientID: "alice-p", Username: "alice", Password: aliceTok, Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Subscribe("/private/alice/#", 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Close()
	// alice on every node, and devices d2, d3 on the last two.
	var aliceClosed []<-chan time.Time
	for i, n := range tc.nodes {
		c, err := mqttc.Dial(n.MQTTAddr(), mqttc.Options{ClientID: fmt.Sprint("alice-", i), Username: "alice", Password: aliceTok})
		if err != nil {
			t.Fatalf("alice at %s: %v", n.cfg.NodeID, err)
		}
		t.Cleanup(func() { c.Abort() })
		aliceClosed = append(aliceClosed, closedAt(c, nil))
	}
	var bob inbox
	listen(t, tc.nodes[1].MQTTAddr(), "bob", bobTok, &bob)
	d2, err := mqttc.Dial(tc.nodes[1].MQTTAddr(), mqttc.Options{ClientID: "d2", Username: "d2", Password: d2Key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d2.Abort() })
	d2Closed := closedAt(d2, nil)
	d3, err := mqttc.Dial(tc.nodes[2].MQTTAddr(), mqttc.Options{ClientID: "d3", Username: "d3", Password: d3Key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d3.Abort() })
	d3Closed := closedAt(d3, nil)

	api := newAPI(t, tc.nodes[0])
	start := time.Now()
	api.must(204, "DELETE", "/v1/users/alice", adminKey, nil, nil)
	for i, ch := range aliceClosed {
		select {
		case at := <-ch:
			t.Logf("admin: alice's connection on n%d closed %v after the DELETE was sent", i+1, at.Sub(start).Round(time.Millisecond))
			if at.Sub(start) > time.Second {
				t.Errorf("alice's connection on n%d closed %v after the DELETE, want within 1 s", i+1, at.Sub(start))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("alice's connection on n%d still open 5 s after the DELETE", i+1)
		}
	}
	if _, err := mqttc.Dial(home.MQTTAddr(), mqttc.Options{ClientID: "alice-x", Username: "alice", Password: aliceTok}); err == nil {
		t.Fatal("the deleted user's token still logs in")
	}
	for _, n := range tc.nodes {
		if _, err := n.sessions.recs.GetMQTT(ctx, "alice", "alice-p"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("%s: alice's MQTT session record: %v", n.cfg.NodeID, err)
		}
	}

	// The group goes on for the others; nothing waits for alice.
	d1, err := mqttc.Dial(tc.nodes[2].MQTTAddr(), mqttc.Options{ClientID: "d1", Username: "d1", Password: d1Key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d1.Abort() })
	done := make(chan struct{})
	if !d1.Publish("/group/g", 1, []byte("after the delete"), done) || d1.Flush() != nil {
		t.Fatal("publish refused")
	}
	go d1.Run(nil)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := bob.list(); len(got) != 1 || !strings.HasSuffix(got[0], "after the delete") {
			return fmt.Errorf("bob got %q", got)
		}
		return nil
	})
	// alice made again, with her old client id: no session, no message.
	if err := st.CreatePrincipal(ctx, store.Principal{ID: "alice", Kind: store.User, SecretHash: "x"}); err != nil {
		t.Fatal(err)
	}
	token, hash, _ := store.NewToken()
	if err := st.CreateSession(ctx, store.Session{TokenHash: hash, PrincipalID: "alice", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var again *mqttc.Conn
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		// Every node hears of the new principal through its watch.
		again, err = mqttc.DialTCP(home.MQTTAddr(), mqttc.Options{Timeout: 5 * time.Second})
		if err != nil {
			return err
		}
		present, code, err := again.Connect(&packet.Connect{ClientID: "alice-p", Username: "alice", Password: []byte(token), KeepAlive: 60}, 5*time.Second)
		if err != nil || code != 0 {
			again.Abort()
			return fmt.Errorf("CONNACK %#x, %v", code, err)
		}
		if present {
			t.Fatal("the deleted user's persistent session came back")
		}
		return nil
	})
	t.Cleanup(func() { again.Abort() })
	if err := again.WritePacket(packet.AppendPingreq(nil), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if h, body, err := again.ReadPacket(5 * time.Second); err != nil || h>>4 != packet.PINGRESP {
		t.Fatalf("before the PINGRESP: %#x % x %v (a message kept for the deleted user?)", h, body, err)
	}

	// A device deleted on n1 is closed on n2; a key rotated on n1 closes
	// d3 on n3, and only the new key logs in.
	start = time.Now()
	api.must(204, "DELETE", "/v1/devices/d2", adminKey, nil, nil)
	select {
	case at := <-d2Closed:
		t.Logf("admin: d2's connection closed %v after the DELETE was sent", at.Sub(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the deleted device's connection is still open")
	}
	var rotated struct{ Key string }
	api.must(200, "POST", "/v1/devices/d3/key", adminKey, nil, &rotated)
	select {
	case <-d3Closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the device whose key changed is still connected")
	}
	if _, err := mqttc.Dial(tc.nodes[2].MQTTAddr(), mqttc.Options{ClientID: "d3", Username: "d3", Password: d3Key}); err == nil {
		t.Fatal("the old key still logs in")
	}
	if c, err := mqttc.Dial(tc.nodes[2].MQTTAddr(), mqttc.Options{ClientID: "d3", Username: "d3", Password: rotated.Key}); err != nil {
		t.Fatalf("the new key: %v", err)
	} else {
		c.Abort()
	}

	api.must(204, "DELETE", "/v1/groups/g", adminKey, nil, nil)
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, n := range tc.nodes {
			if _, ok := n.dir.GroupInfo("g"); ok {
				return fmt.Errorf("%s still has g", n.cfg.NodeID)
			}
		}
		return nil
	})
}
