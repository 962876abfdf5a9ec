package router

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

func TestGroupAndDirectDelivery(t *testing.T) {
	e := newEnv(t, nil)
	alice := newPaho(t, e, "alice", "alice-phone", true)
	bob := newPaho(t, e, "bob", "bob-phone", true)
	carol := newPaho(t, e, "carol", "carol-phone", true)
	if q := alice.sub(t, "/private/alice/#", 1); q != 1 {
		t.Fatalf("granted %d", q)
	}
	bob.sub(t, "/private/bob/group/+", 1)
	carol.sub(t, "/private/carol/#", 1)

	dev := newPaho(t, e, "d1", "dev", true)
	dev.pub(t, "/group/g1", 1, "hello")

	a := alice.waitMsgs(t, 1)
	if a[0] != (pahoMsg{"/private/alice/group/g1", "hello", 1}) {
		t.Fatalf("alice got %+v", a[0])
	}
	b := bob.waitMsgs(t, 1)
	if b[0].topic != "/private/bob/group/g1" || b[0].payload != "hello" {
		t.Fatalf("bob got %+v", b[0])
	}

	// Direct: bob shares g1 with alice.
	bob.pub(t, "/private/alice", 0, "hi alice")
	a = alice.waitMsgs(t, 2)
	if a[1] != (pahoMsg{"/private/alice", "hi alice", 0}) {
		t.Fatalf("alice got %+v", a[1])
	}
	// bob's subscription only covers group topics: a direct message to
	// himself does not reach him.
	bob.pub(t, "/private/bob", 1, "note to self")
	// carol shares no group with alice: refused, nothing delivered.
	carol.pub(t, "/private/alice", 1, "spam")
	testutil.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if e.srv.Stats().Refusals < 1 {
			return fmt.Errorf("refusal not counted")
		}
		return nil
	})
	if len(carol.got()) != 0 || len(alice.got()) != 2 || len(bob.got()) != 1 {
		t.Fatalf("unexpected deliveries: alice %v bob %v carol %v", alice.got(), bob.got(), carol.got())
	}
}

func TestGroupTopicSubscriptionOnce(t *testing.T) {
	e := newEnv(t, nil)
	alice := newPaho(t, e, "alice", "a1", true)
	alice.sub(t, "/group/g1", 1)
	alice.sub(t, "/private/alice/#", 1)
	bob := newPaho(t, e, "bob", "b1", true)
	if q := bob.sub(t, "/group/g1", 1); q != 1 {
		t.Fatalf("bob granted %#x", q)
	}
	carol := newPaho(t, e, "carol", "c1", true)
	if q := carol.sub(t, "/group/g1", 1); q != 0x80 {
		t.Fatalf("non-member carol granted %#x on /group/g1", q)
	}
	dev := newPaho(t, e, "d1", "dev", true)
	for i := range 3 {
		dev.pub(t, "/group/g1", 1, fmt.Sprint("m", i))
	}
	// alice: once each, on her private form; bob: on /group/g1.
	a := alice.waitMsgs(t, 3)
	b := bob.waitMsgs(t, 3)
	for i := range 3 {
		if a[i].topic != "/private/alice/group/g1" || a[i].payload != fmt.Sprint("m", i) {
			t.Fatalf("alice[%d] = %+v", i, a[i])
		}
		if b[i].topic != "/group/g1" || b[i].payload != fmt.Sprint("m", i) {
			t.Fatalf("bob[%d] = %+v", i, b[i])
		}
	}
	// The same message delivered twice (a fanout retry) reaches a session once.
	m := &message.Message{ID: 4242, Kind: message.Group, To: "g1", QoS: 1, Payload: []byte("dup")}
	e.srv.Deliver(m, []string{"alice", "bob"})
	e.srv.Deliver(m, []string{"alice", "bob"})
	alice.waitMsgs(t, 4)
	bob.waitMsgs(t, 4)
	// bob leaves g1: his /group/g1 subscription no longer delivers.
	e.acl.setMember("g1", "bob", false)
	e.srv.Deliver(&message.Message{ID: 4243, Kind: message.Group, To: "g1", QoS: 1, Payload: []byte("x")}, []string{"alice", "bob"})
	alice.waitMsgs(t, 5)
	if len(bob.got()) != 4 {
		t.Fatalf("bob got a message after leaving: %v", bob.got())
	}
}

