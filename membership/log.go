package membership

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// slogWriter turns memberlist's log lines ("[LEVEL] memberlist: text",
// one Write per line from a *log.Logger without flags) into slog records
// at debug level. memberlist's own level goes in the "ml_level" attribute:
// memberlist logs routine events of a crash (failed pings, refused
// connections) as WARN and ERR, and this package logs the membership
// changes that matter itself, at info and warn. The lines that report
// gossip no key decrypts go to auth as well, at every level: memberlist
// tells of them only through its log.
type slogWriter struct {
	log  *slog.Logger
	auth *authFailures // nil: not counted
}

func newMemberlistLogger(l *slog.Logger, auth *authFailures) *log.Logger {
	return log.New(slogWriter{l.With("component", "memberlist"), auth}, "", 0)
}

func (w slogWriter) Write(p []byte) (int, error) {
	if w.auth != nil {
		w.auth.line(p)
	}
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

// authLogEvery is how often failures from one source are logged: the
// first is, the next within authLogEvery are only counted, so a flood of
// packets from a node with the wrong key costs one line a minute.
const authLogEvery = time.Minute

// authMaxSources bounds the sources remembered for authLogEvery; past it
// (many sources at once, as from a scan), one line a minute says so.
const authMaxSources = 1024

// The memberlist log lines that report gossip no key of the keyring
// decrypts: UDP packets ("Decrypt packet failed: <err> from=<addr>") and
// TCP streams (push/pull and join: "failed to receive: <err> from=<addr>",
// where err names the encryption: no key decrypts it, it came in clear,
// or it is encrypted and this node has no key).
var (
	linePacket = []byte("Decrypt packet failed:")
	lineStream = []byte("failed to receive:")
	lineCrypt  = []byte("crypt")
	lineFrom   = []byte("from=")
)

// authFailures counts and logs the gossip that failed authentication.
type authFailures struct {
	n   atomic.Uint64
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	last   map[string]time.Time // source host → when last logged
	floods time.Time            // when "many sources" was last logged
}

func newAuthFailures(l *slog.Logger) *authFailures {
	return &authFailures{log: l, now: time.Now, last: map[string]time.Time{}}
}

// line looks at one memberlist log line and records it if it reports a
// failed decryption.
func (a *authFailures) line(p []byte) {
	i := bytes.Index(p, linePacket)
	if i < 0 {
		if i = bytes.Index(p, lineStream); i < 0 || !bytes.Contains(p[i:], lineCrypt) {
			return
		}
	}
	a.n.Add(1)
	msg := bytes.TrimRight(p[i:], "\r\n")
	source := "unknown"
	if j := bytes.LastIndex(msg, lineFrom); j >= 0 {
		addr := msg[j+len(lineFrom):]
		msg = bytes.TrimRight(msg[:j], " ")
		if host, _, err := net.SplitHostPort(string(addr)); err == nil {
			source = host
		} else {
			source = string(addr)
		}
	}
	a.record(source, msg)
}

// record logs a failure from source unless one from there was logged
// within authLogEvery.
func (a *authFailures) record(source string, msg []byte) {
	now := a.now()
	a.mu.Lock()
	if last, ok := a.last[source]; ok && now.Sub(last) < authLogEvery {
		a.mu.Unlock()
		return
	}
	if len(a.last) >= authMaxSources {
		for s, t := range a.last {
			if now.Sub(t) >= authLogEvery {
				delete(a.last, s)
			}
		}
	}
	if len(a.last) >= authMaxSources {
		logIt := now.Sub(a.floods) >= authLogEvery
		if logIt {
			a.floods = now
		}
		a.mu.Unlock()
		if logIt {
			a.log.Warn("gossip failing authentication from many sources: only counted for a minute",
				"sources", authMaxSources, "total", a.n.Load())
		}
		return
	}
	a.last[source] = now
	a.mu.Unlock()
	a.log.Warn("gossip refused: no key of the keyring decrypts it (a node without the cluster's key, or with another one); more from this source are only counted for a minute",
		"source", source, "err", string(msg), "total", a.n.Load())
}
