package api

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the API. Label values come from fixed sets (route patterns,
// status codes, error codes, message kinds), never from the request.
type metrics struct {
	requests *prometheus.CounterVec // route, code (HTTP status)
	errors   *prometheus.CounterVec // code (error code string)
	messages *prometheus.CounterVec // kind
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		requests: counterVec(reg, prometheus.CounterOpts{
			Name: "pushring_http_requests_total",
			Help: "HTTP API requests by route pattern and status code.",
		}, "route", "code"),
		errors: counterVec(reg, prometheus.CounterOpts{
			Name: "pushring_http_errors_total",
			Help: "HTTP API error answers by error code.",
		}, "code"),
		messages: counterVec(reg, prometheus.CounterOpts{
			Name: "pushring_http_messages_total",
			Help: "Messages accepted over the HTTP API, by kind (direct, group).",
		}, "kind"),
	}
}

// counterVec registers a counter vector, or reuses the one already
// registered under the same name (two APIs on one registry, in tests).
func counterVec(reg prometheus.Registerer, opts prometheus.CounterOpts, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(opts, labels)
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		panic("api: registering " + opts.Name + ": " + err.Error())
	}
	return c
}
