package api

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/internal/lograte"
	"github.com/pushring/pushring/internal/ratelimit"
	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

// Publisher takes a message accepted over HTTP into the cluster. fanout
// implements it; node wires it in.
type Publisher interface {
	// Forward hands m on. When it returns nil the message is handed on
	// and the API answers 202; an error is 503. Goroutine-safe; may block
	// briefly (honours ctx). m must not be modified after the call.
	Forward(ctx context.Context, m *message.Message) error
}

// ACL answers authorization questions. store.Directory implements it.
// All methods are goroutine-safe and non-blocking.
type ACL interface {
	// CanPublishGroup: id is a publisher of gid, or a member of a group
	// whose members may publish.
	CanPublishGroup(id, gid string) bool
	// CanDirect: from may send a direct message to to.
	CanDirect(from, to string) bool
	// IsMember: id is a member of gid.
	IsMember(gid, id string) bool
}

// Cluster describes the nodes and where principals live.
// membership.Static and the gossip membership implement it. All methods
// are goroutine-safe and non-blocking.
type Cluster interface {
	// Self is this node.
	Self() membership.Node
	// Nodes lists the live nodes.
	Nodes() []membership.Node
	// HomeNode is the node that delivers to principal id.
	HomeNode(id string) membership.Node
}

var (
	_ Cluster = (*membership.Static)(nil)
	_ ACL     = (*store.Directory)(nil)
)

// Deps are the parts of the node the API uses.
type Deps struct {
	Publisher Publisher         // required
	ACL       ACL               // required
	Cluster   Cluster           // required
	IDs       *message.IDSource // nil: a source named after Cluster.Self().ID
	// Ready reports whether the node can serve (/readyz): nil error is
	// ready. nil: always ready. Goroutine-safe; should answer quickly.
	Ready func() error
	// MQTT serves GET /mqtt: MQTT over WebSocket (package mqtt/ws).
	// nil: not served.
	MQTT http.Handler
	// Retainer keeps a group message published with "retain": true as
	// the group's retained message. nil: such a publish is refused
	// (400 retain_not_supported).
	Retainer Retainer
	// Presence answers who is connected, cluster-wide. nil: the
	// presence calls answer 503.
	Presence Presence
	// Webhooks keeps the webhook endpoints. nil: the webhook calls
	// answer 503.
	Webhooks Webhooks
	// Refused, if set, is told of every refused request (its error code
	// and status), for webhooks; it must not block.
	Refused func(code string, status int)
	// Stats returns every live node's last sample (GET
	// /v1/cluster/stats); nil: that call answers 503.
	Stats func() []NodeStats
	// ConsoleKeys signs and ends console sessions the same on every
	// node; nil: a random secret of this API alone (one node).
	ConsoleKeys ConsoleKeys
	// Tail calls fn for each message stored for group gid from now on,
	// until ctx ends (GET /v1/groups/{gid}/tail); nil: 503.
	Tail func(ctx context.Context, gid string, fn func(stored time.Time, m *message.Message)) error
}

