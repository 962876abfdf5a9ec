// Package journal is the JetStream stream of the QoS 1 messages a cluster
// accepted: every QoS 1 message a node takes from a publisher (MQTT or
// HTTP) is stored here once, before the publisher is acknowledged, and
// sessions that come back (on any node, or after a restart) replay from
// it what they missed, from their position, a stream sequence.
//
// Stream and subjects, for cluster c:
//
//	stream   MSGS_<c>                       file storage, Config.Replicas,
//	                                        bounded by MaxAge, MaxBytes, MaxMsgs
//	                                        (the oldest messages go first)
//	subjects pushring.<c>.m.<ingress>.d.<to>  a direct message to principal <to>
//	         pushring.<c>.m.<ingress>.g.<to>  a group message to group <to>
//	         pushring.<c>.m.<ingress>.t       a message to a rule topic (the
//	                                        topic is in the record)
//
// <ingress> is the node that accepted the message; a node's NATS
// permissions let it publish under its own ingress id only. Ids may hold
// '.', the subject separator, but never '=' (valid ids are 1 to 64 of
// [A-Za-z0-9_.-]), so an id is written as one token with every '.' turned
// into '=', the rule the store's KV keys use.
//
// The stored data is the record of AppendRecord: one copy of the message
// per publish, whatever the number of recipients.
//
// Append publishes with core NATS, each message with a reply subject in
// the node's own inbox that names the slot of the message in a ring of
// Config.MaxPending slots: no future, no channel and no reply subject is
// made per message (a reply subject is made again only for a slot whose
// acknowledgement timed out, so a late one cannot be taken for the
// acknowledgement of the slot's next message). One goroutine reports the
// results in Append order.
package journal

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/internal/configerr"
	"github.com/pushring/pushring/internal/lograte"
	"github.com/pushring/pushring/internal/natsauth"
)

// Config configures a Journal. Zero fields take the DefaultConfig values.
type Config struct {
	// Cluster names the stream (MSGS_<Cluster>) and the subjects
	// (pushring.<Cluster>.m.>), so clusters sharing one NATS keep
	// separate journals. [A-Za-z0-9_-]{1,200}. Default "pushring".
	Cluster string
	// NodeID is this node's id, the ingress token of the subjects of the
	// messages it stores. Required (no default): at most 64 bytes,
	// without '.', '*', '>' or white space (a subject token).
	NodeID string
	// Replicas of the stream: 1 on one NATS server, 3 on a NATS cluster
	// (a message then survives the loss of a server). 1 to 5. Default 1.
	Replicas int
	// MaxAge bounds the backlog in time: a message older than this is
	// dropped from the stream, and a session that comes back later gets
	// a gap instead. Default 7 days, the longest a persistent session is
	// expected to stay away.
	MaxAge time.Duration
	// MaxBytes bounds the stream's size, cluster-wide (each replica holds
	// it all): when full the oldest messages are dropped. Default 1 GiB.
	MaxBytes int64
	// MaxMsgs bounds the stream's message count, the oldest dropped first;
	// -1 for no bound. Default -1: MaxAge and MaxBytes are the bounds that
	// matter, a count bound is for tests and small deployments.
	MaxMsgs int64
	// Timeout bounds the wait for the stream's acknowledgement of one
	// Append (its Appended call then reports ErrTimeout), and every call
	// to JetStream's API. Default 5s, as the store's.
	Timeout time.Duration
	// MaxPending is how many Appends may wait for their acknowledgement
	// at once; Append blocks while that many do, which slows publishers
	// down to what the stream takes. At most 1<<20. Default 4096, enough
	// for a round trip to an R3 stream at about 100k messages a second.
	MaxPending int
	// Registerer gets the pushring_journal_* metrics at Open (and loses
	// them at Close). Nil (the default): metrics are kept but not
	// registered.
	Registerer prometheus.Registerer
}

// DefaultConfig returns the defaults (NodeID has none).
func DefaultConfig() Config {
	return Config{
		Cluster:    "pushring",
		Replicas:   1,
		MaxAge:     7 * 24 * time.Hour,
		MaxBytes:   1 << 30,
		MaxMsgs:    -1,
		Timeout:    5 * time.Second,
		MaxPending: 4096,
	}
}

// ErrInvalidConfig is matched by every error Open returns for a Config it
// cannot run with; the error's text names the field.
var ErrInvalidConfig = errors.New("journal: invalid config")

