package node

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// gapNotice is the payload of a notice on /private/<id>/$gap.
type gapNotice struct {
	FromSeq uint64 `json:"from_seq"`
	ToSeq   uint64 `json:"to_seq"`
	Dropped uint64 `json:"dropped"`
	Reason  string `json:"reason"`
}

// TestBacklogBounds: through a real client and the real journal, a
// persistent session back after more than its backlog bound was
// published gets the newest messages in order, then one notice on
// /private/<id>/$gap with the range and count dropped, counted in
// pushring_session_backlog_dropped_total. The age bound reads the
// journal's stored times: with the clock two hours on, an hour's bound
// drops everything, and says so.
func TestBacklogBounds(t *testing.T) {
	var skew atomic.Int64
	n := startNode(t, t.TempDir(), func(c *Config) {
		c.Router.SessionBacklogMessages = 10
		c.Router.SessionBacklogAge = time.Hour
		c.Router.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	defer n.Close()
	w := setupWorld(t, n)
	s := w.api.login("alice", passwordOf("alice"))
	opts := clientOpts{user: "alice", password: s.Token, clientID: "alice-phone", persistent: true}
	c := connect(t, n, opts, nil)
	subscribe(t, c, "/private/alice/#", 1, nil)
	c.Disconnect(50)
	waitConnections(t, n, 0)

	d1 := connect(t, n, clientOpts{user: "d1", password: w.d1Key}, nil)
	for i := range 30 {
		publish(t, d1, "/group/g1", 1, fmt.Sprint("msg-", i))
	}
	got := &received{}
	c = connect(t, n, opts, got)
	notice := waitGap(t, got, 11)
	var want []string
	for i := 20; i < 30; i++ {
		want = append(want, fmt.Sprint("/private/alice/group/g1 msg-", i))
	}
	if l := got.list(); !slices.Equal(l[:10], want) {
		t.Fatalf("after reconnect got\n%s\nwant\n%s", joinLines(l[:10]), joinLines(want))
	}
	if notice.Dropped != 20 || notice.Reason != "messages" || notice.ToSeq-notice.FromSeq != 19 {
		t.Fatalf("notice %+v, want 20 dropped over 20 sequences by messages", notice)
	}
	if v := counter(t, n, "pushring_session_backlog_dropped_total", map[string]string{"bound": "messages"}); v != 20 {
		t.Fatalf("dropped{bound=messages} = %v, want 20", v)
	}
	c.Disconnect(50)
	// Offline before the late messages come: had the node not seen the
	// DISCONNECT yet, they would go to the closing connection and come
	// back as resends, which no bound drops.
	waitConnections(t, n, 1) // d1

	for i := range 3 {
		publish(t, d1, "/group/g1", 1, fmt.Sprint("late-", i))
	}
	skew.Store(int64(2 * time.Hour))
	got = &received{}
	connect(t, n, opts, got)
	notice = waitGap(t, got, 1)
	if notice.Dropped != 3 || notice.Reason != "age" || notice.FromSeq != notice.ToSeq-2 || notice.FromSeq <= 30 {
		t.Fatalf("notice %+v, want the 3 late messages dropped by age", notice)
	}
	if v := counter(t, n, "pushring_session_backlog_dropped_total", map[string]string{"bound": "age"}); v != 3 {
		t.Fatalf("dropped{bound=age} = %v, want 3", v)
	}
}

// waitConnections waits until the node counts want MQTT connections.
func waitConnections(t *testing.T, n *Node, want float64) {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := counter(t, n, "pushring_mqtt_connections", nil); got != want {
			return fmt.Errorf("%v MQTT connections, want %v", got, want)
		}
		return nil
	})
}

// waitGap waits for n messages, the last of them a gap notice, and
// returns the notice.
func waitGap(t *testing.T, got *received, n int) gapNotice {
	t.Helper()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got.count() < n {
			return fmt.Errorf("got %v", got.list())
		}
		return nil
	})
	l := got.list()
	if len(l) != n {
		t.Fatalf("got %d messages, want %d:\n%s", len(l), n, joinLines(l))
	}
	topic, payload, _ := strings.Cut(l[n-1], " ")
	if topic != "/private/alice/$gap" {
		t.Fatalf("last message on %s, want the gap notice:\n%s", topic, joinLines(l))
	}
	var g gapNotice
	if err := json.Unmarshal([]byte(payload), &g); err != nil {
		t.Fatalf("notice %s: %v", payload, err)
	}
	return g
}
