package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pushring/pushring/flow"
	"github.com/pushring/pushring/message"
)

// A slot's state word: the slot's generation (bumped when an
// acknowledgement timed out) above two status bits. The acknowledgement
// handler claims a slot with one compare-and-swap of the whole word, so
// an acknowledgement for an earlier use of the slot (an older
// generation) can never complete a later one.
const (
	stFree     = 0 // no Append in it
	stInflight = 1 // published, waiting for the acknowledgement
	stWriting  = 2 // claimed by whoever writes the result
	stDone     = 3 // result written, for the reporter
	stMask     = 3
	genShift   = 2
)

// Failure reasons: the values of store_errors_total{reason}.
const (
	reasonTimeout = iota
	reasonRefused
	reasonClosed
	reasonLost
	numReasons
)

var reasonNames = [numReasons]string{reasonTimeout: "timeout", reasonRefused: "refused", reasonClosed: "closed", reasonLost: "lost"}

// overtakeGrace: a publish still unanswered this long while a later one
// was stored is taken for lost. Answers come in publish order (one
// connection, one stream), so the server never got it: the connection
// dropped with it, or the stream's leader died holding it. Failing it
// then, not at Config.Timeout, matters for what was stored after it: its
// publisher's later messages are held back and withdrawn once it fails
// (the client sends them again, in order), and until they are withdrawn
// a replay can read them ahead of it.
const overtakeGrace = 250 * time.Millisecond

// slot is one Append between publish and report. Append fills it under
// Journal.mu before marking it in flight; the result (seq, err, reason)
// is written by whoever claimed it (stWriting) and read by the reporter
// once it is stDone.
type slot struct {
	state   atomic.Uint64
	tag     uint64
	cb      flow.Appended
	start   time.Time
	subject string // for the failure log: kind and to
	id      uint64 // the message's id, for the failure log
	size    int    // record bytes
	reply   string // the reply subject of the current generation
	seq     uint64
	err     error
	reason  int
}

// reply is the reply subject of slot i in generation gen.
func (j *Journal) reply(i int, gen uint64) string {
	return j.replyPrefix + strconv.Itoa(i) + "." + strconv.FormatUint(gen, 10)
}

// Append stores m: it encodes m (neither m nor m.Payload is kept once
// Append returns), publishes it to the stream, and later calls
// cb.Appended(tag, seq, nil) with the message's stream sequence, or
// cb.Appended(tag, 0, err) if the server refused it (ErrRefused) or did not
// answer within Config.Timeout (ErrTimeout), or the journal or its
// connection closed first (ErrClosed). Every Append that returns nil gets
// exactly one Appended call, and the calls come in Append order.
//
// Append blocks while Config.MaxPending Appends wait for their
// acknowledgement. It returns ErrClosed once Close has begun, and
// ErrInvalidMessage for a message ValidMessage refuses (a caller's bug:
// ids are checked where they come in); neither makes a Appended call.
func (j *Journal) Append(m *message.Message, cb flow.Appended, tag uint64) error {
	if !ValidMessage(m) {
		return fmt.Errorf("%w: kind %d, qos %d, to %q, from %q", ErrInvalidMessage, m.Kind, m.QoS, m.To, m.From)
	}
	select {
	case j.sem <- struct{}{}:
	case <-j.closing:
		return ErrClosed
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		<-j.sem
		return ErrClosed
	}
	i := j.head.Load()
	s := &j.slots[i%uint64(len(j.slots))]
	gen := s.state.Load() >> genShift // stFree: the reporter released it
	d := j.dest(m)
	prev := j.unreported(d.last)
	d.last = lastAppend{i: i, id: m.ID}
	s.tag, s.cb, s.subject, s.id = tag, cb, d.subject, m.ID
	j.buf = AppendRecord(j.buf[:0], m, prev)
	s.size = len(j.buf)
	s.start = time.Now()
	s.state.Store(gen<<genShift | stInflight)
	// nats.go copies the record into its write buffer: j.buf is free
	// again when PublishRequest returns.
	err := j.nc.PublishRequest(s.subject, s.reply, j.buf)
	if err != nil && s.state.CompareAndSwap(gen<<genShift|stInflight, gen<<genShift|stWriting) {
		s.err, s.reason = fmt.Errorf("%w: publish: %w", ErrRefused, err), reasonRefused
		if errors.Is(err, nats.ErrConnectionClosed) {
			s.err, s.reason = fmt.Errorf("%w: %w", ErrClosed, err), reasonClosed
		}
		s.state.Store(gen<<genShift | stDone)
	}
	j.head.Store(i + 1)
	if cap(j.buf) > 1<<20 {
		j.buf = nil // one huge message does not pin its size
	}
	j.mu.Unlock()
	j.wake()
	return nil
}

