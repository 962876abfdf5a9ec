package router

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// memRetainer keeps retained messages in a map. hold keeps answers until
// release; fail answers every Retain with that error.
type memRetainer struct {
	mu   sync.Mutex
	msgs map[string]*message.Message
	hold bool
	held []func()
	fail error
	puts int
}

var errRetainFull = errors.New("retained store full")

func newMemRetainer() *memRetainer { return &memRetainer{msgs: map[string]*message.Message{}} }

func (r *memRetainer) Retain(m *message.Message, done func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.puts++
	if r.fail != nil {
		err := r.fail
		go done(err)
		return
	}
	if len(m.Payload) == 0 {
		delete(r.msgs, m.To)
	} else {
		c := *m
		c.Payload = slices.Clone(m.Payload)
		c.Props = slices.Clone(m.Props)
		r.msgs[m.To] = &c
	}
	if r.hold {
		r.held = append(r.held, func() { done(nil) })
		return
	}
	done(nil)
}

func (r *memRetainer) Retained(gid string) *message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[gid]
}

func (r *memRetainer) putCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.puts
}

func (r *memRetainer) IsFull(err error) bool { return errors.Is(err, errRetainFull) }

func (r *memRetainer) release() {
	r.mu.Lock()
	held := r.held
	r.held, r.hold = nil, false
	r.mu.Unlock()
	for _, f := range held {
		f()
	}
}

func (r *memRetainer) payload(gid string) string {
	if m := r.Retained(gid); m != nil {
		return string(m.Payload)
	}
	return ""
}

// waitRetained waits until gid's retained payload is want.
func (r *memRetainer) waitRetained(t *testing.T, gid, want string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if got := r.payload(gid); got != want {
			return fmt.Errorf("retained %q, want %q", got, want)
		}
		return nil
	})
}

func (a *memACL) memberOf(id string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for gid, m := range a.members {
		if m[id] {
			out = append(out, gid)
		}
	}
	slices.Sort(out)
	return out
}

// newRetainEnv is newEnvWith (wrap may be nil) with a memRetainer.
func newRetainEnv(t *testing.T, wrap func(*loopFwd) Forwarder) (*env, *memRetainer) {
	r := newMemRetainer()
	e := newEnvSetup(t, nil, wrap, func(e *env) { e.srv.SetRetained(r, e.acl.memberOf) })
	return e, r
}

func (r *rawClient) publishRetained(qos byte, pid uint16, topic, payload string) {
	r.t.Helper()
	r.send(packet.AppendPublish(nil, qos, false, true, pid, []byte(payload), topic))
}

// A retained group message reaches a member subscribing to the group
// topic, with the retain flag, after the SUBACK and at every SUBSCRIBE;
// the live copy has no retain flag; a newer one replaces it; an empty one
// clears it and is delivered as any message.
func TestRetainedGroupTopic(t *testing.T) {
	e, ret := newRetainEnv(t, nil)
	d1 := connectRaw(t, e, "d1", "d1", true)
	alice := connectRaw(t, e, "alice", "a", true)
	alice.subscribe(1, "/group/g1")

	d1.publishRetained(1, 1, "/group/g1", "on")
	if pid := readPuback(t, d1); pid != 1 {
		t.Fatalf("PUBACK %d", pid)
	}
	if ret.payload("g1") != "on" {
		t.Fatalf("retained %q after PUBACK", ret.payload("g1"))
	}
	if p := alice.readPublish(); p.Retain || string(p.Payload) != "on" {
		t.Fatalf("live copy: retain %v %q", p.Retain, p.Payload)
	}
	alice.sendAck(packet.PUBACK, 1)

	bob := connectRaw(t, e, "bob", "b", true)
	for i := range 2 { // at every SUBSCRIBE
		if codes := bob.subscribe(uint16(i+1), "/group/g1"); codes[0] != 1 {
			t.Fatalf("SUBACK %v", codes)
		}
		p := bob.readPublish()
		if !p.Retain || string(p.Payload) != "on" || string(p.Topic) != "/group/g1" || p.QoS != 1 {
			t.Fatalf("retained on SUBSCRIBE %d: %+v", i, p)
		}
		bob.sendAck(packet.PUBACK, p.PacketID)
	}

	d1.publishRetained(0, 0, "/group/g1", "off")
	ret.waitRetained(t, "g1", "off")
	d1.publishRetained(1, 2, "/group/g1", "")
	readPuback(t, d1)
	if ret.payload("g1") != "" {
		t.Fatal("an empty retained message did not clear")
	}
	bob.readPublish() // "off", live
	if p := bob.readPublish(); len(p.Payload) != 0 || p.Retain {
		t.Fatalf("the clearing message live: %+v", p)
	}
	carol := connectRaw(t, e, "carol", "c", true)
	if codes := carol.subscribe(1, "/group/g1"); codes[0] != packet.SubackFailure {
		t.Fatalf("non-member SUBACK %v", codes)
	}
	bob.sendAck(packet.PUBACK, 2)
	if codes := bob.subscribe(3, "/group/g1"); codes[0] != 1 {
		t.Fatal(codes)
	}
	bob.expectQuiet() // cleared: nothing on SUBSCRIBE
	carol.expectQuiet()
}

