package api

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// consoleLogin logs in to the console and returns the cookie header
// value and the CSRF token.
func (f *fixture) consoleLogin(key string) (cookie, csrf string) {
	f.t.Helper()
	r := f.must(200, "POST", "/console/login", "", map[string]any{"admin_key": key})
	var s consoleSessionResponse
	r.json(f.t, &s)
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == consoleCookie {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 {
				f.t.Fatalf("console cookie %+v: want HttpOnly, SameSite=Strict, Path=/, a Max-Age", c)
			}
			return consoleCookie + "=" + c.Value, s.CSRF
		}
	}
	f.t.Fatal("no console cookie set")
	return "", ""
}

// TestConsoleSession: the admin key logs in to the console; the cookie
// then authenticates admin calls, reads freely, but a change needs the
// CSRF token and this site's Origin; a wrong key, a forged or expired
// cookie, a rotated admin key and a logout all end it.
func TestConsoleSession(t *testing.T) {
	f := newFixture(t)
	f.mustErr(401, "unauthorized", "POST", "/console/login", "", map[string]any{"admin_key": "not-the-key-at-all"})
	f.mustErr(400, "unknown_field", "POST", "/console/login", "", map[string]any{"key": adminKey})
	cookie, csrf := f.consoleLogin(adminKey)

	// Reads with the cookie alone.
	if r := f.do("GET", "/v1/users", "", nil, "Cookie", cookie); r.status != 200 {
		t.Fatalf("GET with the console cookie: %d %s", r.status, r.body)
	}
	if r := f.do("GET", "/console/session", "", nil, "Cookie", cookie); r.status != 200 || !strings.Contains(string(r.body), csrf) {
		t.Fatalf("GET /console/session: %d %s", r.status, r.body)
	}
	// A change needs the token, and this site's Origin if there is one.
	body := map[string]any{"id": "g1"}
	for _, hdr := range [][]string{
		{"Cookie", cookie},
		{"Cookie", cookie, "X-CSRF-Token", "0" + csrf[1:]},
		{"Cookie", cookie, "X-CSRF-Token", csrf, "Origin", "https://evil.example"},
	} {
		if r := f.do("POST", "/v1/groups", "", body, hdr...); r.status != 403 || r.errCode(t) != "csrf" {
			t.Fatalf("POST with %q: %d %s, want 403 csrf", hdr, r.status, r.body)
		}
	}
	origin := strings.TrimSuffix(f.srv.URL, "/")
	if r := f.do("POST", "/v1/groups", "", body, "Cookie", cookie, "X-CSRF-Token", csrf, "Origin", origin); r.status != 201 {
		t.Fatalf("POST with cookie, token and origin: %d %s", r.status, r.body)
	}
	// Forged and tampered cookies are nothing.
	for _, bad := range []string{
		consoleCookie + "=v2.9999999999.00.00.00",
		cookie[:len(cookie)-2] + "00",
		strings.Replace(cookie, "v2.", "v2.9", 1),
	} {
		if r := f.do("GET", "/v1/users", "", nil, "Cookie", bad); r.status != 401 {
			t.Fatalf("GET with cookie %q: %d", bad, r.status)
		}
	}
	// Expired: 8 hours on.
	f.clock.add(consoleTTL + time.Second)
	if r := f.do("GET", "/v1/users", "", nil, "Cookie", cookie); r.status != 401 {
		t.Fatalf("an expired console cookie: %d", r.status)
	}
	// A rotated admin key ends the sessions it signed.
	cookie, _ = f.consoleLogin(adminKey)
	f.api.SetAdminKeys("another-admin-key-0123456789")
	if r := f.do("GET", "/v1/users", "", nil, "Cookie", cookie); r.status != 401 {
		t.Fatalf("a cookie of a retired admin key: %d", r.status)
	}
	// Logout needs the token (another site cannot log the admin out),
	// clears the cookie and ends the session: its value no longer works.
	f.api.SetAdminKeys(adminKey)
	cookie, csrf = f.consoleLogin(adminKey)
	if r := f.do("POST", "/console/logout", "", nil, "Cookie", cookie); r.status != 403 {
		t.Fatalf("logout without the token: %d", r.status)
	}
	r := f.do("POST", "/console/logout", "", nil, "Cookie", cookie, "X-CSRF-Token", csrf)
	if r.status != 204 {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if sc := r.header.Get("Set-Cookie"); !strings.Contains(sc, consoleCookie+"=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Fatalf("logout Set-Cookie %q", sc)
	}
	if r := f.do("GET", "/v1/users", "", nil, "Cookie", cookie); r.status != 401 {
		t.Fatalf("a logged-out cookie: %d", r.status)
	}
	// The cookie says nothing about the admin key: no part of it is a
	// function of the key alone.
	if strings.Contains(cookie, fmt.Sprintf("%x", sha256.Sum256([]byte(adminKey)))[:16]) {
		t.Fatal("the cookie carries the admin key's hash")
	}
}

// TestConsolePages: the console's files are served with a strict
// Content-Security-Policy; nothing else is.
func TestConsolePages(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/console", "/console/app.js", "/console/style.css", "/console/index.html"} {
		r := f.must(200, "GET", p, "", nil)
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Fatalf("%s: CSP %q", p, csp)
		}
		if len(r.body) < 100 {
			t.Fatalf("%s: %d bytes", p, len(r.body))
		}
	}
	f.mustErr(404, "not_found", "GET", "/console/nope.js", "", nil)
	f.mustErr(404, "not_found", "GET", "/console/..%2fapi.go", "", nil)
}
