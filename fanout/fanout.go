package fanout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/flow"
	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/ring"
)

// Config of a Fanout. Build it from DefaultConfig and set NodeID. New
// fills a zero field with its default, then refuses, with an error naming
// the field, a value it cannot run with.
type Config struct {
	// Cluster names the cluster: the second token of every subject, so
	// clusters sharing one NATS do not see each other. At most
	// maxNodeIDLen bytes, without '.', '*', '>' or white space (a NATS
	// subject token). Default "pushring".
	Cluster string
	// NodeID is this node's id, as Placement.Home and Placement.Owner
	// return it. Required (no default), at most maxNodeIDLen bytes,
	// without '.', '*', '>' or white space (a NATS subject token).
	NodeID string
	// HopLimit bounds how often a Resolve envelope is re-sent because
	// ownership moved while it was in flight (ring convergence). A node
	// that would have to re-send one that has already been re-sent
	// HopLimit times resolves it itself instead and counts it
	// (hop_limit_drops: the loop was dropped, not the message). A Resolve
	// that reaches its owner is resolved whatever its hop count. A count
	// of re-sends, 1 to math.MaxUint8 (it travels in one byte). Default
	// 4.
	HopLimit int
	// MaxEnvelopeBytes is the largest envelope this node publishes, in
	// bytes. A Deliver envelope whose recipients would not fit is split
	// into several, each repeating the payload. Forward refuses with
	// ErrTooLarge a message whose envelope would not fit with
	// envelopeSlack bytes to spare (room for a sender id of maxNodeIDLen,
	// one recipient and an ack request, so that the envelopes other nodes
	// build from it fit too): the largest payload is MaxEnvelopeBytes
	// less this node's envelope header, the message's fixed fields and
	// ids, and envelopeSlack (TestForwardRefuses pins the limit). At
	// least minEnvelopeBytes (smaller positive values are raised to it,
	// so an envelope always has room for a header and a few recipients
	// or acks); must not exceed the NATS server's max payload (for the
	// embedded server, natsembed.Config.MaxPayload), and should be the
	// same on every node. Default 512 KiB.
	MaxEnvelopeBytes int
	// Logger receives warnings (decode errors, publish failures in the
	// receive path), rate limited. Nil (the default) means slog.Default(),
	// so nothing the fanout reports is lost; pass
	// slog.New(slog.DiscardHandler) for silence.
	Logger *slog.Logger
	// Registerer gets the pushring_fanout_* metrics at Start (and loses
	// them at Close). Nil (the default): metrics are kept but not
	// registered.
	Registerer prometheus.Registerer
	// AttachTTL is how long an attach record lives at a home node
	// without being renewed (see attach.go). Default 30 s.
	AttachTTL time.Duration
	// AttachRenew is how often this node re-sends the attach records of
	// the principals present here away from their homes, and sweeps expired
	// records from its own table. Keep it well under AttachTTL on every
	// node (the TTL that counts is the home's), or records expire between
	// renewals; New does not compare the two, since a node only knows its
	// own. Default 10 s.
	AttachRenew time.Duration
	// AckTimeout is how long a QoS 1 publisher's PUBACK waits for the
	// nodes delivering its message to confirm (ForwardAcked, ack.go)
	// before it goes out anyway, counted (ack_timeouts). Keep it above
	// the delivering nodes' AckWithhold plus a round trip. Default 5 s.
	AckTimeout time.Duration
	// AckWithhold is the longest this node withholds its confirmation of a QoS 1
	// Deliver while a recipient's session is backlogged (AckDeliverer).
	// Default 1 s.
	AckWithhold time.Duration
	// OutputBatch is the most envelopes handled back to back while the
	// Deliverer holds the output they produce (OutputBatcher; with a
	// BatchBus, when more envelopes are already waiting), so that a burst
	// leaves in one socket write per connection for every OutputBatch
	// envelopes instead of as many writes as the writers happen to make.
	// It bounds the latency a hold adds and the output held per
	// connection (also capped at outputBatchBytes of envelopes). 1: no
	// hold. Default 64: a 500-message burst into a group leaves in about
	// 8 writes per member, as many as the NATS server's own MQTT makes,
	// while 64 envelopes take a few milliseconds to deliver.
	OutputBatch int
	// Store keeps QoS 1 messages before their publishers are
	// acknowledged (ForwardAcked, store.go): the cluster's message
	// journal. Nil (the default, for tests of routing alone): nothing is
	// stored, and a PUBACK means "handed to the bus".
	Store Store
	// DroppedRepeat: after this node's connection dropped, the Dropped
	// notice that makes the other nodes hold their sessions (mute.go)
	// goes again this often for as long as the catch-up of its stored
	// group messages runs, so that no session's position moves past a
	// group message it still holds. Default 2 s (the nodes hold for
	// longer after each notice).
	DroppedRepeat time.Duration
	// Now is the clock that times QoS 1 flow control: the publishers'
	// waits (AckTimeout) and the confirmations withheld for backlogged
	// recipients (AckWithhold); ackLoop compares it against their due times
	// on every tick, so a test that moves it on sees them time out
	// without waiting for them. Default (and nil): time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with every default filled in; NodeID is
// still to be set.
func DefaultConfig() Config {
	return Config{
		Cluster:          "pushring",
		HopLimit:         4,
		MaxEnvelopeBytes: 512 << 10,
		AttachTTL:        30 * time.Second,
		AttachRenew:      10 * time.Second,
		AckTimeout:       5 * time.Second,
		AckWithhold:      time.Second,
		Now:              time.Now,
		OutputBatch:      64,
		DroppedRepeat:    2 * time.Second,
	}
}

// Validate reports the error New would return for c: nil if New can run
// with it. Use it to refuse a bad config before starting anything else.
func (c Config) Validate() error { return c.withDefaults().validate() }

// withDefaults returns c with every zero field that has a default set to
// it (the nil Logger to slog.Default()), and a positive MaxEnvelopeBytes
// under minEnvelopeBytes raised to it. It leaves wrong values for validate to
// refuse.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Cluster = cmp.Or(c.Cluster, d.Cluster)
	c.HopLimit = cmp.Or(c.HopLimit, d.HopLimit)
	c.MaxEnvelopeBytes = cmp.Or(c.MaxEnvelopeBytes, d.MaxEnvelopeBytes)
	if c.MaxEnvelopeBytes > 0 {
		// Room for a header and a few recipients or acks, whatever the ids.
		c.MaxEnvelopeBytes = max(c.MaxEnvelopeBytes, minEnvelopeBytes)
	}
	c.Logger = cmp.Or(c.Logger, slog.Default())
	c.AttachTTL = cmp.Or(c.AttachTTL, d.AttachTTL)
	c.AttachRenew = cmp.Or(c.AttachRenew, d.AttachRenew)
	c.AckTimeout = cmp.Or(c.AckTimeout, d.AckTimeout)
	c.AckWithhold = cmp.Or(c.AckWithhold, d.AckWithhold)
	if c.Now == nil {
		c.Now = d.Now
	}
	c.OutputBatch = cmp.Or(c.OutputBatch, d.OutputBatch)
	c.DroppedRepeat = cmp.Or(c.DroppedRepeat, d.DroppedRepeat)
	return c
}

