package router

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// Hostile input sent over real sockets. Case names start with the class
// of hostile input they stand for, as defined on packet.TPackets
// (mqtt/packet/tpackets.go); classes it does not define are spelled out.

// tp returns the bytes of the codec table's entry name.
func tp(name string) []byte {
	e := packet.TPacketNamed(name)
	return e.Bytes()
}

// anonConnect is a 3.1.1 CONNECT without credentials (auth-topic mode).
func anonConnect(clientID string) []byte {
	return packet.AppendConnect(nil, &packet.Connect{CleanSession: true, KeepAlive: 60, ClientID: clientID})
}

// withWill is a 3.1.1 CONNECT as alice (token tok-alice) with a will to
// topic.
func withWill(clientID, topic string, qos byte) []byte {
	return packet.AppendConnect(nil, &packet.Connect{CleanSession: true, KeepAlive: 60, ClientID: clientID,
		Username: "alice", Password: []byte("tok-alice"),
		WillFlag: true, WillQoS: qos, WillTopic: topic, WillPayload: []byte("bye")})
}

// captureLogs points c's logger at a buffer (JSON lines, Info and up)
// and returns it.
func captureLogs(c *Config) *testutil.SyncBuffer {
	buf := &testutil.SyncBuffer{}
	c.Logger = slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return buf
}

var badInputReasonList = []string{reasonMalformed, reasonTooLarge, reasonProtocol, reasonTimeout}

// badInputCounts reads pushring_mqtt_refusals_total for every bad-input
// reason.
func badInputCounts(e *env) map[string]float64 {
	out := map[string]float64{}
	for _, r := range badInputReasonList {
		out[r] = float64(e.srv.m.refusals[index(allReasons, r)].Load())
	}
	return out
}

// waitBadInput waits until the counter of reason is one above before,
// and checks that no other bad-input reason moved.
func waitBadInput(t testing.TB, e *env, before map[string]float64, reason string) {
	t.Helper()
	want := maps.Clone(before)
	want[reason]++
	testutil.CheckFor(t, 5*time.Second, 2*time.Millisecond, func() error {
		if got := badInputCounts(e); got[reason] < want[reason] {
			return fmt.Errorf("refusals %v, want %v", got, want)
		}
		return nil
	})
	if got := badInputCounts(e); !maps.Equal(got, want) {
		t.Fatalf("refusals %v, want %v", got, want)
	}
}

// badInputLogLines returns the "bad input" log records for remote.
func badInputLogLines(t testing.TB, logs *testutil.SyncBuffer, remote string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if rec["msg"] == "mqtt: bad input, connection closed" && rec["remote"] == remote {
			out = append(out, rec)
		}
	}
	return out
}

// badInput is one hostile input that closes the connection.
type badInput struct {
	name   string
	raw    bool   // no CONNECT first
	data   []byte // sent after CONNACK 0 unless raw
	reason string // pushring_mqtt_refusals_total{reason} counts the close
}

