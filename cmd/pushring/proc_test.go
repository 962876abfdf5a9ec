package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// The binary tests share one build of this command, made on first use in
// a directory TestMain removes.
var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// buildPushring returns the path of this command, built once.
func buildPushring(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the pushring binary")
	}
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "pushring-bin"); build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "pushring")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", build.bin, ".").CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// binProc is one running pushring process of a test.
type binProc struct {
	cmd    *exec.Cmd
	logs   testutil.SyncBuffer
	exited chan struct{}
	err    error // cmd.Wait's, once exited is closed
}

// startBinary starts bin with args and, added to the environment without
// the caller's PUSHRING_* variables, env. At the end of the test it is
// sent SIGTERM (killed after 15 s) and, if the test failed, its output
// is logged.
func startBinary(t *testing.T, bin string, env []string, args ...string) *binProc {
	t.Helper()
	p := &binProc{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = append(testutil.CleanEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(15 * time.Second):
				p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			t.Logf("pushring output:\n%s", p.logs.String())
		}
	})
	return p
}

// ready returns nil once url answers 200 through c; it fails the test if
// the process has exited.
func (p *binProc) ready(t *testing.T, c *http.Client, url string) error {
	select {
	case <-p.exited:
		t.Fatalf("pushring exited: %v", p.err)
	default:
	}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// waitReady waits up to a minute for url (a /readyz) to answer 200.
func (p *binProc) waitReady(t *testing.T, c *http.Client, url string) {
	t.Helper()
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, func() error { return p.ready(t, c, url) })
}
