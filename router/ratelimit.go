package router

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// connLimiter is a token bucket per source address for new connections
// (BAD_INPUTS B7: connect storms from one address). Each address earns
// rate tokens a second up to burst; a connection costs one. IPv6 clients
// are counted per /64, since one host usually holds a whole /64.
//
// The map is swept of full (idle) buckets when it grows past sweepAt, so a
// scan from many addresses costs memory only while they are active.
type connLimiter struct {
	rate  float64
	burst float64

	mu      sync.Mutex
	buckets map[netip.Addr]*tokenBucket
	sweepAt int
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

func newConnLimiter(rate float64, burst int) *connLimiter {
	if rate <= 0 {
		return nil
	}
	return &connLimiter{rate: rate, burst: float64(max(burst, 1)), buckets: make(map[netip.Addr]*tokenBucket), sweepAt: 1024}
}

// allow reports whether a new connection from addr may proceed. A nil
// limiter allows everything. Goroutine-safe.
func (l *connLimiter) allow(addr net.Addr, now time.Time) bool {
	if l == nil {
		return true
	}
	key := limiterKey(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.sweepAt {
			l.sweep(now)
		}
		b = &tokenBucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep drops buckets that have refilled (their addresses are idle), and
// moves the next sweep out so sweeping stays amortised.
func (l *connLimiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
	l.sweepAt = max(1024, 2*len(l.buckets))
}

func limiterKey(addr net.Addr) netip.Addr {
	var ip netip.Addr
	if ta, ok := addr.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
	} else if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		ip = ap.Addr()
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}
