package router

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/certs"
	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// tlsEnv is an env whose server also serves MQTT over TLS, with a server
// certificate and a client CA from a throwaway CA, files on disk.
type tlsEnv struct {
	*env
	tlsAddr           string
	ca                *certs.CA
	roots             *x509.CertPool
	files             *certs.Files
	certFile, keyFile string
}

func newTLSEnv(t *testing.T, edit func(*Config)) *tlsEnv {
	t.Helper()
	e := newEnv(t, edit)
	ca, err := certs.NewCA("router test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	te := &tlsEnv{env: e, ca: ca, roots: x509.NewCertPool(),
		certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server.key")}
	te.roots.AddCert(ca.Cert)
	te.issueServer(t)
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	te.files, err = certs.New(certs.Config{CertFile: te.certFile, KeyFile: te.keyFile, ClientCAFile: caFile,
		CheckInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	te.tlsAddr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- e.srv.ServeTLS(ln, te.files.ServerConfig()) }()
	t.Cleanup(func() {
		e.srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeTLS returned %v", err)
		}
	})
	return te
}

// issueServer writes a new server certificate for 127.0.0.1 and returns
// its serial.
func (te *tlsEnv) issueServer(t *testing.T) *big.Int {
	t.Helper()
	c, k, err := te.ca.Server([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then the certificate, each replaced whole (rename): a
	// reader between the two sees a mismatched pair and keeps the old one.
	for _, f := range []struct {
		path string
		data []byte
	}{{te.keyFile, k}, {te.certFile, c}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber
}

// clientTLS is the config of a client that trusts the CA, presenting
// cert if not nil (whatever CAs the server names).
func (te *tlsEnv) clientTLS(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: te.roots, ServerName: "127.0.0.1"}
	if cert != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return c
}

func clientCert(t *testing.T, ca *certs.CA, cn string) *tls.Certificate {
	t.Helper()
	c, k, err := ca.Client(cn, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &pair
}

func (te *tlsEnv) dial(t *testing.T, cert *tls.Certificate) *rawClient {
	t.Helper()
	c, err := mqttc.DialTCP(te.tlsAddr, mqttc.Options{Timeout: 5 * time.Second, TLS: te.clientTLS(cert)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Abort() })
	return &rawClient{t: t, Conn: c}
}

func (te *tlsEnv) paho(t *testing.T, id string) *pahoClient {
	t.Helper()
	p := &pahoClient{}
	o := mqtt.NewClientOptions().AddBroker("tls://" + te.tlsAddr).SetClientID("paho-" + id).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetUsername(id).SetPassword("tok-" + id).
		SetTLSConfig(te.clientTLS(nil)).SetDefaultPublishHandler(p.handler)
	p.c = mqtt.NewClient(o)
	tok := p.c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("paho over TLS, connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { p.c.Disconnect(0) })
	return p
}

// TestTLSGroupMessages: paho over TLS (token login) receives the group
// messages a raw client over TLS publishes; the TLS connections are
// counted, and the plain listener still works beside it.
func TestTLSGroupMessages(t *testing.T) {
	te := newTLSEnv(t, nil)
	alice := te.paho(t, "alice")
	alice.sub(t, "/group/g1", 1)
	d1 := te.dial(t, nil)
	d1.send(connectPacket("d1", "tok-d1", "d1", true, 60))
	d1.expectConnack(0)
	d1.publish(0, 0, "/group/g1", "over tls qos0")
	d1.publish(1, 7, "/group/g1", "over tls qos1")
	d1.mustRead(packet.PUBACK)
	bob := connectRaw(t, te.env, "bob", "bob", true) // plain TCP
	bob.subscribe(1, "/group/g1")
	d1.publish(0, 0, "/group/g1", "both")
	if p := bob.readPublish(); string(p.Payload) != "both" {
		t.Errorf("plain client got %q", p.Payload)
	}
	got := alice.waitMsgs(t, 3)
	for i, want := range []string{"over tls qos0", "over tls qos1", "both"} {
		if got[i].payload != want || got[i].topic != "/group/g1" {
			t.Errorf("message %d: %+v, want %q", i, got[i], want)
		}
	}
	if st := te.srv.Stats(); st.TLSConnections != 2 || st.Connections != 3 {
		t.Errorf("TLSConnections %d, Connections %d; want 2 and 3", st.TLSConnections, st.Connections)
	}
	d1.Abort()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := te.srv.Stats().TLSConnections; n != 1 {
			return fmt.Errorf("%d TLS connections", n)
		}
		return nil
	})
}

// TestTLSDeviceCertificate: a device whose certificate chains to the
// client CA logs in with it alone (no username and password, or its own
// id as username) and publishes; a certificate for another id than the
// username, for an unknown id or for a user is refused with 0x05; one
// from another CA fails the handshake (counted as an error); a user with
// a certificate and a token still logs in with the token.
func TestTLSDeviceCertificate(t *testing.T) {
	te := newTLSEnv(t, nil)
	te.auth.addDevice("d1")
	bob := te.paho(t, "bob")
	bob.sub(t, "/group/g1", 1)

	d1cert := clientCert(t, te.ca, "d1")
	dev := te.dial(t, d1cert)
	dev.send(packet.AppendConnect(nil, &packet.Connect{ClientID: "dev", CleanSession: true, KeepAlive: 60}))
	dev.expectConnack(0)
	dev.publish(1, 1, "/group/g1", "from a certificate")
	dev.mustRead(packet.PUBACK)
	if got := bob.waitMsgs(t, 1); got[0].payload != "from a certificate" {
		t.Errorf("bob got %+v", got)
	}
	named := te.dial(t, d1cert)
	named.send(packet.AppendConnect(nil, &packet.Connect{ClientID: "dev2", CleanSession: true, Username: "d1"}))
	named.expectConnack(0)

	refused := []struct {
		name string
		cert *tls.Certificate
		user string
	}{
		{"username of another principal", d1cert, "alice"},
		{"unknown id", clientCert(t, te.ca, "ghost"), ""},
		{"a user's certificate", clientCert(t, te.ca, "alice"), ""},
		{"empty common name", clientCert(t, te.ca, ""), ""},
	}
	for _, tc := range refused {
		c := te.dial(t, tc.cert)
		c.send(packet.AppendConnect(nil, &packet.Connect{ClientID: "x", CleanSession: true, Username: tc.user}))
		c.expectConnack(packet.ConnNotAuthorized)
		c.expectClosed()
	}
	// A user with a certificate of its own logs in with its token.
	user := te.dial(t, clientCert(t, te.ca, "alice"))
	user.send(connectPacket("alice", "tok-alice", "alice", true, 60))
	user.expectConnack(0)

	other, err := certs.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := mqttc.DialTCP(te.tlsAddr, mqttc.Options{Timeout: 5 * time.Second, TLS: te.clientTLS(clientCert(t, other, "d1"))})
	if err == nil {
		// TLS 1.3: the client's side of the handshake is done before the
		// server checks its certificate; the refusal comes on the first read.
		var code byte
		_, code, err = c.Connect(&packet.Connect{ClientID: "x", CleanSession: true}, 5*time.Second)
		c.Abort()
		if err == nil {
			t.Errorf("a certificate of another CA got CONNACK %#x", code)
		}
	}
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if st := te.srv.Stats(); st.TLSErrors != 1 {
			return fmt.Errorf("TLS errors %d", st.TLSErrors)
		}
		return nil
	})
	if st := te.srv.Stats(); st.ConnectsOK != 4 || st.ConnectsRefused != uint64(len(refused)) {
		t.Errorf("ConnectsOK %d, refused %d; want 4, %d", st.ConnectsOK, st.ConnectsRefused, len(refused))
	}
}

// TestTLSHandshakeFlood: 50 connections that stall in the handshake and
// 50 that send garbage do not keep a real client from connecting and
// receiving; the stalled ones are cut off at TLSHandshakeTimeout, all
// are counted, and the failures are logged at most once a second.
func TestTLSHandshakeFlood(t *testing.T) {
	var logs testutil.SyncBuffer
	// Long enough for the real clients to be served first on a loaded
	// machine: what is tested is that they need not wait for it.
	const timeout = 4 * time.Second
	te := newTLSEnv(t, func(c *Config) {
		c.TLSHandshakeTimeout = timeout
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	start := time.Now()
	var stalled []net.Conn
	for i := range 100 {
		c, err := net.Dial("tcp", te.tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if i%2 == 0 {
			c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, then nothing
			stalled = append(stalled, c)
		} else {
			c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}
	}
	alice := te.paho(t, "alice")
	alice.sub(t, "/group/g1", 0)
	d1 := te.dial(t, nil)
	d1.send(connectPacket("d1", "tok-d1", "d1", true, 60))
	d1.expectConnack(0)
	d1.publish(0, 0, "/group/g1", "through the flood")
	alice.waitMsgs(t, 1)
	if served := time.Since(start); served >= timeout {
		t.Fatalf("the real clients took %v, not less than the handshake timeout", served)
	}
	if st := te.srv.Stats(); st.TLSTimeouts != 0 {
		t.Fatalf("%d handshakes timed out before the timeout", st.TLSTimeouts)
	}
	testutil.CheckFor(t, 3*timeout, 10*time.Millisecond, func() error {
		if st := te.srv.Stats(); st.TLSTimeouts != 50 || st.TLSErrors != 50 {
			return fmt.Errorf("timeouts %d, errors %d; want 50 and 50", st.TLSTimeouts, st.TLSErrors)
		}
		return nil
	})
	for _, c := range stalled {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("stalled handshake still open (read: %v)", err)
		}
	}
	elapsed := time.Since(start)
	if n := strings.Count(logs.String(), "TLS handshake failed"); n < 1 || n > int(elapsed/time.Second)+2 {
		t.Errorf("%d log lines for 100 failures in %v; want at most one a second", n, elapsed)
	}
	if st := te.srv.Stats(); st.Connections != 2 || st.TLSConnections != 2 {
		t.Errorf("after the flood: %d connections, %d over TLS; want 2", st.Connections, st.TLSConnections)
	}
}

// TestTLSHandshakeCap: with MaxTLSHandshakes stalled handshakes in
// progress, a new TLS connection is closed at once and counted as busy;
// once they time out, a real client is served again.
func TestTLSHandshakeCap(t *testing.T) {
	const max = 4
	reg := prometheus.NewRegistry()
	te := newTLSEnv(t, func(c *Config) {
		c.MaxTLSHandshakes = max
		c.TLSHandshakeTimeout = time.Second
		c.Registerer = reg
	})
	for range max {
		c, err := net.Dial("tcp", te.tlsAddr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, then nothing
	}
	// The stalled ones hold every slot once accepted: a connection then
	// is closed without a byte.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if st := te.srv.Stats(); st.TLSBusy == 0 {
			c, err := net.Dial("tcp", te.tlsAddr)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			c.Read(make([]byte, 1))
			return fmt.Errorf("no busy refusal yet")
		}
		return nil
	})
	if got := testutil.MetricSeries(t, reg, "pushring_mqtt_tls")[`pushring_mqtt_tls_handshake_failures_total{reason="busy"}`]; got < 1 {
		t.Errorf("busy refusals in /metrics: %v", got)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := te.srv.Stats(); st.TLSTimeouts < max {
			return fmt.Errorf("%d stalled handshakes timed out", st.TLSTimeouts)
		}
		return nil
	})
	c := te.dial(t, nil)
	c.send(connectPacket("alice", "tok-alice", "alice", true, 60))
	c.expectConnack(0)
}

