package fanout

import (
	"slices"
	"time"

	"github.com/pushring/pushring/message"
)

// Muting. NATS delivers at most once: envelopes written to a connection
// as it drops are lost, and those published while it is down wait in
// nats.go's buffer and go out the moment it is back. So after a drop,
// a publisher's later messages reach the other nodes at once while the
// earlier ones it lost come only with the resend, after AckTimeout: out
// of order. Instead, from the drop (Mute) until the other nodes have
// been told (Unmute), the envelopes of stored messages are not sent at
// all; the Dropped notice makes every node hold its sessions as after a
// ring change (OnPeerDropped), and their read of the journal brings what
// was lost or not sent, in order, before what comes after the notice.
// Their waits stay: if the read fails, the resend still comes.
// Unstored (QoS 0) messages are not muted: nothing could bring them back.

// connectedBus is a Bus that knows whether its connection is up now
// (NATS: from the moment nats.go sees the drop, before Mute is called).
type connectedBus interface {
	Connected() bool
}

func (b *natsBus) Connected() bool { return b.nc.IsConnected() }

// Mute stops sending the envelopes of stored messages until Unmute: the
// bus connection dropped. Goroutine-safe.
func (f *Fanout) Mute() { f.muted.Store(true) }

// Unmute tells each of peers (the other nodes; this node is skipped)
// that this node's connection dropped and is back, then sends the
// envelopes of stored messages again. Goroutine-safe.
//
// While the catch-up after the drop (Disconnected, Reconnected) runs,
// the notice goes again every Config.DroppedRepeat: a catch-up that
// waits for the store (up to catchUpPatience) holds group messages
// for longer than the other nodes hold their sessions after one notice,
// and a session that moved on meanwhile could move past such a message.
func (f *Fanout) Unmute(peers []string) {
	if f.muted.Load() {
		f.tellDropped(peers)
		if f.store != nil && f.repeating.CompareAndSwap(false, true) {
			go f.repeatDropped(slices.Clone(peers))
		}
	}
	f.muted.Store(false)
}

// tellDropped sends the Dropped notice to each of peers but this node.
func (f *Fanout) tellDropped(peers []string) {
	var buf [64]byte
	notice := appendHeader(buf[:0], KindDropped, 0, f.self)
	for _, p := range peers {
		if p == f.self {
			continue
		}
		if err := f.publish(p, notice); err != nil {
			f.warn("could not tell a node that the connection dropped", "node", p, "err", err)
		}
	}
}

// repeatDropped tells peers, and this node's OnPeerDropped, again every
// DroppedRepeat while the catch-up is pending or running, until it ends, the connection drops
// again (the next Unmute starts over) or the Fanout closes.
func (f *Fanout) repeatDropped(peers []string) {
	defer f.repeating.Store(false)
	t := time.NewTicker(f.cfg.DroppedRepeat)
	defer t.Stop()
	c := &f.cu
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		active := c.active
		c.mu.Unlock()
		if !active || f.muted.Load() || f.closed.Load() {
			return
		}
		f.stats.droppedRepeats.Add(1)
		f.tellDropped(peers)
		if fn := f.droppedFn.Load(); fn != nil {
			(*fn)() // this node's sessions hold as long
		}
	}
}

// mute reports whether the envelopes of m are not to be sent now (see
// above), and counts them.
func (f *Fanout) mute(m *message.Message) bool {
	if m.Seq == 0 {
		return false
	}
	if !f.muted.Load() {
		if cb, ok := f.bus.(connectedBus); !ok || cb.Connected() {
			return false
		}
	}
	f.stats.muted.Add(1)
	return true
}

// OnPeerDropped sets the function called (from the bus goroutine, in
// order with the envelopes) when another node says its connection
// dropped and is back: the sessions here should hold and read the
// journal as after a ring change. nil stops the calls. Goroutine-safe.
func (f *Fanout) OnPeerDropped(fn func()) {
	if fn == nil {
		f.droppedFn.Store(nil)
		return
	}
	f.droppedFn.Store(&fn)
}

func (f *Fanout) peerDropped(sender string) {
	f.stats.peerDrops.Add(1)
	f.log.Info("a node's NATS connection dropped and is back: holding sessions as after a ring change", "from", sender)
	if fn := f.droppedFn.Load(); fn != nil {
		(*fn)()
	}
}
