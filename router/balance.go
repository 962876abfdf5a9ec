package router

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/mqtt/packet"
)

// Balance: after a node died, its clients reconnect through the other
// addresses their login gave them and stay there; when it comes back (or
// a node joins) nothing moves them home, and one node ends up holding
// most clients. With a home function (SetHome), once the ring has not
// changed for Config.RebalanceAfter, the server closes the connections
// of clients whose home is another node, at most Config.RebalanceRate a
// second: MQTT 3.1.1 has no server DISCONNECT, so a close it is, without
// the will, and the client reconnects through its login's list, which
// starts with its home. A persistent session loses nothing on the way
// (its new node resumes it from the store). A principal moved once is
// not moved again for rebalanceMemory: a client that cannot reach its
// home (a load balancer, a firewall) comes back here and is left alone.

// rebalanceMemory is how long a principal moved toward its home is left
// alone afterwards.
const rebalanceMemory = 10 * time.Minute

// SetHome gives the server the principals' homes: home(id) is the node
// that delivers to id, and local whether that is this node. Call it
// before Serve; without it (the default) clients are never moved.
func (s *Server) SetHome(home func(id string) (local bool)) {
	s.bal.mu.Lock()
	s.bal.home = home
	s.bal.mu.Unlock()
	s.bal.homeAt.Store(&home)
}

// SetRedirect gives the server the client address of a principal's home:
// redirect(id, tls) is the home's MQTT (tls: MQTT over TLS) address, or
// "" when the home is this node or has no such address. Config.RedirectHome
// uses it; call it before Serve.
func (s *Server) SetRedirect(redirect func(id string, tls bool) string) {
	s.redirect.Store(&redirect)
}

// homeAddr is where c's principal should connect instead of here, or "".
// From another goroutine than c's reader only once c is bound (c.sess
// set), so that c.id is settled.
func (s *Server) homeAddr(c *mqttConn) string {
	r := s.redirect.Load()
	if r == nil || !c.flags.has(flagV5) || c.via == viaWebSocket {
		return ""
	}
	return (*r)(c.id.ID, c.via == viaTLS)
}

// homedElsewhere reports whether SetHome says id's home is another node
// (false without SetHome). Lock-free: register calls it with Server.mu
// and session.mu held, which rebalance takes under balancer.mu.
func (s *Server) homedElsewhere(id string) bool {
	home := s.bal.homeAt.Load()
	return home != nil && *home != nil && !(*home)(id)
}

// balancer is the state of moving clients home.
type balancer struct {
	mu       sync.Mutex
	home     func(id string) (local bool)
	homeAt   atomic.Pointer[func(id string) (local bool)] // home, for readers that may not take mu
	ringAt   time.Time                                    // last ring change seen (zero: at start)
	moved    map[string]time.Time                         // principal -> when it was moved
	credit   float64                                      // connections that may be closed now
	lastTick time.Time
}

// ringChanged restarts the quiet period before clients move.
func (b *balancer) ringChanged(now time.Time) {
	b.mu.Lock()
	b.ringAt = now
	b.mu.Unlock()
}

// rebalance closes, within the rate, connections of principals homed
// elsewhere, once the ring has been quiet for RebalanceAfter. It runs on
// positionLoop's tick.
func (s *Server) rebalance(now time.Time) {
	rate := s.cfg.RebalanceRate
	b := &s.bal
	b.mu.Lock()
	home := b.home
	if home == nil || rate <= 0 || b.ringAt.IsZero() || now.Sub(b.ringAt) < s.cfg.RebalanceAfter {
		b.lastTick = now
		b.mu.Unlock()
		return
	}
	if !b.lastTick.IsZero() {
		b.credit = min(b.credit+rate*now.Sub(b.lastTick).Seconds(), max(rate, 1))
	}
	b.lastTick = now
	for id, at := range b.moved {
		if now.Sub(at) > rebalanceMemory {
			delete(b.moved, id)
		}
	}
	n := int(b.credit)
	if n == 0 {
		b.mu.Unlock()
		return
	}
	var victims []*mqttConn
	s.mu.RLock()
	for id, p := range s.principals.m {
		list := p.sessions
		if len(list) == 0 {
			continue
		}
		if len(victims) >= n {
			break
		}
		if _, done := b.moved[id]; done || home(id) {
			continue
		}
		found := false
		for _, sess := range list {
			sess.mu.Lock()
			if c := sess.conn; c != nil && len(victims) < n {
				victims = append(victims, c)
				found = true
			}
			sess.mu.Unlock()
		}
		if !found {
			continue // offline here: nothing to move
		}
		if b.moved == nil {
			b.moved = make(map[string]time.Time)
		}
		b.moved[id] = now
	}
	s.mu.RUnlock()
	b.credit -= float64(len(victims))
	b.mu.Unlock()
	if len(victims) == 0 {
		return
	}
	s.m.rebalanced(len(victims))
	s.log.Info("mqtt: moving clients toward their home nodes", "closed", len(victims))
	for _, c := range victims {
		c.stopForwarding() // its client sends what it was not answered again
		c.kill(false, packet.CodeUseAnotherServer)
	}
}
