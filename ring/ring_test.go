package ring

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// digitsHash is the predictable hash of groupcache's consistenthash tests:
// a vnode point "N#i" hashes to the number "iN", any other key (with its
// "u:"/"g:" prefix removed) to its own value. Nodes "2", "4", "6" with 3
// virtual nodes sit at 2, 4, 6, 12, 14, 16, 22, 24, 26.
func digitsHash(b []byte) uint64 {
	s := string(b)
	if n, i, ok := strings.Cut(s, "#"); ok {
		s = i + n
	} else {
		s = strings.TrimPrefix(strings.TrimPrefix(s, HomePrefix), GroupPrefix)
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		panic("digitsHash: " + s)
	}
	return v
}

func TestPlacement(t *testing.T) {
	r := New([]string{"6", "4", "2"}, Config{VirtualNodes: 3, Hash: digitsHash})
	cases := map[string]string{
		"2":  "2",
		"11": "2",
		"23": "4",
		"27": "2", // past the last point: wraps to the first
		"0":  "2",
		"5":  "6",
		"26": "6", // exactly on a point: that point's node
	}
	check := func() {
		t.Helper()
		for k, want := range cases {
			if got := r.Owner(k); got != want {
				t.Errorf("Owner(%q) = %q, want %q", k, got, want)
			}
			if got := r.Home(k); got != want {
				t.Errorf("Home(%q) = %q, want %q", k, got, want)
			}
			if got := r.GroupOwner(k); got != want {
				t.Errorf("GroupOwner(%q) = %q, want %q", k, got, want)
			}
		}
	}
	check()

	// Adding 8 puts points at 8, 18, 28: 27 now goes to 8.
	r = New([]string{"6", "4", "2", "8"}, Config{VirtualNodes: 3, Hash: digitsHash})
	cases["27"] = "8"
	check()

	// Shares: the arcs of 2, 4, 6, 8 on the circle [0, 2^64).
	const c = 1.0 * (1 << 64) // untyped float: exact constant arithmetic
	want := map[string]float64{
		"2": (c - 28 + 2 + 12 - 8 + 22 - 18) / c, // wrap arc to 2, (8,12], (18,22]
		"4": 3 * 2 / c,
		"6": 3 * 2 / c,
		"8": 3 * 2 / c,
	}
	var sum float64
	for n, w := range want {
		if got := r.Share(n); math.Abs(got-w) > 1e-12 {
			t.Errorf("Share(%q) = %v, want %v", n, got, w)
		}
		sum += r.Share(n)
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Errorf("shares add up to %v", sum)
	}
}

func TestEmptyAndSingle(t *testing.T) {
	for _, r := range []*Ring{nil, {}, New(nil, Config{}), New([]string{"", ""}, Config{})} {
		if r.Owner("x") != "" || r.Home("x") != "" || r.GroupOwner("x") != "" || r.Len() != 0 ||
			r.Nodes() != nil || r.Share("x") != 0 || r.Has("") {
			t.Errorf("empty ring %+v answers", r)
		}
	}
	r := New([]string{"solo", "solo", ""}, Config{})
	if r.Len() != 1 || r.Home("anyone") != "solo" || r.Share("solo") != 1 || !r.Has("solo") {
		t.Errorf("single node ring: %v %v", r.Nodes(), r.Share("solo"))
	}
	if r.VirtualNodes() != DefaultVirtualNodes {
		t.Errorf("VirtualNodes = %d", r.VirtualNodes())
	}
}