func TestPersistentSessionReplay(t *testing.T) {
	e := newEnv(t, nil)
	r := connectRaw(t, e, "alice", "alice-p", false)
	if codes := r.subscribe(1, "/private/alice/#"); codes[0] != 1 {
		t.Fatalf("suback %v", codes)
	}
	r.disconnect()
	r.expectClosed()
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 0 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})

	dev := newPaho(t, e, "d1", "dev", true)
	for i := range 5 {
		dev.pub(t, "/group/g1", 1, fmt.Sprint("q", i))
	}
	dev.pub(t, "/group/g1", 0, "qos0 is not queued offline")
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n := e.fwd.count(); n != 6 {
			return fmt.Errorf("%d forwarded", n)
		}
		return nil
	})

	r2 := dialRaw(t, e.addr)
	r2.send(connectPacket("alice", "tok-alice", "alice-p", false, 60))
	if !r2.expectConnack(0) {
		t.Fatal("session present = 0")
	}
	for i := range 5 {
		p := r2.readPublish()
		if string(p.Topic) != "/private/alice/group/g1" || string(p.Payload) != fmt.Sprint("q", i) || p.QoS != 1 {
			t.Fatalf("replay %d: %s %q qos %d", i, p.Topic, p.Payload, p.QoS)
		}
		r2.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	}
	// then new messages
	dev.pub(t, "/group/g1", 1, "live")
	if p := r2.readPublish(); string(p.Payload) != "live" {
		t.Fatalf("got %q after replay", p.Payload)
	}

	// A clean-session connect with the same client id discards the state.
	r2.Abort()
	r3 := dialRaw(t, e.addr)
	r3.send(connectPacket("alice", "tok-alice", "alice-p", true, 60))
	if r3.expectConnack(0) {
		t.Fatal("clean session got session present = 1")
	}
}

func TestPersistentSessionWithPaho(t *testing.T) {
	e := newEnv(t, nil)
	p := &pahoClient{}
	o := pahoOpts(e, "alice", "tok-alice", "alice-paho", false).SetDefaultPublishHandler(p.handler)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := c.Subscribe("/private/alice/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c.Disconnect(50)
	dev := newPaho(t, e, "d1", "dev", true)
	for i := range 5 {
		dev.pub(t, "/group/g1", 1, fmt.Sprint("p", i))
	}
	c = mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	if !tok.(*mqtt.ConnectToken).SessionPresent() {
		t.Fatal("session present = 0")
	}
	got := p.waitMsgs(t, 5)
	for i, m := range got {
		if m.payload != fmt.Sprint("p", i) {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
}

func TestQueueOverflowDropsOldest(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxQueued = 3 })
	r := connectRaw(t, e, "alice", "a", false)
	r.subscribe(1, "/private/alice/#")
	r.Abort()
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 0 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	for i := range 5 {
		e.srv.Deliver(&message.Message{ID: uint64(100 + i), Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte(fmt.Sprint(i))}, []string{"alice"})
	}
	if d := e.srv.Stats().QueueDropped; d != 2 {
		t.Fatalf("dropped %d, want 2", d)
	}
	r2 := connectRaw(t, e, "alice", "a", false)
	for i := 2; i < 5; i++ {
		p := r2.readPublish()
		if string(p.Payload) != fmt.Sprint(i) || string(p.Topic) != "/private/alice" {
			t.Fatalf("got %s %q, want %d", p.Topic, p.Payload, i)
		}
		r2.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	}
	r2.expectQuiet()
}

func TestInflightWindowAndPacketIDs(t *testing.T) {
	// Unacked QoS 1 messages never exceed the window and their ids are
	// never reused while unacked.
	e := newEnv(t, func(c *Config) { c.MaxInflight = 4 })
	r := connectRaw(t, e, "alice", "a", true)
	r.subscribe(1, "/private/alice/#")
	for i := range 10 {
		e.srv.Deliver(&message.Message{ID: uint64(1000 + i), Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte(fmt.Sprint(i))}, []string{"alice"})
	}
	unacked := map[uint16]bool{}
	next := 0
	readN := func(n int) []packet.Publish {
		var out []packet.Publish
		for range n {
			p := r.readPublish()
			if unacked[p.PacketID] {
				t.Fatalf("packet id %d reused while unacked", p.PacketID)
			}
			if string(p.Payload) != fmt.Sprint(next) {
				t.Fatalf("got %q want %d", p.Payload, next)
			}
			next++
			unacked[p.PacketID] = true
			out = append(out, p)
		}
		return out
	}
	first := readN(4)
	r.expectQuiet()
	// ack two: two more come
	for _, p := range first[:2] {
		r.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
		delete(unacked, p.PacketID)
	}
	more := readN(2)
	r.expectQuiet()
	for _, p := range append(first[2:], more...) {
		r.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
		delete(unacked, p.PacketID)
	}
	readN(4)
}

func TestRetryRedelivers(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RetryInterval = 100 * time.Millisecond })
	r := connectRaw(t, e, "alice", "a", true)
	r.subscribe(1, "/private/alice")
	e.srv.Deliver(&message.Message{ID: 77, Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte("x")}, []string{"alice"})
	p1 := r.readPublish()
	p2 := r.readPublish()
	if !p2.Dup || p2.PacketID != p1.PacketID || string(p2.Payload) != "x" {
		t.Fatalf("resend %+v after %+v", p2, p1)
	}
	r.send(packet.AppendAck(nil, packet.PUBACK, p1.PacketID))
	// A resend is due RetryInterval after the last send, driven by a
	// timer no packet can mark: none within three intervals.
	r.expectNothing(300 * time.Millisecond)
}

