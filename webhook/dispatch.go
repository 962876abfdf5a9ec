package webhook

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/ratelimit"
)

// Config configures a Dispatcher. Zero fields take the defaults.
type Config struct {
	// Node names this node in every event.
	Node string
	// QueueLen bounds the events waiting for one endpoint, and
	// QueueBytes their bytes. Defaults 10,000 and 16 MiB.
	QueueLen   int
	QueueBytes int64
	// RefusalRate bounds the refusal events a second (with bursts of 10
	// times as many): refusals come from whoever sends garbage, and must
	// not crowd the other events out of the queues. Default 10; past
	// it, counted in pushring_webhook_skipped_total{type="refusal"}.
	RefusalRate float64
	// Timeout bounds one attempt, from connecting to the answer's
	// status. Default 5 s.
	Timeout time.Duration
	// MaxAttempts of one event before it is dropped. Default 6.
	MaxAttempts int
	// Backoff is the wait after the first failed attempt; it doubles
	// with each further one, up to MaxBackoff. Defaults 500 ms, 30 s:
	// six attempts span about 15 s.
	Backoff, MaxBackoff time.Duration
	// AllowPrivate lets endpoints be on loopback, private, link-local
	// and other non-public addresses. Off, such an address is refused
	// when a request connects (not only when the URL is stored: a name
	// may resolve elsewhere later), so the admin API cannot be used to
	// reach the node's own network (metadata services, NATS monitoring).
	AllowPrivate bool
	// Logger: nil is slog.Default(). Registerer gets the
	// pushring_webhook_* metrics; nil: none.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	c.QueueLen = cmp.Or(c.QueueLen, 10_000)
	c.QueueBytes = cmp.Or(c.QueueBytes, 16<<20)
	c.RefusalRate = cmp.Or(c.RefusalRate, 10)
	c.Timeout = cmp.Or(c.Timeout, 5*time.Second)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 6)
	c.Backoff = cmp.Or(c.Backoff, 500*time.Millisecond)
	c.MaxBackoff = cmp.Or(c.MaxBackoff, 30*time.Second)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	return c
}

// Dispatcher queues events for the configured endpoints and sends them.
// Goroutine-safe.
type Dispatcher struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	prefix string // event ids: prefix + seq
	seq    atomic.Uint64
	met    metrics

	refusals *ratelimit.Limiter[struct{}] // RefusalRate

	mu      sync.Mutex
	senders map[string]*sender // by endpoint id
	closed  bool
	// live is the senders Emit reads, replaced whole on each change.
	live atomic.Pointer[[]*sender]
}

