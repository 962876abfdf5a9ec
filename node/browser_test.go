package node

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserReceivesGroupMessage: headless Chromium opens a page that
// loads MQTT.js, logs in over HTTP, connects over WebSocket to /mqtt and
// lists what arrives on its private topic; a device's group message
// shows in the page's DOM. The page and MQTT.js come from a test server
// that forwards /v1/ and /mqtt to the node, so the page talks to one
// origin, as behind a site's own reverse proxy.
func TestBrowserReceivesGroupMessage(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (run scripts/deps.sh, as make test does): %v", err)
	}
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	w := setupWorld(t, n)

	node := &url.URL{Scheme: "http", Host: n.HTTPAddr()}
	proxy := httputil.NewSingleHostReverseProxy(node) // forwards WebSocket upgrades too
	mux := http.NewServeMux()
	mux.Handle("/v1/", proxy)
	mux.Handle("/mqtt", proxy)
	mux.HandleFunc("/mqtt.min.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, "testdata/mqttjs/node_modules/mqtt/dist/mqtt.min.js")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, "testdata/browser/index.html")
	})
	site := httptest.NewServer(mux)
	defer site.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	page := site.URL + "/?id=alice&password=" + url.QueryEscape(passwordOf("alice"))
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatalf("page: %v", err)
	}
	// The page logs in, connects and subscribes, then says so.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById("status").textContent !== "loading"`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("page: %v", err)
	}
	status, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("status")))
	if err != nil || status != "subscribed" {
		t.Fatalf("page status %q (%v), want %q", status, err, "subscribed")
	}

	d1 := connect(t, n, clientOpts{user: "d1", password: w.d1Key}, nil)
	publish(t, d1, "/group/g1", 1, "hello, browser")
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#msgs li"))); err != nil {
		t.Fatalf("waiting for the message in the page: %v", err)
	}
	got, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("msgs")))
	if want := "/private/alice/group/g1 hello, browser"; err != nil || strings.TrimSpace(got) != want {
		t.Fatalf("page lists %q (%v), want %q", got, err, want)
	}
	if n := counter(t, n, "pushring_ws_connections_total", nil); n != 1 {
		t.Fatalf("pushring_ws_connections_total %v, want 1 (the page)", n)
	}
}
