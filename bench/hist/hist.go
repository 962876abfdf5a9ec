// Package hist is a small log-linear latency histogram in the spirit of
// HDR histograms: values (nanoseconds) below 1<<subBits are exact, larger
// ones fall into half linear sub-buckets per power of two, so a bucket is
// at most 1/half of its values wide (the relative error; TestBucketWidth
// pins it). Recording is allocation-free; histograms merge by addition. Not
// safe for concurrent use: keep one per goroutine and Merge at the end.
package hist

import (
	"math"
	"math/bits"
)

const (
	subBits    = 7                  // values < 1<<subBits are exact
	half       = 1 << (subBits - 1) // sub-buckets per power of two
	numBuckets = (64-subBits+1)*half + half
)

// Histogram counts int64 values >= 0 (negative values count as 0).
type Histogram struct {
	counts [numBuckets]uint64
	n      uint64
	min    int64
	max    int64
	sum    float64
}

// New returns an empty histogram.
func New() *Histogram { return &Histogram{min: math.MaxInt64} }

func index(v uint64) int {
	shift := bits.Len64(v) - subBits
	if shift <= 0 {
		return int(v)
	}
	return shift*half + int(v>>uint(shift))
}

// lowest and highest value of bucket i.
func bounds(i int) (lo, hi uint64) {
	if i < 1<<subBits {
		return uint64(i), uint64(i)
	}
	shift := i/half - 1
	top := uint64(i - shift*half)
	return top << uint(shift), (top+1)<<uint(shift) - 1
}

// Record adds one value.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	h.counts[index(uint64(v))]++
	h.n++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	if o.n > 0 {
		h.min = min(h.min, o.min)
		h.max = max(h.max, o.max)
	}
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest recorded value (exact), 0 if empty.
func (h *Histogram) Max() int64 {
	if h.n == 0 {
		return 0
	}
	return h.max
}

// Mean of the recorded values.
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q (0..1): the midpoint of the
// bucket holding it, clamped to the exact min and max.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bounds(i)
			v := int64(lo + (hi-lo)/2)
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}

// Min is the smallest recorded value (exact), 0 if empty.
func (h *Histogram) Min() int64 {
	if h.n == 0 {
		return 0
	}
	return h.min
}

// cdfQuantiles are where CDF samples the distribution: dense in the body,
// denser in the tail (log-spaced towards 1).
var cdfQuantiles = func() []float64 {
	var qs []float64
	for i := 1; i < 100; i++ { // 0.01 .. 0.99
		qs = append(qs, float64(i)/100)
	}
	for _, step := range []float64{1e-3, 1e-4, 1e-5} { // 0.991..0.999, 0.9991..0.9999, ...
		top := 1 - step*10
		for i := 1; i < 10; i++ {
			qs = append(qs, top+float64(i)*step)
		}
	}
	return qs
}()

// Point is one sample of a cumulative distribution: Frac of the values
// are at most V.
type Point struct {
	V    int64
	Frac float64
}

// CDF samples the cumulative distribution at about 130 quantiles (the
// body every 1 %, the tail to 0.99999), plus the exact min and max;
// points with the same value are merged into the highest fraction.
// Empty for an empty histogram.
func (h *Histogram) CDF() []Point {
	if h.n == 0 {
		return nil
	}
	pts := []Point{{V: h.min, Frac: 1 / float64(h.n)}}
	// One walk over the buckets for all quantiles (they are increasing).
	var seen uint64
	i := 0
	for _, q := range cdfQuantiles {
		rank := uint64(math.Ceil(q * float64(h.n)))
		for ; i < len(h.counts) && seen+h.counts[i] < rank; i++ {
			seen += h.counts[i]
		}
		if i == len(h.counts) {
			break
		}
		lo, hi := bounds(i)
		v := min(max(int64(lo+(hi-lo)/2), h.min), h.max)
		pts = append(pts, Point{V: v, Frac: q})
	}
	pts = append(pts, Point{V: h.max, Frac: 1})
	out := pts[:1]
	for _, p := range pts[1:] {
		last := &out[len(out)-1]
		switch {
		case p.V == last.V:
			last.Frac = max(last.Frac, p.Frac)
		case p.V > last.V && p.Frac >= last.Frac:
			out = append(out, p)
		}
	}
	return out
}
