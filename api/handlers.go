package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

// ---- principals ----

type idResponse struct {
	ID string `json:"id"`
}

type deviceResponse struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// POST /v1/users (admin)
func (a *API) createUser(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	var req credentialsRequest
	if err := a.readJSON(q, &req); err != nil {
		return err
	}
	if !store.ValidID(req.ID) {
		return errInvalidID
	}
	// Scoring the password costs up to a few hundred milliseconds of
	// CPU, as hashing does: both take a hashing slot.
	release, err := a.acquireHash(q)
	if err != nil {
		return err
	}
	if e := checkNewPassword(req.ID, req.Password); e != nil {
		release()
		return e
	}
	phc, err := store.HashPassword(req.Password)
	release()
	if err != nil {
		return errInternal.with(err)
	}
	p := store.Principal{ID: req.ID, Kind: store.User, SecretHash: phc, Created: a.now().UTC()}
	if err := a.st.CreatePrincipal(q.r.Context(), p); err != nil {
		return storeError(err, errNotFound)
	}
	writeJSON(q.w, http.StatusCreated, idResponse{ID: req.ID})
	return nil
}

// POST /v1/devices (admin)
func (a *API) createDevice(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	var req deviceRequest
	if err := a.readJSON(q, &req); err != nil {
		return err
	}
	if !store.ValidID(req.ID) {
		return errInvalidID
	}
	key, keyHash, err := store.NewDeviceKey()
	if err != nil {
		return errInternal.with(err)
	}
	p := store.Principal{ID: req.ID, Kind: store.Device, SecretHash: keyHash, Created: a.now().UTC()}
	if err := a.st.CreatePrincipal(q.r.Context(), p); err != nil {
		return storeError(err, errNotFound)
	}
	writeJSON(q.w, http.StatusCreated, deviceResponse{ID: req.ID, Key: key})
	return nil
}

// ---- sessions ----

type loginResponse struct {
	Token        string   `json:"token"`
	ExpiresAt    string   `json:"expires_at"`
	PrivateTopic string   `json:"private_topic"`
	MQTT         []string `json:"mqtt"`
	// MQTTTLS lists the MQTT-over-TLS addresses, in the same order as
	// MQTT (home node first); empty when no node serves TLS.
	MQTTTLS []string `json:"mqtt_tls"`
}

type sessionResponse struct {
	ID           string `json:"id"`
	ExpiresAt    string `json:"expires_at"`
	PrivateTopic string `json:"private_topic"`
}

func (a *API) privateTopic(id string) string { return a.cfg.PrivatePrefix + "/" + id }

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// POST /v1/sessions (login; no Authorization needed)
func (a *API) createSession(q *request) error {
	if a.login != nil {
		if ok, wait := a.login.Allow(a.clientKey(q), a.now()); !ok {
			return rateLimited(wait)
		}
	}
	var req credentialsRequest
	if err := a.readJSON(q, &req); err != nil {
		return err
	}
	if !store.ValidID(req.ID) {
		return errInvalidID
	}
	if len(req.Password) > maxPasswordBytes {
		return errPasswordTooLong
	}
	if ok, wait := a.accounts.begin(req.ID, a.now()); !ok {
		q.subject = req.ID
		e := *errLoginThrottled
		e.retryAfter = retryAfter(wait)
		return &e
	}
	checked, ok := false, false // the attempt's outcome, for accounts.end
	defer func() {
		if a.accounts.end(req.ID, checked, ok, a.now()) {
			a.met.lockouts.Inc()
		}
	}()
	p, err := a.st.Principal(q.r.Context(), req.ID)
	known := err == nil && p.Kind == store.User
	if err != nil && !isNotFound(err) {
		return storeError(err, errBadLogin)
	}
	phc := a.dummyHash()
	if known {
		phc = p.SecretHash
	}
	release, err := a.acquireHash(q)
	if err != nil {
		return err
	}
	ok = store.CheckPassword(phc, req.Password) && known
	checked = true
	release()
	if !ok {
		q.subject = req.ID // for the refusal's log line
		return errBadLogin
	}

	token, tokenHash, err := store.NewToken()
	if err != nil {
		return errInternal.with(err)
	}
	now := a.now().UTC()
	s := store.Session{
		TokenHash:        tokenHash,
		PrincipalID:      p.ID,
		PrincipalCreated: p.Created,
		Created:          now,
		Expires:          now.Add(a.cfg.SessionTTL).Truncate(time.Second),
	}
	ctx := q.r.Context()
	if err := a.st.CreateSession(ctx, s); err != nil {
		return storeError(err, errUnavailable)
	}
	// A delete of the principal that ran meanwhile may have swept its
	// sessions before this one was written: looked at again, it is
	// either gone (and this session with it) or this one is swept.
	if _, err := a.st.Principal(ctx, p.ID); err != nil {
		a.st.DeleteSession(ctx, s.TokenHash)
		return storeError(err, errBadLogin)
	}
	plain, tls := a.mqttAddrs(p.ID)
	writeJSON(q.w, http.StatusCreated, loginResponse{
		Token:        token,
		ExpiresAt:    rfc3339(s.Expires),
		PrivateTopic: a.privateTopic(p.ID),
		MQTT:         plain,
		MQTTTLS:      tls,
	})
	return nil
}

