package fanout

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSplit checks split against the obvious implementation on random
// member lists, reusing one work across calls as the pool does.
func TestSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	w := new(work)
	for iter := range 2000 {
		nodes := 1 + rng.IntN(4)
		n := rng.IntN(40)
		members := make([]string, n)
		homes := map[string]string{}
		for i := range members {
			if rng.IntN(20) == 0 {
				continue // empty id
			}
			members[i] = fmt.Sprintf("m%d", i)
			homes[members[i]] = fmt.Sprintf("n%d", rng.IntN(nodes))
		}
		before := slices.Clone(members)
		place := &mapPlacement{homes: homes}

		var wantNodes []string
		want := map[string][]string{}
		for _, id := range members {
			if id == "" {
				continue
			}
			h := homes[id]
			if _, ok := want[h]; !ok {
				wantNodes = append(wantNodes, h)
			}
			want[h] = append(want[h], id)
		}

		w.split(members, place)
		if !slices.Equal(w.nodes, wantNodes) {
			t.Fatalf("iter %d: nodes %v, want %v", iter, w.nodes, wantNodes)
		}
		for i, node := range w.nodes {
			if got := w.list(i); !slices.Equal(got, want[node]) {
				t.Fatalf("iter %d: %s got %v, want %v", iter, node, got, want[node])
			}
		}
		if !slices.Equal(members, before) {
			t.Fatalf("iter %d: split modified members", iter)
		}
	}
}
