package fanout

import (
	"fmt"
	"testing"

	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/ring"
)

// Wired as node wires it: each node's placement is its own membership,
// whose OnChange calls RingChanged. When alice's home dies, the node
// where she is present attaches her at the new home as soon as the ring
// changes.
func TestAttachFollowsMembership(t *testing.T) {
	mems := make([]*membership.Memory, len(threeIDs))
	for i, id := range threeIDs {
		mems[i] = membership.NewMemory(membership.Node{ID: id}, ring.DefaultConfig())
	}
	bus := NewMemoryBus()
	nodes := startNodes(t, threeIDs, func(int) Bus { return bus }, staticMembers{},
		func(i int) Placement { return mems[i] }, nil)
	for i, m := range mems {
		f := nodes[i].f
		m.OnChange(func(_, r *ring.Ring) { f.RingChanged(r.Nodes()) })
	}
	all := []membership.Node{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}}
	for _, m := range mems {
		m.Set(all...)
	}
	byID := map[string]*testNode{}
	for _, n := range nodes {
		byID[n.id] = n
	}

	// A principal homed on n1 whose home after n1's death is not the node
	// it is present on: that is then the third node.
	var id, oldHome, newHome, attached string
	for i := 0; id == ""; i++ {
		cand := fmt.Sprintf("user-%d", i)
		if mems[0].Home(cand) != "n1" {
			continue
		}
		after := ring.New([]string{"n2", "n3"}, ring.DefaultConfig()).Home(cand)
		id, oldHome, newHome = cand, "n1", after
		attached = map[string]string{"n2": "n3", "n3": "n2"}[after]
	}
	byID[attached].f.Arrived(id)
	waitAttached(t, byID[oldHome], id, attached)

	// n1 dies: the survivors' rings drop it.
	for _, m := range mems[1:] {
		m.Set(membership.Node{ID: "n1", State: membership.StateDead}, membership.Node{ID: "n2"}, membership.Node{ID: "n3"})
	}
	waitAttached(t, byID[newHome], id, attached)
	sendDirect(t, byID[newHome], 1, id)
	waitCount(t, byID[attached], 1, id, 1)
	settle(t, nodes) // a second copy would be on its way until then
	if s := byID[newHome].f.Stats(); s.AttachForwards != 1 {
		t.Errorf("new home: %d attach forwards, want 1", s.AttachForwards)
	}
	if got := byID[attached].rec.count(1, id); got != 1 {
		t.Errorf("attached got it %d times, want 1", got)
	}
}
