package node

import (
	"strconv"
	"testing"
	"time"

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
