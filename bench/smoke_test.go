package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var build struct {
	once sync.Once
	dir  string
	err  string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// buildBinaries builds cmd/pushring and pushbench once per test binary
// (without -race) and returns their directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "pushbench-smoke-")
		if err != nil {
			build.err = err.Error()
			return
		}
		build.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		for _, pkg := range []string{"cmd/pushring", "bench/cmd/pushbench"} {
			cmd := exec.CommandContext(ctx, "go", "build", "-o", dir, "github.com/pushring/pushring/"+pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				build.err = "go build " + pkg + ": " + err.Error() + "\n" + string(out)
				return
			}
		}
	})
	if build.err != "" {
		t.Fatal(build.err)
	}
	return build.dir
}

// TestSmoke builds cmd/pushring and cmd/pushbench (without -race) and runs
// a short fanout against a node pushbench starts itself, so the harness
// cannot rot. Absolute numbers never gate: only that messages arrive, none
// is lost or duplicated, and the JSON is valid.
// runPushbench runs the built pushbench with --start-pushring (the built
// node) and --json, then args, within timeout, and decodes its JSON into
// rep; it returns the raw JSON for failure messages.
func runPushbench(t *testing.T, timeout time.Duration, rep any, args ...string) []byte {
	t.Helper()
	dir := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out.json")
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "pushbench"),
		append([]string{"--start-pushring", filepath.Join(dir, "pushring"), "--json", out}, args...)...)
	b, err := cmd.CombinedOutput()
	t.Logf("pushbench:\n%s", b)
	if err != nil {
		t.Fatalf("pushbench: %v", err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, rep); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, raw)
	}
	return raw
}

func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries and runs a node")
	}
	report := filepath.Join(t.TempDir(), "report.html")
	var rep struct {
		Machine struct {
			Cores int `json:"cores"`
		} `json:"machine"`
		Results []struct {
			System         string   `json:"system"`
			Scenario       string   `json:"scenario"`
			QoS            int      `json:"qos"`
			DeliveriesPerS float64  `json:"deliveries_per_s"`
			P99ms          float64  `json:"p99_ms"`
			Lost           *uint64  `json:"lost"`
			Duplicates     *uint64  `json:"duplicates"`
			ServerCPUs     *float64 `json:"server_cpu_s"`
			Error          string   `json:"error"`
		} `json:"results"`
	}
	raw := runPushbench(t, 3*time.Minute, &rep,
		"--scenario", "fanout", "--groups", "1", "--members", "50", "--devices", "1",
		"--rate", "200", "--qos", "1", "--duration", "3s", "--warmup", "500ms", "--report", report)
	if st, err := os.Stat(report); err != nil || st.Size() == 0 {
		t.Errorf("--report: %v (%v)", st, err)
	}
	if rep.Machine.Cores < 1 || len(rep.Results) != 1 {
		t.Fatalf("want the machine and one result:\n%s", raw)
	}
	r := rep.Results[0]
	switch {
	case r.Error != "":
		t.Fatalf("result error: %s", r.Error)
	case r.System != "pushring" || r.Scenario != "fanout" || r.QoS != 1:
		t.Errorf("system %q scenario %q qos %d", r.System, r.Scenario, r.QoS)
	case r.DeliveriesPerS <= 0 || r.P99ms <= 0:
		t.Errorf("deliveries/s %v p99 %v ms: nothing measured", r.DeliveriesPerS, r.P99ms)
	case r.Lost == nil || *r.Lost != 0 || r.Duplicates == nil || *r.Duplicates != 0:
		t.Errorf("lost %v duplicates %v, want 0 and 0", r.Lost, r.Duplicates)
	case r.ServerCPUs == nil:
		t.Errorf("no server CPU for a node the harness started")
	}
}

// TestSmokeIdle runs the idle scenario with 100 clients against a node
// pushbench starts: kib_per_conn is measured (> 0) and the JSON is valid.
func TestSmokeIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries and runs a node")
	}
	var rep struct {
		Results []struct {
			System      string   `json:"system"`
			Scenario    string   `json:"scenario"`
			Connections int      `json:"connections"`
			KiBPerConn  *float64 `json:"kib_per_conn"`
			Error       string   `json:"error"`
		} `json:"results"`
	}
	raw := runPushbench(t, time.Minute, &rep,
		"--scenario", "idle", "--clients", "100", "--settle", "1s")
	if len(rep.Results) != 1 {
		t.Fatalf("want one result:\n%s", raw)
	}
	r := rep.Results[0]
	switch {
	case r.Error != "":
		t.Fatalf("result error: %s", r.Error)
	case r.System != "pushring" || r.Scenario != "idle" || r.Connections != 100:
		t.Errorf("system %q scenario %q connections %d", r.System, r.Scenario, r.Connections)
	case r.KiBPerConn == nil || *r.KiBPerConn <= 0:
		t.Errorf("kib_per_conn %v, want > 0", r.KiBPerConn)
	}
}

// TestSmokeDirect runs a 2 s QoS 1 direct scenario (50 users, 2 senders)
// against a node pushbench starts: deliveries, no loss, no duplicates.
func TestSmokeDirect(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries and runs a node")
	}
	var rep struct {
		Results []struct {
			System         string  `json:"system"`
			Scenario       string  `json:"scenario"`
			QoS            int     `json:"qos"`
			Sent           uint64  `json:"sent"`
			DeliveriesPerS float64 `json:"deliveries_per_s"`
			Lost           *uint64 `json:"lost"`
			Duplicates     *uint64 `json:"duplicates"`
			Error          string  `json:"error"`
		} `json:"results"`
	}
	raw := runPushbench(t, time.Minute, &rep,
		"--scenario", "direct", "--users", "50", "--senders", "2",
		"--rate", "200", "--qos", "1", "--duration", "2s", "--warmup", "500ms")
	if len(rep.Results) != 1 {
		t.Fatalf("want one result:\n%s", raw)
	}
	r := rep.Results[0]
	switch {
	case r.Error != "":
		t.Fatalf("result error: %s", r.Error)
	case r.System != "pushring" || r.Scenario != "direct" || r.QoS != 1:
		t.Errorf("system %q scenario %q qos %d", r.System, r.Scenario, r.QoS)
	case r.Sent == 0 || r.DeliveriesPerS <= 0:
		t.Errorf("sent %d deliveries/s %v: nothing measured", r.Sent, r.DeliveriesPerS)
	case r.Lost == nil || *r.Lost != 0 || r.Duplicates == nil || *r.Duplicates != 0:
		t.Errorf("lost %v duplicates %v, want 0 and 0", r.Lost, r.Duplicates)
	}
}
