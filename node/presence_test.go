package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
	"github.com/pushring/pushring/store"
)

type userPresence struct {
	ID           string   `json:"id"`
	Online       bool     `json:"online"`
	Nodes        []string `json:"nodes"`
	Complete     bool     `json:"complete"`
	MissingNodes []string `json:"missing_nodes"`
}

type groupPresence struct {
	ID           string   `json:"id"`
	Online       []string `json:"online"`
	Count        int      `json:"count"`
	Truncated    bool     `json:"truncated"`
	Complete     bool     `json:"complete"`
	MissingNodes []string `json:"missing_nodes"`
}

// TestPresenceAcrossCluster: on 3 nodes, a group's presence asked at n1
// lists the members connected to n2 and n3 (not one whose persistent
// session is offline), a user's names the node she is on, and a
// disconnect shows at once.
func TestPresenceAcrossCluster(t *testing.T) {
	tc := startCluster(t, 3)
	ctx := context.Background()
	st := tc.nodes[0].dir
	if err := st.CreateGroup(ctx, store.Group{ID: "g"}); err != nil {
		t.Fatal(err)
	}
	toks := map[string]string{}
	for _, id := range []string{"alice", "bob", "carol", "dave"} {
		toks[id] = tc.user(t, id)
		if id != "dave" {
			if err := st.SetRole(ctx, "g", id, store.Member, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	tc.waitMembers(t, "g", 3)
	dial := func(n *Node, id string, persistent bool) *mqttc.Conn {
		c, err := mqttc.Dial(n.MQTTAddr(), mqttc.Options{ClientID: id + "-p", Username: id, Password: toks[id], Persistent: persistent})
		if err != nil {
			t.Fatalf("%s at %s: %v", id, n.cfg.NodeID, err)
		}
		t.Cleanup(func() { c.Abort() })
		return c
	}
	alice := dial(tc.nodes[1], "alice", false)
	dial(tc.nodes[2], "bob", false)
	dial(tc.nodes[2], "dave", false) // no member
	dial(tc.nodes[0], "carol", true).Close()

	api := newAPI(t, tc.nodes[0])
	admin := "Bearer cluster-admin-key"
	// carol's DISCONNECT is handled on the node's own time: wait for it.
	var gp groupPresence
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		api.must(200, "GET", "/v1/groups/g/presence", admin, nil, &gp)
		if !slices.Equal(gp.Online, []string{"alice", "bob"}) || gp.Count != 2 || !gp.Complete || len(gp.MissingNodes) != 0 {
			return fmt.Errorf("g's presence: %+v", gp)
		}
		return nil
	})
	var up userPresence
	api.must(200, "GET", "/v1/users/alice/presence", "Bearer "+toks["bob"], nil, &up)
	if !up.Online || !slices.Equal(up.Nodes, []string{"n2"}) || !up.Complete {
		t.Fatalf("alice's presence: %+v", up)
	}
	alice.Close()
	testutil.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		api.must(200, "GET", "/v1/users/alice/presence", admin, nil, &up)
		if up.Online {
			return fmt.Errorf("alice still online after her DISCONNECT: %+v", up)
		}
		return nil
	})
}
