package api

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

// listIDs follows a list call's cursors and returns the ids, pages of
// limit.
func (f *fixture) listIDs(path, field string, limit int) []string {
	f.t.Helper()
	var ids []string
	cursor := ""
	for range 100 {
		var page map[string]any
		q := fmt.Sprintf("%slimit=%d", path, limit)
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		f.must(200, "GET", q, admin, nil).json(f.t, &page)
		items, _ := page[field].([]any)
		if len(items) > limit {
			f.t.Fatalf("%s: %d items, limit %d", q, len(items), limit)
		}
		for _, it := range items {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		next, ok := page["next_cursor"].(string)
		if !ok {
			f.t.Fatalf("%s: no next_cursor in %v", q, page)
		}
		if next == "" {
			return ids
		}
		cursor = next
	}
	f.t.Fatal("the list never ends")
	return nil
}

func TestAdminLists(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"bob", "alice", "al.ex", "zed"} {
		f.user(id)
	}
	f.device("sensor-1")
	f.device("alarm")
	f.group("g2", false, []string{"bob"}, nil)
	f.group("g1", true, nil, nil)
	f.group("home", false, nil, nil)
	for _, limit := range []int{1, 2, 500} {
		if got, want := f.listIDs("/v1/users?", "users", limit), []string{"al.ex", "alice", "bob", "zed"}; !slices.Equal(got, want) {
			t.Fatalf("users by %d: %q, want %q", limit, got, want)
		}
		if got, want := f.listIDs("/v1/users?prefix=al&", "users", limit), []string{"al.ex", "alice"}; !slices.Equal(got, want) {
			t.Fatalf("users al by %d: %q, want %q", limit, got, want)
		}
		if got, want := f.listIDs("/v1/devices?", "devices", limit), []string{"alarm", "sensor-1"}; !slices.Equal(got, want) {
			t.Fatalf("devices by %d: %q, want %q", limit, got, want)
		}
		if got, want := f.listIDs("/v1/groups?", "groups", limit), []string{"g1", "g2", "home"}; !slices.Equal(got, want) {
			t.Fatalf("groups by %d: %q, want %q", limit, got, want)
		}
		if got, want := f.listIDs("/v1/groups?prefix=g&", "groups", limit), []string{"g1", "g2"}; !slices.Equal(got, want) {
			t.Fatalf("groups g by %d: %q, want %q", limit, got, want)
		}
	}
	var one struct {
		Users []principalResponse `json:"users"`
	}
	f.must(200, "GET", "/v1/users?prefix=zed", admin, nil).json(t, &one)
	if len(one.Users) != 1 || one.Users[0].Kind != "user" || one.Users[0].Created == "" {
		t.Fatalf("zed listed as %+v", one.Users)
	}
	var groups groupList
	f.must(200, "GET", "/v1/groups?prefix=g1", admin, nil).json(t, &groups)
	if len(groups.Groups) != 1 || !groups.Groups[0].MembersCanPublish {
		t.Fatalf("g1 listed as %+v", groups.Groups)
	}
	for _, q := range []string{"?limit=0", "?limit=501", "?limit=x", "?limit=1&limit=2", "?prefix=a/b", "?cursor=%00", "?sort=id", "?prefix=" + strings.Repeat("a", 65)} {
		for _, p := range []string{"/v1/users", "/v1/devices", "/v1/groups"} {
			f.mustErr(400, "invalid_query", "GET", p+q, admin, nil)
		}
	}
	tok := f.login("bob")
	for _, p := range []string{"/v1/users", "/v1/devices", "/v1/groups"} {
		f.mustErr(403, "forbidden", "GET", p, tok, nil)
		f.mustErr(401, "unauthorized", "GET", p, "", nil)
	}
}

