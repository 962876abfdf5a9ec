// Package client is a Go client for pushring's HTTP API (v1): one typed
// method per call. It imports no server package on purpose: pushctl and
// the benchmark harness are clients like any other, and a program that
// talks to pushring needs nothing else. The result types are tolerant of
// the forms a server may answer in (timestamps as RFC 3339 or Unix
// seconds, ids as strings or numbers, member lists as ids or objects).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls the pushring HTTP API. Each method picks the credential its
// call needs from the fields below; a zero Client field means "not given".
// A Client is goroutine-safe once built.
type Client struct {
	BaseURL   string       // e.g. http://127.0.0.1:8080
	HTTP      *http.Client // nil means http.DefaultClient
	AdminKey  string       // admin calls: Authorization: Bearer <AdminKey>
	Token     string       // user calls: Authorization: Bearer <Token>
	DeviceID  string       // device calls: HTTP Basic auth DeviceID:DeviceKey
	DeviceKey string
}

// APIError is an error response of the API: {"error":{"code","message"}}.
type APIError struct {
	Status  int    // HTTP status
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string { return e.Code + ": " + e.Message }

// ErrNoCredentials is returned, wrapped in one of the errors below, when a
// call needs a credential that the Client was not given; no request is
// sent then.
var ErrNoCredentials = errors.New("missing credentials")

// The credential a call lacked; each wraps ErrNoCredentials.
var (
	ErrNoAdminKey  = fmt.Errorf("%w: this call needs the admin key", ErrNoCredentials)
	ErrNoToken     = fmt.Errorf("%w: this call needs a session token", ErrNoCredentials)
	ErrNoPublisher = fmt.Errorf("%w: publishing needs a device key, a session token or the admin key", ErrNoCredentials)
	ErrNoSelf      = fmt.Errorf("%w: this call needs the principal's own credential (a user's session token, a device's key) or the admin key", ErrNoCredentials)
)

// Response keeps the body a call returned. Every result type embeds it.
type Response struct {
	raw json.RawMessage
}

// Body is the response body as it came (JSON, or empty).
func (r *Response) Body() []byte { return r.raw }

func (r *Response) setRaw(b []byte) { r.raw = b }

// Ack is the result of calls whose body carries nothing to show
// (membership changes, logout).
type Ack struct{ Response }

// User is the result of POST /v1/users and GET /v1/users/{id}, and an
// entry of GET /v1/users (an entry's Body is empty).
type User struct {
	Response
	ID      string    `json:"id"`
	Kind    string    `json:"kind"`    // "user"; not sent by POST
	Created Timestamp `json:"created"` // not sent by POST
}

// Device is the result of POST /v1/devices, POST /v1/devices/{id}/key and
// GET /v1/devices/{id}, and an entry of GET /v1/devices (an entry's Body
// is empty). Key is sent only by the POSTs, and shown only once.
type Device struct {
	Response
	ID      string    `json:"id"`
	Key     string    `json:"key"`
	Kind    string    `json:"kind"`    // "device"; sent by GET only
	Created Timestamp `json:"created"` // sent by GET only
}

// ListOptions is the query of a list call (GET /v1/users, /v1/devices,
// /v1/groups). The zero value asks for the first page of everything at
// the server's page size.
type ListOptions struct {
	Prefix string // only ids that start with Prefix
	Cursor string // the NextCursor of the previous page; "" for the first page
	Limit  int    // entries per page, 1 to 500; 0 leaves the server's default (100)
}

// query is the URL query of o, with its "?", or "" for the zero value.
func (o ListOptions) query() string {
	v := url.Values{}
	if o.Prefix != "" {
		v.Set("prefix", o.Prefix)
	}
	if o.Cursor != "" {
		v.Set("cursor", o.Cursor)
	}
	if o.Limit != 0 {
		v.Set("limit", strconv.Itoa(o.Limit))
	}
	if len(v) == 0 {
		return ""
	}
	return "?" + v.Encode()
}

// UserList is a page of GET /v1/users.
type UserList struct {
	Response
	Users      []User `json:"users"`
	NextCursor string `json:"next_cursor"` // "" on the last page; else ListOptions.Cursor of the next
}

// DeviceList is a page of GET /v1/devices.
type DeviceList struct {
	Response
	Devices    []Device `json:"devices"`
	NextCursor string   `json:"next_cursor"` // "" on the last page; else ListOptions.Cursor of the next
}

// GroupList is a page of GET /v1/groups. Its entries carry no members
// or publishers.
type GroupList struct {
	Response
	Groups     []Group `json:"groups"`
	NextCursor string  `json:"next_cursor"` // "" on the last page; else ListOptions.Cursor of the next
}

// PasswordChange is the body of PUT /v1/users/{id}/password.
type PasswordChange struct {
	Password    string // the new password
	OldPassword string // the current password: needed by the user, not by the admin
	// RevokeSessions ends the user's other login sessions (all of them
	// when the admin asks).
	RevokeSessions bool
}

// Membership is a principal's roles in one group.
type Membership struct {
	ID        string `json:"id"` // the group
	Member    bool   `json:"member"`
	Publisher bool   `json:"publisher"`
}

// Memberships is the result of GET /v1/users/{id}/groups and
// /v1/devices/{id}/groups.
type Memberships struct {
	Response
	Groups []Membership `json:"groups"`
}

// LoginSession is one login session of a user. ID names it (never the
// token, which the server does not keep).
type LoginSession struct {
	ID        string    `json:"id"`
	Created   Timestamp `json:"created"`
	ExpiresAt Timestamp `json:"expires_at"`
	Current   bool      `json:"current"` // the session of the request's token
}

// LoginSessions is the result of GET /v1/users/{id}/sessions.
type LoginSessions struct {
	Response
	Sessions []LoginSession `json:"sessions"`
}

// Session is the result of POST /v1/sessions (login).
type Session struct {
	Response
	Token        string    `json:"token"`
	ExpiresAt    Timestamp `json:"expires_at"`
	PrivateTopic string    `json:"private_topic"`
	MQTT         []string  `json:"mqtt"`     // host:port, home node first
	MQTTTLS      []string  `json:"mqtt_tls"` // MQTT over TLS, the same order; empty without TLS
}

// SessionInfo is the result of GET /v1/sessions/current.
type SessionInfo struct {
	Response
	ID           string    `json:"id"`
	PrincipalID  string    `json:"principal_id"` // accepted as a synonym of id
	Kind         string    `json:"kind"`
	ExpiresAt    Timestamp `json:"expires_at"`
	PrivateTopic string    `json:"private_topic"`
	MQTT         []string  `json:"mqtt"`
}

// Principal is the id the session belongs to.
func (s *SessionInfo) Principal() string {
	if s.ID != "" {
		return s.ID
	}
	return s.PrincipalID
}

// Group is the result of POST /v1/groups and GET /v1/groups/{gid}, and an
// entry of GET /v1/groups (an entry's Body is empty).
type Group struct {
	Response
	ID                string    `json:"id"`
	MembersCanPublish bool      `json:"members_can_publish"`
	Members           IDList    `json:"members"`
	Publishers        IDList    `json:"publishers"`
	Created           Timestamp `json:"created"`
}

// Published is the result of POST …/messages.
type Published struct {
	Response
	ID FlexString `json:"id"`
}

// Node describes one cluster node as GET /v1/cluster and /v1/route show it.
type Node struct {
	ID        string   `json:"id"`
	MQTT      []string `json:"mqtt"`
	MQTTTLS   []string `json:"mqtt_tls"`
	HTTP      string   `json:"http"`
	Version   string   `json:"version"`
	State     string   `json:"state"`
	RingShare float64  `json:"ring_share"`
}

// NodeRef is a node given either by its id (a JSON string) or in full.
type NodeRef struct {
	Node
	set bool
}

// UnmarshalJSON accepts "n1" or {"id":"n1",…}.
func (r *NodeRef) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	r.set = true
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &r.ID)
	}
	return json.Unmarshal(b, &r.Node)
}

