package membership

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pushring/pushring/ring"
)

// Node states as Node.State spells them.
const (
	StateAlive = "alive"
	StateDead  = "dead" // failed: stopped answering probes
	StateLeft  = "left" // announced its leave
)

// view is one immutable snapshot of the cluster as this node sees it:
// the ring and the description of every node on it.
type view struct {
	ring  *ring.Ring
	nodes []Node         // ring members sorted by ID, RingPart set
	index map[string]int // ID → position in nodes
	self  Node           // this node, with its current State and RingPart
}

// homeNode returns the description of the node that owns principal id.
func (v *view) homeNode(id string) Node {
	if i, ok := v.index[v.ring.Home(id)]; ok {
		return v.nodes[i]
	}
	return v.self
}

// placement holds the current view, swaps it atomically, counts ring
// changes and tells listeners about them. Cluster and Memory embed it.
//
// publish is called by one goroutine at a time (the owner serializes it);
// notify runs the listeners and may run concurrently with publish.
// Lock order: notifyMu, then mu.
type placement struct {
	cfg     ring.Config
	cur     atomic.Pointer[view]
	changes atomic.Uint64

	notifyMu sync.Mutex // serializes notify; held while listeners run
	last     *ring.Ring // the ring listeners last heard about; guarded by notifyMu

	mu        sync.Mutex // guards listeners, subs, next
	listeners map[uint64]func(old, new *ring.Ring)
	subs      map[uint64]chan struct{}
	next      uint64
}

func (p *placement) init(cfg ring.Config, self Node) {
	p.cfg = cfg
	r := ring.New([]string{self.ID}, cfg)
	self.State, self.RingPart = StateAlive, 1
	p.cur.Store(&view{ring: r, nodes: []Node{self}, index: map[string]int{self.ID: 0}, self: self})
	p.last = r
}

// publish installs a view of the ring members live (State set by the
// caller) and self. It keeps the current *ring.Ring when the member set
// is unchanged, and reports whether the ring changed.
func (p *placement) publish(live []Node, self Node) bool {
	live = slices.Clone(live)
	slices.SortFunc(live, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	ids := make([]string, len(live))
	for i, n := range live {
		ids[i] = n.ID
	}
	old := p.cur.Load()
	r := old.ring
	changed := !slices.Equal(r.Nodes(), ids)
	if changed {
		r = ring.New(ids, p.cfg)
	}
	v := &view{ring: r, nodes: live, index: make(map[string]int, len(live)), self: self}
	for i := range live {
		live[i].RingPart = r.Share(live[i].ID)
		v.index[live[i].ID] = i
	}
	v.self.RingPart = r.Share(self.ID)
	p.cur.Store(v)
	if changed {
		p.changes.Add(1)
	}
	return changed
}

// notify calls the listeners if the ring changed since they last heard.
// Rings published in between are skipped: a listener sees old → new
// where old is the ring it was last given.
func (p *placement) notify() {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	r := p.cur.Load().ring
	if r == p.last {
		return
	}
	old := p.last
	p.last = r

	p.mu.Lock()
	keys := make([]uint64, 0, len(p.listeners))
	for k := range p.listeners {
		keys = append(keys, k)
	}
	slices.Sort(keys) // registration order
	fns := make([]func(old, new *ring.Ring), len(keys))
	for i, k := range keys {
		fns[i] = p.listeners[k]
	}
	chans := make([]chan struct{}, 0, len(p.subs))
	for _, ch := range p.subs {
		chans = append(chans, ch)
	}
	p.mu.Unlock()

	for _, fn := range fns {
		fn(old, r)
	}
	for _, ch := range chans {
		select {
		case ch <- struct{}{}:
		default: // already signalled and not yet drained
		}
	}
}

// OnChange registers fn to be called after each ring change with the
// ring it replaced and the new one (the current snapshot). Calls come
// from one goroutine at a time, in order; rings that were replaced again
// before fn ran are skipped, so old is always the ring the previous call
// gave as new. fn may read the membership (Home, Ring, Nodes) but must not
// call Close or Leave (Close waits for the goroutine fn runs on), and
// should return quickly: it delays later notifications (never gossip or
// lookups). The returned func unregisters fn.
func (p *placement) OnChange(fn func(old, new *ring.Ring)) (cancel func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listeners == nil {
		p.listeners = map[uint64]func(old, new *ring.Ring){}
	}
	id := p.next
	p.next++
	p.listeners[id] = fn
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.listeners, id)
	}
}

// Subscribe returns a channel that receives a value after ring changes:
// at most one is buffered, so a slow reader sees one signal for several
// changes and reads Ring() for the current state. The returned func
// unsubscribes; the channel is never closed.
func (p *placement) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.subs == nil {
		p.subs = map[uint64]chan struct{}{}
	}
	id := p.next
	p.next++
	p.subs[id] = ch
	return ch, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.subs, id)
	}
}

// Ring is the current ring snapshot: an atomic load, no lock. Hold on to
// it to make several placement decisions against one consistent view.
func (p *placement) Ring() *ring.Ring { return p.cur.Load().ring }

// Home is the node that delivers to principal id. Goroutine-safe,
// lock-free, no allocation.
func (p *placement) Home(id string) string { return p.cur.Load().ring.Home(id) }

// Owner is the node that resolves group gid. Goroutine-safe, lock-free,
// no allocation.
func (p *placement) Owner(gid string) string { return p.cur.Load().ring.GroupOwner(gid) }

// HomeNode returns the full description of Home(id).
func (p *placement) HomeNode(id string) Node { return p.cur.Load().homeNode(id) }

// Self is this node, with its state and current ring share.
func (p *placement) Self() Node { return p.cur.Load().self }

// Nodes lists the nodes on the ring, sorted by ID, with their ring share.
// The slice is the caller's.
func (p *placement) Nodes() []Node { return slices.Clone(p.cur.Load().nodes) }

// RingChanges counts the ring changes since start (the initial ring of
// this node alone is not counted).
func (p *placement) RingChanges() uint64 { return p.changes.Load() }
