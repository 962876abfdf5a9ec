// Package lograte keeps a repeated event from writing a log line each
// time: a flood of refusals (bad handshakes, locked-out logins, refused
// NATS clients) makes a line now and then, with the count of the events
// it stood for, and costs the others an atomic operation.
package lograte

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// Limiter allows one line per interval. The zero value is ready; it is
// safe for concurrent use.
type Limiter struct {
	last   atomic.Int64 // unix nanoseconds of the last line; 0: none yet
	missed atomic.Int64 // events not logged since then
}

// Allow reports whether a line may be written now, at most one per every,
// and how many events went unlogged since the last line.
func (l *Limiter) Allow(every time.Duration) (ok bool, missed int64) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if last != 0 && now-last < int64(every) || !l.last.CompareAndSwap(last, now) {
		l.missed.Add(1)
		return false, 0
	}
	return true, l.missed.Swap(0)
}

// Warn logs msg with args at warn level if Allow(every) lets it, adding
// the events it stood for as since_last_line.
func (l *Limiter) Warn(log *slog.Logger, every time.Duration, msg string, args ...any) {
	if ok, missed := l.Allow(every); ok {
		log.Warn(msg, append(args, "since_last_line", missed)...)
	}
}
