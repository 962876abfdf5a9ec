package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDevCert: dev-cert writes a CA, a server certificate valid for the
// loopback names and device certificates (CN = id), keys mode 0600,
// valid 30 days, and prints the node's flags; --cacert then trusts that
// CA for an https:// server.
func TestDevCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	out, errOut, code := runCLI(t, "", nil, "", "dev-cert", "--dir", dir, "--device", "d1", "--device", "d2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	tlsDir := filepath.Join(dir, "tls")
	for _, want := range []string{"--tls-cert " + filepath.Join(tlsDir, "server.pem"), "--tls-key " + filepath.Join(tlsDir, "server.key"),
		"--client-ca " + filepath.Join(tlsDir, "ca.pem"), "--cafile", "valid 30 days"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, k := range []string{"ca.key", "server.key", "device-d1.key", "device-d2.key"} {
		fi, err := os.Stat(filepath.Join(tlsDir, k))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", k, err, fi.Mode().Perm())
		}
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(readFile(t, filepath.Join(tlsDir, "ca.pem"))) {
		t.Fatal("ca.pem holds no certificate")
	}
	server := parseCert(t, filepath.Join(tlsDir, "server.pem"))
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := server.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("server certificate for %s: %v", host, err)
		}
	}
	if d := time.Until(server.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("server certificate valid for %v, want 30 days", d)
	}
	for _, id := range []string{"d1", "d2"} {
		c := parseCert(t, filepath.Join(tlsDir, "device-"+id+".pem"))
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil || c.Subject.CommonName != id {
			t.Errorf("device %s: CN %q, verify %v", id, c.Subject.CommonName, err)
		}
	}
	if _, errOut, code := runCLI(t, "", nil, "", "dev-cert", "--dir", dir, "--device", "../x"); code != 2 {
		t.Errorf("--device ../x: exit %d (%s), want 2", code, errOut)
	}

	// --cacert: the API over HTTPS with the dev certificate.
	pair, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "server.pem"), filepath.Join(tlsDir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(&fakeAPI{})
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()
	if _, errOut, code := runCLI(t, srv.URL, nil, "", "cluster"); code == 0 {
		t.Errorf("https without --cacert: exit 0 (%s)", errOut)
	}
	if out, errOut, code := runCLI(t, srv.URL, nil, "", "--cacert", filepath.Join(tlsDir, "ca.pem"), "cluster"); code != 0 || !strings.Contains(out, "n1") {
		t.Errorf("https with --cacert: exit %d: %s %s", code, out, errOut)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parseCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(readFile(t, path))
	if block == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
