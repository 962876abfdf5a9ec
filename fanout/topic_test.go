package fanout

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
)

func TestTopicSubject(t *testing.T) {
	for topic, want := range map[string]string{
		"telemetry/d1/temp": "pushring.c.t.telemetry.d1.temp",
		"a.b":               "pushring.c.t.a~2eb",
		"a/b":               "pushring.c.t.a.b",
		"a b":               "pushring.c.t.a~20b",
		"a~b":               "pushring.c.t.a~7eb",
		"a//b":              "pushring.c.t.a.~.b",
		"/a":                "pushring.c.t.~.a",
		"a/":                "pushring.c.t.a.~",
		"/":                 "pushring.c.t.~.~",
		"Az09_-":            "pushring.c.t.Az09_-",
		"*/>":               "pushring.c.t.~2a.~3e",
		"$SYS/x":            "pushring.c.t.~24SYS.x",
		"é":                 "pushring.c.t.~c3~a9",
		"\x00\xff":          "pushring.c.t.~00~ff",
	} {
		if got := TopicSubject("c", topic); got != want {
			t.Errorf("TopicSubject(%q) = %q, want %q", topic, got, want)
		}
		if n := topicSubjectLen("c", topic); n != len(want) {
			t.Errorf("topicSubjectLen(%q) = %d, want %d", topic, n, len(want))
		}
		if got := string(AppendTopicSubject([]byte("x"), "c", topic)); got != "x"+want {
			t.Errorf("AppendTopicSubject after x: %q", got)
		}
	}
}

func TestFilterSubjects(t *testing.T) {
	for filter, want := range map[string][]string{
		"#":                {"pushring.c.t.>"},
		"+":                {"pushring.c.t.*"},
		"a/#":              {"pushring.c.t.a.>", "pushring.c.t.a"},
		"/#":               {"pushring.c.t.~.>", "pushring.c.t.~"},
		"+/#":              {"pushring.c.t.*.>", "pushring.c.t.*"},
		"telemetry/+/temp": {"pushring.c.t.telemetry.*.temp"},
		"a.b/+/":           {"pushring.c.t.a~2eb.*.~"},
		"a/b":              {"pushring.c.t.a.b"},
		// Not filters: wildcards inside a level, or a '#' before the
		// last, are plain bytes.
		"a+/b#":  {"pushring.c.t.a~2b.b~23"},
		"a/#/b":  {"pushring.c.t.a.~23.b"},
		"a/b/c#": {"pushring.c.t.a.b.c~23"},
	} {
		if got := FilterSubjects("c", filter); !slices.Equal(got, want) {
			t.Errorf("FilterSubjects(%q) = %q, want %q", filter, got, want)
		}
	}
}

// topicFromSubject decodes a topic subject of cluster back to its topic
// name: what TopicSubject encodes can be read back, so no two topics
// share a subject.
func topicFromSubject(cluster, subject string) (string, error) {
	prefix := "pushring." + cluster + ".t."
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return "", errors.New("not a topic subject")
	}
	var b []byte
	for i, tok := range strings.Split(rest, ".") {
		if i > 0 {
			b = append(b, '/')
		}
		if tok == "~" {
			continue
		}
		if tok == "" {
			return "", errors.New("empty token")
		}
		for j := 0; j < len(tok); j++ {
			c := tok[j]
			if c != '~' {
				if !plainTopicByte[c] {
					return "", fmt.Errorf("unescaped byte %q", c)
				}
				b = append(b, c)
				continue
			}
			if j+2 >= len(tok) {
				return "", errors.New("short escape")
			}
			var v byte
			for _, h := range tok[j+1 : j+3] {
				d := strings.IndexRune(hexDigits, h)
				if d < 0 {
					return "", fmt.Errorf("bad escape %q", tok[j:j+3])
				}
				v = v<<4 | byte(d)
			}
			b = append(b, v)
			j += 2
		}
	}
	return string(b), nil
}

