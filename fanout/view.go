package fanout

import (
	"time"

	"github.com/pushring/pushring/message"
)

// Views that differ. While the nodes' views of the hash ring converge
// after a join or a death, some have the new ring and some the old.
// When a node with the new ring routes a stored message here before this
// node saw the change, that message would be delivered at once, ahead
// of earlier messages that went astray under the old ring (to a dead
// owner, to the old home), which the change's replay brings only later:
// out of order. So a Deliver of a stored message whose sender routed it
// under another ring than this node's (the sender is not the group's
// owner here, or this node is not the recipient's home here) is taken
// as a ring change seen early: the listener (the router's RingChanged)
// holds the sessions first, and the message waits for the replay.

// viewMismatchEvery bounds how often a mismatch is reported: one report
// covers a whole convergence, and a view that stays different (a node
// the others exclude) must not keep the sessions held.
const viewMismatchEvery = 10 * time.Second

// OnViewMismatch sets the function called (from the bus goroutine,
// before the message is delivered) when a Deliver shows another node
// routing under a different ring; nil stops the calls. Goroutine-safe.
func (f *Fanout) OnViewMismatch(fn func()) {
	if fn == nil {
		f.viewFn.Store(nil)
		return
	}
	f.viewFn.Store(&fn)
}

// checkView reports a Deliver of a stored message routed under another
// ring than this node's (see above).
func (f *Fanout) checkView(env *Envelope) {
	m := &env.Msg
	if m.Seq == 0 || env.Hops != 0 {
		return
	}
	var agree bool
	if m.Kind == message.Group {
		agree = f.place.Owner(m.To) == env.Sender
	} else {
		agree = f.place.Home(m.To) == f.self
	}
	if agree {
		return
	}
	f.stats.viewMismatches.Add(1)
	fn := f.viewFn.Load()
	if fn == nil {
		return
	}
	now := f.cfg.Now().UnixNano()
	last := f.lastMismatch.Load()
	if last != 0 && now-last < int64(viewMismatchEvery) || !f.lastMismatch.CompareAndSwap(last, now) {
		return
	}
	f.log.Info("a node routes stored messages under another ring than this node's: holding sessions as after a ring change",
		"from", env.Sender, "kind", m.Kind.String())
	(*fn)()
}
