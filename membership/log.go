package membership

import (
	"bytes"
	"context"
	"log"
	"log/slog"
)

// slogWriter turns memberlist's log lines ("[LEVEL] memberlist: text",
// one Write per line from a *log.Logger without flags) into slog records
// at debug level. memberlist's own level goes in the "ml_level" attribute:
// memberlist logs routine events of a crash (failed pings, refused
// connections) as WARN and ERR, and this package logs the membership
// changes that matter itself, at info and warn.
type slogWriter struct {
	log *slog.Logger
}

func newMemberlistLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l.With("component", "memberlist")}, "", 0)
}

func (w slogWriter) Write(p []byte) (int, error) {
	if !w.log.Enabled(context.Background(), slog.LevelDebug) {
		return len(p), nil
	}
	level, msg := parseMemberlistLine(p)
	if level == "" {
		w.log.Debug(msg)
	} else {
		w.log.Debug(msg, "ml_level", level)
	}
	return len(p), nil
}

// parseMemberlistLine splits "[WARN] memberlist: text\n" into "WARN" and
// "text". Lines without a level give "" and the whole trimmed line.
func parseMemberlistLine(p []byte) (level, msg string) {
	p = bytes.TrimRight(p, "\r\n")
	if len(p) > 0 && p[0] == '[' {
		if end := bytes.IndexByte(p, ']'); end > 1 && end <= 8 {
			level = string(p[1:end])
			p = bytes.TrimLeft(p[end+1:], " ")
		}
	}
	p = bytes.TrimPrefix(p, []byte("memberlist: "))
	return level, string(p)
}
