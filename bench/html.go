package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/pushring/pushring/internal/chaos"
)

// ReadReport reads a --json file back.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// WriteHTMLFile writes WriteHTML's page to path.
func WriteHTMLFile(path, title string, reps ...*Report) error {
	var b bytes.Buffer
	if err := WriteHTML(&b, title, reps...); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// WriteHTML writes a self-contained page (inline CSS and SVG, no script,
// nothing fetched): per report (one pushbench run) and per scenario and
// QoS in it, the results table, the latency CDF of every system (log-scale
// milliseconds) and its deliveries over time (warmup, window, drain).
func WriteHTML(w io.Writer, title string, reps ...*Report) error {
	var b strings.Builder
	esc := html.EscapeString
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n")
	fmt.Fprintf(&b, "<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n", esc(title), css)
	fmt.Fprintf(&b, "<h1>%s</h1>\n", esc(title))
	var machines []Machine
	for _, r := range reps {
		if len(machines) == 0 || machines[len(machines)-1] != r.Machine {
			machines = append(machines, r.Machine)
		}
	}
	for _, m := range machines {
		fmt.Fprintf(&b, "<p class=\"machine\">Machine: %d cores, %s, kernel %s, %.1f GiB, %s. Generated %s.</p>\n",
			m.Cores, esc(m.Model), esc(m.Kernel), float64(m.MemoryKiB)/(1<<20), esc(m.GoVersion), time.Now().UTC().Format(time.RFC3339))
	}
	if len(reps) > 1 {
		b.WriteString("<ul class=\"toc\">\n")
		for i, r := range reps {
			fmt.Fprintf(&b, "<li><a href=\"#run%d\">%s</a></li>\n", i+1, esc(sectionTitle(r)))
		}
		b.WriteString("</ul>\n")
	}
	for i, r := range reps {
		fmt.Fprintf(&b, "<section id=\"run%d\">\n<h2>%s</h2>\n", i+1, esc(sectionTitle(r)))
		fmt.Fprintf(&b, "<pre class=\"cmd\">%s</pre>\n", esc(strings.Join(r.Command, " ")))
		groups := groupResults(r.Results)
		for _, g := range groups {
			if len(groups) > 1 {
				fmt.Fprintf(&b, "<h3>%s, QoS %d</h3>\n", esc(g[0].Scenario), g[0].QoS)
			}
			writeHTMLTable(&b, g)
			if hasCharts(g) {
				b.WriteString("<div class=\"charts\">\n")
				writeCDF(&b, g)
				writeSeries(&b, g)
				b.WriteString("</div>\n")
			}
		}
		b.WriteString("</section>\n")
	}
	b.WriteString("</body>\n</html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

const css = `body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.cmd{background:#f6f6f6;padding:4px;white-space:pre-wrap;font-size:12px}
.charts{display:flex;flex-wrap:wrap;gap:1em}svg{background:#fff;border:1px solid #ddd}
svg text{font-size:11px;font-family:system-ui,sans-serif}.grid{stroke:#e4e4e4}.axis{stroke:#888}
.note{font-size:12px;color:#555;margin:.2em 0}.machine{color:#444}section{margin-bottom:2.5em}`

func sectionTitle(r *Report) string {
	if len(r.Results) == 0 {
		return "(no results)"
	}
	x := r.Results[0]
	s := fmt.Sprintf("%s, QoS %d", x.Scenario, x.QoS)
	switch x.Scenario {
	case "fanout":
		s += fmt.Sprintf(", %d × %d members, %d device(s)", x.Groups, x.Members, x.Devices)
	case "direct":
		s += fmt.Sprintf(", %d users, %d senders", x.Members, x.Devices)
	case "idle":
		s += fmt.Sprintf(", %d clients", x.Members)
	case "churn":
		s += fmt.Sprintf(", %d workers", x.Workers)
	case "cluster":
		s += fmt.Sprintf(", %d × %d members, %d device(s)", x.Groups, x.Members, x.Devices)
	case "chaos":
		s += fmt.Sprintf(", %d nodes, %d persistent members, %g group msg/s", x.Nodes, x.Members, x.Rate)
		if x.Chaos != nil {
			s += fmt.Sprintf(" and %g direct msg/s", x.Chaos.DirectRate)
		}
		s += ", under a fault schedule"
	}
	if x.Scenario == "fanout" || x.Scenario == "direct" || x.Scenario == "cluster" {
		if x.BurstMessages > 0 {
			s += fmt.Sprintf(", burst of %d messages per device", x.BurstMessages)
		} else if x.Rate > 0 {
			s += fmt.Sprintf(", %g msg/s", x.Rate)
		} else {
			s += ", max rate"
		}
	}
	switch transportSuffix(x.System) {
	case WSSuffix:
		s += ", MQTT over WebSocket"
	case TLSSuffix:
		s += ", MQTT over TLS"
		if x.TLS != "" {
			s += " (" + x.TLS + ")"
		}
	}
	if n := len(x.Runs); n > 1 {
		s += fmt.Sprintf(", median of %d runs", n)
	}
	return s
}

// hasCharts: some result has a latency CDF or a time series (idle has neither).
func hasCharts(rs []Result) bool {
	for _, r := range rs {
		if len(r.LatencyCDF) > 0 || len(r.Series) > 0 {
			return true
		}
	}
	return false
}

// groupResults splits results by scenario and QoS, in order.
func groupResults(rs []Result) [][]Result {
	var out [][]Result
	for _, r := range rs {
		i := 0
		for ; i < len(out); i++ {
			if out[i][0].Scenario == r.Scenario && out[i][0].QoS == r.QoS {
				break
			}
		}
		if i == len(out) {
			out = append(out, nil)
		}
		out[i] = append(out[i], r)
	}
	return out
}

var palette = map[string]string{"pushring": "#1f5fbf", "mosquitto": "#e07b00", "mosquitto-persist": "#a0522d", "nats": "#2a9d3a"}
var extraColors = []string{"#b8336a", "#7a4fbf", "#8c6d31", "#17a2b8", "#555555"}

func color(system string, i int) string {
	if c, ok := palette[strings.TrimSuffix(system, transportSuffix(system))]; ok {
		return c
	}
	return extraColors[i%len(extraColors)]
}

// column is one column of the HTML results table.
type column struct {
	head string
	cell func(x *Result) string
}

func f2(v float64) string { return fmt.Sprintf("%.2f", v) }

// ratio is num/den as "%.2f", "-" when either is missing.
func ratio(num, den *float64) string {
	if num == nil || den == nil || *den <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", *num / *den)
}

func ptr(v float64) *float64 { return &v }

// columns picks the table's columns by scenario: churn and cluster have
// their own figures, the others share fanout's. ref is the row the ratio
// columns divide by (pushring's, or the cluster's).
func columns(scenario string, ref *Result) []column {
	perRun := column{"per run", func(x *Result) string {
		var per []string
		for _, r := range x.Runs {
			switch {
			case r.Error != "":
				per = append(per, fmt.Sprintf("%d: failed", r.Run))
			case r.ConnectsPerS != nil:
				per = append(per, fmt.Sprintf("%d: %s connects/s", r.Run, thousands(*r.ConnectsPerS)))
			default:
				per = append(per, fmt.Sprintf("%d: %s/s, p99 %.2f", r.Run, thousands(r.DeliveriesPerS), r.P99ms))
			}
		}
		return strings.Join(per, " · ")
	}}
	delivery := func(x *Result) *float64 { return ptr(x.DeliveriesPerS) }
	p99 := func(x *Result) *float64 { return ptr(x.P99ms) }
	var refD, refP *float64
	if ref != nil {
		refD, refP = delivery(ref), p99(ref)
	}
	latency := []column{
		{"deliveries/s", func(x *Result) string { return thousands(x.DeliveriesPerS) }},
		{"p50 ms", func(x *Result) string { return f2(x.P50ms) }},
		{"p90 ms", func(x *Result) string { return f2(x.P90ms) }},
		{"p99 ms", func(x *Result) string { return f2(x.P99ms) }},
		{"max ms", func(x *Result) string { return f2(x.Maxms) }},
		{"lost", func(x *Result) string { return thousands(float64(x.Lost)) }},
		{"dups", func(x *Result) string { return thousands(float64(x.Duplicates)) }},
	}
	conns := column{"conns", func(x *Result) string { return fmt.Sprint(x.Connections) }}
	sent := column{"sent", func(x *Result) string { return thousands(float64(x.Sent)) }}
	harness := column{"harness CPU s", func(x *Result) string { return f2(x.HarnessCPUs) }}
	switch scenario {
	case "churn":
		var refC *float64
		if ref != nil {
			refC = ref.ConnectsPerS
		}
		return []column{
			{"workers", func(x *Result) string { return fmt.Sprint(x.Workers) }},
			{"logins/s", func(x *Result) string { return optf(x.LoginsPerS, "%.1f") }},
			{"login p50 / p99 ms", func(x *Result) string { return optf(x.LoginP50ms, "%.1f") + " / " + optf(x.LoginP99ms, "%.1f") }},
			{"token CONNECT p50 / p99 ms", func(x *Result) string {
				return optf(x.TokenConnectP50ms, "%.2f") + " / " + optf(x.TokenConnectP99ms, "%.2f")
			}},
			{"connects/s", func(x *Result) string { return optf(x.ConnectsPerS, "%.0f") }},
			{"CONNECT p50 / p99 ms", func(x *Result) string { return optf(x.ConnectP50ms, "%.2f") + " / " + optf(x.ConnectP99ms, "%.2f") }},
			{"SUBSCRIBE p50 / p99 ms", func(x *Result) string {
				return optf(x.SubscribeP50ms, "%.2f") + " / " + optf(x.SubscribeP99ms, "%.2f")
			}},
			{"errors", func(x *Result) string { return thousands(float64(x.Errors)) }},
			{"srv CPU s", func(x *Result) string { return optf(x.ServerCPUs, "%.2f") }},
			harness,
			{"pushring/this connects/s", func(x *Result) string { return ratio(refC, x.ConnectsPerS) }},
			perRun,
		}
	case "chaos":
		// Not a speed row: what was acknowledged, and whether it all came.
		total := func(f func(t *chaos.Window) string) func(x *Result) string {
			return func(x *Result) string {
				if x.Chaos == nil {
					return "-"
				}
				return f(&x.Chaos.Total)
			}
		}
		return []column{
			{"nodes", func(x *Result) string { return fmt.Sprint(x.Nodes) }},
			conns,
			{"acknowledged", func(x *Result) string { return thousands(float64(x.Sent)) }},
			{"deliveries expected", total(func(t *chaos.Window) string { return thousands(float64(t.Expected)) })},
			{"got", func(x *Result) string { return thousands(float64(x.Deliveries)) }},
			{"lost", func(x *Result) string { return thousands(float64(x.Lost)) }},
			{"dups", func(x *Result) string { return thousands(float64(x.Duplicates)) }},
			{"out of order", total(func(t *chaos.Window) string { return thousands(float64(t.OutOfOrder)) })},
			{"traffic s", func(x *Result) string { return f2(x.DurationS) }},
			{"faults", func(x *Result) string {
				if x.Chaos == nil {
					return ""
				}
				var steps []string
				for _, ev := range x.Chaos.Events {
					steps = append(steps, fmt.Sprintf("%s %s at %.0f s", ev.Action, ev.Resolved, ev.Began.Seconds()))
				}
				return strings.Join(steps, ", ")
			}},
		}
	case "cluster":
		cols := []column{{"nodes", func(x *Result) string { return fmt.Sprint(max(x.Nodes, 1)) }}, conns, sent}
		cols = append(cols, latency...)
		return append(cols,
			column{"envelopes/publish", func(x *Result) string { return optf(x.EnvelopesPerPublish, "%.2f") }},
			column{"acks/publish", func(x *Result) string { return optf(x.AcksPerPublish, "%.2f") }},
			column{"home nodes/group", func(x *Result) string { return optf(x.HomeNodesPerGroup, "%.1f") }},
			column{"nodes CPU s", func(x *Result) string {
				if x.NodesCPUs == nil {
					return optf(x.ServerCPUs, "%.2f")
				}
				return optf(x.NodesCPUs, "%.2f")
			}},
			column{"nodes RSS MiB", func(x *Result) string {
				if x.NodesRSSMiB == nil {
					return optf(x.ServerRSSMiB, "%.1f")
				}
				return optf(x.NodesRSSMiB, "%.1f")
			}},
			harness,
			column{"cluster/this deliv/s", func(x *Result) string { return ratio(refD, delivery(x)) }},
			perRun)
	}
	cols := []column{conns, sent}
	cols = append(cols, latency...)
	return append(cols,
		column{"srv CPU s", func(x *Result) string { return optf(x.ServerCPUs, "%.2f") }},
		column{"srv RSS MiB", func(x *Result) string { return optf(x.ServerRSSMiB, "%.1f") }},
		harness,
		column{"KiB/conn", func(x *Result) string { return optf(x.KiBPerConn, "%.2f") }},
		column{"pushring/this deliv/s", func(x *Result) string { return ratio(refD, delivery(x)) }},
		column{"pushring/this p99", func(x *Result) string { return ratio(refP, p99(x)) }},
		perRun)
}

func writeHTMLTable(b *strings.Builder, rs []Result) {
	esc := html.EscapeString
	want := "pushring" + transportSuffix(rs[0].System) // a run is all TLS, all WebSocket or all plain
	if rs[0].Scenario == "cluster" {
		want = "pushring-cluster"
	}
	var ref *Result
	for i := range rs {
		if rs[i].System == want && rs[i].Error == "" {
			ref = &rs[i]
		}
	}
	cols := columns(rs[0].Scenario, ref)
	b.WriteString("<table>\n<tr><th class=\"l\">system</th>")
	for _, c := range cols {
		fmt.Fprintf(b, "<th>%s</th>", esc(c.head))
	}
	b.WriteString("</tr>\n")
	for i := range rs {
		x := &rs[i]
		fmt.Fprintf(b, "<tr><td class=\"l\"><span style=\"color:%s\">■</span> %s</td>", color(x.System, i), esc(x.System))
		if x.Error != "" {
			fmt.Fprintf(b, "<td class=\"l\" colspan=\"%d\">failed: %s</td></tr>\n", len(cols), esc(x.Error))
			continue
		}
		for j, c := range cols {
			cls := ""
			if j == len(cols)-1 {
				cls = " class=\"l\""
			}
			fmt.Fprintf(b, "<td%s>%s</td>", cls, esc(c.cell(x)))
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</table>\n")
	for i := range rs {
		if rs[i].Chaos != nil {
			writeChaosWindows(b, rs[i].Chaos)
		}
	}
	for _, x := range rs {
		if x.Note != "" && x.Error == "" {
			fmt.Fprintf(b, "<p class=\"note\"><b>%s</b>: %s</p>\n", esc(x.System), esc(x.Note))
		}
		if line := webhookLine(&x); x.Error == "" && line != "" {
			fmt.Fprintf(b, "<p class=\"note\"><b>%s</b>: %s</p>\n", esc(x.System), esc(strings.TrimPrefix(line, x.System+": ")))
		}
	}
	if ref != nil && ref.ClusterOverSingle != nil {
		fmt.Fprintf(b, "<p class=\"note\"><b>cluster/single deliveries/s</b>: %.2f (target ≥ 0.7)</p>\n", *ref.ClusterOverSingle)
	}
}

// thousands formats v rounded, with thin separators: 1,234,567.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

const (
	chartW, chartH                 = 640, 350
	padL, padR, padT, padB         = 64, 16, 42, 44
	plotW, plotH                   = chartW - padL - padR, chartH - padT - padB
	minLatencyMs           float64 = 0.001 // 1 µs: the log axis' floor
)

func svgOpen(b *strings.Builder, class, title string) {
	fmt.Fprintf(b, "<svg class=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", class, chartW, chartH, chartW, chartH)
	fmt.Fprintf(b, "<text x=\"%d\" y=\"15\" font-weight=\"bold\">%s</text>\n", padL, html.EscapeString(title))
}

// legend is one row under the title.
func legend(b *strings.Builder, names []string, colors []string) {
	x := float64(padL)
	for i, n := range names {
		fmt.Fprintf(b, "<rect x=\"%.0f\" y=\"26\" width=\"14\" height=\"4\" fill=\"%s\"/><text x=\"%.0f\" y=\"32\">%s</text>\n",
			x, colors[i], x+18, html.EscapeString(n))
		x += float64(7*len(n) + 34)
	}
}

// writeCDF draws the latency CDFs: x log10(ms), y fraction 0..1.
func writeCDF(b *strings.Builder, rs []Result) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range rs {
		for _, p := range r.LatencyCDF {
			v := max(p[0], minLatencyMs)
			lo, hi = min(lo, v), max(hi, v)
		}
	}
	svgOpen(b, "cdf", "latency CDF: fraction of the window's deliveries at most x ms")
	if math.IsInf(lo, 1) {
		fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\">no latency recorded</text>\n</svg>\n", padL+20, padT+plotH/2)
		return
	}
	d0, d1 := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if d1 <= d0 {
		d1 = d0 + 1
	}
	x := func(ms float64) float64 {
		return float64(padL) + (math.Log10(max(ms, minLatencyMs))-d0)/(d1-d0)*plotW
	}
	y := func(f float64) float64 { return float64(padT) + (1-f)*plotH }
	for d := d0; d <= d1; d++ {
		for k := 1; k < 10; k++ {
			v := math.Pow(10, d) * float64(k)
			if d == d1 && k > 1 {
				break
			}
			op := 1.0
			if k != 1 {
				op = 0.45
			}
			fmt.Fprintf(b, "<line class=\"grid\" stroke-opacity=\"%g\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>\n", op, x(v), padT, x(v), padT+plotH)
		}
		fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x(math.Pow(10, d)), padT+plotH+15, msLabel(math.Pow(10, d)))
	}
	for i := 0; i <= 10; i++ {
		f := float64(i) / 10
		fmt.Fprintf(b, "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.0f%%</text>\n",
			padL, y(f), padL+plotW, y(f), padL-5, y(f)+4, f*100)
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		fmt.Fprintf(b, "<line stroke=\"#999\" stroke-dasharray=\"3,3\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/><text x=\"%d\" y=\"%.1f\" fill=\"#777\">p%g</text>\n",
			padL, y(q), padL+plotW, y(q), padL+3, y(q)-2, q*100)
	}
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">latency, ms (log scale)</text>\n", padL+plotW/2, chartH-8)
	var names, colors []string
	for i, r := range rs {
		if len(r.LatencyCDF) == 0 {
			continue
		}
		var pts strings.Builder
		prev := 0.0
		for _, p := range r.LatencyCDF {
			// A step: the fraction holds until the next value.
			fmt.Fprintf(&pts, "%.1f,%.1f %.1f,%.1f ", x(p[0]), y(prev), x(p[0]), y(p[1]))
			prev = p[1]
		}
		c := color(r.System, i)
		fmt.Fprintf(b, "<polyline class=\"series\" data-system=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\" points=\"%s\"><title>%s: p50 %.2f ms, p99 %.2f ms, max %.2f ms</title></polyline>\n",
			html.EscapeString(r.System), c, strings.TrimSpace(pts.String()), html.EscapeString(r.System), r.P50ms, r.P99ms, r.Maxms)
		names, colors = append(names, r.System), append(colors, c)
	}
	legend(b, names, colors)
	fmt.Fprintf(b, "<rect class=\"axis\" fill=\"none\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>\n</svg>\n", padL, padT, plotW, plotH)
}

func msLabel(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%g", v)
	case v >= 1000:
		return fmt.Sprintf("%gk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

// niceStep is a 1-2-5 step giving about n ticks over span.
func niceStep(span float64, n int) float64 {
	if span <= 0 {
		return 1
	}
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func rateLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e4)/100)
	case v >= 1e3:
		return fmt.Sprintf("%gk", math.Round(v/10)/100)
	}
	return fmt.Sprintf("%g", v)
}