// New returns a Dispatcher with no endpoints (SetEndpoints adds them).
func New(cfg Config) (*Dispatcher, error) {
	cfg = cfg.withDefaults()
	var r [6]byte
	rand.Read(r[:])
	d := &Dispatcher{
		cfg: cfg, log: cfg.Logger.With("component", "webhook"),
		// Redirects are not followed: the configured URL is the
		// receiver, and a redirect elsewhere would carry the signature.
		client: &http.Client{Timeout: cfg.Timeout, Transport: transport(cfg.AllowPrivate),
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		prefix:   cfg.Node + "-" + hex.EncodeToString(r[:]) + "-",
		senders:  make(map[string]*sender),
		refusals: ratelimit.New[struct{}](cfg.RefusalRate, max(1, int(10*cfg.RefusalRate)), 1),
	}
	if err := d.met.register(cfg.Registerer, d); err != nil {
		return nil, err
	}
	d.live.Store(&[]*sender{})
	return d, nil
}

// Wants reports whether some endpoint takes events of type typ: callers
// build an event's data only then. Never blocks.
func (d *Dispatcher) Wants(typ string) bool {
	for _, s := range *d.live.Load() {
		if s.ep.wants(typ) {
			return true
		}
	}
	return false
}

// Room reports whether some endpoint takes events of type typ and has
// room in its queue for one: a caller on a hot path asks first, and
// spends nothing on events no endpoint could take. When endpoints take
// the type but all their queues are full (or, for refusals, past
// RefusalRate), the occasion is counted in
// pushring_webhook_skipped_total{type} (for message.offline one per
// message, whatever its recipients). Never blocks.
func (d *Dispatcher) Room(typ string) bool {
	wanted, room := false, false
	for _, s := range *d.live.Load() {
		if s.ep.wants(typ) {
			wanted = true
			if s.hasRoom(0) {
				room = true
				break
			}
		}
	}
	if room && typ == Refusal && d.refusals != nil {
		room, _ = d.refusals.Allow(struct{}{}, time.Now())
	}
	if wanted && !room {
		d.met.skipped.WithLabelValues(typ).Inc()
	}
	return room
}

// Emit queues an event of type typ with data (marshalled to JSON) for
// every endpoint that takes it. It never blocks: an endpoint whose queue
// is full loses the event (counted), and when every such queue is full
// the event is not even built.
func (d *Dispatcher) Emit(typ string, data any) {
	var body []byte
	var id string
	for _, s := range *d.live.Load() {
		if !s.ep.wants(typ) {
			continue
		}
		if !s.hasRoom(0) {
			d.met.events.WithLabelValues(resultQueueFull).Inc()
			continue
		}
		if body == nil {
			seq := d.seq.Add(1)
			id = d.prefix + strconv.FormatUint(seq, 10)
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false) // a payload's < > & as they are, not six bytes each
			if err := enc.Encode(Event{ID: id, Type: typ, Time: time.Now().UTC(), Node: d.cfg.Node, Seq: seq, Data: data}); err != nil {
				d.log.Error("webhook: event not encoded", "type", typ, "err", err)
				return
			}
			body = bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
		}
		if !s.hasRoom(len(body)) {
			d.met.events.WithLabelValues(resultQueueFull).Inc()
			continue
		}
		s.bytes.Add(int64(len(body)))
		s.pending.Add(1)
		select {
		case s.q <- item{id: id, typ: typ, body: body}:
		default:
			s.bytes.Add(-int64(len(body)))
			s.pending.Add(-1)
			d.met.events.WithLabelValues(resultQueueFull).Inc()
		}
	}
}

// SetEndpoints makes eps the endpoints: new ones start, removed ones
// stop (what they still queued is dropped, counted), changed ones start
// afresh.
func (d *Dispatcher) SetEndpoints(eps []Endpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	keep := make(map[string]*sender, len(eps))
	for _, ep := range eps {
		if s := d.senders[ep.ID]; s != nil && sameEndpoint(&s.ep, &ep) {
			keep[ep.ID] = s
			continue
		}
		keep[ep.ID] = d.start(ep)
	}
	for id, s := range d.senders {
		if keep[id] != s {
			s.stop()
		}
	}
	d.senders = keep
	live := make([]*sender, 0, len(keep))
	for _, s := range keep {
		live = append(live, s)
	}
	d.live.Store(&live)
}

func sameEndpoint(a, b *Endpoint) bool {
	return a.URL == b.URL && a.Secret == b.Secret && slices.Equal(a.Events, b.Events)
}

// Drain waits until every endpoint's queue is empty and nothing is in
// flight, or ctx ends (then it returns its error): at shutdown, the
// events of the connections the node closed, and the offline messages,
// still go out if their endpoints answer.
func (d *Dispatcher) Drain(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		idle := true
		for _, s := range *d.live.Load() {
			if s.pending.Load() > 0 {
				idle = false
			}
		}
		if idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Close stops every sender; queued events are dropped.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	d.closed = true
	for _, s := range d.senders {
		s.stop()
	}
	d.senders = nil
	d.live.Store(&[]*sender{})
	d.mu.Unlock()
}

// queued is the events waiting, all endpoints together.
func (d *Dispatcher) queued() int {
	n := 0
	for _, s := range *d.live.Load() {
		n += len(s.q)
	}
	return n
}

// item is one queued event.
type item struct {
	id, typ string
	body    []byte
}

