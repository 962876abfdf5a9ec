package testutil

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// MetricFamilies describes each family gathered from g whose name starts
// with prefix, one sorted line each: name, type, label names and help. A
// family without a series is not gathered, so it is not listed.
func MetricFamilies(t testing.TB, g prometheus.Gatherer, prefix string) []string {
	t.Helper()
	var out []string
	for _, mf := range gather(t, g, prefix) {
		var names []string
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if !slices.Contains(names, l.GetName()) {
					names = append(names, l.GetName())
				}
			}
		}
		slices.Sort(names)
		out = append(out, fmt.Sprintf("%s %s [%s] %q", mf.GetName(),
			strings.ToLower(mf.GetType().String()), strings.Join(names, " "), mf.GetHelp()))
	}
	slices.Sort(out)
	return out
}

// CheckLines fails the test unless got equals want, and prints got, so
// that it can be pasted as want when a change to the list is intended.
func CheckLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	var b strings.Builder
	for _, l := range got {
		fmt.Fprintf(&b, "\t`%s`,\n", l)
	}
	t.Errorf("%s differ; got:\n%s", what, b.String())
}

// MetricSeries returns each series gathered from g whose name starts
// with prefix, as name{label="value",...} (labels sorted by name), with
// its value.
func MetricSeries(t testing.TB, g prometheus.Gatherer, prefix string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, mf := range gather(t, g, prefix) {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() { // sorted by name
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name := mf.GetName()
			if len(labels) > 0 {
				name += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[name] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name] = m.Gauge.GetValue()
			default:
				t.Fatalf("%s: neither a counter nor a gauge", name)
			}
		}
	}
	return out
}

// CheckCreated fails the test unless every counter gathered from g whose
// name starts with prefix carries the time it was created (Prometheus
// gets it with the protobuf format).
func CheckCreated(t testing.TB, g prometheus.Gatherer, prefix string) {
	t.Helper()
	for _, mf := range gather(t, g, prefix) {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil && c.GetCreatedTimestamp() == nil {
				t.Errorf("%s %v: no created timestamp", mf.GetName(), m.GetLabel())
			}
		}
	}
}

// SumSeries is the sum of the values in series whose name (up to the
// labels) is name.
func SumSeries(series map[string]float64, name string) float64 {
	var sum float64
	for k, v := range series {
		if k == name || strings.HasPrefix(k, name+"{") {
			sum += v
		}
	}
	return sum
}

func gather(t testing.TB, g prometheus.Gatherer, prefix string) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(mfs, func(mf *dto.MetricFamily) bool {
		return !strings.HasPrefix(mf.GetName(), prefix)
	})
}

// SeriesNames returns the keys of series, sorted.
func SeriesNames(series map[string]float64) []string {
	return slices.Sorted(maps.Keys(series))
}
