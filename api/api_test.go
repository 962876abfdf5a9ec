package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

// hostileIDs are ids ValidID refuses, sent in bodies.
var hostileIDs = []string{
	"", "+", "#", "a/b", "/", "a b", " ", "a\x00b", "\x00", ".", "..", "a+", "a#",
	"é", "a\tb", "a\nb", "$SYS", "*", ">", strings.Repeat("a", 65), "a\u202eb",
}

func TestCreateUser(t *testing.T) {
	f := newFixture(t)
	var out idResponse
	f.must(201, "POST", "/v1/users", admin, map[string]any{"id": "alice", "password": userPass}).json(t, &out)
	if out.ID != "alice" {
		t.Fatalf("id %q", out.ID)
	}
	p, err := f.st.Principal(t.Context(), "alice")
	if err != nil || p.Kind != store.User || !store.CheckPassword(p.SecretHash, userPass) {
		t.Fatalf("stored %+v, %v", p, err)
	}
	f.login("alice") // the password works

	f.mustErr(409, "already_exists", "POST", "/v1/users", admin, map[string]any{"id": "alice", "password": userPass})
	for _, id := range hostileIDs {
		f.mustErr(400, "invalid_id", "POST", "/v1/users", admin, map[string]any{"id": id, "password": userPass})
	}
	for _, pw := range []string{"", "short", "1234567", "ééééééé", strings.Repeat("x", 1025)} {
		f.mustErr(400, "invalid_password", "POST", "/v1/users", admin, map[string]any{"id": "bob", "password": pw})
	}
	f.must(201, "POST", "/v1/users", admin, map[string]any{"id": "bob", "password": "ëq7§Żñ#¶ø"}) // 9 runes, 16 bytes
	f.must(201, "POST", "/v1/users", admin, map[string]any{"id": "carol", "password": userPass + strings.Repeat("x", 1024-len(userPass))})
	f.mustErr(400, "invalid_password", "POST", "/v1/users", admin, map[string]any{"id": "dave"})
}

func TestAdminAuth(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	tok := f.login("alice")
	dev := f.device("d1")
	body := map[string]any{"id": "x1", "password": userPass}
	for _, c := range []struct {
		name, auth string
		status     int
	}{
		{"none", "", 401},
		{"wrong key", "Bearer not-the-admin-key", 401},
		{"key prefix", "Bearer " + adminKey[:len(adminKey)-1], 401},
		{"key plus", "Bearer " + adminKey + "x", 401},
		{"basic with admin key", basic("admin", adminKey), 401},
		{"empty bearer", "Bearer ", 401},
		{"bare scheme", "Bearer", 401},
		{"unknown scheme", "Token " + adminKey, 401},
		{"huge token", "Bearer " + strings.Repeat("a", 10000), 401},
		{"user token", tok, 403},
		{"device", dev, 403},
	} {
		t.Run(c.name, func(t *testing.T) {
			code := map[int]string{401: "unauthorized", 403: "forbidden"}[c.status]
			r := f.mustErr(c.status, code, "POST", "/v1/users", c.auth, body)
			if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	// Lower-case scheme is fine (RFC 9110: case-insensitive).
	f.must(201, "POST", "/v1/users", "bearer "+adminKey, body)
}

// TestAdminKeyRotation: while two keys are set both are admin, and the
// dropped one stops working at once, as a rotation without downtime needs.
func TestAdminKeyRotation(t *testing.T) {
	f := newFixture(t)
	const next = "next-admin-key-0123456789-abcdef"
	body := func(id string) map[string]any { return map[string]any{"id": id} }
	f.mustErr(401, "unauthorized", "POST", "/v1/groups", "Bearer "+next, body("g0"))
	f.api.SetAdminKeys(adminKey, next)
	f.must(201, "POST", "/v1/groups", "Bearer "+adminKey, body("g1"))
	f.must(201, "POST", "/v1/groups", "Bearer "+next, body("g2"))
	f.api.SetAdminKeys(next)
	f.mustErr(401, "unauthorized", "POST", "/v1/groups", "Bearer "+adminKey, body("g3"))
	f.must(201, "POST", "/v1/groups", "Bearer "+next, body("g4"))
	f.api.SetAdminKeys()
	f.mustErr(401, "unauthorized", "POST", "/v1/groups", "Bearer "+next, body("g5"))
}

func TestEmptyAdminKeyFailsClosed(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.AdminKey = "" })
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer  ", "Bearer " + adminKey} {
		f.mustErr(401, "unauthorized", "POST", "/v1/groups", auth, map[string]any{"id": "g1"})
	}
}

