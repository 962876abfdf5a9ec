package membership

import (
	"slices"
	"testing"

	"github.com/pushring/pushring/ring"
)

func TestMemory(t *testing.T) {
	self := Node{ID: "n1", MQTT: []string{"a:1883"}}
	m := NewMemory(self, ring.DefaultConfig())
	if m.Home("alice") != "n1" || m.Owner("g") != "n1" || m.Self().State != StateAlive || m.Self().RingPart != 1 {
		t.Fatalf("alone: %+v", m.Self())
	}
	var calls [][2][]string
	cancel := m.OnChange(func(old, new *ring.Ring) {
		calls = append(calls, [2][]string{old.Nodes(), new.Nodes()})
	})
	sub, unsub := m.Subscribe()
	defer unsub()

	m.Set(Node{ID: "n2", HTTP: "h2"}, Node{ID: "n3", State: StateDead}, Node{ID: "n1"})
	if len(calls) != 1 || !slices.Equal(calls[0][0], []string{"n1"}) || !slices.Equal(calls[0][1], []string{"n1", "n2"}) {
		t.Fatalf("OnChange calls: %v", calls)
	}
	select {
	case <-sub:
	default:
		t.Fatal("Subscribe not signalled")
	}
	if m.RingChanges() != 1 {
		t.Fatalf("RingChanges = %d", m.RingChanges())
	}
	nodes := m.Nodes()
	if len(nodes) != 2 || nodes[1].ID != "n2" || nodes[1].HTTP != "h2" || nodes[1].State != StateAlive ||
		nodes[0].RingPart+nodes[1].RingPart < 0.999 {
		t.Fatalf("Nodes = %+v", nodes)
	}
	r := m.Ring()
	for _, id := range []string{"alice", "bob", "carol", "dave"} {
		if h := m.HomeNode(id); h.ID != r.Home(id) || h.ID != m.Home(id) {
			t.Fatalf("HomeNode(%s) = %s, ring says %s", id, h.ID, r.Home(id))
		}
	}

	// Same set: no change, no call, same ring.
	m.Set(Node{ID: "n2", HTTP: "h2-new"})
	if len(calls) != 1 || m.Ring() != r || m.Nodes()[1].HTTP != "h2-new" {
		t.Fatalf("metadata update changed the ring: %v", calls)
	}
	cancel()
	m.Set()
	if len(calls) != 1 || m.RingChanges() != 2 || m.Ring().Len() != 1 {
		t.Fatalf("after cancel: %v, %d changes", calls, m.RingChanges())
	}
}

func TestLookupsDoNotAllocate(t *testing.T) {
	m := NewMemory(Node{ID: "n1"}, ring.DefaultConfig())
	m.Set(Node{ID: "n2"}, Node{ID: "n3"})
	var sink string
	for name, fn := range map[string]func(){
		"Home":  func() { sink = m.Home("alice") },
		"Owner": func() { sink = m.Owner("g1") },
		"Ring":  func() { sink = m.Ring().Home("alice") },
	} {
		if a := testing.AllocsPerRun(1000, fn); a != 0 {
			t.Errorf("%s: %v allocs", name, a)
		}
	}
	_ = sink
}