func TestTakeoverSamePrincipal(t *testing.T) {
	e := newEnv(t, nil)
	bob := newPaho(t, e, "bob", "bob-watch", true)
	bob.sub(t, "/private/bob/#", 1)

	// alice's first connection has a will to /group/g1.
	old := dialRaw(t, e.addr)
	c := packet.Connect{ClientID: "alice-1", CleanSession: false, KeepAlive: 60, Username: "alice",
		Password: []byte("tok-alice"), WillTopic: "/group/g1", WillPayload: []byte("alice gone"), WillQoS: 1}
	old.send(packet.AppendConnect(nil, &c))
	old.expectConnack(0)
	old.subscribe(1, "/private/alice/#")

	nw := dialRaw(t, e.addr)
	nw.send(connectPacket("alice", "tok-alice", "alice-1", false, 60))
	if !nw.expectConnack(0) {
		t.Fatal("takeover: session present = 0")
	}
	old.expectClosed()
	// The will of the old connection is published ([MQTT-3.1.4-2]).
	got := bob.waitMsgs(t, 1)
	if got[0].topic != "/private/bob/group/g1" || got[0].payload != "alice gone" {
		t.Fatalf("bob got %+v", got[0])
	}
	// The new connection has the session (subscription kept) and its late
	// close of the old one did not remove it.
	if p := nw.readPublish(); string(p.Payload) != "alice gone" || string(p.Topic) != "/private/alice/group/g1" {
		t.Fatalf("got %s %q", p.Topic, p.Payload)
	}
	bob.pub(t, "/private/alice", 1, "still there?")
	if p := nw.readPublish(); string(p.Payload) != "still there?" {
		t.Fatalf("got %q", p.Payload)
	}
	if s := e.srv.Stats(); s.Connections != 2 || s.Sessions != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTakeoverFlapping(t *testing.T) {
	// Many takeovers in a row leave one session and no leaked
	// connections.
	e := newEnv(t, nil)
	var last *rawClient
	for range 20 {
		r := dialRaw(t, e.addr)
		r.send(connectPacket("alice", "tok-alice", "flap", false, 60))
		r.expectConnack(0)
		last = r
	}
	last.subscribe(1, "/private/alice")
	testutil.CheckFor(t, 3*time.Second, 10*time.Millisecond, func() error {
		if s := e.srv.Stats(); s.Connections != 1 || s.Sessions != 1 {
			return fmt.Errorf("stats %+v", s)
		}
		return nil
	})
	e.srv.Deliver(&message.Message{ID: 5, Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte("ok")}, []string{"alice"})
	if p := last.readPublish(); string(p.Payload) != "ok" {
		t.Fatal("last connection lost its session")
	}
}

func TestClientIDNamespacedByPrincipal(t *testing.T) {
	// bob using alice's client id gets his own session.
	e := newEnv(t, nil)
	a := connectRaw(t, e, "alice", "shared-id", false)
	a.subscribe(1, "/private/alice/#")
	b := dialRaw(t, e.addr)
	b.send(connectPacket("bob", "tok-bob", "shared-id", false, 60))
	if b.expectConnack(0) {
		t.Fatal("bob got session present = 1 for alice's client id")
	}
	// alice is not disconnected and keeps receiving; bob gets nothing of hers.
	e.srv.Deliver(&message.Message{ID: 9, Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte("for alice")}, []string{"alice"})
	if p := a.readPublish(); string(p.Payload) != "for alice" {
		t.Fatal("alice lost her session")
	}
	b.expectQuiet()
	if codes := b.subscribe(1, "/private/alice/#"); codes[0] != 0x80 {
		t.Fatal("bob may subscribe to alice's tree")
	}
}

func TestRevokeDisconnects(t *testing.T) {
	e := newEnv(t, nil)
	r1 := connectRaw(t, e, "alice", "a1", true)
	r2 := connectRaw(t, e, "alice", "a2", true)
	other := connectRaw(t, e, "bob", "b1", true)
	e.srv.Revoke(tokenHash("tok-alice"))
	r1.expectClosed()
	r2.expectClosed()
	other.ping()
	other.mustRead(packet.PINGRESP)
}

func TestTokenExpiryDisconnects(t *testing.T) {
	e := newEnv(t, nil)
	e.auth.addIdentity("short", Identity{ID: "alice", TokenHash: tokenHash("short"), Expires: time.Now().Add(300 * time.Millisecond)})
	e.auth.addIdentity("expired", Identity{ID: "alice", TokenHash: tokenHash("expired"), Expires: time.Now().Add(-time.Second)})
	r := dialRaw(t, e.addr)
	r.send(connectPacket("alice", "short", "a", true, 60))
	r.expectConnack(0)
	r.expectClosed()
	r2 := dialRaw(t, e.addr)
	r2.send(connectPacket("alice", "expired", "a", true, 60))
	r2.expectConnack(packet.ConnBadCredentials)
	r2.expectClosed()
}

func TestAuthTopic(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthTopic = true })
	type reply struct {
		OK           bool   `json:"ok"`
		ID           string `json:"id"`
		PrivateTopic string `json:"private_topic"`
		Error        string `json:"error"`
	}
	login := func(topic, payload string) (*rawClient, packet.Publish, reply) {
		r := dialRaw(t, e.addr)
		r.send(connectPacket("", "", "proto-client", true, 60))
		r.expectConnack(0)
		r.publish(1, 7, topic, payload)
		var p packet.Publish
		for {
			h, body, err := r.read(5 * time.Second)
			if err != nil {
				t.Fatalf("login via %s: %v", topic, err)
			}
			if h>>4 == packet.PUBACK {
				continue
			}
			if err := packet.DecodePublish(h, body, packet.V311, &p); err != nil {
				t.Fatal(err)
			}
			break
		}
		var rep reply
		if err := json.Unmarshal(p.Payload, &rep); err != nil {
			t.Fatalf("reply %q: %v", p.Payload, err)
		}
		return r, p, rep
	}
	for _, c := range []struct{ topic, payload string }{
		{"/service/auth", "tok-alice"},
		{"service/auth", "tok-alice"},
		{"/service/auth/tok-alice", ""},
	} {
		r, p, rep := login(c.topic, c.payload)
		if string(p.Topic) != c.topic || !rep.OK || rep.ID != "alice" || rep.PrivateTopic != "/private/alice" {
			t.Fatalf("%s: reply on %s: %+v", c.topic, p.Topic, rep)
		}
		if codes := r.subscribe(3, "/private/alice/#", "/private/bob"); codes[0] != 1 || codes[1] != 0x80 {
			t.Fatalf("suback %v", codes)
		}
		e.srv.Deliver(&message.Message{ID: uint64(len(c.topic)), Kind: message.Direct, To: "alice", Payload: []byte("x")}, []string{"alice"})
		if p := r.readPublish(); string(p.Topic) != "/private/alice" {
			t.Fatalf("delivery on %s", p.Topic)
		}
		r.Abort()
	}

	// bad token: ok=false on the same topic, then close
	r, p, rep := login("/service/auth", "nope")
	if rep.OK || rep.Error == "" || string(p.Topic) != "/service/auth" {
		t.Fatalf("bad token reply %+v on %s", rep, p.Topic)
	}
	r.expectClosed()

	// anything else first: ok=false on /service/auth, then close
	r = dialRaw(t, e.addr)
	r.send(connectPacket("", "", "x", true, 60))
	r.expectConnack(0)
	s := packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{{Filter: "/private/alice/#", QoS: 1}}}
	r.send(packet.AppendSubscribe(nil, &s))
	p = r.readPublish()
	if string(p.Topic) != "/service/auth" || !strings.Contains(string(p.Payload), `"ok":false`) {
		t.Fatalf("got %s %q", p.Topic, p.Payload)
	}
	r.expectClosed()

	// a publish to another topic first
	r = dialRaw(t, e.addr)
	r.send(connectPacket("", "", "x", true, 60))
	r.expectConnack(0)
	r.publish(0, 0, "/group/g1", "sneaky")
	p = r.readPublish()
	if string(p.Topic) != "/service/auth" || !strings.Contains(string(p.Payload), `"ok":false`) {
		t.Fatalf("got %s %q", p.Topic, p.Payload)
	}
	r.expectClosed()
	if e.fwd.count() != 0 {
		t.Fatal("an unauthenticated publish was forwarded")
	}

	// CONNECT credentials still work in auth-topic mode
	connectRaw(t, e, "bob", "b", true)

	// and the auth-topic login with paho: connect without credentials,
	// publish the token to service/auth (no leading '/').
	pc := &pahoClient{}
	o := pahoOpts(e, "", "", "paho-proto", true).SetDefaultPublishHandler(pc.handler)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Publish("service/auth", 0, false, "tok-carol"); !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("publish timeout")
	}
	got := pc.waitMsgs(t, 1)
	if got[0].topic != "service/auth" || !strings.Contains(got[0].payload, `"id":"carol"`) {
		t.Fatalf("got %+v", got[0])
	}
}

