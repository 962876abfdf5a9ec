package router

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// mqttConn is the protocol side of one client connection (the handler of
// the seam in conn.go): CONNECT and authentication, PUBLISH with the ACL,
// SUBSCRIBE, acks, keepalive, will. It does no socket I/O and starts no
// goroutine; the transport calls it.

type connState uint8

const (
	stateConnect connState = iota // waiting for CONNECT
	stateAuth                     // auth-topic mode: CONNACK sent, waiting for the auth PUBLISH
	stateActive                   // authenticated, bound to a session
)

// Why a connection closed (handler.closed's err, in logs; badInputReason
// in refusal.go tells which count as bad input).
var (
	errClosedByServer   = errors.New("closed by server")
	errClientDisconnect = errors.New("client sent DISCONNECT")
	// errClientDisconnectWill: a 5.0 DISCONNECT with reason 0x04, which
	// asks for the will to be published.
	errClientDisconnectWill = errors.New("client sent DISCONNECT with will")
	errSecondConnect        = errors.New("second CONNECT")
	errRefused              = errors.New("connection refused")
	errAuthFailed           = errors.New("auth-topic login failed")
	errUnexpectedPacket     = errors.New("unexpected packet type") // a type clients never send
	errQoS2Window           = errors.New("too many QoS 2 packet ids awaiting PUBREL")
	errQoS1Window           = errors.New("too many QoS 1 publishes awaiting PUBACK")
	errForward              = errors.New("could not forward a QoS 1 message")
	errReplayStopped        = errors.New("replay stopped: the session went offline or away")
)

// maxLoggedRefusals: refused publishes and subscriptions are logged this
// many times per connection, then only counted.
const maxLoggedRefusals = 10

type willMsg struct {
	topic   string
	payload []byte
	qos     byte
	expiry  uint32        // 5.0 Message Expiry Interval, seconds; 0: none
	props   []byte        // 5.0 properties carried on
	delay   time.Duration // 5.0 Will Delay Interval
	retain  bool          // Will Retain: kept as its group's retained message
}

// The peer's address is the transport's (remoteAddr), not kept twice.
type mqttConn struct {
	srv *Server
	t   transport
	// No context lives as long as the connection (an idle connection's
	// memory is its protocol state and nothing else): each Authenticator call
	// gets its own, bounded by ConnectTimeout. Both transports call
	// closed only after the handler has returned, so there is no call in
	// progress to cancel then.

	// Small fields packed together: state and level are reader-side
	// (below); via and cert are set before the transport starts, then
	// read-only (cert: the TLS handshake verified a client certificate
	// against the client CA; certID is its Subject Common Name, the
	// principal it names); counted: counted in Server.m.connections,
	// under Server.mu.
	state   connState
	level   byte
	via     byte // viaTCP, viaTLS or viaWebSocket
	cert    bool
	counted bool

	// Reader-side state: only handlePacket and closed touch it.
	keepAlive time.Duration // 1.5 × the client's keepalive; 0: none
	clientID  string
	// clean: the session ends with the connection (3.1.1 clean session
	// 1, 5.0 Session Expiry Interval 0); cleanStart: an existing session
	// is discarded at CONNECT (3.1.1: the same flag; 5.0 Clean Start).
	clean, cleanStart bool
	// fresh: the session was made for this connection, not resumed
	// (set at bind; retain.go).
	fresh bool
	// lifetime: how long the session outlives the connection (3.1.1:
	// Config.SessionExpiry, 5.0: the interval granted); recvMax: the
	// client's Receive Maximum (0: none given); maxOut: its Maximum
	// Packet Size (0: none given). Set at CONNECT, read by the session.
	lifetime time.Duration
	recvMax  uint16
	maxOut   uint32
	v5       *v5Conn // nil on 3.1.1 and 3.1 connections
	will     *willMsg
	expire   *time.Timer
	refusals int
	pub      *packet.Publish // reused from PUBLISH to PUBLISH; made at the first: most subscribers never publish

	acks *pendingAcks // QoS 1 PUBACKs waiting for their Receipt (puback.go); nil until the first QoS 1 PUBLISH

	claimed *Claimed // the session's claim in the SessionStore (durable.go), made before bind
	// connack writes a 5.0 CONNACK with its properties (nil: 3.1.1's);
	// set at CONNECT, dropped at bind.
	connack func(buf []byte, present bool) []byte

	certID string // see cert

	// id is set before the connection is registered (bind) and never
	// changes after (no second CONNECT, no re-authentication).
	id   Identity
	sess atomic.Pointer[session]
	// flags are the connFlags set from any goroutine, never cleared.
	flags connFlags
	// seq is this node's number for the connection, set when it logs in
	// (ConnInfo.Seq); it fills what would be padding before answered.
	seq uint32
	// answered: the first tag of the answer FIFO not answered yet
	// (puback.go).
	answered atomic.Uint64
}

