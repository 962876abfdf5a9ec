package router

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
	"github.com/pushring/pushring/rules"
)

// testRules: devices publish and read their own telemetry tree, members
// of g1 read every device's, members of g1 publish to news, which every
// principal reads, and users chat in rooms.
const testRules = `{"rules": [
  {"pattern": "telemetry/%u/#", "publish": ["devices"], "subscribe": ["devices"]},
  {"pattern": "telemetry/+/#", "subscribe": ["group:g1"]},
  {"pattern": "public/news", "publish": ["group:g1"], "subscribe": ["all"]},
  {"pattern": "chat/+", "publish": ["users"], "subscribe": ["users"]}
]}`

// watchLog is a TopicInterest that records its calls.
type watchLog struct {
	mu    sync.Mutex
	calls []string
}

func (w *watchLog) Watch(f string) error { w.add("watch " + f); return nil }
func (w *watchLog) Unwatch(f string)     { w.add("unwatch " + f) }
func (w *watchLog) SyncWatches(context.Context) error {
	w.add("sync")
	return nil
}

func (w *watchLog) add(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, s)
}

func (w *watchLog) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.calls)
}

// newRulesDurableEnv is newDurableEnv whose servers have testRules.
func newRulesDurableEnv(t *testing.T) *durableEnv {
	t.Helper()
	d := newDurableEnv(t)
	r, err := rules.Parse([]byte(testRules), ReservedFilters(DefaultConfig()))
	if err != nil {
		t.Fatal(err)
	}
	d.rules = r
	return d
}

// TestResumeWatchesTopicsBeforeConnack: a persistent session resumed on another
// node watches its rule-topic filters, and syncs the watch between
// nodes, before its CONNACK, as a SUBSCRIBE does before its SUBACK: a
// message published right after the CONNACK reaches this node.
func TestResumeWatchesTopicsBeforeConnack(t *testing.T) {
	d := newRulesDurableEnv(t)
	a := d.start(nil)
	c := connectRaw(t, a, "alice", "phone", false)
	if codes := c.subscribe(1, "public/news"); !slices.Equal(codes, []byte{1}) {
		t.Fatalf("suback %x", codes)
	}
	c.disconnect()
	in := &watchLog{}
	d.interest = in
	b := d.start(nil)
	r := dialRaw(t, b.addr)
	r.send(connectPacket("alice", "tok-alice", "phone", false, 60))
	r.expectConnack(0)
	if got := in.get(); len(got) < 2 || got[0] != "watch public/news" || got[1] != "sync" {
		t.Fatalf("before the CONNACK: %q, want the filter watched, then synced", got)
	}
	// Once registered, the session's own watch holds the filter, and
	// the one taken for the CONNACK is dropped: watched once in all.
	waitFor(t, "the watches settled", func() bool {
		w := 0
		for _, s := range in.get() {
			switch s {
			case "watch public/news":
				w++
			case "unwatch public/news":
				w--
			}
		}
		return w == 1
	})
}

// newRulesEnv is newEnv with testRules, d1 a device, and in recording
// the interest.
func newRulesEnv(t *testing.T, in TopicInterest) *env {
	t.Helper()
	return newEnvSetup(t, nil, nil, func(e *env) {
		r, err := rules.Parse([]byte(testRules), ReservedFilters(e.srv.cfg))
		if err != nil {
			t.Fatal(err)
		}
		e.srv.SetTopicRules(r, in)
		e.auth.addIdentity("tok-d1", Identity{ID: "d1", Device: true})
	})
}

// TestRuleTopicsClosedByDefault: without rules, every topic outside
// pushring's namespaces is refused, as before.
func TestRuleTopicsClosedByDefault(t *testing.T) {
	e := newEnv(t, nil)
	c := connectRaw(t, e, "alice", "c1", true)
	if codes := c.subscribe(1, "telemetry/#", "public/news"); !slices.Equal(codes, []byte{0x80, 0x80}) {
		t.Fatalf("suback %x", codes)
	}
	c.publish(1, 2, "public/news", "x")
	c.mustRead(packet.PUBACK) // 3.1.1: dropped, still acknowledged
	if n := refusals(e, reasonTopic); n != 1 {
		t.Errorf("topic refusals %d", n)
	}
	if e.fwd.count() != 0 {
		t.Errorf("forwarded %d", e.fwd.count())
	}
}