func TestAuthTopicDeadline(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthTopic = true; c.ConnectTimeout = 200 * time.Millisecond })
	before := badInputCounts(e)
	r := dialRaw(t, e.addr)
	r.send(connectPacket("", "", "x", true, 60))
	r.expectConnack(0)
	start := time.Now()
	r.expectClosed()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v", d)
	}
	waitBadInput(t, e, before, reasonTimeout)
}

func TestPanicClosesOnlyThatConnection(t *testing.T) {
	e := newEnv(t, nil)
	hook := func(header byte, body []byte) {
		if header>>4 == packet.PUBLISH && strings.Contains(string(body), "boom") {
			panic("test panic")
		}
	}
	e.srv.hookPacket.Store(&hook)
	good := connectRaw(t, e, "bob", "b", true)
	good.subscribe(1, "/private/bob/#")
	bad := connectRaw(t, e, "alice", "a", true)
	bad.publish(0, 0, "/group/g1", "boom")
	bad.expectClosed()
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Panics; n != 1 {
			return fmt.Errorf("%d panics", n)
		}
		return nil
	})
	// others unaffected
	d := connectRaw(t, e, "d1", "d", true)
	d.publish(1, 1, "/group/g1", "fine")
	d.mustRead(packet.PUBACK)
	if p := good.readPublish(); string(p.Payload) != "fine" {
		t.Fatalf("got %q", p.Payload)
	}
}

