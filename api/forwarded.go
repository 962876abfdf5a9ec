package api

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Behind a load balancer every request comes from the balancer's
// address. When the peer is one of Config.TrustedProxies, the client's
// address is taken from the Forwarded header (RFC 7239, its for=
// parameters) or, without one, from X-Forwarded-For: the rightmost
// address that is not itself a trusted proxy, since each proxy appends
// the address it saw and anything to its left came from the client,
// who may have written it. A header from any other peer is ignored. The
// login limiter and the refusal logs use this address.

// maxForwardedHops bounds the addresses read from one header.
const maxForwardedHops = 32

// clientAddr is the address of the client of r: the peer, or the
// forwarded client when the peer is a trusted proxy (see above). A
// header that does not parse leaves the peer's address.
func (a *API) clientAddr(r *http.Request) string {
	if len(a.cfg.TrustedProxies) == 0 {
		return r.RemoteAddr
	}
	peer, ok := addrOf(r.RemoteAddr)
	if !ok || !a.trusted(peer) {
		return r.RemoteAddr
	}
	var hops []netip.Addr
	if fw := r.Header.Values("Forwarded"); len(fw) > 0 {
		hops, ok = parseForwarded(fw)
	} else if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		hops, ok = parseXFF(xff)
	}
	if !ok {
		// A trusted proxy that sends this is misconfigured (or not the
		// proxy it was taken for): counted, logged at most every
		// logEvery, and its own address used.
		if a.met != nil {
			a.met.badForwarded.Inc()
		}
		a.forwardedLog.Warn(a.log, logEvery, "api: a trusted proxy's forwarded header does not parse; using the proxy's address",
			"remote", r.RemoteAddr)
		return r.RemoteAddr
	}
	if len(hops) == 0 {
		return r.RemoteAddr
	}
	for i := len(hops) - 1; i >= 0; i-- {
		if !a.trusted(hops[i]) || i == 0 {
			return hops[i].String()
		}
	}
	return r.RemoteAddr // not reached
}

// trusted reports whether ip is one of the trusted proxies.
func (a *API) trusted(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range a.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// addrOf parses a host:port or a bare host as an IP.
func addrOf(s string) (netip.Addr, bool) {
	if host, _, err := net.SplitHostPort(s); err == nil {
		s = host
	}
	ip, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// parseXFF reads X-Forwarded-For values: comma-separated addresses,
// oldest first. Any entry that is no IP fails the whole header.
func parseXFF(values []string) ([]netip.Addr, bool) {
	var out []netip.Addr
	for _, v := range values {
		for e := range strings.SplitSeq(v, ",") {
			ip, ok := addrOf(strings.TrimSpace(e))
			if !ok || len(out) == maxForwardedHops {
				return nil, false
			}
			out = append(out, ip)
		}
	}
	return out, true
}

// parseForwarded reads the for= parameters of Forwarded values
// (RFC 7239): elements separated by ',', parameters by ';', a for= value
// a token or a quoted string holding an IP, an IPv6 in brackets, either
// with a port. An element without for= is skipped; a for= that is no IP
// ("unknown", an obfuscated identifier) fails the whole header.
func parseForwarded(values []string) ([]netip.Addr, bool) {
	var out []netip.Addr
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			for pair := range strings.SplitSeq(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok || !strings.EqualFold(k, "for") {
					continue
				}
				if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
					val = val[1 : len(val)-1]
				}
				ip, ok := addrOf(val)
				if !ok || len(out) == maxForwardedHops {
					return nil, false
				}
				out = append(out, ip)
			}
		}
	}
	return out, true
}

// mqttOverWS hands GET /mqtt to the MQTT over WebSocket handler with the
// client's address as the request's RemoteAddr (port 0 when a
// balancer's header gave the address alone), so the MQTT server's
// connect rate and logs count the client behind a trusted proxy.
func (a *API) mqttOverWS(w http.ResponseWriter, r *http.Request) {
	if c := a.clientAddr(r); c != r.RemoteAddr {
		if ip, err := netip.ParseAddr(c); err == nil {
			r.RemoteAddr = netip.AddrPortFrom(ip, 0).String()
		}
	}
	a.deps.MQTT.ServeHTTP(w, r)
}
