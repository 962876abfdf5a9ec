package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// Report is the JSON output.
type Report struct {
	Machine Machine  `json:"machine"`
	Command []string `json:"command"`
	Results []Result `json:"results"`
}

// WriteJSON writes r to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func optf(p *float64, format string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(format, *p)
}

// WriteTable prints one row per result (with --runs, the median and the
// lowest and highest deliveries/s), with the pushring/row ratio of
// deliveries/s and p99 for each row of the same scenario and QoS (a TLS
// row against pushring's TLS row).
func (r *Report) WriteTable(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	// With --runs, the lowest and highest deliveries/s of the runs follow
	// their median.
	spread := false
	for _, x := range r.Results {
		spread = spread || x.DeliveriesPerSMin != nil
	}
	minMax := func(x *Result) string {
		if !spread {
			return ""
		}
		return optf(x.DeliveriesPerSMin, "%.0f") + "\t" + optf(x.DeliveriesPerSMax, "%.0f") + "\t"
	}
	head := "min deliv/s\tmax deliv/s\t"
	if !spread {
		head = ""
	}
	fmt.Fprintln(tw, "system\tscenario\tqos\tconns\tdeliveries/s\t"+head+"p50 ms\tp90 ms\tp99 ms\tmax ms\tlost\tdups\tsrv CPU s\tsrv RSS MiB\tharness CPU s\tKiB/conn\tpushring/this deliv/s\tpushring/this p99\t")
	for _, x := range r.Results {
		if x.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%d\tfailed\t-\t%s-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", x.System, x.Scenario, x.QoS, minMax(&x))
			continue
		}
		rd, rp := "-", "-"
		for _, p := range r.Results {
			if isPushringRow(p.System, x.System) && p.Error == "" && p.Scenario == x.Scenario && p.QoS == x.QoS {
				if x.DeliveriesPerS > 0 {
					rd = fmt.Sprintf("%.2f", p.DeliveriesPerS/x.DeliveriesPerS)
				}
				if x.P99ms > 0 {
					rp = fmt.Sprintf("%.2f", p.P99ms/x.P99ms)
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.0f\t%s%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%s\t%s\t%.2f\t%s\t%s\t%s\t\n",
			x.System, x.Scenario, x.QoS, x.Connections, x.DeliveriesPerS, minMax(&x), x.P50ms, x.P90ms, x.P99ms, x.Maxms,
			x.Lost, x.Duplicates, optf(x.ServerCPUs, "%.2f"), optf(x.ServerRSSMiB, "%.1f"), x.HarnessCPUs, optf(x.KiBPerConn, "%.2f"), rd, rp)
	}
	tw.Flush()
	for _, x := range r.Results {
		switch {
		case x.Error != "":
			fmt.Fprintf(out, "%s: FAILED: %s\n", x.System, x.Error)
		case x.Note != "":
			fmt.Fprintf(out, "%s: %s\n", x.System, x.Note)
		}
		if x.Error == "" && x.StoredPerPublish != nil {
			fmt.Fprintf(out, "%s: journal: %.3f records and %.0f bytes stored per message published, %s store errors, %s session-record writes per delivery\n",
				x.System, *x.StoredPerPublish, *x.StoredBytesPerPublish, optf(x.StoreErrors, "%.0f"), optf(x.RecordWritesPerDelivery, "%.5f"))
		}
		if x.Error == "" && x.NATSOutPerPublish != nil {
			fmt.Fprintf(out, "%s: NATS: %.2f messages out and %.2f in per message published (the node's connection: appends and acknowledgements, envelopes, KV, API)\n",
				x.System, *x.NATSOutPerPublish, *x.NATSInPerPublish)
		}
		if line := webhookLine(&x); x.Error == "" && line != "" {
			fmt.Fprintln(out, line)
		}
	}
}
