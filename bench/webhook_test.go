package bench

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestParseWebhookCounters reads one labelled sample per name written
// with its label, next to the plain names summed over their labels.
func TestParseWebhookCounters(t *testing.T) {
	in := `# TYPE pushring_webhook_events_total counter
pushring_webhook_events_total{result="delivered"} 12
pushring_webhook_events_total{result="failed"} 1
pushring_webhook_events_total{result="queue_full"} 3.5e+06
pushring_webhook_events_total{result="removed"} 7
pushring_webhook_queued 10000
pushring_webhook_queued_other 5
pushring_journal_store_errors_total{reason="timeout"} 2
`
	got, err := parseCounters(strings.NewReader(in), append([]string{metricStoreErrors}, webhookMetrics...))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{metricHookDelivered: 12, metricHookFailed: 1, metricHookQueueFull: 3.5e6, metricHookQueued: 10000, metricStoreErrors: 2}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// TestHookServer: the ok receiver answers 204 at once, the dead one
// holds the request until the client gives up; both count what they
// got, and Close ends what is held.
func TestHookServer(t *testing.T) {
	post := func(h *HookServer, event string, timeout time.Duration) (int, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", h.URL, strings.NewReader(`{}`))
		req.Header.Set("X-Pushring-Event", event)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	ok, err := StartHookServer(HookOK)
	if err != nil {
		t.Fatal(err)
	}
	defer ok.Close()
	for _, ev := range []string{"message.offline", "session.connected", "message.offline"} {
		if code, err := post(ok, ev, 5*time.Second); err != nil || code != http.StatusNoContent {
			t.Fatalf("ok receiver: %d, %v", code, err)
		}
	}
	if all, off := ok.Requests(); all != 3 || off != 2 {
		t.Errorf("ok receiver counted %d requests, %d offline; want 3 and 2", all, off)
	}

	dead, err := StartHookServer(HookDead)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := post(dead, "message.offline", 300*time.Millisecond); err == nil {
		t.Error("dead receiver answered")
	}
	held := make(chan error, 1)
	go func() { _, err := post(dead, "refusal", time.Minute); held <- err }()
	for deadline := time.Now().Add(5 * time.Second); ; {
		if all, _ := dead.Requests(); all == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead receiver did not count the second request")
		}
		time.Sleep(10 * time.Millisecond)
	}
	dead.Close()
	select {
	case err := <-held:
		if err == nil {
			t.Error("a held request got an answer")
		}
	case <-time.After(5 * time.Second):
		t.Error("Close did not end the held request")
	}
	if all, off := dead.Requests(); all != 2 || off != 1 {
		t.Errorf("dead receiver counted %d requests, %d offline; want 2 and 1", all, off)
	}
	if _, err := StartHookServer(HookNone); err == nil {
		t.Error("a receiver of kind none started")
	}
}

// TestWebhookLine: a row with a receiver or events gets the line, a
// pushring row whose node took none (no endpoint) and a baseline row
// (no counters) do not.
func TestWebhookLine(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	zero := Result{System: "pushring", WebhookDelivered: f(0), WebhookQueueFull: f(0), WebhookFailed: f(0), WebhookQueued: f(0)}
	if s := webhookLine(&zero); s != "" {
		t.Errorf("no endpoint: %q", s)
	}
	if s := webhookLine(&Result{System: "mosquitto"}); s != "" {
		t.Errorf("baseline: %q", s)
	}
	dead := Result{System: "pushring+hook-dead", Webhook: HookDead, OfflineMembers: 50, Sent: 1000,
		WebhookDelivered: f(0), WebhookQueueFull: f(40000), WebhookFailed: f(0), WebhookQueued: f(10000),
		WebhookRequests: f(2), WebhookOfflineRequests: f(0)}
	s := webhookLine(&dead)
	for _, want := range []string{"pushring+hook-dead: webhook (dead receiver, 50 offline members per group: at most sent × 50 = 50000 message.offline events)",
		"delivered 0, queue_full 40000, failed 0, still queued 10000", "got 2 requests (held unanswered)"} {
		if !strings.Contains(s, want) {
			t.Errorf("line %q lacks %q", s, want)
		}
	}
	if HookSuffix(HookDead) != "+hook-dead" || HookSuffix(HookNone) != "" {
		t.Errorf("suffixes %q %q", HookSuffix(HookDead), HookSuffix(HookNone))
	}
}
