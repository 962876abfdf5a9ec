package main

// broker_test.go: a minimal MQTT 3.1.1 broker for pushchat's tests, built on
// mochi's packet codec. It is not pushring: it checks the CONNECT password
// against one token, acknowledges SUBSCRIBE and QoS 1 PUBLISH, and does the
// one fan-out pushchat relies on — a PUBLISH to /group/<gid> comes back to
// every connected client as /private/<user>/group/<gid>, and a PUBLISH to
// /private/<id> goes to <id>.

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

type fakeBroker struct {
	t               *testing.T
	ln              net.Listener
	token           string // the password CONNECT must carry
	refuseSubscribe atomic.Bool

	mu     sync.Mutex
	events []string // "connect alice pushchat-alice-…", "subscribe /private/alice/#", "publish /group/g1 alice: hi", "disconnect"
	conns  map[string]*brokerConn
}

type brokerConn struct {
	mu     sync.Mutex
	c      net.Conn
	nextID uint16
}

func newFakeBroker(t *testing.T, token string) *fakeBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBroker{t: t, ln: ln, token: token, conns: map[string]*brokerConn{}}
	go b.accept()
	t.Cleanup(func() { ln.Close() })
	return b
}

func (b *fakeBroker) addr() string { return b.ln.Addr().String() }

func (b *fakeBroker) log(e string) {
	b.mu.Lock()
	b.events = append(b.events, e)
	b.mu.Unlock()
}

func (b *fakeBroker) eventList() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.events...)
}

func (b *fakeBroker) accept() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		go b.serve(c)
	}
}

func (bc *brokerConn) write(pk packets.Packet, enc func(*packets.Packet, *bytes.Buffer) error) {
	var buf bytes.Buffer
	pk.ProtocolVersion = 4
	bc.mu.Lock()
	defer bc.mu.Unlock()
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0 {
		bc.nextID++
		pk.PacketID = bc.nextID
	}
	enc(&pk, &buf)
	bc.c.Write(buf.Bytes())
}

// send delivers a QoS 1 PUBLISH to the client logged in as user.
func (b *fakeBroker) send(user, topic, payload string) bool {
	b.mu.Lock()
	bc := b.conns[user]
	b.mu.Unlock()
	if bc == nil {
		return false
	}
	bc.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName: topic, Payload: []byte(payload)}, (*packets.Packet).PublishEncode)
	return true
}

func (b *fakeBroker) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	bc := &brokerConn{c: c}
	user := ""
	for {
		hb, err := r.ReadByte()
		if err != nil {
			return
		}
		var pk packets.Packet
		pk.ProtocolVersion = 4
		if err := pk.FixedHeader.Decode(hb); err != nil {
			b.t.Errorf("broker: bad header %x: %v", hb, err)
			return
		}
		n, _, err := packets.DecodeLength(r)
		if err != nil {
			return
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		switch pk.FixedHeader.Type {
		case packets.Connect:
			if err := pk.ConnectDecode(body); err != nil {
				b.t.Errorf("broker: CONNECT: %v", err)
				return
			}
			user = string(pk.Connect.Username)
			b.log("connect " + user + " " + pk.Connect.ClientIdentifier)
			code := byte(0)
			if string(pk.Connect.Password) != b.token {
				code = 5 // not authorized
			}
			bc.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code}, (*packets.Packet).ConnackEncode)
			if code != 0 {
				return
			}
			b.mu.Lock()
			b.conns[user] = bc
			b.mu.Unlock()
		case packets.Subscribe:
			if err := pk.SubscribeDecode(body); err != nil {
				b.t.Errorf("broker: SUBSCRIBE: %v", err)
				return
			}
			var codes []byte
			for _, f := range pk.Filters {
				b.log("subscribe " + f.Filter)
				code := min(f.Qos, 1)
				if b.refuseSubscribe.Load() {
					code = 0x80
				}
				codes = append(codes, code)
			}
			bc.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, PacketID: pk.PacketID, ReasonCodes: codes}, (*packets.Packet).SubackEncode)
		case packets.Publish:
			if err := pk.PublishDecode(body); err != nil {
				b.t.Errorf("broker: PUBLISH: %v", err)
				return
			}
			b.log("publish " + pk.TopicName + " " + string(pk.Payload))
			if pk.FixedHeader.Qos > 0 {
				bc.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID}, (*packets.Packet).PubackEncode)
			}
			if gid, ok := strings.CutPrefix(pk.TopicName, "/group/"); ok {
				b.mu.Lock()
				var users []string
				for u := range b.conns {
					users = append(users, u)
				}
				b.mu.Unlock()
				for _, u := range users {
					b.send(u, "/private/"+u+"/group/"+gid, string(pk.Payload))
				}
			} else if to, ok := strings.CutPrefix(pk.TopicName, "/private/"); ok {
				b.send(to, pk.TopicName, string(pk.Payload))
			}
		case packets.Puback:
		case packets.Pingreq:
			bc.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}}, (*packets.Packet).PingrespEncode)
		case packets.Disconnect:
			b.log("disconnect")
			b.mu.Lock()
			delete(b.conns, user)
			b.mu.Unlock()
			return
		default:
			b.t.Errorf("broker: unexpected packet type %d", pk.FixedHeader.Type)
			return
		}
	}
}
