package mqttc

import (
	"net"
	"testing"
	"time"

	"github.com/pushring/pushring/router/packet"
)

// fakeBroker accepts one connection and plays a tiny script: CONNACK,
// SUBACK, one QoS 1 PUBLISH to the client (expects its PUBACK), then
// PUBACKs every QoS 1 PUBLISH from the client.
func fakeBroker(t *testing.T) (addr string, got chan string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got = make(chan string, 16)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := packet.NewReader(nc, 0)
		for {
			h, body, err := r.ReadPacket()
			if err != nil {
				return
			}
			switch h >> 4 {
			case packet.CONNECT:
				var c packet.Connect
				if err := packet.DecodeConnect(h, body, &c); err != nil {
					got <- "bad connect"
					return
				}
				got <- "connect " + c.ClientID + " " + c.Username + " " + string(c.Password)
				nc.Write(packet.AppendConnack(nil, false, packet.ConnAccepted))
			case packet.SUBSCRIBE:
				var s packet.Subscribe
				packet.DecodeSubscribe(h, body, packet.V311, &s)
				got <- "subscribe " + s.Filters[0].Filter
				nc.Write(packet.AppendSuback(nil, s.PacketID, []byte{1}))
				nc.Write(packet.AppendPublish(nil, 1, false, false, 7, []byte("hello"), "/t"))
			case packet.PUBACK:
				id, _ := packet.DecodeAck(h, body, packet.V311)
				if id == 7 {
					got <- "puback 7"
				}
			case packet.PUBLISH:
				var p packet.Publish
				packet.DecodePublish(h, body, packet.V311, &p)
				got <- "publish " + string(p.Topic) + " " + string(p.Payload)
				if p.QoS == 1 {
					nc.Write(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
				}
			}
		}
	}()
	return l.Addr().String(), got
}

func expect(t *testing.T, got chan string, want string) {
	t.Helper()
	select {
	case s := <-got:
		if s != want {
			t.Fatalf("got %q, want %q", s, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("timeout waiting for %q", want)
	}
}

func TestClient(t *testing.T) {
	addr, got := fakeBroker(t)
	c, err := Dial(addr, Options{ClientID: "c1", Username: "u", Password: "p", Inflight: 2})
	if err != nil {
		t.Fatal(err)
	}
	expect(t, got, "connect c1 u p")
	if err := c.Subscribe("/private/u/#", 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	expect(t, got, "subscribe /private/u/#")
	recv := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- c.Run(func(topic, payload []byte) { recv <- string(topic) + " " + string(payload) })
	}()
	if s := <-recv; s != "/t hello" {
		t.Fatalf("received %q", s)
	}
	expect(t, got, "puback 7")
	// Five QoS 1 publishes through a window of 2: PUBACKs free the slots.
	stop := make(chan struct{})
	for i := range 5 {
		if !c.Publish("/group/g", 1, []byte{'a' + byte(i)}, stop) {
			t.Fatal("publish failed")
		}
	}
	c.Flush()
	for i := range 5 {
		expect(t, got, "publish /group/g "+string(rune('a'+i)))
	}
	c.Close()
	if err := <-done; err == nil {
		t.Fatal("Run returned nil after Close")
	}
}
