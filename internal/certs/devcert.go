package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// DevValidity is how long the certificates WriteDev makes are valid: long
// enough for local work, short enough that a leaked throwaway CA stops
// mattering soon.
const DevValidity = 30 * 24 * time.Hour

// CA is a throwaway certificate authority (ECDSA P-256) for development
// and tests.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA makes a self-signed CA named name, valid for validity from now.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := template(name, validity)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// Server issues a server certificate for hosts (IP addresses or DNS
// names); it returns the PEM certificate and key.
func (ca *CA) Server(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	tmpl := template(hosts[0], validity)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tmpl)
}

// Client issues a client certificate whose Subject Common Name is cn.
func (ca *CA) Client(cn string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	tmpl := template(cn, validity)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.issue(tmpl)
}

func (ca *CA) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, err
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

func template(cn string, validity time.Duration) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"pushring dev-cert"}},
		NotBefore:    now.Add(-time.Minute), // tolerate a little clock skew
		NotAfter:     now.Add(validity),
	}
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// DevFiles are the paths WriteDev wrote.
type DevFiles struct {
	Dir        string
	CACert     string               // ca.pem: give it to clients (--cafile) and as --client-ca
	CAKey      string               // ca.key
	ServerCert string               // server.pem (--tls-cert)
	ServerKey  string               // server.key (--tls-key)
	Devices    map[string][2]string // device id → its certificate and key files
}

// DevHosts are the names the development server certificate is valid
// for.
var DevHosts = []string{"127.0.0.1", "::1", "localhost"}

// WriteDev writes a throwaway CA, a server certificate for DevHosts and
// a client certificate for each device (CN = its id) into dir (created,
// mode 0700), valid DevValidity. Keys are written mode 0600. Existing
// files are replaced.
func WriteDev(dir string, devices []string) (DevFiles, error) {
	out := DevFiles{
		Dir:        dir,
		CACert:     filepath.Join(dir, "ca.pem"),
		CAKey:      filepath.Join(dir, "ca.key"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server.key"),
		Devices:    map[string][2]string{},
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return out, err
	}
	ca, err := NewCA("pushring dev CA", DevValidity)
	if err != nil {
		return out, err
	}
	cert, key, err := ca.Server(DevHosts, DevValidity)
	if err != nil {
		return out, err
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{out.CACert, ca.CertPEM, 0o644},
		{out.CAKey, ca.KeyPEM, 0o600},
		{out.ServerCert, cert, 0o644},
		{out.ServerKey, key, 0o600},
	}
	for _, id := range devices {
		if id == "" || filepath.Base(id) != id || id == "." || id == ".." {
			return out, fmt.Errorf("certs: device id %q is not a plain name", id)
		}
		cert, key, err := ca.Client(id, DevValidity)
		if err != nil {
			return out, err
		}
		p := [2]string{filepath.Join(dir, "device-"+id+".pem"), filepath.Join(dir, "device-"+id+".key")}
		out.Devices[id] = p
		files = append(files, struct {
			path string
			data []byte
			mode os.FileMode
		}{p[0], cert, 0o644}, struct {
			path string
			data []byte
			mode os.FileMode
		}{p[1], key, 0o600})
	}
	for _, f := range files {
		if err := writeFile(f.path, f.data, f.mode); err != nil {
			return out, err
		}
	}
	return out, nil
}

// writeFile replaces path atomically (temp file, rename), so a node
// watching it never reads half a file, with mode perm whatever the umask
// and whatever the old file's mode was.
func writeFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
