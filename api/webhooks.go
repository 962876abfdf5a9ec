package api

import (
	"errors"
	"net/http"
)

var errNoWebhooks = newError(http.StatusServiceUnavailable, "unavailable", "webhooks are not served here")

type webhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// webhookResponse is an endpoint; Secret only in the answer to its
// creation (it signs the requests; it is not shown again).
type webhookResponse struct {
	ID      string   `json:"id"`
	URL     string   `json:"url"`
	Events  []string `json:"events"`
	Secret  string   `json:"secret,omitempty"`
	Created string   `json:"created"`
}

type webhookList struct {
	Webhooks []webhookResponse `json:"webhooks"`
}

func webhookOut(e WebhookEndpoint, secret bool) webhookResponse {
	r := webhookResponse{ID: e.ID, URL: e.URL, Events: nonNil(e.Events), Created: rfc3339(e.Created)}
	if secret {
		r.Secret = e.Secret
	}
	return r
}

// POST /v1/webhooks (admin)
func (a *API) createWebhook(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	if a.deps.Webhooks == nil {
		return errNoWebhooks
	}
	var req webhookRequest
	if err := a.readJSON(q, &req); err != nil {
		return err
	}
	e, err := a.deps.Webhooks.Create(q.r.Context(), req.URL, req.Events)
	switch {
	case errors.Is(err, ErrWebhookInvalid):
		return newError(http.StatusBadRequest, "invalid_webhook", err.Error())
	case errors.Is(err, ErrWebhookTooMany):
		return newError(http.StatusConflict, "too_many_webhooks", err.Error())
	case err != nil:
		return errUnavailable.with(err)
	}
	writeJSON(q.w, http.StatusCreated, webhookOut(e, true))
	return nil
}

// GET /v1/webhooks (admin)
func (a *API) listWebhooks(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	if a.deps.Webhooks == nil {
		return errNoWebhooks
	}
	out := webhookList{Webhooks: []webhookResponse{}}
	for _, e := range a.deps.Webhooks.List() {
		out.Webhooks = append(out.Webhooks, webhookOut(e, false))
	}
	writeJSON(q.w, http.StatusOK, out)
	return nil
}

// DELETE /v1/webhooks/{id} (admin)
func (a *API) deleteWebhook(q *request) error {
	if err := a.needAdmin(q); err != nil {
		return err
	}
	if a.deps.Webhooks == nil {
		return errNoWebhooks
	}
	err := a.deps.Webhooks.Delete(q.r.Context(), q.r.PathValue("id"))
	switch {
	case errors.Is(err, ErrWebhookNotFound):
		return errNotFound.with(err)
	case err != nil:
		return errUnavailable.with(err)
	}
	q.w.WriteHeader(http.StatusNoContent)
	return nil
}