// FuzzTopicSubject: every topic (any bytes) has a valid literal NATS
// subject that reads back to it, of the length topicSubjectLen says;
// the subjects of its filter form match it.
func FuzzTopicSubject(f *testing.F) {
	for _, s := range []string{"telemetry/d1/temp", "a.b", "a b", "a~b", "a//b", "/", "é/ö", "$SYS/x", "\x00", "~2e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if topic == "" {
			return
		}
		subject := TopicSubject("c", topic)
		if len(subject) != topicSubjectLen("c", topic) {
			t.Fatalf("%q: subject %q, topicSubjectLen %d", topic, subject, topicSubjectLen("c", topic))
		}
		if !server.IsValidLiteralSubject(subject) {
			t.Fatalf("%q: %q is not a literal NATS subject", topic, subject)
		}
		back, err := topicFromSubject("c", subject)
		if err != nil || back != topic {
			t.Fatalf("%q: subject %q reads back as %q, %v", topic, subject, back, err)
		}
		// A topic without wildcards is also a filter: its one subject is
		// the topic's.
		if !strings.ContainsAny(topic, "+#") {
			if subs := FilterSubjects("c", topic); len(subs) != 1 || subs[0] != subject {
				t.Fatalf("%q: filter subjects %q, topic subject %q", topic, subs, subject)
			}
		}
	})
}

// randomLevel draws a topic level (or, for a filter, a '+') from a small
// set that includes what NATS would misread unescaped.
func randomLevel(r *rand.Rand, filter bool) string {
	levels := []string{"", "a", "b", "a.b", "a~2eb", "~", " ", "*", ">", "é", "$x", "a_b", "a-b"}
	if filter && r.IntN(3) == 0 {
		return "+"
	}
	return levels[r.IntN(len(levels))]
}

func randomName(r *rand.Rand, filter bool) string {
	n := 1 + r.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = randomLevel(r, filter)
	}
	if filter && r.IntN(3) == 0 {
		if r.IntN(4) == 0 {
			levels = levels[:0]
		}
		levels = append(levels, "#")
	}
	return strings.Join(levels, "/")
}

// natsMatch reports whether topic's subject matches one of filter's
// subjects, as the NATS server matches them.
func natsMatch(filter, topic string) bool {
	subject := TopicSubject("c", topic)
	for _, s := range FilterSubjects("c", filter) {
		if server.SubjectMatchesFilter(subject, s) {
			return true
		}
	}
	return false
}

// TestFilterSubjectsMatchMQTT: for random topics and filters, NATS
// matching of their subjects agrees with MQTT matching (packet.Match),
// but for the one mismatch topic.go documents: a '$' topic under a
// filter that begins with a wildcard. MemoryBus's matcher agrees with
// the NATS server's.
func TestFilterSubjectsMatchMQTT(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	matched := 0
	for range 50_000 {
		topic, filter := randomName(r, false), randomName(r, true)
		if !packet.ValidTopicName([]byte(topic)) || !packet.ValidFilter(filter) {
			continue
		}
		mqtt := packet.Match(filter, []byte(topic))
		nats := natsMatch(filter, topic)
		if mqtt {
			matched++
		}
		dollar := topic[0] == '$' && (filter[0] == '+' || filter[0] == '#')
		if mqtt != nats && !(dollar && nats) {
			t.Fatalf("filter %q, topic %q: MQTT match %v, NATS match %v (subjects %q, %q)",
				filter, topic, mqtt, nats, FilterSubjects("c", filter), TopicSubject("c", topic))
		}
		subject := TopicSubject("c", topic)
		for _, s := range FilterSubjects("c", filter) {
			if !server.IsValidSubject(s) {
				t.Fatalf("filter %q: %q is not a NATS subject", filter, s)
			}
			if got, want := subjectMatch(s, subject), server.SubjectMatchesFilter(subject, s); got != want {
				t.Fatalf("subjectMatch(%q, %q) = %v, the server says %v", s, subject, got, want)
			}
		}
	}
	if matched < 1000 {
		t.Fatalf("only %d matching pairs: the generator needs work", matched)
	}
}

func TestTopicSubjectAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = AppendTopicSubject(buf[:0], "pushring", "telemetry/é d1/temp") }); n != 0 {
		t.Errorf("AppendTopicSubject: %v allocs, want 0", n)
	}
}

