package bench

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/pushring/pushring/bench/hist"
)

// RunOrder is the order of n systems in run (1-based) of --runs: as given
// in odd runs, reversed in even ones, so no system always runs first (on a
// fresh machine) or last (after the others' garbage).
func RunOrder(n, run int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	if run%2 == 0 {
		slices.Reverse(idx)
	}
	return idx
}

// Medians folds the results of several runs (each with its Run set) into
// one result per system, scenario and QoS (and position, should a run
// give one system several rows), in the order they first appear: every
// numeric figure (float, integer, *float64) is the median over the runs
// that did not fail, the latency CDF comes from those runs' histograms
// merged, the time series from the run with the median deliveries/s;
// the lowest and highest deliveries/s go next to it (DeliveriesPerSMin,
// DeliveriesPerSMax). Each folded result keeps the runs' own figures in Runs (without CDF or
// series). A system whose every run failed keeps its first error.
// Results without Run (a single run) are returned unchanged.
func Medians(all []Result) []Result {
	type key struct {
		system, scenario string
		qos, nth         int
	}
	type inRun struct {
		run int
		key
	}
	var order []key
	groups := map[key][]Result{}
	seen := map[inRun]int{}
	for _, r := range all {
		if r.Run == 0 {
			return all
		}
		k := key{system: r.System, scenario: r.Scenario, qos: r.QoS}
		ik := inRun{r.Run, k}
		k.nth = seen[ik]
		seen[ik]++
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		out = append(out, median(groups[k]))
	}
	return out
}

func median(runs []Result) Result {
	var ok []Result
	var failed []string
	for _, r := range runs {
		if r.Error == "" {
			ok = append(ok, r)
		} else {
			failed = append(failed, fmt.Sprintf("run %d: %s", r.Run, r.Error))
		}
	}
	lean := make([]Result, len(runs))
	for i, r := range runs {
		r.LatencyCDF, r.Series, r.SeriesStepMs, r.hist = nil, nil, 0, nil
		lean[i] = r
	}
	if len(ok) == 0 {
		m := runs[0]
		m.Run, m.Runs = 0, lean
		m.LatencyCDF, m.Series, m.hist = nil, nil, nil
		return m
	}
	// The run with the median deliveries/s gives the identity fields
	// (note, series); lower middle for an even count.
	byRate := slices.Clone(ok)
	slices.SortStableFunc(byRate, func(a, b Result) int {
		switch {
		case a.DeliveriesPerS < b.DeliveriesPerS:
			return -1
		case a.DeliveriesPerS > b.DeliveriesPerS:
			return 1
		}
		return a.Run - b.Run
	})
	mid := byRate[(len(byRate)-1)/2]
	m := mid
	m.SeriesRun = mid.Run
	m.Run = 0
	m.Runs = lean

	mv := reflect.ValueOf(&m).Elem()
	t := mv.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Name == "Run" || f.Name == "SeriesRun" {
			continue
		}
		fv := mv.Field(i)
		var vals []float64
		for _, r := range ok {
			v := reflect.ValueOf(r).Field(i)
			switch v.Kind() {
			case reflect.Float32, reflect.Float64:
				vals = append(vals, v.Float())
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
				vals = append(vals, float64(v.Int()))
			case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				vals = append(vals, float64(v.Uint()))
			case reflect.Pointer:
				if !v.IsNil() && v.Elem().Kind() == reflect.Float64 {
					vals = append(vals, v.Elem().Float())
				}
			}
		}
		if len(vals) == 0 {
			continue
		}
		med := medianOf(vals)
		switch fv.Kind() {
		case reflect.Float32, reflect.Float64:
			fv.SetFloat(med)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			fv.SetInt(int64(med + 0.5))
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			fv.SetUint(uint64(med + 0.5))
		case reflect.Pointer:
			p := reflect.New(fv.Type().Elem())
			p.Elem().SetFloat(med)
			fv.Set(p)
		}
	}

	lo, hi := ok[0].DeliveriesPerS, ok[0].DeliveriesPerS
	for _, r := range ok[1:] {
		lo, hi = min(lo, r.DeliveriesPerS), max(hi, r.DeliveriesPerS)
	}
	m.DeliveriesPerSMin, m.DeliveriesPerSMax = &lo, &hi

	var h *hist.Histogram
	for _, r := range ok {
		if r.hist == nil {
			h = nil
			break
		}
		if h == nil {
			h = hist.New()
		}
		h.Merge(r.hist)
	}
	if h != nil {
		m.hist = h
		m.LatencyCDF = latencyCDF(h)
	}
	note := fmt.Sprintf("median of %d runs", len(ok))
	if len(failed) > 0 {
		note += fmt.Sprintf(" (%d of %d failed: %s)", len(failed), len(runs), strings.Join(failed, "; "))
	}
	if m.Note != "" {
		note += "; " + m.Note
	}
	m.Note = note
	return m
}

func medianOf(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