// errLoginThrottled answers a login for an id in backoff after failed
// logins. It is the same for ids that do not exist.
var errLoginThrottled = newError(http.StatusTooManyRequests, "login_throttled",
	"too many failed logins for this id, retry later")

// rateLimited answers a login attempt over its client address's rate.
func rateLimited(wait time.Duration) *apiError {
	e := *newError(http.StatusTooManyRequests, "rate_limited", "too many login attempts, slow down")
	e.retryAfter = retryAfter(wait)
	return &e
}

// retryAfter is the Retry-After of a wait: whole seconds, rounded up, at
// least 1.
func retryAfter(wait time.Duration) int {
	return max(1, int((wait+time.Second-1)/time.Second))
}

// mqttAddrs lists the MQTT and the MQTT-over-TLS addresses for id: its
// home node's first, then the other live nodes' as fallbacks, without
// repeats.
func (a *API) mqttAddrs(id string) (plain, tls []string) {
	home := a.deps.Cluster.HomeNode(id)
	plain, tls = []string{}, []string{}
	seen := map[string]bool{}
	add := func(out *[]string, addrs []string) {
		for _, addr := range addrs {
			if addr != "" && !seen[addr] {
				seen[addr] = true
				*out = append(*out, addr)
			}
		}
	}
	addNode := func(n membership.Node) {
		add(&plain, n.MQTT)
		add(&tls, n.MQTTTLS)
	}
	addNode(home)
	for _, n := range a.deps.Cluster.Nodes() {
		if n.ID != home.ID && (n.State == "" || n.State == "alive") {
			addNode(n)
		}
	}
	return plain, tls
}

// GET /v1/sessions/current (user session)
func (a *API) currentSession(q *request) error {
	c, err := a.needSession(q)
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusOK, sessionResponse{
		ID:           c.id,
		ExpiresAt:    rfc3339(c.expires),
		PrivateTopic: a.privateTopic(c.id),
	})
	return nil
}