// TestRuleTopics: who may subscribe and publish is what the rules say;
// a message reaches every matching session once, on its own topic, at
// the QoS of its best matching subscription.
func TestRuleTopics(t *testing.T) {
	in := &watchLog{}
	e := newRulesEnv(t, in)
	d1 := connectRaw(t, e, "d1", "d1", true)
	alice := connectRaw(t, e, "alice", "a", true) // member of g1
	carol := connectRaw(t, e, "carol", "c", true) // not a member of g1

	if codes := d1.subscribe(1, "telemetry/d1/#", "telemetry/d2/#", "telemetry/#", "chat/x"); !slices.Equal(codes, []byte{1, 0x80, 0x80, 0x80}) {
		t.Fatalf("d1 suback %x", codes)
	}
	// Overlapping filters: one delivery, at the best QoS.
	s := packet.Subscribe{PacketID: 1, Filters: []packet.Subscription{
		{Filter: "telemetry/+/#", QoS: 0}, {Filter: "telemetry/d1/temp", QoS: 1}, {Filter: "public/news", QoS: 1},
		{Filter: "/private/alice/#", QoS: 1},
	}}
	alice.send(packet.AppendSubscribe(nil, &s))
	alice.mustRead(packet.SUBACK)
	if codes := carol.subscribe(1, "telemetry/+/#", "public/news", "public/#", "chat/+"); !slices.Equal(codes, []byte{0x80, 1, 0x80, 1}) {
		t.Fatalf("carol suback %x", codes)
	}

	d1.publish(1, 7, "telemetry/d1/temp", "21.5")
	for range 2 { // its PUBACK, and its own message, in either order
		h, body, err := d1.read(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var p packet.Publish
		if h>>4 == packet.PUBLISH && (packet.DecodePublish(h, body, packet.V311, &p) != nil || string(p.Topic) != "telemetry/d1/temp") {
			t.Fatalf("d1 got %q", p.Topic)
		} else if h>>4 != packet.PUBLISH && h>>4 != packet.PUBACK {
			t.Fatalf("d1 got packet %#x", h)
		}
	}
	p := alice.readPublish()
	if string(p.Topic) != "telemetry/d1/temp" || string(p.Payload) != "21.5" || p.QoS != 1 {
		t.Fatalf("alice got %q %q qos %d", p.Topic, p.Payload, p.QoS)
	}
	alice.send(packet.AppendAck(nil, packet.PUBACK, p.PacketID))
	// Refused publishes: another device's tree, a user to telemetry, a
	// non-member to news.
	d1.publish(0, 0, "telemetry/d2/temp", "x")
	alice.publish(0, 0, "telemetry/alice/temp", "x")
	carol.publish(0, 0, "public/news", "x")
	waitFor(t, "three topic_acl refusals", func() bool { return refusals(e, reasonTopicACL) == 3 })
	// A member's news reaches everyone subscribed.
	alice.publish(0, 0, "public/news", "hello")
	for _, c := range []*rawClient{alice, carol} {
		if p := c.readPublish(); string(p.Topic) != "public/news" || string(p.Payload) != "hello" {
			t.Fatalf("got %q %q", p.Topic, p.Payload)
		}
	}
	// Users chat; the device does not get it, nor alice (not subscribed).
	alice.publish(0, 0, "chat/x", "hi")
	if p := carol.readPublish(); string(p.Topic) != "chat/x" {
		t.Fatalf("carol got %q", p.Topic)
	}
	alice.ping()
	alice.mustRead(packet.PINGRESP) // nothing came before
	d1.ping()
	d1.mustRead(packet.PINGRESP)
	e.srv.topicIdx.mu.RLock()
	n := e.srv.topicIdx.filters
	e.srv.topicIdx.mu.RUnlock()
	if n != 5 {
		t.Errorf("%d filters indexed", n)
	}
	// The interest followed the filters, and each SUBSCRIBE that added
	// one synced it before its SUBACK.
	want := []string{"watch telemetry/d1/#", "sync", "watch telemetry/+/#", "watch telemetry/d1/temp", "watch public/news", "sync",
		"watch chat/+", "sync"}
	got := in.get()
	if !slices.Equal(got[:len(want)], want) {
		t.Errorf("interest %q, want %q", got, want)
	}
	// Leaving unwatches what nobody here holds any more.
	alice.disconnect()
	d1.disconnect()
	waitFor(t, "the filters of alice and d1 gone", func() bool {
		e.srv.topicIdx.mu.RLock()
		defer e.srv.topicIdx.mu.RUnlock()
		return e.srv.topicIdx.filters == 2
	})
	got = in.get()[len(want):]
	slices.Sort(got)
	if !slices.Equal(got, []string{"unwatch telemetry/+/#", "unwatch telemetry/d1/#", "unwatch telemetry/d1/temp"}) {
		t.Errorf("unwatched %q", got)
	}
	if codes := carol.unsubscribe(2, "public/news", "chat/+"); len(codes) != 2 {
		t.Fatal(codes)
	}
	waitFor(t, "no filters", func() bool {
		e.srv.topicIdx.mu.RLock()
		defer e.srv.topicIdx.mu.RUnlock()
		return e.srv.topicIdx.filters == 0 && len(e.srv.topicIdx.root.kids) == 0
	})
}

// TestRuleTopicGroupLeft: a subscription only a group rule admits stops
// at once when the principal leaves the group, queued messages too.
func TestRuleTopicGroupLeft(t *testing.T) {
	e := newRulesEnv(t, nil)
	d1 := connectRaw(t, e, "d1", "d1", true)
	alice := connectRaw(t, e, "alice", "a", true)
	if codes := alice.subscribe(1, "telemetry/+/#", "public/news"); !slices.Equal(codes, []byte{1, 1}) {
		t.Fatalf("suback %x", codes)
	}
	d1.publish(0, 0, "telemetry/d1/a", "1")
	if p := alice.readPublish(); string(p.Payload) != "1" {
		t.Fatalf("got %q", p.Payload)
	}
	e.acl.setMember("g1", "alice", false)
	d1.publish(0, 0, "telemetry/d1/a", "2")
	waitFor(t, "a deliver_acl refusal", func() bool { return refusals(e, reasonDeliverACL) == 1 })
	// "all" may still read the news.
	e.acl.setMember("g1", "bob", true)
	bob := connectRaw(t, e, "bob", "b", true)
	bob.publish(0, 0, "public/news", "n")
	if p := alice.readPublish(); string(p.Payload) != "n" {
		t.Fatalf("got %q", p.Payload)
	}
}

// TestRuleTopicWill: a will to a rule topic is published when the
// rules allow it, refused at CONNECT when they do not.
func TestRuleTopicWill(t *testing.T) {
	e := newRulesEnv(t, nil)
	alice := connectRaw(t, e, "alice", "a", true)
	alice.subscribe(1, "telemetry/+/#")
	c, err := tryConnectWill(e.addr, "d1", "tok-d1", "telemetry/d1/status", "offline")
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // no DISCONNECT: the will goes
	if p := alice.readPublish(); string(p.Topic) != "telemetry/d1/status" || string(p.Payload) != "offline" {
		t.Fatalf("got %q %q", p.Topic, p.Payload)
	}
	if _, err := tryConnectWill(e.addr, "d1", "tok-d1", "telemetry/d2/status", "x"); err == nil {
		t.Fatal("a will to another device's tree was accepted")
	}
}

// TestTopicSubscribeDuringReplay: a topic filter subscribed while the
// session's replay runs (here: one resumed from the store, on another
// server, whose store is slow to read the journal's end) gets the QoS 1
// messages published after its SUBACK, although that pass of the replay
// read no topic messages and its end lies past them.
func TestTopicSubscribeDuringReplay(t *testing.T) {
	d := newRulesDurableEnv(t)
	e1 := d.start(nil)
	a := connectRaw(t, e1, "alice", "a", false)
	a.subscribe(1, "/private/alice/#")
	a.disconnect()
	slow := func() { time.Sleep(300 * time.Millisecond) }
	d.st.beforeRead.Store(&slow)
	e2 := d.start(nil)
	a2 := connectRaw(t, e2, "alice", "a", false) // resumed from the store: a replay runs
	if codes := a2.subscribe(2, "public/news"); !slices.Equal(codes, []byte{1}) {
		t.Fatalf("suback %x", codes)
	}
	bob := connectRaw(t, e2, "bob", "b", true)
	bob.publish(1, 1, "public/news", "after the SUBACK")
	bob.mustRead(packet.PUBACK)
	if p := a2.readPublish(); string(p.Topic) != "public/news" || string(p.Payload) != "after the SUBACK" {
		t.Fatalf("got %q %q", p.Topic, p.Payload)
	}
}

// TestTopicSubscribeBetweenReplayPasses: a session away from its home
// replays in two passes (the second after RingSettle); a topic filter
// subscribed after the first pass, which read no topic messages, gets
// every message published after its SUBACK once and in order: none
// again from what was parked while the replay ran.
func TestTopicSubscribeBetweenReplayPasses(t *testing.T) {
	d := newRulesDurableEnv(t)
	a := d.start(func(c *Config) { c.RingSettle = 500 * time.Millisecond })
	a.srv.SetHome(func(id string) bool { return id != "carol" })
	carol := connectRaw(t, a, "carol", "phone", false) // new, away from home: a replay runs
	waitFor(t, "the first replay pass", func() bool { return d.st.replayed.Load() >= 1 })
	if codes := carol.subscribe(1, "public/news"); !slices.Equal(codes, []byte{1}) {
		t.Fatalf("suback %x", codes)
	}
	bob := connectRaw(t, a, "bob", "pc", true)
	for i := range 100 {
		bob.publish(1, uint16(i+1), "public/news", fmt.Sprintf("m%d", i+1))
		bob.mustRead(packet.PUBACK)
	}
	checkSeq(t, readNumbered(carol, 100), numbered(1, 100))
	carol.expectNothing(time.Second) // past the second pass
}

// TestTopicRingChangeReplays: a topic message that went astray while
// the ring changed (stored, never delivered here) reaches the session
// from the ring change's read of the journal, found through the topic
// index, before the topic message that came after it.
func TestTopicRingChangeReplays(t *testing.T) {
	d := newRulesDurableEnv(t)
	a := d.start(func(c *Config) { c.RingSettle = 200 * time.Millisecond })
	carol := connectRaw(t, a, "carol", "phone", false)
	carol.subscribe(1, "public/news")
	bob := connectRaw(t, a, "bob", "pc", true) // member of g1: publishes news
	bob.publish(1, 1, "public/news", "m1")
	checkSeq(t, readNumbered(carol, 1), numbered(1, 1))
	waitFor(t, "carol's position at 1", func() bool { return d.st.position("carol", "phone") >= 1 })
	a.srv.RingChanged()
	d.st.store(&message.Message{ID: 1 << 40, Kind: message.Topic, From: "bob", To: "public/news", QoS: 1, Payload: []byte("m2")})
	bob.publish(1, 2, "public/news", "m3")
	checkSeq(t, readNumbered(carol, 2), []string{"m2", "m3"})
	carol.expectNothing(100 * time.Millisecond)
}

// TestTopicIndexMatch: the index finds exactly the sessions whose
// filters packet.Match matches, each once, for random filters and
// topics; and removing every filter leaves an empty tree.
func TestTopicIndexMatch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "", "$x", "c.d"}
	randTopic := func() string {
		n := 1 + r.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = levels[r.IntN(len(levels))]
		}
		return strings.Join(parts, "/")
	}
	randFilter := func() string {
		n := 1 + r.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			switch k := r.IntN(len(levels) + 2); {
			case k == len(levels):
				parts[i] = "+"
			case k == len(levels)+1 && i == n-1:
				parts[i] = "#"
			default:
				parts[i] = levels[r.IntN(len(levels))]
			}
		}
		return strings.Join(parts, "/")
	}
	var x topicIndex
	sessions := make([]*session, 20)
	filters := make(map[*session][]string)
	for i := range sessions {
		s := &session{clientID: fmt.Sprint(i)}
		sessions[i] = s
		for range 1 + r.IntN(3) {
			f := randFilter()
			if !packet.ValidFilter(f) || slices.Contains(filters[s], f) {
				continue
			}
			filters[s] = append(filters[s], f)
			x.add(f, s)
		}
	}
	for range 2000 {
		topic := randTopic()
		if topic == "" {
			continue // not a topic name
		}
		var want []string
		for _, s := range sessions {
			for _, f := range filters[s] {
				if packet.Match(f, topic) {
					want = append(want, s.clientID)
					break
				}
			}
		}
		var got []string
		for _, s := range x.match(topic, nil) {
			got = append(got, s.clientID)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("topic %q: got %v, want %v", topic, got, want)
		}
	}
	for s, fs := range filters {
		for _, f := range fs {
			x.remove(f, s)
		}
	}
	if x.filters != 0 || len(x.root.kids) != 0 {
		t.Errorf("left %d filters, %d root levels", x.filters, len(x.root.kids))
	}
}