// connFlags are a connection's one-way flags, set from any goroutine,
// in one word (an idle connection's size counts).
type connFlags struct{ v atomic.Uint32 }

const (
	flagNoWill    uint32 = 1 << iota // closed by the server for a reason that skips the will
	flagV5                           // v5 != nil, for kill from other goroutines
	flagConnacked                    // the CONNACK went out (a DISCONNECT may follow it)
	flagKilled                       // the server closes the connection: its packets are no longer handled while the close flushes
	// flagNoForward: the server closed this connection with QoS 1
	// messages unanswered (one could not be stored, a takeover,
	// shutdown): those stored later are not forwarded, since the client
	// sends them again after reconnecting, in order (puback.go, Stored).
	flagNoForward
	flagEnded     // closed was called (qos2.go reads it with answered)
	flagTakenOver // another connection of the same client id took the session over (events)
)

func (f *connFlags) set(flag uint32)      { f.v.Or(flag) }
func (f *connFlags) has(flag uint32) bool { return f.v.Load()&flag != 0 }

// publishScratch returns c.pub, made if need be. Reader side only.
func (c *mqttConn) publishScratch() *packet.Publish {
	if c.pub == nil {
		c.pub = new(packet.Publish)
	}
	return c.pub
}

func newMQTTConn(srv *Server, t transport) *mqttConn {
	return &mqttConn{srv: srv, t: t}
}

// authContext bounds one Authenticator call by ConnectTimeout.
func (c *mqttConn) authContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.srv.cfg.ConnectTimeout)
}

// kill closes the connection from any goroutine. publishWill: whether
// its will is published (takeover: yes; revoke, token expiry, server
// shutdown: no). A 3.1.1 connection closes at once; a 5.0 one is sent a
// DISCONNECT with reason code first, flushed with what is buffered.
func (c *mqttConn) kill(publishWill bool, code byte) {
	if !publishWill {
		c.flags.set(flagNoWill)
	}
	c.flags.set(flagKilled) // no packet is handled after this one
	if c.flags.has(flagV5) && c.flags.has(flagConnacked) {
		ref := ""
		if code == packet.CodeServerShuttingDown && c.srv.cfg.RedirectHome {
			// Draining: its home is another node now (this one left
			// the ring), which the client is told to use.
			if c.sess.Load() != nil {
				ref = c.srv.homeAddr(c)
			}
			if ref != "" {
				code = packet.CodeUseAnotherServer
			}
		}
		c.writeDisconnect(code, ref)
		c.t.close(true)
		return
	}
	c.t.close(false)
}

// ---- handler ----

// mayBlock: until the client is authenticated, handling a packet calls
// the Authenticator, which may wait on the store; with rule topics
// between nodes, a SUBSCRIBE waits for the cluster to know the node's
// interest (syncWatches).
func (c *mqttConn) mayBlock(header byte) bool {
	return c.state != stateActive || header>>4 == packet.SUBSCRIBE && c.srv.topicIdx.interest != nil
}