// validate checks a Config that went through withDefaults. The error
// names the first bad field.
func (c Config) validate() error {
	token := func(field, v string) error {
		if err := validToken(v); err != nil {
			return check.New("%s %q: %s", field, v, err)
		}
		return nil
	}
	return configerr.First(
		token("Cluster", c.Cluster),
		token("NodeID", c.NodeID),
		configerr.Positive(check, "HopLimit", c.HopLimit),
		check.If(c.HopLimit > math.MaxUint8, "HopLimit must be at most %d (got %d)", math.MaxUint8, c.HopLimit),
		configerr.Positive(check, "MaxEnvelopeBytes", c.MaxEnvelopeBytes),
		configerr.Positive(check, "AttachTTL", c.AttachTTL),
		configerr.Positive(check, "AttachRenew", c.AttachRenew),
		configerr.Positive(check, "AckTimeout", c.AckTimeout),
		configerr.Positive(check, "DroppedRepeat", c.DroppedRepeat),
		configerr.Positive(check, "AckWithhold", c.AckWithhold),
		configerr.Positive(check, "OutputBatch", c.OutputBatch),
	)
}

// Errors of Fanout.
var (
	// ErrClosed: Forward after Close.
	ErrClosed = errors.New("fanout: closed")
	// ErrTooLarge: the message does not fit in an envelope of
	// Config.MaxEnvelopeBytes. Not transient.
	ErrTooLarge = errors.New("fanout: message too large for an envelope")
	// ErrInvalidMessage: nil message, unknown kind, QoS above 2, empty
	// To, or a topic name with a wildcard or too long for a NATS subject.
	// Not transient.
	ErrInvalidMessage = errors.New("fanout: invalid message")
	// ErrInvalidConfig is matched (errors.Is) by every error New returns
	// for a Config it cannot run with; the error's text names the field.
	ErrInvalidConfig = errors.New("fanout: invalid config")
)

// maxNodeIDLen bounds Config.NodeID, and envelopeSlack is what Forward
// keeps free in an envelope beyond the message itself: room for a sender
// id of maxNodeIDLen instead of this node's, plus a recipient count and
// one recipient of maxPrincipalIDLen bytes, plus ackSlack for an ack
// request (the ack node id and a uvarint ack id).
const (
	maxNodeIDLen  = 128
	envelopeSlack = (1 + maxNodeIDLen) + 1 + (1 + maxPrincipalIDLen) + ackSlack
	ackSlack      = (1 + maxNodeIDLen) + binary10 // ack node and id (kinds 6, 7)

	// maxPrincipalIDLen is the longest principal id (store.ValidID).
	maxPrincipalIDLen = 64

	minEnvelopeBytes = 1 << 10
)

// check makes the errors that match ErrInvalidConfig.
var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "fanout"}

// Subject is the NATS subject node nodeID of cluster cluster receives its
// envelopes on.
func Subject(cluster, nodeID string) string {
	return "pushring." + cluster + ".node." + nodeID
}

// Fanout resolves, routes and receives envelopes for one node. Create it
// with New, then Start it; it implements router.Forwarder.
type Fanout struct {
	cfg        Config
	self       string
	hopLimit   uint8
	maxBytes   int
	bus        Bus
	members    Members
	place      Placement
	d          Deliverer
	ackDeliver flow.AckDeliverer // d, if it is one
	outHold    OutputBatcher     // d, if it is one and the bus is a BatchBus
	store      Store             // cfg.Store
	log        *slog.Logger

	stats counters
	work  sync.Pool // of *work
	rcpts sync.Pool // of *[]string, see getRecipients

	// peers maps node id → per-peer subject and counters. Copy on write:
	// readers load the map without a lock, writers hold peersMu.
	peers   atomic.Pointer[map[string]*peer]
	peersMu sync.Mutex

	topics       topicWatches       // filters watched, with their subscriptions (topic.go)
	onTopic      func([]byte, bool) // receiveTopicBatch, made once: every topic subscription's handler
	topicDeliver TopicDeliverer     // d, if it is one

	att  attachTable // home side of attach records (attach.go)
	pres presence    // principals present here, with the attach goroutine (attach.go)
	ask  asks        // presence queries waiting for answers (ask.go)
	// offline, when set, is told of recipients a Deliver ends at here
	// (SetOffline).
	offline atomic.Pointer[offlineHook]

	waits    waits        // QoS 1 publishers waiting here (ack.go)
	acksOut  ackOut       // Ack entries to send, with ackLoop
	appends  appends      // QoS 1 messages handed to the Store, not answered yet (store.go)
	withheld withheldAcks // confirmations withheld for backlogged recipients
	cu       catchUp      // owner's catch-up after a dropped connection (catchup.go)

	// Views that differ (view.go): the listener, and when it was last
	// called (unix ns).
	viewFn       atomic.Pointer[func()]
	lastMismatch atomic.Int64
	muted        atomic.Bool            // see Mute
	repeating    atomic.Bool            // a repeatDropped runs
	droppedFn    atomic.Pointer[func()] // see OnPeerDropped

	// storeFailing: unix ns of the first Store failure since its last
	// success, 0 while it succeeds (StoreFailing).
	storeFailing atomic.Int64
	lastStored   atomic.Uint64 // LastStored

	closed atomic.Bool // fast check for Forward
	// mu is held for reading while one received envelope is handled and
	// for writing by Start and Close.
	mu      sync.RWMutex
	started bool
	unsub   func()

	lastLog atomic.Int64 // unix nanos of the last rate-limited warning

	// ackTick is how often ackLoop times out waits and withheld
	// confirmations (against Config.Now): a fraction of the shorter timeout. Tests that move
	// the clock on set it shorter before Start.
	ackTick time.Duration

	// The runs of envelopes the output is held for: the node subject's
	// (receiveBatch) and the topic subscriptions' (receiveTopicBatch),
	// each touched by its bus goroutine only.
	run, topicRun outputRun
}

