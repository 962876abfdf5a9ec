package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		want   APIError
	}{
		{404, `{"error":{"code":"not_found","message":"no group g9"}}`, APIError{404, "not_found", "no group g9"}},
		{502, `<html>oops</html>`, APIError{502, "bad_gateway", "<html>oops</html>"}},
		{503, ``, APIError{503, "service_unavailable", "Service Unavailable"}},
		{599, `{"error":{}}`, APIError{599, "http_599", `{"error":{}}`}},
	} {
		got := decodeError(tc.status, []byte(tc.body))
		if *got != tc.want {
			t.Errorf("decodeError(%d, %q) = %+v, want %+v", tc.status, tc.body, *got, tc.want)
		}
	}
}

func TestTolerantTypes(t *testing.T) {
	var v struct {
		A, B Timestamp
		I    FlexString
		N    FlexString
		L, M IDList
		R, S NodeRef
	}
	in := `{"A":"2030-01-02T03:04:05Z","B":1893553445,"I":"00ff","N":42,"L":["a","b"],"M":[{"id":"c"}],
	        "R":"n1","S":{"id":"n2","mqtt":["h:1"]}}`
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	want := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if !v.A.Equal(want) || !v.B.Equal(want) {
		t.Errorf("timestamps %v %v, want %v", v.A, v.B, want)
	}
	if v.I != "00ff" || v.N != "42" {
		t.Errorf("ids %q %q", v.I, v.N)
	}
	if len(v.L) != 2 || v.L[1] != "b" || len(v.M) != 1 || v.M[0] != "c" {
		t.Errorf("lists %v %v", v.L, v.M)
	}
	if v.R.ID != "n1" || v.S.ID != "n2" || v.S.MQTT[0] != "h:1" {
		t.Errorf("node refs %+v %+v", v.R, v.S)
	}
	r := Route{Home: v.S}
	if n := r.HomeNode(); n.ID != "n2" {
		t.Errorf("HomeNode from home = %+v", n)
	}
}

func TestAuthorize(t *testing.T) {
	all := Client{AdminKey: "adm", Token: "tok", DeviceID: "d", DeviceKey: "k"}
	for _, tc := range []struct {
		c    Client
		a    auth
		want string // Authorization header; "!" means an ErrNoCredentials
	}{
		{all, authAdmin, "Bearer adm"},
		{all, authUser, "Bearer tok"},
		{all, authPublisher, "Basic ZDpr"},
		{all, authReader, "Bearer adm"},
		{Client{Token: "tok", AdminKey: "adm"}, authPublisher, "Bearer tok"},
		{Client{AdminKey: "adm"}, authPublisher, "Bearer adm"},
		{Client{Token: "tok"}, authReader, "Bearer tok"},
		{Client{}, authReader, ""},
		{Client{}, authNone, ""},
		{Client{Token: "tok"}, authAdmin, "!"},
		{Client{AdminKey: "adm"}, authUser, "!"},
		{Client{DeviceID: "d"}, authPublisher, "!"},
		{all, authUserSelf, "Bearer tok"},
		{all, authDeviceSelf, "Basic ZDpr"},
		{Client{AdminKey: "adm", DeviceID: "d", DeviceKey: "k"}, authUserSelf, "Bearer adm"},
		{Client{AdminKey: "adm", Token: "tok"}, authDeviceSelf, "Bearer adm"},
		{Client{DeviceID: "d", DeviceKey: "k"}, authUserSelf, "!"},
		{Client{Token: "tok"}, authDeviceSelf, "!"},
	} {
		req, _ := http.NewRequest("GET", "http://x/", nil)
		err := tc.c.authorize(req, tc.a)
		if tc.want == "!" {
			if !errors.Is(err, ErrNoCredentials) {
				t.Errorf("%+v/%d: err %v, want ErrNoCredentials", tc.c, tc.a, err)
			}
			continue
		}
		if err != nil || req.Header.Get("Authorization") != tc.want {
			t.Errorf("%+v/%d: Authorization %q err %v, want %q", tc.c, tc.a, req.Header.Get("Authorization"), err, tc.want)
		}
	}
}

