package api

import (
	"net"
	"net/netip"

	"github.com/pushring/pushring/internal/ratelimit"
)

// maxLimiterEntries bounds the login limiter's memory (about 100 bytes an
// entry).
const maxLimiterEntries = 1 << 16

// addrKey turns a RemoteAddr into a limiter key: the IP, IPv6 cut to its
// /64 (see ratelimit.AddrKey). A remote address that is no IP is its own
// key.
func addrKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	k := ratelimit.AddrKey(ip)
	if k.Is6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}
