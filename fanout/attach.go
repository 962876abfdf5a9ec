package fanout

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/message"
)

// Attach records: a principal connected to a node
// that is not its home still gets everything.
//
// The presence side: the router reports, through Arrived and Left,
// which principals are present here, with sessions on this node
// (router.Presence). For each one whose home is another node, this node
// sends an Attach envelope {Principal: id, Node: self} to the home,
// re-sends it every Config.AttachRenew, and sends a Detach when the
// principal left. The sending is done by one goroutine (started by
// Start, stopped by Close) from a queue, so Arrived and Left never
// block. On every renew and on RingChanged it also re-checks each
// present principal's home: when the home moved, it detaches from the
// old home and attaches to the new one at once.
//
// The home side: Attach and Detach envelopes maintain the attach table,
// principal → attached nodes (those it is present on), each record
// expiring Config.AttachTTL after its last Attach (soft state: a node
// that dies without a Detach is forgotten after the TTL, or at once when
// RingChanged no longer lists it). A Deliver envelope that arrives with
// Hops 0 is delivered locally and, for recipients with live records,
// sent on as one Deliver envelope per attached node, Hops 1, recipients
// batched per node. A Deliver with Hops 1 or more is only delivered
// locally, so nothing loops however the views disagree.
//
// Envelope cost: attachments are batched per home node into AttachMany
// envelopes (as many principals as fit in Config.MaxEnvelopeBytes), so a
// renew costs about one envelope per home node per AttachRenew, and a
// burst of connections is attached in a few envelopes; a lone principal
// goes in a plain Attach. Detach is sent per principal, at once.

// maxAttached bounds the attached nodes recorded for one principal.
const maxAttached = 64

type attachRec struct {
	node    string
	expires int64 // unix nanos
}

// attachTable is the home side: principal → attached nodes.
type attachTable struct {
	mu   sync.RWMutex
	recs map[string][]attachRec
	n    atomic.Int64 // records (Stats, attach_records); 0 lets the receive path skip the table
}

// put records (or renews) that principal is present on node until exp.
func (t *attachTable) put(principal, node string, exp int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.putLocked(principal, node, exp)
}

// putMany is put for several principals present on one node.
func (t *attachTable) putMany(principals []string, node string, exp int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range principals {
		t.putLocked(p, node, exp)
	}
}

func (t *attachTable) putLocked(principal, node string, exp int64) {
	if t.recs == nil {
		t.recs = make(map[string][]attachRec)
	}
	list, ok := t.recs[principal]
	for i := range list {
		if list[i].node == node {
			list[i].expires = exp
			return
		}
	}
	if len(list) >= maxAttached {
		return
	}
	if !ok {
		// The strings alias a received envelope: copies keep the table
		// from holding whole envelopes alive.
		principal = strings.Clone(principal)
	}
	t.recs[principal] = append(list, attachRec{node: strings.Clone(node), expires: exp})
	t.n.Add(1)
}

// del forgets that principal is present on node.
func (t *attachTable) del(principal, node string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.filterLocked(principal, func(r *attachRec) bool { return r.node != node })
}

// retain keeps only the records for which keep returns true.
func (t *attachTable) retain(keep func(r *attachRec) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := range t.recs {
		t.filterLocked(p, keep)
	}
}

func (t *attachTable) filterLocked(principal string, keep func(r *attachRec) bool) {
	list, ok := t.recs[principal]
	if !ok {
		return
	}
	kept := list[:0]
	for _, r := range list {
		if keep(&r) {
			kept = append(kept, r)
		}
	}
	t.n.Add(int64(len(kept) - len(list)))
	clear(list[len(kept):])
	if len(kept) == 0 {
		delete(t.recs, principal)
	} else {
		t.recs[principal] = kept
	}
}

// attached returns the live attached nodes of principal (tests).
func (t *attachTable) attached(principal string, now int64) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []string
	for _, r := range t.recs[principal] {
		if r.expires > now {
			out = append(out, r.node)
		}
	}
	return out
}

// Arrived reports that principal id got its first session on this node
// (router.Presence). If its home is another node, an Attach goes there.
// Never blocks: the work is queued for the attach goroutine. Calls for
// one id must come in order (the router guarantees it). Calls after
// Close are ignored.
func (f *Fanout) Arrived(id string) { f.queuePresence(presenceOp{id: id, arrived: true}) }

// Left reports that principal id has no session left on this node
// (router.Presence). If it was attached to another node, a Detach goes
// there. Never blocks, like Arrived.
func (f *Fanout) Left(id string) { f.queuePresence(presenceOp{id: id}) }

