package hist

import (
	"math"
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

// TestBucketWidth pins the precision the package doc states: values
// below 1<<subBits have a bucket each, and every other bucket is at most
// 1/half of its lowest value wide.
func TestBucketWidth(t *testing.T) {
	for i := range numBuckets {
		lo, hi := bounds(i)
		if i < 1<<subBits {
			if lo != hi {
				t.Fatalf("bucket %d holds [%d, %d], want one value", i, lo, hi)
			}
			continue
		}
		if width := hi - lo + 1; width > lo/half {
			t.Fatalf("bucket %d is [%d, %d]: %d wide, over 1/%d of %d", i, lo, hi, width, half, lo)
		}
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

func TestCDF(t *testing.T) {
	if New().CDF() != nil {
		t.Fatal("CDF of an empty histogram")
	}
	h := New()
	for v := range int64(100000) {
		h.Record(1000 + v*10) // uniform on [1000, 1_000_990]
	}
	pts := h.CDF()
	if len(pts) < 50 || len(pts) > 200 {
		t.Fatalf("%d points", len(pts))
	}
	if pts[0].V != h.Min() || pts[len(pts)-1].V != h.Max() || pts[len(pts)-1].Frac != 1 {
		t.Fatalf("ends %+v %+v, min %d max %d", pts[0], pts[len(pts)-1], h.Min(), h.Max())
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].V <= pts[i-1].V || pts[i].Frac < pts[i-1].Frac {
			t.Fatalf("not increasing at %d: %+v %+v", i, pts[i-1], pts[i])
		}
	}
	for _, p := range pts[1 : len(pts)-1] {
		want := 1000 + p.Frac*1_000_000
		if d := math.Abs(float64(p.V)-want) / want; d > 0.02 {
			t.Errorf("at %.5f: %d, want about %.0f", p.Frac, p.V, want)
		}
	}
	// One value: min = max, one point.
	o := New()
	o.Record(5)
	o.Record(5)
	if pts := o.CDF(); len(pts) != 1 || pts[0] != (Point{5, 1}) {
		t.Fatalf("constant: %+v", pts)
	}
}