// NodeStats is one node's sample of its own figures.
type NodeStats struct {
	Node        string    `json:"node"`
	Time        time.Time `json:"time"`
	Connections int64     `json:"connections"`
	Sessions    int64     `json:"sessions"`
	// Totals since the node started, and their rates over the
	// interval before Time.
	MessagesIn       uint64  `json:"messages_in_total"`
	Deliveries       uint64  `json:"deliveries_total"`
	MessagesInPerSec float64 `json:"messages_in_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	// Refusals since the node started, by "mqtt:<reason>",
	// "mqtt:connect_<result>" and "http:<code>"; only those above 0.
	Refusals map[string]uint64 `json:"refusals"`
}

// Webhooks keeps the cluster's webhook endpoints.
type Webhooks interface {
	// Create stores an endpoint for url and events (empty: every type)
	// with a new id and secret. Errors: ErrWebhookInvalid (its text says
	// why), ErrWebhookTooMany, or the store's.
	Create(ctx context.Context, url string, events []string) (WebhookEndpoint, error)
	// Delete removes one (ErrWebhookNotFound).
	Delete(ctx context.Context, id string) error
	List() []WebhookEndpoint
}

// WebhookEndpoint is one configured receiver.
type WebhookEndpoint struct {
	ID      string
	URL     string
	Events  []string
	Secret  string
	Created time.Time
}

// Errors a Webhooks returns.
var (
	ErrWebhookInvalid  = errors.New("api: invalid webhook endpoint")
	ErrWebhookNotFound = errors.New("api: no such webhook endpoint")
	ErrWebhookTooMany  = errors.New("api: too many webhook endpoints")
)

// Presence answers who is connected now, cluster-wide.
type Presence interface {
	// Online asks every live node which of ids, or of group's members
	// when group is not empty, have a connected MQTT session on it,
	// within a bounded wait. Goroutine-safe; honours ctx.
	Online(ctx context.Context, group string, ids []string) Online
}

// Online is what the nodes answered.
type Online struct {
	// ByNode lists, per node that answered, the principals connected
	// to it (at most 10,000 per node); Counts says how many there were.
	ByNode map[string][]string
	Counts map[string]int
	// Missing are the live nodes that did not answer in time (a node
	// that died and is not yet known to have, or one of an earlier
	// release). Their clients are not counted.
	Missing []string
}

// Retainer keeps retained group messages.
type Retainer interface {
	// Retain makes m its group's retained message (an empty payload
	// clears it) and returns once it is kept, or why not: an error
	// matching ErrRetainedFull when there is no room. Goroutine-safe;
	// honours ctx. m is not kept after the call.
	Retain(ctx context.Context, m *message.Message) error
}

// ErrRetainedFull is matched by a Retainer's error when the retained
// messages have no room left (507 retained_full).
var ErrRetainedFull = errors.New("api: no room for retained messages")

// ErrInvalidConfig is matched (errors.Is) by every error New returns for
// a Config or Deps it cannot run with; the error's text names the field.
var ErrInvalidConfig = errors.New("api: invalid config")

// check makes the errors that match ErrInvalidConfig.
var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "api"}

// Config of the API. Build it from DefaultConfig and change what you
// need. New fills a zero field with its default, then refuses, with an
// error naming the field, a value it cannot run with.
type Config struct {
	// AdminKey authorizes admin calls, sent as "Authorization: Bearer
	// <AdminKey>". Empty (the default): no call is ever admin (fail
	// closed). A key under 16 bytes is accepted with a warning.
	// SetAdminKeys replaces it at run time (rotation).
	AdminKey string
	// SessionTTL is how long a login session lasts. Default 24h.
	SessionTTL time.Duration
	// MaxBodyBytes caps every request body, in bytes (413 above).
	// Default 1 MiB.
	MaxBodyBytes int64
	// MaxPayloadBytes caps a message payload after base64 decoding, in
	// bytes (413 above). Default 256 KiB.
	MaxPayloadBytes int
	// PrivatePrefix is the root of private topics: <PrivatePrefix>/<id>,
	// a topic name without wildcards or NUL; trailing '/'s are dropped.
	// It must match the MQTT router's. Default "/private".
	PrivatePrefix string
	// LoginRate is the refill rate, in attempts per second, of the login
	// token bucket kept per client address, and LoginBurst its size in
	// attempts. A negative LoginRate turns the limit off. Defaults 2/s
	// and 50: an office behind one NAT address (or a load balancer)
	// logs 50 people in at once and 120 a minute after, while one
	// address costs the node, past its burst of 50, at most two
	// password checks (argon2id, tens of milliseconds of a core each) a
	// second. Guessing one
	// account's password is bounded by LoginAccountFailures, whatever
	// the addresses.
	LoginRate  float64
	LoginBurst int
	// TrustedProxies are the load balancers and proxies in front of the
	// API: from their addresses, the client's address is read from the
	// Forwarded or X-Forwarded-For header (forwarded.go) for the login
	// limits and the logs. Empty (the default): headers are ignored.
	TrustedProxies []netip.Prefix
	// LoginAccountFailures is how many consecutive failed logins for one
	// id, from any address, lock that id: each later attempt is answered
	// 429 with Retry-After until the lock ends, right password or not,
	// and whether or not the id exists. The first lock lasts
	// LoginAccountBackoff, each failure after a lock doubles it, up to
	// LoginAccountMaxBackoff; a successful login resets the count. An id
	// quiet for LoginAccountMaxBackoff after its last lock starts afresh.
	// Defaults 5, 1 s and 15 min: a user who mistypes a few times is not
	// held up, an online guesser gets about one try every 15 min per
	// account (about 100 a day), and a locked-out owner waits at most 15
	// min. A negative LoginAccountFailures turns the lock off.
	LoginAccountFailures   int
	LoginAccountBackoff    time.Duration
	LoginAccountMaxBackoff time.Duration
	// HTTP holds the limits of the HTTP servers and listeners built by
	// NewHTTPServer and LimitListener (timeouts, header size, connection
	// cap). Zero fields take DefaultHTTPConfig's values.
	HTTP HTTPConfig
	// Logger receives one line per refused request, and warnings. Nil
	// (the default) means slog.Default(), so nothing the API reports is
	// lost; pass slog.New(slog.DiscardHandler) for silence.
	Logger *slog.Logger
	// Registry is the node's Prometheus registry: /metrics serves it and
	// the API registers its own metrics on it. Nil (the default): a new
	// one.
	Registry *prometheus.Registry
	// Now is the clock (tests). Nil: time.Now, the default.
	Now func() time.Time
}

// DefaultConfig returns the defaults (no admin key).
func DefaultConfig() Config {
	return Config{
		SessionTTL:      24 * time.Hour,
		MaxBodyBytes:    1 << 20,
		MaxPayloadBytes: 256 << 10,
		PrivatePrefix:   "/private",
		LoginRate:       2,
		LoginBurst:      50,
		Now:             time.Now,

		LoginAccountFailures:   5,
		LoginAccountBackoff:    time.Second,
		LoginAccountMaxBackoff: 15 * time.Minute,
		HTTP:                   DefaultHTTPConfig(),
	}
}

// Validate reports the error New would return for c: nil if New can run
// with it. Use it to refuse a bad config before starting anything else.
func (c Config) Validate() error { return c.withDefaults().validate() }

// withDefaults returns c with every zero field that has a default set to
// it (the nil Logger to slog.Default(), a nil Registry to a new one), and
// trailing '/'s dropped from PrivatePrefix. It leaves wrong values for
// validate to refuse.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.SessionTTL = cmp.Or(c.SessionTTL, d.SessionTTL)
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, d.MaxBodyBytes)
	c.MaxPayloadBytes = cmp.Or(c.MaxPayloadBytes, d.MaxPayloadBytes)
	c.PrivatePrefix = strings.TrimRight(c.PrivatePrefix, "/")
	c.PrivatePrefix = cmp.Or(c.PrivatePrefix, d.PrivatePrefix)
	c.LoginRate = cmp.Or(c.LoginRate, d.LoginRate) // negative stays: no limit
	c.LoginBurst = cmp.Or(c.LoginBurst, d.LoginBurst)
	c.LoginAccountFailures = cmp.Or(c.LoginAccountFailures, d.LoginAccountFailures) // negative stays: off
	c.LoginAccountBackoff = cmp.Or(c.LoginAccountBackoff, d.LoginAccountBackoff)
	c.LoginAccountMaxBackoff = cmp.Or(c.LoginAccountMaxBackoff, d.LoginAccountMaxBackoff)
	c.HTTP = c.HTTP.withDefaults()
	c.Logger = cmp.Or(c.Logger, slog.Default())
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return c
}

// validate checks a Config that went through withDefaults. The error
// names the first bad field.
func (c Config) validate() error {
	return configerr.First(
		configerr.Positive(check, "SessionTTL", c.SessionTTL),
		configerr.Positive(check, "MaxBodyBytes", c.MaxBodyBytes),
		configerr.Positive(check, "MaxPayloadBytes", c.MaxPayloadBytes),
		check.If(strings.ContainsAny(c.PrivatePrefix, "+#\x00"), "PrivatePrefix %q must be a topic name without wildcards or NUL", c.PrivatePrefix),
		check.If(math.IsNaN(c.LoginRate), "LoginRate must be a number (got NaN)"),
		configerr.Positive(check, "LoginBurst", c.LoginBurst),
		configerr.Positive(check, "LoginAccountBackoff", c.LoginAccountBackoff),
		configerr.Positive(check, "LoginAccountMaxBackoff", c.LoginAccountMaxBackoff),
		check.If(c.LoginAccountMaxBackoff < c.LoginAccountBackoff,
			"LoginAccountMaxBackoff %v must be at least LoginAccountBackoff %v", c.LoginAccountMaxBackoff, c.LoginAccountBackoff),
		c.HTTP.validate(),
	)
}

// API is the HTTP handler of a node. It is goroutine-safe.
type API struct {
	cfg         Config
	st          store.Store
	deps        Deps
	log         *slog.Logger
	mux         *http.ServeMux
	tails       chan struct{} // a slot per group tail streaming (maxTails)
	consoleKeys ConsoleKeys   // deps.ConsoleKeys, or this API's own
	// patterns are the routes registered on mux, for the OpenAPI check.
	patterns []string
	met      *metrics
	login    *ratelimit.Limiter[string] // nil: no login limit
	// accounts throttles logins per id; nil: off.
	accounts *accountGuard

	conns          atomic.Int64    // HTTP connections open through LimitListener
	connLog        lograte.Limiter // the connection cap's refusals
	acceptLog      lograte.Limiter // failed Accepts (out of files)
	tlsLog         lograte.Limiter // failed HTTPS handshakes
	forwardedLog   lograte.Limiter // forwarded headers that did not parse
	limitLog       lograte.Limiter // 429 answers
	slowLog        lograte.Limiter // 408 answers (bodies cut by the read deadline)
	unavailableLog lograte.Limiter // 503 answers (store or bus unavailable)

	// admin holds the SHA-256 of every accepted admin key; empty: none.
	// An atomic pointer so SetAdminKeys rotates keys under live traffic.
	admin atomic.Pointer[[][sha256.Size]byte]

	hashSlots chan struct{} // bounds concurrent password hashing

	dummyOnce sync.Once
	dummyPHC  string // a password hash to check against for unknown ids
}

var _ http.Handler = (*API)(nil)

// New returns the API over st. Zero Config fields take their defaults
// (see Config). A Config New cannot run with, or a nil st or required
// dependency, is refused with an error matching ErrInvalidConfig.
func New(cfg Config, st store.Store, deps Deps) (*API, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if st == nil || deps.Publisher == nil || deps.ACL == nil || deps.Cluster == nil {
		return nil, check.New("New needs a store, a Publisher, an ACL and a Cluster (one is nil)")
	}
	if deps.IDs == nil {
		deps.IDs = message.NewIDSource(deps.Cluster.Self().ID)
	}
	met, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	a := &API{
		cfg:         cfg,
		st:          st,
		deps:        deps,
		log:         cfg.Logger,
		mux:         http.NewServeMux(),
		tails:       make(chan struct{}, maxTails),
		consoleKeys: deps.ConsoleKeys,
		met:         met,
		hashSlots:   make(chan struct{}, runtime.GOMAXPROCS(0)),
	}
	a.SetAdminKeys(cfg.AdminKey)
	if a.consoleKeys == nil {
		a.consoleKeys = NewLocalConsoleKeys(nil)
	}
	if cfg.LoginRate > 0 {
		a.login = ratelimit.New[string](cfg.LoginRate, cfg.LoginBurst, maxLimiterEntries)
	}
	a.accounts = newAccountGuard(cfg.LoginAccountFailures, cfg.LoginAccountBackoff,
		cfg.LoginAccountMaxBackoff, accountEntries)
	a.routes()
	return a, nil
}

func (a *API) now() time.Time { return a.cfg.Now() }

// SetAdminKeys makes keys the accepted admin keys, replacing the previous
// ones at once; empty keys are skipped, and none at all means no call is
// admin. Several keys are accepted together so that a key can be rotated
// without downtime: add the new one, move the callers to it, drop the old
// one.
func (a *API) SetAdminKeys(keys ...string) {
	hashes := make([][sha256.Size]byte, 0, len(keys))
	for _, k := range keys {
		if k == "" {
			continue
		}
		if len(k) < 16 {
			a.log.Warn("api: admin key is shorter than 16 bytes")
		}
		hashes = append(hashes, sha256.Sum256([]byte(k)))
	}
	a.admin.Store(&hashes)
}

func (a *API) routes() {
	a.handle("POST /v1/users", a.createUser)
	a.handle("GET /v1/users", a.listPrincipals(store.User))
	a.handle("GET /v1/users/{id}", a.getPrincipal(store.User))
	a.handle("DELETE /v1/users/{id}", a.deletePrincipal(store.User))
	a.handle("PUT /v1/users/{id}/password", a.setPassword)
	a.handle("GET /v1/users/{id}/groups", a.principalGroups(store.User))
	a.handle("GET /v1/users/{id}/sessions", a.listSessions)
	a.handle("DELETE /v1/users/{id}/sessions", a.deleteSessions)
	a.handle("POST /v1/devices", a.createDevice)
	a.handle("GET /v1/devices", a.listPrincipals(store.Device))
	a.handle("GET /v1/devices/{id}", a.getPrincipal(store.Device))
	a.handle("DELETE /v1/devices/{id}", a.deletePrincipal(store.Device))
	a.handle("POST /v1/devices/{id}/key", a.rotateKey)
	a.handle("GET /v1/devices/{id}/groups", a.principalGroups(store.Device))
	a.handle("POST /v1/sessions", a.createSession)
	a.handle("GET /v1/sessions/current", a.currentSession)
	a.handle("DELETE /v1/sessions/current", a.deleteSession)
	a.handle("POST /v1/groups", a.createGroup)
	a.handle("GET /v1/groups", a.listGroups)
	a.handle("GET /v1/groups/{gid}", a.getGroup)
	a.handle("DELETE /v1/groups/{gid}", a.deleteGroup)
	a.handle("GET /v1/groups/{gid}/presence", a.groupPresence)
	a.handle("POST /v1/webhooks", a.createWebhook)
	a.handle("GET /v1/webhooks", a.listWebhooks)
	a.handle("DELETE /v1/webhooks/{id}", a.deleteWebhook)
	a.handle("GET /v1/users/{id}/presence", a.userPresence)
	a.handle("PUT /v1/groups/{gid}/members/{id}", a.setRole(store.Member, true))
	a.handle("DELETE /v1/groups/{gid}/members/{id}", a.setRole(store.Member, false))
	a.handle("PUT /v1/groups/{gid}/publishers/{id}", a.setRole(store.Publisher, true))
	a.handle("DELETE /v1/groups/{gid}/publishers/{id}", a.setRole(store.Publisher, false))
	a.handle("POST /v1/groups/{gid}/messages", a.groupMessage)
	a.handle("POST /v1/users/{id}/messages", a.directMessage)
	a.handle("GET /v1/route/{id}", a.route)
	a.handle("GET /v1/cluster", a.cluster)
	a.handle("GET /v1/cluster/stats", a.clusterStats)
	a.handle("GET /v1/groups/{gid}/tail", a.groupTail)
	a.handle("GET /healthz", a.healthz)
	a.handle("GET /readyz", a.readyz)
	a.handle("GET /v1/openapi.json", a.openAPI)
	a.handle("GET /console", a.consolePage)
	a.handle("GET /console/{file}", a.consolePage)
	a.handle("POST /console/login", a.consoleLogin)
	a.handle("POST /console/logout", a.consoleLogout)
	a.handle("GET /console/session", a.consoleSessionInfo)
	a.patterns = append(a.patterns, "GET /metrics")
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{}))
	if a.deps.MQTT != nil {
		a.patterns = append(a.patterns, "GET /mqtt")
		a.mux.Handle("GET /mqtt", http.HandlerFunc(a.mqttOverWS))
	}
}

// request is one call on its way through a handler.
type request struct {
	w      http.ResponseWriter
	r      *http.Request
	route  string
	caller caller // set once authenticated, for the log

	// subject is the principal id a refused login tried, for the log.
	subject string
	// client is the client's address (API.client), once asked for.
	client string
}

// handlerFunc serves q; a non-nil error is written as the JSON error.
type handlerFunc func(q *request) error

func (a *API) handle(pattern string, h handlerFunc) {
	a.patterns = append(a.patterns, pattern)
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		q := &request{w: w, r: r, route: pattern}
		if err := h(q); err != nil {
			a.fail(q, err)
		}
	})
}

// ServeHTTP counts every request, turns panics into 500 and replaces the
// mux's own text answers (404, 405, redirects) with JSON ones.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	route := "unmatched"
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.Error("api: panic", "route", route, "panic", fmt.Sprint(v))
			if !sw.wrote {
				a.fail(&request{w: sw, r: r, route: route}, errInternal)
			}
		}
		a.met.requests.WithLabelValues(route, sw.statusText()).Inc()
	}()

	q := &request{w: sw, r: r, route: route}
	if r.Method == http.MethodConnect || !canonicalPath(r.URL.EscapedPath()) {
		a.fail(q, errNotFound)
		return
	}
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		// The mux's own 404 or 405: learn which, answer in JSON.
		rec := &discardWriter{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusMethodNotAllowed {
			sw.Header().Set("Allow", rec.header.Get("Allow"))
			a.fail(q, errMethodNotAllowed)
			return
		}
		a.fail(q, errNotFound)
		return
	}
	route = pattern
	a.mux.ServeHTTP(sw, r)
}

// canonicalPath reports whether p is already clean (no "//", "." or ".."
// elements), so the mux would not redirect it.
func canonicalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.Contains(p, "//")
}

// statusWriter records the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the connection over (MQTT over WebSocket at /mqtt),
// recorded as 101 Switching Protocols.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && !w.wrote {
		w.status, w.wrote = http.StatusSwitchingProtocols, true
	}
	return c, rw, err
}

func (w *statusWriter) statusText() string {
	if !w.wrote {
		return "200"
	}
	return fmt.Sprint(w.status)
}

// discardWriter captures the status and headers of the mux's fallback
// handlers and drops their text bodies.
type discardWriter struct {
	header http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}