func (c *mqttConn) handlePacket(header byte, body []byte) error {
	if h := c.srv.hookPacket.Load(); h != nil {
		(*h)(header, body)
	}
	if c.flags.has(flagKilled) {
		return errClosedByServer
	}
	switch c.state {
	case stateConnect:
		return c.handleConnect(header, body)
	case stateAuth:
		return c.handleAuth(header, body)
	}
	switch header >> 4 {
	case packet.PUBLISH:
		return c.handlePublish(header, body)
	case packet.PUBACK:
		pid, _, err := packet.DecodeAckCode(header, body, c.level)
		if err != nil {
			return err
		}
		c.sess.Load().ack(c, pid) // an error code from the client ends the message too
	case packet.PUBREL:
		pid, err := packet.DecodeAck(header, body, c.level)
		if err != nil {
			return err
		}
		c.handlePubrel(pid)
	case packet.PUBREC:
		pid, code, err := packet.DecodeAckCode(header, body, c.level)
		if err != nil {
			return err
		}
		c.sess.Load().received(c, pid, code)
	case packet.PUBCOMP:
		pid, _, err := packet.DecodeAckCode(header, body, c.level)
		if err != nil {
			return err
		}
		c.sess.Load().completed(c, pid)
	case packet.SUBSCRIBE:
		return c.handleSubscribe(header, body)
	case packet.UNSUBSCRIBE:
		u := new(packet.Unsubscribe) // rare: not kept on the connection, whose idle size counts
		if err := packet.DecodeUnsubscribe(header, body, c.level, u); err != nil {
			return err
		}
		codes := c.sess.Load().unsubscribe(c, u.Filters, make([]byte, 0, len(u.Filters)))
		c.sess.Load().saveSubs()
		buf, _, _ := c.t.beginWrite()
		if c.v5 != nil {
			buf = packet.AppendUnsubackV5(buf, u.PacketID, codes, "")
		} else {
			buf = packet.AppendUnsuback(buf, u.PacketID)
		}
		c.t.endWrite(buf)
	case packet.PINGREQ:
		if err := packet.DecodeEmpty(header, body, c.level); err != nil {
			return err
		}
		buf, _, _ := c.t.beginWrite()
		c.t.endWrite(packet.AppendPingresp(buf))
	case packet.DISCONNECT:
		var d packet.Disconnect
		if err := packet.DecodeDisconnect(header, body, c.level, &d); err != nil {
			return err
		}
		if c.v5 != nil {
			return c.disconnectV5(&d)
		}
		c.will = nil // [MQTT-3.14.4-3]
		return errClientDisconnect
	case packet.CONNECT:
		return errSecondConnect
	case packet.AUTH:
		return errAuthPacket // only 5.0 clients get here (checkHeader)
	default:
		// AUTH on 3.1.1, server-to-client and reserved types.
		return errUnexpectedPacket
	}
	return nil
}

func (c *mqttConn) drained() {
	if s := c.sess.Load(); s != nil {
		s.drain(c)
	}
}

func (c *mqttConn) closed(err error) {
	c.flags.set(flagEnded)
	if c.expire != nil {
		c.expire.Stop()
	}
	c.srv.detach(c)
	c.dropAcks()
	if c.state == stateActive && c.will != nil && !c.flags.has(flagNoWill) && !errors.Is(err, errClientDisconnect) {
		// (errClientDisconnectWill: a 5.0 client asked for it)
		if c.will.delay > 0 {
			c.delayWill()
		} else {
			c.publishWill()
		}
	}
	if e := c.srv.m.hook(); e != nil && c.state == stateActive {
		e.Disconnected(c.info(), c.disconnectReason(err))
	}
	if !c.countBadInput(err) {
		c.srv.log.Debug("mqtt: connection closed", "id", c.id.ID, "client_id", c.clientID, "remote", c.remoteAddr(), "reason", err)
	}
}

// ---- CONNECT ----

