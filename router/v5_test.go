package router

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/packet"
)

// MQTT 5.0 through raw sockets and the project's codec: what no client
// library lets a test send, and the exact reason codes and properties.

// isV5Connect reports whether b is a CONNECT of protocol level 5.
func isV5Connect(b []byte) bool {
	hl, _, err := packet.ParseFixedHeader(b)
	return err == nil && hl > 0 && b[0]>>4 == packet.CONNECT && len(b) > hl+6 && b[hl+6] == packet.V5
}

// connect5 dials and logs in as id at level 5 with props, and returns the
// client and the CONNACK's properties, failing unless its code is want.
func connect5(t testing.TB, e *env, id, clientID string, cleanStart bool, props packet.Properties, want byte) (*rawClient, packet.Properties) {
	t.Helper()
	r := dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: clientID, CleanSession: cleanStart,
		KeepAlive: 60, Username: id, Password: []byte("tok-" + id), Props: props}))
	body := r.mustRead(packet.CONNACK)
	var got packet.Properties
	_, code, err := packet.DecodeConnackProps(packet.CONNACK<<4, body, packet.V5, &got)
	if err != nil || code != want {
		t.Fatalf("CONNACK code %#x, %v; want %#x", code, err, want)
	}
	return r, got
}

func expiryProps(seconds uint32) packet.Properties {
	p := packet.Properties{SessionExpiry: seconds}
	p.Set(packet.PropSessionExpiry)
	return p
}

// subscribe5 subscribes at level 5 and returns the SUBACK's codes.
func (r *rawClient) subscribe5(pid uint16, filters ...string) []byte {
	r.t.Helper()
	s := packet.Subscribe{PacketID: pid}
	for _, f := range filters {
		s.Filters = append(s.Filters, packet.Subscription{Filter: f, QoS: 1})
	}
	r.send(packet.AppendSubscribeV5(nil, &s))
	id, codes, err := packet.DecodeSuback(packet.SUBACK<<4, r.mustRead(packet.SUBACK), packet.V5)
	if err != nil || id != pid {
		r.t.Fatalf("suback: id %d err %v", id, err)
	}
	return codes
}

// readPublish5 reads the next packet, which must be a 5.0 PUBLISH.
func (r *rawClient) readPublish5() packet.Publish {
	r.t.Helper()
	h, body, err := r.read(5 * time.Second)
	if err != nil {
		r.t.Fatalf("reading PUBLISH: %v", err)
	}
	var p packet.Publish
	if err := packet.DecodePublish(h, body, packet.V5, &p); err != nil {
		r.t.Fatalf("decoding PUBLISH (%#x % x): %v", h, body, err)
	}
	return p
}

// expectDisconnect reads a 5.0 DISCONNECT with code, then the close.
func (r *rawClient) expectDisconnect(code byte) {
	r.t.Helper()
	var d packet.Disconnect
	if err := packet.DecodeDisconnect(packet.DISCONNECT<<4, r.mustRead(packet.DISCONNECT), packet.V5, &d); err != nil || d.Code != code {
		r.t.Fatalf("DISCONNECT %#x, %v; want %#x", d.Code, err, code)
	}
	r.expectClosed()
}

// Every bad 5.0 packet of the codec's table is answered with its reason
// code (CONNACK for a CONNECT, DISCONNECT after one), closed, counted as
// bad input, and logged.
func TestBadInputsV5FromCodecTable(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxPacketSize = packet.TMaxSize })
	n := 0
	for _, c := range packet.TPackets() {
		pkt := c.Bytes()
		if c.Err == nil || c.Server || (c.Level != packet.V5 && !isV5Connect(pkt)) {
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			before := badInputCounts(e)
			r := dialRaw(t, e.addr)
			connect := pkt[0]>>4 == packet.CONNECT
			if !connect {
				r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "bad", CleanSession: true,
					KeepAlive: 60, Username: "alice", Password: []byte("tok-alice")}))
				r.mustRead(packet.CONNACK)
			}
			r.send(pkt)
			if connect {
				_, code, err := packet.DecodeConnack(packet.CONNACK<<4, r.mustRead(packet.CONNACK), packet.V5)
				if err != nil || code != c.Err.Code {
					t.Fatalf("CONNACK %#x, %v; want %#x", code, err, c.Err.Code)
				}
				r.expectClosed()
			} else {
				r.expectDisconnect(c.Err.Code)
			}
			waitBadInput(t, e, before, badInputReason(c.Err))
		})
	}
	if n < 30 {
		t.Fatalf("only %d bad 5.0 packets in the codec table", n)
	}
}