// TestTLSCertificateReload: a certificate replaced on disk is served to
// new connections, while a connection made with the old one stays up
// and keeps receiving.
func TestTLSCertificateReload(t *testing.T) {
	te := newTLSEnv(t, nil)
	old := te.dial(t, nil)
	oldSerial := old.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
	old.send(connectPacket("alice", "tok-alice", "alice", true, 60))
	old.expectConnack(0)
	old.subscribe(1, "/group/g1")

	next := te.issueServer(t)
	if next.Cmp(oldSerial) == 0 {
		t.Fatal("same serial")
	}
	testutil.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		c, err := tls.Dial("tcp", te.tlsAddr, te.clientTLS(nil))
		if err != nil {
			return err
		}
		defer c.Close()
		if got := c.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(next) != 0 {
			return fmt.Errorf("served serial %v, want the new %v", got, next)
		}
		return nil
	})
	d1 := te.dial(t, nil)
	if got := d1.NetConn().(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(next) != 0 {
		t.Fatalf("new connection got serial %v, want %v", got, next)
	}
	d1.send(connectPacket("d1", "tok-d1", "d1", true, 60))
	d1.expectConnack(0)
	d1.publish(0, 0, "/group/g1", "after the reload")
	if p := old.readPublish(); string(p.Payload) != "after the reload" {
		t.Errorf("old connection got %q", p.Payload)
	}
}

