package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/pushring/pushring/store"
)

// apiError is an error answer: HTTP status, a stable snake_case code and a
// message for people. The message never carries a secret. cause, if set,
// is logged, never sent.
type apiError struct {
	status  int
	code    string
	message string
	cause   error
	// retryAfter, in seconds, is sent as Retry-After when > 0.
	retryAfter int
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func newError(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, message: msg}
}

// with returns a copy of e that logs cause.
func (e *apiError) with(cause error) *apiError {
	c := *e
	c.cause = cause
	return &c
}

var (
	errUnauthorized     = newError(http.StatusUnauthorized, "unauthorized", "missing or invalid credentials")
	errBadLogin         = newError(http.StatusUnauthorized, "unauthorized", "invalid id or password")
	errForbidden        = newError(http.StatusForbidden, "forbidden", "not allowed")
	errAdminOnly        = newError(http.StatusForbidden, "forbidden", "this call needs the admin key")
	errSessionOnly      = newError(http.StatusForbidden, "forbidden", "this call needs a session token")
	errNotFound         = newError(http.StatusNotFound, "not_found", "not found")
	errMethodNotAllowed = newError(http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
	errExists           = newError(http.StatusConflict, "already_exists", "id is taken")
	errBodyTooLarge     = newError(http.StatusRequestEntityTooLarge, "body_too_large", "request body is too large")
	errPayloadTooLarge  = newError(http.StatusRequestEntityTooLarge, "payload_too_large", "payload is too large")
	errMediaType        = newError(http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
	errInvalidID        = newError(http.StatusBadRequest, "invalid_id", "ids are 1 to 64 of A-Z a-z 0-9 _ . - (not . or ..)")
	errUnavailable      = newError(http.StatusServiceUnavailable, "unavailable", "service unavailable, try again")
	errInternal         = newError(http.StatusInternalServerError, "internal", "internal error")
)

// storeError maps a store error: notFound is the answer for ErrNotFound.
func storeError(err error, notFound *apiError) *apiError {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return notFound.with(err)
	case errors.Is(err, store.ErrExists):
		return errExists.with(err)
	case errors.Is(err, store.ErrInvalidID):
		return errInvalidID.with(err)
	case errors.Is(err, store.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		return errUnavailable.with(err)
	}
	return errInternal.with(err)
}

// errorBody is the one JSON shape of every error.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// fail logs, counts and writes err as the JSON error answer.
func (a *API) fail(q *request, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = errInternal.with(err)
	}
	a.met.errors.WithLabelValues(e.code).Inc()
	if a.deps.Refused != nil && e.status < 500 {
		a.deps.Refused(e.code, e.status)
	}
	// A throttled or stalling client may cause thousands of these: one
	// line a minute for each, with the count of those not logged.
	switch e.status {
	case http.StatusTooManyRequests:
		if ok, missed := a.limitLog.Allow(logEvery); ok {
			a.logRefusal(q, e, []any{"unlogged_before", missed})
		}
	case http.StatusRequestTimeout:
		if ok, missed := a.slowLog.Allow(logEvery); ok {
			a.logRefusal(q, e, []any{"unlogged_before", missed})
		}
	case http.StatusServiceUnavailable:
		// The store or the bus is down: every publish and login fails
		// alike until it is back.
		if ok, missed := a.unavailableLog.Allow(logEvery); ok {
			a.logRefusal(q, e, []any{"unlogged_before", missed})
		}
	default:
		a.logRefusal(q, e, nil)
	}
	a.writeError(q, e)
}

// logRefusal logs one refused request.
func (a *API) logRefusal(q *request, e *apiError, extra []any) {
	attrs := []any{
		"route", q.route,
		"method", q.r.Method,
		"status", e.status,
		"code", e.code,
		"remote", a.client(q),
	}
	if q.caller.kind != 0 {
		attrs = append(attrs, "caller", q.caller.String())
	}
	if q.subject != "" {
		attrs = append(attrs, "login_id", q.subject)
	}
	if e.cause != nil {
		attrs = append(attrs, "cause", e.cause.Error())
	}
	level := slog.LevelInfo
	if e.status >= 500 {
		level = slog.LevelError
	}
	a.log.Log(q.r.Context(), level, "api: refused", append(attrs, extra...)...)
}

// writeError writes e as the JSON error answer.
func (a *API) writeError(q *request, e *apiError) {
	if e.status == http.StatusUnauthorized {
		q.w.Header().Add("WWW-Authenticate", `Bearer realm="pushring"`)
		// A Basic challenge makes a browser ask for a user name and
		// password in a dialog of its own: offered only to a client that
		// tried Basic already (a device), never to the console's pages.
		if a, _, _ := strings.Cut(q.r.Header.Get("Authorization"), " "); strings.EqualFold(a, "Basic") {
			q.w.Header().Add("WWW-Authenticate", `Basic realm="pushring"`)
		}
	}
	if e.retryAfter > 0 {
		q.w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	var body errorBody
	body.Error.Code = e.code
	body.Error.Message = e.message
	writeJSON(q.w, e.status, body)
}

// writeJSON writes v as the answer with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types are written: a bug
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