// What the server refuses beyond the codec: each with the
// specification's reason code, and other clients untouched.
func TestBadInputsV5Server(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TopicAliasMaximum = 4; c.MaxPacketSize = 1024 })
	bob, _ := connect5(t, e, "bob", "bystander", true, packet.Properties{}, 0)
	bob.subscribe5(1, "/private/bob/#")
	alias := func(a uint16, topic string) []byte {
		return packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{TopicAlias: a}, []byte("x"), topic)
	}
	sub := &packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{{Filter: "/private/alice/#"}}}
	sub.Props.SubscriptionID = 7
	sub.Props.Set(packet.PropSubscriptionID)
	for _, tc := range []struct {
		name string
		pkt  []byte
		code byte
	}{
		{"F2 topic alias above the maximum", alias(5, "/group/g1"), packet.CodeTopicAliasInvalid},
		{"F2 topic alias never set", alias(3, ""), packet.CodeProtocolError},
		{"retain after Retain Available 0", packet.AppendPublishV5(nil, 0, false, true, 0, &packet.PublishProps{}, []byte("x"), "/group/g1"), packet.CodeRetainNotSupported},
		{"subscription identifier", packet.AppendSubscribeV5(nil, sub), packet.CodeSubIDsNotSupported},
		{"AUTH", []byte{packet.AUTH << 4, 0}, packet.CodeProtocolError},
		{"E5 packet over the maximum size", packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{}, make([]byte, 2000), "/group/g1"), packet.CodePacketTooLarge},
		{"second CONNECT", packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "x"}), packet.CodeProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := badInputCounts(e)
			r, _ := connect5(t, e, "alice", "bad", true, packet.Properties{}, 0)
			r.send(tc.pkt)
			r.expectDisconnect(tc.code)
			waitBadInput(t, e, before, badInputReason(&packet.Error{Code: tc.code}))
		})
	}
	// The bystander still gets its messages.
	alice, _ := connect5(t, e, "alice", "ok", true, packet.Properties{}, 0)
	alice.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{}, []byte("still here"), "/private/bob"))
	if p := bob.readPublish5(); string(p.Payload) != "still here" {
		t.Fatalf("bystander got %q", p.Payload)
	}
	// A DISCONNECT raising the Session Expiry Interval from 0 is a
	// protocol error [MQTT-3.14.2-2].
	r, _ := connect5(t, e, "alice", "raise", true, packet.Properties{}, 0)
	p := expiryProps(60)
	r.send(packet.AppendDisconnectV5(nil, 0, &p))
	r.expectDisconnect(packet.CodeProtocolError)
}

