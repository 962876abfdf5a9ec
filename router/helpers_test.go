package router

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// ---- in-memory Authenticator, ACL and a loopback Forwarder ----

// memAuth: tokens map to identities. A CONNECT's username must equal the
// token's principal unless ignoreUsername (to test that the ACL uses the
// token's identity).
type memAuth struct {
	mu             sync.Mutex
	tokens         map[string]Identity
	devices        map[string]bool // ids that AuthenticateCert admits (a certificate proves them)
	unavailable    atomic.Bool
	ignoreUsername atomic.Bool
	// onAuth, when set, is called with every identity the token lookup
	// accepts, just before Authenticate returns it.
	onAuth atomic.Pointer[func(Identity)]
}

func newMemAuth() *memAuth {
	return &memAuth{tokens: map[string]Identity{}, devices: map[string]bool{}}
}

// addDevice lets a client certificate for id log in.
func (a *memAuth) addDevice(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.devices[id] = true
}

func (a *memAuth) AuthenticateCert(_ context.Context, id string) (Identity, error) {
	if a.unavailable.Load() {
		return Identity{}, ErrAuthUnavailable
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.devices[id] {
		return Identity{}, ErrNotAuthorized
	}
	return Identity{ID: id, Device: true}, nil
}

func tokenHash(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

// add registers token tok for principal id.
func (a *memAuth) add(id, tok string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens[tok] = Identity{ID: id, TokenHash: tokenHash(tok)}
}

func (a *memAuth) addIdentity(tok string, id Identity) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tokens[tok] = id
}

func (a *memAuth) Authenticate(ctx context.Context, username string, password []byte) (Identity, error) {
	id, err := a.AuthenticateToken(ctx, password)
	if err != nil {
		return Identity{}, err
	}
	if !a.ignoreUsername.Load() && id.ID != username {
		return Identity{}, ErrBadCredentials
	}
	return id, nil
}

func (a *memAuth) AuthenticateToken(_ context.Context, token []byte) (Identity, error) {
	if a.unavailable.Load() {
		return Identity{}, ErrAuthUnavailable
	}
	a.mu.Lock()
	id, ok := a.tokens[string(token)]
	a.mu.Unlock()
	if !ok {
		return Identity{}, ErrBadCredentials
	}
	if f := a.onAuth.Load(); f != nil {
		(*f)(id)
	}
	return id, nil
}

// memACL: groups with members and publishers.
type memACL struct {
	// onIsMember, when set, is called (without the ACL's lock) at the
	// start of every IsMember.
	onIsMember atomic.Pointer[func(gid, id string)]
	mu         sync.Mutex
	members    map[string]map[string]bool // gid → ids
	publishers map[string]map[string]bool
}

func newMemACL() *memACL {
	return &memACL{members: map[string]map[string]bool{}, publishers: map[string]map[string]bool{}}
}

func (a *memACL) setMember(gid, id string, on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.members[gid] == nil {
		a.members[gid] = map[string]bool{}
	}
	a.members[gid][id] = on
}

func (a *memACL) setPublisher(gid, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.publishers[gid] == nil {
		a.publishers[gid] = map[string]bool{}
	}
	a.publishers[gid][id] = true
}

func (a *memACL) memberList(gid string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for id, on := range a.members[gid] {
		if on {
			out = append(out, id)
		}
	}
	return out
}

func (a *memACL) CanPublishGroup(id, gid string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.publishers[gid][id]
}

func (a *memACL) IsMember(gid, id string) bool {
	if f := a.onIsMember.Load(); f != nil {
		(*f)(gid, id)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.members[gid][id]
}

func (a *memACL) CanDirect(from, to string) bool {
	if from == to {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.members {
		if m[from] && m[to] {
			return true
		}
	}
	return false
}

// loopFwd delivers forwarded messages straight back to the server (a
// stand-in for fanout) and records them.
type loopFwd struct {
	acl  *memACL
	srv  atomic.Pointer[Server]
	fail atomic.Bool
	mu   sync.Mutex
	msgs []*message.Message
}

func (f *loopFwd) Forward(_ context.Context, m *message.Message) error {
	if f.fail.Load() {
		return errors.New("bus down")
	}
	// The router lends m and its payload (Forwarder contract): keep a copy.
	c := *m
	c.Payload = bytes.Clone(m.Payload)
	m = &c
	f.mu.Lock()
	f.msgs = append(f.msgs, m)
	f.mu.Unlock()
	switch m.Kind {
	case message.Group:
		f.srv.Load().Deliver(m, f.acl.memberList(m.To))
	case message.Topic:
		f.srv.Load().DeliverTopic(m)
	default:
		f.srv.Load().Deliver(m, []string{m.To})
	}
	return nil
}

func (f *loopFwd) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.msgs)
}

// ---- test server ----

type env struct {
	srv  *Server
	auth *memAuth
	acl  *memACL
	fwd  *loopFwd
	addr string
}

// newEnv starts a server on 127.0.0.1:0. Principals: alice, bob, carol
// (tokens tok-<id>), device d1 (tok-d1); group g1 has members alice and
// bob, publisher d1 and alice; group g2 has member carol.
func newEnv(t testing.TB, edit func(*Config)) *env {
	t.Helper()
	return newEnvWith(t, edit, nil)
}

// newEnvWith is newEnv with the server's Forwarder made by wrap from the
// loopFwd (nil: the loopFwd itself).
func newEnvWith(t testing.TB, edit func(*Config), wrap func(*loopFwd) Forwarder) *env {
	t.Helper()
	return newEnvSetup(t, edit, wrap, nil)
}

// newEnvSetup is newEnvWith with setup called on the env before the
// server serves.
func newEnvSetup(t testing.TB, edit func(*Config), wrap func(*loopFwd) Forwarder, setup func(*env)) *env {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID = "test"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("ROUTER_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.GoroutinePerConn = os.Getenv("ROUTER_TEST_GOROUTINES") != ""
	if edit != nil {
		edit(&cfg)
	}
	e := &env{auth: newMemAuth(), acl: newMemACL()}
	for _, id := range []string{"alice", "bob", "carol", "d1"} {
		e.auth.add(id, "tok-"+id)
	}
	e.acl.setMember("g1", "alice", true)
	e.acl.setMember("g1", "bob", true)
	e.acl.setPublisher("g1", "d1")
	e.acl.setPublisher("g1", "alice")
	e.acl.setMember("g2", "carol", true)
	e.fwd = &loopFwd{acl: e.acl}
	var fwd Forwarder = e.fwd
	if wrap != nil {
		fwd = wrap(e.fwd)
	}
	srv, err := New(cfg, e.auth, e.acl, fwd, message.NewIDSource("test"))
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.fwd.srv.Store(e.srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	if setup != nil {
		setup(e)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ln) }()
	t.Cleanup(func() {
		e.srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return e
}

// ---- raw TCP client ----

// rawClient is mqttc's raw connection with the test's failure handling.
type rawClient struct {
	t testing.TB
	*mqttc.Conn
}

func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := mqttc.DialTCP(addr, mqttc.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Abort() })
	return &rawClient{t: t, Conn: c}
}

func (r *rawClient) send(b []byte) {
	r.t.Helper()
	if err := r.WritePacket(b, 5*time.Second); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// read returns the next packet (a copy) or an error within timeout.
func (r *rawClient) read(timeout time.Duration) (byte, []byte, error) {
	h, body, err := r.ReadPacket(timeout)
	return h, bytes.Clone(body), err
}

func (r *rawClient) mustRead(want byte) []byte {
	r.t.Helper()
	h, body, err := r.read(5 * time.Second)
	if err != nil {
		r.t.Fatalf("reading packet type %d: %v", want, err)
	}
	if h>>4 != want {
		r.t.Fatalf("got packet type %d (% x), want %d", h>>4, body, want)
	}
	return body
}

// expectClosed asserts the server closes the connection (EOF or reset)
// without sending anything more.
func (r *rawClient) expectClosed() {
	r.t.Helper()
	h, body, err := r.read(5 * time.Second)
	if err == nil {
		r.t.Fatalf("expected close, got packet %#x % x", h, body)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("expected close, connection still open")
	}
}

// expectNothing asserts no packet arrives within d (and the connection
// stays open).
func (r *rawClient) expectNothing(d time.Duration) {
	r.t.Helper()
	h, body, err := r.read(d)
	if err == nil {
		r.t.Fatalf("expected nothing, got packet %#x % x", h, body)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		r.t.Fatalf("expected an open quiet connection, got %v", err)
	}
}

// expectQuiet asserts that the server has nothing queued for this
// client: a PINGREQ sent now is answered by the next packet. The server
// handles a connection's packets in order and writes its answers in
// order, so the PINGRESP also proves that everything sent before it has
// been handled, including whatever that did synchronously (a receipt, a
// released hold). It waits for the answer, not for a quiet period.
func (r *rawClient) expectQuiet() {
	r.t.Helper()
	r.send(packet.AppendPingreq(nil))
	h, body, err := r.read(5 * time.Second)
	if err != nil {
		r.t.Fatalf("waiting for PINGRESP: %v", err)
	}
	if h>>4 != packet.PINGRESP {
		r.t.Fatalf("expected nothing before the PINGRESP, got packet %#x % x", h, body)
	}
}

func (r *rawClient) expectConnack(code byte) (present bool) {
	r.t.Helper()
	body := r.mustRead(packet.CONNACK)
	p, c, err := packet.DecodeConnack(packet.CONNACK<<4, body, packet.V311)
	if err != nil {
		r.t.Fatalf("connack: %v", err)
	}
	if c != code {
		r.t.Fatalf("CONNACK code %#x, want %#x", c, code)
	}
	return p
}

func connectPacket(user, token, clientID string, clean bool, keepAlive uint16) []byte {
	c := packet.Connect{ClientID: clientID, CleanSession: clean, KeepAlive: keepAlive,
		Username: user, Password: []byte(token)}
	return packet.AppendConnect(nil, &c)
}

// connectRaw dials and logs in as id (token tok-<id>), expecting CONNACK 0.
func connectRaw(t testing.TB, e *env, id, clientID string, clean bool) *rawClient {
	t.Helper()
	r := dialRaw(t, e.addr)
	r.send(connectPacket(id, "tok-"+id, clientID, clean, 60))
	r.expectConnack(0)
	return r
}

// ping sends a PINGREQ.
func (r *rawClient) ping() { r.t.Helper(); r.send(packet.AppendPingreq(nil)) }

// disconnect sends a DISCONNECT.
func (r *rawClient) disconnect() { r.t.Helper(); r.send(packet.AppendDisconnect(nil)) }

// tryConnect is connectRaw for goroutines other than the test's: it
// reports failures as an error instead of failing the test. The caller
// closes the connection.
func tryConnect(addr, id, clientID string, clean bool) (*mqttc.Conn, error) {
	c, err := mqttc.DialTCP(addr, mqttc.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	_, code, err := c.Connect(&packet.Connect{ClientID: clientID, CleanSession: clean, KeepAlive: 60,
		Username: id, Password: []byte("tok-" + id)}, 5*time.Second)
	if err == nil && code != packet.ConnAccepted {
		err = fmt.Errorf("CONNACK code %#x", code)
	}
	if err != nil {
		c.Abort()
		return nil, fmt.Errorf("%s/%s: %w", id, clientID, err)
	}
	return c, nil
}

func (r *rawClient) subscribe(pid uint16, filters ...string) []byte {
	r.t.Helper()
	s := packet.Subscribe{PacketID: pid}
	for _, f := range filters {
		s.Filters = append(s.Filters, packet.Subscription{Filter: f, QoS: 1})
	}
	r.send(packet.AppendSubscribe(nil, &s))
	body := r.mustRead(packet.SUBACK)
	id, codes, err := packet.DecodeSuback(packet.SUBACK<<4, body, packet.V311)
	if err != nil || id != pid {
		r.t.Fatalf("suback: id %d err %v", id, err)
	}
	return codes
}

func (r *rawClient) publish(qos byte, pid uint16, topic string, payload string) {
	r.t.Helper()
	r.send(packet.AppendPublish(nil, qos, false, false, pid, []byte(payload), topic))
}

// readPublish reads the next PUBLISH.
func (r *rawClient) readPublish() packet.Publish {
	r.t.Helper()
	h, body, err := r.read(5 * time.Second)
	if err != nil {
		r.t.Fatalf("reading PUBLISH: %v", err)
	}
	var p packet.Publish
	if err := packet.DecodePublish(h, body, packet.V311, &p); err != nil {
		r.t.Fatalf("decoding PUBLISH (%#x % x): %v", h, body, err)
	}
	return p
}

// ---- paho client ----

type pahoMsg struct {
	topic   string
	payload string
	qos     byte
}

type pahoClient struct {
	c    mqtt.Client
	mu   sync.Mutex
	msgs []pahoMsg
}

func (p *pahoClient) handler(_ mqtt.Client, m mqtt.Message) {
	p.mu.Lock()
	p.msgs = append(p.msgs, pahoMsg{m.Topic(), string(m.Payload()), m.Qos()})
	p.mu.Unlock()
}

func (p *pahoClient) got() []pahoMsg {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]pahoMsg(nil), p.msgs...)
}

// waitMsgs waits until exactly n messages arrived (and no more soon after).
func (p *pahoClient) waitMsgs(t testing.TB, n int) []pahoMsg {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := len(p.got()); got < n {
			return fmt.Errorf("%d messages, want %d", got, n)
		}
		return nil
	})
	if got := p.got(); len(got) != n {
		t.Fatalf("got %d messages, want %d: %v", len(got), n, got)
	}
	return p.got()
}

func pahoOpts(e *env, user, token, clientID string, clean bool) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID(clientID).
		SetCleanSession(clean).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).SetConnectTimeout(5 * time.Second)
	if user != "" {
		o.SetUsername(user).SetPassword(token)
	}
	return o
}

func newPaho(t testing.TB, e *env, id, clientID string, clean bool) *pahoClient {
	t.Helper()
	p := &pahoClient{}
	o := pahoOpts(e, id, "tok-"+id, clientID, clean).SetDefaultPublishHandler(p.handler)
	p.c = mqtt.NewClient(o)
	tok := p.c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("paho connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { p.c.Disconnect(0) })
	return p
}

func (p *pahoClient) sub(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	tok := p.c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*mqtt.SubscribeToken).Result()[filter]
}

func (p *pahoClient) pub(t testing.TB, topic string, qos byte, payload string) {
	t.Helper()
	tok := p.c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}
