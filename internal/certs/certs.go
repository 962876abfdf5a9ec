// Package certs serves a PEM certificate and key pair from files to TLS
// listeners and picks up a replaced pair without a restart: the files'
// modification time and size are compared at most once per
// Config.CheckInterval, on a handshake, and Reload (SIGHUP) reads them at
// once. A pair that does not load (half written, key and certificate that
// do not match, a CA file with no certificate) leaves the pair in use in
// place and is logged once, not at every handshake.
//
// With a client CA file, client certificates are requested and, when
// given, verified against it (tls.VerifyClientCertIfGiven): a client with
// no certificate still completes the handshake and logs in with its
// credentials; one whose certificate does not chain to the CA fails the
// handshake.
package certs

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/internal/secretfile"
)

// ErrInvalidConfig is matched by the errors New returns for a Config it
// cannot run with.
var ErrInvalidConfig = errors.New("certs: invalid config")

var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "certs"}

// Config names the files.
type Config struct {
	// CertFile is the PEM certificate chain (leaf first), KeyFile its PEM
	// private key. Both required.
	CertFile string
	KeyFile  string
	// ClientCAFile, if set, is a PEM bundle of the CAs client
	// certificates must chain to. Empty (the default): no client
	// certificate is requested.
	ClientCAFile string
	// CheckInterval is how often, at most, a handshake looks at the
	// files' modification time and size: two stat calls per interval, so
	// a replaced pair is served within about that long with no SIGHUP.
	// Default 1 s.
	CheckInterval time.Duration
	// Logger gets reload results. Nil: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults (no files).
func DefaultConfig() Config { return Config{CheckInterval: time.Second} }

func (c Config) withDefaults() Config {
	c.CheckInterval = cmp.Or(c.CheckInterval, DefaultConfig().CheckInterval)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

func (c Config) validate() error {
	return configerr.First(
		check.If(c.CertFile == "" || c.KeyFile == "", "CertFile and KeyFile must both be set (got %q, %q)", c.CertFile, c.KeyFile),
		configerr.Positive(check, "CheckInterval", c.CheckInterval),
	)
}

// Validate reports the error New would return for c's fields (it does not
// read the files).
func (c Config) Validate() error { return c.withDefaults().validate() }

// stamp identifies one version of the files cheaply.
type stamp [3]struct {
	mod  int64
	size int64
}

// loaded is one version of the files, as served.
type loaded struct {
	st    stamp
	mqtt  *tls.Config // what MQTT handshakes get: the pair, the client CAs
	https *tls.Config // what HTTPS handshakes get: the pair, HTTP/2 by ALPN
	leaf  *x509.Certificate
}

// Files serves the pair; goroutine-safe.
type Files struct {
	cfg       Config
	log       *slog.Logger
	cur       atomic.Pointer[loaded]
	nextCheck atomic.Int64 // unix nanoseconds: no stat before then

	mu         sync.Mutex // serializes loads
	failed     stamp      // the last version that failed to load: logged once
	failLogged bool       // failed is set
}

// New loads the files; an error if they do not load.
func New(cfg Config) (*Files, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	f := &Files{cfg: cfg, log: cfg.Logger.With("component", "tls")}
	st, err := f.stat()
	if err != nil {
		return nil, err
	}
	l, err := f.load(st)
	if err != nil {
		return nil, err
	}
	f.cur.Store(l)
	f.nextCheck.Store(time.Now().Add(cfg.CheckInterval).UnixNano())
	return f, nil
}

// ServerConfig returns the tls.Config for an MQTT listener: TLS 1.2 at
// least, Go's default cipher suites and curves, the current pair and
// client CA chosen at each handshake.
func (f *Files) ServerConfig() *tls.Config {
	return f.listenerConfig(nil, func(l *loaded) *tls.Config { return l.mqtt })
}

// HTTPSConfig is ServerConfig for the HTTPS API: HTTP/2 and HTTP/1.1 by
// ALPN, and no client certificate requested (it proves nothing to the
// API, and browsers would prompt for one).
func (f *Files) HTTPSConfig() *tls.Config {
	return f.listenerConfig(httpsProtos, func(l *loaded) *tls.Config { return l.https })
}

var httpsProtos = []string{"h2", "http/1.1"}

func (f *Files) listenerConfig(protos []string, pick func(*loaded) *tls.Config) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			f.maybeReload()
			return pick(f.cur.Load()), nil
		},
	}
}

