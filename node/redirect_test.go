package node

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// TestRedirectHome: with --redirect-home, a 5.0 client that logs in on a
// node that is not its home gets CONNACK 0x9C with its home's address,
// where it is accepted; a 3.1.1 client is served where it lands; a
// draining node names each 5.0 client's new home in its DISCONNECT.
func TestRedirectHome(t *testing.T) {
	tc := startClusterWith(t, 2, func(c *Config) { c.Router.RedirectHome = true })
	n1, n2 := tc.byID("n1"), tc.byID("n2")
	homedOn := func(node string) string {
		for i := 0; ; i++ {
			if id := "u" + strconv.Itoa(i); n1.cluster.Home(id) == node {
				return id
			}
		}
	}
	connect := func(addr, id, token string, level byte) (*mqttc.Conn, byte, packet.Properties) {
		t.Helper()
		c, err := mqttc.DialTCP(addr, mqttc.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Abort() })
		if err := c.WritePacket(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: level, ClientID: id + "-c",
			CleanSession: true, KeepAlive: 60, Username: id, Password: []byte(token)}), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		h, body, err := c.ReadPacket(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var p packet.Properties
		_, code, err := packet.DecodeConnackProps(h, body, level, &p)
		if err != nil {
			t.Fatal(err)
		}
		return c, code, p
	}

	away := homedOn("n2")
	token := tc.user(t, away)
	_, code, p := connect(n1.MQTTAddr(), away, token, packet.V5)
	if code != packet.CodeUseAnotherServer || p.ServerReference != n2.MQTTAddr() {
		t.Fatalf("on n1: CONNACK %#x, Server Reference %q; want 0x9C and %s", code, p.ServerReference, n2.MQTTAddr())
	}
	if _, code, _ = connect(p.ServerReference, away, token, packet.V5); code != 0 {
		t.Fatalf("at its home: CONNACK %#x", code)
	}
	if _, code, _ = connect(n1.MQTTAddr(), away, token, packet.V311); code != 0 {
		t.Fatalf("3.1.1 on n1: CONNACK %#x, want it served there", code)
	}

	local := homedOn("n1")
	c, code, _ := connect(n1.MQTTAddr(), local, tc.user(t, local), packet.V5)
	if code != 0 {
		t.Fatalf("at its home n1: CONNACK %#x", code)
	}
	go n1.Close() // leaves the ring, then drains
	h, body, err := c.ReadPacket(20 * time.Second)
	if err != nil {
		t.Fatalf("waiting for the drain's DISCONNECT: %v", err)
	}
	var d packet.Disconnect
	if err := packet.DecodeDisconnect(h, body, packet.V5, &d); err != nil || d.Code != packet.CodeUseAnotherServer ||
		d.Props.ServerReference != n2.MQTTAddr() {
		t.Fatalf("drain: DISCONNECT %#x %q, %v; want 0x9C and %s", d.Code, d.Props.ServerReference, err, n2.MQTTAddr())
	}
}

// TestV5SessionMovesBetweenNodes: a 5.0 session started with Clean
// Start and a Session Expiry Interval (claimed twice in the store: the
// old record discarded, a kept one made) is resumed on another node
// with Clean Start off, and gets what was sent while it was away; a
// Clean Start there would have found nothing.
func TestV5SessionMovesBetweenNodes(t *testing.T) {
	tc := startCluster(t, 2)
	n1, n2 := tc.byID("n1"), tc.byID("n2")
	token := tc.user(t, "mover")
	expiry := packet.Properties{SessionExpiry: 300}
	expiry.Set(packet.PropSessionExpiry)
	dial := func(n *Node, cleanStart bool) (*mqttc.Conn, bool) {
		t.Helper()
		c, err := mqttc.DialTCP(n.MQTTAddr(), mqttc.Options{Timeout: 5 * time.Second, MQTT5: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Abort() })
		present, code, err := c.Connect(&packet.Connect{ProtocolLevel: packet.V5, ClientID: "m", CleanSession: cleanStart,
			KeepAlive: 60, Username: "mover", Password: []byte(token), Props: expiry}, 5*time.Second)
		if err != nil || code != 0 {
			t.Fatalf("CONNACK %#x, %v", code, err)
		}
		return c, present
	}
	c, present := dial(n1, true)
	if present {
		t.Fatal("session present on the first connect")
	}
	if err := c.Subscribe("/private/mover/#", 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if n := n1.router.Stats().Connections; n != 0 {
			return fmt.Errorf("%d connections on n1", n)
		}
		return nil
	})
	newAPI(t, n2).must(202, "POST", "/v1/users/mover/messages", "Bearer cluster-admin-key", map[string]any{"payload": "while away"}, nil)

	c, present = dial(n2, false)
	if !present {
		t.Fatal("the session was not resumed on n2")
	}
	var got inbox
	go c.Run(got.add)
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if l := got.list(); len(l) != 1 || l[0] != "/private/mover while away" {
			return fmt.Errorf("got %q", l)
		}
		return nil
	})
}