var check = configerr.Checker{Sentinel: ErrInvalidConfig, Pkg: "journal"}

// Errors of Append, Replay and the Appended calls.
var (
	// ErrClosed: the journal is closed (Append), or it was closed, or
	// its NATS connection was, before the stream acknowledged a message
	// (Appended).
	ErrClosed = errors.New("journal: closed")
	// ErrTimeout: the stream did not acknowledge within Config.Timeout.
	// The message may or may not be stored.
	ErrTimeout = errors.New("journal: no acknowledgement within the timeout")
	// ErrLost: the stream stored a later message while this one went
	// unanswered (see overtakeGrace): the server most likely never got
	// it (if it did, it is stored, as after ErrTimeout).
	ErrLost = errors.New("journal: lost on the way, a later message was stored first")
	// ErrRefused: the server refused the message (no stream, stream
	// unavailable, too large, ...); the error's text says why.
	ErrRefused = errors.New("journal: refused")
	// ErrInvalidMessage: Append was given a message that cannot be
	// stored (see ValidMessage), or Replay an id that is not valid.
	ErrInvalidMessage = errors.New("journal: invalid message")
)

// Validate reports the error Open would return for c before it touches
// JetStream: nil if Open can run with it.
func (c Config) Validate() error { return c.withDefaults().validate() }

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Cluster = cmp.Or(c.Cluster, d.Cluster)
	c.Replicas = cmp.Or(c.Replicas, d.Replicas)
	c.MaxAge = cmp.Or(c.MaxAge, d.MaxAge)
	c.MaxBytes = cmp.Or(c.MaxBytes, d.MaxBytes)
	c.MaxMsgs = cmp.Or(c.MaxMsgs, d.MaxMsgs)
	c.Timeout = cmp.Or(c.Timeout, d.Timeout)
	c.MaxPending = cmp.Or(c.MaxPending, d.MaxPending)
	return c
}

const (
	maxReplicas   = 5
	maxMaxPending = 1 << 20
)

func (c Config) validate() error {
	return configerr.First(
		check.If(!natsauth.ValidCluster(c.Cluster),
			"Cluster %q must be 1 to 200 of A-Z, a-z, 0-9, '_' and '-' (it names the stream and subjects)", c.Cluster),
		check.If(!validNodeID(c.NodeID), "NodeID %q must be 1 to 64 bytes without '.', '*', '>' or white space", c.NodeID),
		check.If(c.Replicas < 1 || c.Replicas > maxReplicas, "Replicas must be 1 to %d (got %d)", maxReplicas, c.Replicas),
		configerr.Positive(check, "MaxAge", c.MaxAge),
		configerr.Positive(check, "MaxBytes", c.MaxBytes),
		check.If(c.MaxMsgs < -1 || c.MaxMsgs == 0, "MaxMsgs must be > 0, or -1 for no bound (got %d)", c.MaxMsgs),
		configerr.Positive(check, "Timeout", c.Timeout),
		check.If(c.MaxPending < 1 || c.MaxPending > maxMaxPending, "MaxPending must be 1 to %d (got %d)", maxMaxPending, c.MaxPending),
	)
}

// validNodeID is the node's rule for its id (natsauth's, node.Config's):
// one subject token.
func validNodeID(id string) bool {
	return id != "" && len(id) <= 64 && !strings.ContainsAny(id, ".*> \t\r\n")
}

// encodeID writes an id as one subject token: '.' becomes '=' (an id
// never holds '='), the store's rule for KV keys.
func encodeID(id string) string { return strings.ReplaceAll(id, ".", "=") }

// An Append's result goes to a flow.Appended: seq is the message's
// stream sequence when err is nil. Appended is called from the journal's
// one reporting goroutine, in Append order, so it must not block for
// long (every later result waits for it) and must call neither Close
// nor Append (which may wait for a slot only this goroutine frees).