// badInputs are the bad inputs that close a connection, with the refusal
// reason each is counted under.
func badInputs() []badInput {
	return []badInput{
		{"A1 remaining length 5 bytes", false, tp("A1 remaining length in 5 bytes"), reasonMalformed},
		{"A1 raw", true, tp("A1 CONNECT remaining length in 5 bytes"), reasonMalformed},
		{"A2 huge CONNECT", true, tp("A2 huge declared CONNECT, no body"), reasonTooLarge},
		{"A2 huge PUBLISH first", true, append(tp("A2 huge declared PUBLISH, some junk"), make([]byte, 64<<10)...), reasonTooLarge},
		{"A2 huge PUBLISH", false, tp("A2 largest declared PUBLISH, no body"), reasonTooLarge},
		{"A3 SUBSCRIBE without options", false, tp("SUBSCRIBE A3 no options byte"), reasonMalformed},
		{"A3 string past end", false, tp("PUBLISH A3 topic length past end"), reasonMalformed},
		{"A4 CONNECT trailing byte", true, tp("CONNECT A4 trailing byte"), reasonMalformed},
		{"A5 PUBLISH QoS 3", false, tp("PUBLISH A5 QoS 3"), reasonMalformed},
		{"A5 SUBSCRIBE flags 0", false, tp("SUBSCRIBE A5 flags 0"), reasonMalformed},
		{"A5 PUBREL flags 0", false, tp("PUBREL A5 flags 0"), reasonMalformed},
		{"A5 QoS 0 DUP", false, tp("PUBLISH A5 QoS 0 with DUP"), reasonMalformed},
		{"A6 reserved 0", false, tp("A6 reserved type 0"), reasonProtocol},
		{"A6 AUTH on 3.1.1", false, tp("A6 AUTH from a 3.1.1 client"), reasonProtocol},
		{"A6 CONNACK", false, tp("A6 CONNACK from a client"), reasonProtocol},
		{"A6 SUBACK", false, tp("A6 SUBACK from a client"), reasonProtocol},
		{"A6 UNSUBACK", false, tp("A6 UNSUBACK from a client"), reasonProtocol},
		{"A6 PINGRESP", false, tp("A6 PINGRESP from a client"), reasonProtocol},
		{"A7 PUBLISH id 0", false, tp("PUBLISH A7 QoS 1 packet id 0"), reasonProtocol},
		{"A7 SUBSCRIBE id 0", false, tp("SUBSCRIBE A7 packet id 0"), reasonProtocol},
		{"A7 UNSUBSCRIBE id 0", false, tp("UNSUBSCRIBE A7 packet id 0"), reasonProtocol},
		{"A7 PUBACK id 0", false, tp("PUBACK A7 id 0"), reasonProtocol},
		{"A7 PUBREL id 0", false, tp("PUBREL A7 id 0"), reasonProtocol},
		{"B1 PUBLISH first", true, tp("PUBLISH QoS 0"), reasonProtocol},
		{"B1 SUBSCRIBE first", true, tp("SUBSCRIBE one filter"), reasonProtocol},
		{"B1 PINGREQ first", true, tp("PINGREQ"), reasonProtocol},
		{"B2 second CONNECT (other user)", false, connectPacket("bob", "tok-bob", "x", true, 60), reasonProtocol},
		{"B2 second CONNECT (same user)", false, connectPacket("alice", "tok-alice", "bad", true, 60), reasonProtocol},
		{"B3 reserved flag", true, tp("CONNECT B3 reserved flag"), reasonMalformed},
		{"B3 password without username", true, tp("CONNECT B3 password without username"), reasonMalformed},
		{"B3 will QoS without will flag", true, tp("CONNECT B3 will QoS without will"), reasonMalformed},
		{"B3 will QoS 3", true, withWill("p", "/group/g1", 3), reasonMalformed},
		{"B3 will flag, no will", true, tp("CONNECT B3 will flag, no will topic"), reasonMalformed},
		{"B3 protocol name hj", true, tp("CONNECT B3 protocol name hj"), reasonMalformed},
		{"B4 NUL in username", true, tp("CONNECT B4 username with NUL"), reasonMalformed},
		{"C1 PUBLISH /group/+", false, tp("PUBLISH C1 /group/+"), reasonProtocol},
		{"C1 PUBLISH /group/g1/#", false, packet.AppendPublish(nil, 1, false, false, 1, []byte("x"), "/group/g1/#"), reasonProtocol},
		{"C2 PUBLISH empty topic", false, tp("PUBLISH C2 empty topic"), reasonProtocol},
		{"C3 NUL in topic", false, packet.AppendPublish(nil, 0, false, false, 0, []byte("x"), "/group/g1\x00"), reasonMalformed},
		{"C3 overlong slash", false, tp("PUBLISH C3 overlong /"), reasonMalformed},
		{"C3 surrogate", false, tp("PUBLISH C3 U+D800"), reasonMalformed},
		{"C10 a/#/b", false, tp("SUBSCRIBE C10 a/#/b"), reasonMalformed},
		{"C10 a#", false, tp("SUBSCRIBE C10 a#"), reasonMalformed},
		{"C10 a+", false, tp("SUBSCRIBE C10 a+"), reasonMalformed},
		{"C10 +a", false, tp("SUBSCRIBE C10 +a"), reasonMalformed},
		{"C10 empty filter", false, tp("SUBSCRIBE C10 empty filter"), reasonMalformed},
		{"C10 NUL filter", false, tp("SUBSCRIBE C10 NUL in filter"), reasonMalformed},
		{"C10 no filters", false, tp("SUBSCRIBE C10 no filters"), reasonProtocol},
		{"C10 QoS 3", false, tp("SUBSCRIBE C10 QoS 3"), reasonMalformed},
		{"C10 reserved option bits", false, tp("SUBSCRIBE C10 reserved option bit 2"), reasonMalformed},
		{"C11 topic of 32767 slashes", false, tp("PUBLISH C11 topic of 32767 slashes"), reasonProtocol},
		{"C11 filter of 10000 + levels", false, tp("SUBSCRIBE C11 filter of 10000 + levels"), reasonMalformed},
		{"D1 will topic with wildcard", true, withWill("w", "/group/#", 1), reasonProtocol},
		{"DISCONNECT with body", false, tp("DISCONNECT A4 trailing byte"), reasonMalformed},
	}
}

