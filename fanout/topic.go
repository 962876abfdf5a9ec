package fanout

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

// Topic messages (message.Topic) are routed by interest, as a plain
// broker routes them: each node subscribes, through a TopicBus, to the
// NATS subjects of the MQTT filters its sessions hold (Watch), and a
// topic message is published once, on its topic's subject. NATS does
// the matching, so a node without a matching subscription never sees the
// message; all of a node's subscriptions share one queue group (its node
// id and an incarnation, see topicWatches.queue), so a node whose filters
// overlap gets it once.
//
// Subjects. The topic "a/b/c" of cluster c is "pushring.c.t.a.b.c":
// each level one subject token, encoded so that no topic byte can act
// as a subject separator or wildcard and no two topics share a subject.
// Bytes in [A-Za-z0-9_-] stay; every other byte becomes '~' and two
// lowercase hex digits; an empty level is the token "~". A plain byte is
// never '~', and an escape is always three bytes, so the encoding can be
// read back (the tests do). Filters map level by level: '+' to '*', a
// final '#' to '>' plus the subject without it ("a/#" matches "a"; NATS
// "a.>" does not). One mismatch is left to the receiver: a filter that
// begins with a wildcard does not match a topic that begins with '$' in
// MQTT, but its subject does, so a node may get a '$' topic none of its
// sessions takes; the TopicDeliverer matches each session's filter
// anyway.

// maxTopicSubjectLen bounds a topic subject (and a filter's): the NATS
// server closes a connection whose protocol line (PUB, SUB, MSG, with
// the subject) exceeds its max_control_line, 4 KiB by default. It allows
// some 2,000 bytes of plain topic or 680 bytes escaped.
const maxTopicSubjectLen = 2048

// ErrInvalidFilter: Watch was given something that is not an MQTT topic
// filter ('+' or '#' inside a level, '#' before the last level, U+0000,
// empty) or whose subjects would be too long for NATS.
var ErrInvalidFilter = errors.New("fanout: invalid topic filter")

// errNoTopicBus: Watch or SyncWatches on a Bus that cannot carry topic
// messages.
var errNoTopicBus = errors.New("fanout: the bus does not carry topic messages (not a TopicBus)")

// TopicSubject is the NATS subject the messages of MQTT topic name topic
// of cluster cluster are published on (see the encoding above).
func TopicSubject(cluster, topic string) string {
	return string(AppendTopicSubject(make([]byte, 0, topicSubjectLen(cluster, topic)), cluster, topic))
}

// AppendTopicSubject appends TopicSubject(cluster, topic) to dst and
// returns the extended slice. It does not allocate when dst has room.
func AppendTopicSubject(dst []byte, cluster, topic string) []byte {
	dst = appendTopicPrefix(dst, cluster)
	for {
		i := strings.IndexByte(topic, '/')
		if i < 0 {
			return appendLevel(dst, topic)
		}
		dst = appendLevel(dst, topic[:i])
		dst = append(dst, '.')
		topic = topic[i+1:]
	}
}

// FilterSubjects are the NATS subjects that, together, match exactly
// the topics MQTT filter filter matches (but see '$' above): one, or two
// for a filter ending in "/#". For anything that is not a valid filter
// it still returns subjects, matching no valid topic name where the
// filter is invalid ('+' or '#' inside a level, or a '#' before the last
// level, are taken as plain bytes).
func FilterSubjects(cluster, filter string) []string {
	b := appendTopicPrefix(make([]byte, 0, topicSubjectLen(cluster, filter)+2), cluster)
	start := len(b)
	for {
		i := strings.IndexByte(filter, '/')
		level := filter
		if i >= 0 {
			level = filter[:i]
		}
		switch {
		case i < 0 && level == "#":
			if len(b) == start {
				return []string{string(append(b, '>'))} // "#": every topic
			}
			parent := string(b[:len(b)-1]) // without its '.'
			return []string{string(append(b, '>')), parent}
		case level == "+":
			b = append(b, '*')
		default:
			b = appendLevel(b, level)
		}
		if i < 0 {
			return []string{string(b)}
		}
		b = append(b, '.')
		filter = filter[i+1:]
	}
}

