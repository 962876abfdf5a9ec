package router

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/mqtt/packet"
)

// proxyV1 is the version 1 header a balancer sends for a client at src.
func proxyV1(src string) []byte {
	ap := netip.MustParseAddrPort(src)
	fam := "TCP4"
	if ap.Addr().Is6() {
		fam = "TCP6"
	}
	dst := "10.0.0.1"
	if fam == "TCP6" {
		dst = "2001:db8::1"
	}
	return []byte("PROXY " + fam + " " + ap.Addr().String() + " " + dst + " " +
		strconv.Itoa(int(ap.Port())) + " 1883\r\n")
}

// proxyV2 is the version 2 header for a client at src (IPv4 or IPv6);
// an invalid src makes a LOCAL header, a balancer's health check.
func proxyV2(src string) []byte {
	b := []byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n'}
	if src == "" {
		return append(b, 0x20, 0x00, 0, 0)
	}
	ap := netip.MustParseAddrPort(src)
	var addrs []byte
	if ap.Addr().Is4() {
		b = append(b, 0x21, 0x11, 0, 12)
		a := ap.Addr().As4()
		addrs = append(append(addrs, a[:]...), 10, 0, 0, 1)
	} else {
		b = append(b, 0x21, 0x21, 0, 36)
		a, d := ap.Addr().As16(), netip.MustParseAddr("2001:db8::1").As16()
		addrs = append(append(addrs, a[:]...), d[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, ap.Port())
	addrs = binary.BigEndian.AppendUint16(addrs, 1883)
	return append(b, addrs...)
}

// dialProxied opens a connection to addr as a balancer does for a client:
// the header first.
func dialProxied(t testing.TB, addr string, header []byte) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := nc.Write(header); err != nil {
		t.Fatal(err)
	}
	return nc
}

func rawProxied(t testing.TB, addr string, header []byte) *rawClient {
	t.Helper()
	return &rawClient{t: t, Conn: mqttc.New(dialProxied(t, addr, header), mqttc.Options{Timeout: 5 * time.Second})}
}

// proxyEnv serves with PROXY protocol from 127.0.0.1, each address
// allowed one connect (no refill within the test), logging into logs.
func proxyEnv(t *testing.T, logs *testutil.SyncBuffer, edit func(*Config)) *env {
	return newEnv(t, func(c *Config) {
		c.ProxyProtocol = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.ConnectRate, c.ConnectBurst = 0.001, 1
		c.Logger = slog.New(slog.NewTextHandler(logs, nil))
		if edit != nil {
			edit(c)
		}
	})
}

// TestProxyProtocol: behind a balancer, every client counts as itself:
// the connect rate per address is spent per client, not per balancer,
// and logs name the client; versions 1 and 2, IPv4 and IPv6, carry
// a paho client's and raw clients' whole sessions; a health check's
// LOCAL header logs in as the balancer.
func TestProxyProtocol(t *testing.T) {
	transports(t, func(t *testing.T, goroutines bool) {
		var logs testutil.SyncBuffer
		e := proxyEnv(t, &logs, func(c *Config) { c.GoroutinePerConn = goroutines })

		// A real client library behind the balancer (version 1).
		alice := &pahoClient{}
		o := pahoOpts(e, "alice", "tok-alice", "alice", true).SetDefaultPublishHandler(alice.handler).
			SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
				nc, err := net.Dial("tcp", u.Host)
				if err == nil {
					_, err = nc.Write(proxyV1("203.0.113.7:50000"))
				}
				return nc, err
			})
		alice.c = mqtt.NewClient(o)
		if tok := alice.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("paho behind a balancer: %v", tok.Error())
		}
		t.Cleanup(func() { alice.c.Disconnect(0) })
		alice.sub(t, "/group/g1", 1)

		// A second connection from the same client is over its connect
		// rate (burst 1): limits count the client, not the balancer.
		again := rawProxied(t, e.addr, proxyV1("203.0.113.7:50001"))
		again.send(connectPacket("bob", "tok-bob", "bob", true, 60))
		again.expectClosed()
		if n := refusals(e, reasonConnectRate); n != 1 {
			t.Fatalf("connect_rate refusals %d, want 1", n)
		}
		testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
			if !logs.Contains("connect rate per address exceeded") || !logs.Contains("remote=203.0.113.7:50001") {
				return fmt.Errorf("no connect-rate line naming the client:\n%s", logs.String())
			}
			return nil
		})

		// Other clients of the same balancer: version 2 over IPv4 and
		// IPv6, and a failed login whose log names its client.
		d1 := rawProxied(t, e.addr, proxyV2("198.51.100.4:40000"))
		d1.send(connectPacket("d1", "tok-d1", "d1", true, 60))
		d1.expectConnack(0)
		bob := rawProxied(t, e.addr, proxyV2("[2001:db8:1::9]:40001"))
		bob.send(connectPacket("bob", "tok-bob", "bob", true, 60))
		bob.expectConnack(0)
		bob.subscribe(1, "/group/g1")
		mallory := rawProxied(t, e.addr, proxyV1("192.0.2.66:666"))
		mallory.send(connectPacket("carol", "wrong", "carol", true, 60))
		mallory.expectConnack(packet.ConnBadCredentials)
		if !logs.Contains("remote=192.0.2.66:666") {
			t.Fatalf("the failed login's line does not name its client:\n%s", logs.String())
		}

		d1.publish(1, 1, "/group/g1", "through the balancer")
		d1.mustRead(packet.PUBACK)
		if got := bob.readPublish(); string(got.Payload) != "through the balancer" {
			t.Fatalf("bob got %q", got.Payload)
		}
		if got := alice.waitMsgs(t, 1); got[0].payload != "through the balancer" {
			t.Fatalf("alice got %v", got)
		}

		// A health check names no client: the balancer's own address
		// stands, so it takes the balancer's one connect.
		hc := rawProxied(t, e.addr, proxyV2(""))
		hc.send(connectPacket("carol", "tok-carol", "carol", true, 60))
		hc.expectConnack(0)
		hc2 := rawProxied(t, e.addr, []byte("PROXY UNKNOWN\r\n"))
		hc2.send(connectPacket("carol", "tok-carol", "carol2", true, 60))
		hc2.expectClosed() // the balancer's address spent its burst
		if n := refusals(e, reasonProxyUntrusted) + refusals(e, reasonProxyHeader); n != 0 {
			t.Fatalf("%d PROXY refusals, want none", n)
		}
	})
}