// TestTLSShutdownDoesNotBlock: a forced close of a TLS connection whose
// peer reads nothing returns at once (it runs under session.mu). Closing
// the *tls.Conn itself would write close_notify into the full socket
// and wait up to 5 s.
func TestTLSShutdownDoesNotBlock(t *testing.T) {
	te := newTLSEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan *tls.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		tc := tls.Server(nc, te.files.ServerConfig())
		if tc.Handshake() != nil {
			close(accepted)
			return
		}
		accepted <- tc
	}()
	client, err := tls.Dial("tcp", ln.Addr().String(), te.clientTLS(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close() // and never reads
	tc := <-accepted
	if tc == nil {
		t.Fatal("handshake failed")
	}
	tr := newTLSTransport(te.srv, tc)
	// Fill both socket buffers under the TLS layer, so the next write
	// blocks without putting the tls.Conn into an error state.
	junk := make([]byte, 64<<10)
	for _, size := range []int{64 << 10, 1 << 10, 1} {
		for {
			tr.raw.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := tr.raw.Write(junk[:size]); err != nil {
				break
			}
		}
	}
	tr.raw.SetWriteDeadline(time.Time{})
	start := time.Now()
	tr.shutdown()
	if took := time.Since(start); took > time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	if _, err := tr.raw.Write([]byte{0}); err == nil {
		t.Error("socket still open after shutdown")
	}
}
