package bench_test

import (
	"encoding/json"
	"testing"
	"time"
)

// TestSmokeWebhook runs pushbench --webhook none,dead,ok
// --offline-members 5 (QoS 0, 1 × 30 connected, 100 msgs/s for 2 s):
// three pushring rows, each delivering every message once to the 30
// connected members and nothing expected at the 5 offline ones; the
// dead receiver holds what it got and the node queues the rest; the ok
// receiver gets every message.offline event (sent × 5, all but the last
// message's by the end of the drain at this rate) and the node counts
// each delivered.
func TestSmokeWebhook(t *testing.T) {
	rep, raw := runPushbench(t, 3*time.Minute, 3, "--webhook", "none,dead,ok", "--offline-members", "5",
		"--scenario", "fanout", "--members", "30", "--qos", "0", "--rate", "100", "--duration", "2s", "--warmup", "500ms", "--drain", "3s")
	type hooked struct {
		Webhook                string   `json:"webhook"`
		OfflineMembers         int      `json:"offline_members"`
		WebhookDelivered       *float64 `json:"webhook_delivered"`
		WebhookQueueFull       *float64 `json:"webhook_queue_full"`
		WebhookQueued          *float64 `json:"webhook_queued"`
		WebhookRequests        *float64 `json:"webhook_requests"`
		WebhookOfflineRequests *float64 `json:"webhook_offline_requests"`
	}
	var hooks struct {
		Results []hooked `json:"results"`
	}
	if err := json.Unmarshal(raw, &hooks); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"pushring", "pushring+hook-dead", "pushring+hook-ok"} {
		r, h := rep.Results[i], hooks.Results[i]
		if r.System != want || r.Connections != 31 || h.OfflineMembers != 5 {
			t.Errorf("row %d: system %q connections %d offline members %d, want %q, 31, 5", i, r.System, r.Connections, h.OfflineMembers, want)
			continue
		}
		if err := r.fannedOut(30); err != nil {
			t.Errorf("%s: %v", r.System, err)
		}
		due := float64(r.Sent * 5)
		switch h.Webhook {
		case "":
			if h.WebhookDelivered == nil || *h.WebhookDelivered != 0 || h.WebhookRequests != nil {
				t.Errorf("%s: webhook figures %+v, want 0 delivered and no receiver", r.System, h)
			}
		case "dead":
			if h.WebhookRequests == nil || *h.WebhookRequests < 1 || h.WebhookDelivered == nil || *h.WebhookDelivered != 0 ||
				h.WebhookQueued == nil || *h.WebhookQueued+*h.WebhookQueueFull < due {
				t.Errorf("%s: webhook figures %+v, want requests held, none delivered, at least %v queued or dropped", r.System, h, due)
			}
		case "ok":
			// The last message's events may still be on their way when
			// the drain ends: at most its 5 short.
			if h.WebhookOfflineRequests == nil || *h.WebhookOfflineRequests > due || *h.WebhookOfflineRequests < due-5 ||
				h.WebhookDelivered == nil || *h.WebhookDelivered > *h.WebhookRequests || *h.WebhookDelivered < due-5 {
				t.Errorf("%s: webhook figures %+v, want %v message.offline requests (or up to 5 fewer), each delivered", r.System, h, due)
			}
		default:
			t.Errorf("%s: webhook %q", r.System, h.Webhook)
		}
	}
}