func TestKeepAliveTimeout(t *testing.T) {
	e := newEnv(t, nil)
	before := badInputCounts(e)
	r := dialRaw(t, e.addr)
	r.send(connectPacket("alice", "tok-alice", "ka", true, 1))
	r.expectConnack(0)
	start := time.Now()
	r.expectClosed()
	if d := time.Since(start); d < time.Second || d > 3*time.Second {
		t.Fatalf("closed after %v, want about 1.5s", d)
	}
	waitBadInput(t, e, before, reasonTimeout) // a missed keepalive is a timeout refusal
}

func TestWillPublishedOnAbruptClose(t *testing.T) {
	e := newEnv(t, nil)
	bob := connectRaw(t, e, "bob", "b", true)
	bob.subscribe(1, "/private/bob/#")
	r := dialRaw(t, e.addr)
	c := packet.Connect{ClientID: "w", CleanSession: true, KeepAlive: 60, Username: "alice",
		Password: []byte("tok-alice"), WillTopic: "/private/bob", WillPayload: []byte("bye"), WillQoS: 1, WillRetain: true}
	r.send(packet.AppendConnect(nil, &c))
	r.expectConnack(0)
	r.Abort()
	p := bob.readPublish()
	if string(p.Topic) != "/private/bob" || string(p.Payload) != "bye" || p.Retain {
		t.Fatalf("will %s %q retain %v", p.Topic, p.Payload, p.Retain)
	}
	bob.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))

	forwarded := e.fwd.count()

	// ACL changed before the close: no will (checked again at publish,
	// and counted when refused).
	willACL := func() uint64 { return e.srv.m.refusals[index(allReasons, reasonWillACL)].Load() }
	refused := willACL()
	r = dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, &c))
	r.expectConnack(0)
	e.acl.setMember("g1", "alice", false)
	r.Abort()
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if willACL() != refused+1 {
			return fmt.Errorf("will_acl refusals %d, want %d", willACL(), refused+1)
		}
		return nil
	})
	e.acl.setMember("g1", "alice", true)

	// DISCONNECT: no will. Close returns once every connection's closed
	// has run, so nothing forwarded by then means none ever will be.
	r = dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, &c))
	r.expectConnack(0)
	r.disconnect()
	r.expectClosed()
	e.srv.Close()
	if n := e.fwd.count(); n != forwarded {
		t.Fatalf("%d messages forwarded after the will, want none", n-forwarded)
	}
	bob.expectClosed() // by Close, with nothing before
}

func TestMaxConnections(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxConnections = 1 })
	connectRaw(t, e, "alice", "a", true)
	r := dialRaw(t, e.addr)
	r.send(connectPacket("bob", "tok-bob", "b", true, 60))
	r.expectConnack(packet.ConnServerUnavailable)
	r.expectClosed()
}

