package node

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
)

// TestQoS2Clients: QoS 2 end to end through real clients on a real node.
// mosquitto_pub (3.1.1) publishes at QoS 2 to a group, mosquitto_sub
// (5.0) and paho (3.1.1), subscribed at QoS 2, get the message once at
// QoS 2; paho publishes at QoS 2 too (its token completes at PUBCOMP).
func TestQoS2Clients(t *testing.T) {
	m := newMosqTest(t, t.TempDir())
	defer m.n.Close()
	sub, pub, n, w, host, port, ctx := m.sub, m.pub, m.n, m.w, m.host, m.port, m.ctx

	alice := w.api.login("alice", passwordOf("alice"))
	out := mosquittoSub(t, ctx, w, "alice", "/private/alice probe", sub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "2",
		"-i", "alice-q2", "-u", "alice", "-P", alice.Token, "-t", "/group/g1", "-t", "/private/alice", "-F", "%q %t %p")
	bob := w.api.login("bob", passwordOf("bob"))
	sink := &received{}
	b := connect(t, n, clientOpts{user: "bob", password: bob.Token}, nil)
	if code := subscribe(t, b, "/private/bob/#", 2, sink); code != 2 {
		t.Fatalf("SUBACK %d", code)
	}

	if res, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv311", "-q", "2",
		"-i", "d1-q2", "-u", "d1", "-P", w.d1Key, "-t", "/group/g1", "-m", "exactly once").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub -q 2: %v: %s", err, res)
	}
	d := connect(t, n, clientOpts{user: "d1", password: w.d1Key}, nil)
	if tok := d.Publish("/group/g1", 2, false, "from paho"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("paho QoS 2 publish: %v", tok.Error())
	}
	testutil.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !out.Contains("from paho") {
			return fmt.Errorf("mosquitto_sub: %q", outputLines(out))
		}
		return nil
	})
	want := "2 /group/g1 exactly once\n2 /group/g1 from paho"
	if got := strings.Join(outputLines(out), "\n"); got != want {
		t.Fatalf("mosquitto_sub -q 2 got\n%s\nwant\n%s", got, want)
	}
	if got := sink.flagged(t, 2); strings.Join(got, "|") != "L /private/bob/group/g1 exactly once|L /private/bob/group/g1 from paho" {
		t.Fatalf("paho got %q", got)
	}
	for _, m := range sink.waitMsgs(t, 2) {
		if m.Qos() != 2 {
			t.Fatalf("paho got QoS %d", m.Qos())
		}
	}
	if v := counter(t, n, "pushring_deliveries_total", map[string]string{"qos": "2"}); v != 4 {
		t.Fatalf("QoS 2 deliveries %v, want 4", v)
	}
}