// Route is the result of GET /v1/route/{id}: the home node of a principal.
type Route struct {
	Response
	ID   string   `json:"id"`
	Node NodeRef  `json:"node"`
	Home NodeRef  `json:"home"` // accepted as a synonym of node
	MQTT []string `json:"mqtt"`
	HTTP string   `json:"http"`
}

// HomeNode merges whichever of node/home/mqtt/http the server sent.
func (r *Route) HomeNode() Node {
	n := r.Node.Node
	if !r.Node.set {
		n = r.Home.Node
	}
	if len(n.MQTT) == 0 {
		n.MQTT = r.MQTT
	}
	if n.HTTP == "" {
		n.HTTP = r.HTTP
	}
	return n
}

// Cluster is the result of GET /v1/cluster.
type Cluster struct {
	Response
	Name    string  `json:"cluster"`
	Self    NodeRef `json:"self"` // the node that answered
	Nodes   []Node  `json:"nodes"`
	Members []Node  `json:"members"` // accepted as a synonym of nodes
}

// AllNodes returns nodes or members, whichever the server sent.
func (c *Cluster) AllNodes() []Node {
	if len(c.Nodes) > 0 {
		return c.Nodes
	}
	return c.Members
}

// Webhook is the result of POST /v1/webhooks and an entry of GET
// /v1/webhooks (an entry's Body is empty). Secret, which signs the
// requests sent to URL, is sent only by the POST: it is shown only once.
type Webhook struct {
	Response
	ID      string    `json:"id"`
	URL     string    `json:"url"`
	Events  []string  `json:"events"` // the event types sent to URL; empty: all of them
	Secret  string    `json:"secret"` // POST only
	Created Timestamp `json:"created"`
}

