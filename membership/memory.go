package membership

import (
	"sync"

	"github.com/pushring/pushring/ring"
)

// Memory is a membership whose peers the caller sets: the in-memory
// stand-in for Cluster in the unit tests of the packages that place
// principals and groups (fanout, router, api). It has Cluster's methods
// and no network, and it calls OnChange listeners synchronously, before
// Set returns, so tests need not wait.
type Memory struct {
	placement
	mu   sync.Mutex // serializes Set
	self Node
}

// NewMemory returns a membership in which self is alone and alive.
// cfg shapes the ring (ring.DefaultConfig() for production placement).
func NewMemory(self Node, cfg ring.Config) *Memory {
	m := &Memory{self: self}
	m.self.State = StateAlive
	m.init(cfg, m.self)
	return m
}

// Set replaces the peers: nodes whose State is "alive" (or empty) are on
// the ring with self, others ("dead", "left") are not. A node with self's
// ID is ignored. Listeners run before Set returns.
func (m *Memory) Set(peers ...Node) {
	m.mu.Lock()
	live := []Node{m.self}
	for _, n := range peers {
		if n.ID == m.self.ID || n.ID == "" {
			continue
		}
		if n.State == "" || n.State == StateAlive {
			n.State = StateAlive
			live = append(live, n)
		}
	}
	m.publish(live, m.self)
	m.mu.Unlock()
	m.notify()
}
