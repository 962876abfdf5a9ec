// Package ratelimit keeps a token bucket per key, for limits such as new
// connections or login attempts per client address.
package ratelimit

import (
	"net/netip"
	"sync"
	"time"
)

// Limiter is a token bucket per key: each key earns rate tokens a second
// up to burst, and each allowed event costs one. A nil *Limiter allows
// everything. Goroutine-safe.
//
// A bucket that has refilled completely carries no state (a new one would
// be the same), so such buckets are swept out when the table grows past a
// threshold that starts at minSweep keys and doubles with the keys still
// active: a scan from many addresses costs memory only while they are
// active, and sweeping stays amortised. With a bound (maxKeys > 0), a table
// still at the bound after a sweep is emptied: under an address-rotation
// flood the limit degrades to one burst per key rather than memory
// growing without bound.
type Limiter[K comparable] struct {
	rate    float64 // tokens a second
	burst   float64
	maxKeys int // 0: no bound

	mu      sync.Mutex
	buckets map[K]*bucket
	sweepAt int
}

type bucket struct {
	tokens float64
	last   time.Time
}

// minSweep is the table size at which sweeping starts.
const minSweep = 1024

// New returns a Limiter of rate tokens a second and bursts of burst (at
// least 1), keeping at most maxKeys keys (0: no bound). A rate of zero or
// less means no limit: New returns nil.
func New[K comparable](rate float64, burst, maxKeys int) *Limiter[K] {
	if rate <= 0 {
		return nil
	}
	l := &Limiter[K]{rate: rate, burst: float64(max(burst, 1)), maxKeys: maxKeys, buckets: make(map[K]*bucket)}
	l.sweepAt = l.nextSweep()
	return l
}

// Allow takes a token for key at now. If none is left it returns false
// and how long until the next one. A time before the key's last event
// earns nothing (calls may reach the lock out of order).
func (l *Limiter[K]) Allow(key K, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.sweepAt {
			l.sweep(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep drops the buckets that have refilled (their keys are idle), empties
// a table still at its bound, and moves the next sweep out.
func (l *Limiter[K]) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	if l.maxKeys > 0 && len(l.buckets) >= l.maxKeys {
		clear(l.buckets)
	}
	l.sweepAt = l.nextSweep()
}

func (l *Limiter[K]) nextSweep() int {
	n := max(minSweep, 2*len(l.buckets))
	if l.maxKeys > 0 {
		n = min(n, l.maxKeys)
	}
	return n
}

// AddrKey is the key of a client IP: an IPv4-mapped address counts as its
// IPv4 form, and an IPv6 address is cut to its /64 (without zone), since
// one host usually holds a whole /64.
func AddrKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.Addr()
	}
	return ip
}
