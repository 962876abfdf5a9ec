package bench_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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

// smokeReport is pushbench's JSON, as the smoke tests read it: their own
// declaration of the field names (not bench.Report's), so a renamed field
// fails here. A field a scenario does not write stays zero or nil.
type smokeReport struct {
	Machine struct {
		Cores int `json:"cores"`
	} `json:"machine"`
	Results []smokeResult `json:"results"`
}

type smokeResult struct {
	System         string   `json:"system"`
	Scenario       string   `json:"scenario"`
	QoS            int      `json:"qos"`
	Members        int      `json:"members"`
	Connections    int      `json:"connections"`
	Procs          int      `json:"procs"`
	TLS            string   `json:"tls"`
	MQTT5          bool     `json:"mqtt5"`
	Sent           uint64   `json:"sent"`
	Deliveries     uint64   `json:"deliveries"`
	DeliveriesPerS float64  `json:"deliveries_per_s"`
	P99ms          float64  `json:"p99_ms"`
	Lost           *uint64  `json:"lost"`
	Duplicates     *uint64  `json:"duplicates"`
	KiBPerConn     *float64 `json:"kib_per_conn"`
	ServerCPUs     *float64 `json:"server_cpu_s"`
	Series         []uint64 `json:"deliveries_series"`
	Error          string   `json:"error"`

	// a burst (--messages), and min and max over --runs
	BurstMessages     int      `json:"burst_messages"`
	BurstS            *float64 `json:"burst_s"`
	DeliveriesPerSMin *float64 `json:"deliveries_per_s_min"`
	DeliveriesPerSMax *float64 `json:"deliveries_per_s_max"`

	// durable QoS 1 (pushring)
	StoredPerPublish *float64 `json:"stored_per_publish"`
	StoreErrors      *float64 `json:"store_errors"`
	Runs             []struct {
		DeliveriesPerS float64  `json:"deliveries_per_s"`
		BurstS         *float64 `json:"burst_s"`
	} `json:"runs"`

	// churn
	Workers      int      `json:"workers"`
	LoginsPerS   *float64 `json:"logins_per_s"`
	LoginP99ms   *float64 `json:"login_p99_ms"`
	ConnectsPerS *float64 `json:"connects_per_s"`
	ConnectP99ms *float64 `json:"connect_p99_ms"`
	Errors       uint64   `json:"errors"`

	// cluster
	Nodes               int      `json:"nodes"`
	EnvelopesPerPublish *float64 `json:"envelopes_per_publish"`
	AcksPerPublish      *float64 `json:"acks_per_publish"`
	ClusterOverSingle   *float64 `json:"cluster_over_single"`
	ClusterNodes        []struct {
		ID      string `json:"id"`
		Members int    `json:"members"`
	} `json:"cluster_nodes"`
}

// lossless reports whether r counted both lost and duplicate messages,
// and none of either.
func (r *smokeResult) lossless() bool {
	return r.Lost != nil && *r.Lost == 0 && r.Duplicates != nil && *r.Duplicates == 0
}

// fannedOut reports the first way r falls short of a fan-out that
// measured something and delivered every message once to each of
// members (0: the whole run's deliveries are not checked), or nil.
func (r *smokeResult) fannedOut(members uint64) error {
	var all uint64
	for _, n := range r.Series {
		all += n
	}
	switch {
	case r.Sent == 0 || r.Deliveries == 0:
		return fmt.Errorf("sent %d, window deliveries %d: nothing measured", r.Sent, r.Deliveries)
	case !r.lossless():
		return errors.New(r.losses())
	case members != 0 && all != r.Sent*members:
		return fmt.Errorf("deliveries over the whole run %d, want sent × members = %d × %d", all, r.Sent, members)
	}
	return nil
}

// losses is what r counted of lost and duplicate messages, for failure
// messages.
func (r *smokeResult) losses() string {
	count := func(p *uint64) string {
		if p == nil {
			return "none counted"
		}
		return strconv.FormatUint(*p, 10)
	}
	return "lost " + count(r.Lost) + ", duplicates " + count(r.Duplicates) + ", want 0 and 0"
}

// runPushbench runs the built pushbench with --start-pushring (the built
// node) and --json, then args, within timeout. It wants n results and
// none of them failed, and returns the report and its raw JSON for
// failure messages. It skips the test under -short.
func runPushbench(t *testing.T, timeout time.Duration, n int, args ...string) (*smokeReport, []byte) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds two binaries and runs pushbench against nodes it starts")
	}
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
	var rep smokeReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, raw)
	}
	if len(rep.Results) != n {
		t.Fatalf("want %d results:\n%s", n, raw)
	}
	for _, r := range rep.Results {
		if r.Error != "" {
			t.Fatalf("%s: result error: %s", r.System, r.Error)
		}
	}
	return &rep, raw
}

