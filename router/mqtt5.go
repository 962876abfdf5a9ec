package router

import (
	"errors"
	"os"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// MQTT 5.0: what a 5.0 connection adds to mqttConn. The protocol flow is
// the one of 3.1.1 (mqtt.go); here are the CONNACK's properties, reason
// codes where 3.1.1 has none, topic aliases, and the DISCONNECT the
// server sends before it closes a 5.0 connection.
//
// What pushring announces in CONNACK, and why:
//   - Maximum QoS and Retain Available are left out (2 and 1), but
//     Retain Available is 0 when the server has no Retainer (retain.go),
//     with 0x9A for a retained PUBLISH or will.
//   - Subscription Identifiers and Shared Subscriptions not available:
//     every subscription is to the client's own tree or a group.
//   - Topic Alias Maximum Config.TopicAliasMaximum (inbound aliases; the
//     server sends none: its topics are short, and an alias would have to
//     be tracked per connection on the fan-out path).
//   - Maximum Packet Size Config.MaxPacketSize, and the Session Expiry
//     Interval when the client asked for more than Config.SessionExpiry.
//   - Receive Maximum 1,024 (maxQoS2In): the QoS 2 ids a session holds
//     awaiting PUBREL. Unanswered QoS 1 PUBLISHes are held up to 65,535
//     (maxPendingAcks), for clients that do not read the property.

// v5Conn is a 5.0 connection's own state; reader side only (set at
// CONNECT, then read and written by handlePacket and closed).
type v5Conn struct {
	// aliases holds the topics of the client's Topic Aliases, alias n at
	// n-1: grown on first use, never beyond Config.TopicAliasMaximum.
	aliases [][]byte
	// zeroExpiry: the CONNECT's Session Expiry Interval was 0, which a
	// DISCONNECT may not raise [MQTT-3.14.2-2].
	zeroExpiry bool
	// problems: the client asked for Reason Strings on acks (Request
	// Problem Information, default 1); CONNACK and DISCONNECT carry them
	// regardless.
	problems bool
	// fwd is scratch for the properties a PUBLISH carries on: the
	// Forwarder copies what it keeps.
	fwd []byte
}

// Errors a 5.0 connection is closed with, each with its reason code.
var (
	errAliasAbove    = &packet.Error{Code: packet.CodeTopicAliasInvalid, Msg: "topic alias above the maximum"}
	errAliasUnset    = &packet.Error{Code: packet.CodeProtocolError, Msg: "topic alias not set"}
	errRetainV5      = &packet.Error{Code: packet.CodeRetainNotSupported, Msg: "retain not supported"}
	errSubIDs        = &packet.Error{Code: packet.CodeSubIDsNotSupported, Msg: "subscription identifiers not supported"}
	errAuthPacket    = &packet.Error{Code: packet.CodeProtocolError, Msg: "AUTH without an authentication method"}
	errExpiryRaised  = &packet.Error{Code: packet.CodeProtocolError, Msg: "session expiry raised from 0 at DISCONNECT"}
	errBadAuthMethod = errors.New("authentication method not supported")
)

// connackProps returns the properties of a successful 5.0 CONNACK.
// assigned: the client id the server gave an empty one; expiry: the
// Session Expiry Interval granted, sent when it is not what was asked.
func (c *mqttConn) connackProps(cp *packet.Connect, assigned bool, expiry uint32) *packet.Properties {
	cfg := &c.srv.cfg
	p := &packet.Properties{
		ReceiveMaximum:     maxQoS2In,
		SubIDAvailable:     0,
		SharedSubAvailable: 0,
		MaximumPacketSize:  uint32(cfg.MaxPacketSize),
		TopicAliasMaximum:  uint16(cfg.TopicAliasMaximum),
	}
	p.Set(packet.PropReceiveMaximum, packet.PropSubIDAvailable,
		packet.PropSharedSubAvailable, packet.PropMaximumPacketSize)
	if c.srv.retained == nil {
		p.Set(packet.PropRetainAvailable) // 0; left out, it means 1
	}
	if cfg.TopicAliasMaximum > 0 {
		p.Set(packet.PropTopicAliasMaximum)
	}
	if assigned {
		p.AssignedClientID = c.clientID
		p.Set(packet.PropAssignedClientID)
	}
	if expiry != cp.Props.SessionExpiry {
		p.SessionExpiry = expiry
		p.Set(packet.PropSessionExpiry)
	}
	return p
}

// connectV5 reads a 5.0 CONNECT's properties into c. It returns the
// Session Expiry Interval granted, in seconds (bounded by
// Config.SessionExpiry), or why the CONNECT is refused: errBadAuthMethod,
// or a *packet.Error whose code the CONNACK carries (a Will above what
// the CONNACK announces).
func (c *mqttConn) connectV5(cp *packet.Connect) (uint32, error) {
	v := &v5Conn{problems: !cp.Props.Is(packet.PropRequestProblemInfo) || cp.Props.RequestProblemInfo == 1}
	c.v5 = v
	c.flags.set(flagV5)
	if cp.Props.Is(packet.PropAuthMethod) {
		return 0, errBadAuthMethod // no enhanced authentication: CONNACK 0x8C
	}
	expiry := min(uint64(cp.Props.SessionExpiry), uint64(c.srv.cfg.SessionExpiry/time.Second))
	v.zeroExpiry = expiry == 0
	// Only a Clean Start with no expiry is a 3.1.1 clean session: with
	// an expiry the new session is kept; without Clean Start an existing
	// one is resumed, and ends with this connection if the expiry is 0.
	c.clean = cp.CleanSession && expiry == 0
	c.cleanStart = cp.CleanSession
	c.lifetime = time.Duration(expiry) * time.Second
	c.recvMax = 0
	if cp.Props.Is(packet.PropReceiveMaximum) {
		c.recvMax = cp.Props.ReceiveMaximum
	}
	c.maxOut = cp.Props.MaximumPacketSize // 0: not given, no limit
	if cp.WillRetain && c.srv.retained == nil {
		return 0, errRetainV5 // Retain Available 0 [MQTT-3.2.2-13]
	}
	return uint32(expiry), nil
}

// How a connection reached the server (mqttConn.via).
const (
	viaTCP byte = iota
	viaTLS
	viaWebSocket
)

// redirectHome refuses a 5.0 login on a node that is not the
// principal's home with CONNACK 0x9C and the home's address.
func (c *mqttConn) redirectHome(addr string) error {
	c.srv.m.connect(resultRedirected)
	props := &packet.Properties{ServerReference: addr, ReasonString: "connect to your home node"}
	props.Set(packet.PropServerReference, packet.PropReasonString)
	buf, _, _ := c.t.beginWrite()
	c.t.endWrite(packet.AppendConnackV5(buf, false, packet.CodeUseAnotherServer, props))
	c.srv.log.Debug("mqtt: redirected to the home node", "id", c.id.ID, "home", addr, "remote", c.remoteAddr())
	return errRefused
}

// connackCode is code if a CONNACK may carry it (3.2.2.2), else 0x81
// (malformed) or 0x82 (protocol error): the codec's errors name the
// fault of any packet, and a few codes are not CONNACK's.
func connackCode(code byte) byte {
	switch code {
	case packet.CodeMalformed, packet.CodeProtocolError, packet.CodeUnsupportedVersion,
		packet.CodeTopicNameInvalid, packet.CodePacketTooLarge, packet.CodePayloadFormatInvalid:
		return code
	case packet.CodeTopicAliasInvalid:
		return packet.CodeMalformed
	}
	return packet.CodeProtocolError
}

// v5Reason maps a 3.1.1 CONNACK code to the 5.0 one.
func v5Reason(code byte) byte {
	switch code {
	case packet.ConnBadProtocol:
		return packet.CodeUnsupportedVersion
	case packet.ConnIDRejected:
		return packet.CodeClientIDNotValid
	case packet.ConnServerUnavailable:
		return packet.CodeServerUnavailable
	case packet.ConnBadCredentials:
		return packet.CodeBadCredentials
	case packet.ConnNotAuthorized:
		return packet.CodeNotAuthorized
	}
	return code
}

// resolveAlias applies a PUBLISH's Topic Alias: a topic with an alias
// sets it, an empty topic takes the alias's.
func (c *mqttConn) resolveAlias(p *packet.Publish) error {
	a := int(p.TopicAlias)
	if a == 0 {
		return nil
	}
	if a > c.srv.cfg.TopicAliasMaximum {
		return errAliasAbove
	}
	v := c.v5
	if len(p.Topic) == 0 {
		if a > len(v.aliases) || v.aliases[a-1] == nil {
			return errAliasUnset
		}
		p.Topic = v.aliases[a-1]
		return nil
	}
	if a > len(v.aliases) {
		v.aliases = append(v.aliases, make([][]byte, a-len(v.aliases))...)
	}
	if len(p.Topic) > maxAliasTopic {
		// No topic this long is one the ACL lets through: not kept, but
		// the alias no longer names its old topic either.
		v.aliases[a-1] = aliasRefused
		return nil
	}
	if len(v.aliases[a-1]) > 0 && &v.aliases[a-1][0] == &aliasRefused[0] {
		v.aliases[a-1] = nil // not aliasRefused's array
	}
	v.aliases[a-1] = append(v.aliases[a-1][:0], p.Topic...)
	return nil
}

// maxAliasTopic bounds the topics a Topic Alias keeps (the aliases of
// one connection hold at most TopicAliasMaximum of them): no shorter
// than any topic a client may publish to (a prefix and a 64-byte id, a
// rule topic).
const maxAliasTopic = maxRuleTopic

// aliasRefused is what an alias set to a topic over maxAliasTopic names:
// a topic name no ACL lets through (a NUL is never valid in one), so a
// PUBLISH through the alias is refused like the topic itself was.
var aliasRefused = []byte{0}

// checkPublishV5 refuses what a 5.0 client was told not to send, and
// resolves its topic alias.
func (c *mqttConn) checkPublishV5(p *packet.Publish) error {
	if p.Retain && c.srv.retained == nil {
		return errRetainV5
	}
	return c.resolveAlias(p)
}

// fillV5 sets what a 5.0 PUBLISH gives its message: the expiry deadline
// and the properties that travel on.
func (c *mqttConn) fillV5(m *message.Message, p *packet.Publish) {
	if p.HasExpiry && p.Expiry > 0 { // 0: no expiry, as mosquitto reads it
		m.Expires = time.Now().UnixMilli() + int64(p.Expiry)*1000
	}
	if len(p.Props) > 0 {
		c.v5.fwd = packet.ForwardProps(c.v5.fwd[:0], p.Props)
		if len(c.v5.fwd) > 0 {
			m.Props = c.v5.fwd
		}
	}
}

// reasonString is s if the client wants reason strings on acks.
func (c *mqttConn) reasonString(s string) string {
	if c.v5 != nil && c.v5.problems {
		return s
	}
	return ""
}

// disconnectCode is the reason code of the DISCONNECT a 5.0 connection
// closed for err gets, or 0 for none (the client left, or the stream
// broke: nobody to tell).
func disconnectCode(err error) byte {
	var pe *packet.Error
	switch {
	case errors.As(err, &pe):
		if pe.Code == packet.CodeUnsupportedVersion {
			return packet.CodeProtocolError
		}
		return pe.Code
	case errors.Is(err, errQoS1Window), errors.Is(err, errQoS2Window):
		return packet.CodeReceiveMaximumExceeded
	case errors.Is(err, errSecondConnect), errors.Is(err, errUnexpectedPacket):
		return packet.CodeProtocolError
	case errors.Is(err, errForward):
		return packet.CodeUnspecified
	case errors.Is(err, os.ErrDeadlineExceeded):
		return packet.CodeKeepAliveTimeout
	}
	return 0
}

// failed is the transport telling that reading ends with err: a 5.0
// client that got its CONNACK is told why in a DISCONNECT, which the
// transport flushes before it closes.
func (c *mqttConn) failed(err error) {
	if c.v5 == nil || c.state == stateConnect {
		return
	}
	if code := disconnectCode(err); code != 0 {
		c.writeDisconnect(code, "")
	}
}

// writeDisconnect queues a 5.0 DISCONNECT with code, and with ref as its
// Server Reference if not empty.
func (c *mqttConn) writeDisconnect(code byte, ref string) {
	var props *packet.Properties
	if ref != "" {
		props = &packet.Properties{ServerReference: ref}
		props.Set(packet.PropServerReference)
	}
	buf, _, open := c.t.beginWrite()
	if open {
		buf = packet.AppendDisconnectV5(buf, code, props)
	}
	c.t.endWrite(buf)
}

// delayWill publishes the will after the Will Delay Interval, or when
// the session ends if that comes first, unless a new connection has
// resumed the session meanwhile (3.1.3.2.2). Called by closed, after
// detach.
func (c *mqttConn) delayWill() {
	s := c.sess.Load()
	if s == nil {
		c.publishWill()
		return
	}
	s.mu.Lock()
	switch {
	case s.moved || s.conn != nil && !s.removed:
		s.mu.Unlock()
		return // a takeover that resumed the session, here or on another node
	case s.removed || s.lifetime <= 0:
		s.mu.Unlock()
		c.publishWill() // the session ended with the connection
		return
	}
	s.takeWill() // a will of an earlier connection that is still waiting: replaced
	s.will = func() {
		if c.srv.stopping.Err() == nil {
			c.publishWill()
		}
	}
	s.willTimer = time.AfterFunc(min(c.will.delay, s.lifetime), func() {
		s.mu.Lock()
		w := s.takeWill()
		s.mu.Unlock()
		if w != nil {
			w()
		}
	})
	s.mu.Unlock()
}

// takeWill removes the session's waiting will and returns it (nil: none).
// s.mu held.
func (s *session) takeWill() func() {
	w := s.will
	if s.willTimer != nil {
		s.willTimer.Stop()
	}
	s.will, s.willTimer = nil, nil
	return w
}

// disconnectV5 handles a 5.0 DISCONNECT: a new Session Expiry Interval
// (never raised from 0), and the will kept only with reason 0x04.
func (c *mqttConn) disconnectV5(d *packet.Disconnect) error {
	if d.Props.Is(packet.PropSessionExpiry) {
		if c.v5.zeroExpiry && d.Props.SessionExpiry != 0 {
			return errExpiryRaised
		}
		lifetime := min(time.Duration(d.Props.SessionExpiry)*time.Second, c.srv.cfg.SessionExpiry)
		if s := c.sess.Load(); s != nil {
			s.setLifetime(c, lifetime)
		}
	}
	if d.Code != packet.CodeDisconnectWithWill {
		c.will = nil // [MQTT-3.14.4-3]
		return errClientDisconnect
	}
	return errClientDisconnectWill
}