// TestQoS2SessionMovesBetweenNodes: a persistent session holding a QoS 2
// message the client received and released (PUBREC sent, PUBREL got, no
// PUBCOMP) moves to the other node: that node sends PUBREL for the id
// first, from the session's record, and does not send the message again.
func TestQoS2SessionMovesBetweenNodes(t *testing.T) {
	tc := startCluster(t, 2)
	n1, n2 := tc.byID("n1"), tc.byID("n2")
	token := tc.user(t, "mover")
	dial := func(n *Node) *mqttc.Conn {
		t.Helper()
		c, err := mqttc.DialTCP(n.MQTTAddr(), mqttc.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Abort() })
		if _, code, err := c.Connect(&packet.Connect{ProtocolLevel: packet.V311, ClientID: "q2", KeepAlive: 60,
			Username: "mover", Password: []byte(token)}, 5*time.Second); err != nil || code != 0 {
			t.Fatalf("CONNACK %#x, %v", code, err)
		}
		return c
	}
	read := func(c *mqttc.Conn, typ byte) (byte, []byte) {
		t.Helper()
		for {
			h, body, err := c.ReadPacket(10 * time.Second)
			if err != nil {
				t.Fatalf("waiting for packet type %d: %v", typ, err)
			}
			if h>>4 == typ {
				return h, body
			}
		}
	}
	c := dial(n1)
	if err := c.Subscribe("/private/mover/#", 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	newAPI(t, n2).must(202, "POST", "/v1/users/mover/messages", "Bearer cluster-admin-key", map[string]any{"payload": "once", "qos": 2}, nil)
	h, body := read(c, packet.PUBLISH)
	var p packet.Publish
	if err := packet.DecodePublish(h, body, packet.V311, &p); err != nil || p.QoS != 2 || string(p.Payload) != "once" {
		t.Fatalf("%+v %v", p, err)
	}
	if err := c.WritePacket(packet.AppendAck(nil, packet.PUBREC, p.PacketID), time.Second); err != nil {
		t.Fatal(err)
	}
	read(c, packet.PUBREL) // and no PUBCOMP: the client holds the id
	// The id reaches the session's record with n1's next position tick.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		rec, err := n1.sessions.recs.GetMQTT(context.Background(), "mover", "q2")
		if err != nil || len(rec.QoS2) != 1 || rec.QoS2[0].PID != p.PacketID || !rec.QoS2[0].Released {
			return fmt.Errorf("record %+v, %v", rec, err)
		}
		return nil
	})
	c.Abort()
	c = dial(n2)
	h, body = read(c, packet.PUBREL)
	if pid, err := packet.DecodeAck(h, body, packet.V311); err != nil || pid != p.PacketID {
		t.Fatalf("PUBREL %d, %v; want %d", pid, err, p.PacketID)
	}
	// Not sent again: the next PUBLISH is the next message.
	newAPI(t, n2).must(202, "POST", "/v1/users/mover/messages", "Bearer cluster-admin-key", map[string]any{"payload": "next", "qos": 2}, nil)
	h, body = read(c, packet.PUBLISH)
	var next packet.Publish
	if err := packet.DecodePublish(h, body, packet.V311, &next); err != nil || string(next.Payload) != "next" || next.PacketID == p.PacketID {
		t.Fatalf("got %+v %v (released id %d)", next, err, p.PacketID)
	}
}