func (r *rawClient) sendAck(typ byte, pid uint16) {
	r.t.Helper()
	r.send(packet.AppendAck(nil, typ, pid))
}

// A new session's private tree gets the retained message of each of its
// groups the filter matches, once; a resumed session gets none (it has
// its backlog); a direct message's retain flag is ignored.
func TestRetainedPrivateTree(t *testing.T) {
	e, ret := newRetainEnv(t, nil)
	e.acl.setMember("g2", "alice", true)
	d1 := connectRaw(t, e, "d1", "d1", true)
	d1.publishRetained(1, 1, "/group/g1", "g1 state")
	readPuback(t, d1)
	ret.mu.Lock()
	ret.msgs["g2"] = &message.Message{ID: 77, Kind: message.Group, From: "x", To: "g2", QoS: 0, Payload: []byte("g2 state")}
	ret.mu.Unlock()
	alice := connectRaw(t, e, "alice", "a", false)
	alice.subscribe(1, "/private/alice/#")
	got := map[string]packet.Publish{}
	for range 2 {
		p := alice.readPublish()
		got[string(p.Topic)] = p
		if p.QoS == 1 {
			alice.sendAck(packet.PUBACK, p.PacketID)
		}
	}
	if p := got["/private/alice/group/g1"]; !p.Retain || string(p.Payload) != "g1 state" || p.QoS != 1 {
		t.Fatalf("g1: %+v", p)
	}
	if p := got["/private/alice/group/g2"]; !p.Retain || string(p.Payload) != "g2 state" || p.QoS != 0 {
		t.Fatalf("g2: %+v", p)
	}
	// Another filter over the same topics: already sent.
	alice.subscribe(2, "/private/alice/group/+")
	alice.expectQuiet()
	alice.disconnect()
	alice.expectClosed()

	// Resumed: no retained messages on SUBSCRIBE.
	alice = connectRaw(t, e, "alice", "a", false)
	alice.subscribe(3, "/private/alice/group/g1")
	alice.expectQuiet()

	// A fresh clean session whose filter matches one group only.
	bob := connectRaw(t, e, "bob", "b", true)
	bob.subscribe(1, "/private/bob/group/g1")
	if p := bob.readPublish(); !p.Retain || string(p.Topic) != "/private/bob/group/g1" {
		t.Fatalf("bob: %+v", p)
	}

	// Direct messages are not retained.
	puts := ret.putCount()
	bob.publishRetained(1, 4, "/private/bob", "note")
	readPuback(t, bob)
	if ret.putCount() != puts {
		t.Fatal("a direct message was retained")
	}
}

// A retained QoS 1 PUBACK waits for the Retainer as well as the store, in
// order with the PUBLISHes around it.
func TestRetainedPubackWaits(t *testing.T) {
	var f *ackingFwd
	e, ret := newRetainEnv(t, func(l *loopFwd) Forwarder {
		f = &ackingFwd{loopFwd: l, pending: map[string]func(){}, stores: map[string]func(error) bool{}}
		return f
	})
	ret.mu.Lock()
	ret.hold = true
	ret.mu.Unlock()
	d1 := connectRaw(t, e, "d1", "d1", true)
	d1.publishRetained(1, 1, "/group/g1", "r1")
	d1.publish(1, 2, "/group/g1", "m2")
	d1.expectQuiet() // stored, but not yet retained: neither PUBACK
	ret.release()
	if a, b := readPuback(t, d1), readPuback(t, d1); a != 1 || b != 2 {
		t.Fatalf("PUBACKs %d, %d", a, b)
	}
}

