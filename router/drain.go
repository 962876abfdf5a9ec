package router

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// Graceful shutdown: the node stops the server in steps, so that its
// clients move to other nodes with as little lost and repeated as it can
// manage, within a bounded time:
//
//  1. StopAccepting closes the listeners and refuses connections that
//     were accepted but not yet bound (CONNACK 0x03: "server
//     unavailable", so the client tries its next address);
//  2. the node leaves the cluster, and the peers move its homes away
//     while its clients are still served;
//  3. SavePositions notes every durable session's position, which the
//     node writes before the clients go, so that a session resumed on
//     another node replays from there rather than from a second ago;
//  4. Drain closes the client connections (no will: the node is going,
//     not the client), at a bounded rate, so the nodes that take the
//     sessions over are not hit by every resume in the same millisecond;
//  5. Close releases what is left and counts, in one log line, what the
//     sessions had not delivered: messages in the journal are replayed
//     by the session's next node, the others (wills, QoS 2 publishes,
//     messages for clean sessions) are dropped
//     (pushring_mqtt_shutdown_dropped_total).

// DrainRate is the rate, in connections a second, at which Drain closes
// client connections when the time it is given allows: a resume costs
// the node that takes it over a claim (a compare-and-set in the store)
// and a share of a journal read, and resumes that come within 50 ms of
// each other share one read, so a thousand a second keeps a peer's
// resumes batched without making a small node's drain slow.
const DrainRate = 1000

// StopAccepting closes the listeners and makes the server refuse new
// sessions, while the connections it has keep being served. Close (or
// Drain) follows. Goroutine-safe; a second call does nothing.
func (s *Server) StopAccepting() error {
	s.mu.Lock()
	if s.closed || s.draining {
		s.mu.Unlock()
		return nil
	}
	s.draining = true
	lns := s.listeners
	s.mu.Unlock()
	var err error
	for _, ln := range lns {
		if e := ln.Close(); e != nil && err == nil && !errors.Is(e, net.ErrClosed) {
			err = e
		}
	}
	return err
}

// stoppedLocked reports whether the server takes no more connections.
// s.mu held.
func (s *Server) stoppedLocked() bool { return s.closed || s.draining }

// SavePositions notes the position of every durable session, as of the
// last tick, with the SessionStore (whose writes are batched: the node
// flushes them). Close does it too; before Drain it means that the
// sessions the other nodes resume replay from a recent position.
func (s *Server) SavePositions() {
	s.mu.Lock()
	s.savePositionsNow()
	s.mu.Unlock()
}

// Drain closes every client connection, without wills, at up to
// DrainRate a second, faster if ctx's deadline needs it (all of them
// are closed by half the time left), and waits until they are closed or
// ctx is done. It returns how many it closed. Persistent sessions stay,
// offline, until their clients resume them elsewhere (the store's claim
// takes them from here) or Close. Call StopAccepting first: a client
// that reconnects here meanwhile is refused.
func (s *Server) Drain(ctx context.Context) int {
	s.mu.RLock()
	conns := make([]*mqttConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.RUnlock()
	if len(conns) == 0 {
		return 0
	}
	// The closes go in batches, one every drainStep: as many a step as
	// the rate allows, more if the deadline is near.
	perStep := max(1, int(DrainRate*drainStep.Seconds()))
	if dl, ok := ctx.Deadline(); ok {
		if steps := int(time.Until(dl) / 2 / drainStep); steps <= 0 {
			perStep = len(conns)
		} else {
			perStep = max(perStep, (len(conns)+steps-1)/steps)
		}
	}
	t := time.NewTicker(drainStep)
	defer t.Stop()
	for i := 0; i < len(conns); i += perStep {
		if i > 0 {
			select {
			case <-t.C:
			case <-ctx.Done():
				perStep = len(conns) // out of time: the rest at once
			}
		}
		for _, c := range conns[i:min(i+perStep, len(conns))] {
			c.stopForwarding() // its client sends what it was not answered again
			c.kill(false, packet.CodeServerShuttingDown)
		}
	}
	s.log.Info("mqtt: closed the client connections for shutdown", "connections", len(conns))
	// Wait for their goroutines to detach them (the sessions go offline).
	for {
		s.mu.RLock()
		left := len(s.conns)
		s.mu.RUnlock()
		if left == 0 || ctx.Err() != nil {
			return len(conns)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// drainStep is the period of Drain's batches of closes.
const drainStep = 10 * time.Millisecond

// countUnsentLocked adds what sess holds and has not delivered (queued,
// in flight, parked during a replay) to the shutdown counts: a message
// in the journal, for a durable persistent session, is replayed by the
// session's next node; anything else goes with this node. Server.mu and
// sess.mu held.
func (s *Server) countUnsentLocked(sess *session) {
	replayable := !sess.clean && s.sessStore != nil
	note := func(seq uint64) {
		if replayable && seq != 0 {
			s.unsentStored++
		} else {
			s.unsentDropped++
		}
	}
	for i := range sess.inflight {
		note(sess.inflight[i].m.Seq)
	}
	for i := range sess.queue.len() {
		note(sess.queue.at(i).m.Seq)
	}
	var parked []*message.Message
	if sess.dur != nil {
		parked = sess.dur.parked
	}
	for _, m := range parked {
		note(m.Seq)
	}
	if len(sess.inflight)+sess.queue.len()+len(parked) > 0 {
		s.unsentSessions++
	}
}

// logUnsent counts and logs, once, what the sessions had not delivered
// when the server closed. s.mu held.
func (s *Server) logUnsent() {
	s.m.shutdownUnsent(s.unsentDropped, s.unsentStored)
	log := s.log.Info
	if s.unsentDropped > 0 {
		log = s.log.Warn
	}
	log("mqtt: shutdown: messages the sessions had not delivered",
		"dropped", s.unsentDropped, "stored_for_replay", s.unsentStored, "sessions", s.unsentSessions)
}
