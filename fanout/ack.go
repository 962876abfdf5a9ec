package fanout

import (
	"strings"

	"sync"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/flow"

	"github.com/pushring/pushring/message"
)

// Flow control for QoS 1 messages, so that a fast publisher does not
// make slow recipients' queues overflow and lose messages.
//
// Without it a publisher's PUBACK means "handed to NATS": a publisher
// with a window of unacknowledged messages runs as far ahead of delivery
// as NATS buffers allow, and when members read more slowly than it
// publishes their session queues overflow and drop the oldest messages.
// With it the PUBACK waits until every node that delivers the message
// has queued it for its recipients, and a node withholds its part of that
// acknowledgement while one of the recipients' queues is backlogged (see
// AckDeliverer). The publisher's own window then paces it to the slowest
// member that still keeps up.
//
// The flow, for a message published at node I (the ingress):
//
//   - I registers a wait (a number, the ack id) and sends the message's
//     Resolve or Deliver envelopes with "ack node I, ack id" attached
//     (kinds 6 and 7, see envelope.go).
//   - A home node hands a Deliver to its Deliverer and, once the
//     recipients' sessions have room (at once, usually), sends I an Ack
//     entry "id: 1 Deliver taken in".
//   - An owner resolving a Resolve for I passes the ack fields on in every
//     Deliver it sends and tells I how many it sent ("id: expect n");
//     when I resolves the group itself it knows n already.
//   - I calls the publisher's Receipt once it counted n Deliver acks, or
//     after Config.AckTimeout whatever it counted (a node that died with
//     the message, or a lost ack: the PUBACK then means "handed to NATS",
//     as without flow control, and the timeout is counted). This does
//     not make QoS 1 durable (the Store does, store.go).
//
// Ack entries are batched per waiting node by one goroutine (ackLoop):
// under load one Ack envelope carries the entries of many messages. Acks
// for this node itself skip the bus. Deliver envelopes a home node sends
// on along attach records carry no ack request: a principal connected
// away from its home is not waited for.

// ForwardAcked is Forward for a QoS 1 message whose publisher waits
// (the router's AckDeliverer and Deliverer side is in flow). With a
// Config.Store, m is stored first (store.go) and forwarded, carrying its
// sequence, once stored; r.Stored(tag, err) says which. r.Accepted(tag)
// follows once every node delivering m has taken it in, or after
// Config.AckTimeout, unless the Fanout is closed first (the node closes
// the router before it). On an error nothing was registered and r is
// never called. m.QoS must be 1 or 2 (both are stored and acknowledged
// alike). Neither m nor m.Payload is kept.
func (f *Fanout) ForwardAcked(m *message.Message, r flow.Receipt, tag uint64) error {
	if m != nil && m.QoS == 0 {
		return ErrInvalidMessage
	}
	if f.store != nil {
		return f.storeThenForward(m, r, tag)
	}
	return f.forward(m, r, tag)
}

// waits is the ingress side: the messages whose publishers wait.
type waits struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]wait
}

type wait struct {
	r    flow.Receipt // nil once told (a stored message waiting to be sent again)
	tag  uint64
	want int64 // Deliver envelopes to count; -1 until the owner said
	got  int64
	due  int64 // unix ns: acknowledge anyway
	// m is the stored message (Seq set), kept to be forwarded again if
	// the confirmations do not come; nil when it was not stored.
	m     *message.Message
	sends int // times m was forwarded
}

// add registers a wait for r and returns its id.
func (ws *waits) add(r flow.Receipt, tag uint64, due int64, m *message.Message) uint64 {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.m == nil {
		ws.m = make(map[uint64]wait)
	}
	ws.next++
	ws.m[ws.next] = wait{r: r, tag: tag, want: -1, due: due, m: m, sends: 1}
	return ws.next
}

// cancel forgets wait id (its envelopes could not all be sent).
func (ws *waits) cancel(id uint64) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	delete(ws.m, id)
}

// update applies one Ack entry (or this node's own count, expect) and
// returns the receipt to call if the wait is complete. An unknown id (a
// wait that timed out, or a confused peer) is ignored.
func (ws *waits) update(a Ack) (flow.Receipt, uint64, bool) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w, ok := ws.m[a.ID]
	if !ok {
		return nil, 0, false
	}
	if a.Expect {
		if w.want >= 0 {
			return nil, 0, false // said twice: keep the first
		}
		w.want = int64(a.N)
	} else {
		w.got += int64(a.N)
	}
	if w.want < 0 || w.got < w.want {
		ws.m[a.ID] = w
		return nil, 0, false
	}
	delete(ws.m, a.ID)
	if w.r == nil {
		return nil, 0, false // told at an earlier timeout
	}
	return w.r, w.tag, true
}

