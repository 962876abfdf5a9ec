package hist

import (
	"encoding/json"
	"fmt"
)

// wire is a Histogram's JSON form: its nonzero buckets as [index, count]
// pairs, the count, the exact min and max, and the sum (a float64, which
// encoding/json writes in its shortest round-tripping form).
type wire struct {
	N      uint64      `json:"n"`
	Min    int64       `json:"min"`
	Max    int64       `json:"max"`
	Sum    float64     `json:"sum"`
	Counts [][2]uint64 `json:"counts"`
}

// MarshalJSON encodes h exactly (sparse buckets), so a histogram recorded
// in another process (pushbench's workers) decodes and merges into the
// same counts, min, max and sum as one recorded here.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	w := wire{N: h.n, Min: h.min, Max: h.max, Sum: h.sum, Counts: [][2]uint64{}}
	for i, c := range h.counts {
		if c != 0 {
			w.Counts = append(w.Counts, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON replaces h with the histogram MarshalJSON encoded.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	var n uint64
	out := Histogram{n: w.N, min: w.Min, max: w.Max, sum: w.Sum}
	for _, p := range w.Counts {
		if p[0] >= numBuckets {
			return fmt.Errorf("hist: bucket %d out of range", p[0])
		}
		out.counts[p[0]] += p[1]
		n += p[1]
	}
	if n != w.N {
		return fmt.Errorf("hist: buckets hold %d values, count says %d", n, w.N)
	}
	*h = out
	return nil
}