func (c *mqttConn) handleConnect(header byte, body []byte) error {
	var cp packet.Connect
	if err := packet.DecodeConnect(header, body, &cp); err != nil {
		var pe *packet.Error
		if errors.As(err, &pe) && pe.Code == packet.CodeUnsupportedVersion {
			// Unknown levels get the 3.1.1 CONNACK, which any
			// client reads ([MQTT-3.1.2-2]).
			return c.refuse(packet.ConnBadProtocol, resultBadProtocol)
		}
		if cp.ProtocolLevel == packet.V5 && pe != nil {
			// A 5.0 CONNECT that does not decode is answered with
			// its reason code (3.2.2.2), then closed as bad input.
			buf, _, _ := c.t.beginWrite()
			c.t.endWrite(packet.AppendConnackV5(buf, false, connackCode(pe.Code), nil))
		}
		return err // malformed: close (3.1.1: without CONNACK)
	}
	cfg := &c.srv.cfg
	c.level = cp.ProtocolLevel
	c.clean, c.cleanStart = cp.CleanSession, cp.CleanSession
	c.lifetime = cfg.SessionExpiry
	c.clientID = cp.ClientID
	c.keepAlive = time.Duration(cp.KeepAlive) * 1500 * time.Millisecond
	var expiry uint32
	if c.level == packet.V5 {
		var err error
		if expiry, err = c.connectV5(&cp); err != nil {
			if err == errBadAuthMethod {
				return c.refuse(packet.CodeBadAuthMethod, resultBadAuthMethod)
			}
			return c.refuse(err.(*packet.Error).Code, resultBadProtocol)
		}
	}
	assigned := false
	if c.clientID == "" {
		if !c.clean && c.v5 == nil {
			return c.refuse(packet.ConnIDRejected, resultIDRejected) // [MQTT-3.1.3-8]
		}
		c.clientID = c.srv.assignClientID() // 5.0: told in CONNACK [MQTT-3.2.2-16]
		assigned = true
	}
	if cp.WillFlag {
		// The codec has checked the will topic is a valid topic name (a
		// wildcard closes); the ACL is checked once the identity is
		// known, and again when the will is published.
		c.will = &willMsg{topic: cp.WillTopic, payload: cp.WillPayload, qos: cp.WillQoS, retain: cp.WillRetain}
		if c.v5 != nil {
			wp := &cp.WillProps
			c.will.expiry = wp.MessageExpiry // 0: none
			c.will.delay = time.Duration(wp.WillDelay) * time.Second
			c.will.props = packet.AppendForwardProps(nil, wp)
		}
	}
	if c.v5 != nil {
		c.connack = func(buf []byte, present bool) []byte {
			return packet.AppendConnackV5(buf, present, packet.CodeSuccess, c.connackProps(&cp, assigned, expiry))
		}
	}

	if c.cert {
		// A verified client certificate names the principal: a username
		// must agree with it; with no password the certificate alone
		// logs a device in. With a password, the credentials are
		// checked as for any client (a user with a certificate still
		// logs in with a token).
		if cp.UsernameFlag && cp.Username != c.certID {
			c.srv.log.Info("mqtt: username differs from the client certificate's common name", "cn", c.certID, "remote", c.remoteAddr())
			return c.refuse(packet.ConnNotAuthorized, resultNotAuthorized)
		}
		if !cp.PasswordFlag {
			ctx, done := c.authContext()
			id, err := c.srv.auth.AuthenticateCert(ctx, c.certID)
			done()
			if err == nil && (!id.Device || id.ID != c.certID) {
				err = ErrNotAuthorized // never a user, never another principal
			}
			return c.login(id, err)
		}
	}
	if !cp.UsernameFlag && !cp.PasswordFlag && cfg.AuthTopic {
		// Auth-topic login: accepted but unauthenticated until the first
		// packet, a PUBLISH of the token (see handleAuth).
		if !c.srv.countConnected(c) {
			return c.refuse(packet.ConnServerUnavailable, resultUnavailable)
		}
		buf, _, _ := c.t.beginWrite()
		if c.connack != nil {
			buf = c.connack(buf, false)
			c.connack = nil
		} else {
			buf = packet.AppendConnack(buf, false, packet.ConnAccepted)
		}
		// Set before the CONNACK can reach the client (the write lock
		// is held): a kill once the client has it sends a DISCONNECT,
		// which goes after the CONNACK.
		c.flags.set(flagConnacked)
		c.t.endWrite(buf)
		c.state = stateAuth
		c.t.setTimeouts(time.Now().Add(cfg.ConnectTimeout), c.keepAlive)
		return nil
	}
	if !cp.UsernameFlag || !cp.PasswordFlag {
		return c.refuse(packet.ConnNotAuthorized, resultNotAuthorized)
	}
	ctx, done := c.authContext()
	id, err := c.srv.auth.Authenticate(ctx, cp.Username, cp.Password)
	done()
	return c.login(id, err)
}

// login finishes a CONNECT with the Authenticator's answer.
func (c *mqttConn) login(id Identity, err error) error {
	if code, result := c.checkIdentity(id, err); code != 0 {
		return c.refuse(code, result)
	}
	// From here on the identity is id.ID, whatever the username said.
	c.id = id
	if c.srv.cfg.RedirectHome {
		if addr := c.srv.homeAddr(c); addr != "" {
			return c.redirectHome(addr)
		}
	}
	if !c.willAllowed() {
		return c.refuse(packet.ConnNotAuthorized, resultNotAuthorized)
	}
	connack := c.connack
	if connack == nil {
		connack = func(buf []byte, present bool) []byte {
			return packet.AppendConnack(buf, present, packet.ConnAccepted)
		}
	}
	c.connack = nil
	code := c.srv.bind(c, connack)
	if code == packet.ConnBadCredentials {
		return c.refuse(code, resultBadCredentials) // revoked meanwhile
	}
	if code != 0 {
		return c.refuse(code, resultUnavailable)
	}
	c.activate()
	return nil
}

