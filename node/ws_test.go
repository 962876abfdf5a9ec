package node

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/gorilla/websocket"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/packet"
)

// connectWS is connect over MQTT over WebSocket (ws://<http>/mqtt).
func connectWS(t testing.TB, n *Node, o clientOpts, sink *received) mqtt.Client {
	t.Helper()
	return dialWS(t, "ws://"+n.HTTPAddr()+"/mqtt", nil, o, sink)
}

// dialWS connects paho to url (ws:// or wss:// with tc) as o.
func dialWS(t testing.TB, url string, tc *tls.Config, o clientOpts, sink *received) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker(url).SetTLSConfig(tc)
	opts.SetClientID(o.user + "-ws").SetUsername(o.user).SetPassword(o.password)
	opts.SetCleanSession(!o.persistent).SetAutoReconnect(false).SetConnectRetry(false)
	opts.SetProtocolVersion(4).SetConnectTimeout(5 * time.Second)
	if sink != nil {
		opts.SetDefaultPublishHandler(sink.handler)
	}
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", o.user, url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// waitReceived waits until r holds exactly want ("topic payload", in
// order).
func waitReceived(t testing.TB, r *received, want ...string) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := r.list(); !slices.Equal(got, want) {
			return fmt.Errorf("got %q, want %q", got, want)
		}
		return nil
	})
}

// TestMQTTOverWebSocket: paho over ws:// at /mqtt on the HTTP listener,
// with the login token and the device key as over TCP, the ACL as over
// TCP, and group messages reaching members on either transport.
func TestMQTTOverWebSocket(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)

	alice, bob := &received{}, &received{}
	a := connectWS(t, n, clientOpts{user: "alice", password: w.api.login("alice", passwordOf("alice")).Token}, alice)
	if code := subscribe(t, a, "/private/alice/#", 1, alice); code != 1 {
		t.Fatalf("alice over websocket: granted %#x, want 1", code)
	}
	// The ACL holds over WebSocket too: bob's private tree is refused.
	if code := subscribe(t, a, "/private/bob/#", 1, nil); code != 0x80 {
		t.Fatalf("alice subscribing to bob's tree: granted %#x, want 0x80", code)
	}
	b := connect(t, n, clientOpts{user: "bob", password: w.api.login("bob", passwordOf("bob")).Token}, bob)
	subscribe(t, b, "/private/bob/#", 1, bob)

	d1 := connectWS(t, n, clientOpts{user: "d1", password: w.d1Key}, nil)
	for i := range 20 {
		publish(t, d1, "/group/g1", 1, fmt.Sprintf("m%02d", i))
	}
	var wantA, wantB []string
	for i := range 20 {
		wantA = append(wantA, fmt.Sprintf("/private/alice/group/g1 m%02d", i))
		wantB = append(wantB, fmt.Sprintf("/private/bob/group/g1 m%02d", i))
	}
	waitReceived(t, alice, wantA...)
	waitReceived(t, bob, wantB...)
	if got := counter(t, n, "pushring_ws_connections_total", nil); got != 2 {
		t.Fatalf("pushring_ws_connections_total %v, want 2", got)
	}
}

