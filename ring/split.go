package ring

// Placer says which node delivers to a principal. *Ring is one; so is
// any view that wraps a ring (one swapped atomically as members come and
// go, or a single node before the cluster is known).
type Placer interface {
	Home(id string) string
}

// Split is ids grouped by node: Node(i) for i < Len() in first-seen
// order, List(i) the ids that go to it, in their order. It keeps its
// storage from one use to the next, so a Split that is reused allocates
// nothing once it has grown. The zero value is empty and ready to use. Not
// goroutine-safe.
type Split struct {
	nodes []string
	lists [][]string // lists[i]: the ids of nodes[i]
	index map[string]int
	whole []string // when set, the one list (see SplitHomes); not ours to modify
}

// SplitHomes empties into, then groups ids in it by place.Home. Empty ids
// are skipped. When every id has the same home (always, on one node)
// nothing is copied: the one list is ids itself, which the caller then
// must not modify while it uses into.
func SplitHomes(ids []string, place Placer, into *Split) {
	into.Reset()

	// The common prefix of ids sharing the first id's home.
	n, first := 0, ""
	for ; n < len(ids) && ids[n] != ""; n++ {
		home := place.Home(ids[n])
		if n == 0 {
			first = home
		} else if home != first {
			break
		}
	}
	if n == len(ids) {
		if n > 0 {
			into.nodes = append(into.nodes, first)
			into.whole = ids
		}
		return
	}
	if n > 0 {
		i := into.node(first)
		into.lists[i] = append(into.lists[i], ids[:n]...)
	}
	// Consecutive ids often share a home: look the list up only when the
	// home changes.
	last, lastIdx := "", -1
	for _, id := range ids[n:] {
		if id == "" {
			continue
		}
		home := place.Home(id)
		if lastIdx < 0 || home != last {
			last, lastIdx = home, into.node(home)
		}
		into.lists[lastIdx] = append(into.lists[lastIdx], id)
	}
}

// Add appends id to the list of node.
func (s *Split) Add(node, id string) {
	i := s.node(node)
	s.lists[i] = append(s.lists[i], id)
}

// Len is the number of nodes.
func (s *Split) Len() int { return len(s.nodes) }

// Node is the i-th node, in first-seen order.
func (s *Split) Node(i int) string { return s.nodes[i] }

// List is the ids of Node(i). It is only read, and only until the next
// change to s.
func (s *Split) List(i int) []string {
	if s.whole != nil {
		return s.whole
	}
	return s.lists[i]
}

// Cap is how many ids the lists hold without growing: a pool can drop a
// Split that grew too large.
func (s *Split) Cap() int {
	n := 0
	for _, l := range s.lists[:cap(s.lists)] {
		n += cap(l)
	}
	return n
}

// Reset empties s, keeping its storage. The ids it held are dropped, so
// that a kept Split does not keep their memory alive.
func (s *Split) Reset() {
	if len(s.nodes) == 0 {
		return // already empty: whole and every list come with a node
	}
	for i := range s.lists {
		clear(s.lists[i])
		s.lists[i] = s.lists[i][:0]
	}
	clear(s.nodes)
	s.nodes, s.lists, s.whole = s.nodes[:0], s.lists[:0], nil
	clear(s.index)
}

// node returns the index of name in s.nodes, adding it with an empty list
// (reusing old storage) if it is new.
func (s *Split) node(name string) int {
	if i, ok := s.index[name]; ok {
		return i
	}
	if s.index == nil {
		s.index = make(map[string]int)
	}
	i := len(s.nodes)
	s.index[name] = i
	s.nodes = append(s.nodes, name)
	if len(s.lists) < cap(s.lists) {
		s.lists = s.lists[:i+1] // keeps the old list's storage
	} else {
		s.lists = append(s.lists, nil)
	}
	return i
}
