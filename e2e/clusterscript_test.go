package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/secretfile"
	"github.com/pushring/pushring/internal/testutil"
)

// TestClusterScriptKeepsSecretsOffCommandLines runs scripts/cluster.sh
// (what `make cluster` runs) and reads the command lines of the three
// nodes it starts from /proc, as any local user could: none holds a
// secret of the cluster dir (admin key, gossip key, NATS seeds, TLS
// keys) or a secret flag, and the nodes form one cluster.
func TestClusterScriptKeepsSecretsOffCommandLines(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three pushring processes")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	binDir := t.TempDir()
	build := exec.Command("go", "build", "-o", binDir+"/", "./cmd/pushring", "./cmd/pushctl")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	off := freeOffset(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "cluster.sh"))
	cmd.Env = append(testutil.CleanEnv(), "BIN="+binDir, "PUSHRING_CLUSTER_DIR="+dir, "PUSHRING_CLUSTER_PORT_OFFSET="+strconv.Itoa(off))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var pids []int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if _, rest, ok := strings.Cut(line, "; pids "); ok {
			for _, f := range strings.Fields(strings.TrimSuffix(rest, ")")) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("pid %q in %q", f, line)
				}
				pids = append(pids, pid)
			}
			break
		}
	}
	go func() { io.Copy(io.Discard, stdout); exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-exited
		for _, pid := range pids { // the script stops its nodes on SIGTERM
			if syscall.Kill(pid, 0) == nil {
				t.Errorf("node pid %d still runs after the script stopped", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			t.Logf("script stderr:\n%s", stderr.String())
			for i := 1; i <= 3; i++ {
				b, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("n%d.log", i)))
				t.Logf("--- n%d.log\n%s", i, tail(b, 2000))
			}
		}
	})
	if len(pids) != 3 {
		t.Fatalf("the script named %d node pids, want 3", len(pids))
	}

	// The cluster works: all three nodes alive in n1's view.
	admin, _, err := secretfile.Lines(filepath.Join(dir, "admin.key"))
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+strconv.Itoa(8080+off)+"/v1/cluster", nil)
		req.Header.Set("Authorization", "Bearer "+admin[0])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var v struct {
			Nodes []struct{ State string } `json:"nodes"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			return err
		}
		alive := 0
		for _, n := range v.Nodes {
			if n.State == "alive" {
				alive++
			}
		}
		if alive != 3 {
			return fmt.Errorf("%d nodes alive, want 3", alive)
		}
		return nil
	})

	// Every secret the cluster dir holds: whole files and each line.
	var secrets []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := d.Name()
		if !strings.HasSuffix(name, ".key") && !strings.HasSuffix(name, ".nk") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") && !strings.HasPrefix(line, "#") {
				secrets = append(secrets, line)
			}
		}
		return nil
	})
	if len(secrets) < 6 { // admin, gossip, 3 seeds, server key, CA key
		t.Fatalf("found %d secrets in the cluster dir, want at least 6", len(secrets))
	}
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatalf("pid %d: %v", pid, err)
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if !strings.HasSuffix(args[0], "pushring") {
			t.Fatalf("pid %d runs %q, not pushring", pid, args[0])
		}
		if secretfile.Contains(raw, secrets...) {
			t.Errorf("pid %d: a secret of the cluster dir is on its command line: %q", pid, args)
		}
		for _, a := range args {
			if a == "--admin-key" || (strings.HasPrefix(a, "nats://") && strings.Contains(a, "@")) {
				t.Errorf("pid %d: secret-bearing argument %q", pid, a)
			}
		}
	}
}

// freeOffset returns a port offset under which every port the cluster
// script binds (MQTT, HTTP, gossip TCP and UDP, TLS, HTTPS, NATS) is free
// on 127.0.0.1 now.
func freeOffset(t *testing.T) int {
	t.Helper()
	base := []int{1883, 8080, 7946, 8883, 8443}
	for range 50 {
		off := 10000 + rand.IntN(20000)
		ok := true
		for _, b := range base {
			for i := range 3 {
				if !portFree(b+off+i) || (b == 7946 && !udpFree(b+off+i)) {
					ok = false
				}
			}
		}
		if ok && portFree(4222+off) {
			return off
		}
	}
	t.Fatal("no free port offset")
	return 0
}

func portFree(p int) bool {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func udpFree(p int) bool {
	u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	u.Close()
	return true
}