// writeSeries draws deliveries/s over time from the start of publishing,
// with the measured window shaded.
func writeSeries(b *strings.Builder, rs []Result) {
	var tmax, ymax, warm, dur float64
	for _, r := range rs {
		if len(r.Series) == 0 || r.SeriesStepMs <= 0 {
			continue
		}
		tmax = max(tmax, float64(len(r.Series))*r.SeriesStepMs/1000)
		for _, n := range r.Series {
			ymax = max(ymax, float64(n)*1000/r.SeriesStepMs)
		}
		warm, dur = r.WarmupS, r.DurationS
	}
	svgOpen(b, "throughput", "deliveries/s over time, 100 ms buckets (all deliveries, window shaded)")
	if tmax == 0 {
		fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\">no time series in this scenario</text>\n</svg>\n", padL+20, padT+plotH/2)
		return
	}
	if ymax == 0 {
		ymax = 1
	}
	ymax *= 1.05
	ystep := niceStep(ymax, 5)
	ymax = math.Ceil(ymax/ystep) * ystep
	x := func(t float64) float64 { return float64(padL) + t/tmax*plotW }
	y := func(v float64) float64 { return float64(padT) + (1-v/ymax)*plotH }
	fmt.Fprintf(b, "<rect x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#eef3fb\"/>\n", x(warm), padT, x(min(warm+dur, tmax))-x(warm), plotH)
	// Phase names where they fit: warmup, window (shaded), drain.
	ly := padT + 12
	for _, ph := range []struct {
		name     string
		from, to float64
	}{{"warmup", 0, warm}, {"window", warm, warm + dur}, {"drain", warm + dur, tmax}} {
		if x(min(ph.to, tmax))-x(ph.from) >= float64(6*len(ph.name)+6) {
			fmt.Fprintf(b, "<text x=\"%.1f\" y=\"%d\" fill=\"#777\">%s</text>", x(ph.from)+3, ly, ph.name)
		}
	}
	b.WriteString("\n")
	for v := 0.0; v <= ymax+ystep/2; v += ystep {
		fmt.Fprintf(b, "<line class=\"grid\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
			padL, y(v), padL+plotW, y(v), padL-5, y(v)+4, rateLabel(v))
	}
	tstep := niceStep(tmax, 8)
	for t := 0.0; t <= tmax+tstep/100; t += tstep {
		fmt.Fprintf(b, "<line class=\"grid\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/><text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n",
			x(t), padT, x(t), padT+plotH, x(t), padT+plotH+15, math.Round(t*1000)/1000)
	}
	fmt.Fprintf(b, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">seconds since publishing started</text>\n", padL+plotW/2, chartH-8)
	var names, colors []string
	for i, r := range rs {
		if len(r.Series) == 0 || r.SeriesStepMs <= 0 {
			continue
		}
		step := r.SeriesStepMs / 1000
		var pts strings.Builder
		for j, n := range r.Series {
			// Each bucket is a flat segment over its 100 ms.
			v := float64(n) / step
			fmt.Fprintf(&pts, "%.1f,%.1f %.1f,%.1f ", x(float64(j)*step), y(v), x(float64(j+1)*step), y(v))
		}
		c := color(r.System, i)
		label := r.System
		if r.SeriesRun > 0 {
			label += fmt.Sprintf(" (run %d)", r.SeriesRun)
		}
		fmt.Fprintf(b, "<polyline class=\"series\" data-system=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.4\" points=\"%s\"><title>%s: %s deliveries/s in the window</title></polyline>\n",
			html.EscapeString(r.System), c, strings.TrimSpace(pts.String()), html.EscapeString(label), thousands(r.DeliveriesPerS))
		names, colors = append(names, label), append(colors, c)
	}
	legend(b, names, colors)
	fmt.Fprintf(b, "<rect class=\"axis\" fill=\"none\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\"/>\n</svg>\n", padL, padT, plotW, plotH)
}

