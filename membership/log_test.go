package membership

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/pushring/pushring/internal/testutil"
)

func TestParseMemberlistLine(t *testing.T) {
	for _, tc := range []struct{ in, level, msg string }{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1234\n", "DEBUG", "Stream connection from=127.0.0.1:1234"},
		{"[WARN] memberlist: Refuting a suspect message (from: n2)\n", "WARN", "Refuting a suspect message (from: n2)"},
		{"[ERR] Failed to shutdown transport: x\n", "ERR", "Failed to shutdown transport: x"},
		{"no level here\r\n", "", "no level here"},
		{"[not a level at all] x", "", "[not a level at all] x"},
		{"", "", ""},
	} {
		level, msg := parseMemberlistLine([]byte(tc.in))
		if level != tc.level || msg != tc.msg {
			t.Errorf("%q: got %q %q, want %q %q", tc.in, level, msg, tc.level, tc.msg)
		}
	}
}

func TestMemberlistLogger(t *testing.T) {
	var buf testutil.SyncBuffer
	l := newMemberlistLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
	l.Printf("[INFO] memberlist: Marking %s as failed", "n3")
	out := buf.String()
	for _, want := range []string{"level=DEBUG", `msg="Marking n3 as failed"`, "ml_level=INFO", "component=memberlist"} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %q", out, want)
		}
	}
	// Above debug, memberlist is silent.
	var quiet testutil.SyncBuffer
	l = newMemberlistLogger(slog.New(slog.NewTextHandler(&quiet, nil)), nil)
	l.Printf("[ERR] memberlist: anything")
	if quiet.String() != "" {
		t.Errorf("logged at info: %q", quiet.String())
	}
}