// checkIdentity maps an Authenticator answer to a CONNACK code (0: ok).
func (c *mqttConn) checkIdentity(id Identity, err error) (code byte, result string) {
	switch {
	case err == nil:
	case errors.Is(err, ErrBadCredentials):
		return packet.ConnBadCredentials, resultBadCredentials
	case errors.Is(err, ErrNotAuthorized):
		return packet.ConnNotAuthorized, resultNotAuthorized
	default: // ErrAuthUnavailable or anything unexpected: fail closed
		c.srv.log.Warn("mqtt: authentication failed", "err", err, "remote", c.remoteAddr())
		return packet.ConnServerUnavailable, resultUnavailable
	}
	if !validID(id.ID) {
		// The store never issues such ids; refuse rather than put a
		// wildcard or a '/' into the ACL.
		c.srv.log.Error("mqtt: authenticator returned an invalid principal id", "remote", c.remoteAddr())
		return packet.ConnBadCredentials, resultBadCredentials
	}
	if !id.Expires.IsZero() && !time.Now().Before(id.Expires) {
		return packet.ConnBadCredentials, resultBadCredentials
	}
	return 0, ""
}

// refuse sends CONNACK code (3.1.1's; a 5.0 client gets the matching
// reason code, and result as its Reason String) and closes.
func (c *mqttConn) refuse(code byte, result string) error {
	c.srv.m.connect(result) // counted before the client can see the CONNACK
	buf, _, _ := c.t.beginWrite()
	if c.v5 != nil {
		props := &packet.Properties{ReasonString: strings.ReplaceAll(result, "_", " ")}
		props.Set(packet.PropReasonString)
		buf = packet.AppendConnackV5(buf, false, v5Reason(code), props)
	} else {
		buf = packet.AppendConnack(buf, false, code)
	}
	c.t.endWrite(buf)
	c.srv.log.Info("mqtt: connection refused", "code", code, "result", result, "id", c.id.ID, "remote", c.remoteAddr())
	return errRefused
}

// activate finishes a successful login.
func (c *mqttConn) activate() {
	c.state = stateActive
	c.t.setTimeouts(time.Time{}, c.keepAlive)
	c.t.setMaxPacket(c.srv.cfg.MaxPacketSize)
	if !c.id.Expires.IsZero() {
		c.expire = time.AfterFunc(time.Until(c.id.Expires), func() {
			c.srv.log.Info("mqtt: session token expired, disconnecting", "id", c.id.ID, "remote", c.remoteAddr())
			c.kill(false, packet.CodeMaximumConnectTime)
		})
	}
	c.srv.m.connect(resultAccepted)
	c.seq = c.srv.connSeq.Add(1)
	if e := c.srv.m.hook(); e != nil {
		e.Connected(c.info())
	}
	c.srv.log.Debug("mqtt: connected", "id", c.id.ID, "client_id", c.clientID, "clean", c.clean, "remote", c.remoteAddr())
}

// willAllowed checks the will topic against the ACL for c.id.
func (c *mqttConn) willAllowed() bool {
	if c.will == nil {
		return true
	}
	if _, _, ok := c.willTarget(); ok {
		return true
	}
	c.srv.m.refusal(reasonWillACL)
	c.srv.log.Warn("mqtt: will topic not allowed", "id", c.id.ID, "topic", logTopic(&c.srv.tp, []byte(c.will.topic)), "remote", c.remoteAddr())
	return false
}

func (c *mqttConn) willTarget() (kind message.Kind, to string, ok bool) {
	kind, to, reason := c.srv.publishTo(&c.id, []byte(c.will.topic))
	return kind, to, reason == ""
}

// publishWill publishes the will after an abnormal close, if the ACL
// still allows it (checked again now: a membership may have ended since
// the CONNECT).
func (c *mqttConn) publishWill() {
	kind, to, ok := c.willTarget()
	if !ok {
		c.srv.m.refusal(reasonWillACL)
		c.srv.log.Warn("mqtt: will topic no longer allowed, not published", "id", c.id.ID, "remote", c.remoteAddr())
		return
	}
	m := &message.Message{
		ID: c.srv.ids.Next(), Kind: kind, From: c.id.ID, To: to,
		QoS: c.will.qos, Payload: c.will.payload, Props: c.will.props,
	}
	if c.will.expiry != 0 {
		m.Expires = time.Now().UnixMilli() + int64(c.will.expiry)*1000
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.ConnectTimeout)
	defer cancel()
	if err := c.srv.forward(ctx, m); err != nil {
		c.srv.m.refusal(reasonForwardFailed)
		c.srv.log.Warn("mqtt: could not publish will", "id", c.id.ID, "err", err)
		return
	}
	c.srv.m.messageIn(kind)
	if c.will.retain && kind == message.Group && c.srv.retained != nil {
		c.retainUnacked(m)
	}
}

