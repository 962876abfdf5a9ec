package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// The stalled-body attack on the real binary: 300 connections send the
// headers of a POST announcing a 100,000-byte body and stall. The node's
// open files (/proc/<pid>/fd) rise by at least 300, then return to their
// baseline within the read deadline (set to 1 s through its PUSHRING_*
// variable) plus slack, and /readyz is answered meanwhile.
func TestBinaryStalledBodiesAreCut(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc")
	}
	bin := buildPushring(t)
	httpAddr := freeAddr(t)
	p := startBinary(t, bin, []string{"PUSHRING_HTTP_READ_TIMEOUT=1s", "PUSHRING_LOGIN_RATE=-1"},
		"--data-dir", filepath.Join(t.TempDir(), "data"), "--mqtt-addr", freeAddr(t),
		"--http-addr", httpAddr, "--gossip-addr", "127.0.0.1:0", "--node-id", "bin1", "--http-read-header-timeout", "1s")
	cmd := p.cmd
	fdDir := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/fd"
	fds := func() int {
		ents, err := os.ReadDir(fdDir)
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	ready := func() error { return p.ready(t, client, "http://"+httpAddr+"/readyz") }
	testutil.CheckFor(t, 60*time.Second, 50*time.Millisecond, ready)
	// The node's own files (NATS, gossip, listeners) may move by a few.
	const slack = 8
	base := fds()

	const n = 300
	head := "POST /v1/sessions HTTP/1.1\r\nHost: pushring\r\nContent-Type: application/json\r\n" +
		"Content-Length: 100000\r\n\r\n{\"id\":\"alice\",\"password\":\""
	var wg sync.WaitGroup
	defer wg.Wait()
	for range n {
		c, err := net.Dial("tcp", httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(io.Discard, c)
			c.Close()
		}()
	}
	start := time.Now()
	// On a loaded machine the first connections may be cut before the
	// last is open: half of them held at once shows the attack held files.
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := fds(); got < base+n/2 {
			return fmt.Errorf("node holds %d files, want at least %d during the attack", got, base+n/2)
		}
		return nil
	})
	if err := ready(); err != nil {
		t.Fatalf("during the attack: %v", err)
	}
	testutil.CheckFor(t, 6*time.Second, 20*time.Millisecond, func() error {
		if got := fds(); got > base+slack {
			return fmt.Errorf("node holds %d files, baseline %d", got, base)
		}
		return nil
	})
	t.Logf("node's open files back to baseline %d (+%d) %v after the last of 300 stalled requests was sent (read deadline 1s)",
		base, slack, time.Since(start).Round(time.Millisecond))
}
