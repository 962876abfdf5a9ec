package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestClientAddr: forwarded headers count only from a trusted proxy, and
// then name the rightmost address that is not a trusted proxy itself;
// a header that does not parse leaves the peer's address.
func TestClientAddr(t *testing.T) {
	a := &API{log: slog.New(slog.DiscardHandler), cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}}
	for _, c := range []struct {
		peer    string
		headers map[string]string
		want    string
	}{
		{"192.0.2.7:5000", map[string]string{"X-Forwarded-For": "198.51.100.1"}, "192.0.2.7:5000"}, // not a proxy: ignored
		{"10.1.2.3:5000", nil, "10.1.2.3:5000"},
		{"10.1.2.3:5000", map[string]string{"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"},
		{"10.1.2.3:5000", map[string]string{"X-Forwarded-For": "6.6.6.6, 198.51.100.1"}, "198.51.100.1"},   // the client wrote 6.6.6.6
		{"10.1.2.3:5000", map[string]string{"X-Forwarded-For": "198.51.100.1, 10.9.9.9"}, "198.51.100.1"},  // two proxies
		{"10.1.2.3:5000", map[string]string{"X-Forwarded-For": "10.8.8.8, 10.9.9.9"}, "10.8.8.8"},          // all proxies: the first
		{"10.1.2.3:5000", map[string]string{"X-Forwarded-For": "nonsense, 198.51.100.1"}, "10.1.2.3:5000"}, // unparsable
		{"10.1.2.3:5000", map[string]string{"Forwarded": `for=198.51.100.2;proto=https`}, "198.51.100.2"},
		{"10.1.2.3:5000", map[string]string{"Forwarded": `for="[2001:db8::1]:4711", for=10.9.9.9`}, "2001:db8::1"},
		{"10.1.2.3:5000", map[string]string{"Forwarded": `For="198.51.100.3:80"`, "X-Forwarded-For": "6.6.6.6"}, "198.51.100.3"}, // Forwarded wins
		{"10.1.2.3:5000", map[string]string{"Forwarded": `for=unknown`}, "10.1.2.3:5000"},
		{"[fd00::5]:5000", map[string]string{"X-Forwarded-For": "::ffff:198.51.100.4"}, "198.51.100.4"},
	} {
		r := &http.Request{RemoteAddr: c.peer, Header: http.Header{}}
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		if got := a.clientAddr(r); got != c.want {
			t.Errorf("peer %s, %v: %q, want %q", c.peer, c.headers, got, c.want)
		}
	}
	// Without trusted proxies, headers never count.
	r := &http.Request{RemoteAddr: "10.1.2.3:5000", Header: http.Header{"X-Forwarded-For": {"198.51.100.1"}}}
	if got := (&API{log: a.log}).clientAddr(r); got != "10.1.2.3:5000" {
		t.Errorf("no trusted proxies: %q", got)
	}
}

// Behind a trusted proxy, each client has its own login budget; from an
// untrusted address, a forged header buys nothing.
func TestLoginLimitPerForwardedClient(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.LoginRate, c.LoginBurst = 0.001, 3
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		c.Now = time.Now
	})
	f.user("alice")
	url := "http://" + serve(t, f.api) + "/v1/sessions"
	proxy, other := oneShot("127.0.0.2"), oneShot("127.0.0.3")
	login := func(c *http.Client, client string) int {
		req, _ := http.NewRequest("POST", url, strings.NewReader(`{"id":"alice","password":"`+userPass+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", client)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		for _, client := range []string{"198.51.100.1", "198.51.100.2"} {
			if code := login(proxy, client); code != 201 {
				t.Fatalf("login %d of %s through the proxy: %d", i+1, client, code)
			}
		}
	}
	if code := login(proxy, "198.51.100.1"); code != 429 {
		t.Fatalf("4th login of 198.51.100.1 through the proxy: %d, want 429", code)
	}
	for i := range 3 {
		if code := login(other, fmt.Sprintf("198.51.100.%d", 10+i)); code != 201 {
			t.Fatalf("login %d from an untrusted address: %d", i+1, code)
		}
	}
	if code := login(other, "198.51.100.99"); code != 429 {
		t.Fatalf("a forged header from an untrusted address bought a 4th login: %d", code)
	}
	// A header that does not parse, from the proxy: the proxy's own
	// budget (three), each request counted once (the fourth is refused
	// and logged with the same address), the header logged once.
	for i := range 4 {
		want := 201
		if i == 3 {
			want = 429
		}
		if code := login(proxy, "not-an-address"); code != want {
			t.Fatalf("login %d with a bad header through the proxy: %d, want %d", i+1, code, want)
		}
	}
	if n := f.metric("pushring_http_forwarded_invalid_total"); n != 4 {
		t.Errorf("pushring_http_forwarded_invalid_total %v, want 4", n)
	}
	if n := strings.Count(f.logs.String(), "forwarded header does not parse"); n != 1 {
		t.Errorf("%d log lines for 2 bad headers, want 1", n)
	}
}

func FuzzForwarded(f *testing.F) {
	for _, s := range []string{`for=192.0.2.1`, `for="[2001:db8::1]:80";by=x, for=unknown`, `1.2.3.4, 5.6.7.8`, `for=""`, `;;,,=`} {
		f.Add(s)
	}
	a := &API{log: slog.New(slog.DiscardHandler), cfg: Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	f.Fuzz(func(t *testing.T, v string) {
		for _, h := range []string{"Forwarded", "X-Forwarded-For"} {
			r := &http.Request{RemoteAddr: "127.0.0.1:1", Header: http.Header{h: {v}}}
			got := a.clientAddr(r)
			if _, ok := addrOf(got); !ok {
				t.Fatalf("%s %q: client %q is no address", h, v, got)
			}
		}
	})
}