// router.Forwarder, without importing router.
var _ interface {
	Forward(ctx context.Context, m *message.Message) error
} = (*Fanout)(nil)

// New returns a Fanout for node cfg.NodeID. It does not touch the bus
// until Start. members, place and d are used from the bus's receive
// goroutine and from every Forward caller, so they must be goroutine-safe.
// Zero Config fields take their defaults (see Config). A Config New
// cannot run with, or a nil bus, members, place or d, is refused with an
// error matching ErrInvalidConfig.
func New(cfg Config, bus Bus, members Members, place Placement, d Deliverer) (*Fanout, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if bus == nil || members == nil || place == nil || d == nil {
		return nil, check.New("New needs a Bus, Members, a Placement and a Deliverer (one is nil)")
	}
	f := &Fanout{
		cfg:      cfg,
		self:     cfg.NodeID,
		ask:      asks{slots: make(chan struct{}, maxPresenceAnswers)},
		hopLimit: uint8(cfg.HopLimit),
		maxBytes: cfg.MaxEnvelopeBytes,
		bus:      bus,
		members:  members,
		place:    place,
		d:        d,
		log:      cfg.Logger.With("component", "fanout", "node", cfg.NodeID),
		ackTick:  max(min(cfg.AckTimeout/10, cfg.AckWithhold/4), 10*time.Millisecond),
	}
	f.stats.created = time.Now()
	f.ackDeliver, _ = d.(flow.AckDeliverer)
	f.outHold, _ = d.(OutputBatcher)
	f.topicDeliver, _ = d.(TopicDeliverer)
	f.onTopic = f.receiveTopicBatch
	f.store = cfg.Store
	f.work.New = func() any { return new(work) }
	f.pres.init()
	f.acksOut.init()
	f.cu.init()
	empty := map[string]*peer{}
	f.peers.Store(&empty)
	return f, nil
}

// Start registers the metrics and subscribes to this node's subject, then
// flushes so that the subscription is in place at the server when Start
// returns. Call it once, before the router accepts clients: a node
// receives its own deliveries through the bus.
func (f *Fanout) Start() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() {
		return ErrClosed
	}
	if f.started {
		return errors.New("fanout: already started")
	}
	if err := f.registerMetrics(); err != nil {
		return err
	}
	var unsub func()
	var err error
	if bb, ok := f.bus.(BatchBus); ok && f.outHold != nil && f.cfg.OutputBatch > 1 {
		unsub, err = bb.SubscribeBatch(Subject(f.cfg.Cluster, f.self), f.receiveBatch)
	} else {
		unsub, err = f.bus.Subscribe(Subject(f.cfg.Cluster, f.self), f.receive)
	}
	if err != nil {
		f.unregisterMetrics()
		return fmt.Errorf("fanout: subscribe: %w", err)
	}
	if err := f.bus.Flush(); err != nil {
		unsub()
		f.unregisterMetrics()
		return fmt.Errorf("fanout: flush: %w", err)
	}
	f.started, f.unsub = true, unsub
	go f.attachLoop()
	go f.ackLoop()
	go f.catchUpLoop()
	return nil
}

// nodeIDOK is validToken as a bool, for the decoder (no allocation).
func nodeIDOK(s string) bool {
	return s != "" && len(s) <= maxNodeIDLen && !strings.ContainsAny(s, ".*> \t\r\n") && utf8.ValidString(s)
}

func validToken(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > maxNodeIDLen {
		return fmt.Errorf("longer than %d bytes", maxNodeIDLen)
	}
	if strings.ContainsAny(s, ".*> \t\r\n") {
		return errors.New("contains '.', '*', '>' or white space")
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8") // it is a metric label
	}
	return nil
}

// Close unsubscribes (the node's subject and every watched filter) and
// unregisters the metrics. When it returns no Deliverer call is running
// or will start; Forward and Watch return ErrClosed. It
// does not flush the bus (the node does, when it drains NATS). Safe to
// call more than once.
func (f *Fanout) Close() error {
	if f.closed.Swap(true) {
		return nil
	}
	f.mu.Lock()
	unsub, started := f.unsub, f.started
	f.unsub = nil
	f.mu.Unlock()
	if started {
		// The attach goroutine sends what is still queued (the Detaches
		// of a router that closed first) and returns.
		close(f.pres.stop)
		<-f.pres.done
		close(f.acksOut.stop)
		<-f.acksOut.done
		close(f.cu.stop)
		<-f.cu.done
		f.cu.reads.Wait()
	}
	if unsub != nil {
		unsub()
	}
	f.unwatchAll()
	if started {
		f.unregisterMetrics()
	}
	return nil
}

// Forward takes message m from a local client into the cluster (see the
// package documentation for the flows; a topic message goes to the nodes
// that watch a matching filter, see Watch). It returns when the bus has
// accepted every envelope, without waiting for delivery or a Flush: a nil
// error means "handed to the bus", which is not durable: a crash of this
// node or of the bus can still lose the message. On an error some
// envelopes may have been sent; a retry can duplicate deliveries, which
// message ids let sessions drop. Goroutine-safe; does not block except on
// the bus. Neither m nor m.Payload is kept after the call (the router
// reuses both).
func (f *Fanout) Forward(ctx context.Context, m *message.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.forward(m, nil, 0)
}

// forward is Forward, and ForwardAcked when r is set: a message stored
// first (m.Seq set) keeps its wait registered, to be sent again, even
// when a publish fails now.
func (f *Fanout) forward(m *message.Message, r flow.Receipt, tag uint64) error {
	if err := f.check(m); err != nil {
		return err
	}
	var ack ackReq
	if r != nil {
		var kept *message.Message
		if m.Seq != 0 {
			kept = m
		}
		ack = ackReq{f.self, f.waits.add(r, tag, f.cfg.Now().Add(f.cfg.AckTimeout).UnixNano(), kept)}
	}
	sent, err := f.route(m, ack)
	if ack.node == "" {
		return err
	}
	if err != nil {
		if m.Seq == 0 {
			// Acks for the envelopes that went out find no wait and
			// are ignored; the publisher gets no PUBACK and sends
			// again.
			f.waits.cancel(ack.id)
		}
		// A stored message's wait stays: its timeout sends it again.
		return err
	}
	if m.Seq == 0 {
		r.Stored(tag, nil) // not stored: handed on is all there is (and it was)
	}
	f.expect(ack.id, sent)
	return nil
}

