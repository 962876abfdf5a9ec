package node

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// clusterRules: devices publish and read their own telemetry tree,
// members of group ops read every device's, and everyone reads news
// that ops publish.
const clusterRules = `{"rules": [
  {"pattern": "telemetry/%u/#", "publish": ["devices"], "subscribe": ["devices"]},
  {"pattern": "telemetry/+/#", "subscribe": ["group:ops"]},
  {"pattern": "public/news", "publish": ["group:ops"], "subscribe": ["all"]}
]}`

// TestTopicRulesCluster, through real clients on a real two-node
// cluster with --topic-rules: a device publishes telemetry with
// mosquitto_pub on node n1; a member of ops reads it with MQTT.js on
// n2, and another of its sessions there, with overlapping filters,
// with paho: each gets every message once, and n2 receives one
// envelope per message, not one per session or filter. A user outside
// ops is refused the filter. A persistent session that subscribed on
// n2 and went away gets the QoS 1 messages it missed when it comes
// back on n1 (replayed from the journal). n1, with no topic
// subscription, gets no topic envelope.
func TestTopicRulesCluster(t *testing.T) {
	pub := needTool(t, "mosquitto_pub")
	rulesFile := filepath.Join(t.TempDir(), "rules.json")
	if err := os.WriteFile(rulesFile, []byte(clusterRules), 0o600); err != nil {
		t.Fatal(err)
	}
	tc := startClusterWith(t, 2, func(c *Config) { c.TopicRulesFile = rulesFile })
	n1, n2 := tc.nodes[0], tc.nodes[1]
	admin := "Bearer cluster-admin-key"
	api := newAPI(t, n1)
	d1Key := tc.device(t, "d1")
	alice, carol := tc.user(t, "alice"), tc.user(t, "carol")
	api.must(201, "POST", "/v1/groups", admin, map[string]any{"id": "ops"}, nil)
	api.must(204, "PUT", "/v1/groups/ops/members/alice", admin, nil, nil)

	// carol is not in ops: refused (SUBACK 0x80), her news filter granted.
	cc := connect(t, n2, clientOpts{user: "carol", password: carol, clientID: "carol"}, nil)
	if code := subscribe(t, cc, "telemetry/+/#", 1, nil); code != 0x80 {
		t.Fatalf("carol's telemetry filter: SUBACK %#x", code)
	}
	news := &received{}
	if code := subscribe(t, cc, "public/news", 1, news); code != 1 {
		t.Fatalf("carol's news filter: SUBACK %#x", code)
	}

	// alice on n2: MQTT.js (3.1.1), and paho with two overlapping filters.
	wait := mqttJS(t, "URL=mqtt://"+n2.MQTTAddr(), "USERNAME=alice", "PASSWORD="+alice, "CLIENT_ID=alice-js",
		"FILTER=telemetry/+/#", "COUNT=3")
	sink := &received{}
	// (paho's default handler: one call per message, where a handler
	// per subscription would be called for each matching filter.)
	ac := connect(t, n2, clientOpts{user: "alice", password: alice, clientID: "alice-paho"}, sink)
	subscribe(t, ac, "telemetry/d1/#", 1, nil)
	subscribe(t, ac, "telemetry/+/temp", 0, nil)
	// A persistent session of alice's on n2, then away.
	pc := connect(t, n2, clientOpts{user: "alice", password: alice, clientID: "alice-away", persistent: true}, nil)
	subscribe(t, pc, "telemetry/#", 1, nil) // wider than ops may: refused
	if code := subscribe(t, pc, "telemetry/+/temp", 1, nil); code != 1 {
		t.Fatalf("alice-away: SUBACK %#x", code)
	}
	pc.Disconnect(100)

	n1Before := counter(t, n1, "pushring_fanout_topic_envelopes_received_total", nil)
	n2Before := counter(t, n2, "pushring_fanout_topic_envelopes_received_total", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	host, port, _ := net.SplitHostPort(n1.MQTTAddr())
	var want []string
	for i := range 3 {
		p := fmt.Sprintf("%d.5", 20+i)
		if out, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1",
			"-i", "d1-mosq", "-u", "d1", "-P", d1Key, "-t", "telemetry/d1/temp", "-m", p).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v: %s", err, out)
		}
		want = append(want, "telemetry/d1/temp "+p)
	}
	if got := wait(); !slices.Equal(got, want) {
		t.Fatalf("MQTT.js got %q, want %q", got, want)
	}
	got := sink.waitMsgs(t, 3)
	for i, m := range got {
		if line := m.Topic() + " " + string(m.Payload()); line != want[i] || m.Qos() != 1 {
			t.Errorf("paho message %d: %q at QoS %d, want %q at 1", i, line, m.Qos(), want[i])
		}
	}
	// The news, published by a member of ops through n2, reach carol.
	publish(t, ac, "public/news", 1, "all quiet")
	if got := news.waitMsgs(t, 1); string(got[0].Payload()) != "all quiet" {
		t.Fatalf("carol got %q", got[0].Payload())
	}
	if got := sink.count(); got != 3 {
		t.Errorf("paho got %d messages, want 3 (once each, whatever the filters)", got)
	}
	// n2: one envelope per message (3 telemetry, 1 news); n1: none.
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if d := counter(t, n2, "pushring_fanout_topic_envelopes_received_total", nil) - n2Before; d != 4 {
			return fmt.Errorf("n2 received %v topic envelopes, want 4", d)
		}
		return nil
	})
	if d := counter(t, n1, "pushring_fanout_topic_envelopes_received_total", nil) - n1Before; d != 0 {
		t.Errorf("n1, no topic subscription, received %v topic envelopes", d)
	}

	// alice-away comes back on n1: the three QoS 1 messages replay.
	back := &received{}
	connect(t, n1, clientOpts{user: "alice", password: alice, clientID: "alice-away", persistent: true}, back)
	var lines []string
	for _, m := range back.waitMsgs(t, 3) {
		lines = append(lines, m.Topic()+" "+string(m.Payload()))
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("alice-away, back on n1, got %q, want %q", lines, want)
	}
	if v := counter(t, n1, "pushring_mqtt_refusals_total", map[string]string{"reason": "subscribe_acl"}) +
		counter(t, n2, "pushring_mqtt_refusals_total", map[string]string{"reason": "subscribe_acl"}); v != 2 {
		t.Errorf("subscribe_acl refusals %v, want 2", v)
	}
}

