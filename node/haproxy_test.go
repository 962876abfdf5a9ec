package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/ws"
)

// haproxyConfig is the README's configuration for running behind
// HAProxy: MQTT with PROXY protocol (version 1 on one port, 2 on
// another, as an AWS NLB sends) and the HTTP API with X-Forwarded-For.
const haproxyConfig = `global
  maxconn 2000
defaults
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend mqtt_v1
  mode tcp
  bind %[1]s
  default_backend pushring_mqtt_v1
backend pushring_mqtt_v1
  mode tcp
  server n1 %[4]s send-proxy
frontend mqtt_v2
  mode tcp
  bind %[2]s
  default_backend pushring_mqtt_v2
backend pushring_mqtt_v2
  mode tcp
  server n1 %[4]s send-proxy-v2
frontend api
  mode http
  bind %[3]s
  option forwardfor
  default_backend pushring_api
backend pushring_api
  mode http
  server n1 %[5]s
`

// from dials from a source address of its own, as a distinct client host.
func from(src string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
}

// TestBehindHAProxy runs a node behind a real HAProxy configured as the
// README shows. Clients on their own loopback addresses reach MQTT
// through PROXY protocol versions 1 and 2 and the API through
// X-Forwarded-For, MQTT over WebSocket as well; the node's logs name
// each client, not the balancer,
// and a client that bypasses the balancer is refused.
func TestBehindHAProxy(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		bin = "/usr/sbin/haproxy" // not on every PATH
		if _, serr := os.Stat(bin); serr != nil {
			needTool(t, "haproxy")
		}
	}
	var logs testutil.SyncBuffer
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c.Router.ProxyProtocol = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	defer n.Close()
	w := setupWorld(t, n)

	v1, v2, api := freeLoopback(t), freeLoopback(t), freeLoopback(t)
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, haproxyConfig, v1, v2, api, n.MQTTAddr(), n.HTTPAddr()), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hp := exec.CommandContext(ctx, bin, "-db", "-f", cfg)
	var hpOut testutil.SyncBuffer
	hp.Stdout, hp.Stderr = &hpOut, &hpOut
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); hp.Wait() }()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for _, a := range []string{v1, v2, api} {
			c, err := net.Dial("tcp", a)
			if err != nil {
				return fmt.Errorf("haproxy not listening on %s: %v\n%s", a, err, hpOut.String())
			}
			c.Close()
		}
		return nil
	})

	// The API through the balancer: a failed login is logged with the
	// client's address, a good one works.
	hc := &http.Client{Transport: &http.Transport{DialContext: from("127.0.0.5").DialContext}}
	resp, err := hc.Post("http://"+api+"/v1/sessions", "application/json",
		strings.NewReader(`{"id":"alice","password":"not-her-password-at-all"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong password through HAProxy: %d, want 401", resp.StatusCode)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !logs.Contains("remote=127.0.0.5") {
			return fmt.Errorf("the API refusal does not name the client:\n%s", logs.String())
		}
		return nil
	})
	resp, err = hc.Post("http://"+api+"/v1/sessions", "application/json",
		strings.NewReader(`{"id":"alice","password":"`+passwordOf("alice")+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("login through HAProxy: %d, want 201", resp.StatusCode)
	}

	// MQTT through version 1 (alice) and version 2 (the device).
	mqttVia := func(front, src, user, password string, sink *received) (mqtt.Client, error) {
		o := mqtt.NewClientOptions().AddBroker("tcp://" + front).SetClientID(user + "-lb").
			SetUsername(user).SetPassword(password).SetCleanSession(true).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
			SetDialer(from(src))
		if sink != nil {
			o.SetDefaultPublishHandler(sink.handler)
		}
		c := mqtt.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			return nil, fmt.Errorf("connect timed out")
		}
		if tok.Error() != nil {
			return nil, tok.Error()
		}
		t.Cleanup(func() { c.Disconnect(100) })
		return c, nil
	}
	var got received
	alice, err := mqttVia(v1, "127.0.0.5", "alice", w.api.login("alice", passwordOf("alice")).Token, &got)
	if err != nil {
		t.Fatalf("alice through PROXY v1: %v", err)
	}
	subscribe(t, alice, "/private/alice/#", 1, &got)
	d1, err := mqttVia(v2, "127.0.0.6", "d1", w.d1Key, nil)
	if err != nil {
		t.Fatalf("d1 through PROXY v2: %v", err)
	}
	if tok := d1.Publish("/group/g1", 1, false, "via haproxy"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if l := got.list(); len(l) != 1 || !strings.HasSuffix(l[0], "via haproxy") {
			return fmt.Errorf("alice got %v", l)
		}
		return nil
	})
	if _, err := mqttVia(v2, "127.0.0.7", "bob", "wrong-password-here", nil); err == nil {
		t.Fatal("a wrong password through HAProxy logged in")
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !logs.Contains("mqtt: connection refused") || !logs.Contains("remote=127.0.0.7:") {
			return fmt.Errorf("the MQTT refusal does not name the client:\n%s", logs.String())
		}
		return nil
	})

	// MQTT over WebSocket through the HTTP frontend: the balancer's
	// X-Forwarded-For names the client to the MQTT server as well.
	wsOpts := mqtt.NewClientOptions().AddBroker("ws://" + api + "/mqtt").SetClientID("ws-lb").
		SetUsername("carol").SetPassword("not-a-token").SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return ws.Dial(context.Background(), u.String(), nil, "127.0.0.9") // paho's own ignores the source address
		})
	if tok := mqtt.NewClient(wsOpts).Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() == nil {
		t.Fatalf("a bad token over WebSocket through HAProxy: %v, want refused", tok.Error())
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !logs.Contains("remote=127.0.0.9:0") {
			return fmt.Errorf("the WebSocket refusal does not name the client:\n%s", logs.String())
		}
		return nil
	})

	// Around the balancer: refused.
	if _, err := mqttVia(n.MQTTAddr(), "127.0.0.8", "bob", w.api.login("bob", passwordOf("bob")).Token, nil); err == nil {
		t.Fatal("a client that bypassed the balancer logged in")
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !logs.Contains("reason=proxy_untrusted remote=127.0.0.8:") {
			return fmt.Errorf("no proxy_untrusted refusal for the direct client:\n%s", logs.String())
		}
		return nil
	})
}
