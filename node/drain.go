package node

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// handoverWait is how long a leaving node waits, once its leave went
// out (memberlist saw it sent to a peer), before it closes its clients,
// for the news to reach every peer, which then drop this node from
// their rings, so that the sessions its clients resume there get new
// messages from their new homes. Gossip reaches all of n nodes in about
// log(n) rounds of 100 ms (the default), while Leave returns once one
// peer has it: two rounds cover a cluster of ten. A peer that hears
// later costs duplicates, not losses: the ring replay of the session's
// next node covers it. Measured on a rolling restart of 3 nodes, both
// peers had dropped the node 13–85 ms after the SIGTERM, before Leave
// returned (about 0.3 s); the first message a moved client got came
// 0.9 s after the SIGTERM with a 500 ms wait, 0.4 s with none, 0 lost
// either way. This node's own sessions hold stored messages back from
// its ring change on, so a longer wait serves nobody.
const handoverWait = 200 * time.Millisecond

// leaveTimeout bounds leaving the gossip (half for the metadata that
// says "leaving", half for memberlist's leave).
const leaveTimeout = 2 * time.Second

// positionsTimeout bounds each write of the session positions.
const positionsTimeout = 5 * time.Second

// webhookDrainTimeout bounds the wait for the webhook queues at shutdown
// (within ShutdownTimeout): an endpoint that does not answer keeps its
// events, which go with the node.
const webhookDrainTimeout = 5 * time.Second

// stopReserve is the part of ShutdownTimeout kept for stopping the
// components once the drain is over (or cut short): positions, appends
// in flight, NATS.
func stopReserve(total time.Duration) time.Duration { return min(total/4, 5*time.Second) }

// shutdownClock times Close's steps against ShutdownTimeout: drain
// steps get what is left before the reserve; those it has no time for
// are skipped and named in the last log line.
type shutdownClock struct {
	start   time.Time
	drainBy time.Time       // graceful steps end here
	stopBy  time.Time       // everything ends here
	ctx     context.Context // done at drainBy
	cancel  context.CancelFunc
	skipped []string
}

func newShutdownClock(total time.Duration) *shutdownClock {
	now := time.Now()
	c := &shutdownClock{start: now, stopBy: now.Add(total), drainBy: now.Add(total - stopReserve(total))}
	c.ctx, c.cancel = context.WithDeadline(context.Background(), c.drainBy)
	return c
}

// step reports whether a drain step may run; if not, it is recorded as
// skipped.
func (c *shutdownClock) step(name string) bool {
	if c.ctx.Err() != nil {
		c.skipped = append(c.skipped, name)
		return false
	}
	return true
}

// within is d, or less if the drain's end is nearer.
func (c *shutdownClock) within(d time.Duration) time.Duration {
	return max(0, min(d, time.Until(c.drainBy)))
}

// stopCtx is a context for a stop step: at most d, and never past the
// end of the whole budget.
func (c *shutdownClock) stopCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.Background(), minTime(time.Now().Add(d), c.stopBy))
}

// wait sleeps for d, cut at the drain's end.
func (c *shutdownClock) wait(name string, d time.Duration) {
	if !c.step(name) {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.ctx.Done():
		c.skipped = append(c.skipped, name+" (cut short)")
	}
}

// report logs how the stop went.
func (c *shutdownClock) report(log *slog.Logger, drained int) {
	c.cancel()
	took := time.Since(c.start).Round(time.Millisecond)
	if len(c.skipped) > 0 {
		log.Warn("shutdown took longer than the shutdown timeout allowed: steps cut short",
			"skipped", strings.Join(c.skipped, ", "), "took", took, "clients_closed", drained)
	}
	log.Info("pushring node stopped", "took", took, "clients_closed", drained)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// shutdownHTTP stops the HTTP servers from taking connections and lets
// the requests under way finish (an HTTP publish answers once its
// message is stored) until ctx is done, then closes what is left. The
// returned channel is closed when both servers stopped.
func shutdownHTTP(ctx context.Context, servers ...*http.Server) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, s := range servers {
			if s == nil {
				continue
			}
			if err := s.Shutdown(ctx); err != nil {
				s.Close()
			}
		}
	}()
	return done
}