func appendTopicPrefix(dst []byte, cluster string) []byte {
	dst = append(dst, "pushring."...)
	dst = append(dst, cluster...)
	return append(dst, ".t."...)
}

// appendLevel appends the subject token of one topic level.
func appendLevel(dst []byte, level string) []byte {
	if level == "" {
		return append(dst, '~')
	}
	for i := 0; i < len(level); i++ {
		c := level[i]
		if plainTopicByte[c] {
			dst = append(dst, c)
		} else {
			dst = append(dst, '~', hexDigits[c>>4], hexDigits[c&0xf])
		}
	}
	return dst
}

// topicSubjectLen is len(TopicSubject(cluster, topic)), without building
// it.
func topicSubjectLen(cluster, topic string) int {
	n := len("pushring.") + len(cluster) + len(".t.")
	empty := true // the current level is empty so far
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		switch {
		case c == '/':
			if empty {
				n++ // "~"
			}
			n++ // '.'
			empty = true
			continue
		case plainTopicByte[c]:
			n++
		default:
			n += 3
		}
		empty = false
	}
	if empty {
		n++
	}
	return n
}

const hexDigits = "0123456789abcdef"

// plainTopicByte: the bytes a topic level keeps in its subject token.
var plainTopicByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	return t
}()

// checkTopic refuses a topic message Forward cannot publish: a topic
// name with a wildcard, or one whose subject NATS would refuse.
func (f *Fanout) checkTopic(m *message.Message) error {
	if strings.ContainsAny(m.To, "+#\x00") {
		return fmt.Errorf("%w: topic %q has a wildcard or U+0000", ErrInvalidMessage, m.To)
	}
	// Each topic byte takes at most 3 subject bytes: most topics are
	// known to fit without walking them a second time (sendTopic does).
	if 3*len(m.To) > maxTopicSubjectLen-len("pushring..t.")-len(f.cfg.Cluster) &&
		topicSubjectLen(f.cfg.Cluster, m.To) > maxTopicSubjectLen {
		return fmt.Errorf("%w: topic too long for a NATS subject (%d bytes)", ErrInvalidMessage, len(m.To))
	}
	return nil
}

// sendTopic publishes m's one Topic envelope on its topic's subject. It
// returns how many confirmations to wait for: none, since nothing
// confirms a topic message; but one while muted, as sendDeliver counts a
// muted Deliver, so that a stored message's wait times out and sends it
// again once the connection is back.
func (f *Fanout) sendTopic(w *work, m *message.Message) (int, error) {
	if f.mute(m) {
		return 1, nil
	}
	w.buf = appendHeader(w.buf[:0], KindTopic, 0, f.self)
	w.buf = appendMessage(w.buf, m)
	w.subj = AppendTopicSubject(w.subj[:0], f.cfg.Cluster, m.To)
	// The Bus keeps neither the subject nor the data (Bus.Publish): a
	// string over the pooled buffer saves an allocation per message.
	subject := unsafe.String(unsafe.SliceData(w.subj), len(w.subj))
	if err := f.bus.Publish(subject, w.buf); err != nil {
		f.stats.publishErrors.Add(1)
		return 0, fmt.Errorf("fanout: publish to topic %q: %w", m.To, err)
	}
	f.stats.topicSent.Add(1)
	return 0, nil
}

// receiveTopicBatch is receiveTopic with receiveBatch's output runs:
// while more topic envelopes wait, the Deliverer holds the output of up
// to OutputBatch of them (and outputBatchBytes for one subscriber), then
// writes it at once. Its run is its own (the node subject's goroutine
// runs others at the same time: a hold promises nothing, one run's end
// writes what the other held, which costs writes, never messages).
func (f *Fanout) receiveTopicBatch(data []byte, more bool) {
	f.topicRun.deliver(f.outHold, f.cfg.OutputBatch, more, func() int { return f.receiveTopic(data) })
}