func TestMaxSessionsPerPrincipal(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSessionsPerPrincipal = 2 })
	a1 := connectRaw(t, e, "alice", "s1", false)
	connectRaw(t, e, "alice", "s2", true)
	r := dialRaw(t, e.addr)
	r.send(connectPacket("alice", "tok-alice", "s3", true, 60))
	r.expectConnack(packet.ConnServerUnavailable)
	// an offline persistent session is evicted to make room
	a1.Abort()
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 1 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	connectRaw(t, e, "alice", "s3", true)
	if s := e.srv.Stats(); s.Sessions != 2 {
		t.Fatalf("sessions %d", s.Sessions)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionExpiry = 100 * time.Millisecond })
	r := connectRaw(t, e, "alice", "p", false)
	r.Abort()
	testutil.CheckFor(t, 3*time.Second, 10*time.Millisecond, func() error {
		if s := e.srv.Stats(); s.Sessions != 0 {
			return fmt.Errorf("sessions %d", s.Sessions)
		}
		return nil
	})
	r2 := dialRaw(t, e.addr)
	r2.send(connectPacket("alice", "tok-alice", "p", false, 60))
	if r2.expectConnack(0) {
		t.Fatal("expired session still present")
	}
}

func TestQueuedReplayRechecksMembership(t *testing.T) {
	// Group messages queued for an offline session are not replayed
	// after the member left the group.
	e := newEnv(t, nil)
	r := connectRaw(t, e, "alice", "p", false)
	r.subscribe(1, "/private/alice/#")
	r.Abort()
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 0 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	e.srv.Deliver(&message.Message{ID: 1, Kind: message.Group, To: "g1", QoS: 1, Payload: []byte("g")}, []string{"alice"})
	e.srv.Deliver(&message.Message{ID: 2, Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte("d")}, []string{"alice"})
	e.acl.setMember("g1", "alice", false)
	r2 := connectRaw(t, e, "alice", "p", false)
	if p := r2.readPublish(); string(p.Payload) != "d" {
		t.Fatalf("got %q", p.Payload)
	}
	r2.expectQuiet()
}

func TestForwardFailure(t *testing.T) {
	e := newEnv(t, nil)
	r := connectRaw(t, e, "d1", "d", true)
	e.fwd.fail.Store(true)
	r.publish(0, 0, "/group/g1", "lost qos0") // dropped, connection stays
	r.ping()
	r.mustRead(packet.PINGRESP)
	r.publish(1, 5, "/group/g1", "qos1") // no PUBACK: closed
	r.expectClosed()
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *Config) { c.Registerer = reg })
	connectRaw(t, e, "alice", "a", true)
	r := dialRaw(t, e.addr)
	r.send(connectPacket("alice", "wrong", "x", true, 60))
	r.expectConnack(packet.ConnBadCredentials)
	value := func(name, label string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
					continue
				}
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
		return -1
	}
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if v := value("pushring_mqtt_connections", ""); v != 1 {
			return fmt.Errorf("gauge %v", v)
		}
		return nil
	})
	if v := value("pushring_mqtt_connects_total", resultBadCredentials); v != 1 {
		t.Fatalf("bad_credentials %v", v)
	}
	for _, name := range []string{"pushring_messages_in_total", "pushring_deliveries_total",
		"pushring_mqtt_refusals_total", "pushring_queue_dropped_total", "pushring_mqtt_panics_total"} {
		if value(name, "") < 0 {
			t.Errorf("%s not registered", name)
		}
	}
}

func TestCloseWaitsAndRefusesServe(t *testing.T) {
	e := newEnv(t, nil)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := tryConnect(e.addr, "alice", fmt.Sprint("c", i), i%2 == 0)
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { c.Abort() })
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(e.srv.Addrs()) != 1 {
		t.Fatal("Addrs")
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if s := e.srv.Stats(); s.Connections != 0 || s.Sessions != 0 {
		t.Fatalf("after Close: %+v", s)
	}
}

