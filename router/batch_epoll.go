//go:build linux

package router

import "time"

// wakeHolding wakes the pollers that hold output (EndOutputRun).
func (l *eventLoops) wakeHolding() {
	if ps := l.active.Load(); ps != nil {
		for _, p := range *ps {
			if p.holding.Load() {
				p.wake()
			}
		}
	}
}

// deferFlush puts t on p's held list instead of writing it now, when a
// hold is on and output is all t waits for. gen is the releases counted
// before the hold was seen on. Poller goroutine only.
func (p *poller) deferFlush(t *epollTransport, gen uint64, now time.Time) bool {
	t.mu.Lock()
	only := t.ops == opFlush
	t.mu.Unlock() // t stays queued: further output does not queue it again
	if !only {
		return false
	}
	if len(p.held) == 0 {
		p.heldGen, p.heldAt = gen, now
		p.holding.Store(true)
	}
	p.held = append(p.held, t)
	return true
}

// releaseHeld writes what p holds once the run it was held for ended (or
// holdMax passed, or the poller stops). Poller goroutine only.
func (p *poller) releaseHeld(now time.Time, force bool) {
	if len(p.held) == 0 {
		return
	}
	if !force && p.srv.hold.on.Load() && p.srv.hold.gen.Load() == p.heldGen && now.Sub(p.heldAt) < p.srv.holdMax {
		return
	}
	p.holding.Store(false)
	for i, t := range p.held {
		p.work(t, now)
		p.held[i] = nil
	}
	p.held = p.held[:0]
}

// holdWait bounds the poller's wait while it holds output.
func (p *poller) holdWait(wait time.Duration) time.Duration {
	if len(p.held) == 0 {
		return wait
	}
	return min(wait, max(p.srv.holdMax-time.Since(p.heldAt), 0))
}