// topicRecorder is a recorder that is also a TopicDeliverer: it keeps
// the topic messages in the order they came.
type topicRecorder struct {
	*recorder
	tmu    sync.Mutex
	topics []message.Message
}

func newTopicRecorder() *topicRecorder { return &topicRecorder{recorder: newRecorder()} }

func (r *topicRecorder) DeliverTopic(m *message.Message) {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	r.topics = append(r.topics, *m) // m may be kept: its strings stay valid
}

// ids returns the ids of the topic messages received, in order.
func (r *topicRecorder) ids() []uint64 {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	ids := make([]uint64, len(r.topics))
	for i, m := range r.topics {
		ids[i] = m.ID
	}
	return ids
}

// waitFor waits until message id arrived and returns the ids received.
func (r *topicRecorder) waitFor(t *testing.T, id uint64) []uint64 {
	t.Helper()
	var ids []uint64
	testutil.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		if ids = r.ids(); !slices.Contains(ids, id) {
			return fmt.Errorf("message %d not received; got %v", id, ids)
		}
		return nil
	})
	return ids
}

// topicNode is a started Fanout with a topicRecorder.
type topicNode struct {
	f   *Fanout
	rec *topicRecorder
}

func startTopicNode(t *testing.T, id string, bus Bus) topicNode {
	t.Helper()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Cluster = id, "test"
	rec := newTopicRecorder()
	f := mustNew(t, cfg, bus, staticMembers{}, &mapPlacement{def: id}, rec)
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return topicNode{f, rec}
}

