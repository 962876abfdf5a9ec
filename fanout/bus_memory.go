package fanout

import (
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
type MemoryBus struct {
	mu   sync.Mutex
	subs map[string][]*memSub // copy on write: Publish reads without mu

	bufs sync.Pool // of *[]byte
}

var _ Bus = (*MemoryBus)(nil)

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

// Publish copies data to every subscription of subject. It never blocks
// on a handler: queues are unbounded.
func (b *MemoryBus) Publish(subject string, data []byte) error {
	b.mu.Lock()
	subs := b.subs[subject]
	b.mu.Unlock()
	for _, s := range subs {
		bp := b.getBuf(len(data))
		copy(*bp, data)
		s.mu.Lock()
		s.queue = append(s.queue, bp)
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return nil
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
			select {
			case s.wake <- struct{}{}:
			default:
			}
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