func TestOrderIndependence(t *testing.T) {
	a := New([]string{"n1", "n2", "n3", "n4"}, Config{})
	b := New([]string{"n4", "n2", "n2", "", "n1", "n3"}, Config{})
	if !a.SameNodes(b) || !slices.Equal(a.Nodes(), []string{"n1", "n2", "n3", "n4"}) {
		t.Fatalf("nodes %v vs %v", a.Nodes(), b.Nodes())
	}
	for i := range 10000 {
		k := "user-" + strconv.Itoa(i)
		if a.Home(k) != b.Home(k) || a.GroupOwner(k) != b.GroupOwner(k) || a.Owner(k) != b.Owner(k) {
			t.Fatalf("placement of %q depends on insertion order", k)
		}
	}
	if !slices.Equal(a.points, b.points) || !slices.Equal(a.owners, b.owners) {
		t.Fatal("points differ")
	}
	// Colliding points (a hash that puts every vnode on one of 4 values)
	// are broken by node id, not by input order.
	coarse := func(b []byte) uint64 { return uint64(len(b) % 4) }
	c1 := New([]string{"b", "a", "c"}, Config{VirtualNodes: 8, Hash: coarse})
	c2 := New([]string{"c", "b", "a"}, Config{VirtualNodes: 8, Hash: coarse})
	for i := range 100 {
		k := strconv.Itoa(i)
		if c1.Owner(k) != c2.Owner(k) {
			t.Fatalf("collision tie-break depends on order for %q", k)
		}
	}
}

func TestPrefixedMatchesConcatenation(t *testing.T) {
	r := New([]string{"a", "b", "c", "d", "e"}, Config{VirtualNodes: 16})
	for _, n := range []int{0, 1, 7, 8, 31, 32, 33, 64, stackKey - 2, stackKey - 1, stackKey, 300} {
		id := strings.Repeat("x", n)
		if r.Home(id) != r.Owner(HomePrefix+id) || r.GroupOwner(id) != r.Owner(GroupPrefix+id) {
			t.Errorf("len %d: prefixed hash differs from the concatenated key", n)
		}
		if r.sumPrefixed(HomePrefix, id) != r.sum([]byte(HomePrefix+id)) {
			t.Errorf("len %d: sumPrefixed differs", n)
		}
	}
}

func nodeNames(n int) []string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf("node-%d", i+1)
	}
	return s
}

const keys = 100_000

func userID(i int) string { return "user-" + strconv.Itoa(i) }

// maxBalance is the stated bound on max/mean load of 100k ids over 3, 5
// and 10 nodes with 128 virtual nodes. Measured (node ids node-1…node-N,
// ids user-0…user-99999): 1.13, 1.11, 1.11 for 3, 5, 10 nodes.
const maxBalance = 1.2

func TestBalance(t *testing.T) {
	for _, n := range []int{3, 5, 10} {
		r := New(nodeNames(n), DefaultConfig())
		load := map[string]int{}
		for i := range keys {
			load[r.Home(userID(i))]++
		}
		maxLoad, minLoad := 0, keys
		for _, node := range r.Nodes() {
			maxLoad = max(maxLoad, load[node])
			minLoad = min(minLoad, load[node])
			// Share predicts the load.
			if got, want := float64(load[node])/keys, r.Share(node); math.Abs(got-want) > 0.01 {
				t.Errorf("%d nodes: %s has %.4f of keys, Share says %.4f", n, node, got, want)
			}
		}
		mean := float64(keys) / float64(n)
		ratio := float64(maxLoad) / mean
		t.Logf("%2d nodes: max/mean %.3f, min/mean %.3f", n, ratio, float64(minLoad)/mean)
		if ratio > maxBalance {
			t.Errorf("%d nodes: max/mean load %.3f > %.2f", n, ratio, maxBalance)
		}
	}
}

