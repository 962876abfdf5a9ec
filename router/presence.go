package router

import "sync"

// Presence is told which principals are present on this node (have
// sessions here), so that
// the cluster can route their messages here when this node is not their
// home (fanout's attach records, fanout/attach.go). fanout implements
// it; node wires it in with SetPresence.
//
// Arrived(id) is called when principal id gets its first session on this
// node (connected, or persistent and offline), Left(id) when its last
// one is gone: a clean session's disconnect, a persistent session's
// expiry, a session dropped for the per-principal cap, or Server.Close. A
// takeover (the same client id connecting again, here) is no Left.
//
// Calls are made outside every router lock, one at a time, in the order
// the registry changed: a Left never overtakes the Arrived it ends.
// They must not block (the implementation queues what it has to send):
// while one runs, other registry changes wait to be reported, not to
// happen.
type Presence interface {
	Arrived(id string)
	Left(id string)
}

// SetPresence sets the presence hook. Call it before Serve; nil (the
// default) means no calls.
func (s *Server) SetPresence(p Presence) {
	s.pres.mu.Lock()
	s.pres.p = p
	s.pres.mu.Unlock()
}

// Present returns the principals present on this node now (for
// re-attachment), in no particular order.
func (s *Server) Present() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.principals.m))
	for id, p := range s.principals.m {
		if len(p.sessions) > 0 {
			out = append(out, id)
		}
	}
	return out
}

// presenceQueue orders presence events: they are queued under Server.mu,
// where the registry changes, and handed to the Presence after it is
// released, by one goroutine at a time (whichever finds the queue idle
// drains it), so events reach the Presence in registry order without a
// router lock held. Lock order: Server.mu → presenceQueue.mu.
type presenceQueue struct {
	mu      sync.Mutex
	p       Presence
	q       []presenceEvent
	spare   []presenceEvent
	running bool
}

type presenceEvent struct {
	id      string
	arrived bool
}

// presenceLocked queues an event. Server.mu held for writing.
func (s *Server) presenceLocked(id string, arrived bool) {
	s.pres.mu.Lock()
	if s.pres.p != nil {
		s.pres.q = append(s.pres.q, presenceEvent{id: id, arrived: arrived})
	}
	s.pres.mu.Unlock()
}

// flushPresence hands queued events to the Presence, unless another
// goroutine is already doing it (it will pick them up). No router lock
// may be held.
func (s *Server) flushPresence() {
	pq := &s.pres
	pq.mu.Lock()
	if pq.running || len(pq.q) == 0 {
		pq.mu.Unlock()
		return
	}
	pq.running = true
	defer func() {
		pq.running = false
		pq.mu.Unlock()
	}()
	for len(pq.q) > 0 {
		batch, p := pq.q, pq.p
		pq.q = pq.spare[:0]
		pq.spare = nil
		pq.mu.Unlock()
		func() {
			// Re-lock even if the Presence panics, so the deferred
			// reset above runs with the lock held.
			defer pq.mu.Lock()
			if p == nil {
				return
			}
			for _, e := range batch {
				if e.arrived {
					p.Arrived(e.id)
				} else {
					p.Left(e.id)
				}
			}
		}()
		clear(batch)
		pq.spare = batch[:0]
	}
}

// Connected returns how many of ids have a connected session on this
// node (an MQTT connection over any transport, past its CONNACK; an
// offline persistent session is not one), listing up to max of them in
// the order of ids. Goroutine-safe.
func (s *Server) Connected(ids []string, max int) (listed []string, n int) {
	// In chunks: a large group's walk does not hold connects and
	// disconnects off the registry for all of its length.
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), connectedChunk)]
		ids = ids[len(chunk):]
		s.mu.RLock()
		for _, id := range chunk {
			if s.connectedLocked(id) {
				if n < max {
					listed = append(listed, id)
				}
				n++
			}
		}
		s.mu.RUnlock()
	}
	return listed, n
}

// connectedChunk is how many ids Connected looks at per hold of Server.mu.
const connectedChunk = 256
