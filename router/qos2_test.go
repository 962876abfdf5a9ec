package router

import (
	"errors"
	"testing"

	"github.com/pushring/pushring/mqtt/packet"
)

// subscribeQoS subscribes r (3.1.1) to filter at qos and returns the
// granted code.
func (r *rawClient) subscribeQoS(pid uint16, filter string, qos byte) byte {
	r.t.Helper()
	s := packet.Subscribe{PacketID: pid, Filters: []packet.Subscription{{Filter: filter, QoS: qos}}}
	r.send(packet.AppendSubscribe(nil, &s))
	_, codes, err := packet.DecodeSuback(packet.SUBACK<<4, r.mustRead(packet.SUBACK), packet.V311)
	if err != nil || len(codes) != 1 {
		r.t.Fatalf("suback %v %v", codes, err)
	}
	return codes[0]
}

// readAck reads an ack of type typ (3.1.1) and returns its id.
func (r *rawClient) readAck(typ byte) uint16 {
	r.t.Helper()
	pid, err := packet.DecodeAck(ackHeader(typ), r.mustRead(typ), packet.V311)
	if err != nil {
		r.t.Fatal(err)
	}
	return pid
}

// ackHeader is the first byte of an ack of type typ.
func ackHeader(typ byte) byte {
	if typ == packet.PUBREL {
		return typ<<4 | 2
	}
	return typ << 4
}

// Delivery at QoS 2: a QoS 2 subscription gets QoS 2 messages at QoS 2
// (QoS 1 ones at QoS 1); PUBREC is answered with PUBREL; a persistent
// session gets PUBREL again after a reconnect for what awaited PUBCOMP,
// and the PUBLISH again (DUP) for what awaited PUBREC.
func TestQoS2Outbound(t *testing.T) {
	e := newEnv(t, nil)
	bob := connectRaw(t, e, "bob", "b", false)
	if code := bob.subscribeQoS(1, "/private/bob/#", 2); code != 2 {
		t.Fatalf("SUBACK %#x, want 2", code)
	}
	d1 := connectRaw(t, e, "d1", "d1", true)
	d1.publish(2, 1, "/group/g1", "two")
	d1.readAck(packet.PUBREC)
	d1.sendAck(packet.PUBREL, 1)
	d1.readAck(packet.PUBCOMP)
	d1.publish(1, 2, "/group/g1", "one")
	d1.readAck(packet.PUBACK)

	p1 := bob.readPublish()
	p2 := bob.readPublish()
	if p1.QoS != 2 || string(p1.Payload) != "two" || p2.QoS != 1 || string(p2.Payload) != "one" {
		t.Fatalf("got %+v, %+v", p1, p2)
	}
	bob.sendAck(packet.PUBACK, p2.PacketID)
	bob.sendAck(packet.PUBREC, p1.PacketID)
	if pid := bob.readAck(packet.PUBREL); pid != p1.PacketID {
		t.Fatalf("PUBREL %d, want %d", pid, p1.PacketID)
	}
	bob.sendAck(packet.PUBREC, p1.PacketID) // repeated: PUBREL again
	bob.readAck(packet.PUBREL)
	bob.sendAck(packet.PUBREC, 999) // unknown: PUBREL all the same
	if pid := bob.readAck(packet.PUBREL); pid != 999 {
		t.Fatalf("PUBREL %d for an unknown id", pid)
	}

	// A second QoS 2 message, not answered; then bob reconnects.
	d1.publish(2, 3, "/group/g1", "three")
	d1.readAck(packet.PUBREC)
	p3 := bob.readPublish()
	bob.disconnect()
	bob.expectClosed()
	bob = connectRaw(t, e, "bob", "b", false)
	if pid := bob.readAck(packet.PUBREL); pid != p1.PacketID {
		t.Fatalf("after reconnect: PUBREL %d, want %d", pid, p1.PacketID)
	}
	again := bob.readPublish()
	if !again.Dup || again.QoS != 2 || again.PacketID != p3.PacketID || string(again.Payload) != "three" {
		t.Fatalf("after reconnect: %+v", again)
	}
	bob.sendAck(packet.PUBCOMP, p1.PacketID)
	bob.sendAck(packet.PUBREC, p3.PacketID)
	bob.readAck(packet.PUBREL)
	bob.sendAck(packet.PUBCOMP, p3.PacketID)
	bob.sendAck(packet.PUBCOMP, 4242) // unknown: ignored
	bob.expectQuiet()
	if n := e.fwd.count(); n != 3 {
		t.Fatalf("forwarded %d", n)
	}
}

