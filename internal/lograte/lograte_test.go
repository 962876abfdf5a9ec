package lograte

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAllowOncePerInterval(t *testing.T) {
	var l Limiter
	if ok, missed := l.Allow(time.Hour); !ok || missed != 0 {
		t.Fatalf("first event: %v, %d", ok, missed)
	}
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() { defer wg.Done(); l.Warn(slog.New(slog.DiscardHandler), time.Hour, "x") }()
	}
	wg.Wait()
	if ok, _ := l.Allow(time.Hour); ok {
		t.Fatal("a second line within the interval")
	}
	// Past the interval: one line, carrying the 101 held back.
	if ok, missed := l.Allow(0); !ok || missed != 101 {
		t.Fatalf("after the interval: %v, %d; want true, 101", ok, missed)
	}
}

func TestWarnAddsTheCount(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var l Limiter
	l.Warn(log, time.Hour, "refused", "who", "a")
	l.Warn(log, time.Hour, "refused", "who", "b")
	if out := buf.String(); strings.Count(out, "refused") != 1 || !strings.Contains(out, "who=a since_last_line=0") {
		t.Fatalf("log %q", out)
	}
}
