package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"
	"time"

	"github.com/pushring/pushring/store"
)

// callerKind is how a request proved who it is.
type callerKind uint8

const (
	kindAdmin  callerKind = iota + 1 // the admin key
	kindUser                         // a user's session token
	kindDevice                       // a device's id and key (Basic)
)

// caller is an authenticated request's identity.
type caller struct {
	kind      callerKind
	console   bool      // kindAdmin by a console session cookie
	id        string    // principal id; "" for admin
	tokenHash string    // kindUser: the session's key
	expires   time.Time // kindUser: session expiry
}

func (c caller) String() string {
	switch c.kind {
	case kindAdmin:
		if c.console {
			return "admin:console"
		}
		return "admin"
	case kindUser:
		return "user:" + c.id
	case kindDevice:
		return "device:" + c.id
	}
	return "anonymous"
}

// maxCredentialBytes bounds what is hashed or looked up: session tokens
// and device keys (store.NewToken, store.NewDeviceKey) are much shorter.
const maxCredentialBytes = 512

// Every issued secret fits under maxCredentialBytes: a negative array
// length fails to compile otherwise.
var _ [maxCredentialBytes - store.SecretLen]struct{}

// dummyKeyHash is checked against when a device id is unknown, so the
// answer costs the same.
var dummyKeyHash = strings.Repeat("0", 2*sha256.Size)

// authenticate proves q's caller from its Authorization header and records
// it in q. Any failure is 401; a store outage is 503 (fail closed).
func (a *API) authenticate(q *request) (caller, error) {
	h := q.r.Header.Get("Authorization")
	if h == "" {
		c, err := a.consoleCaller(q)
		if err == nil {
			q.caller = c
		}
		return c, err
	}
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimLeft(cred, " ")
	var c caller
	var err error
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		c, err = a.bearer(q, cred)
	case strings.EqualFold(scheme, "Basic"):
		c, err = a.basic(q)
	default:
		err = errUnauthorized
	}
	if err != nil {
		return caller{}, err
	}
	q.caller = c
	return c, nil
}

func (a *API) bearer(q *request, token string) (caller, error) {
	if token == "" || len(token) > maxCredentialBytes {
		return caller{}, errUnauthorized
	}
	if a.isAdminKey(token) {
		return caller{kind: kindAdmin}, nil
	}
	th := store.HashToken(token)
	s, err := a.st.Session(q.r.Context(), th)
	if err != nil {
		return caller{}, storeError(err, errUnauthorized)
	}
	if s.Expired(a.now()) || s.TokenHash != th || !store.ValidID(s.PrincipalID) {
		return caller{}, errUnauthorized
	}
	// A deleted user's tokens stop at once, even one her deletion did
	// not find to revoke (a session written before sessions were
	// indexed by user, or by a login racing the delete), and stay
	// stopped if the id is made again.
	p, err := a.st.Principal(q.r.Context(), s.PrincipalID)
	if err != nil {
		return caller{}, storeError(err, errUnauthorized)
	}
	if !s.Of(p) {
		return caller{}, errUnauthorized // an earlier principal of this id
	}
	return caller{kind: kindUser, id: s.PrincipalID, tokenHash: th, expires: s.Expires}, nil
}

func (a *API) isAdminKey(token string) bool {
	// Compare hashes so the time taken says nothing about the key's
	// length, and compare with every key so it says nothing about which
	// one matched.
	sum := sha256.Sum256([]byte(token))
	match := 0
	for _, h := range *a.admin.Load() {
		match |= subtle.ConstantTimeCompare(sum[:], h[:])
	}
	return match == 1
}

func (a *API) basic(q *request) (caller, error) {
	id, key, ok := q.r.BasicAuth()
	if !ok || !store.ValidID(id) || key == "" || len(key) > maxCredentialBytes {
		return caller{}, errUnauthorized
	}
	p, err := a.st.Principal(q.r.Context(), id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return caller{}, storeError(err, errUnauthorized)
	}
	hash := dummyKeyHash
	if err == nil && p.Kind == store.Device {
		hash = p.SecretHash
	}
	if !store.CheckDeviceKey(hash, key) || err != nil || p.Kind != store.Device {
		return caller{}, errUnauthorized
	}
	return caller{kind: kindDevice, id: p.ID}, nil
}

// needAdmin authenticates q and requires the admin key.
func (a *API) needAdmin(q *request) error {
	c, err := a.authenticate(q)
	if err != nil {
		return err
	}
	if c.kind != kindAdmin {
		return errAdminOnly
	}
	return nil
}

// needSession authenticates q and requires a user session token.
func (a *API) needSession(q *request) (caller, error) {
	c, err := a.authenticate(q)
	if err != nil {
		return caller{}, err
	}
	if c.kind != kindUser {
		return caller{}, errSessionOnly
	}
	return c, nil
}

// dummyHash is a password hash to check against when a login id is
// unknown, so an unknown id costs as long as a wrong password.
func (a *API) dummyHash() string {
	a.dummyOnce.Do(func() {
		phc, err := store.HashPassword("pushring: no such principal")
		if err == nil {
			a.dummyPHC = phc
		}
	})
	return a.dummyPHC
}

// acquireHash waits for one of the password-hashing slots: argon2id is
// memory-hard, so unbounded concurrent logins would exhaust memory.
func (a *API) acquireHash(q *request) (release func(), err error) {
	select {
	case a.hashSlots <- struct{}{}:
		return func() { <-a.hashSlots }, nil
	case <-q.r.Context().Done():
		return nil, errUnavailable.with(q.r.Context().Err())
	}
}

// clientKey is the rate-limit key of a request: its client's IP (the
// peer's, or the forwarded one from a trusted proxy), IPv6 cut to the
// /64.
func (a *API) clientKey(q *request) string { return addrKey(a.client(q)) }

// client is q's client address (clientAddr), worked out once per
// request: a bad forwarded header is counted once.
func (a *API) client(q *request) string {
	if q.client == "" {
		q.client = a.clientAddr(q.r)
	}
	return q.client
}
