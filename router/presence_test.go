package router

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// presenceLog records Holding and Released calls. Each call also reads
// Server.Held, which would deadlock if a router lock were held.
type presenceLog struct {
	srv    *Server
	mu     sync.Mutex
	events []string
}

func (p *presenceLog) Holding(id string)  { p.srv.Held(); p.add("+" + id) }
func (p *presenceLog) Released(id string) { p.srv.Held(); p.add("-" + id) }

func (p *presenceLog) add(e string) {
	p.mu.Lock()
	p.events = append(p.events, e)
	p.mu.Unlock()
}

func (p *presenceLog) get() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.events, " ")
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

func TestPresence(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SessionExpiry = 300 * time.Millisecond })
	p := &presenceLog{srv: e.srv}
	e.srv.SetPresence(p)

	// Two clean sessions of alice: one Holding, one Released after both.
	a1 := connectRaw(t, e, "alice", "a1", true)
	p.waitFor(t, "+alice")
	if got := e.srv.Held(); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("Held() = %v", got)
	}
	a2 := connectRaw(t, e, "alice", "a2", true)
	a1.disconnect()
	a1.expectClosed()
	time.Sleep(50 * time.Millisecond)
	p.waitFor(t, "+alice")
	a2.disconnect()
	a2.expectClosed()
	p.waitFor(t, "+alice -alice")
	if got := e.srv.Held(); len(got) != 0 {
		t.Fatalf("Held() = %v", got)
	}

	// A clean takeover (same client id) does not release.
	c1 := connectRaw(t, e, "carol", "c", true)
	p.waitFor(t, "+alice -alice +carol")
	c2 := connectRaw(t, e, "carol", "c", true)
	c1.expectClosed()
	time.Sleep(50 * time.Millisecond)
	p.waitFor(t, "+alice -alice +carol")

	// A persistent session holds while offline, until it expires; a
	// persistent takeover does not release either.
	b1 := connectRaw(t, e, "bob", "b", false)
	p.waitFor(t, "+alice -alice +carol +bob")
	b2 := connectRaw(t, e, "bob", "b", false)
	b1.expectClosed()
	b2.disconnect()
	b2.expectClosed()
	time.Sleep(100 * time.Millisecond)
	if got := p.get(); got != "+alice -alice +carol +bob" {
		t.Fatalf("presence events %q before expiry", got)
	}
	held := e.srv.Held()
	slices.Sort(held)
	if !slices.Equal(held, []string{"bob", "carol"}) {
		t.Fatalf("Held() = %v", held)
	}
	p.waitFor(t, "+alice -alice +carol +bob -bob")

	// Close releases what is left.
	_ = c2
	e.srv.Close()
	p.waitFor(t, "+alice -alice +carol +bob -bob -carol")
}

// Presence calls come in registry order even when many connections come
// and go at once: per principal, events alternate, starting with Holding.
func TestPresenceOrderUnderChurn(t *testing.T) {
	e := newEnv(t, nil)
	p := &presenceLog{srv: e.srv}
	e.srv.SetPresence(p)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := []string{"alice", "bob", "carol"}[i%3]
			for j := range 10 {
				r := connectRaw(t, e, id, fmt.Sprintf("c%d-%d", i, j), true)
				r.disconnect()
				r.expectClosed()
			}
		}()
	}
	wg.Wait()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := len(e.srv.Held()); n != 0 {
			return fmt.Errorf("%d principals still held", n)
		}
		return nil
	})
	time.Sleep(50 * time.Millisecond)
	state := map[string]bool{}
	for _, ev := range strings.Fields(p.get()) {
		id, holding := ev[1:], ev[0] == '+'
		if state[id] == holding {
			t.Fatalf("%s out of order in %q", ev, p.get())
		}
		state[id] = holding
	}
	for id, h := range state {
		if h {
			t.Errorf("%s still holding at the end", id)
		}
	}
}