// check refuses what Forward and ForwardAcked cannot take.
func (f *Fanout) check(m *message.Message) error {
	if f.closed.Load() {
		return ErrClosed
	}
	if m == nil {
		return fmt.Errorf("%w: nil", ErrInvalidMessage)
	}
	if err := validMessage(m); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	if m.Kind == message.Topic {
		if err := f.checkTopic(m); err != nil {
			return err
		}
	}
	// Refused here rather than dropped by a node further on: with the
	// slack, the envelope still fits when the owner re-sends it under its
	// own (longer) node id or builds a Deliver with one recipient.
	if headerSize(f.self)+messageSize(m)+envelopeSlack > f.maxBytes {
		return ErrTooLarge
	}
	return nil
}

// expect tells wait id how many Deliver envelopes to count, when route
// knew (sent >= 0).
func (f *Fanout) expect(id uint64, sent int) {
	if sent < 0 {
		return
	}
	if r, tag, ok := f.waits.update(Ack{ID: id, N: uint32(sent), Expect: true}); ok {
		f.accepted(r, tag) // nothing to wait for (a group without members)
	}
}

// resend forwards stored message m again under wait id, whose
// confirmations did not come in time.
func (f *Fanout) resend(m *message.Message, id uint64) {
	f.stats.resent.Add(1)
	sent, err := f.route(m, ackReq{f.self, id})
	if err != nil {
		f.warn("could not send a stored message again", "id", message.FormatID(m.ID), "err", err)
		return
	}
	f.expect(id, sent)
}

// route sends m's envelopes for the ring as it is now, each carrying ack
// if set (but a Topic envelope). It returns how many Deliver envelopes it
// sent when that is known here (-1 when the group's owner resolves it; 0
// for a topic message: nothing confirms it, see sendTopic).
func (f *Fanout) route(m *message.Message, ack ackReq) (int, error) {
	w := f.getWork()
	defer f.putWork(w)
	var err error
	sent := -1 // Deliver envelopes sent, when known here
	switch m.Kind {
	case message.Group:
		if owner := f.place.Owner(m.To); owner != f.self {
			err = f.sendResolve(w, owner, 0, m, ack)
		} else {
			sent, err = f.resolve(w, m, ack)
		}
		if err == nil {
			f.stats.groupMessages.Add(1)
		}
	case message.Topic:
		sent, err = f.sendTopic(w, m)
		if err == nil {
			f.stats.topicMessages.Add(1)
		}
	default: // message.Direct
		rcpt := [1]string{m.To}
		sent, err = f.sendDeliver(w, f.place.Home(m.To), 0, m, rcpt[:], ack)
		if err == nil {
			f.stats.directMessages.Add(1)
		}
	}
	return sent, err
}

// resolve expands group message m here: one Deliver envelope (or more if
// it must be split) per node that has members, each carrying ack. It
// returns how many it sent and the first publish error after trying
// every node.
func (f *Fanout) resolve(w *work, m *message.Message, ack ackReq) (int, error) {
	if m.Seq != 0 {
		f.cu.resolved(m.Seq)
	}
	members := f.members.Members(m.To)
	if len(members) == 0 {
		return 0, nil
	}
	ring.SplitHomes(members, f.place, &w.split)
	var first error
	sent := 0
	for i := range w.split.Len() {
		// Deliver envelopes start with hops 0 whatever the Resolve's:
		// at a Deliver, hops counts forwards along attach records.
		n, err := f.sendDeliver(w, w.split.Node(i), 0, m, w.split.List(i), ack)
		sent += n
		if err != nil && first == nil {
			first = err
		}
	}
	return sent, first
}

// sendResolve publishes a Resolve envelope for m to node.
func (f *Fanout) sendResolve(w *work, node string, hops uint8, m *message.Message, ack ackReq) error {
	if headerSize(f.self)+ack.size()+messageSize(m) > f.maxBytes {
		return ErrTooLarge
	}
	if f.mute(m) {
		return nil
	}
	w.buf = appendMessageHeader(w.buf[:0], KindResolve, hops, f.self, ack)
	w.buf = appendMessage(w.buf, m)
	if err := f.publish(node, w.buf); err != nil {
		return err
	}
	f.stats.resolvesSent.Add(1)
	return nil
}

// sendDeliver publishes m for rcpts to node: one envelope, or as many as
// it takes to keep each under maxBytes. It returns how many it sent.
func (f *Fanout) sendDeliver(w *work, node string, hops uint8, m *message.Message, rcpts []string, ack ackReq) (int, error) {
	fixed := headerSize(f.self) + ack.size() + messageSize(m)
	sent := 0
	// Every chunk's count is at most len(rcpts), so its varint is at most
	// this long.
	budget := f.maxBytes - fixed - uvarintSize(uint64(len(rcpts)))
	// Muted, the envelopes are counted as sent: their confirmations
	// never come, and the wait sends them again (see Mute).
	muted := f.mute(m)
	for len(rcpts) > 0 {
		n, size := 0, 0
		for n < len(rcpts) {
			c := stringSize(rcpts[n])
			if size+c > budget {
				break
			}
			size += c
			n++
		}
		if n == 0 {
			return sent, ErrTooLarge
		}
		chunk := rcpts[:n]
		rcpts = rcpts[n:]
		buf := w.buf[:0]
		if need := fixed + uvarintSize(uint64(n)) + size; cap(buf) < need {
			buf = make([]byte, 0, need)
		}
		if muted {
			sent++
			continue
		}
		buf = appendMessageHeader(buf, KindDeliver, hops, f.self, ack)
		buf = appendMessage(buf, m)
		buf = appendRecipients(buf, chunk)
		w.buf = buf
		if err := f.publish(node, buf); err != nil {
			return sent, err
		}
		sent++
		f.stats.deliversSent.Add(1)
	}
	return sent, nil
}

// publish sends an envelope of a kind other than Ack to node.
func (f *Fanout) publish(node string, data []byte) error {
	p, err := f.publishTo(node, data)
	if err != nil {
		return err
	}
	p.sent.Add(1)
	return nil
}

func (f *Fanout) publishTo(node string, data []byte) (*peer, error) {
	p := f.peer(node)
	if err := f.bus.Publish(p.subject, data); err != nil {
		f.stats.publishErrors.Add(1)
		return nil, fmt.Errorf("fanout: publish to node %s: %w", node, err)
	}
	return p, nil
}

