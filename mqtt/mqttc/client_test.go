package mqttc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pushring/pushring/mqtt/packet"
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

// dialPair returns a client from DialTCP and the server's end of its
// connection; both are closed at cleanup.
func dialPair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := DialTCP(l.Addr().String(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Abort() })
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return c, sc
}

// TestRawConn: the primitives the tests use byte by byte. DialTCP sends
// nothing; Connect reports a refusal as a code; WritePacket writes any
// bytes as they are; a ReadPacket timeout leaves the connection usable.
func TestRawConn(t *testing.T) {
	c, sc := dialPair(t)
	sr := packet.NewReader(sc, 0)

	connected := make(chan error, 1)
	go func() {
		_, code, err := c.Connect(&packet.Connect{ClientID: "x", Username: "u", Password: []byte("bad")}, 5*time.Second)
		if err == nil && code != packet.ConnBadCredentials {
			err = fmt.Errorf("code %#x", code)
		}
		connected <- err
	}()
	h, body, err := sr.ReadPacket()
	if err != nil || h>>4 != packet.CONNECT {
		t.Fatalf("server read %#x %v", h, err)
	}
	var cp packet.Connect
	if err := packet.DecodeConnect(h, body, &cp); err != nil || cp.Username != "u" || string(cp.Password) != "bad" {
		t.Fatalf("CONNECT %+v %v", cp, err)
	}
	sc.Write(packet.AppendConnack(nil, false, packet.ConnBadCredentials))
	if err := <-connected; err != nil {
		t.Fatal(err)
	}

	tp := packet.TPacketNamed("A2 largest declared PUBLISH, no body")
	hostile := tp.Bytes()
	if err := c.WritePacket(hostile, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(hostile))
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, hostile) {
		t.Fatalf("server got % x %v", got, err)
	}

	var ne net.Error
	if _, _, err := c.ReadPacket(20 * time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("quiet read: %v, want a timeout", err)
	}
	sc.Write(packet.AppendPingresp(nil))
	if h, _, err := c.ReadPacket(5 * time.Second); err != nil || h>>4 != packet.PINGRESP {
		t.Fatalf("after a timeout: %#x %v", h, err)
	}
	sc.Close()
	if _, _, err := c.ReadPacket(5 * time.Second); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("after the server closed: %v, want EOF", err)
	}
}

// TestWritesTableBytes: what the client writes is, byte for byte, the
// codec table's entry for that packet.
func TestWritesTableBytes(t *testing.T) {
	c, sc := dialPair(t)
	expectBytes := func(name string) {
		t.Helper()
		tp := packet.TPacketNamed(name)
		want := tp.Bytes()
		got := make([]byte, len(want))
		sc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: client wrote % x (%v), want % x", name, got, err, want)
		}
	}

	connected := make(chan error, 1)
	go func() {
		_, _, err := c.Connect(&packet.Connect{CleanSession: true, KeepAlive: 10, ClientID: "p"}, 5*time.Second)
		connected <- err
	}()
	expectBytes("CONNECT minimal")
	sc.Write(packet.AppendConnack(nil, false, packet.ConnAccepted))
	if err := <-connected; err != nil {
		t.Fatal(err)
	}

	subscribed := make(chan error, 1)
	go func() { subscribed <- c.Subscribe("topic", 1, 5*time.Second) }()
	expectBytes("SUBSCRIBE one filter")
	sc.Write(packet.AppendSuback(nil, 1, []byte{1}))
	if err := <-subscribed; err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	c.Publish("topic", 0, []byte("payload"), stop)
	c.Publish("topic", 1, []byte("payload"), stop)
	c.Flush()
	expectBytes("PUBLISH QoS 0")
	expectBytes("PUBLISH QoS 1")
}
