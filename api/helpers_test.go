package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

const (
	adminKey     = "admin-key-0123456789-abcdef"
	admin        = "Bearer " + adminKey
	userPass     = "correct-horse-battery"
	nodeMQTT     = "10.0.0.1:1883"
	otherMQTT    = "10.0.0.2:1883"
	nodeMQTTTLS  = "10.0.0.1:8883"
	otherMQTTTLS = "10.0.0.2:8883"
	sessionTTL   = time.Hour
)

// recPublisher records forwarded messages; err, if set, fails Forward.
type recPublisher struct {
	mu   sync.Mutex
	msgs []*message.Message
	err  error
}

func (p *recPublisher) Forward(ctx context.Context, m *message.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.msgs = append(p.msgs, m)
	return nil
}

func (p *recPublisher) last(t *testing.T) *message.Message {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.msgs) == 0 {
		t.Fatal("nothing forwarded")
	}
	return p.msgs[len(p.msgs)-1]
}

func (p *recPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// recRetainer records retained messages; err, if set, fails Retain.
type recRetainer struct {
	mu   sync.Mutex
	msgs []*message.Message
	err  error
}

func (r *recRetainer) Retain(ctx context.Context, m *message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.msgs = append(r.msgs, m)
	return nil
}

func (r *recRetainer) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// twoNodes is a Cluster of two nodes where everyone lives on n1.
type twoNodes struct{}

var (
	n1 = membership.Node{ID: "n1", MQTT: []string{nodeMQTT}, MQTTTLS: []string{nodeMQTTTLS}, HTTP: "10.0.0.1:8080", State: "alive", RingPart: 0.5}
	n2 = membership.Node{ID: "n2", MQTT: []string{otherMQTT}, MQTTTLS: []string{otherMQTTTLS}, HTTP: "10.0.0.2:8080", State: "alive", RingPart: 0.5}
)

func (twoNodes) Self() membership.Node              { return n1 }
func (twoNodes) Nodes() []membership.Node           { return []membership.Node{n1, n2} }
func (twoNodes) HomeNode(id string) membership.Node { return n1 }

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	st    *store.Memory
	acl   *store.Directory // also the API's store, as in node
	pub   *recPublisher
	ret   *recRetainer
	clock *clock
	logs  *testutil.SyncBuffer
	reg   *prometheus.Registry
	ready error
	api   *API
	srv   *httptest.Server
}

// newFixture starts an API on an httptest server. mod may change the
// config before New.
func newFixture(t *testing.T, mod ...func(*Config)) *fixture {
	t.Helper()
	return newFixtureDeps(t, nil, mod...)
}

// newFixtureDeps is newFixture with deps (if not nil) changing the Deps
// before New.
func newFixtureDeps(t *testing.T, deps func(*Deps), mod ...func(*Config)) *fixture {
	t.Helper()
	f := &fixture{
		t:     t,
		st:    store.NewMemory(),
		pub:   &recPublisher{},
		ret:   &recRetainer{},
		clock: &clock{t: time.Now().UTC()},
		logs:  &testutil.SyncBuffer{},
		reg:   prometheus.NewRegistry(),
	}
	f.acl = store.NewDirectory(f.st)
	if err := f.acl.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.acl.Close() })
	cfg := DefaultConfig()
	cfg.AdminKey = adminKey
	cfg.SessionTTL = sessionTTL
	cfg.Logger = slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Registry = f.reg
	cfg.Now = f.clock.now
	cfg.LoginBurst = 1000 // TestLoginRateLimit sets its own
	for _, m := range mod {
		m(&cfg)
	}
	d := Deps{
		Publisher: f.pub,
		Retainer:  f.ret,
		ACL:       f.acl,
		Cluster:   twoNodes{},
		IDs:       message.NewIDSource("n1"),
		Ready:     func() error { return f.ready },
	}
	if deps != nil {
		deps(&d)
	}
	a, err := New(cfg, f.acl, d)
	if err != nil {
		t.Fatal(err)
	}
	f.api = a
	f.srv = httptest.NewServer(f.api)
	t.Cleanup(f.srv.Close)
	return f
}

// with returns f reporting to t (a subtest).
func (f *fixture) with(t *testing.T) *fixture {
	c := *f
	c.t = t
	return &c
}

