package bench

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/internal/certs"
)

// --tls runs every system with a TLS listener and points every client at
// it: one throwaway CA per pushbench run (TLSMaterial) signs a server
// certificate for 127.0.0.1 that each server the harness starts gets a
// copy of in its temp dir; the clients, in this process and in worker
// processes, verify it against the CA. Rows of such a run are named
// "<system>+tls" (TLSSuffix) and carry the negotiated version in
// Result.TLS, so a report shows plain and TLS rows side by side.

// TLSSuffix ends the name of a system whose clients speak MQTT over TLS.
const TLSSuffix = "+tls"

// tlsServerName is what the clients verify the certificate against: the
// servers listen on 127.0.0.1 only.
const tlsServerName = "127.0.0.1"

// TLSMaterial is a throwaway CA and a server certificate for 127.0.0.1
// it signed, all PEM, made by NewTLSMaterial.
type TLSMaterial struct {
	CAPEM, CertPEM, KeyPEM []byte
}

// NewTLSMaterial makes a CA and a server certificate for 127.0.0.1,
// valid a day (a run is minutes long; nothing keeps them).
func NewTLSMaterial() (*TLSMaterial, error) {
	ca, err := certs.NewCA("pushbench CA", 24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.Server([]string{tlsServerName}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	return &TLSMaterial{CAPEM: ca.CertPEM, CertPEM: cert, KeyPEM: key}, nil
}

// tlsFiles are the paths writeFiles wrote.
type tlsFiles struct{ ca, cert, key string }

// writeFiles writes the CA, the certificate and its key into dir. The key
// is readable by every local user (0644): mosquitto started as root drops
// to user mosquitto before reading it, and it is a throwaway key in the
// server's temp dir, removed when the server stops.
func (m *TLSMaterial) writeFiles(dir string) (tlsFiles, error) {
	f := tlsFiles{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server.key")}
	for _, w := range []struct {
		path string
		data []byte
	}{{f.ca, m.CAPEM}, {f.cert, m.CertPEM}, {f.key, m.KeyPEM}} {
		if err := os.WriteFile(w.path, w.data, 0o644); err != nil {
			return f, err
		}
		if err := os.Chmod(w.path, 0o644); err != nil { // whatever the umask
			return f, err
		}
	}
	return f, nil
}

// install writes m's files into dir for a server, and returns them with
// the TLS its clients dial with.
func (m *TLSMaterial) install(dir string) (tlsFiles, *clientTLS, error) {
	f, err := m.writeFiles(dir)
	if err != nil {
		return f, nil, err
	}
	ct, err := newClientTLS(m.CAPEM)
	return f, ct, err
}

// clientTLS is what a system's clients dial with. Its methods are safe on
// nil (plain TCP).
type clientTLS struct {
	cfg   *tls.Config
	caPEM string
	// version is the TLS version the last handshake seen here
	// negotiated (by a client of this process, or reported by a
	// worker): the proof the row was measured over TLS.
	version atomic.Uint32
}

// newClientTLS verifies servers against the CA in caPEM, under the name
// 127.0.0.1. No session cache: every client does a full handshake, as a
// device connecting for the first time does.
func newClientTLS(caPEM []byte) (*clientTLS, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("TLS: the CA PEM holds no certificate")
	}
	t := &clientTLS{caPEM: string(caPEM)}
	t.cfg = &tls.Config{
		RootCAs:    pool,
		ServerName: tlsServerName,
		MinVersion: tls.VersionTLS12,
		VerifyConnection: func(cs tls.ConnectionState) error {
			t.version.Store(uint32(cs.Version))
			return nil
		},
	}
	return t, nil
}

// config is the tls.Config for mqttc.Options.TLS (nil: plain TCP).
func (t *clientTLS) config() *tls.Config {
	if t == nil {
		return nil
	}
	return t.cfg
}

// ca is the CA PEM for a worker job ("" for plain TCP).
func (t *clientTLS) ca() string {
	if t == nil {
		return ""
	}
	return t.caPEM
}

// saw records a version a worker negotiated.
func (t *clientTLS) saw(v uint16) {
	if t != nil && v != 0 {
		t.version.Store(uint32(v))
	}
}

// negotiated is Result.TLS: the version name ("TLS 1.3"), "" for plain
// TCP, "no handshake seen" if TLS was configured but no client got
// that far.
func (t *clientTLS) negotiated() string {
	if t == nil {
		return ""
	}
	if v := t.version.Load(); v != 0 {
		return tls.VersionName(uint16(v))
	}
	return "no handshake seen"
}

// lastVersion is the negotiated version as a number (0: none yet), for a
// worker's "connected" answer.
func (t *clientTLS) lastVersion() uint16 {
	if t == nil {
		return 0
	}
	return uint16(t.version.Load())
}

// tlsOf is sys's client TLS, nil if its clients dial plain TCP.
func tlsOf(sys System) *clientTLS {
	if s, ok := sys.(interface{ clientTLS() *clientTLS }); ok {
		return s.clientTLS()
	}
	return nil
}