// WebhookList is the result of GET /v1/webhooks.
type WebhookList struct {
	Response
	Webhooks []Webhook `json:"webhooks"`
}

// UserPresence is the result of GET /v1/users/{id}/presence.
type UserPresence struct {
	Response
	ID     string   `json:"id"`
	Online bool     `json:"online"`
	Nodes  []string `json:"nodes"` // the nodes the user is connected to
	// Complete: every live node answered; else MissingNodes did not,
	// and connections there are not counted.
	Complete     bool     `json:"complete"`
	MissingNodes []string `json:"missing_nodes"`
}

// GroupPresence is the result of GET /v1/groups/{gid}/presence.
type GroupPresence struct {
	Response
	ID     string `json:"id"`
	Online IDList `json:"online"` // the members connected now
	Count  int    `json:"count"`
	// Truncated: a node had more connected members than it listed;
	// Online is not all of them and Count adds up the nodes' counts.
	Truncated bool `json:"truncated"`
	// Complete: every live node answered; else MissingNodes did not,
	// and connections there are not counted.
	Complete     bool     `json:"complete"`
	MissingNodes []string `json:"missing_nodes"`
}

// Payload is the body of a message to publish over HTTP. Exactly one of
// Text and Base64 is sent; QoS < 0 leaves the server's default.
type Payload struct {
	Text     string
	Base64   string // already base64-encoded bytes
	IsBase64 bool
	QoS      int
	Retain   bool // a group message that becomes the group's retained message
}

func (p Payload) body() map[string]any {
	m := map[string]any{}
	if p.IsBase64 {
		m["payload_base64"] = p.Base64
	} else {
		m["payload"] = p.Text
	}
	if p.QoS >= 0 {
		m["qos"] = p.QoS
	}
	if p.Retain {
		m["retain"] = true
	}
	return m
}

// --- calls ------------------------------------------------------------------

// CreateUser is POST /v1/users (admin).
func (c *Client) CreateUser(ctx context.Context, id, password string) (*User, error) {
	var out User
	return &out, c.do(ctx, "POST", "/v1/users", authAdmin,
		map[string]string{"id": id, "password": password}, &out)
}

// CreateDevice is POST /v1/devices (admin).
func (c *Client) CreateDevice(ctx context.Context, id string) (*Device, error) {
	var out Device
	return &out, c.do(ctx, "POST", "/v1/devices", authAdmin, map[string]string{"id": id}, &out)
}

// ListUsers is GET /v1/users (admin): one page.
func (c *Client) ListUsers(ctx context.Context, o ListOptions) (*UserList, error) {
	var out UserList
	return &out, c.do(ctx, "GET", "/v1/users"+o.query(), authAdmin, nil, &out)
}

// ListDevices is GET /v1/devices (admin): one page.
func (c *Client) ListDevices(ctx context.Context, o ListOptions) (*DeviceList, error) {
	var out DeviceList
	return &out, c.do(ctx, "GET", "/v1/devices"+o.query(), authAdmin, nil, &out)
}

// ListGroups is GET /v1/groups (admin): one page.
func (c *Client) ListGroups(ctx context.Context, o ListOptions) (*GroupList, error) {
	var out GroupList
	return &out, c.do(ctx, "GET", "/v1/groups"+o.query(), authAdmin, nil, &out)
}

// User is GET /v1/users/{id} (the user's token, else the admin key).
func (c *Client) User(ctx context.Context, id string) (*User, error) {
	var out User
	return &out, c.do(ctx, "GET", "/v1/users/"+url.PathEscape(id), authUserSelf, nil, &out)
}

