package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/message"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/store"
	"github.com/pushring/pushring/webhook"
)

// hookReceiver is a webhook endpoint that checks every request's
// signature and records the events it accepted, in arrival order.
type hookReceiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	events []webhook.Event
	ids    map[string]int // attempts seen per event id
	// fail500 answers 500 to the first attempt of events of this type.
	fail500 string
	bad     int // requests with a bad signature
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !webhook.Verify(h.secret, r.Header.Get("X-Pushring-Timestamp"), r.Header.Get("X-Pushring-Signature"), body, time.Now(), time.Minute) {
		h.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != r.Header.Get("X-Pushring-Id") || ev.Type != r.Header.Get("X-Pushring-Event") {
		h.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.ids[ev.ID]++
	if ev.Type == h.fail500 && h.ids[ev.ID] == 1 {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h.events = append(h.events, ev)
	w.WriteHeader(http.StatusNoContent)
}

// find returns the accepted events of type typ whose data field key is
// value.
func (h *hookReceiver) find(typ, key, value string) []webhook.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []webhook.Event
	for _, ev := range h.events {
		if d, ok := ev.Data.(map[string]any); ok && ev.Type == typ && d[key] == value {
			out = append(out, ev)
		}
	}
	return out
}

// TestWebhooks: an endpoint configured through one node's API gets, from
// the other node too, signed events: a session's connect and disconnect
// in order, a group message for a member with no live session (and none
// for a connected member), refusals by reason; an event answered 500 is
// sent again (same id) and taken; and an endpoint that never answers
// leaves the members' deliveries and the other endpoint's events alone.
func TestWebhooks(t *testing.T) {
	tc := startClusterWith(t, 2, func(c *Config) {
		c.Webhooks.Backoff, c.Webhooks.Timeout = 20*time.Millisecond, 300*time.Millisecond
		c.Webhooks.AllowPrivate = true // the receivers are on loopback
	})
	ctx := context.Background()
	api := newAPI(t, tc.nodes[0])
	admin := "Bearer cluster-admin-key"

	recv := &hookReceiver{t: t, ids: map[string]int{}, fail500: webhook.MessageOffline}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	stuck := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-stuck // never answers while the test runs
	}))
	defer func() { close(stuck); dead.Close() }()

	var created struct{ ID, Secret string }
	api.must(201, "POST", "/v1/webhooks", admin, map[string]any{"url": srv.URL + "/hook"}, &created)
	recv.mu.Lock()
	recv.secret = created.Secret
	recv.mu.Unlock()
	api.must(201, "POST", "/v1/webhooks", admin, map[string]any{"url": dead.URL, "events": []string{"message.offline", "session.connected"}}, nil)
	api.must(400, "POST", "/v1/webhooks", admin, map[string]any{"url": "ftp://x"}, nil)
	api.must(400, "POST", "/v1/webhooks", admin, map[string]any{"url": srv.URL, "events": []string{"nope"}}, nil)
	var list struct {
		Webhooks []struct{ ID, URL, Secret string } `json:"webhooks"`
	}
	api.must(200, "GET", "/v1/webhooks", admin, nil, &list)
	if len(list.Webhooks) != 2 || list.Webhooks[0].Secret != "" {
		t.Fatalf("listed %+v (secrets must not show)", list.Webhooks)
	}
	// Both nodes have both endpoints before anything happens.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, n := range tc.nodes {
			if got := len(n.hookEps.List()); got != 2 {
				return fmt.Errorf("%s has %d endpoints", n.cfg.NodeID, got)
			}
		}
		return nil
	})

	st := tc.nodes[0].dir
	if err := st.CreateGroup(ctx, store.Group{ID: "g"}); err != nil {
		t.Fatal(err)
	}
	aliceTok, _ := tc.user(t, "alice"), tc.user(t, "bob")
	dKey := tc.device(t, "d1")
	for _, r := range []struct {
		id   string
		role store.Role
	}{{"alice", store.Member}, {"bob", store.Member}, {"d1", store.Publisher}} {
		if err := st.SetRole(ctx, "g", r.id, r.role, true); err != nil {
			t.Fatal(err)
		}
	}
	tc.waitMembers(t, "g", 2)

	// alice connects to n2 and disconnects: two events, in order.
	var box inbox
	a := listen(t, tc.nodes[1].MQTTAddr(), "alice", aliceTok, &box)
	d1, err := mqttc.Dial(tc.nodes[0].MQTTAddr(), mqttc.Options{ClientID: "d1", Username: "d1", Password: dKey})
	if err != nil {
		t.Fatal(err)
	}
	defer d1.Abort()
	go d1.Run(nil)
	// bob has never connected: a group message for him is offline; alice
	// gets hers while an endpoint never answers.
	done := make(chan struct{})
	for i := range 40 {
		if !d1.Publish("/group/g", 1, []byte(fmt.Sprint("m", i)), done) {
			t.Fatal("publish refused")
		}
	}
	d1.Flush()
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := len(box.list()); n != 40 {
			return fmt.Errorf("alice got %d of 40 with an endpoint that never answers", n)
		}
		return nil
	})
	a.Close()
	if _, err := mqttc.Dial(tc.nodes[1].MQTTAddr(), mqttc.Options{ClientID: "x", Username: "alice", Password: "wrong"}); err == nil {
		t.Fatal("a wrong password logged in")
	}

	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		conn := recv.find(webhook.SessionConnected, "client_id", "alice")
		disc := recv.find(webhook.SessionDisconnected, "client_id", "alice")
		if len(conn) != 1 || len(disc) != 1 {
			return fmt.Errorf("alice's session events: %d connected, %d disconnected", len(conn), len(disc))
		}
		if conn[0].Node != "n2" || disc[0].Node != "n2" || conn[0].Seq >= disc[0].Seq {
			return fmt.Errorf("alice's events out of order or from the wrong node: %+v then %+v", conn[0], disc[0])
		}
		if got := disc[0].Data.(map[string]any)["reason"]; got != "client_disconnect" {
			return fmt.Errorf("disconnect reason %v", got)
		}
		if n := len(recv.find(webhook.MessageOffline, "recipient", "bob")); n != 40 {
			return fmt.Errorf("%d message.offline events for bob, want 40", n)
		}
		if n := len(recv.find(webhook.MessageOffline, "recipient", "alice")); n != 0 {
			return fmt.Errorf("%d message.offline events for alice, who was connected", n)
		}
		if n := len(recv.find(webhook.Refusal, "reason", "connect_bad_credentials")); n != 1 {
			return fmt.Errorf("%d bad-credentials refusals", n)
		}
		return nil
	})
	// A takeover: the new connection's connected event may come first;
	// the old one's disconnected names its own connection, taken over.
	first, err := mqttc.Dial(tc.nodes[0].MQTTAddr(), mqttc.Options{ClientID: "tk", Username: "alice", Password: aliceTok})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Abort()
	second, err := mqttc.Dial(tc.nodes[0].MQTTAddr(), mqttc.Options{ClientID: "tk", Username: "alice", Password: aliceTok})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Abort()
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		conn := recv.find(webhook.SessionConnected, "client_id", "tk")
		disc := recv.find(webhook.SessionDisconnected, "client_id", "tk")
		if len(conn) != 2 || len(disc) != 1 {
			return fmt.Errorf("takeover events: %d connected, %d disconnected", len(conn), len(disc))
		}
		c1, c2 := conn[0].Data.(map[string]any), conn[1].Data.(map[string]any)
		d := disc[0].Data.(map[string]any)
		if c1["connection"] == c2["connection"] || d["connection"] != c1["connection"] || d["reason"] != "taken_over" {
			return fmt.Errorf("takeover: connected %v then %v, disconnected %v", c1, c2, d)
		}
		return nil
	})

	recv.mu.Lock()
	defer recv.mu.Unlock()
	if recv.bad != 0 {
		t.Fatalf("%d requests with a bad signature or body", recv.bad)
	}
	retried := 0
	for id, n := range recv.ids {
		if strings.Contains(id, "-") && n == 2 {
			retried++
		}
	}
	if retried < 40 {
		t.Fatalf("%d events taken on their second attempt after a 500, want the 40 offline ones", retried)
	}

}

// TestOfflineEventPayload: a message.offline event carries a small
// payload once, as text or (not UTF-8) base64, and leaves a large one
// out, saying its size.
func TestOfflineEventPayload(t *testing.T) {
	m := &message.Message{ID: 7, Kind: message.Group, From: "d1", To: "g", QoS: 1}
	for _, tc := range []struct {
		payload   []byte
		text, b64 string
		omitted   bool
	}{
		{[]byte("door <open> & lit"), "door <open> & lit", "", false},
		{[]byte{0xff, 0x00, 0x01}, "", "/wAB", false},
		{bytes.Repeat([]byte("x"), maxEventPayload), strings.Repeat("x", maxEventPayload), "", false},
		{bytes.Repeat([]byte("x"), maxEventPayload+1), "", "", true},
	} {
		m.Payload = tc.payload
		d := offlineOf(m, "bob")
		if d.Payload != tc.text || d.PayloadBase64 != tc.b64 || d.PayloadOmit != tc.omitted || d.PayloadBytes != len(tc.payload) ||
			d.Recipient != "bob" || d.Group != "g" || d.Kind != "group" {
			t.Fatalf("payload of %d bytes: %+v", len(tc.payload), d)
		}
	}
}
