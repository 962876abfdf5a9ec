package ratelimit

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	l := New[string](2, 3, 0) // 2/s, bursts of 3
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("burst event %d refused", i)
		}
	}
	if ok, wait := l.Allow("a", now); ok || wait != 500*time.Millisecond {
		t.Fatalf("4th event within the same instant: %v, wait %v, want refused, 500ms", ok, wait)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("another key paid for the first one's burst")
	}
	if ok, _ := l.Allow("a", now.Add(500*time.Millisecond)); !ok {
		t.Fatal("no token after half a second at 2/s")
	}
	if ok, wait := l.Allow("a", now.Add(500*time.Millisecond)); ok || wait != 500*time.Millisecond {
		t.Fatalf("two tokens after half a second at 2/s: %v, wait %v", ok, wait)
	}
	// A call that reaches the lock late, with an earlier time, earns
	// nothing and costs nothing of what the later time earned.
	if ok, _ := l.Allow("a", now.Add(200*time.Millisecond)); ok {
		t.Fatal("a token for an earlier time")
	}
	if ok, _ := l.Allow("a", now.Add(time.Second)); !ok {
		t.Fatal("no token a second after the last one")
	}
}

func TestOff(t *testing.T) {
	for _, rate := range []float64{0, -1} {
		l := New[string](rate, 1, 0)
		if l != nil {
			t.Fatalf("rate %v: a limiter", rate)
		}
		for range 10 {
			if ok, wait := l.Allow("a", time.Unix(1000, 0)); !ok || wait != 0 {
				t.Fatalf("nil limiter refused: wait %v", wait)
			}
		}
	}
	if ok, _ := New[string](1, 0, 0).Allow("a", time.Unix(1000, 0)); !ok {
		t.Fatal("burst 0 counts as 1")
	}
}

func TestSweepsIdleKeys(t *testing.T) {
	l := New[int](10, 1, 0)
	now := time.Unix(1000, 0)
	for i := range 3000 {
		l.Allow(i, now.Add(time.Duration(i)*time.Second))
	}
	if n := len(l.buckets); n > 2048 {
		t.Fatalf("%d buckets kept for idle keys", n)
	}
}

func TestBound(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New[string](1, 2, 4)
	for i, want := range []bool{true, true, false} {
		if ok, _ := l.Allow("a", now); ok != want {
			t.Fatalf("take %d: %v", i, ok)
		}
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("b limited by a")
	}
	// Fill the table: full buckets are swept, then all if need be.
	for _, k := range []string{"c", "d", "e", "f", "g"} {
		l.Allow(k, now)
	}
	if len(l.buckets) > 4 {
		t.Fatalf("%d buckets, max 4", len(l.buckets))
	}
	// Under the bound nothing active is dropped.
	l = New[string](1, 1, 5000)
	for i := range 4000 {
		l.Allow(strconv.Itoa(i), now)
	}
	if len(l.buckets) != 4000 {
		t.Fatalf("%d buckets for 4000 active keys under a bound of 5000", len(l.buckets))
	}
}

func TestAddrKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::"},
		{"2001:db8:1:3::1", "2001:db8:1:3::"},
		{"fe80::1%eth0", "fe80::"},
	} {
		if got := AddrKey(netip.MustParseAddr(c.in)); got != netip.MustParseAddr(c.want) {
			t.Errorf("AddrKey(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}
