package router

import (
	"sync/atomic"
	"time"
)

// Output held for a batch of deliveries.
//
// A burst reaches this node as a run of envelopes that are already
// waiting when the first is handled (a group publisher's 500 messages at
// once, say). Without a hold, the pollers write each connection's output
// as soon as they get to it, concurrently with the deliveries: how many
// messages one write carries then depends on how the kernel schedules the
// delivering goroutine against the pollers, and on a busy machine it
// varies from run to run (measured: 14 to 32 deliveries per write over
// identical bursts into 1,000 members). Every write costs a system call
// here and a wakeup and a read at the client, so the burst's CPU, and
// with it its duration, varied as much.
//
// With a hold, the deliverer says when more envelopes are already
// waiting (BeginOutputRun) and when the run ends (EndOutputRun, after at
// most a bounded number of envelopes, so a long burst still leaves in
// steps): meanwhile the pollers keep connections that have only output
// to write on a held list, and write them all once the run ends, one
// write per connection for the whole run. Packets read, registrations,
// resumes and closes are not held, nor the answers to packets read (a
// poller writes a connection's output right after reading from it, held
// or not). A hold outlives no run: the pollers also write after holdMax,
// whatever the deliverer does. A poller that took a connection off its
// queue just before a hold began writes it unheld: the hold saves
// writes, it promises nothing.

// holdMax bounds how long a poller keeps output held, in case the
// deliverer stalls in the middle of a run (Server.holdMax, which tests
// change, starts at it).
const holdMax = 20 * time.Millisecond

// outputHold is the server's hold state, set by the delivering goroutine
// and read by the pollers.
type outputHold struct {
	on  atomic.Bool
	gen atomic.Uint64 // releases so far: a poller holds only for the run it saw
}

// BeginOutputRun tells the server that more deliveries follow at once: the
// output they and the current one produce may wait for the end of the
// run (EndOutputRun) and leave in one write per connection. Cheap when a
// hold is already on. Goroutine-safe; fanout calls it.
func (s *Server) BeginOutputRun() {
	if !s.hold.on.Load() {
		s.hold.on.Store(true)
	}
}

// EndOutputRun ends the run BeginOutputRun started: held output is written
// now. Cheap when no hold is on. Goroutine-safe.
func (s *Server) EndOutputRun() {
	if !s.hold.on.Load() {
		return
	}
	s.hold.on.Store(false)
	s.hold.gen.Add(1)
	s.loops.wakeHolding()
}
