package router

import (
	"errors"
	"io"
	"net"
)

// Events is told what happens to connections, for webhooks: each
// connection that logs in (Connected), its end (Disconnected), and each
// refusal counted in pushring_mqtt_refusals_total (by its reason) or
// pushring_mqtt_connects_total (a refused CONNECT: "connect_" and the
// result). Calls come from the connections' goroutines, some with router
// locks held, in the order things happen to one connection: they must
// not block.
type Events interface {
	Connected(c ConnInfo)
	Disconnected(c ConnInfo, reason string)
	Refused(reason string)
}

// ConnInfo describes a connection that logged in.
type ConnInfo struct {
	// Seq is this node's number for the connection, from 1 in the order
	// they logged in since the node started: a session taken over has
	// its new connection's Connected before the old one's Disconnected
	// (reason "taken_over"), and Seq tells them apart.
	Seq       uint32
	Principal string
	ClientID  string
	Remote    string
	Transport string // "tcp", "tls" or "websocket"
	Version   byte   // MQTT protocol level: 4 (3.1.1) or 5
	Clean     bool   // a clean session (3.1.1), or Clean Start with no session expiry (5.0)
	Device    bool
}

// SetEvents sets the events hook; nil (the default): none.
func (s *Server) SetEvents(e Events) {
	if e == nil {
		s.m.events.Store(nil)
		return
	}
	s.m.events.Store(&e)
}

// hook returns the Events hook, or nil.
func (m *metrics) hook() Events {
	if e := m.events.Load(); e != nil {
		return *e
	}
	return nil
}

func (c *mqttConn) info() ConnInfo {
	t := "tcp"
	switch c.via {
	case viaTLS:
		t = "tls"
	case viaWebSocket:
		t = "websocket"
	}
	return ConnInfo{Seq: c.seq, Principal: c.id.ID, ClientID: c.clientID, Remote: c.remoteAddr(), Transport: t,
		Version: c.level, Clean: c.clean, Device: c.id.Device}
}

// disconnectReason names why a connection that had logged in ended:
// taken over by a connection of the same client id, the client's
// DISCONNECT, the stream's end, bad input, or "error".
func (c *mqttConn) disconnectReason(err error) string {
	if c.flags.has(flagTakenOver) {
		return "taken_over"
	}
	switch {
	case errors.Is(err, errClientDisconnect), errors.Is(err, errClientDisconnectWill):
		return "client_disconnect"
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return "closed"
	}
	if r := badInputReason(err); r != "" {
		return r
	}
	return "error"
}

// IsConnected reports whether principal id has a connected session on
// this node. Goroutine-safe.
func (s *Server) IsConnected(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.connectedLocked(id)
}

// connectedLocked: id has a session with a connection. s.mu held.
func (s *Server) connectedLocked(id string) bool {
	p := s.principals.m[id]
	if p == nil {
		return false
	}
	for _, sess := range p.sessions {
		sess.mu.Lock()
		on := sess.conn != nil
		sess.mu.Unlock()
		if on {
			return true
		}
	}
	return false
}