// TestWebSocketRefusals: an upgrade without the mqtt subprotocol or from
// an origin not listed is answered with a JSON error; a text message and
// a message over the size limit close that connection with the
// WebSocket close code for it. Each is counted, and a client on another
// WebSocket connection keeps getting its messages.
func TestWebSocketRefusals(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.WSOrigins = []string{"https://app.example.com"}
		c.Router.MaxPacketSize = 4 << 10
	})
	defer n.Close()
	w := setupWorld(t, n)
	alice := &received{}
	a := connectWS(t, n, clientOpts{user: "alice", password: w.api.login("alice", passwordOf("alice")).Token}, alice)
	subscribe(t, a, "/private/alice/#", 1, alice)
	url := "ws://" + n.HTTPAddr() + "/mqtt"
	refusals := func(reason string) float64 {
		return counter(t, n, "pushring_ws_refusals_total", map[string]string{"reason": reason})
	}

	// No subprotocol: 400, JSON.
	_, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil || resp == nil || resp.StatusCode != 400 {
		t.Fatalf("no subprotocol: err %v, response %v; want 400", err, resp)
	}
	var body struct{ Error struct{ Code string } }
	raw, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(raw, &body) != nil || body.Error.Code != "subprotocol_required" {
		t.Fatalf("no subprotocol: body %q", raw)
	}
	// An origin not listed: 403.
	// Messages leave in one frame each (a larger write buffer than the
	// message): the limit is the server's to find in the frame header.
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}, HandshakeTimeout: 5 * time.Second, WriteBufferSize: 64 << 10}
	_, resp, err = d.Dial(url, http.Header{"Origin": {"https://evil.example.net"}})
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("foreign origin: err %v, response %v; want 403", err, resp)
	}
	if refusals("subprotocol") != 1 || refusals("origin") != 1 {
		t.Fatalf("refusals: subprotocol %v, origin %v; want 1 and 1", refusals("subprotocol"), refusals("origin"))
	}

	// The listed origin gets in; a text message closes it with 1003.
	closedWith := func(c *websocket.Conn) int {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return ce.Code
				}
				t.Fatalf("read: %v, want a close frame", err)
			}
		}
	}
	c, _, err := d.Dial(url, http.Header{"Origin": {"https://app.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if code := closedWith(c); code != websocket.CloseUnsupportedData {
		t.Fatalf("text message: close code %d, want %d", code, websocket.CloseUnsupportedData)
	}
	c.Close()

	// A CONNECT, then a message over the limit: 1009.
	c, _, err = d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	connect := packet.AppendConnect(nil, &packet.Connect{CleanSession: true, ClientID: "d1-big", Username: "d1", Password: []byte(w.d1Key)})
	if err := c.WriteMessage(websocket.BinaryMessage, connect); err != nil {
		t.Fatal(err)
	}
	if _, ack, err := c.ReadMessage(); err != nil || !bytes.Equal(ack, packet.AppendConnack(nil, false, packet.ConnAccepted)) {
		t.Fatalf("CONNACK over websocket: % x, %v", ack, err)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{0x30}, 16<<10)); err != nil {
		t.Fatal(err)
	}
	if code := closedWith(c); code != websocket.CloseMessageTooBig {
		t.Fatalf("oversized message: close code %d, want %d", code, websocket.CloseMessageTooBig)
	}
	c.Close()
	if refusals("text_message") != 1 || refusals("message_too_large") != 1 {
		t.Fatalf("refusals: text %v, too large %v; want 1 and 1", refusals("text_message"), refusals("message_too_large"))
	}

	// Alice, on her own WebSocket, was spared.
	w.api.must(202, "POST", "/v1/users/alice/messages", w.admin, map[string]any{"payload": "still here"}, nil)
	waitReceived(t, alice, "/private/alice still here")
}

// TestMQTTOverSecureWebSocket: /mqtt is served on the HTTPS listener too
// (wss://), with the same login.
func TestMQTTOverSecureWebSocket(t *testing.T) {
	f := newTLSFiles(t)
	n := startNode(t, t.TempDir(), f.configure)
	defer n.Close()
	w := setupWorld(t, n)
	alice := &received{}
	c := dialWS(t, "wss://"+n.HTTPSAddr()+"/mqtt", f.clientConfig(t, ""),
		clientOpts{user: "alice", password: w.api.login("alice", passwordOf("alice")).Token}, alice)
	subscribe(t, c, "/private/alice/#", 1, alice)
	w.api.must(202, "POST", "/v1/users/alice/messages", w.admin, map[string]any{"payload": "over tls"}, nil)
	waitReceived(t, alice, "/private/alice over tls")
}

// TestWebSocketOutlivesHTTPDeadlines: the HTTP server's request deadlines
// do not carry over to an upgraded connection (net/http clears them as it
// hands the connection over; the MQTT server sets its own): a device
// idle on its WebSocket for longer still gets its messages. Devices and
// the admin key only, so no login (a slow password hash) meets the short
// deadlines.
func TestWebSocketOutlivesHTTPDeadlines(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.HTTP.ReadTimeout, c.HTTP.WriteTimeout = 500*time.Millisecond, 500*time.Millisecond
	})
	defer n.Close()
	api, admin := newAPI(t, n), "Bearer "+n.AdminKey()
	var dev struct{ ID, Key string }
	api.must(201, "POST", "/v1/devices", admin, map[string]any{"id": "d1"}, &dev)
	got := &received{}
	d1 := connectWS(t, n, clientOpts{user: "d1", password: dev.Key}, got)
	subscribe(t, d1, "/private/d1/#", 1, got)
	time.Sleep(1500 * time.Millisecond) // three times the deadlines
	api.must(202, "POST", "/v1/users/d1/messages", admin, map[string]any{"payload": "later"}, nil)
	waitReceived(t, got, "/private/d1 later")
}