// receiveTopic handles one envelope from a topic subscription, as handle
// does one from the node's subject: under mu, never after Close, a panic
// recovered. The bus calls it from one goroutine at a time (not the one
// that calls receive). It returns the bytes the message adds to each
// subscriber's output (its payload and topic).
func (f *Fanout) receiveTopic(data []byte) (perSubscriber int) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed.Load() {
		return 0
	}
	defer f.recoverHandler()
	// A fresh envelope, as in handle: the TopicDeliverer may keep m.
	env, err := decodeEnvelope(data, nil)
	if err != nil {
		f.stats.decodeErrors.Add(1)
		f.warn("dropped an undecodable envelope from a topic subject", "err", err, "bytes", len(data))
		return 0
	}
	if env.Kind != KindTopic {
		f.stats.decodeErrors.Add(1)
		f.warn("dropped an envelope of another kind from a topic subject", "kind", env.Kind, "from", env.Sender)
		return 0
	}
	f.stats.topicReceived.Add(1)
	if f.topicDeliver == nil {
		f.warn("dropped a topic message: the Deliverer is not a TopicDeliverer", "topic", env.Msg.To)
		return 0
	}
	f.topicDeliver.DeliverTopic(&env.Msg)
	return outputBytes(&env.Msg)
}

// topicWatches are the filters this node watches, with their
// subscriptions. Its lock is a leaf of fanout's (the bus's subscribe is
// called under it): neither the receive path nor the Deliverer takes it,
// and it never takes Fanout.mu.
type topicWatches struct {
	mu     sync.Mutex
	closed bool // by Close: Watch refuses
	// queue is the queue group of this node's topic subscriptions: its
	// id and an incarnation, new for each Fanout and each RenewWatches,
	// so that a stale connection of this node (a process that died, a
	// connection the server has not yet seen drop) is never a member of
	// the group the live one is in, taking half of its messages.
	queue string
	m     map[string]*topicWatch // by filter
	n     atomic.Int64           // len(m), for Stats and the gauge without mu
}

type topicWatch struct {
	refs  int
	unsub []func() // one per subject of the filter
}

func (t *topicWatch) unsubscribe() {
	for _, u := range t.unsub {
		u()
	}
}

// Watch makes this node receive the topic messages that MQTT filter
// filter matches, from any node (itself included: its own messages come
// back through the bus), from the time the bus's server knows (see
// SyncWatches). Watches are counted per filter: the first of a filter
// subscribes, Unwatch undoes one, the last unsubscribes. It blocks no
// longer than the bus's subscribe (for NATS, buffering a SUB), never
// calls the Deliverer and does not take Fanout.mu, so the router may call
// it with its own locks held. It may be called before Start. Errors:
// ErrInvalidFilter, ErrClosed after Close, an error when the Bus is not a
// TopicBus, or the bus's subscribe error (nothing is then watched).
// Goroutine-safe.
func (f *Fanout) Watch(filter string) error {
	tb, ok := f.bus.(TopicBus)
	if !ok {
		return errNoTopicBus
	}
	if !packet.ValidFilter(filter) {
		return fmt.Errorf("%w: %q", ErrInvalidFilter, filter)
	}
	w := &f.topics
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || f.closed.Load() {
		return ErrClosed
	}
	if t := w.m[filter]; t != nil {
		t.refs++
		return nil
	}
	subjects := FilterSubjects(f.cfg.Cluster, filter)
	if len(subjects[0]) > maxTopicSubjectLen { // the first is the longest
		return fmt.Errorf("%w: too long for a NATS subject (%d bytes)", ErrInvalidFilter, len(filter))
	}
	unsub, err := f.subscribeTopic(tb, subjects, w.queueName(f.self))
	if err != nil {
		return fmt.Errorf("fanout: watch %q: %w", filter, err)
	}
	t := &topicWatch{refs: 1, unsub: unsub}
	if w.m == nil {
		w.m = make(map[string]*topicWatch)
	}
	w.m[strings.Clone(filter)] = t // filter may alias a packet buffer
	w.n.Store(int64(len(w.m)))
	return nil
}