// The admin calls send the method, path, query and body of the API and
// decode its answers.
func TestAdminCalls(t *testing.T) {
	var mu sync.Mutex
	var sent []string // "METHOD path?query body"
	requests := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(sent) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent = append(sent, r.Method+" "+r.URL.RequestURI()+" "+string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.Method + " " + r.URL.Path {
		case "GET /v1/users":
			io.WriteString(w, `{"users":[{"id":"alice","kind":"user","created":"2030-01-02T03:04:05Z"}],"next_cursor":"alice"}`)
		case "GET /v1/devices":
			io.WriteString(w, `{"devices":[{"id":"d1","kind":"device","created":1893553445}],"next_cursor":""}`)
		case "GET /v1/groups":
			io.WriteString(w, `{"groups":[{"id":"g1","members_can_publish":true,"created":"2030-01-02T03:04:05Z"}],"next_cursor":""}`)
		case "GET /v1/users/alice":
			io.WriteString(w, `{"id":"alice","kind":"user","created":"2030-01-02T03:04:05Z"}`)
		case "POST /v1/devices/d1/key":
			io.WriteString(w, `{"id":"d1","key":"k2"}`)
		case "GET /v1/devices/d1/groups":
			io.WriteString(w, `{"groups":[{"id":"g1","member":false,"publisher":true}]}`)
		case "GET /v1/users/alice/sessions":
			io.WriteString(w, `{"sessions":[{"id":"00ff","created":"2030-01-01T00:00:00Z","expires_at":"2030-01-02T03:04:05Z","current":true}]}`)
		case "DELETE /v1/users/ghost":
			w.WriteHeader(404)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no user ghost"}}`)
		default:
			w.WriteHeader(204)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := &Client{BaseURL: srv.URL, AdminKey: "adm"}
	want := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	ul, err := c.ListUsers(ctx, ListOptions{Prefix: "a", Limit: 1})
	if err != nil || len(ul.Users) != 1 || ul.Users[0].ID != "alice" || !ul.Users[0].Created.Equal(want) || ul.NextCursor != "alice" {
		t.Errorf("ListUsers: %+v %v", ul, err)
	}
	dl, err := c.ListDevices(ctx, ListOptions{Cursor: "c 1"})
	if err != nil || len(dl.Devices) != 1 || dl.Devices[0].Kind != "device" || !dl.Devices[0].Created.Equal(want) || dl.NextCursor != "" {
		t.Errorf("ListDevices: %+v %v", dl, err)
	}
	gl, err := c.ListGroups(ctx, ListOptions{})
	if err != nil || len(gl.Groups) != 1 || !gl.Groups[0].MembersCanPublish {
		t.Errorf("ListGroups: %+v %v", gl, err)
	}
	if u, err := c.User(ctx, "alice"); err != nil || u.Kind != "user" || !u.Created.Equal(want) || len(u.Body()) == 0 {
		t.Errorf("User: %+v %v", u, err)
	}
	if d, err := c.RotateKey(ctx, "d1"); err != nil || d.ID != "d1" || d.Key != "k2" {
		t.Errorf("RotateKey: %+v %v", d, err)
	}
	if m, err := c.DeviceGroups(ctx, "d1"); err != nil || len(m.Groups) != 1 || m.Groups[0] != (Membership{"g1", false, true}) {
		t.Errorf("DeviceGroups: %+v %v", m, err)
	}
	if s, err := c.UserSessions(ctx, "alice"); err != nil || len(s.Sessions) != 1 || !s.Sessions[0].Current || !s.Sessions[0].ExpiresAt.Equal(want) {
		t.Errorf("UserSessions: %+v %v", s, err)
	}
	if _, err := c.SetPassword(ctx, "alice", PasswordChange{Password: "new"}); err != nil {
		t.Error(err)
	}
	if _, err := c.SetPassword(ctx, "alice", PasswordChange{Password: "new", OldPassword: "old", RevokeSessions: true}); err != nil {
		t.Error(err)
	}
	for _, call := range []func() (*Ack, error){
		func() (*Ack, error) { return c.DeleteUser(ctx, "alice") },
		func() (*Ack, error) { return c.DeleteDevice(ctx, "d1") },
		func() (*Ack, error) { return c.DeleteGroup(ctx, "g/1") },
		func() (*Ack, error) { return c.RevokeSessions(ctx, "alice") },
	} {
		if _, err := call(); err != nil {
			t.Error(err)
		}
	}
	var apiErr *APIError
	if _, err := c.DeleteUser(ctx, "ghost"); !errors.As(err, &apiErr) || apiErr.Status != 404 || apiErr.Code != "not_found" {
		t.Errorf("DeleteUser(ghost): %v", err)
	}
	wantReqs := []string{
		"GET /v1/users?limit=1&prefix=a ",
		"GET /v1/devices?cursor=c+1 ",
		"GET /v1/groups ",
		"GET /v1/users/alice ",
		"POST /v1/devices/d1/key ",
		"GET /v1/devices/d1/groups ",
		"GET /v1/users/alice/sessions ",
		`PUT /v1/users/alice/password {"password":"new","revoke_sessions":false}`,
		`PUT /v1/users/alice/password {"old_password":"old","password":"new","revoke_sessions":true}`,
		"DELETE /v1/users/alice ",
		"DELETE /v1/devices/d1 ",
		"DELETE /v1/groups/g%2F1 ",
		"DELETE /v1/users/alice/sessions ",
		"DELETE /v1/users/ghost ",
	}
	got := requests()
	if len(got) != len(wantReqs) {
		t.Fatalf("requests:\n%q\nwant:\n%q", got, wantReqs)
	}
	for i := range got {
		if got[i] != wantReqs[i] {
			t.Errorf("request %d: %q, want %q", i, got[i], wantReqs[i])
		}
	}

	// The self calls send no request without a credential.
	if _, err := (&Client{BaseURL: srv.URL}).User(ctx, "alice"); !errors.Is(err, ErrNoSelf) {
		t.Errorf("User without credentials: %v", err)
	}
	if _, err := (&Client{BaseURL: srv.URL, Token: "tok"}).ListUsers(ctx, ListOptions{}); !errors.Is(err, ErrNoAdminKey) {
		t.Errorf("ListUsers with a token: %v", err)
	}
	if got := requests(); len(got) != len(wantReqs) {
		t.Errorf("a request went out: %q", got[len(wantReqs):])
	}
}

// The webhook and presence calls send the method, path, body and
// credential of the API and decode its answers.
func TestWebhookAndPresenceCalls(t *testing.T) {
	var mu sync.Mutex
	var sent []string // "METHOD path body | Authorization"
	requests := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(sent) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent = append(sent, r.Method+" "+r.URL.RequestURI()+" "+string(b)+"| "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.Method + " " + r.URL.Path {
		case "POST /v1/webhooks":
			w.WriteHeader(201)
			io.WriteString(w, `{"id":"wh01","url":"https://h/hook","events":["refusal"],"secret":"whsec_1","created":"2030-01-02T03:04:05Z"}`)
		case "GET /v1/webhooks":
			io.WriteString(w, `{"webhooks":[{"id":"wh01","url":"https://h/hook","events":[],"created":1893553445}]}`)
		case "DELETE /v1/webhooks/wh99":
			w.WriteHeader(404)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no such webhook endpoint"}}`)
		case "GET /v1/users/alice/presence":
			io.WriteString(w, `{"id":"alice","online":true,"nodes":["n1"],"complete":false,"missing_nodes":["n2"]}`)
		case "GET /v1/groups/g 1/presence":
			io.WriteString(w, `{"id":"g 1","online":[{"id":"alice"},{"id":"bob"}],"count":5,"truncated":true,"complete":true,"missing_nodes":[]}`)
		default:
			w.WriteHeader(204)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := &Client{BaseURL: srv.URL, AdminKey: "adm"}
	want := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	h, err := c.CreateWebhook(ctx, "https://h/hook", []string{"refusal"})
	if err != nil || h.ID != "wh01" || h.Secret != "whsec_1" || !slices.Equal(h.Events, []string{"refusal"}) || !h.Created.Equal(want) || len(h.Body()) == 0 {
		t.Errorf("CreateWebhook: %+v %v", h, err)
	}
	if _, err := c.CreateWebhook(ctx, "https://h/all", nil); err != nil {
		t.Error(err)
	}
	l, err := c.ListWebhooks(ctx)
	if err != nil || len(l.Webhooks) != 1 || l.Webhooks[0].URL != "https://h/hook" || l.Webhooks[0].Secret != "" ||
		len(l.Webhooks[0].Events) != 0 || !l.Webhooks[0].Created.Equal(want) {
		t.Errorf("ListWebhooks: %+v %v", l, err)
	}
	if _, err := c.DeleteWebhook(ctx, "wh01"); err != nil {
		t.Error(err)
	}
	var apiErr *APIError
	if _, err := c.DeleteWebhook(ctx, "wh99"); !errors.As(err, &apiErr) || apiErr.Status != 404 || apiErr.Code != "not_found" {
		t.Errorf("DeleteWebhook(wh99): %v", err)
	}
	// Presence: the admin key preferred, else a token, else a device.
	up, err := (&Client{BaseURL: srv.URL, Token: "tok"}).UserPresence(ctx, "alice")
	if err != nil || !up.Online || !slices.Equal(up.Nodes, []string{"n1"}) || up.Complete || !slices.Equal(up.MissingNodes, []string{"n2"}) {
		t.Errorf("UserPresence: %+v %v", up, err)
	}
	gp, err := (&Client{BaseURL: srv.URL, AdminKey: "adm", DeviceID: "d", DeviceKey: "k"}).GroupPresence(ctx, "g 1")
	if err != nil || !slices.Equal(gp.Online, IDList{"alice", "bob"}) || gp.Count != 5 || !gp.Truncated || !gp.Complete || len(gp.MissingNodes) != 0 {
		t.Errorf("GroupPresence: %+v %v", gp, err)
	}
	if _, err := (&Client{BaseURL: srv.URL, DeviceID: "d", DeviceKey: "k"}).UserPresence(ctx, "alice"); err != nil {
		t.Error(err)
	}
	wantReqs := []string{
		`POST /v1/webhooks {"events":["refusal"],"url":"https://h/hook"}| Bearer adm`,
		`POST /v1/webhooks {"url":"https://h/all"}| Bearer adm`,
		"GET /v1/webhooks | Bearer adm",
		"DELETE /v1/webhooks/wh01 | Bearer adm",
		"DELETE /v1/webhooks/wh99 | Bearer adm",
		"GET /v1/users/alice/presence | Bearer tok",
		"GET /v1/groups/g%201/presence | Bearer adm",
		"GET /v1/users/alice/presence | Basic ZDpr",
	}
	got := requests()
	if len(got) != len(wantReqs) {
		t.Fatalf("requests:\n%q\nwant:\n%q", got, wantReqs)
	}
	for i := range got {
		if got[i] != wantReqs[i] {
			t.Errorf("request %d: %q, want %q", i, got[i], wantReqs[i])
		}
	}

	// The webhook calls send no request without the admin key.
	tok := &Client{BaseURL: srv.URL, Token: "tok", DeviceID: "d", DeviceKey: "k"}
	if _, err := tok.CreateWebhook(ctx, "https://h/", nil); !errors.Is(err, ErrNoAdminKey) {
		t.Errorf("CreateWebhook with a token: %v", err)
	}
	if _, err := tok.ListWebhooks(ctx); !errors.Is(err, ErrNoAdminKey) {
		t.Errorf("ListWebhooks with a token: %v", err)
	}
	if _, err := tok.DeleteWebhook(ctx, "wh01"); !errors.Is(err, ErrNoAdminKey) {
		t.Errorf("DeleteWebhook with a token: %v", err)
	}
	if got := requests(); len(got) != len(wantReqs) {
		t.Errorf("a request went out: %q", got[len(wantReqs):])
	}
}