// dest is what Append keeps per destination (kind and to).
type dest struct {
	subject string
	last    lastAppend // the latest Append to it
}

// lastAppend names one Append: its ring index and its message's id.
type lastAppend struct {
	i, id uint64
}

// unreported returns the id of Append a if its result is not reported
// yet, else 0. Results are reported in Append order, so a message
// appended after a, to the same subject, is withdrawn if a turns out not
// stored. Called under mu: a slot's id only changes under it.
func (j *Journal) unreported(a lastAppend) uint64 {
	if a.id == 0 {
		return 0
	}
	s := &j.slots[a.i%uint64(len(j.slots))]
	if s.id != a.id || s.state.Load()&stMask == stFree {
		return 0
	}
	return a.id
}

// dest returns m's destination, from a bounded cache: the same
// destinations come back, and building the subject would allocate.
func (j *Journal) dest(m *message.Message) *dest {
	j.key = append(j.key[:0], byte(m.Kind))
	if m.Kind != message.Topic {
		j.key = append(j.key, m.To...)
	}
	if d, ok := j.dests[string(j.key)]; ok {
		return d
	}
	var d *dest
	switch m.Kind {
	case message.Topic:
		d = &dest{subject: j.prefix + j.cfg.NodeID + "." + kindTopic}
	case message.Group:
		d = &dest{subject: j.prefix + j.cfg.NodeID + "." + kindGroup + "." + encodeID(m.To)}
	default:
		d = &dest{subject: j.prefix + j.cfg.NodeID + "." + kindDirect + "." + encodeID(m.To)}
	}
	if len(j.dests) >= maxSubjects {
		clear(j.dests)
	}
	j.dests[string(j.key)] = d
	return d
}

// maxSubjects bounds the subject cache: past it the cache starts over.
const maxSubjects = 1 << 16