// TestMovement checks that a join moves about 1/N of the keys, all of them
// to the new node, and that a leave moves exactly the leaver's keys.
func TestMovement(t *testing.T) {
	for _, n := range []int{3, 5, 10} {
		before := New(nodeNames(n), DefaultConfig())
		after := New(nodeNames(n+1), DefaultConfig())
		added := nodeNames(n + 1)[n]
		moved := 0
		for i := range keys {
			id := userID(i)
			a, b := before.Home(id), after.Home(id)
			if a == b {
				continue
			}
			moved++
			if b != added {
				t.Fatalf("%d→%d: %s moved %s→%s, not to the new node", n, n+1, id, a, b)
			}
		}
		frac, want := float64(moved)/keys, 1/float64(n+1)
		t.Logf("%2d→%2d nodes: %.2f%% of keys moved (ideal %.2f%%, new node's share %.2f%%)",
			n, n+1, 100*frac, 100*want, 100*after.Share(added))
		if math.Abs(frac-want) > 0.05 {
			t.Errorf("%d→%d: %.3f of keys moved, want %.3f ± 0.05", n, n+1, frac, want)
		}

		// Leave: the reverse move; only the leaver's keys go elsewhere.
		for i := range keys {
			id := userID(i)
			if a, b := after.Home(id), before.Home(id); a != b && a != added {
				t.Fatalf("%d→%d: %s moved %s→%s though %s stayed", n+1, n, id, a, b, a)
			}
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	r := New(nodeNames(5), DefaultConfig())
	long := strings.Repeat("y", 300)
	var sink string
	for name, fn := range map[string]func(){
		"Home":            func() { sink = r.Home("alice") },
		"GroupOwner":      func() { sink = r.GroupOwner("g1") },
		"Owner":           func() { sink = r.Owner("u:alice") },
		"Home long id":    func() { sink = r.Home(long) },
		"Share":           func() { _ = r.Share("node-1") },
		"Has":             func() { _ = r.Has("node-1") },
		"Home empty ring": func() { sink = (*Ring)(nil).Home("alice") },
	} {
		if a := testing.AllocsPerRun(1000, fn); a != 0 {
			t.Errorf("%s: %v allocs per call", name, a)
		}
	}
	_ = sink
}

func BenchmarkHome(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		b.Run(strconv.Itoa(n)+"nodes", func(b *testing.B) {
			r := New(nodeNames(n), DefaultConfig())
			ids := make([]string, 1024)
			for i := range ids {
				ids[i] = userID(i)
			}
			b.ReportAllocs()
			var sink string
			i := 0
			for b.Loop() {
				sink = r.Home(ids[i&1023])
				i++
			}
			_ = sink
		})
	}
}

func BenchmarkNew(b *testing.B) {
	nodes := nodeNames(10)
	b.ReportAllocs()
	for b.Loop() {
		New(nodes, DefaultConfig())
	}
}

func FuzzOwner(f *testing.F) {
	f.Add("n1,n2,n3", "alice", uint8(0))
	f.Add("a", "", uint8(1))
	f.Add("", "x", uint8(3))
	f.Add("x,x,,y", "g1", uint8(200))
	f.Fuzz(func(t *testing.T, nodes, key string, vnodes uint8) {
		list := strings.Split(nodes, ",")
		if len(list) > 32 {
			list = list[:32]
		}
		r := New(list, Config{VirtualNodes: int(vnodes % 64)})
		members := map[string]bool{}
		for _, n := range list {
			if n != "" {
				members[n] = true
			}
		}
		if r.Len() != len(members) {
			t.Fatalf("ring has %d nodes, input %d distinct", r.Len(), len(members))
		}
		for _, got := range []string{r.Owner(key), r.Home(key), r.GroupOwner(key)} {
			if len(members) == 0 && got != "" || len(members) > 0 && !members[got] {
				t.Fatalf("owner %q of %q is not a member of %v", got, key, list)
			}
		}
		if r.Home(key) != r.Owner(HomePrefix+key) || r.GroupOwner(key) != r.Owner(GroupPrefix+key) {
			t.Fatal("prefixed lookup differs from the concatenated key")
		}
		var sum float64
		for n := range members {
			sum += r.Share(n)
		}
		if len(members) > 0 && math.Abs(sum-1) > 1e-9 {
			t.Fatalf("shares add up to %v", sum)
		}
		// Order independence.
		slices.Reverse(list)
		if r2 := New(list, Config{VirtualNodes: int(vnodes % 64)}); r2.Owner(key) != r.Owner(key) {
			t.Fatal("owner depends on insertion order")
		}
	})
}