// TestTopicIndexMatchAllocs: finding the sessions of a topic message
// allocates nothing once warm, overlapping filters included.
func TestTopicIndexMatchAllocs(t *testing.T) {
	var x topicIndex
	s1, s2 := &session{}, &session{}
	x.add("telemetry/+/#", s1)
	x.add("telemetry/d1/#", s1)
	x.add("telemetry/d1/temp", s2)
	buf := make([]*session, 0, 8)
	n := testing.AllocsPerRun(100, func() {
		if got := x.match("telemetry/d1/temp", buf[:0]); len(got) != 2 {
			t.Fatalf("%d sessions", len(got))
		}
	})
	if n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if !cond() {
			return fmt.Errorf("waiting for %s", what)
		}
		return nil
	})
}

func (r *rawClient) unsubscribe(pid uint16, filters ...string) []byte {
	r.t.Helper()
	r.send(packet.AppendUnsubscribe(nil, &packet.Unsubscribe{PacketID: pid, Filters: filters}))
	body := r.mustRead(packet.UNSUBACK)
	return body
}

// tryConnectWill connects as id (token tok) with a QoS 0 will to topic.
func tryConnectWill(addr, id, tok, topic, payload string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(packet.AppendConnect(nil, &packet.Connect{CleanSession: true, KeepAlive: 60, ClientID: id + "-will",
		Username: id, Password: []byte(tok), WillFlag: true, WillTopic: topic, WillPayload: []byte(payload)}))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		c.Close()
		return nil, err
	}
	if buf[0] != packet.CONNACK<<4 || buf[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("connack % x", buf)
	}
	return c, nil
}

// BenchmarkTopicIndexMatch: a public channel of 10,000 subscribers, one
// filter each (no copies to drop), and the same with a second,
// overlapping filter held by every tenth (sorted and compacted).
func BenchmarkTopicIndexMatch(b *testing.B) {
	for _, overlap := range []bool{false, true} {
		b.Run(fmt.Sprintf("overlap=%v", overlap), func(b *testing.B) {
			var x topicIndex
			for i := range 10000 {
				s := &session{}
				x.add("public/news", s)
				if overlap && i%10 == 0 {
					x.add("public/+", s)
				}
			}
			buf := make([]*session, 0, 12000)
			b.ReportAllocs()
			for b.Loop() {
				if got := x.match("public/news", buf[:0]); len(got) != 10000 {
					b.Fatal(len(got))
				}
			}
		})
	}
}
