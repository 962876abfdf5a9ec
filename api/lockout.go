package api

import (
	"sync"
	"time"
)

// accountGuard throttles logins per login id, whatever the client
// address: the per-address limiter alone lets an attacker with a few
// addresses try a password per address per second against one account.
// After failures consecutive failed logins for an id, the id is locked for
// base; each further failure after a lock ends doubles the lock, up to
// maxWait; a successful login forgets the id. Ids that are not principals
// are tracked the same way, so that a lock says nothing about whether the
// id exists. Goroutine-safe; a leaf lock.
//
// Memory is bounded: an id is forgotten once it has been quiet for maxWait
// after its last failure or lock, and the table holds at most maxEntries
// ids. When it is full, ids that are not locked are dropped first (an
// attacker cycling random ids pushes out only his own unlocked ones), and
// only a table full of locked ids loses some of them.
type accountGuard struct {
	failures   int
	base       time.Duration
	maxWait    time.Duration
	maxEntries int

	mu sync.Mutex
	m  map[string]*accountState
}

type accountState struct {
	fails    int       // consecutive failures
	inflight int       // logins begun and not ended: their passwords are being checked
	last     time.Time // last failure
	until    time.Time // locked until; zero if never locked
}

// accountEntries bounds the guard's table: about 150 bytes an id, so
// 64 Ki ids are about 10 MiB at most.
const accountEntries = 1 << 16

// newAccountGuard returns nil (no throttling) if failures < 1.
func newAccountGuard(failures int, base, maxWait time.Duration, maxEntries int) *accountGuard {
	if failures < 1 {
		return nil
	}
	return &accountGuard{failures: failures, base: base, maxWait: max(maxWait, base),
		maxEntries: maxEntries, m: make(map[string]*accountState)}
}

// begin reserves a login attempt for id at now, before its password is
// checked, or refuses it (false, with how long to wait). Checking and
// reserving in one step is what bounds the guesses: a password check
// takes tens of milliseconds, and attempts sent together would all pass
// a check that only looked at failures already recorded. So an attempt
// that could be the one reaching the lock while others are still being
// checked waits for them (refused for a second). Every begin that
// returns true must be followed by end.
func (g *accountGuard) begin(id string, now time.Time) (bool, time.Duration) {
	if g == nil {
		return true, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state(id, now)
	if now.Before(s.until) {
		return false, s.until.Sub(now)
	}
	// Attempts that may be checked at once: those left before the lock,
	// or, once in backoff (a lock that has run out), one at a time.
	allowed := max(1, g.failures-s.fails)
	if s.inflight >= allowed {
		return false, time.Second
	}
	s.inflight++
	return true, 0
}

// end ends an attempt begin reserved: checked says its password was
// checked, ok that it was right. A right password forgets id (ends its
// backoff); a wrong one counts toward the lock; an attempt that ended
// before the check (a store error, a cancelled request) only gives its
// reservation back. It reports whether a new lock began.
func (g *accountGuard) end(id string, checked, ok bool, now time.Time) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.m[id]
	if s != nil && s.inflight > 0 {
		s.inflight--
	}
	if !checked {
		return false
	}
	if ok {
		if s != nil && s.inflight == 0 {
			delete(g.m, id)
		} else if s != nil {
			s.fails, s.until = 0, time.Time{}
		}
		return false
	}
	return g.failLocked(id, now)
}

// state returns id's state, a new one if it has none or it went stale.
// g.mu is held.
func (g *accountGuard) state(id string, now time.Time) *accountState {
	s := g.m[id]
	if s != nil && s.inflight == 0 && g.stale(s, now) {
		s.fails = 0
		s.until = time.Time{}
	}
	if s == nil {
		if len(g.m) >= g.maxEntries {
			g.prune(now)
		}
		s = &accountState{}
		g.m[id] = s
	}
	return s
}

// locked reports whether id may not try a login at now, and how long it
// must wait.
func (g *accountGuard) locked(id string, now time.Time) (bool, time.Duration) {
	if g == nil {
		return false, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.m[id]
	if s == nil || !now.Before(s.until) {
		return false, 0
	}
	return true, s.until.Sub(now)
}

// fail records a failed login for id at now. It reports whether id is now
// locked (a new lockout begins).
func (g *accountGuard) fail(id string, now time.Time) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failLocked(id, now)
}

// failLocked is fail with g.mu held.
func (g *accountGuard) failLocked(id string, now time.Time) bool {
	s := g.state(id, now)
	s.fails++
	s.last = now
	if s.fails < g.failures {
		return false
	}
	// failures-th failure: base; each one after: twice the last.
	wait := g.base
	for i := g.failures; i < s.fails && wait < g.maxWait; i++ {
		wait *= 2
	}
	wait = min(wait, g.maxWait)
	s.until = now.Add(wait)
	return true
}

// stale: s has been quiet for maxWait since its last failure and the end
// of its lock, and is forgotten.
func (g *accountGuard) stale(s *accountState, now time.Time) bool {
	end := s.last
	if s.until.After(end) {
		end = s.until
	}
	return now.Sub(end) >= g.maxWait
}

// prune makes room in a full table: stale ids go, then ids that are not
// locked, then, if every id is locked, an eighth of them (map order, so
// which ones cannot be steered).
func (g *accountGuard) prune(now time.Time) {
	for id, s := range g.m {
		if s.inflight == 0 && g.stale(s, now) {
			delete(g.m, id)
		}
	}
	target := g.maxEntries - max(1, g.maxEntries/8)
	for id, s := range g.m {
		if len(g.m) <= target {
			return
		}
		if !now.Before(s.until) && s.inflight == 0 {
			delete(g.m, id)
		}
	}
	for id := range g.m {
		if len(g.m) <= target {
			return
		}
		delete(g.m, id)
	}
}

// size is the number of ids tracked (tests).
func (g *accountGuard) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}