// Device is GET /v1/devices/{id} (the device's key, else the admin key).
func (c *Client) Device(ctx context.Context, id string) (*Device, error) {
	var out Device
	return &out, c.do(ctx, "GET", "/v1/devices/"+url.PathEscape(id), authDeviceSelf, nil, &out)
}

// DeleteUser is DELETE /v1/users/{id} (admin). The user's connections
// close, its memberships, sessions and offline messages go.
func (c *Client) DeleteUser(ctx context.Context, id string) (*Ack, error) {
	var out Ack
	return &out, c.do(ctx, "DELETE", "/v1/users/"+url.PathEscape(id), authAdmin, nil, &out)
}

// DeleteDevice is DELETE /v1/devices/{id} (admin), like DeleteUser.
func (c *Client) DeleteDevice(ctx context.Context, id string) (*Ack, error) {
	var out Ack
	return &out, c.do(ctx, "DELETE", "/v1/devices/"+url.PathEscape(id), authAdmin, nil, &out)
}

// DeleteGroup is DELETE /v1/groups/{gid} (admin).
func (c *Client) DeleteGroup(ctx context.Context, gid string) (*Ack, error) {
	var out Ack
	return &out, c.do(ctx, "DELETE", "/v1/groups/"+url.PathEscape(gid), authAdmin, nil, &out)
}

// SetPassword is PUT /v1/users/{id}/password (the user's token, with
// p.OldPassword; else the admin key).
func (c *Client) SetPassword(ctx context.Context, id string, p PasswordChange) (*Ack, error) {
	body := map[string]any{"password": p.Password, "revoke_sessions": p.RevokeSessions}
	if p.OldPassword != "" {
		body["old_password"] = p.OldPassword
	}
	var out Ack
	return &out, c.do(ctx, "PUT", "/v1/users/"+url.PathEscape(id)+"/password", authUserSelf, body, &out)
}

// RotateKey is POST /v1/devices/{id}/key (admin): a new key, shown only
// once; the old one stops working.
func (c *Client) RotateKey(ctx context.Context, id string) (*Device, error) {
	var out Device
	return &out, c.do(ctx, "POST", "/v1/devices/"+url.PathEscape(id)+"/key", authAdmin, nil, &out)
}

// UserGroups is GET /v1/users/{id}/groups (the user's token, else the
// admin key).
func (c *Client) UserGroups(ctx context.Context, id string) (*Memberships, error) {
	var out Memberships
	return &out, c.do(ctx, "GET", "/v1/users/"+url.PathEscape(id)+"/groups", authUserSelf, nil, &out)
}

// DeviceGroups is GET /v1/devices/{id}/groups (the device's key, else the
// admin key).
func (c *Client) DeviceGroups(ctx context.Context, id string) (*Memberships, error) {
	var out Memberships
	return &out, c.do(ctx, "GET", "/v1/devices/"+url.PathEscape(id)+"/groups", authDeviceSelf, nil, &out)
}

// UserSessions is GET /v1/users/{id}/sessions (the user's token, else the
// admin key).
func (c *Client) UserSessions(ctx context.Context, id string) (*LoginSessions, error) {
	var out LoginSessions
	return &out, c.do(ctx, "GET", "/v1/users/"+url.PathEscape(id)+"/sessions", authUserSelf, nil, &out)
}

// RevokeSessions is DELETE /v1/users/{id}/sessions (the user's token,
// else the admin key): every login session of the user ends, the
// caller's own too.
func (c *Client) RevokeSessions(ctx context.Context, id string) (*Ack, error) {
	var out Ack
	return &out, c.do(ctx, "DELETE", "/v1/users/"+url.PathEscape(id)+"/sessions", authUserSelf, nil, &out)
}

// Login is POST /v1/sessions (no credential but the password).
func (c *Client) Login(ctx context.Context, id, password string) (*Session, error) {
	var out Session
	return &out, c.do(ctx, "POST", "/v1/sessions", authNone,
		map[string]string{"id": id, "password": password}, &out)
}

// CurrentSession is GET /v1/sessions/current (user token).
func (c *Client) CurrentSession(ctx context.Context) (*SessionInfo, error) {
	var out SessionInfo
	return &out, c.do(ctx, "GET", "/v1/sessions/current", authUser, nil, &out)
}

// Logout is DELETE /v1/sessions/current (user token).
func (c *Client) Logout(ctx context.Context) (*Ack, error) {
	var out Ack
	return &out, c.do(ctx, "DELETE", "/v1/sessions/current", authUser, nil, &out)
}

