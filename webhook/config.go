package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// keyPrefix starts the endpoints' keys in the bucket.
const keyPrefix = "w."

// MaxEndpoints bounds the endpoints of a cluster: each has a queue and a
// sender on every node.
const MaxEndpoints = 32

var (
	// ErrNotFound: no endpoint with that id.
	ErrNotFound = errors.New("webhook: no such endpoint")
	// ErrInvalid: an endpoint the store refuses (the text says why).
	ErrInvalid = errors.New("webhook: invalid endpoint")
	// ErrTooMany: MaxEndpoints are configured already.
	ErrTooMany = errors.New("webhook: too many endpoints")
)

// Endpoints keeps a cluster's endpoints in a key-value bucket and hands
// every change, made on any node, to a Dispatcher. Goroutine-safe.
type Endpoints struct {
	kv jetstream.KeyValue
	d  *Dispatcher

	mu   sync.Mutex
	eps  map[string]Endpoint
	stop context.CancelFunc
	done chan struct{}
}

// Open loads the endpoints from kv, hands them to d, and watches them
// until Close.
func Open(ctx context.Context, kv jetstream.KeyValue, d *Dispatcher) (*Endpoints, error) {
	wctx, stop := context.WithCancel(context.Background())
	w, err := kv.Watch(wctx, keyPrefix+">")
	if err != nil {
		stop()
		return nil, fmt.Errorf("webhook: watch endpoints: %w", err)
	}
	e := &Endpoints{kv: kv, d: d, eps: make(map[string]Endpoint), stop: stop, done: make(chan struct{})}
	ready := make(chan struct{})
	go e.watch(w, ready)
	select {
	case <-ready:
		return e, nil
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("webhook: load endpoints: %w", ctx.Err())
	}
}

func (e *Endpoints) watch(w jetstream.KeyWatcher, ready chan struct{}) {
	defer close(e.done)
	defer w.Stop()
	for entry := range w.Updates() {
		if entry == nil {
			close(ready)
			continue
		}
		id := strings.TrimPrefix(entry.Key(), keyPrefix)
		e.mu.Lock()
		var ep Endpoint
		if entry.Operation() == jetstream.KeyValuePut && json.Unmarshal(entry.Value(), &ep) == nil && ep.ID == id {
			e.eps[id] = ep
		} else {
			delete(e.eps, id)
		}
		e.publishLocked()
		e.mu.Unlock()
	}
}

func (e *Endpoints) publishLocked() {
	eps := make([]Endpoint, 0, len(e.eps))
	for _, ep := range e.eps {
		eps = append(eps, ep)
	}
	e.d.SetEndpoints(eps)
}

// Close stops the watch.
func (e *Endpoints) Close() {
	e.stop()
	<-e.done
}

// List returns the endpoints, sorted by id.
func (e *Endpoints) List() []Endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	eps := make([]Endpoint, 0, len(e.eps))
	for _, ep := range e.eps {
		eps = append(eps, ep)
	}
	slices.SortFunc(eps, func(a, b Endpoint) int { return strings.Compare(a.ID, b.ID) })
	return eps
}

// Create stores a new endpoint for url and events (empty: all types),
// with a new id and secret, and returns it. In force on this node when
// it returns, on the others as their watch brings it.
func (e *Endpoints) Create(ctx context.Context, rawURL string, events []string) (Endpoint, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" || len(rawURL) > 2048 {
		return Endpoint{}, fmt.Errorf("%w: url must be an http:// or https:// URL without credentials or fragment, at most 2,048 bytes", ErrInvalid)
	}
	for _, t := range events {
		if !slices.Contains(Types, t) {
			return Endpoint{}, fmt.Errorf("%w: unknown event type %q (types: %s)", ErrInvalid, t, strings.Join(Types, ", "))
		}
	}
	if len(e.List()) >= MaxEndpoints {
		return Endpoint{}, ErrTooMany
	}
	var id, secret [16]byte
	rand.Read(id[:8])
	rand.Read(secret[:])
	events = slices.Compact(slices.Sorted(slices.Values(events)))
	if events == nil {
		events = []string{}
	}
	ep := Endpoint{ID: "wh" + hex.EncodeToString(id[:8]), URL: rawURL, Events: events,
		Secret: "whsec_" + hex.EncodeToString(secret[:]), Created: time.Now().UTC()}
	data, _ := json.Marshal(ep)
	if _, err := e.kv.Create(ctx, keyPrefix+ep.ID, data); err != nil {
		return Endpoint{}, fmt.Errorf("webhook: store endpoint: %w", err)
	}
	e.mu.Lock()
	e.eps[ep.ID] = ep
	e.publishLocked()
	e.mu.Unlock()
	return ep, nil
}

// Delete removes endpoint id (ErrNotFound).
func (e *Endpoints) Delete(ctx context.Context, id string) error {
	e.mu.Lock()
	_, ok := e.eps[id]
	e.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	if err := e.kv.Delete(ctx, keyPrefix+id); err != nil {
		return fmt.Errorf("webhook: delete endpoint: %w", err)
	}
	e.mu.Lock()
	delete(e.eps, id)
	e.publishLocked()
	e.mu.Unlock()
	return nil
}