// Journal is the stream access of one node. All methods are
// goroutine-safe.
type Journal struct {
	cfg    Config
	log    *slog.Logger
	js     jetstream.JetStream
	nc     *nats.Conn
	stream string // MSGS_<cluster>
	prefix string // pushring.<cluster>.m.

	m *metrics

	// Append's state, under mu: Appends are serialized so that the ring
	// order is the publish order.
	mu     sync.Mutex
	closed bool
	buf    []byte           // the record being published (nats.go copies it)
	key    []byte           // kind byte + to: the dests key
	dests  map[string]*dest // kind byte + to -> its dest, bounded
	head   atomic.Uint64    // next slot to fill (written under mu)

	// The ring: slot i%len(slots) holds the i-th Append until its result
	// is reported. sem holds a token per slot in use: Append blocks on it.
	slots       []slot
	sem         chan struct{}
	kick        chan struct{} // wakes the reporter: a result came, or an Append
	replyPrefix string        // <inbox>.: a slot's reply is <replyPrefix><slot>.<gen>
	sub         *nats.Subscription

	closeOnce sync.Once
	closing   chan struct{} // closed by Close
	done      chan struct{} // closed when the reporter has returned

	failLog lograte.Limiter // store failures
	badLog  lograte.Limiter // undecodable records met by a replay

	// Withdraw's queue and its goroutine (withdraw.go).
	withdraws    chan uint64
	withdrawStop chan struct{} // closed by Close
	withdrawDone chan struct{}
	withdrawLog  lograte.Limiter
}

// The streams's subjects per ingress and kind: ".d." direct, ".g." group,
// ".t" topic. Topic messages share one subject per ingress: a topic name
// is no subject token, and a replay reads them all and matches them
// against its session's filters.
const (
	kindDirect = "d"
	kindGroup  = "g"
	kindTopic  = "t"
)

// Open creates the stream (or updates its configuration to cfg) and
// starts the journal. It does not own js's connection: Close stops the
// journal, the caller closes the connection afterwards. A nil log means
// slog.Default().
func Open(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Journal, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	j := &Journal{
		cfg:     cfg,
		log:     log,
		js:      js,
		nc:      js.Conn(),
		stream:  natsauth.JournalStream(cfg.Cluster),
		prefix:  "pushring." + cfg.Cluster + ".m.",
		dests:   make(map[string]*dest),
		slots:   make([]slot, cfg.MaxPending),
		sem:     make(chan struct{}, cfg.MaxPending),
		kick:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),

		withdraws:    make(chan uint64, withdrawQueue),
		withdrawStop: make(chan struct{}),
		withdrawDone: make(chan struct{}),
	}
	octx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	_, err := js.CreateOrUpdateStream(octx, jetstream.StreamConfig{
		Name:        j.stream,
		Description: "pushring QoS 1 messages: pushring.<cluster>.m.<ingress>.<d|g>.<to>",
		Subjects:    []string{natsauth.JournalSubjects(cfg.Cluster)},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      cfg.MaxAge,
		MaxBytes:    cfg.MaxBytes,
		MaxMsgs:     cfg.MaxMsgs,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("journal: create stream %s: %w", j.stream, err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	j.m = m
	j.replyPrefix = j.nc.NewInbox() + "."
	for i := range j.slots {
		j.slots[i].reply = j.reply(i, 0)
	}
	if j.sub, err = j.nc.Subscribe(j.replyPrefix+"*.*", j.onAck); err != nil {
		j.m.unregister()
		return nil, fmt.Errorf("journal: subscribe to acknowledgements: %w", err)
	}
	// The acknowledgements of MaxPending appends may be queued at once.
	j.sub.SetPendingLimits(max(cfg.MaxPending*2, 65536), -1)
	go j.report()
	go j.withdrawLoop()
	return j, nil
}

// Bounds returns the first and last sequence of the stream now: messages
// below first were dropped by the bounds (or there were none); last is
// the latest stored message (0: none ever). An empty stream that held
// messages has first = last+1.
func (j *Journal) Bounds(ctx context.Context) (first, last uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, j.cfg.Timeout)
	defer cancel()
	s, err := j.js.Stream(ctx, j.stream)
	if err != nil {
		return 0, 0, fmt.Errorf("journal: stream %s: %w", j.stream, err)
	}
	st := s.CachedInfo().State
	return st.FirstSeq, st.LastSeq, nil
}

// Close stops taking Appends (they return ErrClosed), waits for the
// acknowledgements of the Appends in flight, at most Config.Timeout (or
// not at all once the NATS connection is closed: they get ErrClosed),
// and makes their Appended calls before it returns. Close the journal
// before its connection: Appends in flight then get their answers.
func (j *Journal) Close() {
	j.closeOnce.Do(func() {
		j.mu.Lock()
		j.closed = true
		j.mu.Unlock()
		close(j.closing)
		<-j.done
		close(j.withdrawStop) // the Appended calls, which withdraw, are done
		<-j.withdrawDone
		j.sub.Unsubscribe()
		j.m.unregister()
	})
}
