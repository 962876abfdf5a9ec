package router

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/packet"
)

// presenceLog records Arrived and Left calls, with when they came.
// Each call also reads Server.Present, which would deadlock if a router lock
// were held. Calls for the marker principal (see sync) are counted, not
// recorded.
type presenceLog struct {
	srv    *Server
	mu     sync.Mutex
	events []string
	at     []time.Time
	marks  int
}

// marker is the principal sync connects: its events only count marks.
const marker = "d1"

func (p *presenceLog) Arrived(id string) { p.srv.Present(); p.add("+" + id) }
func (p *presenceLog) Left(id string)    { p.srv.Present(); p.add("-" + id) }

func (p *presenceLog) add(e string) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if e[1:] == marker {
		p.marks++
		return
	}
	p.events = append(p.events, e)
	p.at = append(p.at, now)
}

func (p *presenceLog) get() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.events, " ")
}

// when returns the time event e was recorded (zero if it was not).
func (p *presenceLog) when(e string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.events {
		if x == e {
			return p.at[i]
		}
	}
	return time.Time{}
}

func (p *presenceLog) markCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.marks
}

func (p *presenceLog) waitFor(t *testing.T, want string) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if got := p.get(); got != want {
			return fmt.Errorf("presence events %q, want %q", got, want)
		}
		return nil
	})
}

// sync returns once the Presence has been told every registry change made
// before it was called: it connects and disconnects the marker principal
// and waits for both events, which are queued behind those changes
// (presence calls come in registry order).
func (p *presenceLog) sync(t *testing.T, e *env) {
	t.Helper()
	n := p.markCount()
	waitMarks := func(want int) {
		t.Helper()
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			if got := p.markCount(); got != want {
				return fmt.Errorf("%d marker events, want %d", got, want)
			}
			return nil
		})
	}
	m := connectRaw(t, e, marker, "presence-marker", true)
	waitMarks(n + 1)
	m.send(packet.AppendDisconnect(nil))
	m.expectClosed()
	waitMarks(n + 2)
}

// waitConnections waits until the server counts n connections, so that
// the registry has seen the closes before it.
func waitConnections(t *testing.T, e *env, n int64) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if got := e.srv.Stats().Connections; got != n {
			return fmt.Errorf("%d connections, want %d", got, n)
		}
		return nil
	})
}

func TestPresence(t *testing.T) {
	const expiry = 300 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.SessionExpiry = expiry })
	p := &presenceLog{srv: e.srv}
	e.srv.SetPresence(p)

	// Two clean sessions of alice: one Arrived, one Left after both.
	a1 := connectRaw(t, e, "alice", "a1", true)
	p.waitFor(t, "+alice")
	if got := e.srv.Present(); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("Present() = %v", got)
	}
	a2 := connectRaw(t, e, "alice", "a2", true)
	a1.disconnect()
	a1.expectClosed()
	waitConnections(t, e, 1) // a1 is out of the registry
	p.sync(t, e)
	if got := p.get(); got != "+alice" {
		t.Fatalf("presence events %q after alice's first session closed, want %q", got, "+alice")
	}
	a2.disconnect()
	a2.expectClosed()
	p.waitFor(t, "+alice -alice")
	if got := e.srv.Present(); len(got) != 0 {
		t.Fatalf("Present() = %v", got)
	}

	// A clean takeover (same client id) does not release.
	c1 := connectRaw(t, e, "carol", "c", true)
	p.waitFor(t, "+alice -alice +carol")
	c2 := connectRaw(t, e, "carol", "c", true)
	c1.expectClosed()
	waitConnections(t, e, 1) // c1's close has reached the registry
	p.sync(t, e)
	if got := p.get(); got != "+alice -alice +carol" {
		t.Fatalf("presence events %q after carol's takeover", got)
	}

	// A persistent session holds while offline, until it expires; a
	// persistent takeover does not release either.
	b1 := connectRaw(t, e, "bob", "b", false)
	p.waitFor(t, "+alice -alice +carol +bob")
	b2 := connectRaw(t, e, "bob", "b", false)
	b1.expectClosed()
	offline := time.Now() // the expiry timer starts after this
	b2.disconnect()
	b2.expectClosed()
	waitConnections(t, e, 1) // b1 and b2 are out of the registry
	// Present() must list bob until the expiry; skipped if this goroutine was
	// so slow that the expiry may have come.
	held := e.srv.Present()
	if time.Since(offline) < expiry {
		slices.Sort(held)
		if !slices.Equal(held, []string{"bob", "carol"}) {
			t.Fatalf("Present() = %v while bob's session is offline", held)
		}
	} else {
		t.Logf("Present() not checked: %v passed before it returned", time.Since(offline))
	}
	p.waitFor(t, "+alice -alice +carol +bob -bob")
	// The release came from the expiry, not from the takeover or the
	// disconnect before it.
	if d := p.when("-bob").Sub(offline); d < expiry {
		t.Fatalf("bob released %v after his session went offline, before its expiry (%v)", d, expiry)
	}

	// Close releases what is left.
	_ = c2
	e.srv.Close()
	p.waitFor(t, "+alice -alice +carol +bob -bob -carol")
}

// Presence calls come in registry order even when many connections come
// and go at once: per principal, events alternate, starting with Arrived.
func TestPresenceOrderUnderChurn(t *testing.T) {
	e := newEnv(t, nil)
	p := &presenceLog{srv: e.srv}
	e.srv.SetPresence(p)
	ids := []string{"alice", "bob", "carol"}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := ids[i%3]
			for j := range 10 {
				if err := connectDisconnect(e.addr, id, fmt.Sprintf("c%d-%d", i, j)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Every session is gone: wait until the Presence was told so, i.e.
	// as many Left as Arrived calls per principal.
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		n := map[string]int{}
		for _, ev := range strings.Fields(p.get()) {
			if ev[0] == '+' {
				n[ev[1:]]++
			} else {
				n[ev[1:]]--
			}
		}
		for id, d := range n {
			if d != 0 {
				return fmt.Errorf("%s: %d more Arrived than Left calls", id, d)
			}
		}
		return nil
	})
	state := map[string]bool{}
	for _, ev := range strings.Fields(p.get()) {
		id, holding := ev[1:], ev[0] == '+'
		if state[id] == holding {
			t.Fatalf("%s out of order in %q", ev, p.get())
		}
		state[id] = holding
	}
	for _, id := range ids {
		if _, ok := state[id]; !ok {
			t.Errorf("no presence calls for %s", id)
		}
	}
	if n := len(e.srv.Present()); n != 0 {
		t.Errorf("%d principals still held", n)
	}
}

// connectDisconnect logs a clean session of id in and out, and waits for
// the server to close the connection. For goroutines other than the
// test's: failures are returned.
func connectDisconnect(addr, id, clientID string) error {
	c, err := tryConnect(addr, id, clientID, true)
	if err != nil {
		return err
	}
	defer c.Abort()
	if err := c.WritePacket(packet.AppendDisconnect(nil), 5*time.Second); err != nil {
		return fmt.Errorf("%s/%s: write DISCONNECT: %w", id, clientID, err)
	}
	// EOF or a reset is the close; a packet or a timeout is not.
	h, _, err := c.ReadPacket(5 * time.Second)
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%s/%s: after DISCONNECT: packet %#x, %v (want the server to close)", id, clientID, h, err)
	}
	return nil
}