// TestTopicRulesFileRefused: a rules file that does not parse, or that
// opens a namespace pushring owns, stops the node from starting, with
// the reason.
func TestTopicRulesFileRefused(t *testing.T) {
	for name, body := range map[string]string{
		"not json":  `{"rules": [`,
		"private":   `{"rules": [{"pattern": "/private/+/x", "subscribe": ["all"]}]}`,
		"auth":      `{"rules": [{"pattern": "service/auth", "publish": ["all"]}]}`,
		"bad who":   `{"rules": [{"pattern": "a/b", "publish": ["everyone"]}]}`,
		"wildcard1": `{"rules": [{"pattern": "+/b", "publish": ["all"]}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "rules.json")
			if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			n, err := tryStartNode(t, dir, func(c *Config) { c.TopicRulesFile = f })
			if err == nil {
				n.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), "topic rules file") {
				t.Errorf("error %v", err)
			}
		})
	}
}

// TestTopicRulesV5, on one node with real 5.0 clients: a device
// publishes telemetry with MQTT.js at 5.0 (a topic alias after the
// first message, properties) over TCP; a member of g1 reads it with
// MQTT.js at 5.0 over WebSocket, with the properties; mosquitto at 5.0
// is told 0x87 for the filter and the publish the rules refuse carol.
func TestTopicRulesV5(t *testing.T) {
	sub, pub := needTool(t, "mosquitto_sub"), needTool(t, "mosquitto_pub")
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.json")
	if err := os.WriteFile(rulesFile, []byte(strings.ReplaceAll(clusterRules, "group:ops", "group:g1")), 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, dir, func(c *Config) { c.TopicRulesFile = rulesFile })
	defer n.Close()
	w := setupWorld(t, n)
	alice := w.api.login("alice", passwordOf("alice")).Token
	wait := mqttJS(t, "URL=ws://"+n.HTTPAddr()+"/mqtt", "USERNAME=alice", "PASSWORD="+alice, "CLIENT_ID=alice-js5",
		"FILTER=telemetry/+/#", "COUNT=3", "PROTOCOL_VERSION=5", "SESSION_EXPIRY=300")
	if out := runMQTTJS(t, "publish.js", "URL=mqtt://"+n.MQTTAddr(), "USERNAME=d1", "PASSWORD="+w.d1Key,
		"CLIENT_ID=d1-js5", "TOPIC=telemetry/d1/temp", "COUNT=3"); strings.TrimSpace(out) != "done" {
		t.Fatalf("publish.js: %q", out)
	}
	var want []string
	for i := range 3 {
		want = append(want, fmt.Sprintf(`telemetry/d1/temp %d {"contentType":"text/plain","expiry":true,"user":{"k":"v%d"}}`, i, i))
	}
	if got := wait(); !slices.Equal(got, want) {
		t.Fatalf("MQTT.js 5.0 got\n%q\nwant\n%q", got, want)
	}

	carol := w.api.login("carol", passwordOf("carol")).Token
	host, port, _ := net.SplitHostPort(n.MQTTAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// -d prints the SUBACK's codes: 135 is 0x87, Not authorized.
	out, err := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-C", "1", "-W", "5", "-d",
		"-i", "carol-mosq5", "-u", "carol", "-P", carol, "-t", "telemetry/+/#").CombinedOutput()
	if !strings.Contains(string(out), "Subscribed (mid: 1): 135") || !strings.Contains(string(out), "All subscription requests were denied") {
		t.Fatalf("mosquitto_sub -V mqttv5 on a filter the rules refuse: %v: %q", err, out)
	}
	// The PUBACK says why: 0x87 with the Reason String "topic_acl".
	out, _ = exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1",
		"-i", "carol-mosq5p", "-u", "carol", "-P", carol, "-t", "public/news", "-m", "x").CombinedOutput()
	if !strings.Contains(string(out), "Publish 1 failed: Not authorized.") || !strings.Contains(string(out), "topic_acl") {
		t.Fatalf("mosquitto_pub -V mqttv5 to a topic the rules refuse: %q", out)
	}
}
