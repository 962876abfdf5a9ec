package bench_test

import (
	"testing"
	"time"
)

// TestSmokeWebSocket runs pushbench --ws: a QoS 1 fanout (1 × 40, 2 s at
// 200 msgs/s) whose clients speak MQTT over WebSocket to the node's
// /mqtt, then an idle run whose clients are all in worker processes
// (--procs 2), so the workers' WebSocket path is taken too. Every
// delivery arrives once; the rows are named pushring+ws.
func TestSmokeWebSocket(t *testing.T) {
	t.Run("fanout", func(t *testing.T) {
		rep, _ := runPushbench(t, 2*time.Minute, 1, "--ws", "--scenario", "fanout", "--members", "40", "--qos", "1",
			"--rate", "200", "--duration", "2s", "--warmup", "500ms")
		r := rep.Results[0]
		if r.System != "pushring+ws" || r.Scenario != "fanout" || r.Connections != 41 {
			t.Errorf("system %q scenario %q connections %d", r.System, r.Scenario, r.Connections)
		} else if err := r.fannedOut(40); err != nil {
			t.Error(err)
		}
	})
	t.Run("idle-procs", func(t *testing.T) {
		rep, _ := runPushbench(t, 2*time.Minute, 1, "--ws", "--procs", "2", "--scenario", "idle", "--clients", "60", "--settle", "500ms")
		r := rep.Results[0]
		switch {
		case r.System != "pushring+ws" || r.Connections != 60 || r.Procs != 2:
			t.Errorf("system %q connections %d procs %d", r.System, r.Connections, r.Procs)
		case r.KiBPerConn == nil || *r.KiBPerConn <= 0:
			t.Errorf("kib_per_conn %v, want > 0", r.KiBPerConn)
		}
	})
}
