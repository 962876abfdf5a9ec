package router

import (
	"net"
	"net/netip"

	"github.com/pushring/pushring/internal/ratelimit"
)

// connLimiter is a token bucket per source address for new connections,
// against connect storms from one address. Each address earns rate tokens
// a second up to burst; a connection costs one. Idle addresses are swept
// out, with no bound on the table: an address only stays while it keeps
// connecting.
type connLimiter = ratelimit.Limiter[netip.Addr]

// newConnLimiter returns nil (no limit) for a rate of zero or less.
func newConnLimiter(rate float64, burst int) *connLimiter {
	return ratelimit.New[netip.Addr](rate, burst, 0)
}

// limiterKey is the bucket of a connection's remote address: its IP, IPv6
// counted per /64 (see ratelimit.AddrKey).
func limiterKey(addr net.Addr) netip.Addr {
	var ip netip.Addr
	if ta, ok := addr.(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
	} else if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
		ip = ap.Addr()
	}
	return ratelimit.AddrKey(ip)
}