func TestAdminPrincipal(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	f.user("bob")
	d1 := f.device("d1")
	f.group("g1", false, []string{"alice"}, []string{"alice", "d1"})
	f.group("g2", false, []string{"alice"}, nil)
	tokA := f.login("alice")

	var p principalResponse
	f.must(200, "GET", "/v1/users/alice", admin, nil).json(t, &p)
	if p.ID != "alice" || p.Kind != "user" {
		t.Fatalf("GET user: %+v", p)
	}
	f.must(200, "GET", "/v1/users/alice", tokA, nil) // herself
	f.mustErr(403, "forbidden", "GET", "/v1/users/bob", tokA, nil)
	f.mustErr(404, "not_found", "GET", "/v1/users/d1", admin, nil) // a device is no user
	f.mustErr(404, "not_found", "GET", "/v1/devices/alice", admin, nil)
	f.mustErr(404, "not_found", "GET", "/v1/users/nobody", admin, nil)
	f.mustErr(400, "invalid_id", "GET", "/v1/users/a*b", admin, nil)
	f.must(200, "GET", "/v1/devices/d1", d1, nil) // itself

	var ms membershipsResponse
	f.must(200, "GET", "/v1/users/alice/groups", tokA, nil).json(t, &ms)
	want := []membershipResponse{{ID: "g1", Member: true, Publisher: true}, {ID: "g2", Member: true}}
	if !slices.Equal(ms.Groups, want) {
		t.Fatalf("alice's groups %+v, want %+v", ms.Groups, want)
	}
	f.must(200, "GET", "/v1/devices/d1/groups", admin, nil).json(t, &ms)
	if !slices.Equal(ms.Groups, []membershipResponse{{ID: "g1", Publisher: true}}) {
		t.Fatalf("d1's groups %+v", ms.Groups)
	}
	f.mustErr(403, "forbidden", "GET", "/v1/users/bob/groups", tokA, nil)

	// Deletes are the admin's; the user is gone from the store, its
	// groups and its sessions.
	f.mustErr(403, "forbidden", "DELETE", "/v1/users/alice", tokA, nil)
	f.must(204, "DELETE", "/v1/users/alice", admin, nil)
	f.mustErr(404, "not_found", "DELETE", "/v1/users/alice", admin, nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", tokA, nil)
	// A session the delete did not sweep (written meanwhile) still does
	// not serve a new alice.
	if err := f.st.CreateSession(context.Background(), store.Session{TokenHash: store.HashToken(strings.TrimPrefix(tokA, "Bearer ")),
		PrincipalID: "alice", Created: f.clock.now().Add(-time.Minute), Expires: f.clock.now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f.clock.add(time.Second)
	f.user("alice")
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", tokA, nil)
	var g groupResponse
	f.must(200, "GET", "/v1/groups/g1", admin, nil).json(t, &g)
	if len(g.Members) != 0 || !slices.Equal(g.Publishers, []string{"d1"}) {
		t.Fatalf("g1 after alice went: %+v", g)
	}
	f.mustErr(404, "not_found", "DELETE", "/v1/users/d1", admin, nil)
	f.must(204, "DELETE", "/v1/devices/d1", admin, nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/devices/d1", d1, nil)
	f.mustErr(404, "not_found", "GET", "/v1/devices/d1", admin, nil)
}

func TestAdminPasswordAndSessions(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	f.user("bob")
	tok1, tok2 := f.login("alice"), f.login("alice")
	tokB := f.login("bob")

	var ss loginSessionsResponse
	f.must(200, "GET", "/v1/users/alice/sessions", tok1, nil).json(t, &ss)
	if len(ss.Sessions) != 2 || ss.Sessions[0].Current == ss.Sessions[1].Current || len(ss.Sessions[0].ID) != sessionIDLen {
		t.Fatalf("alice's sessions %+v", ss.Sessions)
	}
	f.mustErr(403, "forbidden", "GET", "/v1/users/alice/sessions", tokB, nil)

	const newPass = "violet-harbor-quantum-mosaic"
	// The user needs her old password; a wrong one is refused.
	f.mustErr(403, "forbidden", "PUT", "/v1/users/alice/password", tok1, map[string]any{"password": newPass})
	f.mustErr(403, "forbidden", "PUT", "/v1/users/alice/password", tok1, map[string]any{"password": newPass, "old_password": "wrong"})
	f.mustErr(400, "invalid_password", "PUT", "/v1/users/alice/password", tok1, map[string]any{"password": "alice", "old_password": userPass})
	f.mustErr(403, "forbidden", "PUT", "/v1/users/alice/password", tokB, map[string]any{"password": newPass, "old_password": userPass})
	f.mustErr(400, "unknown_field", "PUT", "/v1/users/alice/password", tok1, map[string]any{"password": newPass, "nope": 1})
	f.must(204, "PUT", "/v1/users/alice/password", tok1, map[string]any{"password": newPass, "old_password": userPass, "revoke_sessions": true})
	// Her other session ended, the one she asked with did not.
	f.must(200, "GET", "/v1/sessions/current", tok1, nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", tok2, nil)
	f.mustErr(401, "unauthorized", "POST", "/v1/sessions", "", map[string]any{"id": "alice", "password": userPass})
	f.must(201, "POST", "/v1/sessions", "", map[string]any{"id": "alice", "password": newPass})

	// The admin needs no old password, and revokes every session.
	f.must(204, "PUT", "/v1/users/alice/password", admin, map[string]any{"password": userPass, "revoke_sessions": true})
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", tok1, nil)
	f.must(200, "GET", "/v1/users/alice/sessions", admin, nil).json(t, &ss)
	if len(ss.Sessions) != 0 {
		t.Fatalf("sessions left: %+v", ss.Sessions)
	}

	// Revoke all: the caller's own session ends too; bob's stays.
	tok3, tok4 := f.login("alice"), f.login("alice")
	f.must(204, "DELETE", "/v1/users/alice/sessions", tok3, nil)
	for _, tok := range []string{tok3, tok4} {
		f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", tok, nil)
	}
	f.must(200, "GET", "/v1/sessions/current", tokB, nil)
	f.must(204, "DELETE", "/v1/users/bob/sessions", admin, nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", tokB, nil)
}

func TestAdminRotateKey(t *testing.T) {
	f := newFixture(t)
	old := f.device("d1")
	f.user("alice")
	f.mustErr(403, "forbidden", "POST", "/v1/devices/d1/key", old, nil) // the device cannot rotate its own key
	var out deviceResponse
	f.must(200, "POST", "/v1/devices/d1/key", admin, nil).json(t, &out)
	if out.ID != "d1" || len(out.Key) < 32 {
		t.Fatalf("rotated key: %+v", out)
	}
	f.mustErr(401, "unauthorized", "GET", "/v1/devices/d1", old, nil)
	f.must(200, "GET", "/v1/devices/d1", basic("d1", out.Key), nil)
	f.mustErr(404, "not_found", "POST", "/v1/devices/alice/key", admin, nil)
	f.mustErr(404, "not_found", "POST", "/v1/devices/nobody/key", admin, nil)
}

func TestAdminDeleteGroup(t *testing.T) {
	f := newFixture(t)
	f.user("alice")
	tok := f.login("alice")
	f.group("g1", true, []string{"alice"}, nil)
	f.must(202, "POST", "/v1/groups/g1/messages", admin, map[string]any{"payload": "kept", "retain": true})
	f.mustErr(403, "forbidden", "DELETE", "/v1/groups/g1", tok, nil)
	f.must(204, "DELETE", "/v1/groups/g1", admin, nil)
	f.mustErr(404, "not_found", "GET", "/v1/groups/g1", admin, nil)
	f.mustErr(404, "not_found", "DELETE", "/v1/groups/g1", admin, nil)
	f.mustErr(403, "forbidden", "POST", "/v1/groups/g1/messages", tok, map[string]any{"payload": "x"})
	if m := f.ret.last(); m == nil || m.To != "g1" || len(m.Payload) != 0 {
		t.Fatalf("the retained message was not cleared: %+v", m)
	}
	// Made again, it starts empty.
	f.must(201, "POST", "/v1/groups", admin, map[string]any{"id": "g1"})
	var g groupResponse
	f.must(200, "GET", "/v1/groups/g1", admin, nil).json(t, &g)
	if len(g.Members)+len(g.Publishers) != 0 {
		t.Fatalf("g1 made again kept roles: %+v", g)
	}
}

func (r *recRetainer) last() *message.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		return nil
	}
	return r.msgs[len(r.msgs)-1]
}

// TestTokenOfMissingPrincipal: a session whose principal is gone (one a
// delete did not find, as sessions from before the index) authenticates
// nothing.
func TestTokenOfMissingPrincipal(t *testing.T) {
	f := newFixture(t)
	tok, hash, err := store.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.CreateSession(context.Background(), store.Session{TokenHash: hash, PrincipalID: "ghost", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f.mustErr(401, "unauthorized", "GET", "/v1/sessions/current", "Bearer "+tok, nil)
	f.mustErr(401, "unauthorized", "GET", "/v1/cluster", "Bearer "+tok, nil)
}

// fakePresence answers from a fixed table: node → connected ids.
type fakePresence struct {
	byNode  map[string][]string
	missing []string
}

func (p fakePresence) Online(_ context.Context, group string, ids []string) Online {
	out := Online{ByNode: map[string][]string{}, Counts: map[string]int{}, Missing: p.missing}
	for node, on := range p.byNode {
		for _, id := range on {
			if group != "" || slices.Contains(ids, id) {
				out.ByNode[node] = append(out.ByNode[node], id)
			}
		}
		out.Counts[node] = len(out.ByNode[node])
	}
	return out
}

func TestPresenceCalls(t *testing.T) {
	pres := fakePresence{byNode: map[string][]string{"n1": {"alice"}, "n2": {"alice", "bob"}}, missing: []string{"n3"}}
	f := newFixtureDeps(t, func(d *Deps) { d.Presence = pres })
	for _, id := range []string{"alice", "bob", "carol", "dave"} {
		f.user(id)
	}
	f.group("g", false, []string{"alice", "bob", "carol"}, nil)
	var up userPresenceResponse
	f.must(200, "GET", "/v1/users/alice/presence", admin, nil).json(t, &up)
	if !up.Online || !slices.Equal(up.Nodes, []string{"n1", "n2"}) || up.Complete || !slices.Equal(up.MissingNodes, []string{"n3"}) {
		t.Fatalf("alice's presence: %+v", up)
	}
	carol := f.login("carol")
	f.must(200, "GET", "/v1/users/carol/presence", carol, nil).json(t, &up) // herself
	if up.Online || len(up.Nodes) != 0 {
		t.Fatalf("carol's presence: %+v", up)
	}
	f.must(200, "GET", "/v1/users/alice/presence", carol, nil) // a fellow member
	dave := f.login("dave")
	f.mustErr(403, "forbidden", "GET", "/v1/users/alice/presence", dave, nil) // shares no group
	f.mustErr(404, "not_found", "GET", "/v1/users/nobody/presence", admin, nil)

	var gp groupPresenceResponse
	f.must(200, "GET", "/v1/groups/g/presence", carol, nil).json(t, &gp)
	if !slices.Equal(gp.Online, []string{"alice", "bob"}) || gp.Count != 2 || gp.Truncated || gp.Complete {
		t.Fatalf("g's presence: %+v", gp)
	}
	f.mustErr(403, "forbidden", "GET", "/v1/groups/g/presence", dave, nil)
	f.mustErr(404, "not_found", "GET", "/v1/groups/nope/presence", admin, nil)

	none := newFixture(t)
	none.user("erin")
	none.mustErr(503, "unavailable", "GET", "/v1/users/erin/presence", admin, nil)
}

// TestPasswordChangeThrottled: guesses at the old password through a
// stolen token meet the per-account lock of logins.
func TestPasswordChangeThrottled(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.LoginAccountFailures = 3 })
	f.user("alice")
	tok := f.login("alice")
	for range 3 {
		f.mustErr(403, "forbidden", "PUT", "/v1/users/alice/password", tok, map[string]any{"password": "violet-harbor-quantum-mosaic", "old_password": "guess"})
	}
	f.mustErr(429, "login_throttled", "PUT", "/v1/users/alice/password", tok, map[string]any{"password": "violet-harbor-quantum-mosaic", "old_password": userPass})
	f.mustErr(429, "login_throttled", "POST", "/v1/sessions", "", map[string]any{"id": "alice", "password": userPass})
}
