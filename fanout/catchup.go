package fanout

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/message"
)

// Catching up as a group's owner. NATS delivers at most once: while this
// node's connection is down, the Resolve envelopes sent to it are lost,
// and so are those NATS drops when this node reads too slowly. Their
// publishers' nodes send stored ones again once the confirmations do not
// come (ack.go), but only after AckTimeout, when members have had newer
// messages of the same publishers: out of order. So when the connection
// drops (Disconnected) the owner stops resolving stored group messages
// (they wait, parked), and once it is back (Reconnected) it reads the
// stored group messages from shortly before the drop, resolves those of
// its groups it had not resolved, then the parked ones, in sequence
// order. Members may get some twice (QoS 1 allows it); none comes after a
// newer message of its publisher. Direct messages and the Deliver
// envelopes this node missed are its sessions' business: they replay
// after a reconnect as after a ring change (the node tells the router).

// seenSlots is how many recently resolved sequences the owner remembers,
// so a catch-up skips them: slot seq%seenSlots holds seq. 65,536 cover
// a few seconds at the highest store rates measured here; what slid out
// is resolved again (a duplicate, never a loss).
const seenSlots = 1 << 16

// catchUpHistory is how many seconds back the history of the highest
// resolved sequence goes: a catch-up starts from the highest sequence
// resolved that many seconds before the drop, since messages reach the
// owner out of sequence order (several publishers' nodes) by far less.
const catchUpHistory = 2

// catchUpPatience is how long a catch-up keeps trying to read the store
// while it does not answer, Resolves parked meanwhile. Past it, the
// missed messages come when their publishers' nodes send them again
// (ack.go), after newer ones. Only stored (QoS 1) group messages wait,
// and while the store does not answer no new ones are stored: waiting
// costs little. A NATS server's death can leave the journal's stream
// without a leader for about 5 s on a loaded machine (a chaos run gave
// up 0.2 s before the store answered again, with 5 s), so it is
// several times that.
const catchUpPatience = 20 * time.Second

// maxParked bounds the Resolves parked while the connection is down or
// a catch-up reads; past it they are resolved at once (their order is no
// longer kept, their delivery is) and counted.
const maxParked = 1 << 16

// catchUp is the owner's state (see above).
type catchUp struct {
	seen [seenSlots]atomic.Uint64
	high atomic.Uint64 // highest sequence resolved here
	// hist[i] is high at the last catchUpHistory+1 ticks (one a second),
	// hist[at] the newest.
	hist [catchUpHistory + 1]atomic.Uint64
	at   atomic.Int64

	parking atomic.Bool // mirrors active, read by receive without mu

	mu      sync.Mutex
	active  bool   // Resolves of stored messages park
	reading bool   // a catch-up read runs
	pending bool   // a drop since the last read began
	from    uint64 // where that read starts (0: no read, nothing was resolved before the drop)
	parked  map[uint64]*Envelope
	extra   []*Envelope // parked with a sequence parked already (sent again)
	stop    chan struct{}
	done    chan struct{}
	reads   sync.WaitGroup
}

func (c *catchUp) init() {
	c.parked = make(map[uint64]*Envelope)
	c.stop = make(chan struct{})
	c.done = make(chan struct{})
}

func (c *catchUp) setActive(on bool) { c.active = on; c.parking.Store(on) }

// resolved notes that stored group message seq was resolved here.
func (c *catchUp) resolved(seq uint64) {
	c.seen[seq%seenSlots].Store(seq)
	for {
		h := c.high.Load()
		if seq <= h || c.high.CompareAndSwap(h, seq) {
			return
		}
	}
}

func (c *catchUp) wasResolved(seq uint64) bool { return c.seen[seq%seenSlots].Load() == seq }

// tick records the highest sequence resolved, once a second.
func (c *catchUp) tick() {
	i := (c.at.Load() + 1) % int64(len(c.hist))
	c.hist[i].Store(c.high.Load())
	c.at.Store(i)
}

// floor is the lowest of the history: every stored group message above
// it may not have reached this node before a drop that happened now. 0
// when nothing was resolved here yet (a node just started reads
// nothing back: it cannot tell what it missed from what came before it).
func (c *catchUp) floor() uint64 {
	low := c.high.Load()
	for i := range c.hist {
		if h := c.hist[i].Load(); h != 0 {
			low = min(low, h)
		}
	}
	return low
}

func (f *Fanout) catchUpLoop() {
	c := &f.cu
	defer close(c.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.tick()
		}
	}
}

// Disconnected tells the Fanout that its bus connection dropped: stored
// group messages it owns may be lost on their way here from now on, so
// Resolves of stored messages wait until Reconnected has read what was
// missed. Goroutine-safe; a no-op without a Store.
func (f *Fanout) Disconnected() {
	if f.store == nil || f.closed.Load() {
		return
	}
	c := &f.cu
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.pending {
		c.pending = true
		c.from = 0
		if low := c.floor(); low > 0 {
			c.from = low + 1
		}
		f.log.Info("connection dropped: stored group messages wait for the catch-up", "from", c.from, "highest_resolved", c.high.Load())
	}
	c.setActive(true)
}

// Reconnected tells the Fanout that its bus connection is back (or that
// the bus dropped envelopes for it: call Disconnected first): it reads
// the stored group messages since shortly before the drop and resolves
// those it owns and had not resolved, then the Resolves parked
// meanwhile, in sequence order. Goroutine-safe; a no-op without a
// Store.
func (f *Fanout) Reconnected() {
	if f.store == nil || f.closed.Load() {
		return
	}
	c := &f.cu
	c.mu.Lock()
	if c.reading || !c.pending {
		c.mu.Unlock() // a running read goes on to what came since
		return
	}
	c.reading = true
	c.setActive(true)
	c.reads.Add(1)
	c.mu.Unlock()
	f.stats.catchUps.Add(1)
	go f.catchUpRead()
}

