package api

import (
	"net/http"
	"slices"

	"github.com/pushring/pushring/store"
)

var errNoPresence = newError(http.StatusServiceUnavailable, "unavailable", "presence is not served here")

type userPresenceResponse struct {
	ID     string   `json:"id"`
	Online bool     `json:"online"`
	Nodes  []string `json:"nodes"`
	// Complete: every live node answered; else MissingNodes did not
	// (their clients, if any, are not counted).
	Complete     bool     `json:"complete"`
	MissingNodes []string `json:"missing_nodes"`
}

type groupPresenceResponse struct {
	ID     string   `json:"id"`
	Online []string `json:"online"`
	Count  int      `json:"count"`
	// Truncated: a node had more connected members than it lists; Count
	// then adds up the nodes' counts (a member connected to two nodes
	// counts twice) and Online is not all of them.
	Truncated    bool     `json:"truncated"`
	Complete     bool     `json:"complete"`
	MissingNodes []string `json:"missing_nodes"`
}

// GET /v1/users/{id}/presence (admin, the user, or anyone who may send
// her a direct message)
func (a *API) userPresence(q *request) error {
	c, err := a.authenticate(q)
	if err != nil {
		return err
	}
	id := q.r.PathValue("id")
	if !store.ValidID(id) {
		return errInvalidID
	}
	if c.kind != kindAdmin && !a.deps.ACL.CanDirect(c.id, id) {
		return errForbidden
	}
	if a.deps.Presence == nil {
		return errNoPresence
	}
	if _, err := a.st.Principal(q.r.Context(), id); err != nil {
		return storeError(err, errNotFound)
	}
	on := a.deps.Presence.Online(q.r.Context(), "", []string{id})
	out := userPresenceResponse{ID: id, Nodes: []string{}, Complete: len(on.Missing) == 0, MissingNodes: nonNil(on.Missing)}
	for node, ids := range on.ByNode {
		if slices.Contains(ids, id) {
			out.Nodes = append(out.Nodes, node)
		}
	}
	slices.Sort(out.Nodes)
	out.Online = len(out.Nodes) > 0
	writeJSON(q.w, http.StatusOK, out)
	return nil
}

// GET /v1/groups/{gid}/presence (admin, or a member)
func (a *API) groupPresence(q *request) error {
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
	if a.deps.Presence == nil {
		return errNoPresence
	}
	if _, err := a.st.Group(q.r.Context(), gid); err != nil {
		return storeError(err, errNotFound)
	}
	on := a.deps.Presence.Online(q.r.Context(), gid, nil)
	out := groupPresenceResponse{ID: gid, Online: []string{}, Complete: len(on.Missing) == 0, MissingNodes: nonNil(on.Missing)}
	sum := 0
	for node, ids := range on.ByNode {
		out.Online = append(out.Online, ids...)
		sum += on.Counts[node]
		if on.Counts[node] > len(ids) {
			out.Truncated = true
		}
	}
	slices.Sort(out.Online)
	out.Online = slices.Compact(out.Online)
	out.Count = len(out.Online)
	if out.Truncated {
		out.Count = sum
	}
	writeJSON(q.w, http.StatusOK, out)
	return nil
}