func TestV5Connack(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionExpiry = time.Hour })
	// An empty client id is given one, whatever Clean Start says; an
	// expiry above the server's is lowered and said so.
	_, p := connect5(t, e, "alice", "", false, expiryProps(1<<31), 0)
	if !p.Is(packet.PropAssignedClientID) || p.AssignedClientID == "" {
		t.Errorf("no Assigned Client Identifier: %+v", p)
	}
	if !p.Is(packet.PropSessionExpiry) || p.SessionExpiry != 3600 {
		t.Errorf("Session Expiry Interval %d (set %v), want 3600", p.SessionExpiry, p.Is(packet.PropSessionExpiry))
	}
	if p.Is(packet.PropMaximumQoS) || p.RetainAvailable != 0 || !p.Is(packet.PropRetainAvailable) ||
		p.TopicAliasMaximum != 32 || p.MaximumPacketSize != uint32(DefaultConfig().MaxPacketSize) ||
		!p.Is(packet.PropSharedSubAvailable) || p.SharedSubAvailable != 0 || !p.Is(packet.PropSubIDAvailable) {
		t.Errorf("CONNACK properties %+v", p)
	}
	_, p = connect5(t, e, "alice", "c2", true, expiryProps(60), 0)
	if p.Is(packet.PropSessionExpiry) || p.Is(packet.PropAssignedClientID) {
		t.Errorf("granted as asked, yet %+v", p)
	}
	// Refusals carry the 5.0 code and a reason string.
	r := dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "x", Username: "alice", Password: []byte("nope")}))
	_, code, err := packet.DecodeConnackProps(packet.CONNACK<<4, r.mustRead(packet.CONNACK), packet.V5, &p)
	if err != nil || code != packet.CodeBadCredentials || p.ReasonString != "bad credentials" {
		t.Errorf("bad password: CONNACK %#x %q, %v", code, p.ReasonString, err)
	}
	r.expectClosed()
	auth := packet.Properties{AuthMethod: "SCRAM-SHA-1"}
	auth.Set(packet.PropAuthMethod)
	connect5(t, e, "alice", "x", true, auth, packet.CodeBadAuthMethod)
	// A will above what CONNACK announces is refused [MQTT-3.2.2-13]
	// (a server with no Retainer).
	for _, tc := range []struct {
		qos    byte
		retain bool
		code   byte
	}{{1, true, packet.CodeRetainNotSupported}} {
		r := dialRaw(t, e.addr)
		r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "w", Username: "alice",
			Password: []byte("tok-alice"), WillTopic: "/private/bob", WillPayload: []byte("x"), WillQoS: tc.qos, WillRetain: tc.retain}))
		if _, code, err := packet.DecodeConnack(packet.CONNACK<<4, r.mustRead(packet.CONNACK), packet.V5); err != nil || code != tc.code {
			t.Errorf("will QoS %d retain %v: CONNACK %#x, %v; want %#x", tc.qos, tc.retain, code, err, tc.code)
		}
		r.expectClosed()
	}
}

// Properties a 5.0 publisher sets reach 5.0 members, with what is left
// of the expiry; 3.1.1 members get the payload alone.
func TestV5PropertiesReachRecipients(t *testing.T) {
	e := newEnv(t, nil)
	bob, _ := connect5(t, e, "bob", "b", true, packet.Properties{}, 0)
	bob.subscribe5(1, "/private/bob/#")
	alice := connectRaw(t, e, "alice", "a", true)
	alice.subscribe(1, "/private/alice/#")
	d1, _ := connect5(t, e, "d1", "d", true, packet.Properties{}, 0)
	var block []byte
	props := packet.Properties{ContentType: "text/plain", ResponseTopic: "/private/d1/reply",
		CorrelationData: []byte{1, 2, 3}, PayloadFormat: 1, User: []packet.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}
	props.Set(packet.PropContentType, packet.PropResponseTopic, packet.PropCorrelationData, packet.PropPayloadFormat)
	block = packet.AppendForwardProps(block, &props)
	d1.send(packet.AppendPublishV5(nil, 1, false, false, 9, &packet.PublishProps{Expiry: 600, HasExpiry: true, Raw: block},
		[]byte("hello"), "/group/g1"))
	if id, code, err := packet.DecodeAckCode(packet.PUBACK<<4, d1.mustRead(packet.PUBACK), packet.V5); err != nil || id != 9 || code != 0 {
		t.Fatalf("PUBACK %d %#x %v", id, code, err)
	}
	p := bob.readPublish5()
	if string(p.Topic) != "/private/bob/group/g1" || string(p.Payload) != "hello" || !p.HasExpiry || p.Expiry > 600 || p.Expiry < 590 {
		t.Fatalf("bob got %+v", p)
	}
	if fw := packet.ForwardProps(nil, p.Props); !bytes.Equal(fw, block) {
		t.Fatalf("bob's properties\n% X\nwant\n% X", fw, block)
	}
	if q := alice.readPublish(); string(q.Payload) != "hello" || q.Props != nil {
		t.Fatalf("alice (3.1.1) got %+v", q)
	}
	// A refused publish is told so (0x87), not silently acknowledged.
	d1.send(packet.AppendPublishV5(nil, 1, false, false, 10, &packet.PublishProps{}, []byte("x"), "/group/g2"))
	if id, code, err := packet.DecodeAckCode(packet.PUBACK<<4, d1.mustRead(packet.PUBACK), packet.V5); err != nil || id != 10 || code != packet.CodeNotAuthorized {
		t.Fatalf("refused PUBACK %d %#x %v", id, code, err)
	}
}

