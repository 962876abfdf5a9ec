package fanout

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// MemoryBus is a Bus inside one process, for tests: the network of a
// cluster of Fanouts that share it. It behaves like core NATS where tests
// can tell: Publish copies data and returns at once; every subscription
// to the exact subject (no wildcards) gets its own copy, in publish order,
// from its own goroutine, one message at a time; a subject nobody
// subscribes to swallows messages. After a handler returns, MemoryBus
// overwrites the bytes it was given, so a handler that keeps data past the
// call sees garbage in tests instead of a rare bug in production.
//
// It is a TopicBus too: topic subscriptions match subjects with NATS
// wildcards, and each queue group gets one copy of a message however
// many of its subscriptions match, from one goroutine per group (as
// natsBus has one channel per connection), with the fn of the group's
// first subscription.
type MemoryBus struct {
	mu     sync.Mutex
	subs   map[string][]*memSub // copy on write: Publish reads without mu
	groups []*memGroup          // copy on write, as subs
	nextID uint64               // of topic subscriptions

	bufs sync.Pool // of *[]byte
}

var _ TopicBus = (*MemoryBus)(nil)

// memGroup is a queue group of topic subscriptions. Never modified once
// published in MemoryBus.groups (a change makes a new one, with the same
// sub).
type memGroup struct {
	queue   string
	sub     *memSub
	filters []memFilter
}

type memFilter struct {
	id      uint64
	subject string // may hold wildcards
}

// NewMemoryBus returns an empty MemoryBus. (It returns the concrete type;
// it is a Bus.)
func NewMemoryBus() *MemoryBus {
	return &MemoryBus{subs: make(map[string][]*memSub)}
}

type memSub struct {
	bus     *MemoryBus
	fn      func([]byte)
	stopped atomic.Bool
	wake    chan struct{} // capacity 1: "the queue may be non-empty"

	mu    sync.Mutex
	queue []*[]byte
}

// Publish copies data to every subscription of subject, and to every
// queue group with a topic subscription matching it. It never blocks on
// a handler: queues are unbounded.
func (b *MemoryBus) Publish(subject string, data []byte) error {
	b.mu.Lock()
	subs, groups := b.subs[subject], b.groups
	b.mu.Unlock()
	for _, s := range subs {
		s.push(data)
	}
	for _, g := range groups {
		for _, f := range g.filters {
			if subjectMatch(f.subject, subject) {
				g.sub.push(data) // once per group
				break
			}
		}
	}
	return nil
}

// push queues a copy of data for s's goroutine.
func (s *memSub) push(data []byte) {
	bp := s.bus.getBuf(len(data))
	copy(*bp, data)
	s.mu.Lock()
	s.queue = append(s.queue, bp)
	s.mu.Unlock()
	s.wakeUp()
}

func (s *memSub) wakeUp() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// SubscribeTopic adds a subscription to queue group queue, starting the
// group's goroutine (with fn) if it is the group's first. The returned
// func removes it; the group's last one stops the goroutine, without
// waiting for a call in progress, and discards what was queued.
func (b *MemoryBus) SubscribeTopic(subject, queue string, fn func(data []byte, more bool)) (func(), error) {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	next := make([]*memGroup, 0, len(b.groups)+1)
	var added bool
	for _, g := range b.groups {
		if g.queue == queue {
			c := *g
			c.filters = append(slices.Clip(g.filters), memFilter{id, subject})
			g, added = &c, true
		}
		next = append(next, g)
	}
	if !added {
		s := &memSub{bus: b, fn: func(data []byte) { fn(data, false) }, wake: make(chan struct{}, 1)}
		next = append(next, &memGroup{queue: queue, sub: s, filters: []memFilter{{id, subject}}})
		go s.run()
	}
	b.groups = next
	b.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { b.unsubscribeTopic(queue, id) }) }, nil
}

func (b *MemoryBus) unsubscribeTopic(queue string, id uint64) {
	b.mu.Lock()
	next := make([]*memGroup, 0, len(b.groups))
	var stopped *memSub
	for _, g := range b.groups {
		if g.queue == queue {
			c := *g
			c.filters = slices.DeleteFunc(slices.Clone(g.filters), func(f memFilter) bool { return f.id == id })
			if len(c.filters) == 0 {
				stopped = g.sub
				continue
			}
			g = &c
		}
		next = append(next, g)
	}
	b.groups = next
	b.mu.Unlock()
	if stopped != nil {
		stopped.stopped.Store(true)
		stopped.wakeUp()
	}
}

// FlushContext returns ctx's error, if any: a subscription is already
// in place when SubscribeTopic returns.
func (b *MemoryBus) FlushContext(ctx context.Context) error { return ctx.Err() }

// subjectMatch reports whether subject (no wildcards) matches filter as
// NATS matches them: tokens separated by '.', '*' matches any one token,
// a final '>' one or more.
func subjectMatch(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		if ft == ">" && !fmore {
			return subject != ""
		}
		st, srest, smore := strings.Cut(subject, ".")
		if ft != "*" && ft != st {
			return false
		}
		if !fmore || !smore {
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}

// Subscribe starts a goroutine that calls fn for each message published
// on subject from now on. The returned func stops it without waiting for a
// call in progress (like NATS); queued messages are then discarded.
func (b *MemoryBus) Subscribe(subject string, fn func(data []byte)) (func(), error) {
	s := &memSub{bus: b, fn: fn, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	old := b.subs[subject]
	next := make([]*memSub, len(old), len(old)+1)
	copy(next, old)
	b.subs[subject] = append(next, s)
	b.mu.Unlock()
	go s.run()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			cur := b.subs[subject]
			next := make([]*memSub, 0, len(cur))
			for _, x := range cur {
				if x != s {
					next = append(next, x)
				}
			}
			if len(next) == 0 {
				delete(b.subs, subject)
			} else {
				b.subs[subject] = next
			}
			b.mu.Unlock()
			s.stopped.Store(true)
			s.wakeUp()
		})
	}, nil
}

// Flush returns at once: a published message is already where a server
// would have it.
func (b *MemoryBus) Flush() error { return nil }

func (s *memSub) run() {
	var batch []*[]byte
	for range s.wake {
		for {
			s.mu.Lock()
			batch, s.queue = s.queue, batch[:0]
			s.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			for _, bp := range batch {
				if !s.stopped.Load() {
					s.fn(*bp)
				}
				poison(*bp)
				s.bus.bufs.Put(bp)
			}
			clear(batch)
		}
		if s.stopped.Load() {
			return
		}
	}
}

func (b *MemoryBus) getBuf(n int) *[]byte {
	if bp, ok := b.bufs.Get().(*[]byte); ok && cap(*bp) >= n {
		*bp = (*bp)[:n]
		return bp
	}
	buf := make([]byte, n)
	return &buf
}

func poison(b []byte) {
	for i := range b {
		b[i] = 0xa5
	}
}