// outputBatchBytes caps the bytes one held run may leave for a single
// connection (the payloads and topics of its Deliver envelopes), so that
// a hold stays well under the router's outbound limit (1 MiB by
// default) whatever the payloads.
const outputBatchBytes = 256 << 10

// receiveBatch is receive for a BatchBus: while more envelopes wait, the
// Deliverer holds the output of up to OutputBatch of them (and
// outputBatchBytes for one recipient), then writes it at once.
func (f *Fanout) receiveBatch(data []byte, more bool) {
	f.run.deliver(f.outHold, f.cfg.OutputBatch, more, func() int { return f.handle(data) })
}

// outputBytes is what message m adds to a recipient's held output: its
// payload, the group, principal or topic in its topic, and room for the
// rest of the topic and the header.
func outputBytes(m *message.Message) int { return len(m.Payload) + len(m.To) + 64 }

// outputRun counts the envelopes of one run held by an OutputBatcher.
type outputRun struct{ n, bytes int }

// deliver handles one envelope (handle returns the bytes it adds to a
// recipient's output) inside the run: while more wait, under a hold of
// at most maxN envelopes and outputBatchBytes for one recipient; the
// run ends, and the held output is written, after the last.
func (r *outputRun) deliver(h OutputBatcher, maxN int, more bool, handle func() int) {
	r.n++
	if more && h != nil && r.n < maxN && r.bytes < outputBatchBytes {
		h.BeginOutputRun()
	} else {
		more = false
	}
	r.bytes += handle()
	if !more {
		r.n, r.bytes = 0, 0
		if h != nil {
			h.EndOutputRun()
		}
	}
}

// receive handles one envelope from the bus. The bus calls it from one
// goroutine at a time; data is only valid during the call.
func (f *Fanout) receive(data []byte) { f.handle(data) }

// handle is receive, returning the bytes a Deliver envelope's message
// adds to each recipient's output (its payload and topic; 0 for other
// kinds).
func (f *Fanout) handle(data []byte) (perRecipient int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed.Load() {
		return 0
	}
	defer f.recoverHandler()
	sp := f.getRecipients()
	defer f.putRecipients(sp)
	// env (and env.Msg) is fresh for every envelope and never reused, so
	// a Deliverer that keeps m is safe; only the Recipients slice is
	// recycled once Deliver returns.
	env, err := decodeEnvelope(data, *sp)
	if err != nil {
		f.stats.decodeErrors.Add(1)
		f.warn("dropped an undecodable envelope", "err", err, "bytes", len(data))
		return 0
	}
	if env.Kind == KindTopic {
		// Topic envelopes go to topic subjects only (receiveTopic): one
		// here was sent by mistake, and is not delivered twice.
		f.stats.decodeErrors.Add(1)
		f.warn("dropped a topic envelope sent to this node's subject", "from", env.Sender)
		return 0
	}
	f.peer(env.Sender).received.Add(1)
	switch env.Kind {
	case KindDeliver:
		f.stats.deliversReceived.Add(1)
		f.stats.recipients.Add(uint64(len(env.Recipients)))
		f.checkView(env)
		if env.AckNode != "" {
			f.deliverAcked(env)
		} else {
			f.d.Deliver(&env.Msg, env.Recipients)
		}
		if env.Hops == 0 && f.att.n.Load() > 0 {
			f.forwardAttached(env)
		}
		if h := f.offline.Load(); h != nil {
			f.endsHere(env, h)
		}
		*sp = env.Recipients // the scratch, or a larger slice to keep instead
		perRecipient = outputBytes(&env.Msg)
	case KindResolve:
		f.stats.resolvesReceived.Add(1)
		f.handleResolve(env)
	case KindAttach, KindDetach:
		f.handleAttach(env)
	case KindAttachMany:
		f.handleAttach(env)
		*sp = env.Principals // as for Recipients
	case KindAck:
		f.stats.acksReceived.Add(1)
		f.handleAcks(env.Acks)
	case KindDropped:
		f.peerDropped(env.Sender)
	case KindPresence:
		f.handlePresence(env)
	case KindPresenceAnswer:
		f.handlePresenceAnswer(env)
	}
	return perRecipient
}

// recoverHandler, deferred by the receive paths, recovers a panic while
// handling an envelope (a Deliverer bug, say), which would kill the
// process from the bus goroutine: one envelope must not do that.
func (f *Fanout) recoverHandler() {
	if r := recover(); r != nil {
		f.stats.panics.Add(1)
		f.log.Error("recovered a panic while handling an envelope", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	}
}

// deliverAcked delivers a Deliver whose publisher waits and confirms it
// to the waiting node: at once, or when the AckDeliverer says the
// recipients' sessions have room again.
func (f *Fanout) deliverAcked(env *Envelope) {
	if f.ackDeliver == nil {
		f.d.Deliver(&env.Msg, env.Recipients)
		f.queueAck(env.AckNode, Ack{ID: env.AckID, N: 1})
		return
	}
	// The confirmation is registered as withheld before the sessions see
	// the message, so that a Confirm, which may come from another
	// goroutine as soon as they have it, always finds it.
	seq := f.withholdAck(env.AckNode, env.AckID)
	withheld := f.ackDeliver.DeliverAcked(&env.Msg, env.Recipients, f, seq)
	f.settleWithheld(seq, withheld)
}

// handleResolve resolves a group message sent here as its owner, or sends
// it on if ownership has moved since the sender looked.
func (f *Fanout) handleResolve(env *Envelope) {
	m := &env.Msg
	w := f.getWork()
	defer f.putWork(w)
	ack := ackReq{env.AckNode, env.AckID}
	if owner := f.place.Owner(m.To); owner != f.self {
		if env.Hops >= f.hopLimit {
			// Owners still disagree after HopLimit hops: stop bouncing and
			// resolve here. Every node's Members view holds every group,
			// so this node can, and the message is still resolved exactly
			// once, only not where the ring says.
			f.stats.hopLimitDrops.Add(1)
			f.warn("resolving a group message here at the hop limit", "group", m.To,
				"id", message.FormatID(m.ID), "hops", env.Hops, "owner", owner, "from", env.Sender)
			f.resolveFor(w, m, ack)
			return
		}
		if err := f.sendResolve(w, owner, env.Hops+1, m, ack); err != nil {
			f.warn("could not pass a group message on to its owner", "group", m.To, "owner", owner, "err", err)
			return
		}
		f.stats.resolvesForwarded.Add(1)
		return
	}
	if m.Seq != 0 && f.parkResolve(env) {
		return // resolved after the catch-up (catchup.go)
	}
	f.resolveFor(w, m, ack)
}

// resolveFor resolves a Resolve received from another node and tells the
// waiting node, if any, how many Deliver envelopes to count. When some
// could not be sent it names a count that cannot be reached, so the wait
// times out and is counted (ack_timeouts) rather than passing for a
// delivery (the publisher is not asked to send again for what most
// members may have had).
func (f *Fanout) resolveFor(w *work, m *message.Message, ack ackReq) {
	sent, err := f.resolve(w, m, ack)
	if err != nil {
		f.warn("could not deliver a resolved group message", "group", m.To, "id", message.FormatID(m.ID), "err", err)
		sent = math.MaxUint32
	}
	if ack.node != "" {
		f.queueAck(ack.node, Ack{ID: ack.id, N: uint32(sent), Expect: true})
	}
}

// warn logs at most one warning per second, so that a flood of bad
// envelopes does not become a flood of log lines (the counters count
// them all).
func (f *Fanout) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := f.lastLog.Load()
	if now-last < int64(time.Second) || !f.lastLog.CompareAndSwap(last, now) {
		return
	}
	f.log.Warn(msg, args...)
}

