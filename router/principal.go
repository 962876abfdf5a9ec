package router

import (
	"slices"
	"time"

	"github.com/pushring/pushring/mqtt/packet"
)

// DropPrincipal ends everything principal id holds on this node, as when
// the principal is deleted: its connections are closed at once (without
// their wills; a 5.0 client gets DISCONNECT 0x87), and its sessions,
// persistent ones too, are discarded with their queued messages and
// their SessionStore records. A CONNECT of id authenticated just before
// and bound after is refused (CONNACK 0x04), as for a revoked token,
// until PrincipalChanged(id) says the id was made again.
// Goroutine-safe.
func (s *Server) DropPrincipal(id string) {
	defer s.flushPresence()
	var conns []*mqttConn
	s.mu.Lock()
	s.revokeLocked(revokeKey{s: id, principal: true}, time.Now())
	for _, sess := range slices.Clone(s.sessionsOf(id)) {
		sess.mu.Lock()
		if c := sess.conn; c != nil {
			conns = append(conns, c)
		}
		sess.mu.Unlock()
		s.endSessionLocked(sess)
	}
	s.mu.Unlock()
	for _, c := range conns {
		s.log.Info("mqtt: principal deleted, disconnecting", "id", id, "remote", c.remoteAddr())
		c.kill(false, packet.CodeNotAuthorized)
	}
}

// PrincipalChanged is told that principal id was created or had its
// secret changed. A device's connections that logged in with its key
// are closed (the key may be the one replaced; a certificate login is
// left alone), and its persistent sessions stay for it to resume with
// the new key. An id deleted before may connect again.
// Goroutine-safe.
func (s *Server) PrincipalChanged(id string, device bool) {
	var conns []*mqttConn
	s.mu.Lock()
	delete(s.revoked, revokeKey{s: id, principal: true}) // its revokedQ entry is pruned in time
	if device {
		for _, sess := range s.sessionsOf(id) {
			sess.mu.Lock()
			if c := sess.conn; c != nil && !c.cert {
				conns = append(conns, c)
			}
			sess.mu.Unlock()
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		s.log.Info("mqtt: device key changed, disconnecting", "id", id, "remote", c.remoteAddr())
		c.kill(false, packet.CodeNotAuthorized)
	}
}