func TestV5TopicAlias(t *testing.T) {
	e := newEnv(t, nil)
	bob, _ := connect5(t, e, "bob", "b", true, packet.Properties{}, 0)
	bob.subscribe5(1, "/private/bob/#")
	alice, _ := connect5(t, e, "alice", "a", true, packet.Properties{}, 0)
	alice.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{TopicAlias: 1}, []byte("one"), "/private/bob"))
	alice.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{TopicAlias: 1}, []byte("two"), ""))
	alice.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{TopicAlias: 1}, []byte("three"), "/group/g1"))
	alice.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{TopicAlias: 1}, []byte("four"), ""))
	// A topic too long to keep moves the alias off its old topic: what
	// follows through the alias is refused, not sent to /group/g1.
	long := "/group/" + strings.Repeat("x", maxAliasTopic)
	alice.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{TopicAlias: 1}, []byte("five"), long))
	alice.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{TopicAlias: 1}, []byte("six"), ""))
	alice.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{TopicAlias: 1}, []byte("x"), "/private/bob"))
	alice.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{TopicAlias: 1}, []byte("seven"), ""))
	for _, want := range []string{"/private/bob one", "/private/bob two", "/private/bob/group/g1 three", "/private/bob/group/g1 four",
		"/private/bob x", "/private/bob seven"} {
		if p := bob.readPublish5(); string(p.Topic)+" "+string(p.Payload) != want {
			t.Fatalf("got %s %s, want %s", p.Topic, p.Payload, want)
		}
	}
	if n := refusals(e, reasonTopic); n != 2 {
		t.Errorf("topic refusals %d, want 2 (five, six)", n)
	}
}

// The client's Receive Maximum bounds the QoS 1 messages sent to it and
// not yet acknowledged; its Maximum Packet Size drops (and counts) what
// would not fit.
func TestV5ReceiveMaximumAndPacketSize(t *testing.T) {
	e := newEnv(t, nil)
	props := packet.Properties{ReceiveMaximum: 2, MaximumPacketSize: 64}
	props.Set(packet.PropReceiveMaximum, packet.PropMaximumPacketSize)
	bob, _ := connect5(t, e, "bob", "b", true, props, 0)
	bob.subscribe5(1, "/private/bob/#")
	alice := connectRaw(t, e, "alice", "a", true)
	alice.publish(1, 1, "/private/bob", string(make([]byte, 100))) // over 64 bytes
	alice.mustRead(packet.PUBACK)
	for i := range 4 {
		alice.publish(1, uint16(2+i), "/private/bob", "m"+string(rune('0'+i)))
		alice.mustRead(packet.PUBACK)
	}
	p1, p2 := bob.readPublish5(), bob.readPublish5()
	if string(p1.Payload) != "m0" || string(p2.Payload) != "m1" {
		t.Fatalf("got %q %q", p1.Payload, p2.Payload)
	}
	bob.expectNothing(100 * time.Millisecond) // the window is full
	bob.send(packet.AppendAck(nil, packet.PUBACK, p1.PacketID))
	if p := bob.readPublish5(); string(p.Payload) != "m2" {
		t.Fatalf("after one PUBACK got %q", p.Payload)
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.m.refusals[index(allReasons, reasonTooLargeForClient)].Load(); n != 1 {
			return fmt.Errorf("too_large_for_client %d, want 1", n)
		}
		return nil
	})
}