// ---- auth-topic login ----

type authReply struct {
	OK           bool   `json:"ok"`
	ID           string `json:"id,omitempty"`
	PrivateTopic string `json:"private_topic,omitempty"`
	Error        string `json:"error,omitempty"`
}

// handleAuth handles the first packet after an unauthenticated CONNACK:
// it must be a PUBLISH of a session token to an auth topic.
func (c *mqttConn) handleAuth(header byte, body []byte) error {
	tp := &c.srv.tp
	if header>>4 != packet.PUBLISH {
		return c.authFail(tp.authTopic, "authentication required: publish your session token to "+tp.authTopic)
	}
	p := c.publishScratch()
	if err := packet.DecodePublish(header, body, c.level, p); err != nil {
		return err
	}
	token, ok := tp.authToken(p.Topic, p.Payload)
	if !ok {
		return c.authFail(tp.authTopic, "authentication required: publish your session token to "+tp.authTopic)
	}
	topic := string(p.Topic)
	qos, pid := p.QoS, p.PacketID
	ctx, done := c.authContext()
	id, err := c.srv.auth.AuthenticateToken(ctx, token)
	done()
	if code, _ := c.checkIdentity(id, err); code != 0 {
		if code == packet.ConnServerUnavailable {
			return c.authFail(topic, "authentication unavailable")
		}
		return c.authFail(topic, "invalid session token")
	}
	c.id = id
	if !c.willAllowed() {
		return c.authFail(topic, "will topic not authorized")
	}
	reply, _ := json.Marshal(authReply{OK: true, ID: id.ID, PrivateTopic: tp.privateSlash + id.ID})
	// In this mode CONNACK went out before the principal was known, so it
	// said session present = 0 even when a persistent session is resumed
	// here (its subscriptions and queue are kept).
	code := c.srv.bind(c, func(buf []byte, _ bool) []byte {
		switch qos {
		case 1:
			buf = packet.AppendAck(buf, packet.PUBACK, pid)
		case 2:
			buf = packet.AppendAck(buf, packet.PUBREC, pid)
		}
		return c.appendReply(buf, reply, topic)
	})
	if code == packet.ConnBadCredentials {
		return c.authFail(topic, "invalid session token") // revoked meanwhile
	}
	if code != 0 {
		return c.authFail(topic, "server unavailable")
	}
	if qos == 2 && !c.sess.Load().qos2Add(c, pid, false, 0) {
		return errQoS2Window
	}
	c.activate()
	return nil
}

// appendReply appends the QoS 0 PUBLISH of an auth-topic answer, in the
// connection's protocol level.
func (c *mqttConn) appendReply(buf, reply []byte, topic string) []byte {
	var pp *packet.PublishProps
	if c.v5 != nil {
		pp = new(packet.PublishProps)
	}
	return packet.AppendPublishV5(buf, 0, false, false, 0, pp, reply, topic)
}

// authFail answers a failed auth-topic login on topic and closes.
func (c *mqttConn) authFail(topic, reason string) error {
	reply, _ := json.Marshal(authReply{OK: false, Error: reason})
	c.srv.m.connect(resultAuthTopicFail) // counted before the client sees the reply
	buf, _, _ := c.t.beginWrite()
	c.t.endWrite(c.appendReply(buf, reply, topic))
	c.srv.log.Info("mqtt: auth-topic login failed", "reason", reason, "remote", c.remoteAddr())
	return errAuthFailed
}

// ---- PUBLISH ----