// Every bad packet of the codec table that a client may send is refused
// by the server with a close, counted under the reason its error maps to.
// The map is written out here, not taken from the server, so the test
// checks it.
func TestBadInputsFromCodecTable(t *testing.T) {
	reasonOf := map[*packet.Error]string{
		packet.ErrRemainingLength: reasonMalformed,
		packet.ErrTooLarge:        reasonTooLarge,
		packet.ErrShort:           reasonMalformed,
		packet.ErrTrailing:        reasonMalformed,
		packet.ErrFlags:           reasonMalformed,
		packet.ErrQoS:             reasonMalformed,
		packet.ErrConnectFlags:    reasonMalformed,
		packet.ErrProtocolName:    reasonMalformed,
		packet.ErrUTF8:            reasonMalformed,
		packet.ErrFilter:          reasonMalformed,
		packet.ErrSubOptions:      reasonMalformed,
		packet.ErrPacketType:      reasonProtocol,
		packet.ErrPacketIDZero:    reasonProtocol,
		packet.ErrTopicName:       reasonProtocol,
		packet.ErrNoFilters:       reasonProtocol,
	}
	e := newEnv(t, func(c *Config) { c.MaxPacketSize = packet.TMaxSize })
	n := 0
	for _, c := range packet.TPackets() {
		if c.Err == nil || c.Server || c.Level != 0 || isV5Connect(c.Bytes()) {
			continue // 5.0: TestBadInputsV5FromCodecTable
		}
		want, ok := reasonOf[c.Err]
		if !ok {
			// A CONNECT the server answers with a CONNACK code
			// (protocol level) is TestBadConnectReplies' case.
			continue
		}
		n++
		t.Run(c.Name, func(t *testing.T) {
			before := badInputCounts(e)
			r := dialRaw(t, e.addr)
			if c.Bytes()[0]>>4 != packet.CONNECT {
				r.send(connectPacket("alice", "tok-alice", "bad", true, 60))
				r.expectConnack(0)
			}
			r.send(c.Bytes())
			r.expectClosed()
			waitBadInput(t, e, before, want)
		})
	}
	if n < 80 {
		t.Fatalf("only %d bad packets in the codec table", n)
	}
}

func TestBadInputsClose(t *testing.T) {
	var logs *testutil.SyncBuffer
	e := newEnv(t, func(c *Config) { logs = captureLogs(c) })
	for _, c := range badInputs() {
		t.Run(c.name, func(t *testing.T) {
			before := badInputCounts(e)
			r := dialRaw(t, e.addr)
			if !c.raw {
				r.send(connectPacket("alice", "tok-alice", "bad", true, 60))
				r.expectConnack(0)
			}
			r.send(c.data)
			r.expectClosed()
			// Counted (and logged just before) once the server has
			// closed its side; the client may see the close first.
			waitBadInput(t, e, before, c.reason)
			lines := badInputLogLines(t, logs, r.LocalAddr().String())
			if len(lines) != 1 || lines[0]["reason"] != c.reason {
				t.Fatalf("bad-input log lines for this connection: %v, want one with reason %q", lines, c.reason)
			}
			if strings.Contains(logs.String(), "tok-") {
				t.Fatal("a token was logged")
			}
		})
	}
	if n := e.fwd.count(); n != 0 {
		t.Fatalf("%d messages forwarded", n)
	}
	if p := e.srv.Stats().Panics; p != 0 {
		t.Fatalf("%d panics", p)
	}
}