func (j *Journal) wake() {
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// onAck handles the stream's answer to one publish (a PubAck, an API
// error, or the server's "no responders" status) on the connection's
// delivery goroutine.
func (j *Journal) onAck(msg *nats.Msg) {
	rest, ok := strings.CutPrefix(msg.Subject, j.replyPrefix)
	if !ok {
		return
	}
	is, gs, ok := strings.Cut(rest, ".")
	if !ok {
		return
	}
	i, err1 := strconv.ParseUint(is, 10, 32)
	gen, err2 := strconv.ParseUint(gs, 10, 62)
	if err1 != nil || err2 != nil || i >= uint64(len(j.slots)) {
		return
	}
	s := &j.slots[i]
	if !s.state.CompareAndSwap(gen<<genShift|stInflight, gen<<genShift|stWriting) {
		return // late: the slot timed out and moved on
	}
	s.seq, s.err = j.parseAck(msg)
	s.reason = reasonRefused
	s.state.Store(gen<<genShift | stDone)
	j.wake()
}

var (
	seqField    = []byte(`"seq":`)
	errorField  = []byte(`"error"`)
	streamField = []byte(`"stream":"`)
)

// parseAck reads a PubAck, {"stream":"MSGS_c","seq":12,...}, without
// allocating; anything else is the server's refusal.
func (j *Journal) parseAck(msg *nats.Msg) (uint64, error) {
	d := msg.Data
	if len(d) == 0 {
		if msg.Header.Get("Status") == "503" {
			return 0, fmt.Errorf("%w: no responders (is JetStream up, does stream %s exist?)", ErrRefused, j.stream)
		}
		return 0, fmt.Errorf("%w: empty acknowledgement, status %q", ErrRefused, msg.Header.Get("Status"))
	}
	if bytes.Contains(d, errorField) {
		var r struct {
			Error struct {
				Code        int    `json:"code"`
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
		}
		if err := json.Unmarshal(d, &r); err != nil {
			return 0, fmt.Errorf("%w: unreadable error %q", ErrRefused, d)
		}
		return 0, fmt.Errorf("%w: %s (code %d, err_code %d)", ErrRefused, r.Error.Description, r.Error.Code, r.Error.ErrCode)
	}
	k := bytes.Index(d, streamField)
	if k < 0 || !bytes.HasPrefix(d[k+len(streamField):], []byte(j.stream+`"`)) {
		return 0, fmt.Errorf("%w: acknowledgement from another stream: %q", ErrRefused, d)
	}
	k = bytes.Index(d, seqField)
	if k < 0 {
		return 0, fmt.Errorf("%w: acknowledgement without a sequence: %q", ErrRefused, d)
	}
	var seq uint64
	n := 0
	for _, c := range d[k+len(seqField):] {
		if c < '0' || c > '9' || n == 20 {
			break
		}
		seq = seq*10 + uint64(c-'0')
		n++
	}
	if n == 0 || seq == 0 {
		return 0, fmt.Errorf("%w: bad sequence in %q", ErrRefused, d)
	}
	return seq, nil
}

// closePoll is how often the reporter, waiting for an acknowledgement,
// checks whether the connection closed, which ends the wait.
const closePoll = 20 * time.Millisecond

// report is the one goroutine that calls Appended: it takes the ring's
// slots in order, waits for each one's result or its timeout, reports it
// and frees the slot. It returns once Close began and the ring is empty.
func (j *Journal) report() {
	defer close(j.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	n := uint64(len(j.slots))
	var tail uint64
	closing := j.closing
	for {
		s := &j.slots[tail%n]
		w := s.state.Load()
		gen := w >> genShift
		switch w & stMask {
		case stDone:
			j.finish(s)
			s.cb, s.err = nil, nil
			s.state.Store(gen<<genShift | stFree)
			tail++
			<-j.sem
			continue
		case stWriting:
			// The result is being written: the writer wakes us.
			<-j.kick
			continue
		case stFree:
			if closing == nil && tail == j.head.Load() {
				return
			}
			select {
			case <-j.kick:
			case <-closing:
				closing = nil
			}
			continue
		}
		// In flight.
		wait := j.cfg.Timeout - time.Since(s.start)
		if j.nc.IsClosed() {
			// No acknowledgement can come any more (a closed
			// connection stays closed).
			if s.state.CompareAndSwap(w, (gen+1)<<genShift|stWriting) {
				s.err, s.reason = ErrClosed, reasonClosed
				s.reply = j.reply(int(tail%n), gen+1)
				s.state.Store((gen+1)<<genShift | stDone)
			}
			continue
		}
		lost := wait > 0 && time.Since(s.start) >= overtakeGrace && j.overtaken(tail)
		if wait <= 0 || lost {
			if s.state.CompareAndSwap(w, (gen+1)<<genShift|stWriting) {
				s.err, s.reason = ErrTimeout, reasonTimeout
				if lost {
					s.err, s.reason = ErrLost, reasonLost
				}
				// A new reply subject: a late acknowledgement of this
				// publish must not complete the slot's next one.
				s.reply = j.reply(int(tail%n), gen+1)
				s.state.Store((gen+1)<<genShift | stDone)
			}
			continue
		}
		// Look at the connection now and then: it may close while we
		// wait, and then nothing is left to wait for.
		timer.Reset(min(wait, closePoll))
		select {
		case <-j.kick:
		case <-timer.C:
		case <-closing:
			closing = nil
		}
		timer.Stop()
	}
}

// overtaken reports whether a slot after tail holds a stored message.
// Only the reporter calls it: a slot it finds done stays done until the
// reporter frees it.
func (j *Journal) overtaken(tail uint64) bool {
	n := uint64(len(j.slots))
	for i := tail + 1; i < j.head.Load(); i++ {
		s := &j.slots[i%n]
		if s.state.Load()&stMask == stDone && s.err == nil {
			return true
		}
	}
	return false
}

// finish counts, logs and reports the result of a slot.
func (j *Journal) finish(s *slot) {
	if s.err == nil {
		j.m.stored.Add(1)
		j.m.storedBytes.Add(uint64(s.size))
		j.m.latency.Observe(time.Since(s.start).Seconds())
		s.cb.Appended(s.tag, s.seq, nil)
		return
	}
	j.m.errors[s.reason].Add(1)
	j.failLog.Warn(j.log, 10*time.Second, "journal: message not stored",
		"id", message.FormatID(s.id), "kind", subjectKind(s.subject), "to", subjectTo(s.subject),
		"reason", reasonNames[s.reason], "err", s.err)
	s.cb.Appended(s.tag, 0, s.err)
}

// subjectKind and subjectTo read back a stream subject's kind and
// destination, for logs.
func subjectKind(subject string) string {
	if strings.HasSuffix(subject, "."+kindTopic) {
		return message.Topic.String()
	}
	rest := subject[:strings.LastIndexByte(subject, '.')]
	switch rest[strings.LastIndexByte(rest, '.')+1:] {
	case kindDirect:
		return message.Direct.String()
	case kindGroup:
		return message.Group.String()
	}
	return "?"
}

func subjectTo(subject string) string {
	if strings.HasSuffix(subject, "."+kindTopic) {
		return "" // in the record only
	}
	return strings.ReplaceAll(subject[strings.LastIndexByte(subject, '.')+1:], "=", ".")
}
