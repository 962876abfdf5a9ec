package router

import "github.com/pushring/pushring/message"

// topicForm says on which topic a session receives a message; the topic
// is re-encoded from the form, the message and the session's principal
// every time it is sent, so a queued or inflight entry holds no string.
type topicForm uint8

const (
	formDirect       topicForm = iota + 1 // <private>/<id>
	formPrivateGroup                      // <private>/<id>/group/<gid>
	formGroup                             // <group>/<gid>
	formGap                               // <private>/<id>/$gap: a gap notice (durable.go)
	formTopic                             // the message's own topic: a rule topic (rules.go)
)

// outMsg is one message on its way to one session. m is shared by every
// receiver and never modified.
type outMsg struct {
	m      *message.Message
	form   topicForm
	qos    byte
	retain bool // a retained message sent on SUBSCRIBE: the PUBLISH's retain flag is set
}

// msgQueue is a bounded FIFO ring of outMsg, bounded both in entries and
// in payload and property bytes. It grows by doubling up to max entries and drops its
// oldest entries to make room. Not goroutine-safe (the session lock guards
// it). A session holds one from its first queued message on: nil
// reads as empty (len, size, reset; at and front need an entry).
type msgQueue struct {
	buf   []outMsg
	head  int
	n     int
	bytes int // payload and property bytes of the queued messages (Message.Size)
	// dropped is push's result, kept to be reused (no allocation per
	// drop once a queue has dropped before).
	dropped []*message.Message
}

func (q *msgQueue) len() int {
	if q == nil {
		return 0
	}
	return q.n
}

// size is the payload and property bytes queued.
func (q *msgQueue) size() int {
	if q == nil {
		return 0
	}
	return q.bytes
}

// at returns the i-th oldest entry, i < len().
func (q *msgQueue) at(i int) *outMsg { return &q.buf[(q.head+i)%len(q.buf)] }

// push appends o, first dropping the oldest entries while the queue holds
// max entries or its bytes plus o's would exceed maxBytes; it
// returns the messages it dropped, in a slice valid until the next push.
// A message larger than maxBytes on its own is still queued (alone):
// MaxPacketSize bounds it.
func (q *msgQueue) push(o outMsg, max, maxBytes int) (dropped []*message.Message) {
	size := o.m.Size()
	clear(q.dropped) // the last push's: no message kept past its drop
	q.dropped = q.dropped[:0]
	for q.n > 0 && (q.n >= max || q.bytes+size > maxBytes) {
		q.bytes -= q.buf[q.head].m.Size()
		q.dropped = append(q.dropped, q.buf[q.head].m)
		q.buf[q.head] = outMsg{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	dropped = q.dropped
	if q.n == len(q.buf) {
		c := 2 * len(q.buf)
		if c < 8 {
			c = 8
		}
		if c > max {
			c = max
		}
		nb := make([]outMsg, c)
		for i := 0; i < q.n; i++ {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = o
	q.n++
	q.bytes += size
	return dropped
}

// front returns the oldest entry; the queue must not be empty.
func (q *msgQueue) front() *outMsg { return &q.buf[q.head] }

// pop removes the oldest entry; the queue must not be empty.
func (q *msgQueue) pop() outMsg {
	o := q.buf[q.head]
	q.buf[q.head] = outMsg{}
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	q.bytes -= o.m.Size()
	if q.n == 0 {
		q.head = 0
		q.bytes = 0
		if len(q.buf) > 64 {
			q.buf = nil // give a burst's memory back
		}
	}
	return o
}

// reset empties the queue and releases its memory.
func (q *msgQueue) reset() {
	if q != nil {
		*q = msgQueue{}
	}
}

// recentIDs is how many delivered message ids a session remembers to
// drop duplicates: a message reaching a session
// twice (fanout retry, two matching paths) within this window is
// delivered once.
const recentIDs = 64

// idRing remembers the last recentIDs message ids.
type idRing struct {
	ids [recentIDs]uint64
	pos int
}

func (r *idRing) has(id uint64) bool {
	if r == nil || id == 0 {
		return false
	}
	for _, v := range r.ids {
		if v == id {
			return true
		}
	}
	return false
}

// forget removes id, so it is delivered again (it was queued, and the
// queue was emptied for a replay that brings it back).
func (r *idRing) forget(id uint64) {
	if r == nil {
		return
	}
	for i, v := range r.ids {
		if v == id {
			r.ids[i] = 0
		}
	}
}

func (r *idRing) add(id uint64) {
	r.ids[r.pos] = id
	r.pos = (r.pos + 1) % recentIDs
}
