package api

// The web console: static pages under /console, and the admin API
// reached with a session cookie instead of the admin key.
//
// Logging in (POST /console/login with the admin key, throttled like
// every login per client address) sets a cookie that names an expiry
// and a nonce, signed with a key derived from the admin key that logged
// in: it is checked on any node that accepts that admin key, no state
// is kept, and rotating the admin key ends every console session. The
// cookie is HttpOnly (scripts cannot read it), SameSite=Strict (no other
// site's page sends it) and Secure over TLS. A call that changes
// anything must also carry X-CSRF-Token, a second signature of the
// cookie that the page gets from the login's answer or GET
// /console/session, and an Origin, if any, of this very site.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed console
var consoleFiles embed.FS

const (
	consoleCookie = "pushring_console"
	consoleTTL    = 8 * time.Hour
)

var (
	errConsoleLogin = newError(http.StatusUnauthorized, "unauthorized", "not the admin key")
	errCSRF         = newError(http.StatusForbidden, "csrf", "a console call that changes something needs X-CSRF-Token and this site's Origin")
)

// consoleKey derives the cookie signing key from an admin key's hash.
func consoleKey(adminHash [sha256.Size]byte, purpose string) []byte {
	mac := hmac.New(sha256.New, adminHash[:])
	mac.Write([]byte("pushring console " + purpose))
	return mac.Sum(nil)
}

func sign(key []byte, parts ...string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(strings.Join(parts, "|")))
	return hex.EncodeToString(mac.Sum(nil))
}

// newConsoleCookie is a cookie value for the admin key of hash h.
func newConsoleCookie(h [sha256.Size]byte, exp time.Time) string {
	var nonce [16]byte
	rand.Read(nonce[:])
	e, n := strconv.FormatInt(exp.Unix(), 10), hex.EncodeToString(nonce[:])
	return "v1." + e + "." + n + "." + sign(consoleKey(h, "cookie"), e, n)
}

// consoleSession checks a cookie value: the admin key hash that signed
// it, if it is valid and not expired with a key still accepted.
func (a *API) consoleSession(v string, now time.Time) ([sha256.Size]byte, bool) {
	f := strings.Split(v, ".")
	if len(f) != 4 || f[0] != "v1" || len(v) > 256 {
		return [sha256.Size]byte{}, false
	}
	exp, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || now.Unix() >= exp {
		return [sha256.Size]byte{}, false
	}
	for _, h := range *a.admin.Load() {
		if hmac.Equal([]byte(sign(consoleKey(h, "cookie"), f[1], f[2])), []byte(f[3])) {
			return h, true
		}
	}
	return [sha256.Size]byte{}, false
}

// csrfToken is the token state-changing console calls carry.
func csrfToken(h [sha256.Size]byte, cookie string) string {
	return sign(consoleKey(h, "csrf"), cookie)
}

// consoleCaller authenticates a request without an Authorization header
// by its console cookie, as the admin; a method other than GET and HEAD
// also needs the CSRF token and, if the browser sent one, this site's
// Origin.
func (a *API) consoleCaller(q *request) (caller, error) {
	ck, err := q.r.Cookie(consoleCookie)
	if err != nil {
		return caller{}, errUnauthorized
	}
	h, ok := a.consoleSession(ck.Value, a.now())
	if !ok {
		return caller{}, errUnauthorized
	}
	if m := q.r.Method; m != http.MethodGet && m != http.MethodHead {
		tok := q.r.Header.Get("X-CSRF-Token")
		if !hmac.Equal([]byte(tok), []byte(csrfToken(h, ck.Value))) || !a.sameOrigin(q.r) {
			return caller{}, errCSRF
		}
	}
	return caller{kind: kindAdmin, console: true}, nil
}

// sameOrigin: r carries no Origin, or the origin of the site it was sent
// to.
func (a *API) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	scheme := "http"
	if a.secure(r) {
		scheme = "https"
	}
	return o == scheme+"://"+r.Host
}

// secure: r came over TLS, here or to a trusted proxy that says so.
func (a *API) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	peer, ok := addrOf(r.RemoteAddr)
	return ok && len(a.cfg.TrustedProxies) > 0 && a.trusted(peer) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (a *API) setConsoleCookie(q *request, value string, maxAge int) {
	http.SetCookie(q.w, &http.Cookie{
		Name: consoleCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: a.secure(q.r),
	})
}

type consoleLoginRequest struct {
	AdminKey string `json:"admin_key"`
}

type consoleSessionResponse struct {
	CSRF      string `json:"csrf"`
	ExpiresAt string `json:"expires_at"`
}

// POST /console/login: the admin key, for a console session cookie.
func (a *API) consoleLogin(q *request) error {
	if a.login != nil {
		if ok, wait := a.login.Allow(a.clientKey(q), a.now()); !ok {
			return rateLimited(wait)
		}
	}
	if !a.sameOrigin(q.r) {
		return errCSRF
	}
	var req consoleLoginRequest
	if err := a.readJSON(q, &req); err != nil {
		return err
	}
	if req.AdminKey == "" || len(req.AdminKey) > maxCredentialBytes || !a.isAdminKey(req.AdminKey) {
		return errConsoleLogin
	}
	h := sha256.Sum256([]byte(req.AdminKey))
	exp := a.now().Add(consoleTTL)
	v := newConsoleCookie(h, exp)
	a.setConsoleCookie(q, v, int(consoleTTL/time.Second))
	writeJSON(q.w, http.StatusOK, consoleSessionResponse{CSRF: csrfToken(h, v), ExpiresAt: rfc3339(exp)})
	return nil
}

// GET /console/session: the session of the cookie, with its CSRF token.
func (a *API) consoleSessionInfo(q *request) error {
	ck, err := q.r.Cookie(consoleCookie)
	if err != nil {
		return errUnauthorized
	}
	h, ok := a.consoleSession(ck.Value, a.now())
	if !ok {
		return errUnauthorized
	}
	exp, _ := strconv.ParseInt(strings.Split(ck.Value, ".")[1], 10, 64)
	writeJSON(q.w, http.StatusOK, consoleSessionResponse{CSRF: csrfToken(h, ck.Value), ExpiresAt: rfc3339(time.Unix(exp, 0))})
	return nil
}

// POST /console/logout: the cookie is cleared.
func (a *API) consoleLogout(q *request) error {
	a.setConsoleCookie(q, "", -1)
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// consolePage serves the console's files.
func (a *API) consolePage(q *request) error {
	name := q.r.PathValue("file")
	if name == "" {
		name = "index.html"
	}
	sub, _ := fs.Sub(consoleFiles, "console")
	data, err := fs.ReadFile(sub, name)
	if err != nil || strings.Contains(name, "/") {
		return errNotFound
	}
	h := q.w.Header()
	switch {
	case strings.HasSuffix(name, ".html"):
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
	case strings.HasSuffix(name, ".js"):
		h.Set("Content-Type", "text/javascript; charset=utf-8")
	case strings.HasSuffix(name, ".css"):
		h.Set("Content-Type", "text/css; charset=utf-8")
	}
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	q.w.WriteHeader(http.StatusOK)
	q.w.Write(data)
	return nil
}