// Leaf returns the certificate being served.
func (f *Files) Leaf() *x509.Certificate { return f.cur.Load().leaf }

// Reload reads the files now, whatever their modification time (SIGHUP).
// On error the pair in use stays.
func (f *Files) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.stat()
	if err == nil {
		var l *loaded
		if l, err = f.load(st); err == nil {
			f.failLogged = false
			f.cur.Store(l)
			f.log.Info("TLS certificate reloaded", "file", f.cfg.CertFile, "serial", l.leaf.SerialNumber.String(), "not_after", l.leaf.NotAfter)
			return nil
		}
	}
	return fmt.Errorf("certs: reload (keeping the certificate in use): %w", err)
}

// maybeReload loads the files if CheckInterval has passed since the last
// look and their stamp changed.
func (f *Files) maybeReload() {
	now := time.Now().UnixNano()
	next := f.nextCheck.Load()
	if now < next || !f.nextCheck.CompareAndSwap(next, now+int64(f.cfg.CheckInterval)) {
		return
	}
	st, err := f.stat()
	if err != nil {
		f.mu.Lock()
		f.logFailOnce(stamp{}, err)
		f.mu.Unlock()
		return
	}
	if st == f.cur.Load().st {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == f.cur.Load().st || f.failLogged && st == f.failed {
		return
	}
	l, err := f.load(st)
	if err != nil {
		f.logFailOnce(st, err)
		return
	}
	f.failLogged = false
	f.cur.Store(l)
	f.log.Info("TLS certificate changed on disk, reloaded", "file", f.cfg.CertFile, "serial", l.leaf.SerialNumber.String(), "not_after", l.leaf.NotAfter)
}

// logFailOnce logs a failed load, once per version of the files (a
// zero stamp: the files could not be stat'ed). f.mu held.
func (f *Files) logFailOnce(st stamp, err error) {
	if f.failLogged && st == f.failed {
		return
	}
	f.failed, f.failLogged = st, true
	f.log.Error("TLS certificate files do not load; serving the previous certificate", "file", f.cfg.CertFile, "err", err)
}

func (f *Files) stat() (stamp, error) {
	var st stamp
	for i, name := range []string{f.cfg.CertFile, f.cfg.KeyFile, f.cfg.ClientCAFile} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return st, fmt.Errorf("certs: %w", err)
		}
		st[i].mod, st[i].size = fi.ModTime().UnixNano(), fi.Size()
	}
	return st, nil
}

// load reads the files, stamped st by the caller before reading (a file
// changed meanwhile has a newer stamp and is read again later).
func (f *Files) load(st stamp) (*loaded, error) {
	pair, err := tls.LoadX509KeyPair(f.cfg.CertFile, f.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: %s, %s: %w", f.cfg.CertFile, f.cfg.KeyFile, err)
	}
	if secretfile.Loose(f.cfg.KeyFile) {
		// Whoever read the key can pose as this node to its clients.
		f.log.Warn("TLS key file is readable by group or others; chmod 600 it", "file", f.cfg.KeyFile)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}
	https := c.Clone()
	https.NextProtos = httpsProtos
	if f.cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(f.cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("certs: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("certs: %s holds no PEM certificate", f.cfg.ClientCAFile)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return &loaded{st: st, mqtt: c, https: https, leaf: pair.Leaf}, nil
}

// PeerID returns the identity a verified client certificate proves: its
// Subject Common Name, the field mosquitto's use_identity_as_username
// uses too. "" when the connection has no certificate verified against
// the client CA (none given, or no client CA configured).
func PeerID(cs *tls.ConnectionState) string {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return ""
	}
	return cs.VerifiedChains[0][0].Subject.CommonName
}