// A message whose expiry passes while its session is offline is not
// delivered when the session comes back; one without expiry is.
func TestV5MessageExpiryOffline(t *testing.T) {
	e := newEnv(t, nil)
	bob, _ := connect5(t, e, "bob", "b", true, expiryProps(300), 0)
	bob.subscribe5(1, "/private/bob/#")
	bob.send(packet.AppendDisconnectV5(nil, 0, nil))
	bob.expectClosed()
	alice, _ := connect5(t, e, "alice", "a", true, packet.Properties{}, 0)
	alice.send(packet.AppendPublishV5(nil, 1, false, false, 1, &packet.PublishProps{Expiry: 1, HasExpiry: true}, []byte("short"), "/private/bob"))
	alice.send(packet.AppendPublishV5(nil, 1, false, false, 2, &packet.PublishProps{}, []byte("kept"), "/private/bob"))
	alice.mustRead(packet.PUBACK)
	alice.mustRead(packet.PUBACK)
	deadline := time.Now().Add(time.Second)                      // the server took it in before this
	for time.Now().Before(deadline.Add(50 * time.Millisecond)) { // the expiry is a time: wait it out
		time.Sleep(time.Until(deadline.Add(50 * time.Millisecond)))
	}
	bob, _ = connect5(t, e, "bob", "b", false, expiryProps(300), 0)
	if p := bob.readPublish5(); string(p.Payload) != "kept" {
		t.Fatalf("got %q, want the message without expiry", p.Payload)
	}
	if n := e.srv.m.refusals[index(allReasons, reasonExpired)].Load(); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
}

// Session Expiry Interval instead of clean session: 0 ends the session
// with the connection, a DISCONNECT may shorten it, Clean Start discards.
func TestV5SessionExpiry(t *testing.T) {
	e := newEnv(t, nil)
	present := func(cleanStart bool, expiry uint32) (*rawClient, bool) {
		r := dialRaw(t, e.addr)
		p := expiryProps(expiry)
		r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "s", CleanSession: cleanStart,
			KeepAlive: 60, Username: "alice", Password: []byte("tok-alice"), Props: p}))
		sp, code, err := packet.DecodeConnack(packet.CONNACK<<4, r.mustRead(packet.CONNACK), packet.V5)
		if err != nil || code != 0 {
			t.Fatalf("CONNACK %#x %v", code, err)
		}
		return r, sp
	}
	leave := func(r *rawClient, props *packet.Properties) {
		r.send(packet.AppendDisconnectV5(nil, 0, props))
		r.expectClosed()
		testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
			if n := e.srv.m.connections.Load(); n != 0 {
				return fmt.Errorf("%d connections", n)
			}
			return nil
		})
	}
	r, sp := present(true, 60)
	if sp {
		t.Fatal("present on a first connect")
	}
	leave(r, nil)
	if r, sp = present(false, 0); !sp {
		t.Fatal("a session with expiry 60 was not kept")
	}
	leave(r, nil) // expiry 0 now: it ends
	if r, sp = present(false, 60); sp {
		t.Fatal("a session with expiry 0 outlived its connection")
	}
	zero := expiryProps(0)
	leave(r, &zero) // shortened at DISCONNECT
	if r, sp = present(false, 60); sp {
		t.Fatal("a session shortened to 0 at DISCONNECT outlived its connection")
	}
	leave(r, nil)
	if r, sp = present(true, 60); sp {
		t.Fatal("Clean Start resumed a session")
	}
	leave(r, nil)
}

// The server says why it closes a 5.0 connection.
func TestV5ServerDisconnect(t *testing.T) {
	e := newEnv(t, nil)
	old, _ := connect5(t, e, "alice", "same", true, packet.Properties{}, 0)
	connect5(t, e, "alice", "same", true, packet.Properties{}, 0)
	old.expectDisconnect(packet.CodeSessionTakenOver)

	e.auth.addIdentity("tok-revoke", Identity{ID: "bob", TokenHash: "h-revoke"})
	r := dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "r", CleanSession: true,
		Username: "bob", Password: []byte("tok-revoke")}))
	r.mustRead(packet.CONNACK)
	e.srv.Revoke("h-revoke")
	r.expectDisconnect(packet.CodeNotAuthorized)

	c, _ := connect5(t, e, "carol", "c", true, packet.Properties{}, 0)
	e.srv.Close()
	c.expectDisconnect(packet.CodeServerShuttingDown)
}

