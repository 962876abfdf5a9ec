// Package ring is a consistent hash ring: it places principals and groups
// on cluster nodes.
//
// A Ring is an immutable snapshot built from one set of node ids. Every
// node gives each id VirtualNodes points on a 64-bit circle, at
// Hash(id + "#" + i); a key belongs to the first point at or after
// Hash(key), wrapping around. Two nodes that build a ring from the same
// set of ids with the same Config get the same placement, whatever order
// the ids came in, so cluster members converge as soon as their member
// sets agree.
//
// The package is pure: no goroutines, no clock, no I/O, no project
// imports. All methods are safe for concurrent use and never block.
package ring

import (
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// DefaultVirtualNodes is the number of points per node when
// Config.VirtualNodes is zero.
const DefaultVirtualNodes = 128

// Key prefixes: a principal's home is the owner of "u:"+id, a group's
// owner the owner of "g:"+gid, so that a principal and a group with the
// same id are placed independently.
const (
	HomePrefix  = "u:"
	GroupPrefix = "g:"
)

// Config shapes a ring. Every node of a cluster must use the same Config,
// or their rings will disagree.
type Config struct {
	// VirtualNodes is the number of points each node gets on the circle.
	// More points give a more even split and cost memory and build time
	// (points × nodes points, each a 64-bit hash and an owner index). Zero
	// or less means DefaultVirtualNodes.
	VirtualNodes int
	// Hash maps bytes to a point on the circle. nil means xxhash64
	// (cespare/xxhash/v2), the only choice that keeps Home and
	// GroupOwner free of allocations. Tests plug in a predictable hash.
	Hash func([]byte) uint64
}

// DefaultConfig returns the Config of a production ring:
// DefaultVirtualNodes virtual nodes, xxhash64.
func DefaultConfig() Config { return Config{VirtualNodes: DefaultVirtualNodes} }

// Ring is an immutable placement of keys on a set of nodes. The zero value
// and nil are empty rings: every lookup returns "".
type Ring struct {
	vnodes int
	hash   func([]byte) uint64 // nil: xxhash.Sum64
	nodes  []string            // sorted, unique, non-empty
	shares []float64           // shares[i]: fraction of the circle nodes[i] owns
	points []uint64            // sorted point hashes
	owners []int32             // owners[j]: index in nodes of points[j]
}

// New builds a ring over nodes. Empty ids and duplicates are dropped and
// the order of nodes does not matter. nodes is not kept.
func New(nodes []string, cfg Config) *Ring {
	if cfg.VirtualNodes <= 0 {
		cfg.VirtualNodes = DefaultVirtualNodes
	}
	r := &Ring{vnodes: cfg.VirtualNodes, hash: cfg.Hash}
	r.nodes = make([]string, 0, len(nodes))
	for _, n := range nodes {
		if n != "" {
			r.nodes = append(r.nodes, n)
		}
	}
	slices.Sort(r.nodes)
	r.nodes = slices.Compact(r.nodes)
	if len(r.nodes) == 0 {
		r.nodes = nil
		return r
	}

	type point struct {
		hash  uint64
		owner int32
	}
	pts := make([]point, 0, len(r.nodes)*r.vnodes)
	var buf []byte
	for i, n := range r.nodes {
		for v := 0; v < r.vnodes; v++ {
			buf = append(buf[:0], n...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, int64(v), 10)
			pts = append(pts, point{r.sum(buf), int32(i)})
		}
	}
	// Ties (two points on the same hash) go to the smaller node id, so
	// placement never depends on input order.
	slices.SortFunc(pts, func(a, b point) int {
		if a.hash != b.hash {
			if a.hash < b.hash {
				return -1
			}
			return 1
		}
		return int(a.owner) - int(b.owner)
	})
	r.points = make([]uint64, len(pts))
	r.owners = make([]int32, len(pts))
	for j, p := range pts {
		r.points[j], r.owners[j] = p.hash, p.owner
	}

	// A point owns the arc from the previous point (exclusive) up to
	// itself; the first point also owns the wrap-around from the last.
	// Unsigned subtraction handles the wrap.
	r.shares = make([]float64, len(r.nodes))
	if len(r.nodes) == 1 {
		r.shares[0] = 1
		return r
	}
	const circle = 1 << 64
	for j := range r.points {
		prev := r.points[(j+len(r.points)-1)%len(r.points)]
		r.shares[r.owners[j]] += float64(r.points[j]-prev) / circle
	}
	return r
}

func (r *Ring) sum(b []byte) uint64 {
	if r.hash == nil {
		return xxhash.Sum64(b)
	}
	return r.hash(b)
}

// locate returns the index in r.nodes of the owner of hash h. The ring
// must not be empty.
func (r *Ring) locate(h uint64) int32 {
	// Binary search for the first point >= h (sort.Search, inlined).
	lo, hi := 0, len(r.points)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.points[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.points) {
		lo = 0
	}
	return r.owners[lo]
}

// Owner returns the node that owns key, or "" if the ring is empty.
func (r *Ring) Owner(key string) string {
	if r == nil || len(r.nodes) == 0 {
		return ""
	}
	var h uint64
	if r.hash == nil {
		h = xxhash.Sum64String(key)
	} else {
		h = r.hash([]byte(key))
	}
	return r.nodes[r.locate(h)]
}

// Home returns the node that delivers to principal id: Owner("u:"+id).
// It does not allocate (with the default hash).
func (r *Ring) Home(id string) string { return r.prefixed(HomePrefix, id) }

// GroupOwner returns the node that resolves group gid: Owner("g:"+gid).
// It does not allocate (with the default hash).
func (r *Ring) GroupOwner(gid string) string { return r.prefixed(GroupPrefix, gid) }

func (r *Ring) prefixed(prefix, id string) string {
	if r == nil || len(r.nodes) == 0 {
		return ""
	}
	return r.nodes[r.locate(r.sumPrefixed(prefix, id))]
}

// stackKey bounds the keys hashed from a stack buffer; principal and
// group ids (store.ValidID) and their prefixes are shorter, so longer
// keys are rare.
const stackKey = 128

// sumPrefixed hashes prefix+id without building the string on the heap.
func (r *Ring) sumPrefixed(prefix, id string) uint64 {
	if r.hash != nil {
		return r.hash([]byte(prefix + id))
	}
	if len(prefix)+len(id) <= stackKey {
		var buf [stackKey]byte
		n := copy(buf[:], prefix)
		n += copy(buf[n:], id)
		return xxhash.Sum64(buf[:n])
	}
	var d xxhash.Digest
	d.Reset()
	d.WriteString(prefix)
	d.WriteString(id)
	return d.Sum64()
}

// Nodes returns the ring's node ids, sorted. The slice is a copy.
func (r *Ring) Nodes() []string {
	if r == nil {
		return nil
	}
	return slices.Clone(r.nodes)
}

// Len is the number of nodes.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.nodes)
}

// Has reports whether node is on the ring.
func (r *Ring) Has(node string) bool {
	if r == nil {
		return false
	}
	_, ok := slices.BinarySearch(r.nodes, node)
	return ok
}

// Share returns the fraction of the hash circle node owns: about the
// fraction of keys it gets. 0 if node is not on the ring; the shares of
// all nodes add up to 1.
func (r *Ring) Share(node string) float64 {
	if r == nil {
		return 0
	}
	i, ok := slices.BinarySearch(r.nodes, node)
	if !ok {
		return 0
	}
	return r.shares[i]
}

// VirtualNodes is the number of points per node.
func (r *Ring) VirtualNodes() int {
	if r == nil {
		return 0
	}
	return r.vnodes
}

// SameNodes reports whether r and o are built over the same node ids.
// (Placement also depends on Config; a cluster uses one Config.)
func (r *Ring) SameNodes(o *Ring) bool {
	var a, b []string
	if r != nil {
		a = r.nodes
	}
	if o != nil {
		b = o.nodes
	}
	return slices.Equal(a, b)
}