func TestBadConnectReplies(t *testing.T) {
	e := newEnv(t, nil)
	e.auth.addIdentity("tok-plus", Identity{ID: "+"})
	e.auth.addIdentity("tok-slash", Identity{ID: "alice/#"})
	long := strings.Repeat("x", 65535)
	cases := []struct {
		name string
		data []byte
		code byte
	}{
		{"B3 protocol level 6", tp("CONNECT B3 protocol level 6"), packet.ConnBadProtocol},
		{"B4 no credentials", tp("CONNECT minimal"), packet.ConnNotAuthorized},
		{"B4 username only", packet.AppendConnect(nil, &packet.Connect{CleanSession: true, KeepAlive: 60, ClientID: "p", UsernameFlag: true, Username: "alice"}), packet.ConnNotAuthorized},
		{"B4 empty password", packet.AppendConnect(nil, &packet.Connect{CleanSession: true, KeepAlive: 60, ClientID: "p", Username: "alice", PasswordFlag: true, Password: []byte{}}), packet.ConnBadCredentials},
		{"B4 victim's username, attacker's token", connectPacket("alice", "tok-bob", "p", true, 60), packet.ConnBadCredentials},
		{"B4 token with trailing space", connectPacket("alice", "tok-alice ", "p", true, 60), packet.ConnBadCredentials},
		{"B4 token with trailing NUL", connectPacket("alice", "tok-alice\x00", "p", true, 60), packet.ConnBadCredentials},
		{"B4 token with trailing newline", connectPacket("alice", "tok-alice\n", "p", true, 60), packet.ConnBadCredentials},
		{"B4 65535-byte token", connectPacket("alice", long, "p", true, 60), packet.ConnBadCredentials},
		{"B5 empty client id, clean 0", tp("CONNECT B5 empty client id, clean 0"), packet.ConnIDRejected},
		{"B5 empty client id, clean 0, credentials", connectPacket("alice", "tok-alice", "", false, 60), packet.ConnIDRejected},
		{"C5 username + (example)", tp("CONNECT C5 username +"), packet.ConnBadCredentials},
		{"C5 token for identity +", connectPacket("+", "tok-plus", "p", true, 60), packet.ConnBadCredentials},
		{"C5 token for identity alice/#", connectPacket("alice/#", "tok-slash", "p", true, 60), packet.ConnBadCredentials},
		{"D1 will to a stranger's private topic", withWill("w", "/private/carol", 1), packet.ConnNotAuthorized},
		{"D1 will to a group it may not publish to", withWill("w", "/group/g2", 0), packet.ConnNotAuthorized},
		{"D1 will to $SYS", withWill("w", "$SYS/x", 0), packet.ConnNotAuthorized},
		{"D1 will to /service", withWill("w", "/service/auth", 0), packet.ConnNotAuthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, e.addr)
			r.send(c.data)
			r.expectConnack(c.code)
			r.expectClosed()
		})
	}
	t.Run("B5 empty client id, clean 1: assigned", func(t *testing.T) {
		r := dialRaw(t, e.addr)
		r.send(connectPacket("alice", "tok-alice", "", true, 60))
		r.expectConnack(0)
		r2 := dialRaw(t, e.addr)
		r2.send(connectPacket("alice", "tok-alice", "", true, 60))
		r2.expectConnack(0)
		// two distinct sessions: neither took the other over
		r.ping()
		r.mustRead(packet.PINGRESP)
	})
	t.Run("auth backend down", func(t *testing.T) {
		e.auth.unavailable.Store(true)
		defer e.auth.unavailable.Store(false)
		r := dialRaw(t, e.addr)
		r.send(connectPacket("alice", "tok-alice", "p", true, 60))
		r.expectConnack(packet.ConnServerUnavailable)
		r.expectClosed()
	})
}

func TestIdentityComesFromToken(t *testing.T) {
	// An authenticator that ignores the username (as a device-key or
	// token-only backend might) still yields the token's identity.
	e := newEnv(t, nil)
	e.auth.ignoreUsername.Store(true)
	r := dialRaw(t, e.addr)
	r.send(connectPacket("alice", "tok-bob", "x", true, 60))
	r.expectConnack(0)
	codes := r.subscribe(1, "/private/alice/#", "/private/bob/#")
	if codes[0] != 0x80 || codes[1] != 1 {
		t.Fatalf("suback %v: the ACL used the username", codes)
	}
}

func TestSlowloris(t *testing.T) {
	// Nothing, or a partial CONNECT, within ConnectTimeout → close.
	var logs *testutil.SyncBuffer
	e := newEnv(t, func(c *Config) { c.ConnectTimeout = 200 * time.Millisecond; logs = captureLogs(c) })
	for _, data := range [][]byte{nil, tp("CONNECT minimal")[:4], tp("CONNECT minimal")[:1]} {
		before := badInputCounts(e)
		r := dialRaw(t, e.addr)
		if data != nil {
			r.send(data)
		}
		start := time.Now()
		r.expectClosed()
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("closed after %v", d)
		}
		waitBadInput(t, e, before, reasonTimeout)
		if lines := badInputLogLines(t, logs, r.LocalAddr().String()); len(lines) != 1 || lines[0]["reason"] != reasonTimeout {
			t.Fatalf("% x: bad-input log lines %v", data, lines)
		}
	}
}