// parkResolve keeps the Resolve of stored message env, for a group this
// node owns, while a catch-up is pending or running; false: resolve it
// now. Called from receive.
func (f *Fanout) parkResolve(env *Envelope) bool {
	c := &f.cu
	if !c.parking.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active {
		return false
	}
	if len(c.parked)+len(c.extra) >= maxParked {
		f.stats.catchUpOverflow.Add(1)
		f.warn("too many group messages wait for a catch-up; resolving them at once", "parked", maxParked)
		return false
	}
	if _, ok := c.parked[env.Msg.Seq]; ok {
		c.extra = append(c.extra, env)
	} else {
		c.parked[env.Msg.Seq] = env
	}
	return true
}

// catchUpRead is the catch-up (see Reconnected), run in a goroutine.
func (f *Fanout) catchUpRead() {
	c := &f.cu
	defer c.reads.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		c.mu.Lock()
		pending, from := c.pending, c.from
		c.pending = false
		c.mu.Unlock()
		if !pending {
			break // nothing (more) to read
		}
		if from == 0 {
			continue
		}
		// Right after a reconnect JetStream may not answer yet (the
		// server that went away may have led the stream): try again,
		// the Resolves staying parked, for a while.
		rctx, rcancel := context.WithTimeout(ctx, catchUpPatience)
		for wait := 250 * time.Millisecond; ; wait = min(2*wait, time.Second) {
			err := f.catchUpFrom(rctx, from)
			if err == nil {
				break
			}
			if rctx.Err() != nil {
				f.stats.catchUpErrors.Add(1)
				f.log.Warn("catching up on stored group messages failed: those lost on the way here come when their publishers' nodes send them again",
					"from", from, "err", err)
				break
			}
			f.warn("catching up on stored group messages: the store does not answer yet; trying again", "from", from, "err", err)
			select {
			case <-rctx.Done():
			case <-time.After(wait):
			}
		}
		rcancel()
	}
	// What parked: in sequence order, and what parks meanwhile after it,
	// until none is left; only then do Resolves flow again.
	w := f.getWork()
	defer f.putWork(w)
	for {
		c.mu.Lock()
		parked := c.extra
		for _, env := range c.parked {
			parked = append(parked, env)
		}
		clear(c.parked)
		c.extra = nil
		if len(parked) == 0 || f.closed.Load() {
			c.reading = false
			c.setActive(false)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		slices.SortStableFunc(parked, func(a, b *Envelope) int { return cmp.Compare(a.Msg.Seq, b.Msg.Seq) })
		for _, env := range parked {
			f.resolveParked(w, env)
		}
	}
}

// catchUpFrom resolves the stored group messages from sequence from
// that this node owns and had not resolved, parked ones with their
// publishers' waits.
func (f *Fanout) catchUpFrom(ctx context.Context, from uint64) error {
	c := &f.cu
	w := f.getWork()
	defer f.putWork(w)
	n, skipped := 0, 0
	var first, latest uint64 // the sequences resolved again
	// Read at least up to the newest Resolve parked: those are stored,
	// and what went missing before them is too, whatever the stream's
	// info says right after its leader moved.
	var newest uint64
	c.mu.Lock()
	for seq := range c.parked {
		newest = max(newest, seq)
	}
	c.mu.Unlock()
	last, err := f.store.ReplayGroups(ctx, from, newest, func(seq uint64, m *message.Message) error {
		if f.place.Owner(m.To) != f.self {
			return nil
		}
		if c.wasResolved(seq) {
			skipped++
			return nil
		}
		m.Seq = seq
		if env := f.takeParked(seq); env != nil {
			f.resolveParked(w, env)
		} else if _, err := f.resolve(w, m, ackReq{}); err != nil {
			f.warn("could not resolve a stored group message again", "group", m.To, "seq", seq, "err", err)
		}
		if n == 0 {
			first = seq
		}
		latest = seq
		n++
		return nil
	})
	f.stats.caughtUp.Add(uint64(n))
	if err != nil {
		return err
	}
	c.mu.Lock()
	parked := len(c.parked) + len(c.extra)
	c.mu.Unlock()
	f.log.Info("caught up on stored group messages after the connection dropped", "from", from, "to", last,
		"resolved", n, "first", first, "last_resolved", latest, "already_resolved", skipped, "parked", parked)
	return nil
}

// takeParked removes and returns the parked Resolve of seq, if any.
func (f *Fanout) takeParked(seq uint64) *Envelope {
	c := &f.cu
	c.mu.Lock()
	defer c.mu.Unlock()
	env := c.parked[seq]
	delete(c.parked, seq)
	return env
}

// resolveParked resolves a parked Resolve as receive would have.
func (f *Fanout) resolveParked(w *work, env *Envelope) {
	m := &env.Msg
	ack := ackReq{env.AckNode, env.AckID}
	if f.place.Owner(m.To) != f.self && env.Hops < f.hopLimit {
		if err := f.sendResolve(w, f.place.Owner(m.To), env.Hops+1, m, ack); err != nil {
			f.warn("could not pass a group message on to its owner", "group", m.To, "err", err)
		}
		return
	}
	f.resolveFor(w, m, ack)
}
