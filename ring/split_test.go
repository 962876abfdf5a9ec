package ring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// mapPlacer homes the ids of a map.
type mapPlacer map[string]string

func (p mapPlacer) Home(id string) string { return p[id] }

// TestSplitHomes checks SplitHomes against the obvious implementation on
// random id lists, reusing one Split across calls as a pool does.
func TestSplitHomes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s Split
	for iter := range 2000 {
		nodes := 1 + rng.IntN(4)
		ids := make([]string, rng.IntN(40))
		homes := mapPlacer{}
		for i := range ids {
			if rng.IntN(20) == 0 {
				continue // empty id
			}
			ids[i] = fmt.Sprintf("m%d", i)
			homes[ids[i]] = fmt.Sprintf("n%d", rng.IntN(nodes))
		}
		before := slices.Clone(ids)

		var wantNodes []string
		want := map[string][]string{}
		for _, id := range ids {
			if id == "" {
				continue
			}
			h := homes[id]
			if _, ok := want[h]; !ok {
				wantNodes = append(wantNodes, h)
			}
			want[h] = append(want[h], id)
		}

		SplitHomes(ids, homes, &s)
		if got := splitNodes(&s); !slices.Equal(got, wantNodes) {
			t.Fatalf("iter %d: nodes %v, want %v", iter, got, wantNodes)
		}
		for i, node := range wantNodes {
			if got := s.List(i); !slices.Equal(got, want[node]) {
				t.Fatalf("iter %d: %s got %v, want %v", iter, node, got, want[node])
			}
		}
		if !slices.Equal(ids, before) {
			t.Fatalf("iter %d: SplitHomes modified ids", iter)
		}
	}
}

func splitNodes(s *Split) []string {
	var nodes []string
	for i := range s.Len() {
		nodes = append(nodes, s.Node(i))
	}
	return nodes
}

func TestSplitHomesRing(t *testing.T) {
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = userID(i)
	}
	var s Split
	for _, n := range []int{1, 3, 64, 65} {
		r := New(nodeNames(n), Config{VirtualNodes: 8})
		SplitHomes(ids, r, &s)
		total := 0
		for i := range s.Len() {
			node, list := s.Node(i), s.List(i)
			total += len(list)
			prev := -1
			for _, id := range list {
				if r.Home(id) != node {
					t.Fatalf("%s listed under %s, home is %s", id, node, r.Home(id))
				}
				j := slices.Index(ids, id)
				if j <= prev {
					t.Fatalf("order not kept under %s", node)
				}
				prev = j
			}
		}
		if total != len(ids) || s.Len() > n {
			t.Fatalf("%d nodes: %d ids split over %d nodes", n, total, s.Len())
		}
		if n == 1 && &s.List(0)[0] != &ids[0] {
			t.Fatal("one node: the ids were copied")
		}
	}
}

// TestSplitAdd is the use without a Placer: ids added to nodes one by one
// (an id may go to several), after a Reset.
func TestSplitAdd(t *testing.T) {
	var s Split
	SplitHomes([]string{"a", "b"}, mapPlacer{"a": "n1", "b": "n2"}, &s)
	s.Reset()
	s.Add("n2", "x")
	s.Add("n1", "x")
	s.Add("n2", "y")
	if got := splitNodes(&s); !slices.Equal(got, []string{"n2", "n1"}) {
		t.Fatalf("nodes %v", got)
	}
	if !slices.Equal(s.List(0), []string{"x", "y"}) || !slices.Equal(s.List(1), []string{"x"}) {
		t.Fatalf("lists %v %v", s.List(0), s.List(1))
	}
	s.Reset()
	if s.Len() != 0 {
		t.Fatalf("%d nodes after Reset", s.Len())
	}
}

func TestSplitHomesZeroAllocs(t *testing.T) {
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = userID(i)
	}
	for _, n := range []int{1, 5, 65} {
		r := New(nodeNames(n), Config{VirtualNodes: 8})
		var s Split
		SplitHomes(ids, r, &s)
		if a := testing.AllocsPerRun(100, func() { SplitHomes(ids, r, &s) }); a != 0 {
			t.Errorf("SplitHomes into a reused Split, %d nodes: %v allocs per call", n, a)
		}
	}
}

func BenchmarkSplitHomes1000(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		b.Run(strconv.Itoa(n)+"nodes", func(b *testing.B) {
			r := New(nodeNames(n), DefaultConfig())
			ids := make([]string, 1000)
			for i := range ids {
				ids[i] = userID(i)
			}
			var s Split
			b.ReportAllocs()
			for b.Loop() {
				SplitHomes(ids, r, &s)
			}
		})
	}
}