// writeChaosWindows is the chaos row's table of fault windows.
func writeChaosWindows(b *strings.Builder, c *ChaosReport) {
	esc := html.EscapeString
	b.WriteString("<table>\n<tr><th class=\"l\">window</th><th>from s</th><th>to s</th><th>group acked</th><th>direct acked</th>" +
		"<th>expected</th><th>got</th><th>lost</th><th>dups</th><th>out of order</th><th>disconnected</th>" +
		"<th>reconnect → delivery p50 ms</th><th>max ms</th><th>never</th><th>silence max ms</th></tr>\n")
	ms := func(p *float64) string { return optf(p, "%.0f") }
	row := func(w *chaos.Window) {
		from, to := fmt.Sprintf("%.1f", w.FromS), fmt.Sprintf("%.1f", w.ToS)
		if w.Name == "total" {
			from, to = "", fmt.Sprintf("%.1f", c.TrafficS)
		}
		fmt.Fprintf(b, "<tr><td class=\"l\">%s</td><td>%s</td><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%d</td><td>%.0f</td></tr>\n",
			esc(w.Name), from, to, w.GroupAcked, w.DirectAcked, w.Expected, w.Got, w.Lost, w.Duplicates, w.OutOfOrder, w.Disconnected,
			ms(w.ReconnectFirstP50ms), ms(w.ReconnectFirstMaxms), w.Never, w.SilenceMaxms)
	}
	for i := range c.Windows {
		row(&c.Windows[i])
	}
	row(&c.Total)
	b.WriteString("</table>\n")
	for _, ev := range c.Events {
		s := fmt.Sprintf("%s %s (%s): began %.1f s, done %.1f s", ev.Action, ev.Target, ev.Resolved, ev.Began.Seconds(), ev.End.Seconds())
		if ev.Note != "" {
			s += ", " + ev.Note
		}
		if ev.Error != "" {
			s += ", FAILED: " + ev.Error
		}
		fmt.Fprintf(b, "<p class=\"note\">%s</p>\n", esc(s))
	}
}