// SUBACK and UNSUBACK say why per filter; a DISCONNECT with 0x04 keeps
// the will.
func TestV5AckCodesAndWill(t *testing.T) {
	e := newEnv(t, nil)
	r, _ := connect5(t, e, "alice", "a", true, packet.Properties{}, 0)
	codes := r.subscribe5(1, "/private/alice/#", "/private/bob/#", "$share/x/#", "/group/g2")
	if !bytes.Equal(codes, []byte{1, packet.CodeNotAuthorized, packet.CodeSharedSubNotSupported, packet.CodeNotAuthorized}) {
		t.Fatalf("SUBACK codes % x", codes)
	}
	r.send(packet.AppendUnsubscribeV5(nil, &packet.Unsubscribe{PacketID: 2, Filters: []string{"/private/alice/#", "/private/alice/x"}}))
	_, codes, err := packet.DecodeUnsubackCodes(packet.UNSUBACK<<4, r.mustRead(packet.UNSUBACK), packet.V5)
	if err != nil || !bytes.Equal(codes, []byte{0, packet.CodeNoSubscriptionExisted}) {
		t.Fatalf("UNSUBACK codes % x, %v", codes, err)
	}

	bob, _ := connect5(t, e, "bob", "b", true, packet.Properties{}, 0)
	bob.subscribe5(1, "/private/bob/#")
	w := dialRaw(t, e.addr)
	w.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "w", CleanSession: true,
		Username: "alice", Password: []byte("tok-alice"), WillTopic: "/private/bob", WillPayload: []byte("gone")}))
	w.mustRead(packet.CONNACK)
	w.send(packet.AppendDisconnectV5(nil, packet.CodeDisconnectWithWill, nil))
	if p := bob.readPublish5(); string(p.Payload) != "gone" {
		t.Fatalf("will: got %q", p.Payload)
	}
}

// Auth-topic login at 5.0: the CONNACK before the token is a 5.0 one.
func TestV5AuthTopic(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.AuthTopic = true })
	r := dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "at", CleanSession: true, KeepAlive: 60}))
	var p packet.Properties
	if _, code, err := packet.DecodeConnackProps(packet.CONNACK<<4, r.mustRead(packet.CONNACK), packet.V5, &p); err != nil || code != 0 || !p.Is(packet.PropTopicAliasMaximum) {
		t.Fatalf("CONNACK %#x %+v %v", code, p, err)
	}
	r.send(packet.AppendPublishV5(nil, 0, false, false, 0, &packet.PublishProps{}, []byte("tok-alice"), "/service/auth"))
	if q := r.readPublish5(); !bytes.Contains(q.Payload, []byte(`"ok":true`)) {
		t.Fatalf("auth answer %s", q.Payload)
	}
}

// The Will Delay Interval: the will goes after it, and not at all if the
// session is resumed first.
func TestV5WillDelay(t *testing.T) {
	e := newEnv(t, nil)
	bob, _ := connect5(t, e, "bob", "b", true, packet.Properties{}, 0)
	bob.subscribe5(1, "/private/bob/#")
	willConnect := func(cleanStart bool) *rawClient {
		r := dialRaw(t, e.addr)
		c := &packet.Connect{ProtocolLevel: packet.V5, ClientID: "w", CleanSession: cleanStart, KeepAlive: 60,
			Username: "alice", Password: []byte("tok-alice"), WillTopic: "/private/bob", WillPayload: []byte("gone"),
			Props: expiryProps(60)}
		c.WillProps.WillDelay = 1
		c.WillProps.Set(packet.PropWillDelay)
		r.send(packet.AppendConnect(nil, c))
		r.mustRead(packet.CONNACK)
		return r
	}
	// Resumed within the delay: no will.
	r := willConnect(true)
	start := time.Now()
	r.Abort()
	r = willConnect(false)
	bob.expectNothing(time.Until(start.Add(1500 * time.Millisecond)))
	// Not resumed: the will, after the delay.
	start = time.Now()
	r.Abort()
	if p := bob.readPublish5(); string(p.Payload) != "gone" {
		t.Fatalf("got %q", p.Payload)
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("the will came after %v, before its 1 s delay", d)
	}
}

