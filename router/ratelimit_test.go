package router

import (
	"net"
	"testing"
	"time"
)

func TestConnLimiterIPv6Per64AndMapped(t *testing.T) {
	l := newConnLimiter(1, 1)
	now := time.Unix(1000, 0)
	allow := func(addr net.Addr) bool {
		ok, _ := l.Allow(limiterKey(addr), now)
		return ok
	}
	if !allow(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::1")}) {
		t.Fatal("first refused")
	}
	if allow(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9")}) {
		t.Fatal("same /64 got its own bucket")
	}
	if !allow(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::1")}) {
		t.Fatal("another /64 refused")
	}
	if !allow(&net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.1")}) {
		t.Fatal("mapped v4 refused")
	}
	if allow(&net.TCPAddr{IP: net.ParseIP("10.0.0.1").To4()}) {
		t.Fatal("mapped and plain v4 counted apart")
	}
}

func TestConnectRateRefusesStorm(t *testing.T) {
	// A connect storm from one address is cut off before any byte is
	// read, and counted.
	e := newEnv(t, func(c *Config) { c.ConnectRate = 0.001; c.ConnectBurst = 3 })
	for range 3 {
		connectRaw(t, e, "alice", "", true).Abort()
	}
	r := dialRaw(t, e.addr)
	r.send(connectPacket("alice", "tok-alice", "x", true, 60))
	r.expectClosed()
	if got := e.srv.Stats().Refusals; got < 1 {
		t.Fatalf("refusals %d, want the refused connection counted", got)
	}
}