func (c *mqttConn) handlePublish(header byte, body []byte) error {
	p := c.publishScratch()
	if err := packet.DecodePublish(header, body, c.level, p); err != nil {
		return err // QoS 3, DUP at QoS 0, wildcard or bad topic, id 0: close
	}
	if c.v5 != nil {
		if err := c.checkPublishV5(p); err != nil {
			return err
		}
	}
	// Every PUBLISH counts against the principal's rate, refused ones
	// too (they cost the node as much to read); over it, the next packet
	// of this connection waits (limits.go).
	c.throttle(len(body))
	qos, pid := p.QoS, p.PacketID
	sess := c.sess.Load()
	if qos == 2 && sess.qos2Received(pid) {
		// A retransmission before PUBREL: answered (behind what waits
		// for an answer), not forwarded again.
		c.answer(2, pid)
		return nil
	}
	kind, to, reason := c.srv.publishTo(&c.id, p.Topic)
	if reason != "" {
		// 3.1.1 has no negative ack: drop, log, count; still ack so the
		// client's flow does not stall. 5.0 says why (0x87).
		c.srv.m.refusal(reason)
		if c.refusals++; c.refusals <= maxLoggedRefusals {
			c.srv.log.Warn("mqtt: publish refused", "id", c.id.ID, "topic", logTopic(&c.srv.tp, p.Topic), "reason", reason, "remote", c.remoteAddr())
		}
		if c.v5 != nil && qos > 0 {
			buf, _, _ := c.t.beginWrite()
			c.t.endWrite(packet.AppendAckV5(buf, ackType(qos), pid, packet.CodeNotAuthorized, c.reasonString(reason)))
			return nil
		}
		if qos > 0 {
			c.answer(qos, pid) // a PUBREL follows, answered for an unknown id too
		}
		return nil
	}
	// The Forwarder keeps neither the message nor its payload (it
	// encodes them into envelopes), so both are borrowed: a pooled
	// Message and the packet's bytes in the read buffer.
	m := c.srv.msgs.Get().(*message.Message)
	defer c.srv.putMessage(m)
	*m = message.Message{
		ID: c.srv.ids.Next(), Kind: kind, From: c.id.ID, To: to,
		QoS: qos, Payload: p.Payload,
	}
	if c.v5 != nil {
		c.fillV5(m, p)
	}
	retain := p.Retain && kind == message.Group && c.srv.retained != nil
	if qos > 0 && c.srv.afwd != nil {
		return c.forwardAcked(m, qos, pid, retain)
	}
	if qos == 2 && !sess.qos2Add(c, pid, false, 0) {
		return errQoS2Window // before forwarding: its retransmission is new
	}
	if err := c.srv.forward(context.Background(), m); err != nil {
		c.srv.m.refusal(reasonForwardFailed)
		c.srv.log.Warn("mqtt: forward failed", "id", c.id.ID, "err", err, "remote", c.remoteAddr())
		if qos > 0 {
			// No PUBACK for what was not handed on: close, so the
			// client sends it again after reconnecting.
			if qos == 2 {
				sess.qos2Release(pid)
			}
			return errForward
		}
		return nil
	}
	c.srv.m.messageIn(kind)
	if retain && qos > 0 {
		// Handed on: the answer waits for the Retainer alone.
		tag, ok := c.pendAck(pid, qos, true)
		if !ok {
			return errQoS1Window
		}
		if qos == 2 {
			sess.qos2Add(c, pid, true, tag) // its PUBREC now waits in the FIFO (replaces the entry)
		}
		c.readyAck(tag, true)
		c.retainAcked(m, tag)
		return nil
	}
	if retain {
		c.retainUnacked(m)
	}
	if qos > 0 {
		c.answer(qos, pid)
	}
	return nil
}

// forwardAcked forwards QoS 1 or 2 message m, whose PUBACK or PUBREC
// for pid goes out when the Forwarder's Receipt says it was stored
// (puback.go). retain: m is also its group's retained message, and its
// answer waits for the Retainer too.
func (c *mqttConn) forwardAcked(m *message.Message, qos byte, pid uint16, retain bool) error {
	tag, ok := c.pendAck(pid, qos, retain)
	if !ok {
		return errQoS1Window
	}
	sess := c.sess.Load()
	if qos == 2 && !sess.qos2Add(c, pid, true, tag) {
		c.unpendAck(tag)
		return errQoS2Window // before forwarding: its retransmission is new
	}
	if err := c.srv.afwd.ForwardAcked(m, c, tag); err != nil {
		c.unpendAck(tag)
		if qos == 2 {
			sess.qos2Release(pid)
		}
		c.srv.m.refusal(reasonForwardFailed)
		c.srv.log.Warn("mqtt: forward failed", "id", c.id.ID, "err", err, "remote", c.remoteAddr())
		return errForward // no PUBACK: the client sends it again after reconnecting
	}
	c.srv.m.messageIn(m.Kind) // its answer waits for Stored
	if retain {
		c.retainAcked(m, tag)
	}
	return nil
}