// A PUBREL for a packet id the server does not hold gets PUBCOMP 0x92
// (Packet Identifier not found), and the connection goes on.
func TestV5PubrelUnknownID(t *testing.T) {
	e := newEnv(t, nil)
	r, _ := connect5(t, e, "alice", "a", true, packet.Properties{}, 0)
	r.send(packet.AppendAck(nil, packet.PUBREL, 77))
	id, code, err := packet.DecodeAckCode(packet.PUBCOMP<<4, r.mustRead(packet.PUBCOMP), packet.V5)
	if err != nil || id != 77 || code != packet.CodePacketIDNotFound {
		t.Fatalf("PUBCOMP %d %#x %v", id, code, err)
	}
	r.expectQuiet()
}

// A connection the server closes handles no more packets, also while
// its close waits to flush a backlog to a client that does not read
// (revocation, token expiry and takeover must take effect at once): the
// transports stop reading, and the connection refuses what they had
// read already (mqttConn flagKilled).
func TestV5KilledConnectionHandlesNothing(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.WriteTimeout = 3 * time.Second; c.PublishRate, c.PublishByteRate = -1, -1 })
	e.auth.addIdentity("tok-revoke", Identity{ID: "alice", TokenHash: "h-revoke"})
	bob, _ := connect5(t, e, "bob", "b", true, packet.Properties{}, 0)
	bob.subscribe5(1, "/private/bob/#")
	r := dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, &packet.Connect{ProtocolLevel: packet.V5, ClientID: "slow", CleanSession: true,
		Username: "alice", Password: []byte("tok-revoke")}))
	r.mustRead(packet.CONNACK)
	r.subscribe5(1, "/private/alice/#")
	// alice stops reading; d1 fills her socket and backlog.
	d1 := connectRaw(t, e, "d1", "d", true)
	big := string(make([]byte, 60<<10))
	for range 200 {
		d1.publish(0, 0, "/private/alice", big)
	}
	d1.expectQuiet()
	in := e.srv.Stats().MessagesIn
	e.srv.Revoke("h-revoke")
	r.publish(0, 0, "/private/bob", "after revocation")
	bob.expectNothing(300 * time.Millisecond)
	if got := e.srv.Stats().MessagesIn; got != in {
		t.Fatalf("messages in went from %d to %d after the revocation", in, got)
	}
}

// A delayed will goes as soon as its session ends, before the delay: a
// Clean Start from the same client id ends the old session.
func TestV5WillDelaySessionEnds(t *testing.T) {
	e := newEnv(t, nil)
	bob, _ := connect5(t, e, "bob", "b", true, packet.Properties{}, 0)
	bob.subscribe5(1, "/private/bob/#")
	c := &packet.Connect{ProtocolLevel: packet.V5, ClientID: "w", KeepAlive: 60,
		Username: "alice", Password: []byte("tok-alice"), WillTopic: "/private/bob", WillPayload: []byte("ended"),
		Props: expiryProps(600)}
	c.WillProps.WillDelay = 60
	c.WillProps.Set(packet.PropWillDelay)
	r := dialRaw(t, e.addr)
	r.send(packet.AppendConnect(nil, c))
	r.mustRead(packet.CONNACK)
	r.Abort()
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if n := e.srv.m.connections.Load(); n != 1 {
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	bob.expectQuiet()                                       // the will waits
	connect5(t, e, "alice", "w", true, expiryProps(600), 0) // Clean Start: the old session ends
	if p := bob.readPublish5(); string(p.Payload) != "ended" {
		t.Fatalf("got %q", p.Payload)
	}
}
