package main

// broker_test.go: a minimal MQTT 3.1.1 broker for pushchat's tests, built on
// the codec mqtt/packet. It is not pushring: it checks the CONNECT password
// against one token, acknowledges SUBSCRIBE and QoS 1 PUBLISH, and does the
// one fan-out pushchat relies on — a PUBLISH to /group/<gid> comes back to
// every connected client as /private/<user>/group/<gid>, and a PUBLISH to
// /private/<id> goes to <id>.

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pushring/pushring/mqtt/packet"
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

func (bc *brokerConn) write(pkt []byte) {
	bc.mu.Lock()
	defer bc.mu.Unlock()
	bc.c.Write(pkt)
}

// send delivers a QoS 1 PUBLISH to the client logged in as user.
func (b *fakeBroker) send(user, topic, payload string) bool {
	b.mu.Lock()
	bc := b.conns[user]
	b.mu.Unlock()
	if bc == nil {
		return false
	}
	bc.mu.Lock()
	bc.nextID++
	id := bc.nextID
	bc.mu.Unlock()
	bc.write(packet.AppendPublish(nil, 1, false, false, id, []byte(payload), topic))
	return true
}

func (b *fakeBroker) serve(c net.Conn) {
	defer c.Close()
	r := packet.NewReader(c, 1<<20)
	bc := &brokerConn{c: c}
	user := ""
	for {
		h, body, err := r.ReadPacket()
		if err != nil {
			return
		}
		switch h >> 4 {
		case packet.CONNECT:
			var p packet.Connect
			if err := packet.DecodeConnect(h, body, &p); err != nil {
				b.t.Errorf("broker: CONNECT: %v", err)
				return
			}
			user = p.Username
			b.log("connect " + user + " " + p.ClientID)
			code := packet.ConnAccepted
			if string(p.Password) != b.token {
				code = packet.ConnNotAuthorized
			}
			bc.write(packet.AppendConnack(nil, false, code))
			if code != packet.ConnAccepted {
				return
			}
			b.mu.Lock()
			b.conns[user] = bc
			b.mu.Unlock()
		case packet.SUBSCRIBE:
			var p packet.Subscribe
			if err := packet.DecodeSubscribe(h, body, packet.V311, &p); err != nil {
				b.t.Errorf("broker: SUBSCRIBE: %v", err)
				return
			}
			var codes []byte
			for _, f := range p.Filters {
				b.log("subscribe " + f.Filter)
				code := min(f.QoS, 1)
				if b.refuseSubscribe.Load() {
					code = packet.SubackFailure
				}
				codes = append(codes, code)
			}
			bc.write(packet.AppendSuback(nil, p.PacketID, codes))
		case packet.PUBLISH:
			var p packet.Publish
			if err := packet.DecodePublish(h, body, packet.V311, &p); err != nil {
				b.t.Errorf("broker: PUBLISH: %v", err)
				return
			}
			topic, payload := string(p.Topic), string(p.Payload)
			b.log("publish " + topic + " " + payload)
			if p.QoS > 0 {
				bc.write(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
			}
			if gid, ok := strings.CutPrefix(topic, "/group/"); ok {
				b.mu.Lock()
				var users []string
				for u := range b.conns {
					users = append(users, u)
				}
				b.mu.Unlock()
				for _, u := range users {
					b.send(u, "/private/"+u+"/group/"+gid, payload)
				}
			} else if to, ok := strings.CutPrefix(topic, "/private/"); ok {
				b.send(to, topic, payload)
			}
		case packet.PUBACK:
		case packet.PINGREQ:
			bc.write(packet.AppendPingresp(nil))
		case packet.DISCONNECT:
			b.log("disconnect")
			b.mu.Lock()
			delete(b.conns, user)
			b.mu.Unlock()
			return
		default:
			b.t.Errorf("broker: unexpected packet type %d", h>>4)
			return
		}
	}
}
