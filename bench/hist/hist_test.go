package hist

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketsMonotonic(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 127, 128, 130, 255, 256, 1000, 1 << 20, 1<<40 + 12345, 1<<63 - 1, 1<<64 - 1} {
		i := index(v)
		if i <= prev || i >= numBuckets {
			t.Fatalf("index(%d) = %d after %d (buckets %d)", v, i, prev, numBuckets)
		}
		lo, hi := bounds(i)
		if v < lo || v > hi {
			t.Fatalf("%d outside its bucket [%d, %d]", v, lo, hi)
		}
		prev = i
	}
}

func TestQuantiles(t *testing.T) {
	h, o := New(), New()
	var all []int64
	for i := range 100000 {
		v := rand.Int64N(50_000_000)
		all = append(all, v)
		if i%2 == 0 {
			h.Record(v)
		} else {
			o.Record(v)
		}
	}
	h.Merge(o)
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := all[int(q*float64(len(all)))-1]
		got := h.Quantile(q)
		if d := float64(got-want) / float64(want); d > 0.02 || d < -0.02 {
			t.Errorf("q%.3f = %d, want %d (±2%%)", q, got, want)
		}
	}
	if h.Max() != all[len(all)-1] || h.Count() != 100000 {
		t.Errorf("max %d count %d", h.Max(), h.Count())
	}
}