func TestPartialPacketAfterConnect(t *testing.T) {
	// With keepalive 0 there is no idle timeout, but a packet whose
	// header has arrived must still arrive whole within ConnectTimeout.
	e := newEnv(t, func(c *Config) { c.ConnectTimeout = 200 * time.Millisecond })
	before := badInputCounts(e)
	r := dialRaw(t, e.addr)
	r.send(connectPacket("alice", "tok-alice", "x", true, 0))
	r.expectConnack(0)
	r.send(packet.AppendPublish(nil, 0, false, false, 0, make([]byte, 121), "/private/alice")[:5]) // PUBLISH declaring 137 bytes, 2 sent
	start := time.Now()
	r.expectClosed()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v", d)
	}
	waitBadInput(t, e, before, reasonTimeout)
}

func TestPartialFixedHeaderAfterConnect(t *testing.T) {
	// The packet deadline starts at a packet's first byte, not
	// once its fixed header is whole: "30 80" (a remaining length still
	// to come) with keepalive 0 is closed after ConnectTimeout, and so is
	// a lone first byte.
	e := newEnv(t, func(c *Config) { c.ConnectTimeout = 200 * time.Millisecond })
	publish := packet.AppendPublish(nil, 0, false, false, 0, make([]byte, 200), "/private/alice")
	for _, data := range [][]byte{publish[:2], publish[:1], packet.AppendPingreq(nil)[:1]} {
		before := badInputCounts(e)
		r := dialRaw(t, e.addr)
		r.send(connectPacket("alice", "tok-alice", "x", true, 0))
		r.expectConnack(0)
		r.send(data)
		start := time.Now()
		r.expectClosed()
		if d := time.Since(start); d > time.Second {
			t.Fatalf("% x: closed after %v", data, d)
		}
		waitBadInput(t, e, before, reasonTimeout)
	}
}

func TestSubscribeRefusals(t *testing.T) {
	// SUBACK 0x80 per refused filter (wildcards where the identity goes,
	// level boundaries, shared subscriptions), others granted.
	e := newEnv(t, nil)
	r := connectRaw(t, e, "alice", "s", true)
	refused := []string{
		"#", "/#", "+/+", "/private/+", "/private/#", "/+/alice", "+/private/alice", "/private/+/x",
		"/private/alice2", "/private/alicebob", "/private/bob", "/private/bob/#",
		"/group/g2", "/group/+", "/group/#", "/group/g1/#", "/group/g1x",
		"$share/g/private/bob", "$share/g/#", "$share/g//private/alice", "$share/g/",
		"$SYS/#", "/service/auth", "\uFEFF/private/alice", "/private/ALICE",
	}
	for i, f := range refused {
		if codes := r.subscribe(uint16(i+1), f); codes[0] != packet.SubackFailure {
			t.Errorf("filter %q granted %#x", f, codes[0])
		}
	}
	granted := []string{"/private/alice", "/private/alice/#", "/private/alice/group/+", "/group/g1"}
	codes := r.subscribe(100, granted...)
	for i, c := range codes {
		if c != 1 {
			t.Errorf("filter %q: %#x", granted[i], c)
		}
	}
	// Nothing from bob's tree or from a group she is not in reaches
	// alice, even with alice among the recipients of bob's direct message
	// (the router delivers a direct message to its addressee only); bob
	// and carol, subscribed, do get theirs, so something was published.
	bob := connectRaw(t, e, "bob", "b", true)
	bob.subscribe(1, "/private/bob/#")
	carol := connectRaw(t, e, "carol", "c", true)
	carol.subscribe(1, "/private/carol/#")
	e.srv.Deliver(&message.Message{ID: 1, Kind: message.Direct, From: "d1", To: "bob", QoS: 1, Payload: []byte("for bob")}, []string{"alice", "bob"})
	e.srv.Deliver(&message.Message{ID: 2, Kind: message.Group, From: "d1", To: "g2", QoS: 1, Payload: []byte("for g2")}, e.acl.memberList("g2"))
	if p := bob.readPublish(); string(p.Payload) != "for bob" {
		t.Fatalf("bob got %q", p.Payload)
	}
	if p := carol.readPublish(); string(p.Payload) != "for g2" {
		t.Fatalf("carol got %q", p.Payload)
	}
	r.expectQuiet()
}

