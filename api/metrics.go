package api

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/configerr"
)

// metrics of the API. Label values come from fixed sets (route patterns,
// status codes, error codes, message kinds), never from the request.
type metrics struct {
	requests *prometheus.CounterVec // route, code (HTTP status)
	errors   *prometheus.CounterVec // code (error code string)
	messages *prometheus.CounterVec // kind

	openConns    prometheus.Gauge   // HTTP connections open now
	connsRefused prometheus.Counter // HTTP connections refused at the cap
	lockouts     prometheus.Counter // login ids that entered a backoff
	tlsFailures  prometheus.Counter // HTTPS handshakes that failed
	badForwarded prometheus.Counter // forwarded headers from a trusted proxy that did not parse
}

// newMetrics registers the API's metrics on reg. It fails if reg holds
// another collector under one of their names (a Registry the caller
// filled with something else).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var m metrics
	var err error
	if m.requests, err = counterVec(reg, prometheus.CounterOpts{
		Name: "pushring_http_requests_total",
		Help: "HTTP API requests by route pattern and status code.",
	}, "route", "code"); err != nil {
		return nil, err
	}
	if m.errors, err = counterVec(reg, prometheus.CounterOpts{
		Name: "pushring_http_errors_total",
		Help: "HTTP API error answers by error code.",
	}, "code"); err != nil {
		return nil, err
	}
	if m.messages, err = counterVec(reg, prometheus.CounterOpts{
		Name: "pushring_http_messages_total",
		Help: "Messages accepted over the HTTP API, by kind (direct, group).",
	}, "kind"); err != nil {
		return nil, err
	}
	if m.openConns, err = register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pushring_http_open_conns",
		Help: "HTTP connections open now, over every limited listener.",
	})); err != nil {
		return nil, err
	}
	if m.connsRefused, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushring_http_conns_refused_total",
		Help: "HTTP connections refused at once because the connection cap was reached.",
	})); err != nil {
		return nil, err
	}
	if m.lockouts, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushring_http_login_lockouts_total",
		Help: "Times a login id entered a backoff after repeated failed logins.",
	})); err != nil {
		return nil, err
	}
	if m.badForwarded, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushring_http_forwarded_invalid_total",
		Help: "Requests from a trusted proxy whose Forwarded or X-Forwarded-For header did not parse (the proxy's address was used).",
	})); err != nil {
		return nil, err
	}
	if m.tlsFailures, err = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushring_http_tls_handshake_failures_total",
		Help: "HTTPS handshakes that failed: garbage, a plaintext request, a stall past the read deadline, a refused certificate.",
	})); err != nil {
		return nil, err
	}
	return &m, nil
}

// register registers c, or returns the collector of the same type already
// registered under its name (two APIs on one registry, in tests).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		var zero C
		return zero, configerr.Wrap(ErrInvalidConfig, fmt.Errorf("api: Registry: %w", err))
	}
	return c, nil
}

// counterVec registers a counter vector, or reuses the one already
// registered under the same name (two APIs on one registry, in tests).
func counterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(opts, labels)
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing, nil
			}
		}
		return nil, configerr.Wrap(ErrInvalidConfig, fmt.Errorf("api: Registry: registering %s: %w", opts.Name, err))
	}
	return c, nil
}