// subscribeTopic subscribes to every one of a filter's subjects in
// queue group queue (all of a node's: one envelope per message for the
// node, however many of its filters match), and returns their
// unsubscribes; on an error none is left subscribed.
func (f *Fanout) subscribeTopic(tb TopicBus, subjects []string, queue string) ([]func(), error) {
	t := topicWatch{unsub: make([]func(), 0, len(subjects))}
	for _, s := range subjects {
		u, err := tb.SubscribeTopic(s, queue, f.onTopic)
		if err != nil {
			t.unsubscribe()
			return nil, err
		}
		t.unsub = append(t.unsub, u)
	}
	return t.unsub, nil
}

// queueName returns the current queue group, made at first use. w.mu
// held.
func (w *topicWatches) queueName(self string) string {
	if w.queue == "" {
		w.queue = self + "." + strconv.FormatUint(rand.Uint64(), 36)
	}
	return w.queue
}

// RenewWatches subscribes every watched filter again under a new queue
// group, then drops the old subscriptions. Call it once the bus's
// connection is back after a drop: the server may keep the dead
// connection, with its subscriptions in the old group, for a while, and
// NATS would hand it part of the messages. Messages published while
// both are subscribed may come twice (sessions drop repeated ids).
// Goroutine-safe.
func (f *Fanout) RenewWatches() {
	tb, ok := f.bus.(TopicBus)
	if !ok {
		return
	}
	w := &f.topics
	w.mu.Lock()
	defer w.mu.Unlock()
	w.queue = "" // the next queueName is a new group
	if w.closed || len(w.m) == 0 {
		return
	}
	queue := w.queueName(f.self)
	for filter, t := range w.m {
		unsub, err := f.subscribeTopic(tb, FilterSubjects(f.cfg.Cluster, filter), queue)
		if err != nil {
			// The old subscriptions stay: a stale connection may share
			// them, a filter without any gets nothing.
			f.warn("could not watch a topic filter again after a reconnect", "filter", filter, "err", err)
			continue
		}
		t.unsubscribe()
		t.unsub = unsub
	}
}

// Unwatch undoes one Watch of filter; the last one unsubscribes (the
// server may still deliver a few messages until it has the UNSUB: they
// reach the TopicDeliverer, which matches its sessions' filters anyway).
// A filter not watched is ignored. Like Watch, it never blocks on the
// receive path. Goroutine-safe.
func (f *Fanout) Unwatch(filter string) {
	w := &f.topics
	w.mu.Lock()
	t := w.m[filter]
	if t == nil {
		w.mu.Unlock()
		return
	}
	if t.refs--; t.refs > 0 {
		w.mu.Unlock()
		return
	}
	delete(w.m, filter)
	w.n.Store(int64(len(w.m)))
	w.mu.Unlock()
	t.unsubscribe()
}

// SyncWatches returns once the bus's server knows every subscription
// (and unsubscription) Watch and Unwatch made before the call, or when ctx
// ends: a SUBACK sent after it promises delivery from the server this
// node is connected to. With NATS that is one round trip (a flush; a
// context without a deadline gets 10 s). It blocks for that round trip:
// do not call it with locks held that the receive path takes.
//
// With several NATS servers in a cluster, the interest then travels to
// the other servers on its own, within about a round trip between them:
// a message published through another server in that window can miss
// the new subscription.
func (f *Fanout) SyncWatches(ctx context.Context) error {
	tb, ok := f.bus.(TopicBus)
	if !ok {
		return errNoTopicBus
	}
	if f.closed.Load() {
		return ErrClosed
	}
	if err := tb.FlushContext(ctx); err != nil {
		return fmt.Errorf("fanout: sync watches: %w", err)
	}
	return nil
}

// unwatchAll ends every watch, for Close: Watch refuses from then on.
func (f *Fanout) unwatchAll() {
	w := &f.topics
	w.mu.Lock()
	m := w.m
	w.m, w.closed = nil, true
	w.n.Store(0)
	w.mu.Unlock()
	for _, t := range m {
		t.unsubscribe()
	}
}
