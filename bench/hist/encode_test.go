package hist

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// Histograms recorded apart, encoded, decoded and merged equal one that
// recorded every value (as pushbench's workers' histograms do merged in
// the coordinator).
func TestEncodeMergeExact(t *testing.T) {
	all := New()
	merged := New()
	for part := range 3 {
		h := New()
		for range 20000 + part {
			v := rand.Int64N(5_000_000_000) // ns: integer sums stay exact below 2^53
			h.Record(v)
			all.Record(v)
		}
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		var d Histogram
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		if d != *h {
			t.Fatalf("part %d: decoded histogram differs", part)
		}
		merged.Merge(&d)
	}
	if *merged != *all {
		t.Fatalf("merged: n %d min %d max %d sum %v, want n %d min %d max %d sum %v",
			merged.n, merged.min, merged.max, merged.sum, all.n, all.min, all.max, all.sum)
	}
	// An empty histogram round-trips too (min stays MaxInt64, so Merge keeps working).
	b, _ := json.Marshal(New())
	var e Histogram
	if err := json.Unmarshal(b, &e); err != nil || e != *New() {
		t.Fatalf("empty: %v %+v", err, e.n)
	}
	if err := json.Unmarshal([]byte(`{"n":2,"counts":[[1,1]]}`), &e); err == nil {
		t.Fatal("inconsistent count accepted")
	}
	if err := json.Unmarshal([]byte(`{"n":1,"counts":[[999999,1]]}`), &e); err == nil {
		t.Fatal("bucket out of range accepted")
	}
}
