// Package chaos is the harness that runs pushring under faults, shared
// by the end-to-end chaos tests and pushbench's chaos scenario: server
// processes that are killed, stopped and restarted with the same command
// line (Daemon); a NATS cluster and pushring nodes made of them
// (Cluster); a fault schedule given as data and the loop that plays it
// (Fault, Play); the clients, a QoS 1 publisher that counts a message as
// sent only when its PUBACK came and members holding persistent sessions
// (Publisher, Member); and the analysis of a run, fault window by fault
// window (Windows, Analyze).
//
// Nothing here knows the testing package: every step returns an error,
// and the caller fails a test or records the error in a report.
package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Daemon is a server process that is killed, stopped and restarted with
// the same command line, so a restart finds its data dir and its ports
// again. Every start appends to one log file. It dies with the process
// that started it (Pdeathsig: a go test timeout, a killed pushbench), so
// no run leaves processes behind. Its methods are called from one
// goroutine at a time (the schedule's).
type Daemon struct {
	Name string
	Bin  string
	Args []string
	// Env is added to the environment, which is this process's without
	// its PUSHRING_* variables: a node is configured by its flags only.
	Env []string
	Log string // the log file, appended to by every start

	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped and not continued since
	told    bool // sent SIGKILL or SIGTERM since its last start: an exit is expected
	starts  int
}

// Start launches the process; it does not wait for it to serve.
func (d *Daemon) Start() error {
	f, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	d.starts++
	fmt.Fprintf(f, "=== start %d of %s\n", d.starts, d.Name)
	cmd := exec.Command(d.Bin, d.Args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHRING_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, d.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(exited) }()
	d.cmd, d.exited, d.stopped, d.told = cmd, exited, false, false
	return nil
}

// Running reports whether the process of the last start has not exited
// (a stopped process is running).
func (d *Daemon) Running() bool {
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Stopped reports whether the process was SIGSTOPped and not continued
// since: it answers nothing.
func (d *Daemon) Stopped() bool { return d.stopped }

// Up reports whether the process runs and is not stopped.
func (d *Daemon) Up() bool { return d.Running() && !d.stopped }

// crashed is an error if the process exited without being told to.
func (d *Daemon) crashed() error {
	if d.cmd == nil || d.Running() || d.told {
		return nil
	}
	return fmt.Errorf("%s exited: %s", d.Name, d.LogTail())
}

// Exited is closed when the process of the last start exits.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// ExitCode is the exit status of the last start's process (-1 while it
// runs or if a signal ended it).
func (d *Daemon) ExitCode() int {
	if d.cmd == nil || d.Running() {
		return -1
	}
	return d.cmd.ProcessState.ExitCode()
}

// Signal sends sig to the running process.
func (d *Daemon) Signal(sig syscall.Signal) error {
	if !d.Running() {
		return fmt.Errorf("%s: %v to a process that is not running", d.Name, sig)
	}
	if err := d.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", d.Name, sig, err)
	}
	switch sig {
	case syscall.SIGSTOP:
		d.stopped = true
	case syscall.SIGCONT:
		d.stopped = false
	case syscall.SIGKILL, syscall.SIGTERM:
		d.told = true
	}
	return nil
}

// WaitExit waits up to within for the process to exit.
func (d *Daemon) WaitExit(within time.Duration) error {
	select {
	case <-d.exited:
		return nil
	case <-time.After(within):
		return fmt.Errorf("%s has not exited %v after it was told to", d.Name, within)
	}
}

// End stops the process if it runs: SIGTERM (after SIGCONT if stopped),
// SIGKILL if it has not exited within 10 s.
func (d *Daemon) End() {
	if !d.Running() {
		return
	}
	d.told = true
	if d.stopped {
		d.cmd.Process.Signal(syscall.SIGCONT)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// LogTail is the last lines of the log (of its last start), on one line.
func (d *Daemon) LogTail() string {
	b, _ := os.ReadFile(d.Log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "=== start") {
			lines = lines[i+1:]
			break
		}
	}
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	return strings.Join(lines, " | ")
}

// GiveUp is an error WaitFor does not wait out.
type GiveUp struct{ Err error }

func (g GiveUp) Error() string { return g.Err.Error() }
func (g GiveUp) Unwrap() error { return g.Err }

// WaitFor calls fn every poll until it returns nil or within passed (then
// its last error); a GiveUp error ends the wait at once.
func WaitFor(within, poll time.Duration, fn func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if g, ok := errors.AsType[GiveUp](err); ok {
			return g.Err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", within, err)
		}
		time.Sleep(poll)
	}
}

// FreeAddr returns a loopback address whose port is free for TCP and UDP
// now (a node's gossip port takes both). It picks below the kernel's
// ephemeral range (32768 and up by default): a port the kernel handed
// out as ephemeral could be taken again, between this check and the
// server's bind, by one of the harness's own outgoing connections. A port
// is never handed out twice by one process: the check does not hold the
// port, so two calls in a row (the ports of one server, or of the
// servers of one cluster) could otherwise pick the same.
func FreeAddr() (string, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if portsGiven[port] {
			continue
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		portsGiven[port] = true
		return addr, nil
	}
	return "", errors.New("no free loopback port in 20000-31999")
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{} // every port FreeAddr returned
)

// shortHTTP has a timeout: a stopped server never answers.
var shortHTTP = &http.Client{Timeout: 2 * time.Second}

// getJSON GETs url, with the admin key as bearer if not empty, wants 200
// and decodes the JSON answer into out (if not nil).
func getJSON(url, bearer string, out any) error {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := shortHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