// timedOut is a wait whose confirmations did not come in time.
type timedOut struct {
	r   flow.Receipt // nil: told before
	tag uint64
	id  uint64
	m   *message.Message // non-nil: stored, to be forwarded again under id
}

// expired takes the waits due by now and appends them to out. A stored
// message forwarded fewer than maxSends times stays registered, reset to
// wait for its next forward (the caller sends it), with its receipt
// taken out of it: a publisher is told once.
func (ws *waits) expired(now int64, next int64, out []timedOut) []timedOut {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for id, w := range ws.m {
		if w.due > now {
			continue
		}
		t := timedOut{r: w.r, tag: w.tag, id: id}
		if w.m != nil && w.sends < maxSends {
			t.m = w.m
			w.r, w.want, w.got, w.due = nil, -1, 0, next
			w.sends++
			ws.m[id] = w
		} else {
			delete(ws.m, id)
		}
		out = append(out, t)
	}
	return out
}

// maxSends bounds how often a stored message is forwarded while its
// confirmations do not come (a node that died with it, a ring still
// converging). Past it the message waits in the store for its
// recipients' next replay.
const maxSends = 4

func (ws *waits) len() int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return len(ws.m)
}

// handleAcks applies the entries of an Ack envelope (or of this node's
// own batch) and tells the receipts that are complete.
func (f *Fanout) handleAcks(acks []Ack) {
	for _, a := range acks {
		if r, tag, ok := f.waits.update(a); ok {
			f.accepted(r, tag)
		}
	}
}

// accepted calls r.Accepted(tag), keeping a panic in it from taking the
// calling goroutine (the bus's, or ackLoop) down.
func (f *Fanout) accepted(r flow.Receipt, tag uint64) {
	defer func() {
		if p := recover(); p != nil {
			f.stats.panics.Add(1)
			f.log.Error("recovered a panic in a Receipt", "panic", p)
		}
	}()
	r.Accepted(tag)
}

// ackOut is the sending side: Ack entries waiting for ackLoop, by node.
type ackOut struct {
	mu     sync.Mutex
	byNode map[string][]Ack
	spare  map[string][]Ack // the batch before, emptied: the next byNode (nil while ackLoop sends it)
	wake   chan struct{}    // cap 1
	stop   chan struct{}
	done   chan struct{}
}

func (o *ackOut) init() {
	o.byNode = make(map[string][]Ack)
	o.spare = make(map[string][]Ack)
	o.wake = make(chan struct{}, 1)
	o.stop = make(chan struct{})
	o.done = make(chan struct{})
}