// sender sends one endpoint's events in order.
type sender struct {
	d     *Dispatcher
	ep    Endpoint
	q     chan item
	bytes atomic.Int64 // bodies queued
	// pending counts events queued or being sent: 0 when idle.
	pending atomic.Int64
	quit    chan struct{}
	once    sync.Once
}

// hasRoom: another event of n bytes fits the queue (n 0: any room).
func (s *sender) hasRoom(n int) bool {
	return len(s.q) < cap(s.q) && s.bytes.Load()+int64(n) <= s.d.cfg.QueueBytes
}

func (d *Dispatcher) start(ep Endpoint) *sender {
	s := &sender{d: d, ep: ep, q: make(chan item, d.cfg.QueueLen), quit: make(chan struct{})}
	go s.run()
	return s
}

func (s *sender) stop() { s.once.Do(func() { close(s.quit) }) }

func (s *sender) run() {
	for {
		select {
		case <-s.quit:
			s.d.met.events.WithLabelValues(resultRemoved).Add(float64(len(s.q)))
			return
		case it := <-s.q:
			s.bytes.Add(-int64(len(it.body)))
			s.deliver(it)
			s.pending.Add(-1)
		}
	}
}

// deliver sends one event, retrying, until it is taken, it failed every
// attempt, or the sender stops.
func (s *sender) deliver(it item) {
	wait := s.d.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := s.post(it)
		if err == nil {
			s.d.met.events.WithLabelValues(resultDelivered).Inc()
			return
		}
		if attempt == s.d.cfg.MaxAttempts {
			s.d.met.events.WithLabelValues(resultFailed).Inc()
			if ok, missed := s.d.met.failLog.Allow(time.Minute); ok {
				s.d.log.Warn("webhook: event dropped after every attempt failed (logged at most once a minute; see pushring_webhook_events_total)",
					"endpoint", s.ep.ID, "event", it.id, "type", it.typ, "attempts", attempt, "err", err, "since_last_line", missed)
			}
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-s.quit:
			t.Stop()
			s.d.met.events.WithLabelValues(resultRemoved).Inc()
			return
		case <-t.C:
		}
		wait = min(2*wait, s.d.cfg.MaxBackoff)
	}
}

// errStatus is an answer other than 2xx.
var errStatus = errors.New("webhook: endpoint answered an error status")

// post makes one attempt.
func (s *sender) post(it item) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.d.cfg.Timeout)
	defer cancel()
	go func() { // the sender stopping ends an attempt in flight
		select {
		case <-s.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ep.URL, bytes.NewReader(it.body))
	if err != nil {
		s.d.met.attempts.WithLabelValues("error").Inc()
		return err
	}
	now := time.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pushring-webhook/1")
	req.Header.Set("X-Pushring-Event", it.typ)
	req.Header.Set("X-Pushring-Id", it.id)
	req.Header.Set("X-Pushring-Timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("X-Pushring-Signature", Sign(s.ep.Secret, now, it.body))
	resp, err := s.d.client.Do(req)
	if err != nil {
		s.d.met.attempts.WithLabelValues("error").Inc()
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		s.d.met.attempts.WithLabelValues("status").Inc()
		return fmt.Errorf("%w: %s", errStatus, resp.Status)
	}
	s.d.met.attempts.WithLabelValues("ok").Inc()
	return nil
}

// errPrivate: an endpoint's address is not a public one.
var errPrivate = errors.New("webhook: endpoint address is not public (see Config.AllowPrivate)")

// transport is the HTTP transport of the senders: its dialer checks the
// address it connects to, after name resolution.
func transport(allowPrivate bool) *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !public(ap.Addr()) {
				return errPrivate
			}
			return nil
		}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = d.DialContext
	t.Proxy = nil // an environment's proxy would reach what the check refuses
	return t
}

// public: ip is a global unicast address outside the private ranges.
func public(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !cgnat.Contains(ip)
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598).
var cgnat = netip.MustParsePrefix("100.64.0.0/10")