// CreateGroup is POST /v1/groups (admin).
func (c *Client) CreateGroup(ctx context.Context, gid string, membersCanPublish bool) (*Group, error) {
	var out Group
	return &out, c.do(ctx, "POST", "/v1/groups", authAdmin,
		map[string]any{"id": gid, "members_can_publish": membersCanPublish}, &out)
}

// Group is GET /v1/groups/{gid} (admin key preferred, else token or device).
func (c *Client) Group(ctx context.Context, gid string) (*Group, error) {
	var out Group
	return &out, c.do(ctx, "GET", "/v1/groups/"+url.PathEscape(gid), authReader, nil, &out)
}

// SetMember is PUT (on) or DELETE (off) /v1/groups/{gid}/members/{id} (admin).
func (c *Client) SetMember(ctx context.Context, gid, id string, on bool) (*Ack, error) {
	return c.setRole(ctx, gid, "members", id, on)
}

// SetPublisher is PUT (on) or DELETE (off) /v1/groups/{gid}/publishers/{id} (admin).
func (c *Client) SetPublisher(ctx context.Context, gid, id string, on bool) (*Ack, error) {
	return c.setRole(ctx, gid, "publishers", id, on)
}

func (c *Client) setRole(ctx context.Context, gid, role, id string, on bool) (*Ack, error) {
	method := "PUT"
	if !on {
		method = "DELETE"
	}
	var out Ack
	return &out, c.do(ctx, method,
		"/v1/groups/"+url.PathEscape(gid)+"/"+role+"/"+url.PathEscape(id), authAdmin, nil, &out)
}

// PublishGroup is POST /v1/groups/{gid}/messages (device, token or admin).
func (c *Client) PublishGroup(ctx context.Context, gid string, p Payload) (*Published, error) {
	var out Published
	return &out, c.do(ctx, "POST", "/v1/groups/"+url.PathEscape(gid)+"/messages", authPublisher, p.body(), &out)
}

// PublishUser is POST /v1/users/{id}/messages (device, token or admin).
func (c *Client) PublishUser(ctx context.Context, id string, p Payload) (*Published, error) {
	var out Published
	return &out, c.do(ctx, "POST", "/v1/users/"+url.PathEscape(id)+"/messages", authPublisher, p.body(), &out)
}

// CreateWebhook is POST /v1/webhooks (admin): events of the given types
// (none: every type) are POSTed to endpoint, signed with the returned
// Secret, which is shown only once.
func (c *Client) CreateWebhook(ctx context.Context, endpoint string, events []string) (*Webhook, error) {
	body := map[string]any{"url": endpoint}
	if len(events) > 0 {
		body["events"] = events
	}
	var out Webhook
	return &out, c.do(ctx, "POST", "/v1/webhooks", authAdmin, body, &out)
}

// ListWebhooks is GET /v1/webhooks (admin), without the secrets.
func (c *Client) ListWebhooks(ctx context.Context) (*WebhookList, error) {
	var out WebhookList
	return &out, c.do(ctx, "GET", "/v1/webhooks", authAdmin, nil, &out)
}

// DeleteWebhook is DELETE /v1/webhooks/{id} (admin).
func (c *Client) DeleteWebhook(ctx context.Context, id string) (*Ack, error) {
	var out Ack
	return &out, c.do(ctx, "DELETE", "/v1/webhooks/"+url.PathEscape(id), authAdmin, nil, &out)
}

// UserPresence is GET /v1/users/{id}/presence (admin key preferred, else
// token or device: the admin, the user, or one sharing a group with her).
func (c *Client) UserPresence(ctx context.Context, id string) (*UserPresence, error) {
	var out UserPresence
	return &out, c.do(ctx, "GET", "/v1/users/"+url.PathEscape(id)+"/presence", authReader, nil, &out)
}

// GroupPresence is GET /v1/groups/{gid}/presence (admin key preferred,
// else token or device: the admin or a member).
func (c *Client) GroupPresence(ctx context.Context, gid string) (*GroupPresence, error) {
	var out GroupPresence
	return &out, c.do(ctx, "GET", "/v1/groups/"+url.PathEscape(gid)+"/presence", authReader, nil, &out)
}

// Route is GET /v1/route/{id}.
func (c *Client) Route(ctx context.Context, id string) (*Route, error) {
	var out Route
	return &out, c.do(ctx, "GET", "/v1/route/"+url.PathEscape(id), authReader, nil, &out)
}