// QoS 2 from a client with an AckForwarder: PUBREC waits for the store;
// a retransmission while it waits, or after a reconnect (persistent) or a
// takeover, is answered and not forwarded again; after PUBREL the id is
// new again. A message whose store failed is forgotten: its
// retransmission is forwarded.
func TestQoS2InboundStored(t *testing.T) {
	e, f := newStoreLateEnv(t)
	r := connectRaw(t, e, "alice", "a", false)
	r.publish(2, 7, "/group/g1", "m7")
	r.send(packet.AppendPublish(nil, 2, true, false, 7, []byte("m7"), "/group/g1"))
	r.expectQuiet()
	if !f.store(t, "m7", nil) {
		t.Fatal("not to be forwarded")
	}
	r.readAck(packet.PUBREC)
	r.readAck(packet.PUBREC) // the retransmission's, behind it
	r.disconnect()
	r.expectClosed()

	r = connectRaw(t, e, "alice", "a", false)
	r.send(packet.AppendPublish(nil, 2, true, false, 7, []byte("m7"), "/group/g1"))
	r.readAck(packet.PUBREC)
	r2 := connectRaw(t, e, "alice", "a", false) // takeover
	r.expectClosed()
	r2.send(packet.AppendPublish(nil, 2, true, false, 7, []byte("m7"), "/group/g1"))
	r2.readAck(packet.PUBREC)
	r2.sendAck(packet.PUBREL, 7)
	r2.readAck(packet.PUBCOMP)
	if n := f.count(); n != 1 {
		t.Fatalf("forwarded %d times", n)
	}

	// Store failure: forgotten, so the retransmission is a new message.
	r2.publish(2, 8, "/group/g1", "m8")
	r2.expectQuiet()
	f.store(t, "m8", errors.New("store down"))
	r2.expectClosed()
	r3 := connectRaw(t, e, "alice", "a", false)
	r3.send(packet.AppendPublish(nil, 2, true, false, 8, []byte("m8"), "/group/g1"))
	if !f.store(t, "m8", nil) {
		t.Fatal("the retransmission is to be forwarded")
	}
	r3.readAck(packet.PUBREC)
	if n := f.count(); n != 3 {
		t.Fatalf("forwarded %d times, want 3 (m7, m8 twice)", n)
	}
}

// 5.0: Maximum QoS is not announced (2); a PUBREC with an error code
// ends the message without PUBREL; an unknown PUBREC gets PUBREL 0x92;
// ids awaiting PUBCOMP count against the client's Receive Maximum.
func TestQoS2V5(t *testing.T) {
	e := newEnv(t, nil)
	rm := packet.Properties{ReceiveMaximum: 1}
	rm.Set(packet.PropReceiveMaximum)
	bob, props := connect5(t, e, "bob", "b", true, rm, 0)
	if props.Is(packet.PropMaximumQoS) {
		t.Fatalf("Maximum QoS %d announced", props.MaximumQoS)
	}
	s := packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{{Filter: "/private/bob/#", QoS: 2}}}
	bob.send(packet.AppendSubscribeV5(nil, &s))
	bob.mustRead(packet.SUBACK)
	d1, _ := connect5(t, e, "d1", "d1", true, packet.Properties{}, 0)
	for i, p := range []string{"a", "b", "c"} {
		d1.send(packet.AppendPublishV5(nil, 2, false, false, uint16(i+1), &packet.PublishProps{}, []byte(p), "/group/g1"))
		readAck5(t, d1, packet.PUBREC)
	}
	pa := bob.readPublish5()
	if pa.QoS != 2 || string(pa.Payload) != "a" {
		t.Fatalf("%+v", pa)
	}
	bob.send(packet.AppendAck(nil, packet.PUBREC, pa.PacketID))
	if code, _ := readAck5(t, bob, packet.PUBREL); code != 0 {
		t.Fatalf("PUBREL code %#x", code)
	}
	bob.expectQuiet() // Receive Maximum 1: "b" waits for PUBCOMP
	bob.send(packet.AppendAck(nil, packet.PUBCOMP, pa.PacketID))
	pb := bob.readPublish5()
	// A PUBREC with an error code ends the message: no PUBREL, "c" goes.
	bob.send(packet.AppendAckV5(nil, packet.PUBREC, pb.PacketID, packet.CodeUnspecified, ""))
	if pc := bob.readPublish5(); string(pc.Payload) != "c" {
		t.Fatalf("%+v", pc)
	}
	bob.send(packet.AppendAck(nil, packet.PUBREC, 999))
	if code, pid := readAck5(t, bob, packet.PUBREL); code != packet.CodePacketIDNotFound || pid != 999 {
		t.Fatalf("unknown PUBREC: PUBREL %#x for %d", code, pid)
	}
	// A will of QoS 2 is accepted now.
	r := dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "w", Username: "alice",
		Password: []byte("tok-alice"), WillFlag: true, WillTopic: "/private/bob", WillPayload: []byte("x"), WillQoS: 2}))
	if _, code, err := packet.DecodeConnack(packet.CONNACK<<4, r.mustRead(packet.CONNACK), packet.V5); err != nil || code != 0 {
		t.Fatalf("will QoS 2: CONNACK %#x %v", code, err)
	}
}

