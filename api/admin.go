package api

// The admin side of the API: listing, reading and deleting users,
// devices and groups, password changes, device key rotation, a
// principal's groups and login sessions.

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/store"
)

// listQuery is a list call's query: ?prefix=&cursor=&limit=.
type listQuery struct {
	prefix, cursor string
	limit          int
}

var (
	errBadQuery = newError(http.StatusBadRequest, "invalid_query",
		"query parameters are prefix (the start of an id), cursor (a page's next_cursor) and limit (1 to 500), each at most once")
	errOldPassword = newError(http.StatusForbidden, "forbidden", "old_password is required and must be the current password")
)

// readListQuery parses and checks a list call's query strictly: only
// the three parameters, each at most once; prefix and cursor made of
// id characters.
func readListQuery(q *request) (listQuery, error) {
	vals, err := url.ParseQuery(q.r.URL.RawQuery)
	if err != nil {
		return listQuery{}, errBadQuery.with(err)
	}
	lq := listQuery{limit: store.DefaultListLimit}
	for k, v := range vals {
		if len(v) != 1 {
			return listQuery{}, errBadQuery
		}
		switch k {
		case "prefix":
			lq.prefix = v[0]
		case "cursor":
			lq.cursor = v[0]
		case "limit":
			n, err := strconv.Atoi(v[0])
			if err != nil || n < 1 || n > store.MaxListLimit {
				return listQuery{}, errBadQuery
			}
			lq.limit = n
		default:
			return listQuery{}, errBadQuery
		}
	}
	if !idChars(lq.prefix) || !idChars(lq.cursor) {
		return listQuery{}, errBadQuery
	}
	return lq, nil
}

// idChars: s could start an id (at most 64 of A-Z a-z 0-9 _ . -).
func idChars(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

type principalResponse struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Created string `json:"created"`
}

func principalOut(p store.Principal) principalResponse {
	return principalResponse{ID: p.ID, Kind: string(p.Kind), Created: rfc3339(p.Created)}
}

// GET /v1/users, /v1/devices (admin)
func (a *API) listPrincipals(kind store.Kind) handlerFunc {
	return func(q *request) error {
		if err := a.needAdmin(q); err != nil {
			return err
		}
		lq, err := readListQuery(q)
		if err != nil {
			return err
		}
		ps, next, err := a.st.ListPrincipals(q.r.Context(), kind, lq.prefix, lq.cursor, lq.limit)
		if err != nil {
			return storeError(err, errNotFound)
		}
		out := make([]principalResponse, len(ps))
		for i, p := range ps {
			out[i] = principalOut(p)
		}
		// Both fields are always present, the other kind's empty list
		// left out: a client reads the one it asked for.
		body := map[string]any{"next_cursor": next}
		if kind == store.User {
			body["users"] = out
		} else {
			body["devices"] = out
		}
		writeJSON(q.w, http.StatusOK, body)
		return nil
	}
}

// principalOf reads the principal of the path's {id}, of kind; the
// caller must be admin, or (self) that principal itself.
func (a *API) principalOf(q *request, kind store.Kind, self bool) (store.Principal, caller, error) {
	c, err := a.authenticate(q)
	if err != nil {
		return store.Principal{}, c, err
	}
	id := q.r.PathValue("id")
	if !store.ValidID(id) {
		return store.Principal{}, c, errInvalidID
	}
	if c.kind != kindAdmin && !(self && c.id == id) {
		if self {
			return store.Principal{}, c, errForbidden
		}
		return store.Principal{}, c, errAdminOnly
	}
	p, err := a.st.Principal(q.r.Context(), id)
	if err != nil {
		return store.Principal{}, c, storeError(err, errNotFound)
	}
	if p.Kind != kind {
		return store.Principal{}, c, errNotFound // a device is no user, and the other way
	}
	return p, c, nil
}

// GET /v1/users/{id}, /v1/devices/{id} (admin, or itself)
func (a *API) getPrincipal(kind store.Kind) handlerFunc {
	return func(q *request) error {
		p, _, err := a.principalOf(q, kind, true)
		if err != nil {
			return err
		}
		writeJSON(q.w, http.StatusOK, principalOut(p))
		return nil
	}
}