// peer returns the subject and counters of node id, creating them on
// first use. Node ids come from Placement when sending and from the wire
// when receiving; past maxPeers distinct ids (garbage senders) the rest
// get uncached entries that share the counters of peer "other".
func (f *Fanout) peer(id string) *peer {
	if p, ok := (*f.peers.Load())[id]; ok {
		return p
	}
	f.peersMu.Lock()
	defer f.peersMu.Unlock()
	old := *f.peers.Load()
	if p, ok := old[id]; ok {
		return p
	}
	// id may alias a received envelope: a copy keeps the map (and the
	// metric label) from holding the whole envelope alive.
	id = strings.Clone(id)
	// Past maxPeers, or for an id that cannot be a label (every id a
	// decoded envelope names is a valid node id, but the placement's come
	// from elsewhere), the counts go to one "other" series.
	if len(old) >= maxPeers || !nodeIDOK(id) {
		other, ok := old[otherPeer]
		if !ok {
			other = f.addPeerLocked(old, otherPeer)
		}
		return &peer{subject: Subject(f.cfg.Cluster, id), peerCounts: other.peerCounts}
	}
	return f.addPeerLocked(old, id)
}

// addPeerLocked adds a peer for node id to the map old, which is the
// current one. peersMu held.
func (f *Fanout) addPeerLocked(old map[string]*peer, id string) *peer {
	p := &peer{subject: Subject(f.cfg.Cluster, id), peerCounts: &peerCounts{created: time.Now()}}
	next := make(map[string]*peer, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[id] = p
	f.peers.Store(&next)
	return p
}

const (
	maxPeers  = 1024
	otherPeer = "other" // the peer label of node ids past maxPeers
)

// peer is a node that envelopes go to or come from. The entries of node
// ids past maxPeers share the peerCounts of otherPeer.
type peer struct {
	subject string
	*peerCounts
}

// peerCounts are the envelopes exchanged with one node: the per-peer
// Prometheus series, and, summed over the peers, the Stats totals.
type peerCounts struct {
	created  time.Time     // for Prometheus
	sent     atomic.Uint64 // envelopes but Ack
	received atomic.Uint64
	acks     atomic.Uint64 // Ack envelopes sent
}

// work is the per-call scratch space of Forward and of the receive path,
// pooled so that the hot path allocates nothing per member or per message.
type work struct {
	buf   []byte
	split ring.Split // recipients by node
	subj  []byte     // a topic message's subject
}

// Pooled scratch that grew past these is dropped rather than kept.
const (
	maxPooledBuf     = 1 << 20
	maxPooledMembers = 1 << 16
)

func (f *Fanout) getWork() *work { return f.work.Get().(*work) }

func (f *Fanout) putWork(w *work) {
	if cap(w.buf) > maxPooledBuf || w.split.Cap() > maxPooledMembers {
		return
	}
	w.split.Reset()
	f.work.Put(w)
}

// getRecipients and putRecipients recycle the recipient slices of
// received Deliver envelopes.
func (f *Fanout) getRecipients() *[]string {
	if sp, ok := f.rcpts.Get().(*[]string); ok {
		return sp
	}
	return new([]string)
}

func (f *Fanout) putRecipients(sp *[]string) {
	s := *sp
	if cap(s) > maxPooledMembers {
		return
	}
	// Drop the strings, which keep their envelope alive. Past len they
	// were cleared by earlier puts.
	clear(s)
	*sp = s[:0]
	f.rcpts.Put(sp)
}

// Stats are the Fanout's counters since New, readable without
// Prometheus.
type Stats struct {
	EnvelopesSent     uint64 // all kinds but Ack (AcksSent) and Topic (TopicEnvelopesSent), accepted by Bus.Publish
	ResolvesSent      uint64 // including ResolvesForwarded
	DeliversSent      uint64
	EnvelopesReceived uint64 // decoded, all kinds but Topic (TopicEnvelopesReceived)
	ResolvesReceived  uint64
	DeliversReceived  uint64
	GroupMessages     uint64 // group messages Forward handed on
	DirectMessages    uint64 // direct messages Forward handed on
	TopicMessages     uint64 // topic messages Forward handed on
	ResolvesForwarded uint64 // Resolve envelopes re-sent because ownership moved
	HopLimitDrops     uint64
	DecodeErrors      uint64
	PublishErrors     uint64
	Recipients        uint64 // recipients handed to the Deliverer
	Panics            uint64 // recovered while handling received envelopes
	AttachForwards    uint64 // Deliver envelopes sent on to nodes where recipients are present (attach records)
	AttachesSent      uint64 // Attach, AttachMany and Detach envelopes sent (renewals included)
	AttachesReceived  uint64 // Attach, AttachMany and Detach envelopes received
	AttachRecords     uint64 // attach records in this node's table now (some may have expired)
	AcksSent          uint64 // Ack envelopes published (acks for this node itself skip the bus)
	AcksReceived      uint64 // Ack envelopes received
	AcksWithheld      uint64 // QoS 1 Deliver confirmations withheld while a recipient was backlogged
	WithholdTimeouts  uint64 // withheld confirmations sent after AckWithhold without the backlog draining
	AckTimeouts       uint64 // QoS 1 publishes not confirmed by every delivering node within AckTimeout
	AckDrops          uint64 // Ack entries not sent: too many distinct ack nodes (garbage)
	Resent            uint64 // stored QoS 1 messages forwarded again: their confirmations did not come in time
	HeldBack          uint64 // stored QoS 1 messages not forwarded: an earlier one of their publisher was not stored
	ViewMismatches    uint64 // Delivers of stored messages routed under another ring than this node's (view.go)
	Muted             uint64 // stored messages whose envelopes were not sent while muted (mute.go)
	PeerDrops         uint64 // Dropped notices from other nodes (mute.go)
	DroppedRepeats    uint64 // Dropped notices sent again while a catch-up ran (mute.go)
	Waiting           uint64 // QoS 1 publishes waiting here for confirmations now

	// Topic envelopes are counted apart from the others: one sent goes
	// to as many nodes as watch a matching filter, none or all.
	TopicEnvelopesSent     uint64 // accepted by Bus.Publish
	TopicEnvelopesReceived uint64 // decoded, from topic subscriptions
	TopicFilters           uint64 // filters watched now (Watch)
}

// counters are the Fanout's counts but the per-peer ones (peerCounts).
// Stats reads them, and so does Prometheus when it scrapes (collector):
// the two views cannot disagree, and an event costs one atomic add.
type counters struct {
	created time.Time // when counting started, for Prometheus

	resolvesSent, deliversSent                         atomic.Uint64
	resolvesReceived, deliversReceived                 atomic.Uint64
	groupMessages, directMessages, resolvesForwarded   atomic.Uint64
	hopLimitDrops, decodeErrors, publishErrors         atomic.Uint64
	recipients, panics                                 atomic.Uint64
	attachForwards, attachesSent, attachesReceived     atomic.Uint64
	acksReceived, acksWithheld, withholdTimeouts       atomic.Uint64
	ackTimeouts, ackDrops, resent, heldBack            atomic.Uint64
	catchUps, caughtUp, catchUpErrors, catchUpOverflow atomic.Uint64
	viewMismatches, muted, peerDrops, droppedRepeats   atomic.Uint64
	topicMessages, topicSent, topicReceived            atomic.Uint64
}

// Stats returns a snapshot of the counters. Goroutine-safe.
func (f *Fanout) Stats() Stats {
	c := &f.stats
	var sent, received, acks uint64
	for _, p := range *f.peers.Load() {
		sent += p.sent.Load()
		received += p.received.Load()
		acks += p.acks.Load()
	}
	return Stats{
		EnvelopesSent:     sent,
		ResolvesSent:      c.resolvesSent.Load(),
		DeliversSent:      c.deliversSent.Load(),
		EnvelopesReceived: received,
		ResolvesReceived:  c.resolvesReceived.Load(),
		DeliversReceived:  c.deliversReceived.Load(),
		GroupMessages:     c.groupMessages.Load(),
		DirectMessages:    c.directMessages.Load(),
		ResolvesForwarded: c.resolvesForwarded.Load(),
		HopLimitDrops:     c.hopLimitDrops.Load(),
		DecodeErrors:      c.decodeErrors.Load(),
		PublishErrors:     c.publishErrors.Load(),
		Recipients:        c.recipients.Load(),
		Panics:            c.panics.Load(),
		AttachForwards:    c.attachForwards.Load(),
		AttachesSent:      c.attachesSent.Load(),
		AttachesReceived:  c.attachesReceived.Load(),
		AttachRecords:     f.attachRecords(),
		AcksSent:          acks,
		AcksReceived:      c.acksReceived.Load(),
		AcksWithheld:      c.acksWithheld.Load(),
		WithholdTimeouts:  c.withholdTimeouts.Load(),
		AckTimeouts:       c.ackTimeouts.Load(),
		AckDrops:          c.ackDrops.Load(),
		Resent:            c.resent.Load(),
		HeldBack:          c.heldBack.Load(),
		ViewMismatches:    c.viewMismatches.Load(),
		Muted:             c.muted.Load(),
		PeerDrops:         c.peerDrops.Load(),
		DroppedRepeats:    c.droppedRepeats.Load(),
		Waiting:           uint64(f.waits.len()),

		TopicMessages:          c.topicMessages.Load(),
		TopicEnvelopesSent:     c.topicSent.Load(),
		TopicEnvelopesReceived: c.topicReceived.Load(),
		TopicFilters:           f.topicFilters(),
	}
}

func (f *Fanout) attachRecords() uint64 { return uint64(max(f.att.n.Load(), 0)) }

func (f *Fanout) topicFilters() uint64 { return uint64(max(f.topics.n.Load(), 0)) }

// Each Prometheus family of the fanout.
var (
	sentDesc = fanoutDesc("envelopes_sent_total",
		"Envelopes published, by destination node; Ack envelopes are counted in acks_sent_total.", "peer")
	acksSentDesc = fanoutDesc("acks_sent_total",
		"Ack envelopes (confirmations of QoS 1 deliveries, batched) published, by destination node.", "peer")
	receivedDesc = fanoutDesc("envelopes_received_total",
		"Envelopes received and decoded, by sending node.", "peer")
	messagesDesc = fanoutDesc("messages_total",
		"Messages handed on by Forward, by kind (group, direct, topic).", "kind")
	topicSentDesc = fanoutDesc("topic_envelopes_sent_total",
		"Topic envelopes published, one per topic message, on the topic's subject (NATS brings each to every node watching a matching filter).")
	topicReceivedDesc = fanoutDesc("topic_envelopes_received_total",
		"Topic envelopes received and decoded: at most one per topic message, however many of this node's filters match it.")
	topicFiltersDesc = fanoutDesc("topic_filters",
		"MQTT topic filters this node watches (subscribed to on NATS) for its sessions.")
	hopLimitDropsDesc = fanoutDesc("hop_limit_drops_total",
		"Group messages resolved off-owner because owners still disagreed after HopLimit re-sends.")
	decodeErrorsDesc = fanoutDesc("decode_errors_total",
		"Envelopes dropped because they could not be decoded.")
	recipientsDesc = fanoutDesc("recipients_total",
		"Recipients handed to local delivery.")
	publishErrorsDesc = fanoutDesc("publish_errors_total",
		"Envelopes the bus refused to publish.")
	attachForwardsDesc = fanoutDesc("attach_forwards_total",
		"Deliver envelopes sent on to a node where recipients are present away from their home (attach records).")
	ackTimeoutsDesc = fanoutDesc("ack_timeouts_total",
		"QoS 1 publishes whose deliveries were not all confirmed within AckTimeout (the publisher goes on; a stored message is forwarded again).")
	acksWithheldDesc = fanoutDesc("acks_withheld_total",
		"QoS 1 deliveries whose confirmation was withheld while a recipient's session was backlogged.")
	withholdTimeoutsDesc = fanoutDesc("withhold_timeouts_total",
		"Withheld QoS 1 confirmations sent after AckWithhold although the backlog had not drained.")
	heldBackDesc = fanoutDesc("held_back_total",
		"Stored QoS 1 messages not forwarded because their publisher was not acknowledged (an earlier message could not be stored, a takeover, a shutdown): the publisher sends them again, and the stored copies are withdrawn.")
	catchUpsDesc = fanoutDesc("catchups_total",
		"Times this node, as groups' owner, read the stored group messages back after its NATS connection dropped (or NATS dropped envelopes for it).")
	caughtUpDesc = fanoutDesc("caught_up_total",
		"Stored group messages resolved again by catch-ups: those this node had not resolved.")
	catchUpErrorsDesc = fanoutDesc("catchup_errors_total",
		"Catch-ups that could not read the store (the messages missed come when their publishers' nodes send them again, out of order).")
	mutedDesc = fanoutDesc("muted_total",
		"Stored messages whose envelopes were not sent because this node's NATS connection was down, or the other nodes were not yet told it is back: the nodes of their recipients read them from the journal (and the wait sends them again).")
	peerDropsDesc = fanoutDesc("peer_drops_total",
		"Notices from other nodes that their NATS connection dropped and is back: each holds this node's sessions as a ring change does.")
	droppedRepeatsDesc = fanoutDesc("dropped_repeats_total",
		"Notices that this node's NATS connection dropped sent again while its catch-up of stored group messages still ran, so the other nodes keep holding their sessions.")
	viewMismatchesDesc = fanoutDesc("view_mismatches_total",
		"Deliver envelopes of stored messages routed by their sender under another hash ring than this node's (views converging): the first in 10 s holds the sessions as a ring change does.")
	catchUpOverflowDesc = fanoutDesc("catchup_overflow_total",
		"Group messages resolved at once, not in order, because too many were waiting for a catch-up.")
	resentDesc = fanoutDesc("resent_total",
		"Stored QoS 1 messages forwarded again because their deliveries were not confirmed in time.")
	attachRecordsDesc = fanoutDesc("attach_records",
		"Attach records (principal present on another node) in this node's table.")
)

func fanoutDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("pushring_fanout_"+name, help, labels, nil)
}