// RingChanged tells the Fanout that the live nodes are now nodes (the
// node calls it from membership's OnChange, after Placement reflects the
// new ring). Every principal present here whose home is another node is
// attached there again, so the new home learns at once. Records are not
// dropped here: those of a dead node, and those left at a principal's
// old home, run out with their TTL. Dropping them early would lose
// messages during a false death (a flap) and to nodes still on the old
// ring, while keeping them costs at most a forward nobody reads. nodes is
// unused today. Harmless at any time; never blocks.
func (f *Fanout) RingChanged(nodes []string) {
	h := &f.pres
	h.mu.Lock()
	h.reattach = true
	h.mu.Unlock()
	h.signal()
}

// presenceOp is one Arrived or Left call, queued.
type presenceOp struct {
	id      string
	arrived bool
}

// presence is the side of the principals present here: a queue filled
// by Arrived, Left and RingChanged, drained by the attach goroutine,
// which alone owns here.
type presence struct {
	mu       sync.Mutex
	ops      []presenceOp
	reattach bool // RingChanged: re-check every present principal

	wake chan struct{} // capacity 1
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the goroutine has returned

	// Owned by the attach goroutine.
	here    map[string]string   // principal → node attached to ("": home is here)
	pending map[string][]string // home node → principals to attach there (see flushAttaches)
	buf     []byte
	spare   []presenceOp
}

func (h *presence) init() {
	h.wake = make(chan struct{}, 1)
	h.stop = make(chan struct{})
	h.done = make(chan struct{})
	h.here = make(map[string]string)
	h.pending = make(map[string][]string)
}

func (h *presence) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (f *Fanout) queuePresence(op presenceOp) {
	if f.closed.Load() {
		return
	}
	h := &f.pres
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
	h.signal()
}

// attachLoop is the attach goroutine: it sends what Arrived, Left and
// RingChanged queued, renews the attachments, and sweeps expired records
// from the table. On stop it sends what is still queued (Detaches of a
// node shutting down), then returns.
func (f *Fanout) attachLoop() {
	h := &f.pres
	defer close(h.done)
	tick := time.NewTicker(f.cfg.AttachRenew)
	defer tick.Stop()
	for {
		select {
		case <-h.wake:
			f.runPresenceOps()
		case <-tick.C:
			f.runPresenceOps()
			f.reattach()
			now := time.Now().UnixNano()
			f.att.retain(func(r *attachRec) bool { return r.expires > now })
		case <-h.stop:
			f.runPresenceOps()
			return
		}
	}
}

func (f *Fanout) runPresenceOps() {
	h := &f.pres
	for {
		h.mu.Lock()
		ops, again := h.ops, h.reattach
		h.ops, h.spare, h.reattach = h.spare[:0], nil, false
		h.mu.Unlock()
		if len(ops) == 0 && !again {
			return
		}
		for _, op := range ops {
			if op.arrived {
				home := f.place.Home(op.id)
				if home == f.self {
					home = ""
				}
				// A record left at an old home expires with its TTL (see
				// RingChanged).
				h.here[op.id] = home
				if home != "" {
					h.pending[home] = append(h.pending[home], op.id)
				}
				continue
			}
			if node, ok := h.here[op.id]; ok {
				delete(h.here, op.id)
				if node != "" {
					f.sendDetach(node, op.id)
				}
			}
		}
		clear(ops)
		h.spare = ops[:0]
		if again {
			f.reattach()
		}
		f.flushAttaches()
	}
}

// reattach re-checks every present principal's home and (re-)sends an
// Attach to it when it is another node; the record at a moved
// principal's old home is left to expire. Attach goroutine only.
func (f *Fanout) reattach() {
	h := &f.pres
	f.flushAttaches()
	for id, old := range h.here {
		home := f.place.Home(id)
		if home == f.self {
			home = ""
		}
		if home != old {
			h.here[id] = home
		}
		if home != "" {
			h.pending[home] = append(h.pending[home], id)
		}
	}
	f.flushAttaches()
}

// sendDetach publishes a Detach of principal id, present here until now, to
// node. Attachments still pending go first, so that a Detach never
// overtakes the Attach it ends. Attach goroutine only.
func (f *Fanout) sendDetach(node, id string) {
	f.flushAttaches()
	h := &f.pres
	h.buf = appendHeader(h.buf[:0], KindDetach, 0, f.self)
	h.buf = appendString(h.buf, id)
	h.buf = appendString(h.buf, f.self)
	f.sendAttachment(KindDetach, node, 1)
}