func mustWatch(t *testing.T, f *Fanout, filters ...string) {
	t.Helper()
	for _, flt := range filters {
		if err := f.Watch(flt); err != nil {
			t.Fatalf("Watch(%q): %v", flt, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.SyncWatches(ctx); err != nil {
		t.Fatal(err)
	}
}

func mustUnwatch(t *testing.T, f *Fanout, filters ...string) {
	t.Helper()
	for _, flt := range filters {
		f.Unwatch(flt)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.SyncWatches(ctx); err != nil {
		t.Fatal(err)
	}
}

func forwardTopic(t *testing.T, f *Fanout, id uint64, topic string) {
	t.Helper()
	m := &message.Message{ID: id, Kind: message.Topic, From: "dev", To: topic, Payload: []byte("p")}
	if err := f.Forward(context.Background(), m); err != nil {
		t.Fatalf("Forward topic %q: %v", topic, err)
	}
}

// runTopicScenario runs what topic routing promises, on two nodes with
// a bus each (busFor(0), busFor(1)): a and b, b watching. Markers, on a
// filter still watched and published after the message under test, show
// that a message did not come: one publisher's messages keep their order.
func runTopicScenario(t *testing.T, busFor func(int) Bus) {
	a := startTopicNode(t, "a", busFor(0))
	b := startTopicNode(t, "b", busFor(1))

	t.Run("one envelope per node whatever the overlap", func(t *testing.T) {
		mustWatch(t, b.f, "telemetry/+/#", "telemetry/d1/#", "telemetry/d1", "marker")
		forwardTopic(t, a.f, 1, "telemetry/d1/temp")
		forwardTopic(t, a.f, 2, "marker")
		if ids := b.rec.waitFor(t, 2); !slices.Equal(ids, []uint64{1, 2}) {
			t.Fatalf("b got %v, want [1 2]", ids)
		}
		if s := b.f.Stats(); s.TopicEnvelopesReceived != 2 || s.TopicFilters != 4 {
			t.Fatalf("b: %d topic envelopes received, %d filters; want 2, 4", s.TopicEnvelopesReceived, s.TopicFilters)
		}
		if s := a.f.Stats(); s.TopicEnvelopesSent != 2 || s.TopicMessages != 2 || s.TopicEnvelopesReceived != 0 || len(a.rec.ids()) != 0 {
			t.Fatalf("a: %+v, got %v", s, a.rec.ids())
		}
		// "telemetry/d1" is matched by "telemetry/d1" and by
		// "telemetry/d1/#" (its parent level): once.
		forwardTopic(t, a.f, 3, "telemetry/d1")
		forwardTopic(t, a.f, 4, "marker")
		if ids := b.rec.waitFor(t, 4); !slices.Equal(ids, []uint64{1, 2, 3, 4}) {
			t.Fatalf("b got %v, want [1 2 3 4]", ids)
		}
	})

	t.Run("nothing after the last unwatch", func(t *testing.T) {
		mustUnwatch(t, b.f, "telemetry/+/#", "telemetry/d1/#", "telemetry/d1")
		if n := b.f.Stats().TopicFilters; n != 1 {
			t.Fatalf("%d filters watched, want 1", n)
		}
		forwardTopic(t, a.f, 10, "telemetry/d1/temp")
		forwardTopic(t, a.f, 11, "marker")
		if ids := b.rec.waitFor(t, 11); slices.Contains(ids, 10) {
			t.Fatalf("b got %v: message 10 after its filters were unwatched", ids)
		}
	})

	t.Run("watches are counted", func(t *testing.T) {
		mustWatch(t, b.f, "r/x", "r/x")
		mustUnwatch(t, b.f, "r/x")
		forwardTopic(t, a.f, 20, "r/x")
		b.rec.waitFor(t, 20)
		mustUnwatch(t, b.f, "r/x", "r/x") // the second is one too many: ignored
		forwardTopic(t, a.f, 21, "r/x")
		forwardTopic(t, a.f, 22, "marker")
		if ids := b.rec.waitFor(t, 22); slices.Contains(ids, 21) {
			t.Fatalf("b got %v: message 21 after the last unwatch", ids)
		}
	})

	t.Run("lookalike topics", func(t *testing.T) {
		watched := map[string]string{ // filter → a topic it matches
			"a.b": "a.b", "a b": "a b", "a~b": "a~b", "a//b": "a//b", "/a": "/a", "a/": "a/",
			"é/ö": "é/ö", "a.b/+": "a.b/c", "~/x": "~/x",
		}
		lookalikes := []string{"a/b", "a_b", "a~7eb", "a~2eb", "a~20b", "a/~/b", "a", "~/a", "e/o",
			"~c3~a9/ö", "a/b/c", "x", "/", "~", "~2e/x", "a.b"}
		var filters []string
		for flt := range watched {
			filters = append(filters, flt)
		}
		for _, l := range lookalikes {
			for _, flt := range filters {
				if packet.Match(flt, []byte(l)) && watched[flt] != l {
					t.Fatalf("test bug: %q matches %q", flt, l)
				}
			}
		}
		lookalikes = slices.DeleteFunc(lookalikes, func(l string) bool { return l == "a.b" }) // watched
		mustWatch(t, b.f, filters...)
		defer mustUnwatch(t, b.f, filters...)
		id := uint64(100)
		for _, l := range lookalikes {
			forwardTopic(t, a.f, id, l)
			id++
		}
		want := map[uint64]string{}
		for _, flt := range filters {
			forwardTopic(t, a.f, id, watched[flt])
			want[id] = watched[flt]
			id++
		}
		forwardTopic(t, a.f, id, "marker")
		b.rec.waitFor(t, id)
		b.rec.tmu.Lock()
		defer b.rec.tmu.Unlock()
		got := map[uint64]string{}
		for _, m := range b.rec.topics {
			if m.ID >= 100 && m.ID < id {
				if _, dup := got[m.ID]; dup {
					t.Errorf("message %d (%q) twice", m.ID, m.To)
				}
				got[m.ID] = m.To
			}
		}
		for i, to := range want {
			if got[i] != to {
				t.Errorf("message %d to %q: got %q", i, to, got[i])
			}
		}
		for i, to := range got {
			if _, ok := want[i]; !ok {
				t.Errorf("lookalike %q (message %d) delivered", to, i)
			}
		}
	})

	t.Run("delivery right after SyncWatches", func(t *testing.T) {
		for i := range 20 {
			filter := fmt.Sprintf("sync/%d/+", i)
			if err := b.f.Watch(filter); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := b.f.SyncWatches(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			id := uint64(1000 + i)
			forwardTopic(t, a.f, id, fmt.Sprintf("sync/%d/x", i))
			b.rec.waitFor(t, id)
		}
	})

	t.Run("own messages come back", func(t *testing.T) {
		mustWatch(t, a.f, "self/#")
		forwardTopic(t, a.f, 2000, "self")
		a.rec.waitFor(t, 2000)
	})

	t.Run("close unwatches", func(t *testing.T) {
		if err := b.f.Close(); err != nil {
			t.Fatal(err)
		}
		if n := b.f.Stats().TopicFilters; n != 0 {
			t.Fatalf("%d filters watched after Close", n)
		}
		if err := b.f.Watch("x"); !errors.Is(err, ErrClosed) {
			t.Fatalf("Watch after Close: %v, want ErrClosed", err)
		}
		if err := b.f.SyncWatches(context.Background()); !errors.Is(err, ErrClosed) {
			t.Fatalf("SyncWatches after Close: %v, want ErrClosed", err)
		}
	})
}

func TestTopicsMemoryBus(t *testing.T) {
	bus := NewMemoryBus()
	runTopicScenario(t, func(int) Bus { return bus })
	bus.mu.Lock()
	defer bus.mu.Unlock()
	for _, g := range bus.groups {
		if strings.HasPrefix(g.queue, "b.") {
			t.Errorf("b's queue group left after Close: %d filters", len(g.filters))
		}
	}
}

// The MemoryBus behaves like NATS queue groups: a message matched by
// several subscriptions of a group goes to the group once, to the fn of
// its first subscription; each group gets its copy; the last unsubscribe
// ends the group.
func TestMemoryBusQueueGroups(t *testing.T) {
	bus := NewMemoryBus()
	var mu sync.Mutex
	got := map[string][]string{}
	record := func(name string) func([]byte, bool) {
		return func(data []byte, _ bool) {
			mu.Lock()
			got[name] = append(got[name], string(data))
			mu.Unlock()
		}
	}
	wait := func(q1, q2 []string) {
		t.Helper()
		testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(got["q1"], q1) || !slices.Equal(got["q2"], q2) || len(got["q1-second"]) != 0 {
				return fmt.Errorf("got %v", got)
			}
			return nil
		})
	}
	u1, _ := bus.SubscribeTopic("t.a.>", "q1", record("q1"))
	u2, _ := bus.SubscribeTopic("t.*.b", "q1", record("q1-second"))
	u3, _ := bus.SubscribeTopic("t.a.b", "q2", record("q2"))
	bus.Publish("t.a.b", []byte("1"))
	bus.Publish("t.x.b", []byte("2"))
	bus.Publish("t.a", []byte("3")) // nobody: "t.a.>" needs a token more
	wait([]string{"1", "2"}, []string{"1"})
	u1()
	bus.Publish("t.a.b", []byte("4")) // q1 still has "t.*.b"
	wait([]string{"1", "2", "4"}, []string{"1", "4"})
	u2()
	u3()
	bus.mu.Lock()
	defer bus.mu.Unlock()
	if len(bus.groups) != 0 {
		t.Fatalf("%d groups left", len(bus.groups))
	}
}

func TestWatchRefuses(t *testing.T) {
	f := startTopicNode(t, "n1", NewMemoryBus()).f
	for _, flt := range []string{"", "a+", "a/#/b", "#a", "a/b#", "+a", "a\x00", "a/" + strings.Repeat("é", 700)} {
		if err := f.Watch(flt); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("Watch(%q): %v, want ErrInvalidFilter", flt, err)
		}
	}
	if n := f.Stats().TopicFilters; n != 0 {
		t.Errorf("%d filters watched", n)
	}
	plain := startTopicNode(t, "n2", &failingBus{Bus: NewMemoryBus()}).f // a Bus, not a TopicBus
	if err := plain.Watch("a"); err == nil || errors.Is(err, ErrInvalidFilter) {
		t.Errorf("Watch on a plain Bus: %v", err)
	}
	if err := plain.SyncWatches(context.Background()); err == nil {
		t.Error("SyncWatches on a plain Bus: no error")
	}
	// Forward refuses what cannot be a topic subject.
	for _, topic := range []string{"a/+", "a/#", "a\x00", strings.Repeat("é", 700)} {
		m := &message.Message{ID: 1, Kind: message.Topic, To: topic}
		if err := f.Forward(context.Background(), m); !errors.Is(err, ErrInvalidMessage) {
			t.Errorf("Forward to topic %.20q: %v, want ErrInvalidMessage", topic, err)
		}
	}
	if err := f.Forward(context.Background(), &message.Message{ID: 1, Kind: message.Topic, To: strings.Repeat("a", 2000)}); err != nil {
		t.Errorf("Forward to a 2,000-byte topic: %v", err)
	}
}

// ForwardAcked of a topic message: nothing confirms it, so its Receipt
// completes at once, as for a group without members, and no Ack is sent.
func TestForwardAckedTopic(t *testing.T) {
	bus := NewMemoryBus()
	a := startTopicNode(t, "a", bus)
	b := startTopicNode(t, "b", bus)
	mustWatch(t, b.f, "t/#")
	r := make(receipts, 1)
	for qos := byte(1); qos <= 2; qos++ {
		m := &message.Message{ID: uint64(qos), Kind: message.Topic, To: "t/x", QoS: qos}
		if err := a.f.ForwardAcked(m, r, uint64(qos)); err != nil {
			t.Fatal(err)
		}
		r.waitTag(t, uint64(qos))
	}
	b.rec.waitFor(t, 2)
	for _, n := range []topicNode{a, b} {
		if s := n.f.Stats(); s.AcksSent != 0 || s.AcksReceived != 0 || s.Waiting != 0 || s.AckTimeouts != 0 {
			t.Errorf("%+v", s)
		}
	}
}

// A stored topic message forwarded while muted is not sent: its wait
// sends it again after AckTimeout, as a muted Deliver's does.
func TestForwardAckedTopicMuted(t *testing.T) {
	bus := NewMemoryBus()
	clock := &testClock{}
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Cluster, cfg.Now, cfg.AckTimeout = "a", "test", clock.now, time.Minute
	a := topicNode{rec: newTopicRecorder()}
	a.f = mustNew(t, cfg, bus, staticMembers{}, &mapPlacement{def: "a"}, a.rec)
	a.f.ackTick = 5 * time.Millisecond // before Start: ackLoop reads it
	if err := a.f.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.f.Close() })
	b := startTopicNode(t, "b", bus)
	mustWatch(t, b.f, "t/#")
	a.f.Mute()
	r := make(receipts, 1)
	m := &message.Message{ID: 7, Seq: 70, Kind: message.Topic, To: "t/x", QoS: 1}
	if err := a.f.ForwardAcked(m, r, 7); err != nil {
		t.Fatal(err)
	}
	if s := a.f.Stats(); s.TopicEnvelopesSent != 0 || s.Muted != 1 || s.Waiting != 1 {
		t.Fatalf("muted: %+v", s)
	}
	r.none(t)
	a.f.Unmute(nil)
	clock.advance(time.Minute + time.Second)
	r.waitTag(t, 7)
	b.rec.waitFor(t, 7)
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if s := a.f.Stats(); s.TopicEnvelopesSent != 1 || s.Resent != 1 || s.Waiting != 0 {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
}

// A Topic envelope on a node's subject is refused (counted as a decode
// error), and any other kind on a topic subject too; the node's
// Deliverer sees neither.
func TestTopicEnvelopeMisrouted(t *testing.T) {
	bus := NewMemoryBus()
	n := startTopicNode(t, "n1", bus)
	mustWatch(t, n.f, "t")
	topic, err := AppendEnvelope(nil, &Envelope{Kind: KindTopic, Sender: "n2",
		Msg: message.Message{ID: 1, Kind: message.Topic, To: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	direct, err := AppendEnvelope(nil, &Envelope{Kind: KindDeliver, Sender: "n2",
		Msg: message.Message{ID: 2, Kind: message.Direct, To: "u"}, Recipients: []string{"u"}})
	if err != nil {
		t.Fatal(err)
	}
	bus.Publish(Subject("test", "n1"), topic)
	bus.Publish(TopicSubject("test", "t"), direct)
	bus.Publish(TopicSubject("test", "t"), []byte{2, 10})
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if s := n.f.Stats(); s.DecodeErrors != 3 {
			return fmt.Errorf("%d decode errors, want 3", s.DecodeErrors)
		}
		return nil
	})
	if s := n.f.Stats(); s.EnvelopesReceived != 0 || s.TopicEnvelopesReceived != 0 || n.rec.total() != 0 || len(n.rec.ids()) != 0 {
		t.Fatalf("%+v", s)
	}
}

// Without a TopicDeliverer, topic envelopes are counted and dropped.
func TestTopicWithoutTopicDeliverer(t *testing.T) {
	bus := NewMemoryBus()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Cluster = "n1", "test"
	f := mustNew(t, cfg, bus, staticMembers{}, &mapPlacement{def: "n1"}, newRecorder())
	if err := f.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	mustWatch(t, f, "#")
	forwardTopic(t, f, 1, "a")
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if s := f.Stats(); s.TopicEnvelopesReceived != 1 {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
}

// countingTopicDeliverer counts topic messages and keeps nothing.
type countingTopicDeliverer struct{ countingDeliverer }

func (d *countingTopicDeliverer) DeliverTopic(*message.Message) { d.n.Add(1) }

// Receiving a topic envelope costs what receiving a Deliver does: the
// decode's copy and the Envelope.
func TestReceiveTopicAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	d := &countingTopicDeliverer{}
	f := newSingle(t, &discardBus{}, d, nil)
	data, err := AppendEnvelope(nil, &Envelope{Kind: KindTopic, Sender: "n2",
		Msg: message.Message{ID: 1, Kind: message.Topic, To: "telemetry/d1/temp", QoS: 1, Payload: []byte("hello")}})
	if err != nil {
		t.Fatal(err)
	}
	const want = 2
	if n := testing.AllocsPerRun(500, func() { f.receiveTopic(data) }); n > want {
		t.Errorf("%v allocs per topic envelope received, want at most %d", n, want)
	}
	if d.n.Load() == 0 {
		t.Fatal("nothing delivered")
	}
}

// panickyTopicDeliverer panics on every topic message.
type panickyTopicDeliverer struct{ countingDeliverer }

func (*panickyTopicDeliverer) DeliverTopic(*message.Message) { panic("boom") }

// A TopicDeliverer's panic is recovered and counted, as a Deliverer's:
// the topic goroutine goes on with the next message.
func TestTopicDelivererPanic(t *testing.T) {
	bus := NewMemoryBus()
	f := newSingle(t, bus, &panickyTopicDeliverer{}, nil)
	mustWatch(t, f, "#")
	forwardTopic(t, f, 1, "a")
	forwardTopic(t, f, 2, "b")
	testutil.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if s := f.Stats(); s.Panics != 2 || s.TopicEnvelopesReceived != 2 {
			return fmt.Errorf("%d panics, %d received", s.Panics, s.TopicEnvelopesReceived)
		}
		return nil
	})
}

// TestRenewWatches: after RenewWatches the node's filters are watched
// under a new queue group (a stale connection of the node keeps the old
// one), the old subscriptions are gone, and messages still arrive once.
func TestRenewWatches(t *testing.T) {
	bus := NewMemoryBus()
	n := startTopicNode(t, "n1", bus)
	f := n.f
	mustWatch(t, f, "a/#", "a/+")
	queues := func() []string {
		bus.mu.Lock()
		defer bus.mu.Unlock()
		var out []string
		for _, g := range bus.groups {
			out = append(out, fmt.Sprintf("%s:%d", g.queue, len(g.filters)))
		}
		return out
	}
	before := queues()
	f.RenewWatches()
	after := queues()
	if len(before) != 1 || len(after) != 1 || before[0] == after[0] || !strings.HasPrefix(after[0], "n1.") || !strings.HasSuffix(after[0], ":3") {
		t.Fatalf("queue groups before %q, after %q", before, after)
	}
	m := &message.Message{ID: 7, Kind: message.Topic, To: "a/b", Payload: []byte("x")}
	if err := f.Forward(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if ids := n.rec.waitFor(t, 7); !slices.Equal(ids, []uint64{7}) {
		t.Fatalf("received %v", ids)
	}
}
