package fanout

import (
	"context"
	"sync"
	"time"
	"unsafe"

	"github.com/pushring/pushring/flow"
	"github.com/pushring/pushring/message"
)

// Store keeps messages durably before their publishers are acknowledged
// (the node's journal implements it). Append copies what it needs of m
// before it returns, and later tells cb.Appended(tag, seq, err) exactly
// once, in the order of the Append calls, unless it returns an error.
type Store interface {
	Append(m *message.Message, cb flow.Appended, tag uint64) error
	// Withdraw deletes the message stored at seq, in the background: its
	// publisher was not acknowledged and sends it again (see Appended).
	Withdraw(seq uint64)
	// ReplayGroups calls fn, in store order, for every stored group
	// message from sequence from to the store's end when it began (at
	// least atLeast, a sequence known stored), and returns that end (see
	// catchup.go).
	ReplayGroups(ctx context.Context, from, atLeast uint64, fn func(seq uint64, m *message.Message) error) (last uint64, err error)
}

// Stored before acknowledged: with a Store, a QoS 1 message is appended
// to it first, and only once the store answers is the publisher told
// (Receipt.Stored) and the message forwarded, carrying its sequence
// (m.Seq), so delivering nodes can track what each persistent session
// acknowledged. The forward keeps the message until its confirmations
// come; when they do not come in time it is forwarded again (ack.go,
// maxSends), never taken as delivered. The store answers in append order
// and its answers are forwarded in that order, so one publisher's
// messages leave this node in the order they were published.

// appends are the messages handed to the Store and not answered yet, by
// tag.
type appends struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]pendingAppend
}

type pendingAppend struct {
	m   *message.Message // a private copy, forwarded once stored
	r   flow.Receipt
	tag uint64
}

func (a *appends) add(p pendingAppend) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[uint64]pendingAppend)
	}
	a.next++
	a.m[a.next] = p
	return a.next
}

func (a *appends) take(id uint64) (pendingAppend, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.m[id]
	delete(a.m, id)
	return p, ok
}

// storeThenForward is ForwardAcked with a Store.
func (f *Fanout) storeThenForward(m *message.Message, r flow.Receipt, tag uint64) error {
	if err := f.check(m); err != nil {
		return err
	}
	id := f.appends.add(pendingAppend{m: cloneMessage(m), r: r, tag: tag})
	if err := f.store.Append(m, f, id); err != nil {
		f.appends.take(id)
		return err
	}
	return nil
}

// Appended is the Store's answer for the message appended under id: the
// publisher is told, and a stored message is forwarded.
func (f *Fanout) Appended(id, seq uint64, err error) {
	p, ok := f.appends.take(id)
	if !ok {
		return
	}
	if err != nil {
		f.storeFailing.CompareAndSwap(0, time.Now().UnixNano())
		p.r.Stored(p.tag, err)
		return
	}
	if f.storeFailing.Load() != 0 {
		f.storeFailing.Store(0)
	}
	if seq > f.lastStored.Load() { // answers come in order: no compare-and-swap needed
		f.lastStored.Store(seq)
	}
	p.m.Seq = seq
	if !p.r.Stored(p.tag, nil) {
		// Not acknowledged: the client sends it again, after an earlier
		// message that may have failed to store. The stored copy would
		// be read back ahead of that one: it goes.
		f.stats.heldBack.Add(1)
		f.store.Withdraw(seq)
		return
	}
	if err := f.forward(p.m, p.r, p.tag); err != nil {
		// Stored and told: the wait, if forward made one, sends it again;
		// otherwise (closed, refused) the sessions replay it.
		f.warn("could not forward a stored message", "id", message.FormatID(p.m.ID), "seq", seq, "err", err)
	}
}

// StoreFailing is when the Store's answers started failing, every one
// since: zero while the last answer was a success (or none came). A
// success ends it; so does StoreReachable, when a check of the store
// that started after the failures succeeded (a node whose failing
// publishers were disconnected appends nothing more to succeed with).
func (f *Fanout) StoreFailing() time.Time {
	if ns := f.storeFailing.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// LastStored is the highest sequence the Store gave a message appended
// here: where the journal ended at the last append, as far as this node
// knows. 0 before the first.
func (f *Fanout) LastStored() uint64 { return f.lastStored.Load() }

// StoreReachable says a check of the store that started at checked
// succeeded: failures that came before it are over.
func (f *Fanout) StoreReachable(checked time.Time) {
	if ns := f.storeFailing.Load(); ns != 0 && ns <= checked.UnixNano() {
		f.storeFailing.CompareAndSwap(ns, 0)
	}
}

// cloneMessage copies m and everything it points to into one allocation
// of bytes plus the Message: the copy is kept while the store answers
// and until its deliveries are confirmed.
func cloneMessage(m *message.Message) *message.Message {
	buf := make([]byte, 0, len(m.From)+len(m.To)+len(m.Payload)+len(m.Props))
	buf = append(append(append(append(buf, m.From...), m.To...), m.Payload...), m.Props...)
	c := *m
	c.From = unsafe.String(unsafe.SliceData(buf), len(m.From))
	c.To = unsafe.String(unsafe.SliceData(buf[len(m.From):]), len(m.To))
	rest := buf[len(m.From)+len(m.To):]
	c.Payload = rest[:len(m.Payload):len(m.Payload)]
	if m.Props != nil {
		c.Props = rest[len(m.Payload):]
	}
	return &c
}

// stored is a Receipt that waits for Stored: ForwardStored's.
type stored struct{ done chan error }

func (s *stored) Stored(_ uint64, err error) bool { s.done <- err; return true }
func (s *stored) Accepted(uint64)                 {}

// ForwardStored is Forward for an HTTP publish: a QoS 1 message is
// forwarded once stored, and ForwardStored returns when the store
// answered (nil: stored), or with ctx's error (the message may still be
// stored and delivered). Without a Store, or for QoS 0, it is Forward.
func (f *Fanout) ForwardStored(ctx context.Context, m *message.Message) error {
	if f.store == nil || m == nil || m.QoS == 0 {
		return f.Forward(ctx, m)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s := &stored{done: make(chan error, 1)}
	if err := f.storeThenForward(m, s, 0); err != nil {
		return err
	}
	select {
	case err := <-s.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