// flushAttaches sends the pending attachments: per home node, one Attach
// for a lone principal, else AttachMany envelopes of as many principals
// as fit in MaxEnvelopeBytes. Attach goroutine only.
func (f *Fanout) flushAttaches() {
	h := &f.pres
	for node, ids := range h.pending {
		if len(ids) == 1 {
			h.buf = appendHeader(h.buf[:0], KindAttach, 0, f.self)
			h.buf = appendString(h.buf, ids[0])
			h.buf = appendString(h.buf, f.self)
			f.sendAttachment(KindAttach, node, 1)
		}
		fixed := headerSize(f.self) + stringSize(f.self)
		budget := f.maxBytes - fixed - uvarintSize(uint64(len(ids)))
		for rest := ids; len(rest) > 1; {
			n, size := 0, 0
			for n < len(rest) && size+stringSize(rest[n]) <= budget {
				size += stringSize(rest[n])
				n++
			}
			n = max(n, 1) // a principal id is far smaller than any envelope limit
			h.buf = appendHeader(h.buf[:0], KindAttachMany, 0, f.self)
			h.buf = appendString(h.buf, f.self)
			h.buf = appendRecipients(h.buf, rest[:n])
			f.sendAttachment(KindAttachMany, node, n)
			rest = rest[n:]
			if len(rest) == 1 {
				h.buf = appendHeader(h.buf[:0], KindAttach, 0, f.self)
				h.buf = appendString(h.buf, rest[0])
				h.buf = appendString(h.buf, f.self)
				f.sendAttachment(KindAttach, node, 1)
			}
		}
		clear(ids)
		if cap(ids) > 4096 {
			delete(h.pending, node)
		} else {
			h.pending[node] = ids[:0]
		}
	}
}

// sendAttachment publishes h.buf, an attachment envelope for n principals, to
// node.
func (f *Fanout) sendAttachment(kind EnvelopeKind, node string, n int) {
	if err := f.publish(node, f.pres.buf); err != nil {
		f.warn("could not send an attach record", "kind", kind, "principals", n, "node", node, "err", err)
		return
	}
	f.stats.attachesSent.Add(1)
}

// handleAttach applies a received Attach or Detach to the table.
func (f *Fanout) handleAttach(env *Envelope) {
	f.stats.attachesReceived.Add(1)
	if env.Node == f.self {
		return
	}
	switch env.Kind {
	case KindAttach:
		f.att.put(env.Principal, env.Node, time.Now().Add(f.cfg.AttachTTL).UnixNano())
	case KindAttachMany:
		f.att.putMany(env.Principals, env.Node, time.Now().Add(f.cfg.AttachTTL).UnixNano())
	default:
		f.att.del(env.Principal, env.Node)
	}
}

// forwardAttached sends env (a Deliver received with Hops 0) on to the
// nodes its recipients are attached to: one Deliver per node, Hops 1. Called only
// when the table is not empty.
func (f *Fanout) forwardAttached(env *Envelope) {
	w := f.getWork()
	defer f.putWork(w)
	now := time.Now().UnixNano()
	f.att.mu.RLock()
	for _, r := range env.Recipients {
		for _, rec := range f.att.recs[r] {
			if rec.expires > now && rec.node != f.self {
				w.split.Add(rec.node, r)
			}
		}
	}
	f.att.mu.RUnlock()
	for i := range w.split.Len() {
		node := w.split.Node(i)
		// No ack request: an attached node is not waited for (ack.go).
		if _, err := f.sendDeliver(w, node, 1, &env.Msg, w.split.List(i), ackReq{}); err != nil {
			f.warn("could not forward a message to an attached node", "node", node, "id", env.Msg.ID, "err", err)
			continue
		}
		f.stats.attachForwards.Add(1)
	}
}

// SetOffline sets fn to be told, for each recipient of a message
// delivered on this node, of the message where its way ends: on the
// recipient's home when no other node has it attached, or on the node
// the home forwarded it to. fn decides whether the recipient is
// connected there (a message for a member with no live session, for
// webhooks); its false skips the message's other recipients. want is
// asked first, once per message: false skips the recipients at no cost
// (no endpoint takes the events, or none has room for them). Both are called on the bus goroutine and must not block;
// a nil fn: no calls.
func (f *Fanout) SetOffline(want func() bool, fn func(m *message.Message, id string) bool) {
	if fn == nil {
		f.offline.Store(nil)
		return
	}
	f.offline.Store(&offlineHook{want: want, fn: fn})
}

// offlineHook is SetOffline's pair.
type offlineHook struct {
	want func() bool
	fn   func(m *message.Message, id string) bool
}

// endsHere tells h of the recipients of env whose message ends here.
func (f *Fanout) endsHere(env *Envelope, h *offlineHook) {
	if !h.want() {
		return
	}
	now := time.Now().UnixNano()
	for _, r := range env.Recipients {
		if env.Hops == 0 && f.att.n.Load() > 0 && f.attachedElsewhere(r, now) {
			continue // the attached node tells
		}
		if !h.fn(&env.Msg, r) {
			return // no room for more
		}
	}
}

// attachedElsewhere: principal id has a live attach record on another
// node.
func (f *Fanout) attachedElsewhere(id string, now int64) bool {
	f.att.mu.RLock()
	defer f.att.mu.RUnlock()
	for _, rec := range f.att.recs[id] {
		if rec.expires > now && rec.node != f.self {
			return true
		}
	}
	return false
}