// DELETE /v1/users/{id}, /v1/devices/{id} (admin): the principal goes
// with its roles, login sessions and MQTT sessions; every node closes
// its connections as soon as it hears of it (the watch, milliseconds),
// this node before the answer.
func (a *API) deletePrincipal(kind store.Kind) handlerFunc {
	return func(q *request) error {
		p, _, err := a.principalOf(q, kind, false)
		if err != nil {
			return err
		}
		if err := a.st.DeletePrincipal(q.r.Context(), p.ID); err != nil {
			return storeError(err, errNotFound)
		}
		q.w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

type passwordRequest struct {
	Password       string `json:"password"`
	OldPassword    string `json:"old_password"`
	RevokeSessions bool   `json:"revoke_sessions"`
}

// PUT /v1/users/{id}/password (admin; or the user, with old_password).
// With revoke_sessions, the user's other login sessions end (all of them
// when the admin asks); their connections close at once.
func (a *API) setPassword(q *request) error {
	p, c, err := a.principalOf(q, store.User, true)
	if err != nil {
		return err
	}
	var req passwordRequest
	if err := a.readJSON(q, &req); err != nil {
		return err
	}
	if len(req.Password) > maxPasswordBytes || len(req.OldPassword) > maxPasswordBytes {
		return errPasswordTooLong
	}
	checked, ok := false, false // the old password's check, for accounts.end
	if c.kind != kindAdmin {
		// The old password is a guess like a login's: the same limits
		// per address and per account, so a stolen token does not buy
		// unthrottled guesses at the password it cannot see.
		if e := a.beginGuess(q, p.ID); e != nil {
			return e
		}
		defer func() {
			if a.accounts.end(p.ID, checked, ok, a.now()) {
				a.met.lockouts.Inc()
			}
		}()
	}
	release, err := a.acquireHash(q)
	if err != nil {
		return err
	}
	if c.kind != kindAdmin {
		ok, checked = store.CheckPassword(p.SecretHash, req.OldPassword), true
		if !ok {
			release()
			return errOldPassword
		}
	}
	if e := checkNewPassword(p.ID, req.Password); e != nil {
		release()
		return e
	}
	phc, err := store.HashPassword(req.Password)
	release()
	if err != nil {
		return errInternal.with(err)
	}
	ctx := q.r.Context()
	if err := a.st.SetSecret(ctx, p.ID, phc); err != nil {
		return storeError(err, errNotFound)
	}
	if req.RevokeSessions {
		if err := a.revokeSessions(q, p.ID, c.tokenHash); err != nil {
			return err
		}
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

// beginGuess applies the login limits to a password guess for id: per
// client address, then per account (ended by accounts.end).
func (a *API) beginGuess(q *request, id string) *apiError {
	if a.login != nil {
		if ok, wait := a.login.Allow(a.clientKey(q), a.now()); !ok {
			return rateLimited(wait)
		}
	}
	if ok, wait := a.accounts.begin(id, a.now()); !ok {
		e := *errLoginThrottled
		e.retryAfter = retryAfter(wait)
		return &e
	}
	return nil
}

// revokeSessions ends id's login sessions but keep (a token hash, or "").
func (a *API) revokeSessions(q *request, id, keep string) error {
	ctx := q.r.Context()
	ss, err := a.st.Sessions(ctx, id)
	if err != nil {
		return storeError(err, errNotFound)
	}
	for _, s := range ss {
		if s.TokenHash == keep {
			continue
		}
		if err := a.st.DeleteSession(ctx, s.TokenHash); err != nil && !isNotFound(err) {
			return storeError(err, errUnavailable)
		}
	}
	return nil
}

// POST /v1/devices/{id}/key (admin): a new key; the old one stops
// working at once and the device's connections that used it close.
func (a *API) rotateKey(q *request) error {
	p, _, err := a.principalOf(q, store.Device, false)
	if err != nil {
		return err
	}
	key, keyHash, err := store.NewDeviceKey()
	if err != nil {
		return errInternal.with(err)
	}
	if err := a.st.SetSecret(q.r.Context(), p.ID, keyHash); err != nil {
		return storeError(err, errNotFound)
	}
	writeJSON(q.w, http.StatusOK, deviceResponse{ID: p.ID, Key: key})
	return nil
}

type membershipResponse struct {
	ID        string `json:"id"`
	Member    bool   `json:"member"`
	Publisher bool   `json:"publisher"`
}

type membershipsResponse struct {
	Groups []membershipResponse `json:"groups"`
}

// GET /v1/users/{id}/groups, /v1/devices/{id}/groups (admin, or itself)
func (a *API) principalGroups(kind store.Kind) handlerFunc {
	return func(q *request) error {
		p, _, err := a.principalOf(q, kind, true)
		if err != nil {
			return err
		}
		roles, err := a.st.PrincipalRoles(q.r.Context(), p.ID)
		if err != nil {
			return storeError(err, errNotFound)
		}
		out := membershipsResponse{Groups: make([]membershipResponse, 0, len(roles))}
		for gid, r := range roles {
			out.Groups = append(out.Groups, membershipResponse{ID: gid, Member: r&store.Member != 0, Publisher: r&store.Publisher != 0})
		}
		slices.SortFunc(out.Groups, func(x, y membershipResponse) int { return strings.Compare(x.ID, y.ID) })
		writeJSON(q.w, http.StatusOK, out)
		return nil
	}
}

type loginSessionResponse struct {
	// ID names the session (the start of its token's hash: never the
	// token, which is not kept).
	ID        string `json:"id"`
	Created   string `json:"created"`
	ExpiresAt string `json:"expires_at"`
	// Current: the session of the request.
	Current bool `json:"current"`
}

type loginSessionsResponse struct {
	Sessions []loginSessionResponse `json:"sessions"`
}

// sessionIDLen is how much of a token hash names a session.
const sessionIDLen = 16

// GET /v1/users/{id}/sessions (admin, or the user)
func (a *API) listSessions(q *request) error {
	p, c, err := a.principalOf(q, store.User, true)
	if err != nil {
		return err
	}
	ss, err := a.st.Sessions(q.r.Context(), p.ID)
	if err != nil {
		return storeError(err, errNotFound)
	}
	out := loginSessionsResponse{Sessions: make([]loginSessionResponse, 0, len(ss))}
	for _, s := range ss {
		out.Sessions = append(out.Sessions, loginSessionResponse{
			ID:        s.TokenHash[:min(sessionIDLen, len(s.TokenHash))],
			Created:   rfc3339(s.Created),
			ExpiresAt: rfc3339(s.Expires),
			Current:   s.TokenHash == c.tokenHash,
		})
	}
	writeJSON(q.w, http.StatusOK, out)
	return nil
}

// DELETE /v1/users/{id}/sessions (admin, or the user): every login
// session ends, the request's own too; connections close at once.
func (a *API) deleteSessions(q *request) error {
	p, _, err := a.principalOf(q, store.User, true)
	if err != nil {
		return err
	}
	if err := a.revokeSessions(q, p.ID, ""); err != nil {
		return err
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}

type groupSummary struct {
	ID                string `json:"id"`
	MembersCanPublish bool   `json:"members_can_publish"`
	Created           string `json:"created"`
}

type groupList struct {
	Groups     []groupSummary `json:"groups"`
	NextCursor string         `json:"next_cursor"`
}

// GET /v1/groups (admin)
func (a *API) listGroups(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	lq, err := readListQuery(q)
	if err != nil {
		return err
	}
	gs, next, err := a.st.ListGroups(q.r.Context(), lq.prefix, lq.cursor, lq.limit)
	if err != nil {
		return storeError(err, errNotFound)
	}
	out := groupList{Groups: make([]groupSummary, len(gs)), NextCursor: next}
	for i, g := range gs {
		out.Groups[i] = groupSummary{ID: g.ID, MembersCanPublish: g.MembersCanPublish, Created: rfc3339(g.Created)}
	}
	writeJSON(q.w, http.StatusOK, out)
	return nil
}

// DELETE /v1/groups/{gid} (admin): the group, its roles and its
// retained message go; nothing is delivered to it from then on.
func (a *API) deleteGroup(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	gid := q.r.PathValue("gid")
	if !store.ValidID(gid) {
		return errInvalidID
	}
	ctx := q.r.Context()
	if err := a.st.DeleteGroup(ctx, gid); err != nil {
		return storeError(err, errNotFound)
	}
	if a.deps.Retainer != nil {
		// A group made again with this id starts without it. The group
		// is gone already, so a failure here leaves a message nobody can
		// subscribe to until then: logged, not an error of the call.
		clear := &message.Message{ID: a.deps.IDs.Next(), Kind: message.Group, To: gid}
		if err := a.deps.Retainer.Retain(ctx, clear); err != nil {
			a.log.Warn("api: deleted group's retained message not cleared", "group", gid, "err", err)
		}
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}