// A retransmission after the client's connection dropped while its
// first copy waited for the store is taken as new (forwarded again, a
// possible duplicate): the first copy's store may still fail, and a
// PUBREC for it would lose the message.
func TestQoS2ResendWhileStorePending(t *testing.T) {
	e, f := newStoreLateEnv(t)
	r := connectRaw(t, e, "alice", "a", false)
	r.publish(2, 5, "/group/g1", "m5")
	r.expectQuiet()
	r.Abort()
	r.expectClosed()
	r = connectRaw(t, e, "alice", "a", false)
	r.send(packet.AppendPublish(nil, 2, true, false, 5, []byte("m5"), "/group/g1"))
	r.expectQuiet() // not answered at once: it waits for its own store
	if !f.store(t, "m5", nil) {
		t.Fatal("the retransmission is to be forwarded")
	}
	r.readAck(packet.PUBREC)
	if n := f.count(); n != 2 {
		t.Fatalf("forwarded %d times, want 2", n)
	}
}

// A queued QoS 2 message resent after a reconnect that the ACL no longer
// allows is not sent, and its id is released with PUBREL (the client may
// hold it), not reused before PUBCOMP.
func TestQoS2DroppedOnResendReleasesID(t *testing.T) {
	e := newEnv(t, nil)
	bob := connectRaw(t, e, "bob", "b", false)
	bob.subscribeQoS(1, "/private/bob/#", 2)
	d1 := connectRaw(t, e, "d1", "d1", true)
	d1.publish(2, 1, "/group/g1", "x")
	d1.readAck(packet.PUBREC)
	p := bob.readPublish()
	bob.Abort()
	bob.expectClosed()
	e.acl.setMember("g1", "bob", false)
	bob = connectRaw(t, e, "bob", "b", false)
	if pid := bob.readAck(packet.PUBREL); pid != p.PacketID {
		t.Fatalf("PUBREL %d, want %d", pid, p.PacketID)
	}
	bob.sendAck(packet.PUBCOMP, p.PacketID)
	bob.expectQuiet()
}

// 5.0: a retained QoS 2 publish with no room is answered PUBREC success
// (with a Reason String); PUBREL completes it and the id is free again.
func TestQoS2RetainedFull(t *testing.T) {
	e, ret := newRetainEnv(t, nil)
	ret.mu.Lock()
	ret.fail = errRetainFull
	ret.mu.Unlock()
	d1, props := connect5(t, e, "d1", "d1", true, packet.Properties{}, 0)
	if !props.Is(packet.PropReceiveMaximum) || props.ReceiveMaximum != maxQoS2In {
		t.Fatalf("Receive Maximum %d (set %v)", props.ReceiveMaximum, props.Is(packet.PropReceiveMaximum))
	}
	d1.send(packet.AppendPublishV5(nil, 2, false, true, 3, &packet.PublishProps{}, []byte("r"), "/group/g1"))
	if code, pid := readAck5(t, d1, packet.PUBREC); code != 0 || pid != 3 {
		t.Fatalf("PUBREC %#x for %d", code, pid)
	}
	d1.send(packet.AppendAck(nil, packet.PUBREL, 3))
	if code, _ := readAck5(t, d1, packet.PUBCOMP); code != 0 {
		t.Fatalf("PUBCOMP %#x", code)
	}
	d1.send(packet.AppendPublishV5(nil, 2, false, false, 3, &packet.PublishProps{}, []byte("next"), "/group/g1"))
	readAck5(t, d1, packet.PUBREC)
	if n := e.fwd.count(); n != 2 {
		t.Fatalf("forwarded %d, want 2", n)
	}
}

// A durable session's position stays under a QoS 2 message until its
// PUBCOMP (a client may deliver it only at PUBREL): a session that moves
// before then gets it again from the journal.
func TestQoS2PositionHeldUntilPubcomp(t *testing.T) {
	s := &session{maxSeq: 10, floor: noFloor}
	s.rareState().rel = []relID{{pid: 1, seq: 7}, {pid: 2, seq: 0}}
	if p := s.position(); p != 6 {
		t.Fatalf("position %d with seq 7 awaiting PUBCOMP, want 6", p)
	}
	s.rare.rel = s.rare.rel[1:]
	if p := s.position(); p != 10 {
		t.Fatalf("position %d, want 10", p)
	}
}
