package bench_test

import (
	"testing"
	"time"
)

// runProcs runs pushbench with --procs 2 and args: one result, from two
// worker processes.
func runProcs(t *testing.T, args ...string) smokeResult {
	t.Helper()
	rep, _ := runPushbench(t, 2*time.Minute, 1, append([]string{"--procs", "2"}, args...)...)
	r := rep.Results[0]
	if r.Procs != 2 {
		t.Errorf("procs %d, want 2", r.Procs)
	}
	return r
}

// TestSmokeProcs runs a QoS 1 fanout (1 × 40, 2 s at 200 msgs/s) and an
// idle run (100 clients) with the receiving clients in two worker
// processes (--procs 2): the merged counts hold every delivery once (no
// loss, no duplicates, the series summing to sent × members).
func TestSmokeProcs(t *testing.T) {
	t.Run("fanout", func(t *testing.T) {
		r := runProcs(t, "--scenario", "fanout", "--members", "40", "--qos", "1", "--rate", "200",
			"--duration", "2s", "--warmup", "500ms")
		var all uint64
		for _, n := range r.Series {
			all += n
		}
		switch {
		case r.Scenario != "fanout" || r.QoS != 1 || r.Connections != 41:
			t.Errorf("scenario %q qos %d connections %d", r.Scenario, r.QoS, r.Connections)
		case r.Sent == 0 || r.Deliveries == 0 || r.P99ms <= 0:
			t.Errorf("sent %d, window deliveries %d, p99 %v: nothing measured", r.Sent, r.Deliveries, r.P99ms)
		case !r.lossless():
			t.Error(r.losses())
		case all != r.Sent*40:
			t.Errorf("deliveries over the whole run %d, want sent × members = %d × 40", all, r.Sent)
		case r.Deliveries > all:
			t.Errorf("window deliveries %d > all %d", r.Deliveries, all)
		}
	})
	t.Run("idle", func(t *testing.T) {
		r := runProcs(t, "--scenario", "idle", "--clients", "100", "--settle", "1s")
		switch {
		case r.Scenario != "idle" || r.Connections != 100:
			t.Errorf("scenario %q connections %d", r.Scenario, r.Connections)
		case r.KiBPerConn == nil || *r.KiBPerConn <= 0:
			t.Errorf("kib_per_conn %v, want > 0", r.KiBPerConn)
		}
	})
}