// collector is the Prometheus view of a Fanout's counters. A peer's
// series appear with its first envelope, in either direction.
type collector struct{ f *Fanout }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{sentDesc, acksSentDesc, receivedDesc, messagesDesc,
		hopLimitDropsDesc, decodeErrorsDesc, recipientsDesc, publishErrorsDesc, attachForwardsDesc,
		ackTimeoutsDesc, acksWithheldDesc, withholdTimeoutsDesc, resentDesc, heldBackDesc, catchUpsDesc, caughtUpDesc, catchUpErrorsDesc, catchUpOverflowDesc, viewMismatchesDesc, mutedDesc, peerDropsDesc, droppedRepeatsDesc, attachRecordsDesc,
		topicSentDesc, topicReceivedDesc, topicFiltersDesc} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for id, p := range *c.f.peers.Load() {
		ch <- counter(sentDesc, &p.sent, p.created, id)
		ch <- counter(acksSentDesc, &p.acks, p.created, id)
		ch <- counter(receivedDesc, &p.received, p.created, id)
	}
	s := &c.f.stats
	ch <- counter(messagesDesc, &s.groupMessages, s.created, "group")
	ch <- counter(messagesDesc, &s.directMessages, s.created, "direct")
	ch <- counter(messagesDesc, &s.topicMessages, s.created, "topic")
	ch <- counter(topicSentDesc, &s.topicSent, s.created)
	ch <- counter(topicReceivedDesc, &s.topicReceived, s.created)
	ch <- counter(hopLimitDropsDesc, &s.hopLimitDrops, s.created)
	ch <- counter(decodeErrorsDesc, &s.decodeErrors, s.created)
	ch <- counter(recipientsDesc, &s.recipients, s.created)
	ch <- counter(publishErrorsDesc, &s.publishErrors, s.created)
	ch <- counter(attachForwardsDesc, &s.attachForwards, s.created)
	ch <- counter(ackTimeoutsDesc, &s.ackTimeouts, s.created)
	ch <- counter(acksWithheldDesc, &s.acksWithheld, s.created)
	ch <- counter(withholdTimeoutsDesc, &s.withholdTimeouts, s.created)
	ch <- counter(resentDesc, &s.resent, s.created)
	ch <- counter(heldBackDesc, &s.heldBack, s.created)
	ch <- counter(catchUpsDesc, &s.catchUps, s.created)
	ch <- counter(caughtUpDesc, &s.caughtUp, s.created)
	ch <- counter(catchUpErrorsDesc, &s.catchUpErrors, s.created)
	ch <- counter(catchUpOverflowDesc, &s.catchUpOverflow, s.created)
	ch <- counter(viewMismatchesDesc, &s.viewMismatches, s.created)
	ch <- counter(mutedDesc, &s.muted, s.created)
	ch <- counter(peerDropsDesc, &s.peerDrops, s.created)
	ch <- counter(droppedRepeatsDesc, &s.droppedRepeats, s.created)
	ch <- prometheus.MustNewConstMetric(attachRecordsDesc, prometheus.GaugeValue, float64(c.f.attachRecords()))
	ch <- prometheus.MustNewConstMetric(topicFiltersDesc, prometheus.GaugeValue, float64(c.f.topicFilters()))
}

func counter(d *prometheus.Desc, n *atomic.Uint64, created time.Time, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetricWithCreatedTimestamp(d, prometheus.CounterValue, float64(n.Load()), created, labels...)
}

// registerMetrics adds the Fanout's metrics to Config.Registerer, if set.
func (f *Fanout) registerMetrics() error {
	if f.cfg.Registerer == nil {
		return nil
	}
	if err := f.cfg.Registerer.Register(collector{f}); err != nil {
		return fmt.Errorf("fanout: register metrics: %w", err)
	}
	return nil
}

func (f *Fanout) unregisterMetrics() {
	if f.cfg.Registerer != nil {
		f.cfg.Registerer.Unregister(collector{f})
	}
}
