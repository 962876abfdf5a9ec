package node

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/store"
)

// TestQoS1SlowMembersLoseNothing (no losses at QoS 1): a device publishes
// QoS 1 messages as fast as its window of 16 allows into a group whose
// members read slowly, with session queues of only 100 messages. Without
// flow control the publisher runs ahead (its PUBACK meant "handed to
// NATS") and the queues drop their oldest messages; with it the PUBACK
// waits until every home node has the message queued under the hold mark,
// so every member gets every message, in order, and nothing is dropped.
// The test also checks that backpressure did engage (confirmations were
// held), so it cannot pass just because the members kept up.
func TestQoS1SlowMembersLoseNothing(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) {
			testSlowMembers(t, nodes)
		})
	}
}

func testSlowMembers(t *testing.T, nodes int) {
	const members, msgs = 12, 1500
	tc := startClusterWith(t, nodes, func(c *Config) {
		c.Router.MaxQueued = 100
		c.Router.MaxInflight = 8
	})
	ctx := context.Background()
	st := tc.nodes[0].dir
	if err := st.CreateGroup(ctx, store.Group{ID: "slow"}); err != nil {
		t.Fatal(err)
	}
	boxes := map[string]*inbox{}
	homes := map[string]int{}
	for i := range members {
		id := fmt.Sprintf("m%02d", i)
		token := tc.user(t, id)
		if err := st.SetRole(ctx, "slow", id, store.Member, true); err != nil {
			t.Fatal(err)
		}
		home := tc.nodes[0].cluster.Home(id)
		homes[home]++
		boxes[id] = &inbox{}
		listenSlow(t, tc.byID(home).MQTTAddr(), id, token, boxes[id], 300*time.Microsecond)
	}
	if len(homes) != nodes {
		t.Fatalf("members' homes %v: want all %d nodes", homes, nodes)
	}
	key := tc.device(t, "sensor")
	if err := st.SetRole(ctx, "slow", "sensor", store.Publisher, true); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		for _, n := range tc.nodes {
			if got := len(n.dir.Members("slow")); got != members {
				return fmt.Errorf("%s knows %d members", n.cfg.NodeID, got)
			}
		}
		return nil
	})

	ingress := tc.byID(tc.nodes[0].cluster.Home("sensor"))
	dev, err := mqttc.Dial(ingress.MQTTAddr(), mqttc.Options{ClientID: "sensor", Username: "sensor", Password: key, Inflight: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	go dev.Run(nil)
	done := make(chan struct{})
	defer close(done)
	for i := range msgs {
		if !dev.Publish("/group/slow", 1, []byte(strconv.Itoa(i)), done) {
			t.Fatalf("publisher connection closed after %d messages", i)
		}
		if i%8 == 7 {
			dev.Flush()
		}
	}
	dev.Flush()

	testutil.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		for id, b := range boxes {
			if n := len(b.list()); n < msgs {
				return fmt.Errorf("%s has %d of %d", id, n, msgs)
			}
		}
		return nil
	})
	for id, b := range boxes {
		got := b.list()
		if len(got) != msgs {
			t.Fatalf("%s got %d messages, want %d", id, len(got), msgs)
		}
		for i, m := range got {
			if want := "/private/" + id + "/group/slow " + strconv.Itoa(i); m != want {
				t.Fatalf("%s: message %d is %q, want %q (lost, duplicated or out of order)", id, i, m, want)
			}
		}
	}
	var held, withholdTimeouts, ackTimeouts, dropped uint64
	for _, n := range tc.nodes {
		fs, rs := n.fan.Stats(), n.router.Stats()
		held += fs.AcksWithheld
		withholdTimeouts += fs.WithholdTimeouts
		ackTimeouts += fs.AckTimeouts
		dropped += rs.QueueDropped
	}
	t.Logf("%d nodes, homes %v: %d confirmations withheld, %d withhold timeouts, %d ack timeouts, %d dropped",
		nodes, homes, held, withholdTimeouts, ackTimeouts, dropped)
	if dropped != 0 {
		t.Errorf("%d messages dropped from session queues", dropped)
	}
	if held == 0 {
		t.Errorf("no confirmation was held: the members kept up, so this run did not test backpressure")
	}
	if ackTimeouts != 0 {
		t.Errorf("%d publishes acknowledged by timeout", ackTimeouts)
	}
	if s := ingress.fan.Stats(); s.Waiting != 0 {
		t.Errorf("%d publishes still waiting at the ingress", s.Waiting)
	}
}
