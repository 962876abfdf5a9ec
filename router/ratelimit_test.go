package router

import (
	"net"
	"testing"
	"time"
)

func TestConnLimiterBucket(t *testing.T) {
	l := newConnLimiter(2, 3) // 2/s, bursts of 3
	now := time.Unix(1000, 0)
	a := &net.TCPAddr{IP: net.ParseIP("127.0.0.5"), Port: 1}
	b := &net.TCPAddr{IP: net.ParseIP("127.0.0.6"), Port: 1}
	for i := range 3 {
		if !l.allow(a, now) {
			t.Fatalf("burst connection %d refused", i)
		}
	}
	if l.allow(a, now) {
		t.Fatal("4th connection within the same instant allowed")
	}
	if !l.allow(b, now) {
		t.Fatal("another address paid for the first one's burst")
	}
	if !l.allow(a, now.Add(500*time.Millisecond)) {
		t.Fatal("no token after half a second at 2/s")
	}
	if l.allow(a, now.Add(500*time.Millisecond)) {
		t.Fatal("two tokens after half a second at 2/s")
	}
}

func TestConnLimiterIPv6Per64AndMapped(t *testing.T) {
	l := newConnLimiter(1, 1)
	now := time.Unix(1000, 0)
	if !l.allow(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2::1")}, now) {
		t.Fatal("first refused")
	}
	if l.allow(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9")}, now) {
		t.Fatal("same /64 got its own bucket")
	}
	if !l.allow(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:3::1")}, now) {
		t.Fatal("another /64 refused")
	}
	if !l.allow(&net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.1")}, now) {
		t.Fatal("mapped v4 refused")
	}
	if l.allow(&net.TCPAddr{IP: net.ParseIP("10.0.0.1").To4()}, now) {
		t.Fatal("mapped and plain v4 counted apart")
	}
}

func TestConnLimiterSweepsIdleAddresses(t *testing.T) {
	l := newConnLimiter(10, 1)
	now := time.Unix(1000, 0)
	for i := range 3000 {
		ip := net.IPv4(127, byte(i>>16), byte(i>>8), byte(i))
		l.allow(&net.TCPAddr{IP: ip}, now.Add(time.Duration(i)*time.Second))
	}
	if n := len(l.buckets); n > 2048 {
		t.Fatalf("%d buckets kept for idle addresses", n)
	}
}

func TestConnectRateRefusesStorm(t *testing.T) {
	// B7: a connect storm from one address is cut off before any byte is
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