// TestProxyProtocolRefusals: with PROXY protocol on, a connection from
// outside TrustedProxies, one without a header, one with a bad header and
// one whose header stops half way are closed and counted under their
// reasons, logged at most a line a second, while a proper client behind
// the balancer is served throughout.
func TestProxyProtocolRefusals(t *testing.T) {
	var logs testutil.SyncBuffer
	e := proxyEnv(t, &logs, func(c *Config) {
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		c.ConnectTimeout = 300 * time.Millisecond
		c.ConnectRate, c.ConnectBurst = 1000, 1000
	})
	_, port, _ := net.SplitHostPort(e.addr)
	fromProxy := func(header []byte) net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		nc, err := d.Dial("tcp", "127.0.0.1:"+port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.Write(header)
		return nc
	}
	closed := func(nc net.Conn, what string) {
		t.Helper()
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := nc.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("%s: read %d, %v; want the connection closed", what, n, err)
		}
	}

	// 127.0.0.1 is no trusted proxy: a perfect header does not help.
	stranger := dialProxied(t, e.addr, proxyV1("203.0.113.7:1"))
	closed(stranger, "an untrusted peer")
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := refusals(e, reasonProxyUntrusted); n != 1 {
			return fmt.Errorf("proxy_untrusted %d, want 1", n)
		}
		return nil
	})

	// A health check connects and closes: not counted.
	hc := fromProxy(nil)
	hc.Close()
	closed(fromProxy(connectPacket("alice", "tok-alice", "alice", true, 60)), "a trusted peer without a header")
	closed(fromProxy([]byte("PROXY TCP4 203.0.113.7 10.0.0.1 99999 1883\r\n")), "a bad header")
	closed(fromProxy([]byte("PROXY TCP4 203.0")), "a header that stops")
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := refusals(e, reasonProxyHeader); n != 3 {
			return fmt.Errorf("proxy_header %d, want 3", n)
		}
		return nil
	})
	if n := strings.Count(logs.String(), "connection refused: "); n != 1 {
		t.Fatalf("%d refusal lines within a second, want 1:\n%s", n, logs.String())
	}
	if !logs.Contains("reason=proxy_untrusted") || !logs.Contains("remote=127.0.0.1:") {
		t.Fatalf("the first refusal is not logged with its peer:\n%s", logs.String())
	}

	// The trusted balancer's clients are served.
	alice := &rawClient{t: t, Conn: mqttc.New(fromProxy(proxyV2("203.0.113.7:1")), mqttc.Options{Timeout: 5 * time.Second})}
	alice.send(connectPacket("alice", "tok-alice", "alice", true, 60))
	alice.expectConnack(0)
	if n := refusals(e, reasonProxyHeader); n != 3 {
		t.Fatalf("proxy_header %d at the end, want 3 (the health check is no refusal)", n)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestProxyProtocolTLS: on the TLS listener the header comes before the
// handshake; a client behind it logs in over TLS, and a failed handshake
// is logged with the client's address.
func TestProxyProtocolTLS(t *testing.T) {
	var logs testutil.SyncBuffer
	te := newTLSEnv(t, func(c *Config) {
		c.ProxyProtocol = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	nc := dialProxied(t, te.tlsAddr, proxyV2("203.0.113.50:5000"))
	tc := tls.Client(nc, &tls.Config{RootCAs: te.roots, ServerName: "127.0.0.1"})
	c := &rawClient{t: t, Conn: mqttc.New(tc, mqttc.Options{Timeout: 5 * time.Second})}
	c.send(connectPacket("alice", "tok-alice", "alice", true, 60))
	c.expectConnack(0)

	bad := dialProxied(t, te.tlsAddr, proxyV1("203.0.113.51:5001"))
	bad.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !logs.Contains("TLS handshake failed") || !logs.Contains("remote=203.0.113.51:5001") {
			return fmt.Errorf("no handshake failure naming the client:\n%s", logs.String())
		}
		return nil
	})
	if n := refusals(te.env, reasonProxyUntrusted) + refusals(te.env, reasonProxyHeader); n != 0 {
		t.Fatalf("%d PROXY refusals, want none", n)
	}
}