// queueAck has ackLoop send a to node. node may alias an envelope.
func (f *Fanout) queueAck(node string, a Ack) {
	o := &f.acksOut
	o.mu.Lock()
	list, ok := o.byNode[node] // empty, with its storage, if node had acks lately
	if !ok {
		if len(o.byNode) >= maxPeers {
			o.mu.Unlock()
			f.stats.ackDrops.Add(1) // garbage ack nodes: not worth a map entry
			return
		}
		node = strings.Clone(node)
	}
	o.byNode[node] = append(list, a)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// withheldAcks are the confirmations this node withholds while
// recipients are backlogged (flow.AckDeliverer), by withhold number: no
// goroutine or timer each, ackLoop's tick times them out.
type withheldAcks struct {
	seq atomic.Uint64
	mu  sync.Mutex
	m   map[uint64]withheldAck
}

type withheldAck struct {
	// node is the waiting node. It aliases the received envelope until
	// settleWithheld copies it (the envelope is not reused before then).
	node string
	id   uint64
	due  int64 // unix ns: confirm anyway (AckWithhold)
}

// withholdAck registers node's confirmation of id as withheld and
// returns its withhold number, for DeliverAcked. It is registered before
// the delivery so that Confirm, which may run on another goroutine
// before DeliverAcked returns, always finds it; settleWithheld must
// follow. The map keeps its storage, so a delivery whose recipients keep
// up allocates nothing.
func (f *Fanout) withholdAck(node string, id uint64) uint64 {
	ws := &f.withheld
	seq := ws.seq.Add(1)
	due := f.cfg.Now().Add(f.cfg.AckWithhold).UnixNano()
	ws.mu.Lock()
	if ws.m == nil {
		ws.m = make(map[uint64]withheldAck)
	}
	ws.m[seq] = withheldAck{node: node, id: id, due: due}
	ws.mu.Unlock()
	return seq
}

// settleWithheld ends the registration of withhold number seq once
// DeliverAcked returned withheld. Not withheld: no Confirm follows, so
// the confirmation goes now, unless a timeout sent it already. Withheld:
// it waits for Confirm or AckWithhold (or went already, if Confirm came
// first); the entry, if still there, gets its own copy of the node id.
func (f *Fanout) settleWithheld(seq uint64, withheld bool) {
	ws := &f.withheld
	ws.mu.Lock()
	w, ok := ws.m[seq]
	switch {
	case !ok:
	case withheld:
		w.node = strings.Clone(w.node)
		ws.m[seq] = w
	default:
		delete(ws.m, seq)
	}
	ws.mu.Unlock()
	if withheld {
		f.stats.acksWithheld.Add(1)
	} else if ok {
		f.queueAck(w.node, Ack{ID: w.id, N: 1})
	}
}

// Confirm is the AckDeliverer's word that the confirmation withheld
// under seq may go. A number it does not know timed out already (or was
// never withheld).
func (f *Fanout) Confirm(seq uint64) {
	ws := &f.withheld
	ws.mu.Lock()
	if w, ok := ws.m[seq]; ok {
		delete(ws.m, seq)
		// Queued under the lock: w.node may still alias an envelope that
		// settleWithheld, which waits for the lock, keeps alive until then.
		f.queueAck(w.node, Ack{ID: w.id, N: 1})
	}
	ws.mu.Unlock()
}

// expireWithheld sends the withheld confirmations due by now, counted.
func (f *Fanout) expireWithheld(now int64) {
	ws := &f.withheld
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for seq, w := range ws.m {
		if w.due <= now {
			delete(ws.m, seq)
			f.stats.withholdTimeouts.Add(1)
			f.queueAck(w.node, Ack{ID: w.id, N: 1}) // under the lock, as in Confirm
		}
	}
}

// ackLoop sends the queued Ack entries, one envelope per node for all
// that queued up while it was sending the previous ones, and acknowledges
// the waits that timed out.
func (f *Fanout) ackLoop() {
	o := &f.acksOut
	defer close(o.done)
	tick := time.NewTicker(f.ackTick)
	defer tick.Stop()
	var buf []byte
	var due []timedOut
	for {
		select {
		case <-o.wake:
			buf = f.sendAcks(buf)
		case <-tick.C:
			now := f.cfg.Now()
			f.expireWithheld(now.UnixNano())
			due = f.waits.expired(now.UnixNano(), now.Add(f.cfg.AckTimeout).UnixNano(), due[:0])
			resent := 0
			for _, t := range due {
				if t.r != nil {
					f.stats.ackTimeouts.Add(1)
					f.accepted(t.r, t.tag)
				}
				if t.m != nil {
					// Not delivered as far as this node knows: the
					// message is stored, so send it again (sessions
					// drop what they had by its id).
					f.resend(t.m, t.id)
					resent++
				}
			}
			if len(due) > 0 {
				f.warn("QoS 1 deliveries not confirmed in time",
					"count", len(due), "sent_again", resent, "timeout", f.cfg.AckTimeout)
			}
			clear(due)
		case <-o.stop:
			f.sendAcks(buf)
			return
		}
	}
}

// sendAcks sends what is queued and returns the scratch buffer.
func (f *Fanout) sendAcks(buf []byte) []byte {
	o := &f.acksOut
	o.mu.Lock()
	batch := o.byNode
	o.byNode, o.spare = o.spare, nil
	o.mu.Unlock()
	for node, acks := range batch {
		if len(acks) == 0 {
			delete(batch, node) // no ack for this node last time: forget it
			continue
		}
		if node == f.self {
			f.handleAcks(acks)
		} else {
			buf = f.publishAcks(buf, node, acks)
		}
		clear(acks)
		batch[node] = acks[:0]
	}
	o.mu.Lock()
	o.spare = batch
	o.mu.Unlock()
	return buf
}

// publishAcks sends acks to node in as few envelopes as maxBytes allows.
func (f *Fanout) publishAcks(buf []byte, node string, acks []Ack) []byte {
	fixed := headerSize(f.self) + binary10
	for len(acks) > 0 {
		n, size := 0, fixed
		for n < len(acks) {
			c := uvarintSize(acks[n].ID) + uvarintSize(ackValue(acks[n]))
			if size+c > f.maxBytes {
				break
			}
			size += c
			n++
		}
		if n == 0 { // cannot happen with MaxEnvelopeBytes >= minEnvelopeBytes; never loop
			f.stats.ackDrops.Add(uint64(len(acks)))
			break
		}
		buf = appendHeader(buf[:0], KindAck, 0, f.self)
		buf = appendAcks(buf, acks[:n])
		acks = acks[n:]
		p, err := f.publishTo(node, buf)
		if err != nil {
			f.warn("could not send acks", "node", node, "err", err)
			continue
		}
		p.acks.Add(1)
	}
	return buf
}

// binary10 bounds a uvarint's length.
const binary10 = 10