func TestCreateDevice(t *testing.T) {
	f := newFixture(t)
	r := f.must(201, "POST", "/v1/devices", admin, map[string]any{"id": "d1"})
	var out deviceResponse
	r.json(t, &out)
	if out.ID != "d1" || len(out.Key) < 32 {
		t.Fatalf("answer %+v", out)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Error("key answer is cacheable")
	}
	p, _ := f.st.Principal(t.Context(), "d1")
	if p.Kind != store.Device || strings.Contains(p.SecretHash, out.Key) || !store.CheckDeviceKey(p.SecretHash, out.Key) {
		t.Fatalf("stored %+v", p)
	}
	f.must(200, "GET", "/v1/cluster", basic("d1", out.Key), nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/cluster", basic("d1", out.Key+"x"), nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/cluster", basic("d2", out.Key), nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/cluster", basic("d1", ""), nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/cluster", "Basic !!!", nil)
	f.mustErr(409, "already_exists", "POST", "/v1/devices", admin, map[string]any{"id": "d1"})
	for _, id := range hostileIDs {
		f.mustErr(400, "invalid_id", "POST", "/v1/devices", admin, map[string]any{"id": id})
	}
	// A user is not a device, even with a key that would hash right.
	f.user("alice")
	f.mustErr(401, "unauthorized", "GET", "/v1/cluster", basic("alice", userPass), nil)
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	f.device("d1")
	r := f.must(201, "POST", "/v1/sessions", "", map[string]any{"id": "alice", "password": userPass})
	var out loginResponse
	r.json(t, &out)
	if len(out.Token) < 32 || out.PrivateTopic != "/private/alice" {
		t.Fatalf("answer %s", r.body)
	}
	if !slices.Equal(out.MQTT, []string{nodeMQTT, otherMQTT}) {
		t.Fatalf("mqtt %v, want home first", out.MQTT)
	}
	if !slices.Equal(out.MQTTTLS, []string{nodeMQTTTLS, otherMQTTTLS}) {
		t.Fatalf("mqtt_tls %v, want home first", out.MQTTTLS)
	}
	exp, err := time.Parse(time.RFC3339, out.ExpiresAt)
	if err != nil || exp.Sub(f.clock.now()) > sessionTTL || exp.Sub(f.clock.now()) < sessionTTL-time.Second {
		t.Fatalf("expires_at %q (%v), now %v", out.ExpiresAt, err, f.clock.now())
	}
	s, err := f.st.Session(t.Context(), store.HashToken(out.Token))
	if err != nil || s.PrincipalID != "alice" {
		t.Fatalf("session %+v, %v", s, err)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Error("token answer is cacheable")
	}

	// Every failure looks the same.
	want := f.mustErr(401, "unauthorized", "POST", "/v1/sessions", "", map[string]any{"id": "alice", "password": "wrong-password"})
	for _, body := range []map[string]any{
		{"id": "nobody", "password": userPass},
		{"id": "d1", "password": userPass},
		{"id": "alice", "password": ""},
		{"id": "alice"},
	} {
		got := f.mustErr(401, "unauthorized", "POST", "/v1/sessions", "", body)
		if string(got.body) != string(want.body) {
			t.Errorf("%v: %s, want %s", body, got.body, want.body)
		}
	}
	for _, id := range hostileIDs {
		f.mustErr(400, "invalid_id", "POST", "/v1/sessions", "", map[string]any{"id": id, "password": userPass})
	}
	f.mustErr(400, "invalid_password", "POST", "/v1/sessions", "", map[string]any{"id": "alice", "password": strings.Repeat("p", 1025)})
}

func TestLoginRateLimit(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.LoginRate, c.LoginBurst = 0.5, 3 })
	bad := map[string]any{"id": "nobody", "password": "wrong-password"}
	for range 3 {
		f.mustErr(401, "unauthorized", "POST", "/v1/sessions", "", bad)
	}
	r := f.mustErr(429, "rate_limited", "POST", "/v1/sessions", "", bad)
	if r.header.Get("Retry-After") != "2" {
		t.Errorf("Retry-After %q, want 2", r.header.Get("Retry-After"))
	}
	f.clock.add(2 * time.Second)
	f.mustErr(401, "unauthorized", "POST", "/v1/sessions", "", bad)
	f.mustErr(429, "rate_limited", "POST", "/v1/sessions", "", bad)

	off := newFixture(t, func(c *Config) { c.LoginRate, c.LoginAccountFailures = -1, -1 })
	for range 20 {
		off.mustErr(401, "unauthorized", "POST", "/v1/sessions", "", bad)
	}
}

func TestAddrKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:1234", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:9", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.1]:1", "192.0.2.1"},
		{"[fe80::1%eth0]:1", "fe80::/64"},
		{"garbage", "garbage"},
	} {
		if got := addrKey(c.in); got != c.want {
			t.Errorf("addrKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestCurrentSession(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	tok := f.login("alice")
	var out sessionResponse
	f.must(200, "GET", "/v1/sessions/current", tok, nil).json(t, &out)
	if out.ID != "alice" || out.PrivateTopic != "/private/alice" || out.ExpiresAt == "" {
		t.Fatalf("answer %+v", out)
	}
	f.mustErr(403, "forbidden", "GET", "/v1/sessions/current", admin, nil)
	f.mustErr(403, "forbidden", "GET", "/v1/sessions/current", f.device("d1"), nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", "", nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", "Bearer not-a-token", nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", "Bearer "+store.HashToken(strings.TrimPrefix(tok, "Bearer ")), nil)

	// Logout revokes at once, and only that session.
	other := f.login("alice")
	f.must(204, "DELETE", "/v1/sessions/current", tok, nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", tok, nil)
	f.mustErr(401, "unauthorized", "DELETE", "/v1/sessions/current", tok, nil)
	f.must(200, "GET", "/v1/sessions/current", other, nil)

	// Expiry by the API's clock.
	f.clock.add(sessionTTL)
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", other, nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/cluster", other, nil)
}

func TestGroups(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	f.user("bob")
	dev := f.device("d1")
	alice, bob := f.login("alice"), f.login("bob")

	var g groupResponse
	f.must(201, "POST", "/v1/groups", admin, map[string]any{"id": "g1", "members_can_publish": true}).json(t, &g)
	if g.ID != "g1" || !g.MembersCanPublish || g.Members == nil || g.Publishers == nil {
		t.Fatalf("answer %+v", g)
	}
	f.must(201, "POST", "/v1/groups", admin, map[string]any{"id": "g2"})
	f.mustErr(409, "already_exists", "POST", "/v1/groups", admin, map[string]any{"id": "g1"})
	for _, id := range hostileIDs {
		f.mustErr(400, "invalid_id", "POST", "/v1/groups", admin, map[string]any{"id": id})
	}
	f.mustErr(403, "forbidden", "POST", "/v1/groups", alice, map[string]any{"id": "g3"})
	f.mustErr(401, "unauthorized", "POST", "/v1/groups", "", map[string]any{"id": "g3"})

	f.must(204, "PUT", "/v1/groups/g1/members/alice", admin, nil)
	f.must(204, "PUT", "/v1/groups/g1/members/alice", admin, nil) // idempotent
	f.must(204, "PUT", "/v1/groups/g1/members/d1", admin, nil)
	f.must(204, "PUT", "/v1/groups/g1/publishers/d1", admin, nil)
	f.must(204, "PUT", "/v1/groups/g1/members/bob", admin, nil)
	f.must(204, "DELETE", "/v1/groups/g1/members/bob", admin, nil)
	f.must(204, "DELETE", "/v1/groups/g1/publishers/bob", admin, nil) // not held: no error
	f.mustErr(404, "not_found", "PUT", "/v1/groups/nope/members/alice", admin, nil)
	f.mustErr(404, "not_found", "PUT", "/v1/groups/g1/members/nobody", admin, nil)
	f.mustErr(404, "not_found", "DELETE", "/v1/groups/nope/publishers/alice", admin, nil)
	f.mustErr(403, "forbidden", "PUT", "/v1/groups/g1/members/bob", alice, nil)
	f.mustErr(403, "forbidden", "PUT", "/v1/groups/g1/publishers/d1", dev, nil)
	f.mustErr(401, "unauthorized", "DELETE", "/v1/groups/g1/members/alice", "", nil)
	for _, p := range []string{"%2B", "%23", "a%2Fb", "a%20b", "a%00b", "%2e%2e", "%2e", strings.Repeat("a", 65)} {
		f.mustErr(400, "invalid_id", "PUT", "/v1/groups/g1/members/"+p, admin, nil)
		f.mustErr(400, "invalid_id", "PUT", "/v1/groups/"+p+"/members/alice", admin, nil)
		f.mustErr(400, "invalid_id", "GET", "/v1/groups/"+p, admin, nil)
	}

	want := groupResponse{ID: "g1", MembersCanPublish: true, Members: []string{"alice", "d1"}, Publishers: []string{"d1"}}
	for _, auth := range []string{admin, alice, dev} {
		var got groupResponse
		f.must(200, "GET", "/v1/groups/g1", auth, nil).json(t, &got)
		if got.ID != want.ID || got.MembersCanPublish != want.MembersCanPublish ||
			!slices.Equal(got.Members, want.Members) || !slices.Equal(got.Publishers, want.Publishers) {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	f.mustErr(403, "forbidden", "GET", "/v1/groups/g1", bob, nil)
	// A non-admin cannot tell an unknown group from one it is not in.
	f.mustErr(403, "forbidden", "GET", "/v1/groups/nope", bob, nil)
	f.mustErr(404, "not_found", "GET", "/v1/groups/nope", admin, nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/groups/g1", "", nil)
	var g2 groupResponse
	f.must(200, "GET", "/v1/groups/g2", admin, nil).json(t, &g2)
	if g2.Members == nil || g2.Publishers == nil || g2.MembersCanPublish {
		t.Fatalf("g2 %+v", g2)
	}
}

func TestMessages(t *testing.T) {
	f := newFixture(t)
	for _, u := range []string{"alice", "bob", "carol"} {
		f.user(u)
	}
	dev := f.device("d1")
	f.device("d2")
	alice, bob, carol := f.login("alice"), f.login("bob"), f.login("carol")
	f.group("g1", false, []string{"alice", "bob"}, []string{"d1"})
	f.group("open", true, []string{"alice"}, nil)

	hex16 := regexp.MustCompile(`^[0-9a-f]{16}$`)
	send := func(path, auth string, body any) *message.Message {
		t.Helper()
		var out messageResponse
		f.must(202, "POST", path, auth, body).json(t, &out)
		m := f.pub.last(t)
		if !hex16.MatchString(out.ID) || out.ID != message.FormatID(m.ID) {
			t.Fatalf("id %q, forwarded %x", out.ID, m.ID)
		}
		return m
	}

	m := send("/v1/groups/g1/messages", admin, map[string]any{"payload": "hello"})
	if m.Kind != message.Group || m.From != "" || m.To != "g1" || m.QoS != 1 || string(m.Payload) != "hello" {
		t.Fatalf("forwarded %+v", m)
	}
	m = send("/v1/groups/g1/messages", dev, map[string]any{"payload_base64": base64.StdEncoding.EncodeToString([]byte{0, 1, 0xff}), "qos": 0})
	if m.From != "d1" || m.QoS != 0 || string(m.Payload) != "\x00\x01\xff" {
		t.Fatalf("forwarded %+v", m)
	}
	before := time.Now().UnixMilli()
	m = send("/v1/groups/g1/messages", admin, map[string]any{"payload": "soon stale", "ttl": 30})
	if m.Expires < before+30_000 || m.Expires > time.Now().UnixMilli()+30_000 {
		t.Fatalf("ttl 30: expires %d, sent at %d", m.Expires, before)
	}
	m = send("/v1/groups/open/messages", alice, map[string]any{"payload": ""})
	if m.From != "alice" || len(m.Payload) != 0 {
		t.Fatalf("forwarded %+v", m)
	}
	m = send("/v1/users/bob/messages", alice, map[string]any{"payload": "hi bob", "qos": 1}) // share g1
	if m.Kind != message.Direct || m.From != "alice" || m.To != "bob" {
		t.Fatalf("forwarded %+v", m)
	}
	send("/v1/users/alice/messages", alice, map[string]any{"payload": "note to self"})
	send("/v1/users/carol/messages", admin, map[string]any{"payload": "from admin"})
	send("/v1/users/d2/messages", admin, map[string]any{"payload": "to a device"})

	n := f.pub.count()
	// Refusals: ACL first (403 also for unknown targets), then 404 for admins.
	f.mustErr(403, "forbidden", "POST", "/v1/groups/g1/messages", alice, map[string]any{"payload": "x"}) // member, group closed
	f.mustErr(403, "forbidden", "POST", "/v1/groups/g1/messages", carol, map[string]any{"payload": "x"})
	f.mustErr(403, "forbidden", "POST", "/v1/groups/nope/messages", carol, map[string]any{"payload": "x"})
	f.mustErr(403, "forbidden", "POST", "/v1/users/alice/messages", carol, map[string]any{"payload": "x"})
	f.mustErr(403, "forbidden", "POST", "/v1/users/nobody/messages", bob, map[string]any{"payload": "x"})
	f.mustErr(403, "forbidden", "POST", "/v1/users/bob/messages", f.device("d3"), map[string]any{"payload": "x"})
	f.mustErr(404, "not_found", "POST", "/v1/groups/nope/messages", admin, map[string]any{"payload": "x"})
	f.mustErr(404, "not_found", "POST", "/v1/users/nobody/messages", admin, map[string]any{"payload": "x"})
	f.mustErr(401, "unauthorized", "POST", "/v1/users/bob/messages", "", map[string]any{"payload": "x"})
	f.mustErr(400, "invalid_id", "POST", "/v1/users/%2B/messages", admin, map[string]any{"payload": "x"})
	f.mustErr(400, "invalid_id", "POST", "/v1/groups/%23/messages", admin, map[string]any{"payload": "x"})

	big := strings.Repeat("x", 256<<10)
	for _, c := range []struct {
		body   any
		status int
		code   string
	}{
		{map[string]any{}, 400, "invalid_payload"},
		{map[string]any{"payload": "a", "payload_base64": "YQ=="}, 400, "invalid_payload"},
		{map[string]any{"payload": nil}, 400, "invalid_payload"},
		{map[string]any{"payload_base64": "not base64!"}, 400, "invalid_payload"},
		{map[string]any{"payload_base64": "YQ"}, 400, "invalid_payload"}, // unpadded
		{map[string]any{"payload": "a", "qos": 3}, 400, "invalid_qos"},
		{map[string]any{"payload": "a", "qos": -1}, 400, "invalid_qos"},
		{map[string]any{"payload": "a", "qos": 1.5}, 400, "invalid_field"},
		{map[string]any{"payload": "a", "ttl": 0}, 400, "invalid_ttl"},
		{map[string]any{"payload": "a", "ttl": -5}, 400, "invalid_ttl"},
		{map[string]any{"payload": "a", "ttl": 1 << 32}, 400, "invalid_ttl"},
		{map[string]any{"payload": "a", "ttl": 1.5}, 400, "invalid_field"},
		{map[string]any{"payload": "a", "qos": "1"}, 400, "invalid_field"},
		{map[string]any{"payload": 5}, 400, "invalid_field"},
		{map[string]any{"payload": "a", "to": "bob"}, 400, "unknown_field"},
		{map[string]any{"payload": big + "x"}, 413, "payload_too_large"},
		{map[string]any{"payload_base64": base64.StdEncoding.EncodeToString([]byte(big + "x"))}, 413, "payload_too_large"},
	} {
		f.mustErr(c.status, c.code, "POST", "/v1/groups/g1/messages", admin, c.body)
	}
	if f.pub.count() != n {
		t.Fatal("a refused message was forwarded")
	}
	send("/v1/groups/g1/messages", admin, map[string]any{"payload": big}) // exactly the limit
	send("/v1/groups/g1/messages", admin, map[string]any{"payload_base64": base64.StdEncoding.EncodeToString([]byte(big))})

	f.pub.mu.Lock()
	f.pub.err = errDown
	f.pub.mu.Unlock()
	f.mustErr(503, "unavailable", "POST", "/v1/groups/g1/messages", admin, map[string]any{"payload": "x"})

	if got := f.counter("pushring_http_messages_total", "group"); got != 6 {
		t.Errorf("group messages counted %v, want 6", got)
	}
	if got := f.counter("pushring_http_messages_total", "direct"); got != 4 {
		t.Errorf("direct messages counted %v, want 4", got)
	}
}

// "retain": a group message is kept by the Retainer before it is
// forwarded; a direct one is refused; no room is 507 and nothing is
// forwarded; without a Retainer it is refused.
func TestMessagesRetain(t *testing.T) {
	f := newFixture(t)
	dev := f.device("d1")
	f.user("alice")
	f.group("g1", false, []string{"alice"}, []string{"d1"})
	f.must(202, "POST", "/v1/groups/g1/messages", dev, map[string]any{"payload": "state", "retain": true})
	if f.ret.count() != 1 || f.pub.count() != 1 || f.ret.msgs[0] != f.pub.last(t) {
		t.Fatalf("retained %d, forwarded %d", f.ret.count(), f.pub.count())
	}
	f.must(202, "POST", "/v1/groups/g1/messages", dev, map[string]any{"payload": "plain"})
	f.mustErr(400, "invalid_retain", "POST", "/v1/users/alice/messages", admin, map[string]any{"payload": "x", "retain": true})
	f.mustErr(400, "invalid_field", "POST", "/v1/groups/g1/messages", admin, map[string]any{"payload": "x", "retain": "yes"})
	f.ret.mu.Lock()
	f.ret.err = fmt.Errorf("bucket: %w", ErrRetainedFull)
	f.ret.mu.Unlock()
	f.mustErr(507, "retained_full", "POST", "/v1/groups/g1/messages", dev, map[string]any{"payload": "x", "retain": true})
	f.ret.mu.Lock()
	f.ret.err = errDown
	f.ret.mu.Unlock()
	f.mustErr(503, "unavailable", "POST", "/v1/groups/g1/messages", dev, map[string]any{"payload": "x", "retain": true})
	if f.ret.count() != 1 || f.pub.count() != 2 {
		t.Fatalf("retained %d, forwarded %d", f.ret.count(), f.pub.count())
	}

	g := newFixtureDeps(t, func(d *Deps) { d.Retainer = nil })
	g.group("g1", false, nil, nil)
	g.mustErr(400, "retain_not_supported", "POST", "/v1/groups/g1/messages", admin, map[string]any{"payload": "x", "retain": true})
}

func TestRouteAndCluster(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	for _, auth := range []string{admin, f.login("alice"), f.device("d1")} {
		var rt struct {
			ID   string          `json:"id"`
			Node membership.Node `json:"node"`
		}
		f.must(200, "GET", "/v1/route/bob", auth, nil).json(t, &rt)
		if rt.ID != "bob" || rt.Node.ID != "n1" || !slices.Equal(rt.Node.MQTT, n1.MQTT) {
			t.Fatalf("route %+v", rt)
		}
		var cl struct {
			Self  membership.Node   `json:"self"`
			Nodes []membership.Node `json:"nodes"`
		}
		f.must(200, "GET", "/v1/cluster", auth, nil).json(t, &cl)
		if cl.Self.ID != "n1" || len(cl.Nodes) != 2 || cl.Nodes[1].ID != "n2" {
			t.Fatalf("cluster %+v", cl)
		}
	}
	f.mustErr(401, "unauthorized", "GET", "/v1/route/bob", "", nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/cluster", "Bearer nope", nil)
	f.mustErr(400, "invalid_id", "GET", "/v1/route/a%2Fb", admin, nil)
	f.mustErr(400, "invalid_id", "GET", "/v1/route/%2B", admin, nil)
}

func TestHealthAndMetrics(t *testing.T) {
	f := newFixture(t)
	r := f.must(200, "GET", "/healthz", "", nil)
	if strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Fatalf("healthz %s", r.body)
	}
	f.must(200, "GET", "/readyz", "", nil)
	f.ready = errDown
	f.mustErr(503, "not_ready", "GET", "/readyz", "", nil)
	f.must(200, "GET", "/healthz", "", nil) // alive while not ready
	f.ready = nil
	f.must(200, "HEAD", "/healthz", "", nil)

	f.mustErr(401, "unauthorized", "GET", "/v1/cluster", "", nil)
	f.mustErr(404, "not_found", "GET", "/nope", "", nil)
	m := string(f.must(200, "GET", "/metrics", "", nil).body)
	for _, want := range []string{
		`pushring_http_requests_total{code="200",route="GET /healthz"} 3`,
		`pushring_http_requests_total{code="503",route="GET /readyz"} 1`,
		`pushring_http_requests_total{code="401",route="GET /v1/cluster"} 1`,
		`pushring_http_requests_total{code="404",route="unmatched"} 1`,
		`pushring_http_errors_total{code="unauthorized"} 1`,
		`pushring_http_errors_total{code="not_found"} 1`,
		`pushring_http_errors_total{code="not_ready"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(f.logs.String(), `"code":"not_ready"`) {
		t.Error("refusal not logged")
	}

	// A second API on the same registry reuses the collectors.
	if _, err := New(Config{Registry: f.reg}, f.st, Deps{Publisher: f.pub, ACL: f.acl, Cluster: twoNodes{}}); err != nil {
		t.Fatal(err)
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/", "/v1", "/v1/", "/v1/users/", "/v1/nope", "/v2/users", "/healthz/", "/metrics/x", "/v1/groups/g1/members"} {
		f.mustErr(404, "not_found", "GET", p, admin, nil)
	}
	// Unclean paths are not redirected (the mux would answer 307 in text).
	for _, p := range []string{"//v1/cluster", "/v1/./cluster", "/v1/groups/../cluster", "/v1//cluster"} {
		r := f.mustErr(404, "not_found", "GET", p, admin, nil)
		if r.header.Get("Location") != "" {
			t.Errorf("%s redirected", p)
		}
	}
	for _, c := range []struct{ method, path, allow string }{
		{"PUT", "/v1/users", "GET, HEAD, POST"},
		{"POST", "/v1/groups/g1", "DELETE, GET, HEAD"},
		{"POST", "/v1/sessions/current", "DELETE, GET, HEAD"},
		{"PATCH", "/v1/groups/g1/members/a", "DELETE, PUT"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		r := f.mustErr(405, "method_not_allowed", c.method, c.path, admin, nil)
		if r.header.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, r.header.Get("Allow"), c.allow)
		}
	}
	// A raw request line the client library would clean up.
	req, _ := http.NewRequest("GET", f.srv.URL, nil)
	req.URL = &url.URL{Scheme: "http", Host: req.URL.Host, Opaque: "/v1/groups/a/../b"}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("dot-dot path: %d", res.StatusCode)
	}
}

// TestHostileBodies sends malformed bodies to every endpoint that reads one.
func TestHostileBodies(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxBodyBytes = 4096 })
	f.user("alice")
	f.group("g1", false, nil, nil)
	endpoints := []struct {
		path string
		auth string
		good string
	}{
		{"/v1/users", admin, `{"id":"u1","password":"` + userPass + `"}`},
		{"/v1/devices", admin, `{"id":"u1"}`},
		{"/v1/sessions", "", `{"id":"alice","password":"` + userPass + `"}`},
		{"/v1/groups", admin, `{"id":"g2"}`},
		{"/v1/groups/g1/messages", admin, `{"payload":"x"}`},
		{"/v1/users/alice/messages", admin, `{"payload":"x"}`},
	}
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"empty", "", 400, "empty_body"},
		{"spaces", " \n\t", 400, "empty_body"},
		{"null", "null", 400, "bad_json"},
		{"array", `[{"F":"x"}]`, 400, "bad_json"},
		{"string", `"id"`, 400, "bad_json"},
		{"number", `1`, 400, "bad_json"},
		{"truncated", `{"F":"x"`, 400, "bad_json"},
		{"bad syntax", `{"F":}`, 400, "bad_json"},
		{"single quotes", `{'F':'x'}`, 400, "bad_json"},
		{"trailing comma", `{"F":"x",}`, 400, "bad_json"},
		{"comment", `{"F":"x"/*c*/}`, 400, "bad_json"},
		{"bare word", `{"F":x}`, 400, "bad_json"},
		{"invalid utf8 key", "{\"\xff\":1}", 400, "unknown_field"},
		{"unknown field", `{"zzz":1}`, 400, "unknown_field"},
		{"case variant", `{"UPPER":"x"}`, 400, "unknown_field"},
		{"duplicate", `{"F":"a","F":"b"}`, 400, "duplicate_field"},
		{"escaped duplicate", `{"F":"a","\u00F":"b"}`, 400, "duplicate_field"},
		{"trailing object", `{}{}`, 400, "trailing_data"},
		{"trailing garbage", `{} x`, 400, "trailing_data"},
		{"nested", `{"F":{"F":"x"}}`, 400, "invalid_field"},
		{"wrong type", `{"F":[]}`, 400, "invalid_field"},
		{"deep", strings.Repeat("[", 3000), 400, "bad_json"},
		{"nul byte", "{\x00}", 400, "bad_json"},
		{"huge", `{"id":"` + strings.Repeat("a", 5000) + `"}`, 413, "body_too_large"},
		{"huge whitespace", "{}" + strings.Repeat(" ", 5000), 413, "body_too_large"},
	}
	for _, e := range endpoints {
		fields := fieldNames(map[string]any{
			"/v1/users": &credentialsRequest{}, "/v1/devices": &deviceRequest{}, "/v1/sessions": &credentialsRequest{},
			"/v1/groups": &groupRequest{}, "/v1/groups/g1/messages": &messageRequest{}, "/v1/users/alice/messages": &messageRequest{},
		}[e.path])
		first := slices.Sorted(maps.Keys(fields))[0]
		for _, c := range cases {
			body := strings.ReplaceAll(c.body, "UPPER", strings.ToUpper(first))
			body = strings.ReplaceAll(body, `\u00F`, `\u00`+fmt.Sprintf("%x", first[0])+first[1:])
			body = strings.ReplaceAll(body, "F", first)
			t.Run(e.path+"/"+c.name, func(t *testing.T) {
				f.with(t).mustErr(c.status, c.code, "POST", e.path, e.auth, body)
			})
		}
		for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "json", ";;"} {
			f.mustErr(415, "unsupported_media_type", "POST", e.path, e.auth, e.good, "Content-Type", ct)
		}
	}
	if f.pub.count() != 0 {
		t.Fatal("a hostile body was forwarded")
	}
	// The good bodies pass, also with a charset or without Content-Type.
	f.must(201, "POST", "/v1/groups", admin, `{"id":"g3"}`)
	if r := f.do("POST", "/v1/groups", admin, `{"id":"g4"}`, "Content-Type", "application/json; charset=utf-8"); r.status != 201 {
		t.Fatalf("charset: %d %s", r.status, r.body)
	}
	if r := f.do("POST", "/v1/groups", admin, `{"id":"g5"}`, "Content-Type", ""); r.status != 201 {
		t.Fatalf("no Content-Type: %d %s", r.status, r.body)
	}
}

func TestStoreUnavailable(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	tok := f.login("alice")
	dev := f.device("d1")
	f.st.SetUnavailable(true)
	f.mustErr(503, "unavailable", "POST", "/v1/sessions", "", map[string]any{"id": "alice", "password": userPass})
	f.mustErr(503, "unavailable", "GET", "/v1/sessions/current", tok, nil) // fail closed, not 401 and not 200
	f.mustErr(503, "unavailable", "GET", "/v1/cluster", dev, nil)
	f.mustErr(503, "unavailable", "POST", "/v1/groups", admin, map[string]any{"id": "g1"})
	f.mustErr(503, "unavailable", "POST", "/v1/devices", admin, map[string]any{"id": "d2"})
	f.mustErr(503, "unavailable", "POST", "/v1/users/alice/messages", admin, map[string]any{"payload": "x"})
	f.st.SetUnavailable(false)
	f.must(200, "GET", "/v1/sessions/current", tok, nil)
}

// TestNoSecretsLeak runs every kind of call, good and bad, and checks that
// no log line and no answer (but the one that issues it) holds a password,
// token or key.
func TestNoSecretsLeak(t *testing.T) {
	f := newFixture(t)
	const pw = "Sup3r-Secret-Passw0rd"
	const wrongPW = "Wr0ng-Secret-Passw0rd"
	var bodies []string
	keep := func(r resp) resp { bodies = append(bodies, string(r.body)); return r }

	keep(f.must(201, "POST", "/v1/users", admin, map[string]any{"id": "alice", "password": pw}))
	keep(f.do("POST", "/v1/users", admin, map[string]any{"id": "alice", "password": pw}))
	keep(f.do("POST", "/v1/users", admin, map[string]any{"id": "a+b", "password": pw}))
	keep(f.do("POST", "/v1/users", admin, `{"id":"bob","password":"`+pw+`","x":1}`))
	keep(f.do("POST", "/v1/users", admin, `{"id":"bob","password":`+pw+`}`))
	keep(f.do("POST", "/v1/users", admin, `{"id":"bob","`+pw+`":1}`))
	var dev deviceResponse
	f.must(201, "POST", "/v1/devices", admin, map[string]any{"id": "d1"}).json(t, &dev)
	var login loginResponse
	f.must(201, "POST", "/v1/sessions", "", map[string]any{"id": "alice", "password": pw}).json(t, &login)
	tok := login.Token
	keep(f.do("POST", "/v1/sessions", "", map[string]any{"id": "alice", "password": wrongPW}))
	keep(f.do("POST", "/v1/sessions", "", map[string]any{"id": "d1", "password": dev.Key}))
	keep(f.do("GET", "/v1/sessions/current", "Bearer "+tok, nil))
	keep(f.do("GET", "/v1/sessions/current", "Bearer "+tok+"x", nil))
	keep(f.do("GET", "/v1/sessions/current", basic("d1", dev.Key), nil))
	keep(f.do("GET", "/v1/cluster", basic("d1", dev.Key+"x"), nil))
	keep(f.do("POST", "/v1/groups", basic("d1", dev.Key), map[string]any{"id": "g1"}))
	keep(f.do("POST", "/v1/groups", "Bearer "+adminKey+"x", map[string]any{"id": "g1"}))
	f.do("GET", "/v1/route/"+tok, admin, nil) // echoes the id it was given, by design: logs only
	keep(f.do("GET", "/v1/nope/"+tok, admin, nil))
	keep(f.do("DELETE", "/v1/sessions/current", "Bearer "+tok, nil))
	keep(f.do("DELETE", "/v1/sessions/current", "Bearer "+tok, nil))
	keep(f.do("GET", "/metrics", "", nil))

	logs := f.logs.String()
	if !strings.Contains(logs, "api: refused") {
		t.Fatal("nothing logged")
	}
	for _, secret := range []string{pw, wrongPW, tok, dev.Key, adminKey, store.HashToken(tok)} {
		if strings.Contains(logs, secret) {
			t.Errorf("a log line holds secret %q:\n%s", secret, logs)
		}
		for _, b := range bodies {
			if strings.Contains(b, secret) {
				t.Errorf("an answer holds secret %q: %s", secret, b)
			}
		}
	}
}

func TestConcurrent(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	f.group("g1", true, []string{"alice"}, nil)
	tok := f.login("alice")
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			var err error
			defer func() { errs <- err }()
			for range 20 {
				switch i % 3 {
				case 0:
					err = f.check(202, "", "POST", "/v1/groups/g1/messages", tok, map[string]any{"payload": "x"})
				case 1:
					err = f.check(200, "", "GET", "/v1/groups/g1", tok, nil)
				default:
					err = f.check(404, "not_found", "GET", "/x", "", nil)
				}
				if err != nil {
					return
				}
			}
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// panicCluster fails every lookup, to test that a panic is a JSON 500.
type panicCluster struct{ twoNodes }

func (panicCluster) HomeNode(string) membership.Node { panic("boom") }

func TestPanicIsJSON500(t *testing.T) {
	f := newFixture(t)
	a, err := New(Config{AdminKey: adminKey, Logger: f.api.log}, f.acl, Deps{Publisher: f.pub, ACL: f.acl, Cluster: panicCluster{}})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Config.Handler = a
	f.mustErr(500, "internal", "GET", "/v1/route/alice", admin, nil)
	f.must(200, "GET", "/v1/cluster", admin, nil)
	if !strings.Contains(f.logs.String(), "api: panic") {
		t.Error("panic not logged")
	}
}

func TestNewRefusesMissingDeps(t *testing.T) {
	deps := Deps{Publisher: dropPublisher{}, ACL: store.NewDirectory(store.NewMemory()), Cluster: twoNodes{}}
	for name, mod := range map[string]func(*Deps) store.Store{
		"store":     func(*Deps) store.Store { return nil },
		"Publisher": func(d *Deps) store.Store { d.Publisher = nil; return store.NewMemory() },
		"ACL":       func(d *Deps) store.Store { d.ACL = nil; return store.NewMemory() },
		"Cluster":   func(d *Deps) store.Store { d.Cluster = nil; return store.NewMemory() },
	} {
		d := deps
		st := mod(&d)
		if a, err := New(DefaultConfig(), st, d); !errors.Is(err, ErrInvalidConfig) || a != nil {
			t.Errorf("no %s: %v, %v", name, a, err)
		}
	}
}