func TestResendBoundedByOutboundBacklog(t *testing.T) {
	// Unacked messages far over MaxOutboundBytes are resent on
	// reconnect after the CONNACK, as fast as the socket drains, instead
	// of all at once over the hard backlog limit (which closed every
	// reconnect for good).
	e := newEnv(t, func(c *Config) { c.MaxOutboundBytes = 4096 })
	r := connectRaw(t, e, "alice", "a", false)
	r.subscribe(1, "/private/alice/#")
	payload := func(i int) string { return fmt.Sprintf("%04d", i) + strings.Repeat("x", 996) }
	for i := range 32 {
		e.srv.Deliver(&message.Message{ID: uint64(500 + i), Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte(payload(i))}, []string{"alice"})
	}
	for i := range 32 {
		if p := r.readPublish(); string(p.Payload) != payload(i) {
			t.Fatalf("message %d: got %.8q", i, p.Payload)
		}
	}
	r.Abort() // nothing acknowledged
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 0 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	for round := range 2 { // and again: the session is not locked out
		r2 := dialRaw(t, e.addr)
		r2.send(connectPacket("alice", "tok-alice", "a", false, 60))
		if !r2.expectConnack(0) {
			t.Fatalf("round %d: session not present", round)
		}
		for i := range 32 {
			p := r2.readPublish()
			if string(p.Payload) != payload(i) || !p.Dup {
				t.Fatalf("round %d message %d: got %.8q dup %v", round, i, p.Payload, p.Dup)
			}
		}
		// The replay is paced by the socket draining, so no packet marks
		// its end: nothing more within a short window.
		r2.expectNothing(50 * time.Millisecond)
		r2.Abort()
		testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
			if n := e.srv.Stats().Connections; n != 0 {
				return fmt.Errorf("%d connections", n)
			}
			return nil
		})
	}
}

func TestRevokeDuringLogin(t *testing.T) {
	// A token revoked after the Authenticator accepted it but
	// before the connection was registered is refused, not missed.
	for _, authTopic := range []bool{false, true} {
		t.Run(fmt.Sprint("authTopic=", authTopic), func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.AuthTopic = authTopic })
			revoke := func(id Identity) {
				if id.ID == "alice" {
					e.srv.Revoke(id.TokenHash)
				}
			}
			e.auth.onAuth.Store(&revoke)
			r := dialRaw(t, e.addr)
			if authTopic {
				r.send(anonConnect("p"))
				r.expectConnack(0)
				r.publish(0, 0, "/service/auth", "tok-alice")
				p := r.readPublish()
				if !strings.Contains(string(p.Payload), `"ok":false`) {
					t.Fatalf("auth reply %s", p.Payload)
				}
			} else {
				r.send(connectPacket("alice", "tok-alice", "a", true, 60))
				r.expectConnack(packet.ConnBadCredentials)
			}
			r.expectClosed()
			testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
				if n := e.srv.Stats().Connections; n != 0 {
					return fmt.Errorf("%d connections", n)
				}
				return nil
			})
			// other tokens are unaffected
			b := connectRaw(t, e, "bob", "b", true)
			b.ping()
			b.mustRead(packet.PINGRESP)
		})
	}
}

func TestRevokedSetPruned(t *testing.T) {
	e := newEnv(t, nil)
	for i := range maxRevoked + 10 {
		e.srv.Revoke(fmt.Sprint("h", i))
	}
	e.srv.mu.RLock()
	n, q := len(e.srv.revoked), len(e.srv.revokedQ)
	first := e.srv.isRevokedLocked(revokeKey{s: "h0"})
	last := e.srv.isRevokedLocked(revokeKey{s: fmt.Sprint("h", maxRevoked+9)})
	e.srv.mu.RUnlock()
	if n != maxRevoked || q != maxRevoked || first || !last {
		t.Fatalf("revoked set %d/%d entries, oldest kept %v, newest kept %v", n, q, first, last)
	}
	e.srv.mu.Lock()
	e.srv.pruneRevokedLocked(time.Now().Add(revokedTTL))
	n, q = len(e.srv.revoked), len(e.srv.revokedQ)
	e.srv.mu.Unlock()
	if n != 0 || q != 0 {
		t.Fatalf("after a day: %d/%d entries", n, q)
	}
}

func TestQueueBoundedByBytes(t *testing.T) {
	// An offline session's queue is bounded in payload bytes
	// too (MaxQueuedBytes); the oldest are dropped and counted.
	e := newEnv(t, func(c *Config) { c.MaxQueuedBytes = 3000 })
	r := connectRaw(t, e, "alice", "a", false)
	r.subscribe(1, "/private/alice/#")
	r.Abort()
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 0 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	payload := func(i int) string { return fmt.Sprintf("%04d", i) + strings.Repeat("x", 996) }
	for i := range 10 {
		e.srv.Deliver(&message.Message{ID: uint64(700 + i), Kind: message.Direct, To: "alice", QoS: 1, Payload: []byte(payload(i))}, []string{"alice"})
	}
	if d := e.srv.Stats().QueueDropped; d != 7 {
		t.Fatalf("dropped %d, want 7", d)
	}
	r2 := connectRaw(t, e, "alice", "a", false)
	for i := 7; i < 10; i++ {
		p := r2.readPublish()
		if string(p.Payload) != payload(i) {
			t.Fatalf("got %.8q, want message %d", p.Payload, i)
		}
		r2.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	}
	r2.expectQuiet()
}

