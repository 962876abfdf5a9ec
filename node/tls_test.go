package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pushring/pushring/internal/certs"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// tlsFiles is a test CA and the files a node serves TLS with.
type tlsFiles struct {
	ca                     *certs.CA
	roots                  *x509.CertPool
	dir, caFile, cert, key string
}

func newTLSFiles(t *testing.T) *tlsFiles {
	t.Helper()
	ca, err := certs.NewCA("node test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := &tlsFiles{ca: ca, roots: x509.NewCertPool(), dir: dir, caFile: filepath.Join(dir, "ca.pem"),
		cert: filepath.Join(dir, "server.pem"), key: filepath.Join(dir, "server.key")}
	f.roots.AddCert(ca.Cert)
	writeTestFile(t, f.caFile, ca.CertPEM)
	f.issueServer(t)
	return f
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// issueServer replaces the server pair on disk and returns its serial.
func (f *tlsFiles) issueServer(t *testing.T) *big.Int {
	t.Helper()
	c, k, err := f.ca.Server(certs.DevHosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, f.key, k)
	writeTestFile(t, f.cert, c)
	pair, _ := tls.X509KeyPair(c, k)
	return pair.Leaf.SerialNumber
}

// device writes a client certificate for cn and returns its files.
func (f *tlsFiles) device(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	c, k, err := f.ca.Client(cn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(f.dir, "device-"+cn+".pem"), filepath.Join(f.dir, "device-"+cn+".key")
	writeTestFile(t, certFile, c)
	writeTestFile(t, keyFile, k)
	return certFile, keyFile
}

func (f *tlsFiles) clientConfig(t *testing.T, cn string) *tls.Config {
	c := &tls.Config{RootCAs: f.roots, ServerName: "127.0.0.1"}
	if cn != "" {
		pair, err := tls.LoadX509KeyPair(f.device(t, cn))
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

func (f *tlsFiles) configure(c *Config) {
	c.TLSCertFile, c.TLSKeyFile, c.ClientCAFile = f.cert, f.key, f.caFile
	c.MQTTTLSAddr, c.HTTPSAddr = "127.0.0.1:0", "127.0.0.1:0"
}

// TestTLSNode runs a node with TLS: HTTPS login (with the CA; refused
// without it) answers the MQTT-over-TLS address; the stock mosquitto_sub
// over TLS (--cafile) and paho over TLS receive the group messages a
// device publishes with its certificate alone (mosquitto_pub --cert, no
// key); certificates for another id or an unknown id get CONNACK 0x05;
// a certificate replaced on disk and reloaded (SIGHUP's Node.Reload) is
// served to new connections while the old ones stay up and receive.
func TestTLSNode(t *testing.T) {
	sub := needTool(t, "mosquitto_sub")
	pub := needTool(t, "mosquitto_pub")
	f := newTLSFiles(t)
	n := startNode(t, t.TempDir(), f.configure)
	defer n.Close()
	w := setupWorld(t, n)
	if n.MQTTTLSAddr() == "" || n.HTTPSAddr() == "" {
		t.Fatalf("TLS listeners: mqtt %q, https %q", n.MQTTTLSAddr(), n.HTTPSAddr())
	}

	// HTTPS: the same API; a client that does not trust the CA fails.
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.roots}}}
	if _, err := http.Get("https://" + n.HTTPSAddr() + "/healthz"); err == nil {
		t.Error("HTTPS with an untrusted certificate: no error")
	}
	// That refused handshake, and a plaintext request to the HTTPS port,
	// are counted.
	if resp, err := http.Get("http://" + n.HTTPSAddr() + "/healthz"); err == nil {
		resp.Body.Close()
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := testutil.MetricSeries(t, n.Registry(), "pushring_http_tls")["pushring_http_tls_handshake_failures_total"]; got < 2 {
			return fmt.Errorf("%v HTTPS handshake failures counted, want 2", got)
		}
		return nil
	})
	resp, err := https.Post("https://"+n.HTTPSAddr()+"/v1/sessions", "application/json",
		strings.NewReader(`{"id":"alice","password":"alice-velvet-orbit-canyon"}`))
	if err != nil {
		t.Fatal(err)
	}
	var login struct {
		Token   string   `json:"token"`
		MQTT    []string `json:"mqtt"`
		MQTTTLS []string `json:"mqtt_tls"`
	}
	err = json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 201 || login.Token == "" {
		t.Fatalf("HTTPS login: %d %+v %v", resp.StatusCode, login, err)
	}
	if !slices.Equal(login.MQTTTLS, []string{n.MQTTTLSAddr()}) || !slices.Equal(login.MQTT, []string{n.MQTTAddr()}) {
		t.Errorf("login answer mqtt %v mqtt_tls %v; want [%s] [%s]", login.MQTT, login.MQTTTLS, n.MQTTAddr(), n.MQTTTLSAddr())
	}

	// mosquitto_sub over TLS as alice.
	host, port, _ := net.SplitHostPort(n.MQTTTLSAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "--cafile", f.caFile, "-V", "mqttv311", "-q", "1",
		"-i", "alice-mosq", "-u", "alice", "-P", login.Token, "-t", "/private/alice/#", "-v")
	out := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	testutil.CheckFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		if out.Contains(" probe") {
			return nil
		}
		w.api.must(202, "POST", "/v1/users/alice/messages", w.admin, map[string]any{"payload": "probe"}, nil)
		return fmt.Errorf("no probe yet: %q", outputLines(out))
	})

	// paho over TLS as bob, with a token.
	bobLogin := w.api.login("bob", passwordOf("bob"))
	bobGot := &received{}
	opts := mqtt.NewClientOptions().AddBroker("tls://" + n.MQTTTLSAddr()).SetClientID("bob-paho").
		SetUsername("bob").SetPassword(bobLogin.Token).SetTLSConfig(f.clientConfig(t, "")).
		SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4).SetConnectTimeout(5 * time.Second)
	bob := mqtt.NewClient(opts)
	if tok := bob.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho over TLS: %v", tok.Error())
	}
	defer bob.Disconnect(100)
	subscribe(t, bob, "/private/bob/#", 1, bobGot)
	oldServed := n.tls.Leaf().SerialNumber

	// The device publishes with its certificate and no key.
	devCert, devKey := f.device(t, "d1")
	if b, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "--cafile", f.caFile, "--cert", devCert, "--key", devKey,
		"-V", "mqttv311", "-q", "1", "-i", "d1-mosq", "-t", "/group/g1", "-m", "from-cert").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub with a device certificate: %v: %s", err, b)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !out.Contains("/private/alice/group/g1 from-cert") {
			return fmt.Errorf("alice (mosquitto_sub): %q", outputLines(out))
		}
		if !slices.Contains(bobGot.list(), "/private/bob/group/g1 from-cert") {
			return fmt.Errorf("bob (paho): %q", bobGot.list())
		}
		return nil
	})

	// Refusals: username of another principal, unknown id, a user.
	for _, tc := range []struct{ name, cn, user string }{
		{"another id as username", "d1", "alice"},
		{"unknown id", "ghost", ""},
		{"a user's certificate", "carol", ""},
	} {
		c, err := mqttc.DialTCP(n.MQTTTLSAddr(), mqttc.Options{Timeout: 5 * time.Second, TLS: f.clientConfig(t, tc.cn)})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_, code, err := c.Connect(&packet.Connect{ClientID: "x-" + tc.cn, CleanSession: true, Username: tc.user}, 5*time.Second)
		c.Abort()
		if err != nil || code != packet.ConnNotAuthorized {
			t.Errorf("%s: CONNACK %#x, err %v; want 0x05", tc.name, code, err)
		}
	}

	// A new certificate on disk, reloaded as on SIGHUP: new connections
	// get it, the old ones stay and receive.
	next := f.issueServer(t)
	if err := n.Reload(); err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", n.MQTTTLSAddr(), f.clientConfig(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	got := c.ConnectionState().PeerCertificates[0].SerialNumber
	c.Close()
	if got.Cmp(next) != 0 || got.Cmp(oldServed) == 0 {
		t.Fatalf("after Reload the node serves serial %v; want the new %v (old %v)", got, next, oldServed)
	}
	if b, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "--cafile", f.caFile, "--cert", devCert, "--key", devKey,
		"-V", "mqttv311", "-q", "1", "-i", "d1-mosq", "-t", "/group/g1", "-m", "after-reload").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub after the reload: %v: %s", err, b)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !out.Contains("/private/alice/group/g1 after-reload") {
			return fmt.Errorf("alice (mosquitto_sub, connected before the reload): %q", outputLines(out))
		}
		if !slices.Contains(bobGot.list(), "/private/bob/group/g1 after-reload") {
			return fmt.Errorf("bob (paho, connected before the reload): %q", bobGot.list())
		}
		return nil
	})
	// The publishers and probes are gone (or going): the two subscribers
	// stay.
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if v := counter(t, n, "pushring_mqtt_tls_connections", nil); v != 2 {
			return fmt.Errorf("pushring_mqtt_tls_connections = %v, want 2 (mosquitto_sub and paho)", v)
		}
		return nil
	})
}

