package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDaemon: a real process through its life as a schedule drives it:
// stopped and continued, killed and restarted with the same command line
// (one log, a header per start), ended. Its environment lacks this
// process's PUSHRING_* variables but has Env; an exit it was not told to
// make is reported with the log's tail.
func TestDaemon(t *testing.T) {
	t.Setenv("PUSHRING_LEAK", "1")
	dir := t.TempDir()
	d := &Daemon{Name: "sh", Bin: "/bin/sh", Args: []string{"-c", `env | grep -c PUSHRING_ ; echo "mark=$MARK"; exec sleep 60`},
		Env: []string{"MARK=ok"}, Log: filepath.Join(dir, "sh.log")}
	defer d.End()
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if err := WaitFor(10*time.Second, 10*time.Millisecond, func() error {
		if b, _ := os.ReadFile(d.Log); !strings.Contains(string(b), "mark=ok") {
			return os.ErrNotExist
		}
		return nil
	}); err != nil {
		t.Fatal("the process did not write its mark:", err)
	}
	if tail := d.LogTail(); tail != "0 | mark=ok" {
		t.Errorf("log tail %q, want no PUSHRING_ variable and the mark", tail)
	}
	if err := d.Signal(syscall.SIGSTOP); err != nil || !d.Stopped() || d.Up() || !d.Running() {
		t.Fatalf("after SIGSTOP: %v, stopped %v, up %v, running %v", err, d.Stopped(), d.Up(), d.Running())
	}
	if err := d.Signal(syscall.SIGCONT); err != nil || !d.Up() {
		t.Fatalf("after SIGCONT: %v, up %v", err, d.Up())
	}
	if err := d.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitExit(5 * time.Second); err != nil || d.Running() || d.crashed() != nil {
		t.Fatalf("after SIGKILL: %v, running %v, crashed %v", err, d.Running(), d.crashed())
	}
	if err := d.Signal(syscall.SIGTERM); err == nil {
		t.Error("a signal to an exited process was sent")
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	// An exit nobody asked for: what a crash looks like.
	d.cmd.Process.Kill()
	<-d.Exited()
	if err := d.crashed(); err == nil || !strings.Contains(err.Error(), "sh exited") {
		t.Errorf("crashed: %v", err)
	}
	if d.ExitCode() != -1 {
		t.Errorf("exit code %d of a killed process, want -1", d.ExitCode())
	}
	b, _ := os.ReadFile(d.Log)
	if n := strings.Count(string(b), "=== start "); n != 2 {
		t.Errorf("%d start headers in the log, want 2:\n%s", n, b)
	}
}
