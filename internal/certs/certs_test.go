package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// servedSerial dials ln with roots and returns the serial of the leaf it
// was served.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool, client *tls.Certificate) (*big.Int, error) {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	if client != nil {
		// Sent whatever CAs the server names (Go would send nothing
		// for a certificate of another CA).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return client, nil }
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// TLS 1.3 reports a refused client certificate on the first read.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

// serveTLS accepts on a loopback listener and completes handshakes.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, cfg)
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				if tc.Handshake() == nil {
					var b [1]byte
					tc.Read(b[:]) // until the client closes
				}
				tc.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// A key file others may read is served, with a warning at each load.
func TestLooseKeyFileWarns(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.Server(DevHosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "s.pem"), filepath.Join(dir, "s.key")
	for _, w := range []struct {
		path string
		b    []byte
		mode os.FileMode
	}{{certFile, c, 0o644}, {keyFile, k, 0o600}} {
		if err := writeFile(w.path, w.b, w.mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o640} {
		if err := os.Chmod(keyFile, mode); err != nil {
			t.Fatal(err)
		}
		var logs testutil.SyncBuffer
		if _, err := New(Config{CertFile: certFile, KeyFile: keyFile, Logger: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
			t.Fatal(err)
		}
		if warned := logs.Contains("TLS key file is readable by group or others"); warned != (mode != 0o600) {
			t.Errorf("key file mode %o: warned %v", mode, warned)
		}
	}
}

// TestReloadOnChange: a pair replaced on disk is served to the next
// handshakes; a broken pair keeps the old one, logged once; Reload reads
// at once and reports a broken pair.
func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	certFile, keyFile := filepath.Join(dir, "s.pem"), filepath.Join(dir, "s.key")
	issue := func() *big.Int {
		c, k, err := ca.Server(DevHosts, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFile(keyFile, k, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := writeFile(certFile, c, 0o644); err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return pair.Leaf.SerialNumber
	}
	first := issue()
	var logs testutil.SyncBuffer
	f, err := New(Config{CertFile: certFile, KeyFile: keyFile, CheckInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cfg := f.ServerConfig()
	addr := serveTLS(t, cfg)
	if got, err := servedSerial(t, addr, roots, nil); err != nil || got.Cmp(first) != 0 {
		t.Fatalf("first handshake: serial %v, err %v; want %v", got, err, first)
	}
	second := issue()
	testutil.CheckFor(t, 5*time.Second, 25*time.Millisecond, func() error {
		got, err := servedSerial(t, addr, roots, nil)
		if err != nil {
			return err
		}
		if got.Cmp(second) != 0 {
			return errors.New("still the old certificate")
		}
		return nil
	})

	// Half a file: the old pair stays, and the failure is logged once
	// however many handshakes follow.
	good, _ := os.ReadFile(certFile)
	if err := os.WriteFile(certFile, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 25*time.Millisecond, func() error {
		servedSerial(t, addr, roots, nil) // files are looked at on handshakes
		if !logs.Contains("do not load") {
			return errors.New("no log line yet")
		}
		return nil
	})
	for range 5 {
		if got, err := servedSerial(t, addr, roots, nil); err != nil || got.Cmp(second) != 0 {
			t.Fatalf("after a broken write: serial %v, err %v; want %v", got, err, second)
		}
		time.Sleep(25 * time.Millisecond) // past CheckInterval: each handshake looks again
	}
	if n := strings.Count(logs.String(), "do not load"); n != 1 {
		t.Errorf("broken pair logged %d times, want once", n)
	}
	if err := f.Reload(); err == nil {
		t.Error("Reload of a broken pair: no error")
	}
	if f.Leaf().SerialNumber.Cmp(second) != 0 {
		t.Error("Reload of a broken pair replaced the certificate")
	}
	third := issue()
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if f.Leaf().SerialNumber.Cmp(third) != 0 {
		t.Error("Reload did not load the new pair")
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", cfg.MinVersion)
	}
}

// TestClientCA: with a client CA, a certificate from it is verified and
// PeerID names its CN; no certificate is fine; one from another CA fails
// the handshake.
func TestClientCA(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteDev(dir, []string{"dev1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{files.CAKey, files.ServerKey, files.Devices["dev1"][1]} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, err %v; want 0600", p, fi.Mode().Perm(), err)
		}
	}
	f, err := New(Config{CertFile: files.ServerCert, KeyFile: files.ServerKey, ClientCAFile: files.CACert})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ids := make(chan string, 3)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, f.ServerConfig())
			tc.SetDeadline(time.Now().Add(5 * time.Second))
			if err := tc.Handshake(); err != nil {
				ids <- "error"
			} else {
				cs := tc.ConnectionState()
				ids <- "id=" + PeerID(&cs)
			}
			tc.Close()
		}
	}()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(mustFile(t, files.CACert))
	dev, err := tls.LoadX509KeyPair(files.Devices["dev1"][0], files.Devices["dev1"][1])
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewCA("other", time.Hour)
	oc, ok, _ := other.Client("dev1", time.Hour)
	stranger, err := tls.X509KeyPair(oc, ok)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		client *tls.Certificate
		want   string
	}{
		{"device certificate", &dev, "id=dev1"},
		{"no certificate", nil, "id="},
		{"certificate of another CA", &stranger, "error"},
	} {
		servedSerial(t, ln.Addr().String(), roots, tc.client)
		if got := <-ids; got != tc.want {
			t.Errorf("%s: server saw %q, want %q", tc.name, got, tc.want)
		}
	}
}

func mustFile(t *testing.T, path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfig(t *testing.T) {
	if err := (Config{}).Validate(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("no files: %v", err)
	}
	if err := (Config{CertFile: "a", KeyFile: "b"}).Validate(); err != nil {
		t.Errorf("files: %v", err)
	}
	if _, err := New(Config{CertFile: "/nonexistent/a", KeyFile: "/nonexistent/b"}); err == nil {
		t.Error("New with missing files: no error")
	}
}