// TestSmoke builds cmd/pushring and cmd/pushbench (without -race) and runs
// a short fanout against a node pushbench starts itself, so the harness
// cannot rot. Absolute numbers never gate: only that messages arrive, none
// is lost or duplicated, and the JSON is valid.
func TestSmoke(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report.html")
	rep, raw := runPushbench(t, 3*time.Minute, 1,
		"--scenario", "fanout", "--groups", "1", "--members", "50", "--devices", "1",
		"--rate", "200", "--qos", "1", "--duration", "3s", "--warmup", "500ms", "--report", report)
	if st, err := os.Stat(report); err != nil || st.Size() == 0 {
		t.Errorf("--report: %v (%v)", st, err)
	}
	if rep.Machine.Cores < 1 {
		t.Fatalf("want the machine:\n%s", raw)
	}
	r := rep.Results[0]
	switch {
	case r.System != "pushring" || r.Scenario != "fanout" || r.QoS != 1:
		t.Errorf("system %q scenario %q qos %d", r.System, r.Scenario, r.QoS)
	case r.DeliveriesPerS <= 0 || r.P99ms <= 0:
		t.Errorf("deliveries/s %v p99 %v ms: nothing measured", r.DeliveriesPerS, r.P99ms)
	case !r.lossless():
		t.Error(r.losses())
	case r.ServerCPUs == nil:
		t.Errorf("no server CPU for a node the harness started")
	// One stored copy per QoS 1 publish, not one per member (50 here):
	// every message was stored before its PUBACK and delivered before the
	// drain ended, so the count is the messages sent, give or take the
	// last ones still in flight when the publisher stopped.
	case r.StoredPerPublish == nil || *r.StoredPerPublish < 0.95 || *r.StoredPerPublish > 1.05:
		t.Errorf("stored per publish %v, want 1", r.StoredPerPublish)
	case r.StoreErrors == nil || *r.StoreErrors != 0:
		t.Errorf("store errors %v, want 0", r.StoreErrors)
	}
}

// TestSmokeIdle runs the idle scenario with 100 clients against a node
// pushbench starts: kib_per_conn is measured (> 0) and the JSON is valid.
func TestSmokeIdle(t *testing.T) {
	rep, _ := runPushbench(t, time.Minute, 1,
		"--scenario", "idle", "--clients", "100", "--settle", "1s")
	r := rep.Results[0]
	switch {
	case r.System != "pushring" || r.Scenario != "idle" || r.Connections != 100:
		t.Errorf("system %q scenario %q connections %d", r.System, r.Scenario, r.Connections)
	case r.KiBPerConn == nil || *r.KiBPerConn <= 0:
		t.Errorf("kib_per_conn %v, want > 0", r.KiBPerConn)
	}
}

// TestSmokeDirect runs a 2 s QoS 1 direct scenario (50 users, 2 senders)
// against a node pushbench starts: deliveries, no loss, no duplicates.
func TestSmokeDirect(t *testing.T) {
	rep, _ := runPushbench(t, time.Minute, 1,
		"--scenario", "direct", "--users", "50", "--senders", "2",
		"--rate", "200", "--qos", "1", "--duration", "2s", "--warmup", "500ms")
	r := rep.Results[0]
	switch {
	case r.System != "pushring" || r.Scenario != "direct" || r.QoS != 1:
		t.Errorf("system %q scenario %q qos %d", r.System, r.Scenario, r.QoS)
	case r.Sent == 0 || r.DeliveriesPerS <= 0:
		t.Errorf("sent %d deliveries/s %v: nothing measured", r.Sent, r.DeliveriesPerS)
	case !r.lossless():
		t.Error(r.losses())
	}
}

// TestSmokeBurst runs a QoS 0 burst (--messages 50 into 1 × 40, two runs)
// against a node and mosquitto with persistence (mosquitto-persist, if
// installed): every member gets all 50 messages of each run, deliveries/s
// is over the burst (sent × members deliveries in burst_s), and the row
// carries its runs' lowest and highest deliveries/s.
func TestSmokeBurst(t *testing.T) {
	args := []string{"--scenario", "fanout", "--groups", "1", "--members", "40", "--devices", "1",
		"--qos", "0", "--messages", "50", "--drain", "5s", "--runs", "2"}
	n := 1
	if _, err := exec.LookPath("mosquitto"); err == nil {
		args = append(args, "--baseline", "mosquitto-persist")
		n = 2
	} else if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		args = append(args, "--baseline", "mosquitto-persist")
		n = 2
	}
	rep, raw := runPushbench(t, 2*time.Minute, n, args...)
	want := []string{"pushring", "mosquitto-persist"}[:n]
	for i, r := range rep.Results {
		switch {
		case r.System != want[i] || r.Scenario != "fanout" || r.BurstMessages != 50:
			t.Errorf("system %q scenario %q burst_messages %d, want %q fanout 50", r.System, r.Scenario, r.BurstMessages, want[i])
		case r.Sent != 50 || r.Deliveries != 50*40 || !r.lossless():
			t.Errorf("%s: sent %d deliveries %d, want 50 and 2000; %s", r.System, r.Sent, r.Deliveries, r.losses())
		case len(r.Runs) != 2 || r.DeliveriesPerSMin == nil || r.DeliveriesPerSMax == nil ||
			*r.DeliveriesPerSMin != min(r.Runs[0].DeliveriesPerS, r.Runs[1].DeliveriesPerS) ||
			*r.DeliveriesPerSMax != max(r.Runs[0].DeliveriesPerS, r.Runs[1].DeliveriesPerS):
			t.Errorf("%s: min %v max %v over runs %+v", r.System, r.DeliveriesPerSMin, r.DeliveriesPerSMax, r.Runs)
		}
		for j, x := range r.Runs { // each run's deliveries/s is over its own burst
			if x.BurstS == nil || *x.BurstS <= 0 || math.Abs(x.DeliveriesPerS*(*x.BurstS)-2000) > 1 {
				t.Errorf("%s run %d: deliveries/s %v burst_s %v, want 2000 deliveries in burst_s", r.System, j+1, x.DeliveriesPerS, x.BurstS)
			}
		}
	}
	if t.Failed() {
		t.Logf("%s", raw)
	}
}
