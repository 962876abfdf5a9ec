package api

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pushring/pushring/internal/configerr"
)

// HTTPConfig bounds what one HTTP client may hold of the node: how long a
// request may take to arrive and its answer to leave, the size of its
// headers, and how many connections are open at once. Without these, a
// client that sends headers and then stalls its body keeps a goroutine and
// a file descriptor for ever, and a few hundred such clients exhaust the
// node's files. Zero fields take the defaults of DefaultHTTPConfig.
type HTTPConfig struct {
	// ReadHeaderTimeout bounds the time to read a request's headers.
	// Default 10 s: a client on a slow mobile link sends a few hundred
	// bytes of headers in well under a second.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds the time to read a whole request, headers and
	// body. Default 30 s: the largest body (MaxBodyBytes, 1 MiB by
	// default) then needs about 35 KiB/s, which any working link has.
	ReadTimeout time.Duration
	// WriteTimeout bounds the time from the end of the request's headers
	// to the end of the answer. Default 30 s: no route streams; answers
	// are small JSON documents or /metrics, and a client that does not
	// read them must not hold the connection.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request. Default 2 min, the usual load-balancer idle time,
	// so an idle pooled connection is reused rather than cut under a
	// client.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers, in bytes (431
	// above). Default 64 KiB: far above real headers (a few hundred bytes
	// to a few KiB of cookies and tokens), far below Go's 1 MiB default
	// that every open connection may hold.
	MaxHeaderBytes int
	// MaxConns caps the HTTP connections open at once, over every
	// listener given to API.LimitListener; a new connection above it is
	// answered 503 (plain HTTP) or closed (TLS) at once, and counted.
	// Negative: no cap. Default 10,000: a few KiB of memory each when
	// idle, far under the node's file limit, and well above what clients
	// of an API that answers in milliseconds keep open.
	MaxConns int
}

// DefaultHTTPConfig returns the HTTP limits' defaults.
func DefaultHTTPConfig() HTTPConfig {
	return HTTPConfig{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		MaxConns:          10_000,
	}
}

// Validate reports the error New would return for an API Config with
// these HTTP limits: nil if they can run.
func (c HTTPConfig) Validate() error { return c.withDefaults().validate() }

func (c HTTPConfig) withDefaults() HTTPConfig {
	d := DefaultHTTPConfig()
	c.ReadHeaderTimeout = cmp.Or(c.ReadHeaderTimeout, d.ReadHeaderTimeout)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, d.ReadTimeout)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, d.WriteTimeout)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, d.IdleTimeout)
	c.MaxHeaderBytes = cmp.Or(c.MaxHeaderBytes, d.MaxHeaderBytes)
	c.MaxConns = cmp.Or(c.MaxConns, d.MaxConns) // negative stays: no cap
	return c
}

func (c HTTPConfig) validate() error {
	return configerr.First(
		configerr.Positive(check, "HTTP.ReadHeaderTimeout", c.ReadHeaderTimeout),
		configerr.Positive(check, "HTTP.ReadTimeout", c.ReadTimeout),
		configerr.Positive(check, "HTTP.WriteTimeout", c.WriteTimeout),
		configerr.Positive(check, "HTTP.IdleTimeout", c.IdleTimeout),
		configerr.Positive(check, "HTTP.MaxHeaderBytes", c.MaxHeaderBytes),
		check.If(c.MaxHeaderBytes > 16<<20, "HTTP.MaxHeaderBytes must be at most 16 MiB (got %d)", c.MaxHeaderBytes),
	)
}

// NewHTTPServer returns an http.Server that serves a with the limits of
// Config.HTTP. Every listener of the API (HTTP and HTTPS) should be served
// by a server made here, on a listener from LimitListener, so that they
// share the same limits and one connection cap. The server's own error log
// (TLS handshake failures, accept retries) goes to the API's logger at
// debug level: a client can cause one line per connection.
func (a *API) NewHTTPServer() *http.Server {
	h := a.cfg.HTTP
	return &http.Server{
		Handler:           a,
		ReadHeaderTimeout: h.ReadHeaderTimeout,
		ReadTimeout:       h.ReadTimeout,
		WriteTimeout:      h.WriteTimeout,
		IdleTimeout:       h.IdleTimeout,
		MaxHeaderBytes:    h.MaxHeaderBytes,
		ErrorLog:          log.New(serverLog{a}, "", 0),
	}
}

