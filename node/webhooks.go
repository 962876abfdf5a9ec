package node

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/pushring/pushring/api"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/router"
	"github.com/pushring/pushring/webhook"
)

// hookEvents turns what the router and the fanout report into webhook
// events. Every call is cheap when no endpoint takes the event's type.
type hookEvents struct {
	d *webhook.Dispatcher
	r *router.Server
	// boot names this run of the node: a connection is boot-<seq>.
	boot string
}

var _ router.Events = hookEvents{}

type sessionData struct {
	// Connection names the connection, the same in its connected and
	// disconnected events: a client that reconnects (or whose session
	// another connection takes over, reason "taken_over") has a new one,
	// whose connected event may come before the old one's disconnected.
	Connection string `json:"connection"`
	Principal  string `json:"principal"`
	ClientID   string `json:"client_id"`
	Remote     string `json:"remote"`
	Transport  string `json:"transport"`
	Version    byte   `json:"mqtt_version"`
	Clean      bool   `json:"clean"`
	Device     bool   `json:"device"`
	Reason     string `json:"reason,omitempty"`
}

func (h hookEvents) sessionOf(c router.ConnInfo, reason string) sessionData {
	return sessionData{Connection: h.boot + "-" + strconv.FormatUint(uint64(c.Seq), 10), Principal: c.Principal, ClientID: c.ClientID, Remote: c.Remote, Transport: c.Transport,
		Version: c.Version, Clean: c.Clean, Device: c.Device, Reason: reason}
}

func (h hookEvents) Connected(c router.ConnInfo) {
	if h.d.Room(webhook.SessionConnected) {
		h.d.Emit(webhook.SessionConnected, h.sessionOf(c, ""))
	}
}

func (h hookEvents) Disconnected(c router.ConnInfo, reason string) {
	if h.d.Room(webhook.SessionDisconnected) {
		h.d.Emit(webhook.SessionDisconnected, h.sessionOf(c, reason))
	}
}

type refusalData struct {
	Source string `json:"source"` // "mqtt" or "http"
	Reason string `json:"reason"`
	Status int    `json:"status,omitempty"` // http
}

func (h hookEvents) Refused(reason string) {
	if h.d.Room(webhook.Refusal) {
		h.d.Emit(webhook.Refusal, refusalData{Source: "mqtt", Reason: reason})
	}
}

// httpRefused is the API's refusal hook.
func (h hookEvents) httpRefused(code string, status int) {
	if h.d.Room(webhook.Refusal) {
		h.d.Emit(webhook.Refusal, refusalData{Source: "http", Reason: code, Status: status})
	}
}

type offlineData struct {
	Recipient string `json:"recipient"`
	MessageID string `json:"message_id"`
	Kind      string `json:"kind"`            // "group" or "direct"
	Group     string `json:"group,omitempty"` // kind group
	From      string `json:"from"`            // "" from the admin over HTTP
	QoS       byte   `json:"qos"`
	// The payload, up to maxEventPayload bytes: as text when it is valid
	// UTF-8, else in base64; a larger one is left out (PayloadBytes says
	// its size), so that a push service gets what a notification needs
	// and a queue of events stays small.
	Payload       string `json:"payload,omitempty"`
	PayloadBase64 string `json:"payload_base64,omitempty"`
	PayloadBytes  int    `json:"payload_bytes"`
	PayloadOmit   bool   `json:"payload_omitted,omitempty"`
}

// maxEventPayload is the largest payload a message.offline event
// carries.
const maxEventPayload = 4 << 10

// offlineWanted is the fanout's SetOffline gate: an endpoint takes
// message.offline events and has room for one.
func (h hookEvents) offlineWanted() bool { return h.d.Room(webhook.MessageOffline) }

// offline is the fanout's SetOffline hook: m's way to recipient id ends
// on this node; with no connected session here, id has no live session.
// It returns false once no endpoint has room for more: the rest of the
// message's recipients are not looked at.
func (h hookEvents) offline(m *message.Message, id string) bool {
	if h.r.IsConnected(id) {
		return true
	}
	h.d.Emit(webhook.MessageOffline, offlineOf(m, id))
	return h.d.Room(webhook.MessageOffline)
}

// offlineOf is the message.offline event of m for recipient id.
func offlineOf(m *message.Message, id string) offlineData {
	d := offlineData{Recipient: id, MessageID: message.FormatID(m.ID), Kind: m.Kind.String(), From: m.From, QoS: m.QoS,
		PayloadBytes: len(m.Payload)}
	if m.Kind == message.Group {
		d.Group = m.To
	}
	switch {
	case len(m.Payload) > maxEventPayload:
		d.PayloadOmit = true
	case utf8.Valid(m.Payload):
		d.Payload = string(m.Payload)
	default:
		d.PayloadBase64 = base64.StdEncoding.EncodeToString(m.Payload)
	}
	return d
}

// webhookAdmin is the API's view of the endpoints.
type webhookAdmin struct{ e *webhook.Endpoints }

var _ api.Webhooks = webhookAdmin{}

func endpointOut(e webhook.Endpoint) api.WebhookEndpoint {
	return api.WebhookEndpoint{ID: e.ID, URL: e.URL, Events: e.Events, Secret: e.Secret, Created: e.Created}
}

func (w webhookAdmin) Create(ctx context.Context, url string, events []string) (api.WebhookEndpoint, error) {
	e, err := w.e.Create(ctx, url, events)
	switch {
	case errors.Is(err, webhook.ErrInvalid):
		return api.WebhookEndpoint{}, fmt.Errorf("%w: %w", api.ErrWebhookInvalid, err)
	case errors.Is(err, webhook.ErrTooMany):
		return api.WebhookEndpoint{}, fmt.Errorf("%w: %w", api.ErrWebhookTooMany, err)
	case err != nil:
		return api.WebhookEndpoint{}, err
	}
	return endpointOut(e), nil
}

func (w webhookAdmin) Delete(ctx context.Context, id string) error {
	if err := w.e.Delete(ctx, id); errors.Is(err, webhook.ErrNotFound) {
		return fmt.Errorf("%w: %w", api.ErrWebhookNotFound, err)
	} else {
		return err
	}
}

func (w webhookAdmin) List() []api.WebhookEndpoint {
	eps := w.e.List()
	out := make([]api.WebhookEndpoint, len(eps))
	for i, e := range eps {
		out[i] = endpointOut(e)
	}
	return out
}

// bootID names this run of the node in connection names.
func bootID(node string) string {
	var b [4]byte
	rand.Read(b[:])
	return node + "-" + hex.EncodeToString(b[:])
}
