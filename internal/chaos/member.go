package chaos

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The load of a chaos run: members of one group; a publisher of numbered
// group messages ("g <n>"); a publisher of numbered direct messages
// ("d <n>"), each to one of DirectTargets members in turn; warm-up
// messages ("w <n>"), group messages sent before the traffic, not counted.

// DirectTargets is how many members get direct messages, in turn (spread
// evenly over the members): each gets enough to check their order.
const DirectTargets = 30

// DirectTarget is the index of the member direct message seq is for, of
// a run of members members.
func DirectTarget(seq, members int) int {
	n := min(DirectTargets, members)
	return seq % n * max(1, members/n)
}

// Arrival is one delivery to a member: 'g' group or 'd' direct, the
// message number, when (since the run's epoch).
type Arrival struct {
	Kind byte
	Seq  int32
	At   time.Duration
}

// Member is one member of the group, a device or a user's phone with a
// persistent session, and what it received: its deliveries, its
// connections and their losses. It is fed by Run (a raw MQTT client) or
// by the caller's own client (Receive, Connected, Lost).
type Member struct {
	ID      string
	Idx, Of int       // its index, of a run of Of members: which direct messages are for it
	Epoch   time.Time // times are since it
	// Direct is the topic of its direct messages, "/private/<ID>";
	// group messages come on topics under GroupPrefix,
	// "/private/<ID>/group/".
	Direct, GroupPrefix string

	mu           sync.Mutex
	got          []Arrival
	gseen, dseen []bool // by group and direct message number
	strays       int
	warm         bool
	notPresent   int             // reconnects whose CONNACK had no session
	lost         []time.Duration // connection losses
	conns        []time.Duration // connections made

	quit, done chan struct{} // Run's
}

// NewMember is member idx of of, id, whose times are since epoch.
func NewMember(id string, idx, of int, epoch time.Time) *Member {
	return &Member{ID: id, Idx: idx, Of: of, Epoch: epoch, Direct: "/private/" + id, GroupPrefix: "/private/" + id + "/group/"}
}

// IsTarget reports whether direct message seq is for m.
func (m *Member) IsTarget(seq int) bool { return DirectTarget(seq, m.Of) == m.Idx }

// parsePayload reads "<kind> <seq>".
func parsePayload(b []byte) (kind byte, seq int) {
	if len(b) < 3 || b[1] != ' ' {
		return 0, -1
	}
	n, err := strconv.Atoi(string(b[2:]))
	if err != nil || n < 0 {
		return 0, -1
	}
	return b[0], n
}

// Receive records a delivery of payload on topic at at (since the
// epoch): "g <n>" on one of the member's group topics, "d <n>" on its
// direct topic if direct message n is for it, "w <n>" (warm-up, not
// counted); anything else is a stray.
func (m *Member) Receive(topic, payload []byte, at time.Duration) {
	kind, seq := parsePayload(payload)
	m.mu.Lock()
	defer m.mu.Unlock()
	group := len(topic) > len(m.GroupPrefix) && string(topic[:len(m.GroupPrefix)]) == m.GroupPrefix
	switch {
	case kind == 'w' && group:
		m.warm = true
		return
	case kind == 'g' && seq >= 0 && group:
		m.gseen = see(m.gseen, seq)
	case kind == 'd' && seq >= 0 && string(topic) == m.Direct && m.IsTarget(seq):
		m.dseen = see(m.dseen, seq)
	default:
		m.strays++
		return
	}
	m.got = append(m.got, Arrival{kind, int32(seq), at})
}

func see(seen []bool, seq int) []bool {
	for len(seen) <= seq {
		seen = append(seen, false)
	}
	seen[seq] = true
	return seen
}

// seen reports whether message seq of seen came (under m.mu).
func seen(seen []bool, seq int) bool { return seq < len(seen) && seen[seq] }

// Connected records a connection made now.
func (m *Member) Connected() {
	m.mu.Lock()
	m.conns = append(m.conns, time.Since(m.Epoch))
	m.mu.Unlock()
}

// Lost records a connection lost now.
func (m *Member) Lost() {
	m.mu.Lock()
	m.lost = append(m.lost, time.Since(m.Epoch))
	m.mu.Unlock()
}

// Warm reports whether a warm-up message came: the session, its
// subscription and the routes to it are in place.
func (m *Member) Warm() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.warm
}

// History is a copy of what a member saw, times since its epoch.
type History struct {
	Got         []Arrival
	Lost, Conns []time.Duration // connection losses, connections made
	Strays      int             // deliveries not for it, or unreadable
	// NotPresent counts reconnects (of Run) whose CONNACK said the
	// session was not present.
	NotPresent int
}

// History returns a copy of what m saw so far.
func (m *Member) History() History {
	m.mu.Lock()
	defer m.mu.Unlock()
	return History{Got: slices.Clone(m.got), Lost: slices.Clone(m.lost), Conns: slices.Clone(m.conns),
		Strays: m.strays, NotPresent: m.notPresent}
}

// Missing counts the acknowledged member deliveries of group messages
// grecs and direct messages drecs not (yet) made, and describes the
// first few (times since t0).
func Missing(ms []*Member, grecs, drecs []Record, t0 time.Duration) (int, string) {
	n := 0
	var sample []string
	note := func(m *Member, kind string, seq int, r Record) {
		n++
		if len(sample) < 5 {
			sample = append(sample, fmt.Sprintf("%s lacks %s %d (made at %v)", m.ID, kind, seq, (r.Made-t0).Round(time.Millisecond)))
		}
	}
	for _, m := range ms {
		m.mu.Lock()
		for seq, r := range grecs {
			if r.Acked != 0 && !seen(m.gseen, seq) {
				note(m, "g", seq, r)
			}
		}
		for seq, r := range drecs {
			if r.Acked != 0 && m.IsTarget(seq) && !seen(m.dseen, seq) {
				note(m, "d", seq, r)
			}
		}
		m.mu.Unlock()
	}
	return n, strings.Join(sample, ", ")
}

// Settle waits, for up to within or until done is closed, until every
// acknowledged message reached its members, and returns how long that
// took.
func Settle(done <-chan struct{}, within time.Duration, ms []*Member, grecs, drecs []Record) time.Duration {
	from := time.Now()
	for time.Since(from) < within {
		if n, _ := Missing(ms, grecs, drecs, 0); n == 0 {
			break
		}
		select {
		case <-done:
			return time.Since(from)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return time.Since(from)
}