// ackType is the packet that answers a PUBLISH of qos (1 or 2).
func ackType(qos byte) byte {
	if qos == 2 {
		return packet.PUBREC
	}
	return packet.PUBACK
}

func (c *mqttConn) writeAck(typ byte, pid uint16) {
	buf, _, _ := c.t.beginWrite()
	c.t.endWrite(packet.AppendAck(buf, typ, pid))
}

// logTopic renders a topic for a log line: truncated, and service topics
// (an auth topic may carry a token) reduced to their prefix.
func logTopic(tp *topics, t []byte) string {
	if bytes.HasPrefix(t, []byte(tp.serviceSlash)) || bytes.HasPrefix(t, []byte(tp.authTopicProto)) {
		return tp.service + "/…"
	}
	if len(t) > 128 {
		return string(t[:128]) + "…"
	}
	return string(t)
}

// ---- SUBSCRIBE ----

func (c *mqttConn) handleSubscribe(header byte, body []byte) error {
	s := new(packet.Subscribe) // rare: not kept on the connection, whose idle size counts
	if err := packet.DecodeSubscribe(header, body, c.level, s); err != nil {
		return err // invalid filter, no filters, QoS 3, reserved bits: close
	}
	if c.v5 != nil && s.Props.Is(packet.PropSubscriptionID) {
		return errSubIDs // announced as not available
	}
	sess := c.sess.Load()
	codes := make([]byte, 0, len(s.Filters)) // rare, as s
	var retained []retainedFilter
	watched := false // a rule topic filter new to the session: the SUBACK waits for the cluster's interest
	for _, f := range s.Filters {
		if len(f.Filter) > c.srv.cfg.MaxFilterLen {
			c.refuseFilter(reasonFilterTooLong, f.Filter)
			codes = append(codes, c.subackFailure(packet.CodeQuotaExceeded))
			continue
		}
		var t subTarget
		var ok bool
		t.gid, ok = c.srv.tp.subscribeTarget(c.id.ID, f.Filter)
		if ok && t.gid != "" && !c.srv.acl.IsMember(t.gid, c.id.ID) {
			ok = false
		} else if !ok {
			t.topic, t.byGroup = c.srv.subscribeTopic(c.id.ID, c.id.Device, f.Filter)
			ok = t.topic
		}
		if !ok {
			c.srv.m.refusal(reasonSubscribeACL)
			if c.refusals++; c.refusals <= maxLoggedRefusals {
				c.srv.log.Warn("mqtt: subscribe refused", "id", c.id.ID, "filter", logTopic(&c.srv.tp, []byte(f.Filter)), "remote", c.remoteAddr())
			}
			code := packet.CodeNotAuthorized
			if strings.HasPrefix(f.Filter, "$share/") {
				code = packet.CodeSharedSubNotSupported
			}
			codes = append(codes, c.subackFailure(code))
			continue
		}
		code, isNew := sess.subscribe(c, f.Filter, f.QoS, t)
		if code == packet.SubackFailure {
			code = c.subackFailure(packet.CodeQuotaExceeded) // the subscription caps
		} else if c.srv.retained != nil && !t.topic {
			retained = append(retained, retainedFilter{f.Filter, t.gid, code, f.RetainHandling, isNew})
		}
		watched = watched || t.topic && isNew
		codes = append(codes, code)
	}
	sess.saveSubs()
	if watched {
		c.syncWatches()
	}
	buf, _, _ := c.t.beginWrite()
	if c.v5 != nil {
		buf = packet.AppendSubackV5(buf, s.PacketID, codes, "")
	} else {
		buf = packet.AppendSuback(buf, s.PacketID, codes)
	}
	c.t.endWrite(buf)
	for _, r := range retained { // after the SUBACK
		c.sendRetained(sess, r.filter, r.gid, r.qos, r.rh, r.isNew)
	}
	return nil
}

// retainedFilter is a filter granted by a SUBSCRIBE whose retained
// messages go after the SUBACK.
type retainedFilter struct {
	filter, gid string
	qos, rh     byte
	isNew       bool
}

// subackFailure is the SUBACK code of a refused filter: code in 5.0,
// 0x80 before.
func (c *mqttConn) subackFailure(code byte) byte {
	if c.v5 != nil {
		return code
	}
	return packet.SubackFailure
}

// remoteAddr is the peer's address, for logs.
func (c *mqttConn) remoteAddr() string { return c.t.remoteAddr() }