func TestReplayDoesNotHoldServerLock(t *testing.T) {
	// A reconnect's replay runs under the session's lock only;
	// while it is stuck (here in an ACL call, which the contract says
	// never blocks), other clients still log in and other principals
	// still get messages.
	e := newEnv(t, nil)
	r := connectRaw(t, e, "alice", "a", false)
	r.subscribe(1, "/group/g1")
	r.Abort()
	testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 0 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	e.srv.Deliver(&message.Message{ID: 900, Kind: message.Group, To: "g1", QoS: 1, Payload: []byte("queued")}, []string{"alice"})

	entered := make(chan struct{})
	gate := make(chan struct{})
	var once, release sync.Once
	t.Cleanup(func() { release.Do(func() { close(gate) }) })
	hook := func(gid, id string) {
		if id == "alice" {
			once.Do(func() { close(entered) })
			<-gate
		}
	}
	e.acl.onIsMember.Store(&hook)
	r2 := dialRaw(t, e.addr)
	r2.send(connectPacket("alice", "tok-alice", "a", false, 60))
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("replay did not check the ACL")
	}
	// alice's replay is stuck; bob logs in and gets a message meanwhile
	b := dialRaw(t, e.addr)
	b.send(connectPacket("bob", "tok-bob", "b", true, 60))
	h, _, err := b.read(2 * time.Second)
	if err != nil || h>>4 != packet.CONNACK {
		t.Fatalf("bob's CONNECT while alice's replay runs: %#x %v", h, err)
	}
	b.subscribe(1, "/private/bob")
	e.srv.Deliver(&message.Message{ID: 901, Kind: message.Direct, To: "bob", QoS: 1, Payload: []byte("hi")}, []string{"bob"})
	if p := b.readPublish(); string(p.Payload) != "hi" {
		t.Fatalf("bob got %q", p.Payload)
	}
	release.Do(func() { close(gate) })
	r2.expectConnack(0)
	if p := r2.readPublish(); string(p.Payload) != "queued" {
		t.Fatalf("alice got %q", p.Payload)
	}
}

func TestInflightResendRechecksMembership(t *testing.T) {
	// An unacknowledged delivery on /group/<gid> is not
	// sent again, by the retry timer or on reconnect, once the member has
	// left the group; a direct message inflight beside it still is.
	deliverBoth := func(t *testing.T, e *env, r *rawClient) {
		r.subscribe(1, "/group/g1", "/private/alice")
		e.srv.Deliver(&message.Message{ID: 1, Kind: message.Group, From: "d1", To: "g1", QoS: 1, Payload: []byte("g")}, []string{"alice"})
		e.srv.Deliver(&message.Message{ID: 2, Kind: message.Direct, From: "d1", To: "alice", QoS: 1, Payload: []byte("d")}, []string{"alice"})
		// both are inflight now (written to the socket inside Deliver)
		e.acl.setMember("g1", "alice", false)
		if p := r.readPublish(); string(p.Topic) != "/group/g1" || string(p.Payload) != "g" || p.Dup {
			t.Fatalf("first %s %q dup %v", p.Topic, p.Payload, p.Dup)
		}
		if p := r.readPublish(); string(p.Payload) != "d" || p.Dup {
			t.Fatalf("second %s %q dup %v", p.Topic, p.Payload, p.Dup)
		}
	}
	t.Run("retry", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.RetryInterval = 300 * time.Millisecond })
		r := connectRaw(t, e, "alice", "a", true)
		deliverBoth(t, e, r)
		p := r.readPublish()
		if string(p.Payload) != "d" || !p.Dup {
			t.Fatalf("resent %s %q dup %v", p.Topic, p.Payload, p.Dup)
		}
		r.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
		// The retry timer no packet can mark: nothing in two intervals.
		r.expectNothing(700 * time.Millisecond)
	})
	t.Run("reconnect", func(t *testing.T) {
		e := newEnv(t, nil)
		r := connectRaw(t, e, "alice", "a", false)
		deliverBoth(t, e, r)
		r.Abort()
		testutil.CheckFor(t, 2*time.Second, 5*time.Millisecond, func() error {
			if n := e.srv.Stats().Connections; n != 0 {
				return fmt.Errorf("%d connections", n)
			}
			return nil
		})
		r2 := connectRaw(t, e, "alice", "a", false)
		p := r2.readPublish()
		if string(p.Payload) != "d" || !p.Dup {
			t.Fatalf("resent %s %q dup %v", p.Topic, p.Payload, p.Dup)
		}
		r2.expectQuiet()
	})
}
