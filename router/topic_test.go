package router

import (
	"strings"
	"testing"

	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/packet"
	"github.com/pushring/pushring/store"
)

func TestSubscribeTarget(t *testing.T) {
	tp := newTopics(DefaultConfig().withDefaults())
	cases := []struct {
		filter string
		gid    string
		ok     bool
	}{
		{"/private/alice", "", true},
		{"/private/alice/#", "", true},
		{"/private/alice/group/+", "", true},
		{"/private/alice/group/g1", "", true},
		{"/private/alice/+/g1", "", true},
		{"/group/g1", "g1", true},
		{"/group/anything", "anything", true}, // membership is checked by the caller

		// Wildcards where the identity goes, other trees
		{"/private/+", "", false},
		{"/private/#", "", false},
		{"/private/+/group/g1", "", false},
		{"#", "", false},
		{"/#", "", false},
		{"+/+", "", false},
		{"/+/alice", "", false},
		{"+/private/alice", "", false},
		{"/private/bob", "", false},
		{"/private/bob/#", "", false},
		// Level boundaries
		{"/private/alice2", "", false},
		{"/private/alicebob", "", false},
		{"private/alice", "", false},
		{"//private/alice", "", false},
		{"/private//alice", "", false},
		{"/group/+", "", false},
		{"/group/#", "", false},
		{"/group/g1/#", "", false},
		{"/group/g1/x", "", false},
		{"/group/", "", false},
		{"/group//g1", "", false},
		{"/group/..", "", false},
		// Shared subscriptions refused whatever follows
		{"$share/g/private/alice", "", false},
		{"$share/g//private/alice", "", false},
		{"$share/g/#", "", false},
		// $ topics, service topics
		{"$SYS/#", "", false},
		{"/service/auth", "", false},
		// No normalisation
		{"\uFEFF/private/alice", "", false},
		{"/private/ALICE", "", false},
	}
	for _, c := range cases {
		gid, ok := tp.subscribeTarget("alice", c.filter)
		if ok != c.ok || gid != c.gid {
			t.Errorf("subscribeTarget(alice, %q) = %q, %v; want %q, %v", c.filter, gid, ok, c.gid, c.ok)
		}
	}
	// An identity that is not a valid id never matches anything.
	for _, id := range []string{"+", "#", "alice/#", "a/b", "", "..", "."} {
		for _, f := range []string{"/private/" + id, "/private/+", "/private/#", "/private/" + id + "/#"} {
			if _, ok := tp.subscribeTarget(id, f); ok {
				t.Errorf("identity %q may subscribe %q", id, f)
			}
		}
	}
}

func TestPublishTarget(t *testing.T) {
	tp := newTopics(DefaultConfig().withDefaults())
	cases := []struct {
		topic  string
		kind   message.Kind
		to     string
		reason string
	}{
		{"/group/g1", message.Group, "g1", ""},
		{"/private/bob", message.Direct, "bob", ""},
		{"/group/g1x", message.Group, "g1x", ""}, // a different group: the ACL decides
		{"/group/g1/secret", 0, "", reasonTopic},
		{"/group/g1/", 0, "", reasonTopic},
		{"/group//g1", 0, "", reasonTopic},
		{"//group/g1", 0, "", reasonTopic},
		{"/group/g1/../g2", 0, "", reasonTopic},
		{"/group/", 0, "", reasonTopic},
		{"/group", 0, "", reasonTopic},
		{"/private/bob/group/g1", 0, "", reasonTopic},
		{"/private/", 0, "", reasonTopic},
		{"$SYS/x", 0, "", reasonTopic},
		{"$share/g/x", 0, "", reasonTopic},
		{"$private/alice", 0, "", reasonTopic},
		{"/service/auth", 0, "", reasonService},
		{"/service/auth/tok", 0, "", reasonService},
		{"service/auth", 0, "", reasonService},
		{"/services", 0, "", reasonTopic},
		{"\uFEFF/group/g1", 0, "", reasonTopic},
	}
	for _, c := range cases {
		kind, to, reason := tp.publishTarget([]byte(c.topic))
		if kind != c.kind || string(to) != c.to || reason != c.reason {
			t.Errorf("publishTarget(%q) = %v, %q, %q; want %v, %q, %q", c.topic, kind, to, reason, c.kind, c.to, c.reason)
		}
	}
}

func TestAuthToken(t *testing.T) {
	tp := newTopics(DefaultConfig().withDefaults())
	for _, c := range []struct{ topic, payload, token string }{
		{"/service/auth", "T1", "T1"},
		{"service/auth", "T2", "T2"},
		{"/service/auth/T3", "ignored", "T3"},
	} {
		tok, ok := tp.authToken([]byte(c.topic), []byte(c.payload))
		if !ok || string(tok) != c.token {
			t.Errorf("authToken(%q) = %q, %v", c.topic, tok, ok)
		}
	}
	for _, topic := range []string{"/service/auth/", "/service/authx", "/service", "/private/alice"} {
		if _, ok := tp.authToken([]byte(topic), []byte("x")); ok {
			t.Errorf("authToken(%q) accepted", topic)
		}
	}
}