// TestTLSConfigValidate: the TLS fields are refused in combinations the
// node cannot serve.
func TestTLSConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mod   func(*Config)
	}{
		{"TLSCertFile", func(c *Config) { c.TLSCertFile = "a.pem" }},
		{"ClientCAFile", func(c *Config) { c.ClientCAFile = "ca.pem" }},
		{"MQTTTLSAddr", func(c *Config) { c.MQTTTLSAddr = ":8883" }},
		{"HTTPSAddr", func(c *Config) { c.HTTPSAddr = ":8443" }},
		{"MQTTTLSAddr", func(c *Config) { c.TLSCertFile, c.TLSKeyFile, c.MQTTTLSAddr = "a", "b", "nowhere" }},
		{"AdvertiseMQTTTLS", func(c *Config) { c.AdvertiseMQTTTLS = []string{""} }},
	} {
		cfg := DefaultConfig()
		tc.mod(&cfg)
		if err := testutil.ConfigError(cfg.Validate(), ErrInvalidConfig, "", tc.field); err != nil {
			t.Error(err)
		}
	}
	c := DefaultConfig()
	c.TLSCertFile, c.TLSKeyFile = "a", "b"
	if d := c.withDefaults(); d.MQTTTLSAddr != ":8883" || d.HTTPSAddr != ":8443" {
		t.Errorf("with a certificate: MQTTTLSAddr %q, HTTPSAddr %q", d.MQTTTLSAddr, d.HTTPSAddr)
	}
	c.MQTTTLSAddr, c.HTTPSAddr = "off", "off"
	if err := c.Validate(); err != nil {
		t.Errorf("listeners off: %v", err)
	}
	if d := DefaultConfig().withDefaults(); d.MQTTTLSAddr != "" || d.HTTPSAddr != "" {
		t.Errorf("without a certificate: MQTTTLSAddr %q, HTTPSAddr %q", d.MQTTTLSAddr, d.HTTPSAddr)
	}
}

// fakeListener has the address given; nothing is bound.
type fakeListener struct{ addr net.Addr }

func (fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (fakeListener) Close() error              { return nil }
func (l fakeListener) Addr() net.Addr          { return l.addr }

// TestWarnPlaintext: a plaintext listener that other machines can reach
// is warned about; a loopback one is not.
func TestWarnPlaintext(t *testing.T) {
	for _, tc := range []struct {
		ip   string
		warn bool
	}{{"127.0.0.1", false}, {"::1", false}, {"0.0.0.0", true}, {"10.1.2.3", true}, {"::", true}} {
		var logs testutil.SyncBuffer
		n := &Node{log: slog.New(slog.NewTextHandler(&logs, nil))}
		n.warnPlaintext(fakeListener{&net.TCPAddr{IP: net.ParseIP(tc.ip), Port: 1883}}, "MQTT")
		if got := logs.Contains("level=WARN") && logs.Contains("plaintext MQTT listener"); got != tc.warn {
			t.Errorf("%s: warned %v, want %v (%q)", tc.ip, got, tc.warn, logs.String())
		}
	}
}