func TestSubscriptionCap(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxSubscriptions = 2 })
	r := connectRaw(t, e, "alice", "s", true)
	codes := r.subscribe(1, "/private/alice", "/private/alice/#", "/private/alice/x", "/private/alice")
	if fmt.Sprint(codes) != fmt.Sprint([]byte{1, 1, 0x80, 1}) {
		t.Fatalf("codes %v", codes)
	}
	// unsubscribe frees room
	u := packet.Unsubscribe{PacketID: 2, Filters: []string{"/private/alice"}}
	r.send(packet.AppendUnsubscribe(nil, &u))
	r.mustRead(packet.UNSUBACK)
	if codes := r.subscribe(3, "/private/alice/x"); codes[0] != 1 {
		t.Fatalf("codes %v", codes)
	}
}

func TestPublishRefusals(t *testing.T) {
	// Odd levels, $ topics, service topics, other trees: silently dropped, QoS 1 still
	// acked, the connection stays, nothing is delivered.
	e := newEnv(t, nil)
	bob := connectRaw(t, e, "bob", "b", true)
	bob.subscribe(1, "/private/bob/#")
	r := connectRaw(t, e, "alice", "a", true)
	topics := []string{
		"/group/g1x", "/group/g1/secret", "/group/g1/", "/group//g1", "//group/g1", "/group/g1/../g2",
		"/group/g2", "$SYS/x", "$share/g/x", "$private/alice", "/service/auth", "/service/x",
		"/private/bob/group/g1", "/private/carol", "/private/", "plain", strings.Repeat("a", 60000),
		"\uFEFF/group/g1", "/group/G1", "/GROUP/g1", "／group／g1",
	}
	for i, topic := range topics {
		r.send(packet.AppendPublish(nil, 1, false, false, uint16(i+1), []byte("x"), topic))
		body := r.mustRead(packet.PUBACK)
		if pid, _ := packet.DecodeAck(packet.PUBACK<<4, body, packet.V311); pid != uint16(i+1) {
			t.Fatalf("PUBACK id %d for %d", pid, i+1)
		}
	}
	r.send(packet.AppendPublish(nil, 0, false, false, 0, []byte("x"), "/group/g2"))
	r.ping()
	r.mustRead(packet.PINGRESP)
	bob.expectQuiet()
	if n := e.fwd.count(); n != 0 {
		t.Fatalf("%d forwarded", n)
	}
	if s := e.srv.Stats(); s.Refusals != uint64(len(topics)+1) {
		t.Fatalf("refusals %d, want %d", s.Refusals, len(topics)+1)
	}
	// and an allowed one goes through
	r.publish(1, 99, "/group/g1", "ok")
	r.mustRead(packet.PUBACK)
	if p := bob.readPublish(); string(p.Payload) != "ok" {
		t.Fatalf("got %q", p.Payload)
	}
}

func TestQoS2Inbound(t *testing.T) {
	// QoS 2 accepted, delivered as QoS 1 to a QoS 1 subscription, a
	// repeated id before PUBREL forwarded once; ids awaiting PUBREL are
	// capped (maxQoS2In).
	e := newEnv(t, nil)
	bob := connectRaw(t, e, "bob", "b", true)
	bob.subscribe(1, "/private/bob/#")
	r := connectRaw(t, e, "alice", "a", true)
	for range 3 {
		r.send(packet.AppendPublish(nil, 2, true, false, 7, []byte("q2"), "/group/g1"))
		if pid, _ := packet.DecodeAck(packet.PUBREC<<4, r.mustRead(packet.PUBREC), packet.V311); pid != 7 {
			t.Fatalf("PUBREC %d", pid)
		}
	}
	p := bob.readPublish()
	if p.QoS != 1 || string(p.Payload) != "q2" {
		t.Fatalf("delivered %+v", p)
	}
	bob.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	bob.expectQuiet()
	r.send(packet.AppendAck(nil, packet.PUBREL, 7))
	r.mustRead(packet.PUBCOMP)
	if e.fwd.count() != 1 {
		t.Fatalf("forwarded %d", e.fwd.count())
	}
	// after PUBREL the id may be used again for a new message
	buf := []byte(nil)
	for pid := uint16(1); pid <= maxQoS2In; pid++ {
		buf = packet.AppendPublish(buf, 2, false, false, pid, []byte("n"), "/group/g1")
	}
	r.send(buf)
	for range maxQoS2In {
		r.mustRead(packet.PUBREC)
	}
	r.send(packet.AppendPublish(nil, 2, false, false, maxQoS2In+1, []byte("n"), "/group/g1"))
	r.expectClosed()
}

