// Package testutil holds the few helpers every package's tests share:
// polling instead of sleeping, and a buffer a process may write while the
// test reads it.
package testutil

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// CheckFor polls fn every interval until it returns nil, and fails the
// test with fn's last error if timeout passes first. Use it instead of
// bare sleeps to wait for something asynchronous.
func CheckFor(t testing.TB, timeout, interval time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(interval)
	}
}

// SyncBuffer is an io.Writer that is safe to read while another goroutine
// (or a child process's output copier) writes to it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Contains reports whether sub has been written.
func (s *SyncBuffer) Contains(sub string) bool {
	return strings.Contains(s.String(), sub)
}

// CleanEnv is the environment without PUSHRING_* variables, so the
// caller's settings do not leak into a pushring process under test.
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHRING_") {
			env = append(env, kv)
		}
	}
	return env
}
