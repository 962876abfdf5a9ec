package node

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// The node serves its API with the configured HTTP limits: the connection
// cap, the read deadline and the login backoff per id are those of
// Config, not defaults of net/http.
func TestHTTPLimitsWired(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.HTTP.MaxConns = 2
		c.HTTP.ReadHeaderTimeout, c.HTTP.ReadTimeout = time.Second, time.Second
		c.LoginAccountFailures = 2
	})
	defer n.Close()
	addr := n.HTTPAddr()
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}

	// Login backoff per id: the third failure in a row is a 429.
	c := newAPI(t, n)
	for i := range 3 {
		want := http.StatusUnauthorized
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		c.must(want, "POST", "/v1/sessions", "", map[string]any{"id": "ghost", "password": "wrong-password"}, nil)
	}
	http.DefaultClient.CloseIdleConnections() // the cap counts keep-alive connections
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := n.api.OpenConns(); got != 0 {
			return fmt.Errorf("%d HTTP connections open, want 0", got)
		}
		return nil
	})

	// A stalled body is cut at the read deadline: the server answers and
	// closes, the client reads EOF.
	stalled := dial()
	if _, err := io.WriteString(stalled, "POST /v1/sessions HTTP/1.1\r\nHost: n1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	idle := dial()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := n.api.OpenConns(); got != 2 {
			return fmt.Errorf("%d HTTP connections open, want 2", got)
		}
		return nil
	})
	over := dial()
	line, err := bufio.NewReader(over).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 503") {
		t.Fatalf("connection over the cap of 2: %q, %v", line, err)
	}
	if got := counter(t, n, "pushring_http_conns_refused_total", nil); got != 1 {
		t.Errorf("refused connections %v, want 1", got)
	}
	start := time.Now()
	if _, err := io.Copy(io.Discard, stalled); err != nil {
		t.Fatalf("stalled request: %v (want the server to close it)", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("stalled request closed after %v, read deadline 1s", el)
	}
	idle.Close()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if got := n.api.OpenConns(); got != 0 {
			return fmt.Errorf("%d HTTP connections open, want 0", got)
		}
		return nil
	})
}