// Cluster is GET /v1/cluster.
func (c *Client) Cluster(ctx context.Context) (*Cluster, error) {
	var out Cluster
	return &out, c.do(ctx, "GET", "/v1/cluster", authReader, nil, &out)
}

// --- plumbing ---------------------------------------------------------------

// auth says which credential a call sends.
type auth int

const (
	authNone       auth = iota
	authAdmin           // admin key, required
	authUser            // session token, required
	authPublisher       // device basic auth, else token, else admin key; one required
	authReader          // admin key, else token, else device; none is also tried
	authUserSelf        // token (the user itself), else admin key; one required
	authDeviceSelf      // device basic auth (the device itself), else admin key; one required
)

func (c *Client) authorize(req *http.Request, a auth) error {
	bearer := func(s string) { req.Header.Set("Authorization", "Bearer "+s) }
	device := func() { req.SetBasicAuth(c.DeviceID, c.DeviceKey) }
	hasDevice := c.DeviceID != "" && c.DeviceKey != ""
	switch a {
	case authAdmin:
		if c.AdminKey == "" {
			return ErrNoAdminKey
		}
		bearer(c.AdminKey)
	case authUser:
		if c.Token == "" {
			return ErrNoToken
		}
		bearer(c.Token)
	case authPublisher:
		switch {
		case hasDevice:
			device()
		case c.Token != "":
			bearer(c.Token)
		case c.AdminKey != "":
			bearer(c.AdminKey)
		default:
			return ErrNoPublisher
		}
	case authUserSelf:
		switch {
		case c.Token != "":
			bearer(c.Token)
		case c.AdminKey != "":
			bearer(c.AdminKey)
		default:
			return ErrNoSelf
		}
	case authDeviceSelf:
		switch {
		case hasDevice:
			device()
		case c.AdminKey != "":
			bearer(c.AdminKey)
		default:
			return ErrNoSelf
		}
	case authReader:
		switch {
		case c.AdminKey != "":
			bearer(c.AdminKey)
		case c.Token != "":
			bearer(c.Token)
		case hasDevice:
			device()
		}
	}
	return nil
}

// maxBody bounds what a call reads of one response.
const maxBody = 16 << 20

// do sends one request and decodes the answer into out. A status of 400 or
// more becomes an *APIError.
func (c *Client) do(ctx context.Context, method, path string, a auth, in any, out interface{ setRaw([]byte) }) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if err := c.authorize(req, a); err != nil {
		return err
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%s %s: reading response: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		return decodeError(resp.StatusCode, raw)
	}
	out.setRaw(raw)
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decoding response: %w", method, path, err)
	}
	return nil
}

// decodeError turns an error response into an *APIError, also when the body
// is not the API's JSON shape (a proxy's HTML page, an empty 502).
func decodeError(status int, raw []byte) *APIError {
	var env struct {
		Error *APIError `json:"error"`
	}
	if json.Unmarshal(raw, &env) == nil && env.Error != nil && env.Error.Code != "" {
		env.Error.Status = status
		return env.Error
	}
	msg := strings.TrimSpace(string(raw))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	code := strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
	if code == "" {
		code = "http_" + strconv.Itoa(status)
	}
	return &APIError{Status: status, Code: code, Message: msg}
}

// --- tolerant JSON types ----------------------------------------------------

// Timestamp accepts an RFC 3339 string or a number of Unix seconds.
type Timestamp struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" || s == `""` {
		return nil
	}
	if s[0] == '"' {
		return t.Time.UnmarshalJSON(b)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("timestamp %s: %w", s, err)
	}
	sec := int64(f)
	t.Time = time.Unix(sec, int64((f-float64(sec))*1e9)).UTC()
	return nil
}

// FlexString accepts a JSON string or number (message ids).
type FlexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *FlexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		err := json.Unmarshal(b, &s)
		*f = FlexString(s)
		return err
	}
	if string(b) == "null" {
		return nil
	}
	*f = FlexString(b)
	return nil
}

// IDList accepts ["a","b"] or [{"id":"a"},…].
type IDList []string

// UnmarshalJSON implements json.Unmarshaler.
func (l *IDList) UnmarshalJSON(b []byte) error {
	var ss []string
	if err := json.Unmarshal(b, &ss); err == nil {
		*l = ss
		return nil
	}
	var objs []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &objs); err != nil {
		return err
	}
	*l = make(IDList, len(objs))
	for i, o := range objs {
		(*l)[i] = o.ID
	}
	return nil
}