func TestConnectPacketSizeLimit(t *testing.T) {
	// Before authentication the packet limit is
	// MaxConnectPacketSize (80 KiB by default), not MaxPacketSize.
	e := newEnv(t, nil)
	big := packet.AppendConnect(nil, &packet.Connect{CleanSession: true, KeepAlive: 60, ClientID: strings.Repeat("c", 40000),
		Username: "alice", Password: []byte("tok-alice"),
		WillFlag: true, WillTopic: "/private/alice", WillPayload: []byte(strings.Repeat("w", 60000))})
	r := dialRaw(t, e.addr)
	r.send(big[:5]) // the fixed header is enough to refuse it
	r.expectClosed()
	// a normal CONNECT works, and after it the limit is MaxPacketSize
	r2 := connectRaw(t, e, "alice", "a", true)
	r2.subscribe(1, "/private/alice")
	payload := strings.Repeat("p", 100<<10)
	r2.publish(1, 2, "/private/alice", payload)
	// the loopback Forwarder delivers before the PUBACK is written
	if p := r2.readPublish(); string(p.Payload) != payload {
		t.Fatalf("got %d bytes", len(p.Payload))
	}
	r2.mustRead(packet.PUBACK)
	// the same limit for the auth PUBLISH of auth-topic mode
	e2 := newEnv(t, func(c *Config) { c.AuthTopic = true })
	r3 := dialRaw(t, e2.addr)
	r3.send(anonConnect("p"))
	r3.expectConnack(0)
	r3.send(packet.AppendPublish(nil, 0, false, false, 0, []byte(strings.Repeat("t", 100<<10)), "/service/auth")[:5])
	r3.expectClosed()
}

func TestBadInputReason(t *testing.T) {
	// What each transport hands closed(): the tcp transport's read
	// deadline is a *net.OpError around os.ErrDeadlineExceeded, the event
	// loop passes os.ErrDeadlineExceeded itself.
	tcpTimeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	cases := []struct {
		err  error
		want string
	}{
		{tcpTimeout, reasonTimeout},
		{os.ErrDeadlineExceeded, reasonTimeout},
		{packet.ErrRemainingLength, reasonMalformed},
		{packet.ErrShort, reasonMalformed},
		{packet.ErrFilter, reasonMalformed},
		{packet.ErrTooLarge, reasonTooLarge},
		{packet.ErrPacketType, reasonProtocol},
		{packet.ErrPacketIDZero, reasonProtocol},
		{packet.ErrTopicName, reasonProtocol},
		{errNotConnect, reasonProtocol},
		{errSecondConnect, reasonProtocol},
		{errUnexpectedPacket, reasonProtocol},
		{errQoS2Window, reasonProtocol},
		{fmt.Errorf("wrapped: %w", packet.ErrUTF8), reasonMalformed},
		// not refusals
		{io.EOF, ""},
		{io.ErrUnexpectedEOF, ""},
		{&net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}, ""},
		{&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, ""},
		{errClientDisconnect, ""},
		{errClosedByServer, ""},
		{errRefused, ""},
		{errAuthFailed, ""},
		{errForward, ""},
		{errConnPanic, ""},
		{context.DeadlineExceeded, ""},
	}
	for _, c := range cases {
		if got := badInputReason(c.err); got != c.want {
			t.Errorf("badInputReason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	for _, r := range badInputReasonList {
		if !slices.Contains(allReasons, r) {
			t.Errorf("reason %q not pre-registered", r)
		}
	}
}

func TestNormalClosesNotCounted(t *testing.T) {
	// DISCONNECT, end of stream between packets, a refused CONNECT,
	// takeover, revocation, token expiry and server shutdown are no bad
	// input: nothing counted under the bad-input reasons, no such line.
	var logs *testutil.SyncBuffer
	e := newEnv(t, func(c *Config) { logs = captureLogs(c) })
	e.auth.addIdentity("short", Identity{ID: "carol", TokenHash: tokenHash("short"), Expires: time.Now().Add(300 * time.Millisecond)})
	before := badInputCounts(e)

	r := connectRaw(t, e, "alice", "disc", true)
	r.disconnect()
	r.expectClosed()

	r = connectRaw(t, e, "alice", "eof", true)
	r.Abort()

	r = dialRaw(t, e.addr)
	r.send(connectPacket("alice", "wrong", "x", true, 60))
	r.expectConnack(packet.ConnBadCredentials)
	r.expectClosed()

	old := connectRaw(t, e, "bob", "same", true)
	connectRaw(t, e, "bob", "same", true)
	old.expectClosed()

	d := connectRaw(t, e, "d1", "d", true)
	e.srv.Revoke(tokenHash("tok-d1"))
	d.expectClosed()

	r = dialRaw(t, e.addr)
	r.send(connectPacket("carol", "short", "c", true, 60))
	r.expectConnack(0)
	r.expectClosed()

	connectRaw(t, e, "alice", "at-shutdown", true)
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := e.srv.Stats().Connections; n != 2 { // bob's new one, alice's last
			return fmt.Errorf("%d connections", n)
		}
		return nil
	})
	e.srv.Close() // returns once every connection's closed has run
	if got := badInputCounts(e); !maps.Equal(got, before) {
		t.Fatalf("bad-input refusals %v, want %v", got, before)
	}
	if strings.Contains(logs.String(), "bad input") {
		t.Fatalf("normal closes logged as bad input:\n%s", logs)
	}
}

