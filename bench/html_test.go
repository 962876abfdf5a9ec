package bench

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/pushring/pushring/bench/hist"
)

// synthetic is one run's result of system: a latency histogram around
// medMs and a 100 ms series of rate deliveries/s over warmup 1 s, window
// 2 s and a short drain.
func synthetic(system string, run int, medMs, rate float64, qos int) Result {
	rng := rand.New(rand.NewPCG(uint64(run), uint64(len(system))))
	h := hist.New()
	for range 20000 {
		h.Record(int64(medMs * 1e6 * (0.5 + rng.ExpFloat64()/2)))
	}
	series := make([]uint64, 35)
	for i := range series {
		if i < 31 {
			series[i] = uint64(rate / 10 * (0.9 + 0.2*rng.Float64()))
		}
	}
	cpu := 1.5 + float64(run)
	r := Result{System: system, Scenario: "fanout", QoS: qos, Groups: 1, Members: 1000, Devices: 1, PayloadBytes: 64,
		DurationS: 2, WarmupS: 1, Connections: 1001, Sent: uint64(rate * 3 / 1000), Deliveries: uint64(rate * 2),
		DeliveriesPerS: rate, P50ms: float64(h.Quantile(0.5)) / 1e6, P90ms: float64(h.Quantile(0.9)) / 1e6,
		P99ms: float64(h.Quantile(0.99)) / 1e6, Maxms: float64(h.Max()) / 1e6, ServerCPUs: &cpu,
		Note: "synthetic <b>&amp;</b>", Run: run, SeriesStepMs: 100, Series: series, hist: h, LatencyCDF: latencyCDF(h)}
	return r
}

func TestRunOrder(t *testing.T) {
	if got := RunOrder(3, 1); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("run 1: %v", got)
	}
	if got := RunOrder(3, 2); !slices.Equal(got, []int{2, 1, 0}) {
		t.Errorf("run 2: %v", got)
	}
	if got := RunOrder(3, 3); !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("run 3: %v", got)
	}
}

