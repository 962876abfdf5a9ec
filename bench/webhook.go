package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Webhook receivers (--webhook): pushring POSTs its events (sessions,
// message.offline, refusals) to every endpoint configured through
// POST /v1/webhooks, each endpoint with a bounded queue and one sender.
// The harness runs the receiver on loopback in its own process and
// registers it with the node it started, before the scenario runs.

// Webhook receiver kinds.
const (
	HookNone = "none" // no endpoint registered
	HookDead = "dead" // accepts connections, never answers a request
	HookOK   = "ok"   // answers 204 at once
)

// HookKinds lists the receiver kinds --webhook takes.
var HookKinds = []string{HookNone, HookDead, HookOK}

// HookSuffix names the row of a node with a receiver of kind: "+hook-dead".
func HookSuffix(kind string) string {
	if kind == "" || kind == HookNone {
		return ""
	}
	return "+hook-" + kind
}

// The node's webhook figures, read from its /metrics after the drain:
// what became of the events (every endpoint's together) and what is
// still queued.
const (
	metricHookDelivered = `pushring_webhook_events_total{result="delivered"}`
	metricHookQueueFull = `pushring_webhook_events_total{result="queue_full"}`
	metricHookFailed    = `pushring_webhook_events_total{result="failed"}`
	metricHookQueued    = "pushring_webhook_queued"
	// Messages whose message.offline events were not even worked out:
	// every queue that takes them was full.
	metricHookSkipped = `pushring_webhook_skipped_total{type="message.offline"}`
)

var webhookMetrics = []string{metricHookDelivered, metricHookQueueFull, metricHookFailed, metricHookQueued, metricHookSkipped}

// HookServer is a webhook receiver on a loopback port: dead (every
// request held unanswered until Close, or until the node gives up on
// it) or ok (204 at once). It counts the requests it got.
type HookServer struct {
	Kind     string
	URL      string
	srv      *http.Server
	quit     chan struct{}
	once     sync.Once
	requests atomic.Uint64 // requests received (dead: held)
	offline  atomic.Uint64 // of those, message.offline events (X-Pushring-Event)
}

// StartHookServer starts a receiver of kind HookDead or HookOK on a
// free loopback port.
func StartHookServer(kind string) (*HookServer, error) {
	if kind != HookDead && kind != HookOK {
		return nil, fmt.Errorf("webhook receiver %q: want %s or %s", kind, HookDead, HookOK)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &HookServer{Kind: kind, URL: "http://" + ln.Addr().String() + "/hook", quit: make(chan struct{})}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve), ReadHeaderTimeout: time.Minute}
	go h.srv.Serve(ln)
	return h, nil
}

func (h *HookServer) serve(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	if r.Header.Get("X-Pushring-Event") == "message.offline" {
		h.offline.Add(1)
	}
	if h.Kind == HookDead {
		// Never answer: hold the request until the run ends, or until
		// the node's attempt times out and it closes the connection.
		select {
		case <-h.quit:
		case <-r.Context().Done():
		}
		panic(http.ErrAbortHandler) // no answer, not even at the end
	}
	io.Copy(io.Discard, r.Body)
	w.WriteHeader(http.StatusNoContent)
}

// Requests is the requests received so far, and of those the
// message.offline events.
func (h *HookServer) Requests() (all, offline uint64) {
	return h.requests.Load(), h.offline.Load()
}

// Close ends the held requests and closes every connection.
func (h *HookServer) Close() error {
	if h == nil {
		return nil
	}
	err := h.srv.Close()
	h.once.Do(func() { close(h.quit) })
	return err
}

// UseWebhook starts a receiver of kind (HookDead, HookOK; HookNone does
// nothing) and registers it with the node through POST /v1/webhooks for
// every event type. Stop closes it after the node stopped; the row is
// named with HookSuffix.
func (s *Pushring) UseWebhook(ctx context.Context, kind string) error {
	if kind == "" || kind == HookNone {
		return nil
	}
	h, err := StartHookServer(kind)
	if err != nil {
		return err
	}
	if err := s.registerWebhook(ctx, h.URL); err != nil {
		h.Close()
		return err
	}
	s.hook = h
	return nil
}