func TestCustomPrefixes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PrivatePrefix, cfg.GroupPrefix, cfg.ServicePrefix = "p/u", "grp", "svc"
	tp := newTopics(cfg.withDefaults())
	if _, ok := tp.subscribeTarget("alice", "p/u/alice/#"); !ok {
		t.Error("p/u/alice/# refused")
	}
	if _, ok := tp.subscribeTarget("alice", "p/+/alice"); ok {
		t.Error("p/+/alice allowed")
	}
	if gid, ok := tp.subscribeTarget("alice", "grp/g1"); !ok || gid != "g1" {
		t.Error("grp/g1 refused")
	}
	if k, to, _ := tp.publishTarget([]byte("grp/g1")); k != message.Group || string(to) != "g1" {
		t.Error("grp/g1 not a group topic")
	}
	if _, ok := tp.authToken([]byte("svc/auth"), []byte("t")); !ok {
		t.Error("svc/auth not an auth topic")
	}
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"a", "alice", "A-b_c.d", "0123456789012345678901234567890123456789012345678901234567890123"} {
		if !validID(id) {
			t.Errorf("validID(%q) = false", id)
		}
	}
	for _, id := range []string{"", ".", "..", "+", "#", "a/b", "a b", "a\x00", "é", "01234567890123456789012345678901234567890123456789012345678901234"} {
		if validID(id) {
			t.Errorf("validID(%q) = true", id)
		}
	}
	// validID mirrors store.ValidID, around the length limit too.
	for _, id := range []string{"a", "A-b_c.d", ".", "..", "a/b", "é", strings.Repeat("a", 64), strings.Repeat("a", 65)} {
		if validID(id) != store.ValidID(id) {
			t.Errorf("validID(%q) = %v, store.ValidID %v", id, validID(id), store.ValidID(id))
		}
	}
}

func TestQueueDropsOldest(t *testing.T) {
	var q msgQueue
	msgs := make([]*message.Message, 10)
	dropped := 0
	for i := range msgs {
		msgs[i] = &message.Message{ID: uint64(i + 1)}
		dropped += len(q.push(outMsg{m: msgs[i], qos: 1}, 4, 1<<20))
	}
	if dropped != 6 || q.len() != 4 {
		t.Fatalf("dropped %d len %d", dropped, q.len())
	}
	for want := uint64(7); want <= 10; want++ {
		if got := q.pop().m.ID; got != want {
			t.Fatalf("pop %d, want %d", got, want)
		}
	}
	if q.len() != 0 {
		t.Fatal("queue not empty")
	}
	// interleaved push/pop keeps order across wrap-around
	next, want := uint64(1), uint64(1)
	for i := 0; i < 100; i++ {
		q.push(outMsg{m: &message.Message{ID: next}}, 1000, 1<<20)
		next++
		if i%3 == 0 {
			if got := q.pop().m.ID; got != want {
				t.Fatalf("pop %d want %d", got, want)
			}
			want++
		}
	}
	for q.len() > 0 {
		if got := q.pop().m.ID; got != want {
			t.Fatalf("pop %d want %d", got, want)
		}
		want++
	}
}

func TestIDRing(t *testing.T) {
	var r idRing
	for i := uint64(1); i <= recentIDs; i++ {
		r.add(i)
	}
	if !r.has(1) || !r.has(recentIDs) || r.has(recentIDs+1) || r.has(0) {
		t.Fatal("ring membership wrong")
	}
	r.add(recentIDs + 1)
	if r.has(1) || !r.has(2) {
		t.Fatal("oldest id not evicted")
	}
}

func TestMatchUsedByDelivery(t *testing.T) {
	// Sanity check that the codec's matcher agrees with the delivery
	// topic forms.
	if !packet.Match("/private/alice/#", []byte("/private/alice/group/g1")) ||
		!packet.Match("/private/alice/#", []byte("/private/alice")) ||
		packet.Match("/private/alice", []byte("/private/alice/group/g1")) {
		t.Fatal("unexpected Match results")
	}
}

func TestQueueBytesBound(t *testing.T) {
	var q msgQueue
	msg := func(id uint64, n int) outMsg {
		return outMsg{m: &message.Message{ID: id, Payload: make([]byte, n)}, qos: 1}
	}
	dropped := 0
	for i := range 5 {
		dropped += len(q.push(msg(uint64(i+1), 100), 1000, 250))
	}
	if dropped != 3 || q.len() != 2 || q.bytes != 200 {
		t.Fatalf("dropped %d len %d bytes %d", dropped, q.len(), q.bytes)
	}
	// one message over the cap evicts everything but is kept, alone
	if d := len(q.push(msg(9, 300), 1000, 250)); d != 2 || q.len() != 1 || q.bytes != 300 {
		t.Fatalf("dropped %d len %d bytes %d", d, q.len(), q.bytes)
	}
	if q.pop().m.ID != 9 || q.bytes != 0 {
		t.Fatalf("bytes %d after pop", q.bytes)
	}
}