// hostileRun sends one bad input over a plain socket (for goroutines
// other than the test's) and checks the server closes the connection
// without answering it.
func hostileRun(addr string, c badInput, clientID string) error {
	r, err := mqttc.DialTCP(addr, mqttc.Options{Timeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer r.Abort()
	if !c.raw {
		_, code, err := r.Connect(&packet.Connect{CleanSession: true, KeepAlive: 60, ClientID: clientID,
			Username: "alice", Password: []byte("tok-alice")}, 5*time.Second)
		if err != nil || code != packet.ConnAccepted {
			return fmt.Errorf("%s: CONNACK %#x %v", c.name, code, err)
		}
	}
	r.WritePacket(c.data, 5*time.Second) // the server may close before it has read everything
	h, body, err := r.ReadPacket(5 * time.Second)
	var ne net.Error
	switch {
	case err == nil:
		return fmt.Errorf("%s: got packet %#x % x, want close", c.name, h, body)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s: connection still open", c.name)
	}
	return nil
}

func TestBadInputsSpareBystanders(t *testing.T) {
	// Never another client's messages lost: while hostile
	// connections come and go (each bad input in turn on the test
	// goroutine, and all of them over and over from three more), bob,
	// subscribed, gets every group message d1 publishes exactly once and
	// in order.
	e := newEnv(t, func(c *Config) { c.ConnectRate = -1 })
	bob := connectRaw(t, e, "bob", "bystander", true)
	if codes := bob.subscribe(1, "/private/bob/#"); codes[0] != 1 {
		t.Fatalf("suback %v", codes)
	}
	d1 := connectRaw(t, e, "d1", "publisher", true)
	cases := badInputs()

	stop := make(chan struct{})
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	var runs atomic.Int64
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := hostileRun(e.addr, cases[i%len(cases)], fmt.Sprint("hostile", g)); err != nil {
					errs <- err
					return
				}
				runs.Add(1)
			}
		}()
	}

	var got, want []string
	for i, c := range cases {
		r := dialRaw(t, e.addr)
		if !c.raw {
			r.send(connectPacket("alice", "tok-alice", "fg", true, 60))
			r.expectConnack(0)
		}
		payload := fmt.Sprint("m", i)
		want = append(want, payload)
		d1.publish(1, uint16(i+1), "/group/g1", payload)
		r.send(c.data)
		p := bob.readPublish()
		bob.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
		if string(p.Topic) != "/private/bob/group/g1" {
			t.Fatalf("%s: bob got topic %q", c.name, p.Topic)
		}
		got = append(got, string(p.Payload))
		if pid, _ := packet.DecodeAck(packet.PUBACK<<4, d1.mustRead(packet.PUBACK), packet.V311); pid != uint16(i+1) {
			t.Fatalf("%s: PUBACK %d, want %d", c.name, pid, i+1)
		}
		r.expectClosed()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// one more message behind the others: a duplicate would come first
	d1.publish(1, 1000, "/group/g1", "last")
	d1.mustRead(packet.PUBACK)
	p := bob.readPublish()
	bob.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	got = append(got, string(p.Payload))
	want = append(want, "last")
	bob.expectQuiet()
	if !slices.Equal(got, want) {
		t.Fatalf("bob got %v, want %v", got, want)
	}
	if n := runs.Load(); n < int64(len(cases)) {
		t.Errorf("only %d background hostile runs", n)
	}
	if n := e.fwd.count(); n != len(want) {
		t.Fatalf("%d messages forwarded, want %d (only d1's)", n, len(want))
	}
	if p := e.srv.Stats().Panics; p != 0 {
		t.Fatalf("%d panics", p)
	}
	t.Logf("%d hostile connections in the background", runs.Load())
}