// registerWebhook is POST /v1/webhooks {"url": url, "events": []} (all
// types) with the admin key.
func (s *Pushring) registerWebhook(ctx context.Context, url string) error {
	body, _ := json.Marshal(map[string]any{"url": url, "events": []string{}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.http+"/v1/webhooks", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.api.AdminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		return fmt.Errorf("POST /v1/webhooks: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("POST /v1/webhooks: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.ID == "" {
		return errors.New("POST /v1/webhooks: no endpoint id in the answer: " + string(b))
	}
	return nil
}

// UseOfflineMembers makes SetupFanout add n more members to every group
// that never connect: each group message is then delivered to n members
// without a session, a message.offline event each. They are not in the
// plan's Members, so nothing expects their deliveries.
func (s *Pushring) UseOfflineMembers(n int) { s.offline = n }

// fillWebhook sets res's webhook figures: the node's counters at the end
// (b, from its /metrics; absent names leave them nil) and what the
// harness's receiver got, if sys has one.
func fillWebhook(res *Result, sys System, b map[string]float64) {
	get := func(name string) *float64 {
		if v, ok := b[name]; ok {
			return &v
		}
		return nil
	}
	res.WebhookDelivered = get(metricHookDelivered)
	res.WebhookQueueFull = get(metricHookQueueFull)
	res.WebhookFailed = get(metricHookFailed)
	res.WebhookQueued = get(metricHookQueued)
	res.WebhookSkipped = get(metricHookSkipped)
	if p, ok := sys.(*Pushring); ok && p.hook != nil {
		all, offline := p.hook.Requests()
		a, o := float64(all), float64(offline)
		res.WebhookRequests, res.WebhookOfflineRequests = &a, &o
	}
}

// webhookLine is the table's line for a row with webhook figures, "" for
// one without, or one whose node took no events (no endpoint).
func webhookLine(x *Result) string {
	if x.WebhookDelivered == nil && x.WebhookRequests == nil {
		return ""
	}
	v := func(p *float64) float64 {
		if p == nil {
			return 0
		}
		return *p
	}
	if x.Webhook == "" && v(x.WebhookDelivered)+v(x.WebhookQueueFull)+v(x.WebhookFailed)+v(x.WebhookQueued) == 0 {
		return ""
	}
	kind := x.Webhook
	if kind == "" {
		kind = "none registered"
	} else {
		kind += " receiver"
	}
	s := fmt.Sprintf("%s: webhook (%s", x.System, kind)
	if x.OfflineMembers > 0 {
		// One event per offline member per message the node delivered:
		// under overload (QoS 0 at max rate) it drops some, which make none.
		s += fmt.Sprintf(", %d offline members per group: at most sent × %d = %.0f message.offline events", x.OfflineMembers, x.OfflineMembers, float64(x.Sent)*float64(x.OfflineMembers))
	}
	s += fmt.Sprintf("): node's events at the end: delivered %s, queue_full %s, failed %s, still queued %s; messages whose offline events were skipped (queues full) %s",
		optf(x.WebhookDelivered, "%.0f"), optf(x.WebhookQueueFull, "%.0f"), optf(x.WebhookFailed, "%.0f"), optf(x.WebhookQueued, "%.0f"), optf(x.WebhookSkipped, "%.0f"))
	if x.WebhookRequests != nil {
		held := "answered"
		if x.Webhook == HookDead {
			held = "held unanswered"
		}
		s += fmt.Sprintf("; the receiver got %.0f requests (%s), %.0f of them message.offline", *x.WebhookRequests, held, v(x.WebhookOfflineRequests))
	}
	return s
}