// A Retainer with no room: the message is delivered and acknowledged,
// 0x97 at 5.0, and counted. Any other failure: no PUBACK, the
// connection closes, counted.
func TestRetainedFailures(t *testing.T) {
	e, ret := newRetainEnv(t, nil)
	alice := connectRaw(t, e, "alice", "a", true)
	alice.subscribe(1, "/group/g1")
	ret.mu.Lock()
	ret.fail = errRetainFull
	ret.mu.Unlock()
	d1 := connectRaw(t, e, "d1", "d1", true)
	d1.publishRetained(1, 1, "/group/g1", "m1")
	readPuback(t, d1)
	if p := alice.readPublish(); string(p.Payload) != "m1" {
		t.Fatalf("%+v", p)
	}
	d5, _ := connect5(t, e, "d1", "d1-5", true, packet.Properties{}, 0)
	d5.send(packet.AppendPublishV5(nil, 1, false, true, 9, &packet.PublishProps{}, []byte("m2"), "/group/g1"))
	body := d5.mustRead(packet.PUBACK)
	pid, code, err := packet.DecodeAckCode(packet.PUBACK<<4, body, packet.V5)
	if err != nil || code != packet.CodeSuccess || pid != 9 || !bytes.Contains(body, []byte("not retained: no room")) {
		t.Fatalf("5.0 PUBACK %#x for %d (% x), %v", code, pid, body, err)
	}
	if n := e.srv.m.refusals[index(allReasons, reasonRetainedFull)].Load(); n != 2 {
		t.Fatalf("retained_full %d", n)
	}

	ret.mu.Lock()
	ret.fail = errors.New("store down")
	ret.mu.Unlock()
	d1.publishRetained(1, 2, "/group/g1", "m3")
	d1.expectClosed()
	if n := e.srv.m.refusals[index(allReasons, reasonRetainedFailed)].Load(); n != 1 {
		t.Fatalf("retained_failed %d", n)
	}
	alice.ping()
	alice.mustRead(packet.PUBLISH) // m2, still delivered
	alice.mustRead(packet.PUBLISH) // m3: delivered before the Retainer answered
	alice.mustRead(packet.PINGRESP)
}

// readAck5 reads a 5.0 ack of type typ: its reason code and id.
func readAck5(t *testing.T, r *rawClient, typ byte) (code byte, pid uint16) {
	t.Helper()
	pid, code, err := packet.DecodeAckCode(ackHeader(typ), r.mustRead(typ), packet.V5)
	if err != nil {
		t.Fatal(err)
	}
	return code, pid
}

// 5.0: CONNACK says Retain Available (by leaving it out), Retain Handling
// 0 sends at every SUBSCRIBE, 1 only to a new subscription, 2 never; a
// will with Will Retain is kept.
func TestRetainedV5(t *testing.T) {
	e, ret := newRetainEnv(t, nil)
	d1, props := connect5(t, e, "d1", "d1", true, packet.Properties{}, 0)
	if props.Is(packet.PropRetainAvailable) {
		t.Fatalf("Retain Available %d announced", props.RetainAvailable)
	}
	d1.send(packet.AppendPublishV5(nil, 1, false, true, 1, &packet.PublishProps{}, []byte("v"), "/group/g1"))
	readAck5(t, d1, packet.PUBACK)

	bob, _ := connect5(t, e, "bob", "b", true, packet.Properties{}, 0)
	sub := func(pid uint16, rh byte) {
		s := packet.Subscribe{PacketID: pid, Filters: []packet.Subscription{{Filter: "/group/g1", QoS: 0, RetainHandling: rh}}}
		bob.send(packet.AppendSubscribeV5(nil, &s))
		bob.mustRead(packet.SUBACK)
	}
	sub(1, 1) // new: sent
	if p := bob.readPublish5(); !p.Retain || string(p.Payload) != "v" {
		t.Fatalf("%+v", p)
	}
	sub(2, 1) // exists: not sent
	sub(3, 2) // never
	bob.expectQuiet()
	sub(4, 0) // always
	if p := bob.readPublish5(); !p.Retain {
		t.Fatalf("%+v", p)
	}

	// A will with Will Retain becomes the group's retained message.
	r := dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "w", CleanSession: true, KeepAlive: 60,
		Username: "d1", Password: []byte("tok-d1"), WillFlag: true, WillQoS: 1, WillRetain: true,
		WillTopic: "/group/g1", WillPayload: []byte("offline")}))
	r.mustRead(packet.CONNACK)
	r.Abort()
	ret.waitRetained(t, "g1", "offline")
}