// serverLog receives net/http's own error lines. A client can cause one
// a connection, so they go to the log at debug level; failed TLS
// handshakes (an HTTPS listener's) are also counted and logged at warn at
// most once a minute.
type serverLog struct{ a *API }

func (l serverLog) Write(p []byte) (int, error) {
	tlsFailed := bytes.HasPrefix(p, []byte("http: TLS handshake error"))
	if tlsFailed {
		l.a.met.tlsFailures.Inc()
	}
	// The line is made a string only when a log line will hold it: a
	// flood of failed handshakes costs a counter increment each.
	warn, missed := false, int64(0)
	if tlsFailed {
		warn, missed = l.a.tlsLog.Allow(logEvery)
	}
	debug := l.a.log.Enabled(context.Background(), slog.LevelDebug)
	if !warn && !debug {
		return len(p), nil
	}
	line := string(bytes.TrimSpace(p))
	if warn {
		l.a.log.Warn("api: HTTPS handshake failed (see pushring_http_tls_handshake_failures_total)", "err", line, "since_last_line", missed)
	}
	if debug {
		l.a.log.Debug("http server", "msg", line)
	}
	return len(p), nil
}

// LimitListener wraps ln so that the connections accepted through every
// listener this API wrapped stay at most Config.HTTP.MaxConns. A
// connection over the cap is refused at once, without blocking the accept
// loop: on a plain-HTTP listener (plainHTTP) it gets a minimal 503 JSON
// answer if the socket takes it without waiting, then it is closed; on a
// TLS listener (wrap the TCP listener, then tls.NewListener around it) it
// is closed. Refusals are counted (pushring_http_conns_refused_total) and
// open connections gauged (pushring_http_open_conns).
func (a *API) LimitListener(ln net.Listener, plainHTTP bool) net.Listener {
	return &limitListener{Listener: ln, a: a, plain: plainHTTP}
}

// OpenConns is the number of HTTP connections open through the API's
// limited listeners.
func (a *API) OpenConns() int { return int(a.conns.Load()) }

type limitListener struct {
	net.Listener
	a     *API
	plain bool
	buf   [512]byte // drain buffer for refused connections; Accept's only
}

// busyBody and busyAnswer are what a plain-HTTP connection over the cap
// reads.
const busyBody = `{"error":{"code":"too_many_connections","message":"too many open connections, try again"}}` + "\n"

var busyAnswer = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json; charset=utf-8\r\n" +
	"Retry-After: 1\r\nConnection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(busyBody)) + "\r\n\r\n" + busyBody)

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				// Out of files, most often: http.Server retries, and
				// logs it only at debug level.
				l.a.acceptLog.Warn(l.a.log, logEvery, "api: accepting an HTTP connection failed", "err", err)
			}
			return nil, err
		}
		max := l.a.cfg.HTTP.MaxConns
		if n := l.a.conns.Add(1); max > 0 && n > int64(max) {
			l.a.conns.Add(-1)
			l.refuse(c)
			continue
		}
		l.a.met.openConns.Inc()
		return &limitConn{Conn: c, a: l.a}, nil
	}
}

// refuse answers (plain HTTP) and closes a connection over the cap. The
// socket calls do not wait: a new socket's send buffer is empty, and what
// the client already sent is read away so that the close sends a FIN
// after the answer rather than a reset that could destroy it.
func (l *limitListener) refuse(c net.Conn) {
	l.a.met.connsRefused.Inc()
	l.a.connLog.Warn(l.a.log, logEvery, "api: HTTP connection cap reached, refusing new connections",
		"max_conns", l.a.cfg.HTTP.MaxConns)
	if l.plain {
		refuseAnswer(c, busyAnswer, l.buf[:])
	}
	c.Close()
}

// limitConn gives its slot back once, when it is closed.
type limitConn struct {
	net.Conn
	a    *API
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.a.conns.Add(-1)
		c.a.met.openConns.Dec()
	})
	return err
}

// logEvery: a repeated refusal is logged at most this often.
const logEvery = time.Minute
