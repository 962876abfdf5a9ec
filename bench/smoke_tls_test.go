package bench_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// haveMosquitto reports whether the mosquitto broker is installed where
// pushbench looks for it (scripts/deps.sh installs it in CI).
func haveMosquitto() bool {
	if _, err := exec.LookPath("mosquitto"); err == nil {
		return true
	}
	_, err := os.Stat("/usr/sbin/mosquitto")
	return err == nil
}

// checkTLS fails unless r is a TLS row of system whose clients completed
// a TLS handshake: a client that dialed plain TCP reports no version.
func checkTLS(t *testing.T, r smokeResult, system string) {
	t.Helper()
	if r.System != system+"+tls" {
		t.Errorf("system %q, want %q", r.System, system+"+tls")
	}
	if !strings.HasPrefix(r.TLS, "TLS 1.") {
		t.Errorf("%s: tls %q, want the negotiated version (TLS 1.x)", r.System, r.TLS)
	}
}

// TestSmokeTLS runs pushbench --tls: a QoS 1 fanout (1 × 40, 2 s at
// 200 msgs/s) against a node and mosquitto (when installed) serving MQTT
// over TLS with the harness's throwaway certificate, and an idle run whose
// clients are all in worker processes (--procs 2), so the TLS path of the
// workers is taken too. Every delivery arrives once, and each row names
// the TLS version its clients negotiated.
func TestSmokeTLS(t *testing.T) {
	t.Run("fanout", func(t *testing.T) {
		args := []string{"--tls", "--scenario", "fanout", "--members", "40", "--qos", "1", "--rate", "200",
			"--duration", "2s", "--warmup", "500ms"}
		systems := []string{"pushring"}
		if haveMosquitto() {
			args = append(args, "--baseline", "mosquitto")
			systems = append(systems, "mosquitto")
		} else {
			t.Log("mosquitto not installed: pushring only")
		}
		rep, _ := runPushbench(t, 2*time.Minute, len(systems), args...)
		for i, r := range rep.Results {
			checkTLS(t, r, systems[i])
			var all uint64
			for _, n := range r.Series {
				all += n
			}
			switch {
			case r.Scenario != "fanout" || r.QoS != 1 || r.Connections != 41:
				t.Errorf("%s: scenario %q qos %d connections %d", r.System, r.Scenario, r.QoS, r.Connections)
			case r.Sent == 0 || r.Deliveries == 0 || r.P99ms <= 0:
				t.Errorf("%s: sent %d, window deliveries %d, p99 %v: nothing measured", r.System, r.Sent, r.Deliveries, r.P99ms)
			case !r.lossless():
				t.Errorf("%s: %s", r.System, r.losses())
			case all != r.Sent*40:
				t.Errorf("%s: deliveries over the whole run %d, want sent × members = %d × 40", r.System, all, r.Sent)
			}
		}
	})
	t.Run("idle-procs", func(t *testing.T) {
		rep, _ := runPushbench(t, 2*time.Minute, 1, "--tls", "--procs", "2", "--scenario", "idle", "--clients", "60", "--settle", "500ms")
		r := rep.Results[0]
		checkTLS(t, r, "pushring")
		switch {
		case r.Scenario != "idle" || r.Connections != 60 || r.Procs != 2:
			t.Errorf("scenario %q connections %d procs %d", r.Scenario, r.Connections, r.Procs)
		case r.KiBPerConn == nil || *r.KiBPerConn <= 0:
			t.Errorf("kib_per_conn %v, want > 0", r.KiBPerConn)
		}
	})
}
