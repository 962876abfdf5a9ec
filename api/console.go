package api

// The web console: static pages under /console, and the admin API
// reached with a session cookie instead of the admin key.
//
// Logging in (POST /console/login with the admin key, throttled like
// every login per client address) sets a cookie naming an expiry, a
// nonce and which admin key logged in, signed with the cluster's console
// secret (ConsoleKeys): any node checks it, no node keeps it, and the
// cookie says nothing about the admin key to whoever reads it (the key
// is named by a MAC under the secret). Retiring that admin key, or
// logging out (the nonce is ended cluster-wide until the expiry), ends
// the session. The cookie is HttpOnly (scripts cannot read it),
// SameSite=Strict (no other site's page sends it) and Secure over TLS. A
// call that changes anything must also carry X-CSRF-Token, another MAC
// of the cookie that the page gets from the login's answer or GET
// /console/session, and an Origin, if any, of this very site.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
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

// ConsoleKeys keeps what console sessions are signed and ended with,
// the same on every node of a cluster.
type ConsoleKeys interface {
	// Secret signs the cookies: random, kept by the cluster, never sent.
	Secret() []byte
	// End ends the session of nonce until its expiry, on every node.
	End(ctx context.Context, nonce string, until time.Time) error
	// Ended reports whether the session of nonce was ended.
	Ended(nonce string) bool
}

// LocalConsoleKeys are ConsoleKeys of one process: a secret given (or
// random), ended sessions kept in memory. An API alone uses them; a
// node shares the secret and the ends through its store, with these as
// its local part.
type LocalConsoleKeys struct {
	secret []byte
	mu     sync.Mutex
	ended  map[string]time.Time // nonce -> the session's expiry
}

// NewLocalConsoleKeys returns LocalConsoleKeys with secret, or a random
// one if secret is nil.
func NewLocalConsoleKeys(secret []byte) *LocalConsoleKeys {
	if secret == nil {
		secret = make([]byte, 32)
		rand.Read(secret)
	}
	return &LocalConsoleKeys{secret: secret, ended: make(map[string]time.Time)}
}

func (k *LocalConsoleKeys) Secret() []byte { return k.secret }

// End records an ended session, forgetting those past their expiry.
func (k *LocalConsoleKeys) End(_ context.Context, nonce string, until time.Time) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	for n, t := range k.ended {
		if now.After(t) {
			delete(k.ended, n)
		}
	}
	k.ended[nonce] = until
	return nil
}

func (k *LocalConsoleKeys) Ended(nonce string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.ended[nonce]
	return ok
}

func (a *API) mac(parts ...string) string {
	m := hmac.New(sha256.New, a.consoleKeys.Secret())
	m.Write([]byte(strings.Join(parts, "|")))
	return hex.EncodeToString(m.Sum(nil))
}

// keyID names an admin key (by its hash) in a cookie, under the secret.
func (a *API) keyID(h [sha256.Size]byte) string { return a.mac("kid", string(h[:]))[:16] }

// newConsoleCookie is a cookie value for the admin key of hash h.
func (a *API) newConsoleCookie(h [sha256.Size]byte, exp time.Time) string {
	var nonce [16]byte
	rand.Read(nonce[:])
	e, n, kid := strconv.FormatInt(exp.Unix(), 10), hex.EncodeToString(nonce[:]), a.keyID(h)
	return "v2." + e + "." + n + "." + kid + "." + a.mac("cookie", e, n, kid)
}

// consoleSession checks a cookie value: valid, not expired, not ended,
// and signed for an admin key still accepted. It returns the nonce and
// the expiry.
func (a *API) consoleSession(v string, now time.Time) (nonce string, exp time.Time, ok bool) {
	f := strings.Split(v, ".")
	if len(f) != 5 || f[0] != "v2" || len(v) > 256 {
		return "", time.Time{}, false
	}
	e, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || now.Unix() >= e {
		return "", time.Time{}, false
	}
	if !hmac.Equal([]byte(a.mac("cookie", f[1], f[2], f[3])), []byte(f[4])) || a.consoleKeys.Ended(f[2]) {
		return "", time.Time{}, false
	}
	for _, h := range *a.admin.Load() {
		if hmac.Equal([]byte(a.keyID(h)), []byte(f[3])) {
			return f[2], time.Unix(e, 0), true
		}
	}
	return "", time.Time{}, false
}

// csrfToken is the token state-changing console calls carry.
func (a *API) csrfToken(cookie string) string { return a.mac("csrf", cookie) }

// consoleCaller authenticates a request without an Authorization header
// by its console cookie, as the admin; a method other than GET and HEAD
// also needs the CSRF token and, if the browser sent one, this site's
// Origin.
func (a *API) consoleCaller(q *request) (caller, error) {
	ck, err := q.r.Cookie(consoleCookie)
	if err != nil {
		return caller{}, errUnauthorized
	}
	if _, _, ok := a.consoleSession(ck.Value, a.now()); !ok {
		return caller{}, errUnauthorized
	}
	if m := q.r.Method; m != http.MethodGet && m != http.MethodHead && !a.csrfOK(q, ck.Value) {
		return caller{}, errCSRF
	}
	return caller{kind: kindAdmin, console: true}, nil
}

// csrfOK: q carries the CSRF token of cookie and no foreign Origin.
func (a *API) csrfOK(q *request, cookie string) bool {
	tok := q.r.Header.Get("X-CSRF-Token")
	return hmac.Equal([]byte(tok), []byte(a.csrfToken(cookie))) && a.sameOrigin(q.r)
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
	exp := a.now().Add(consoleTTL)
	v := a.newConsoleCookie(sha256.Sum256([]byte(req.AdminKey)), exp)
	a.setConsoleCookie(q, v, int(consoleTTL/time.Second))
	writeJSON(q.w, http.StatusOK, consoleSessionResponse{CSRF: a.csrfToken(v), ExpiresAt: rfc3339(exp)})
	return nil
}

// GET /console/session: the session of the cookie, with its CSRF token.
func (a *API) consoleSessionInfo(q *request) error {
	ck, err := q.r.Cookie(consoleCookie)
	if err != nil {
		return errUnauthorized
	}
	_, exp, ok := a.consoleSession(ck.Value, a.now())
	if !ok {
		return errUnauthorized
	}
	writeJSON(q.w, http.StatusOK, consoleSessionResponse{CSRF: a.csrfToken(ck.Value), ExpiresAt: rfc3339(exp)})
	return nil
}

// POST /console/logout: the session ends on every node (with its CSRF
// token: another site cannot log the admin out), and the cookie is
// cleared.
func (a *API) consoleLogout(q *request) error {
	if ck, err := q.r.Cookie(consoleCookie); err == nil {
		if nonce, exp, ok := a.consoleSession(ck.Value, a.now()); ok {
			if !a.csrfOK(q, ck.Value) {
				return errCSRF
			}
			if err := a.consoleKeys.End(q.r.Context(), nonce, exp); err != nil {
				return errUnavailable.with(err)
			}
		}
	}
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