func TestMedians(t *testing.T) {
	var all []Result
	rates := map[string][]float64{"pushring": {900, 1000, 5000}, "mosquitto": {100, 300, 200}}
	for run := 1; run <= 3; run++ {
		for _, i := range RunOrder(2, run) {
			sys := []string{"pushring", "mosquitto"}[i]
			all = append(all, synthetic(sys, run, 1, rates[sys][run-1], 0))
		}
	}
	// A third system whose second run failed, and one that always fails.
	for run := 1; run <= 3; run++ {
		r := synthetic("nats", run, 2, float64(100*run), 0)
		if run == 2 {
			r = Result{System: "nats", Scenario: "fanout", Run: 2, Error: "boom"}
		}
		all = append(all, r, Result{System: "broken", Scenario: "fanout", Run: run, Error: "no binary"})
	}
	got := Medians(all)
	if len(got) != 4 || got[0].System != "pushring" || got[1].System != "mosquitto" || got[2].System != "nats" || got[3].System != "broken" {
		t.Fatalf("systems %v", got)
	}
	p, m, n, b := got[0], got[1], got[2], got[3]
	if p.DeliveriesPerS != 1000 || m.DeliveriesPerS != 200 || n.DeliveriesPerS != 200 {
		t.Errorf("median deliveries/s %v %v %v, want 1000 200 200", p.DeliveriesPerS, m.DeliveriesPerS, n.DeliveriesPerS)
	}
	// min and max over the runs that did not fail (nats: runs 1 and 3).
	for _, c := range []struct {
		r      Result
		lo, hi float64
	}{{p, 900, 5000}, {m, 100, 300}, {n, 100, 300}} {
		if c.r.DeliveriesPerSMin == nil || c.r.DeliveriesPerSMax == nil || *c.r.DeliveriesPerSMin != c.lo || *c.r.DeliveriesPerSMax != c.hi {
			t.Errorf("%s: min %v max %v, want %v %v", c.r.System, c.r.DeliveriesPerSMin, c.r.DeliveriesPerSMax, c.lo, c.hi)
		}
	}
	if b.DeliveriesPerSMin != nil {
		t.Errorf("broken: min %v for a system whose every run failed", *b.DeliveriesPerSMin)
	}
	var txt strings.Builder
	(&Report{Results: got}).WriteTable(&txt)
	if !strings.Contains(txt.String(), "min deliv/s") || !strings.Contains(txt.String(), " 5000 ") {
		t.Errorf("text table without min and max over runs:\n%s", txt.String())
	}
	if p.SeriesRun != 2 || m.SeriesRun != 3 || p.Run != 0 || len(p.Runs) != 3 || p.Runs[0].Series != nil || p.Runs[1].LatencyCDF != nil {
		t.Errorf("series run %d %d, run %d, %d runs", p.SeriesRun, m.SeriesRun, p.Run, len(p.Runs))
	}
	if p.ServerCPUs == nil || *p.ServerCPUs != 3.5 || *n.ServerCPUs != 3.5 { // runs 1..3: 2.5 3.5 4.5; nats 1, 3: 2.5, 4.5
		t.Errorf("median server CPU %v %v", p.ServerCPUs, n.ServerCPUs)
	}
	if p.Sent != 3 || p.Connections != 1001 || p.QoS != 0 || p.Members != 1000 {
		t.Errorf("sent %d connections %d qos %d members %d", p.Sent, p.Connections, p.QoS, p.Members)
	}
	if p.hist == nil || p.hist.Count() != 60000 || len(p.LatencyCDF) == 0 {
		t.Errorf("merged histogram: %v", p.hist)
	}
	if !strings.HasPrefix(n.Note, "median of 2 runs (1 of 3 failed: run 2: boom)") || n.Error != "" {
		t.Errorf("nats note %q error %q", n.Note, n.Error)
	}
	if b.Error != "no binary" || len(b.Runs) != 3 {
		t.Errorf("broken: %+v", b)
	}
	// A single run is left alone, and its table has no min and max.
	one := []Result{{System: "pushring", DeliveriesPerS: 1}, {System: "nats"}}
	if got := Medians(one); len(got) != 2 || got[0].Runs != nil || got[0].DeliveriesPerSMin != nil {
		t.Errorf("single run changed: %+v", got)
	}
	txt.Reset()
	(&Report{Results: one}).WriteTable(&txt)
	if strings.Contains(txt.String(), "min deliv/s") {
		t.Errorf("min and max columns for a single run:\n%s", txt.String())
	}
	// JSON: results are the medians, each with its runs.
	raw, err := json.Marshal(Report{Results: got})
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Results []struct {
			System         string  `json:"system"`
			DeliveriesPerS float64 `json:"deliveries_per_s"`
			Runs           []struct {
				Run            int     `json:"run"`
				DeliveriesPerS float64 `json:"deliveries_per_s"`
			} `json:"runs"`
		} `json:"results"`
	}
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if r := back.Results[0]; r.DeliveriesPerS != 1000 || len(r.Runs) != 3 || r.Runs[2].Run != 3 || r.Runs[2].DeliveriesPerS != 5000 {
		t.Errorf("JSON: %+v", r)
	}
}

