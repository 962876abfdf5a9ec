package node

import (
	"context"
	"time"

	"github.com/pushring/pushring/api"
	"github.com/pushring/pushring/fanout"
	"github.com/pushring/pushring/membership"
	"github.com/pushring/pushring/router"
	"github.com/pushring/pushring/store"
)

// presenceWait bounds a presence query: a live node that has not
// answered by then (it died, and the failure detector has not said so
// yet) is reported missing, its clients not counted.
const presenceWait = time.Second

// connectedHere answers presence queries for this node: the router's
// connected sessions, a group's members from the directory.
type connectedHere struct {
	r   *router.Server
	dir *store.Directory
}

var _ fanout.PresenceSource = connectedHere{}

func (c connectedHere) Connected(group string, ids []string, max int) ([]string, int) {
	if group != "" {
		ids = c.dir.Members(group)
	}
	return c.r.Connected(ids, max)
}

// clusterPresence asks every live node, through the fanout's envelopes.
type clusterPresence struct {
	fan     *fanout.Fanout
	cluster *membership.Cluster
}

var _ api.Presence = clusterPresence{}

func (p clusterPresence) Online(ctx context.Context, group string, ids []string) api.Online {
	ctx, cancel := context.WithTimeout(ctx, presenceWait)
	defer cancel()
	var nodes []string
	for _, n := range p.cluster.Nodes() {
		nodes = append(nodes, n.ID)
	}
	r := p.fan.Presence(ctx, nodes, group, ids)
	out := api.Online{ByNode: make(map[string][]string, len(r.Answers)), Counts: make(map[string]int, len(r.Answers)), Missing: r.Missing}
	for node, a := range r.Answers {
		out.ByNode[node], out.Counts[node] = a.Connected, a.Count
	}
	return out
}