// resp is an answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// errCode returns the error code of an error answer, checking its shape.
func (r resp) errCode(t *testing.T) string {
	t.Helper()
	code, err := r.checkErr()
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// checkErr is errCode for goroutines other than the test's: it returns
// what is wrong instead of failing the test.
func (r resp) checkErr() (string, error) {
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == nil || e.Error.Code == "" || e.Error.Message == "" {
		return "", fmt.Errorf("status %d: not a JSON error: %q (%v)", r.status, r.body, err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return "", fmt.Errorf("error Content-Type %q", ct)
	}
	return e.Error.Code, nil
}

// do sends a request. body is nil, a string or []byte (sent as is), or a
// value sent as JSON. auth is the Authorization header ("" for none).
func (f *fixture) do(method, path, auth string, body any, hdr ...string) resp {
	f.t.Helper()
	r, err := f.try(method, path, auth, body, hdr...)
	if err != nil {
		f.t.Fatal(err)
	}
	return r
}

// try is do for goroutines other than the test's: it returns failures
// instead of failing the test.
func (f *fixture) try(method, path, auth string, body any, hdr ...string) (resp, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		return resp{}, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	// Every answer of every test must be one the OpenAPI document
	// describes.
	if err := checkAnswer(req, res.StatusCode, res.Header, data); err != nil {
		return resp{}, err
	}
	return resp{status: res.StatusCode, header: res.Header, body: data}, nil
}

// check is must and mustErr (code != "") for goroutines other than the
// test's: it returns what is wrong instead of failing the test.
func (f *fixture) check(want int, code, method, path, auth string, body any) error {
	r, err := f.try(method, path, auth, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if r.status != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if code == "" {
		return nil
	}
	got, err := r.checkErr()
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if got != code {
		return fmt.Errorf("%s %s: code %q, want %q", method, path, got, code)
	}
	return nil
}

// must sends a request and fails unless the status is want.
func (f *fixture) must(want int, method, path, auth string, body any) resp {
	f.t.Helper()
	r := f.do(method, path, auth, body)
	if r.status != want {
		f.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// mustErr sends a request and checks the status and the error code.
func (f *fixture) mustErr(status int, code, method, path, auth string, body any, hdr ...string) resp {
	f.t.Helper()
	r := f.do(method, path, auth, body, hdr...)
	if r.status != status {
		f.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	if got := r.errCode(f.t); got != code {
		f.t.Fatalf("%s %s: code %q, want %q", method, path, got, code)
	}
	return r
}

var (
	pwHashOnce sync.Once
	pwHash     string
)

// user creates a user with password userPass directly in the store (one
// argon2 hash per test binary).
func (f *fixture) user(id string) {
	f.t.Helper()
	pwHashOnce.Do(func() {
		var err error
		if pwHash, err = store.HashPassword(userPass); err != nil {
			panic(err)
		}
	})
	if err := f.st.CreatePrincipal(context.Background(), store.Principal{ID: id, Kind: store.User, SecretHash: pwHash}); err != nil {
		f.t.Fatal(err)
	}
}

// device creates a device over the API and returns its Basic auth header
// value.
func (f *fixture) device(id string) string {
	f.t.Helper()
	var out deviceResponse
	f.must(201, "POST", "/v1/devices", admin, map[string]any{"id": id}).json(f.t, &out)
	return basic(id, out.Key)
}

func basic(id, key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+key))
}

// login logs id in and returns its "Bearer <token>" header value.
func (f *fixture) login(id string) string {
	f.t.Helper()
	var out loginResponse
	f.must(201, "POST", "/v1/sessions", "", map[string]any{"id": id, "password": userPass}).json(f.t, &out)
	return "Bearer " + out.Token
}

// group creates gid with the given members and publishers.
func (f *fixture) group(gid string, membersCanPublish bool, members, publishers []string) {
	f.t.Helper()
	f.must(201, "POST", "/v1/groups", admin, map[string]any{"id": gid, "members_can_publish": membersCanPublish})
	for _, m := range members {
		f.must(204, "PUT", "/v1/groups/"+gid+"/members/"+m, admin, nil)
	}
	for _, p := range publishers {
		f.must(204, "PUT", "/v1/groups/"+gid+"/publishers/"+p, admin, nil)
	}
}

var errDown = errors.New("bus down")

// counter reads the value of counter name whose single label is value.
func (f *fixture) counter(name, value string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