// DELETE /v1/sessions/current (user session): logout, revoked at once.
func (a *API) deleteSession(q *request) error {
	c, err := a.needSession(q)
	if err != nil {
		return err
	}
	if err := a.st.DeleteSession(q.r.Context(), c.tokenHash); err != nil && !isNotFound(err) {
		return storeError(err, errUnavailable)
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// ---- groups ----

type groupResponse struct {
	ID                string   `json:"id"`
	MembersCanPublish bool     `json:"members_can_publish"`
	Members           []string `json:"members"`
	Publishers        []string `json:"publishers"`
}

// POST /v1/groups (admin)
func (a *API) createGroup(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	var req groupRequest
	if err := a.readJSON(q, &req); err != nil {
		return err
	}
	if !store.ValidID(req.ID) {
		return errInvalidID
	}
	g := store.Group{ID: req.ID, MembersCanPublish: req.MembersCanPublish, Created: a.now().UTC()}
	if err := a.st.CreateGroup(q.r.Context(), g); err != nil {
		return storeError(err, errNotFound)
	}
	writeJSON(q.w, http.StatusCreated, groupResponse{
		ID: g.ID, MembersCanPublish: g.MembersCanPublish, Members: []string{}, Publishers: []string{},
	})
	return nil
}

// GET /v1/groups/{gid} (admin, or a member of gid)
func (a *API) getGroup(q *request) error {
	c, err := a.authenticate(q)
	if err != nil {
		return err
	}
	gid := q.r.PathValue("gid")
	if !store.ValidID(gid) {
		return errInvalidID
	}
	if c.kind != kindAdmin && !a.deps.ACL.IsMember(gid, c.id) {
		return errForbidden
	}
	ctx := q.r.Context()
	g, err := a.st.Group(ctx, gid)
	if err != nil {
		return storeError(err, errNotFound)
	}
	members, publishers, err := a.st.Roles(ctx, gid)
	if err != nil {
		return storeError(err, errNotFound)
	}
	writeJSON(q.w, http.StatusOK, groupResponse{
		ID:                g.ID,
		MembersCanPublish: g.MembersCanPublish,
		Members:           nonNil(members),
		Publishers:        nonNil(publishers),
	})
	return nil
}

// PUT|DELETE /v1/groups/{gid}/{members|publishers}/{id} (admin)
func (a *API) setRole(role store.Role, on bool) handlerFunc {
	return func(q *request) error {
		if err := a.needAdmin(q); err != nil {
			return err
		}
		gid, id := q.r.PathValue("gid"), q.r.PathValue("id")
		if !store.ValidID(gid) || !store.ValidID(id) {
			return errInvalidID
		}
		if err := a.st.SetRole(q.r.Context(), gid, id, role, on); err != nil {
			return storeError(err, errNotFound)
		}
		q.w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// ---- messages ----

type messageResponse struct {
	ID string `json:"id"`
}

// POST /v1/groups/{gid}/messages (admin, or ACL.CanPublishGroup)
func (a *API) groupMessage(q *request) error {
	return a.publish(q, message.Group, q.r.PathValue("gid"))
}

// POST /v1/users/{id}/messages (admin, or ACL.CanDirect)
func (a *API) directMessage(q *request) error {
	return a.publish(q, message.Direct, q.r.PathValue("id"))
}

// publish checks, in this order: credentials, the target id, the ACL
// (before existence, so a refused caller learns nothing about the target),
// the body, that the target exists; then forwards.
func (a *API) publish(q *request, kind message.Kind, to string) error {
	c, err := a.authenticate(q)
	if err != nil {
		return err
	}
	if !store.ValidID(to) {
		return errInvalidID
	}
	if c.kind != kindAdmin {
		allowed := false
		if kind == message.Group {
			allowed = a.deps.ACL.CanPublishGroup(c.id, to)
		} else {
			allowed = a.deps.ACL.CanDirect(c.id, to)
		}
		if !allowed {
			return errForbidden
		}
	}
	var req messageRequest
	if err := a.readJSON(q, &req); err != nil {
		return err
	}
	payload, qos, e := req.payload(a.cfg.MaxPayloadBytes)
	if e != nil {
		return e
	}
	expires, e := req.expires(time.Now())
	if e != nil {
		return e
	}
	switch {
	case req.Retain && kind != message.Group:
		return errRetainDirect
	case req.Retain && a.deps.Retainer == nil:
		return errNoRetain
	}
	ctx := q.r.Context()
	if kind == message.Group {
		_, err = a.st.Group(ctx, to)
	} else {
		_, err = a.st.Principal(ctx, to)
	}
	if err != nil {
		return storeError(fmt.Errorf("%s message to %s: %w", kind, to, err), errNotFound)
	}
	m := &message.Message{
		ID:      a.deps.IDs.Next(),
		Kind:    kind,
		From:    c.id, // "" for admin
		To:      to,
		QoS:     qos,
		Payload: payload,
		Expires: expires,
	}
	if req.Retain {
		// Kept before it is delivered: a failure leaves nothing for the
		// client's retry to duplicate.
		if err := a.deps.Retainer.Retain(ctx, m); err != nil {
			cause := fmt.Errorf("group message %s to %s not retained: %w", message.FormatID(m.ID), to, err)
			if errors.Is(err, ErrRetainedFull) {
				return errRetainedFull.with(cause)
			}
			return errUnavailable.with(cause)
		}
	}
	if err := a.deps.Publisher.Forward(ctx, m); err != nil {
		// The log line says what was refused; the client learns only
		// that it may try again.
		return errUnavailable.with(fmt.Errorf("%s message %s to %s not published: %w", kind, message.FormatID(m.ID), to, err))
	}
	a.met.messages.WithLabelValues(kind.String()).Inc()
	writeJSON(q.w, http.StatusAccepted, messageResponse{ID: message.FormatID(m.ID)})
	return nil
}

// ---- cluster ----

type routeResponse struct {
	ID   string          `json:"id"`
	Node membership.Node `json:"node"`
}

type clusterResponse struct {
	Self  membership.Node   `json:"self"`
	Nodes []membership.Node `json:"nodes"`
	// Members are the live nodes and, for a few minutes after they went,
	// the dead and left ones, each with its state.
	Members []membership.Node `json:"members"`
}

// GET /v1/route/{id} (any credential)
func (a *API) route(q *request) error {
	if _, err := a.authenticate(q); err != nil {
		return err
	}
	id := q.r.PathValue("id")
	if !store.ValidID(id) {
		return errInvalidID
	}
	writeJSON(q.w, http.StatusOK, routeResponse{ID: id, Node: a.deps.Cluster.HomeNode(id)})
	return nil
}

// GET /v1/cluster (any credential)
func (a *API) cluster(q *request) error {
	if _, err := a.authenticate(q); err != nil {
		return err
	}
	out := clusterResponse{Self: a.deps.Cluster.Self(), Nodes: nonNil(a.deps.Cluster.Nodes())}
	out.Members = out.Nodes
	if m, ok := a.deps.Cluster.(interface{ Members() []membership.Node }); ok {
		out.Members = nonNil(m.Members())
	}
	writeJSON(q.w, http.StatusOK, out)
	return nil
}

// ---- health ----

type statusResponse struct {
	Status string `json:"status"`
}

// GET /healthz: the process runs.
func (a *API) healthz(q *request) error {
	writeJSON(q.w, http.StatusOK, statusResponse{Status: "ok"})
	return nil
}

var errNotReady = newError(http.StatusServiceUnavailable, "not_ready", "node is not ready")

// GET /readyz: the node can serve.
func (a *API) readyz(q *request) error {
	if a.deps.Ready != nil {
		if err := a.deps.Ready(); err != nil {
			return errNotReady.with(err)
		}
	}
	writeJSON(q.w, http.StatusOK, statusResponse{Status: "ready"})
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
