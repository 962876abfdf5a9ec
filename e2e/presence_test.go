package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pushring/pushring/internal/testutil"
	"github.com/pushring/pushring/mqtt/mqttc"
)

type groupPresence struct {
	Online       []string `json:"online"`
	Count        int      `json:"count"`
	Complete     bool     `json:"complete"`
	MissingNodes []string `json:"missing_nodes"`
}

type userPresence struct {
	Online   bool     `json:"online"`
	Nodes    []string `json:"nodes"`
	Complete bool     `json:"complete"`
}

// TestPresenceNodeDeath: kill -9 one of three node processes. Presence
// asked at a survivor never names the dead node for anyone: until the
// survivors know it is dead it is reported missing (its clients not
// counted), after that it is not asked. Within the failure-detection
// bound the answer is right again: the clients that reconnected to a
// survivor are online there, and one that did not come back is offline.
// grep "presence:" in a -v log for the times.
func TestPresenceNodeDeath(t *testing.T) {
	c := newCluster(t, 3)
	ms := c.members(9, 0) // reconnect on their own, home first
	via, victim := c.procs[0], c.procs[2]
	pw := memberPassword("lonely")
	c.mustAPI(via, "POST", "/v1/users", map[string]any{"id": "lonely", "password": pw}, nil)
	c.mustAPI(via, "PUT", "/v1/groups/all/members/lonely", nil, nil)
	var login struct {
		Token string `json:"token"`
	}
	req, _ := newLogin(via, "lonely", pw)
	if err := doJSON(req, &login); err != nil {
		t.Fatal(err)
	}
	lonely, err := mqttc.Dial(victim.mqtt, mqttc.Options{ClientID: "lonely", Username: "lonely", Password: login.Token})
	if err != nil {
		t.Fatal(err)
	}
	defer lonely.Abort()

	all := []string{"lonely"}
	for _, m := range ms {
		all = append(all, m.id)
	}
	slices.Sort(all)
	var gp groupPresence
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		c.mustAPI(via, "GET", "/v1/groups/all/presence", nil, &gp)
		if !slices.Equal(gp.Online, all) || !gp.Complete {
			return fmt.Errorf("before the kill: %+v, want all of %v", gp, all)
		}
		return nil
	})
	var up userPresence
	c.mustAPI(via, "GET", "/v1/users/lonely/presence", nil, &up)
	if !up.Online || !slices.Equal(up.Nodes, []string{victim.id}) {
		t.Fatalf("lonely before the kill: %+v", up)
	}

	killed := time.Now()
	victim.cmd.Process.Kill()
	<-victim.exited
	want := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == "lonely" })
	var right time.Duration
	sawMissing := false
	testutil.CheckFor(t, deadBound+5*time.Second, 50*time.Millisecond, func() error {
		c.mustAPI(via, "GET", "/v1/groups/all/presence", nil, &gp)
		if slices.Contains(gp.MissingNodes, victim.id) {
			sawMissing = true
		}
		if !gp.Complete || !slices.Equal(gp.Online, want) {
			return fmt.Errorf("%v after the kill: %+v, want %v, complete", time.Since(killed).Round(time.Millisecond), gp, want)
		}
		right = time.Since(killed)
		return nil
	})
	c.mustAPI(via, "GET", "/v1/users/lonely/presence", nil, &up)
	if up.Online || !up.Complete {
		t.Fatalf("lonely after the kill: %+v", up)
	}
	for _, m := range ms {
		c.mustAPI(via, "GET", "/v1/users/"+m.id+"/presence", nil, &up)
		if !up.Online || slices.Contains(up.Nodes, victim.id) {
			t.Fatalf("%s after the kill: %+v", m.id, up)
		}
	}
	if right > deadBound {
		t.Errorf("presence right %v after the kill, want within %v", right, deadBound)
	}
	t.Logf("presence: right again %v after the kill -9 of %s (bound %v); the dead node was reported missing meanwhile: %v; %d members, %s",
		right.Round(time.Millisecond), victim.id, deadBound, sawMissing, len(all), strings.Join(want, ","))
}