// TestHTMLReport renders a report from synthetic results (two reports,
// one with medians of runs and a failed system, one idle without charts)
// and checks it parses as HTML, fetches nothing, and has one CDF and one
// throughput series per system that has them.
func TestHTMLReport(t *testing.T) {
	var all []Result
	systems := []string{"pushring", "mosquitto", "nats"}
	for run := 1; run <= 3; run++ {
		for _, i := range RunOrder(3, run) {
			all = append(all, synthetic(systems[i], run, float64(i+1), float64(1000*(3-i)), 1))
		}
		all = append(all, Result{System: "other", Scenario: "fanout", QoS: 1, Run: run, Error: "x <failed>"})
	}
	fan := &Report{Machine: DescribeMachine(), Command: []string{"pushbench", "--runs", "3"}, Results: Medians(all)}
	kib, cps, cps2 := 2.5, 5385.0, 12612.0
	idle := &Report{Machine: fan.Machine, Command: []string{"pushbench", "--scenario", "idle"},
		Results: []Result{{System: "pushring", Scenario: "idle", Members: 100, Connections: 100, KiBPerConn: &kib},
			// churn has its own columns and no charts
			{System: "pushring", Scenario: "churn", Workers: 16, ConnectsPerS: &cps},
			{System: "mosquitto", Scenario: "churn", Workers: 16, ConnectsPerS: &cps2}}}

	// Through JSON and back, as pushreport does.
	path := filepath.Join(t.TempDir(), "fan.json")
	if err := fan.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	fan2, err := ReadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, "test <report>", fan2, idle); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]map[string]int{} // svg class -> system -> series
	var sections, tables, rows int
	var walk func(n *html.Node, svg string)
	walk = func(n *html.Node, svg string) {
		if n.Type == html.ElementNode {
			a := map[string]string{}
			for _, at := range n.Attr {
				a[at.Key] = at.Val
			}
			for _, k := range []string{"src", "href"} {
				if v := a[k]; v != "" && !strings.HasPrefix(v, "#") {
					t.Errorf("<%s %s=%q>: not self-contained", n.Data, k, v)
				}
			}
			switch n.Data {
			case "link", "script", "img", "iframe":
				t.Errorf("<%s> in a self-contained report", n.Data)
			case "section":
				sections++
			case "table":
				tables++
			case "tr":
				rows++
			case "svg":
				svg = a["class"]
			case "polyline":
				if a["class"] == "series" {
					if count[svg] == nil {
						count[svg] = map[string]int{}
					}
					count[svg][a["data-system"]]++
					if len(strings.Fields(a["points"])) < 10 {
						t.Errorf("%s %s: %d points", svg, a["data-system"], len(strings.Fields(a["points"])))
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, svg)
		}
	}
	walk(doc, "")
	if sections != 2 || tables != 3 || rows != 1+4+1+1+1+2 {
		t.Errorf("%d sections, %d tables, %d rows", sections, tables, rows)
	}
	for _, chart := range []string{"cdf", "throughput"} {
		if len(count[chart]) != 3 {
			t.Errorf("%s: series %v, want one per system of %v", chart, count[chart], systems)
		}
		for _, s := range systems {
			if count[chart][s] != 1 {
				t.Errorf("%s: %d series for %s, want 1", chart, count[chart][s], s)
			}
		}
	}
	for _, want := range []string{"<title>test &lt;report&gt;</title>", "x &lt;failed&gt;", "synthetic &lt;b&gt;&amp;amp;", "median of 3 runs",
		"1: 3,000/s, p99", "2.50", "pushring (run 2)", "<th>connects/s</th>", "<td>12612</td>", "<td>0.43</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestTLSRows: rows of a --tls run ("<system>+tls") are compared with
// pushring+tls, in the text table and in the HTML one, keep their
// system's colour, and the HTML section says the run was over TLS.
func TestTLSRows(t *testing.T) {
	r := &Report{Machine: DescribeMachine(), Command: []string{"pushbench", "--tls"}, Results: []Result{
		synthetic("pushring+tls", 0, 2, 3000, 0),
		synthetic("mosquitto+tls", 0, 4, 1000, 0),
	}}
	for i := range r.Results {
		r.Results[i].TLS, r.Results[i].Run = "TLS 1.3", 0
	}
	var txt bytes.Buffer
	r.WriteTable(&txt)
	var row string
	for _, line := range strings.Split(txt.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "mosquitto+tls ") {
			row = line
		}
	}
	if f := strings.Fields(row); len(f) < 2 || f[len(f)-2] != "3.00" {
		t.Errorf("text table: mosquitto+tls row %q, want pushring+tls/this deliveries/s 3.00", row)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, "tls", r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"MQTT over TLS (TLS 1.3)", "<td>3.00</td>", `color:` + palette["mosquitto"] + `">■</span> mosquitto+tls`} {
		if !strings.Contains(page.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}
