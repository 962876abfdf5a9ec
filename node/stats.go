package node

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pushring/pushring/api"
	"github.com/pushring/pushring/router"
)

// Cluster statistics for the console: every node writes a sample of its
// own figures every statsEvery into the records' bucket, under
// "n.<node>", with a time to live of a few intervals (a dead node's
// sample goes by itself), and watches everyone's.
const (
	statsEvery = 2 * time.Second
	statsTTL   = 5 * statsEvery
	statsKey   = "n."
)

type clusterStats struct {
	self    string
	js      jetstream.JetStream
	subject string // "$KV.<bucket>.n."
	r       *router.Server
	reg     prometheus.Gatherer
	log     *slog.Logger

	mu      sync.Mutex
	samples map[string]sample
	prev    api.NodeStats // this node's last sample
}

// sample is a node's figures and when this node got them (its own
// clock: another node's may be off).
type sample struct {
	api.NodeStats
	got time.Time
}

// run samples and watches until ctx ends.
func (s *clusterStats) run(ctx context.Context, kv jetstream.KeyValue) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.watch(ctx, kv)
	}()
	defer wg.Wait()
	t := time.NewTicker(statsEvery)
	defer t.Stop()
	for {
		s.publish(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *clusterStats) watch(ctx context.Context, kv jetstream.KeyValue) {
	for ctx.Err() == nil {
		w, err := kv.Watch(ctx, statsKey+">")
		if err != nil {
			s.log.Debug("cluster statistics: watch failed, again shortly", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(statsEvery):
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			node := strings.TrimPrefix(e.Key(), statsKey)
			var st api.NodeStats
			s.mu.Lock()
			if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &st) == nil && st.Node == node {
				s.samples[node] = sample{st, time.Now()}
			} else {
				delete(s.samples, node)
			}
			s.mu.Unlock()
		}
		w.Stop()
	}
}

// sample takes this node's figures now.
func (s *clusterStats) sample() api.NodeStats {
	rs := s.r.Stats()
	now := time.Now().UTC()
	st := api.NodeStats{Node: s.self, Time: now, Connections: rs.Connections, Sessions: rs.Sessions,
		MessagesIn: rs.MessagesIn, Deliveries: rs.Deliveries, Refusals: map[string]uint64{}}
	if p := s.prev; !p.Time.IsZero() {
		if dt := now.Sub(p.Time).Seconds(); dt > 0 {
			st.MessagesInPerSec = float64(rs.MessagesIn-p.MessagesIn) / dt
			st.DeliveriesPerSec = float64(rs.Deliveries-p.Deliveries) / dt
		}
	}
	s.prev = st
	mfs, _ := s.reg.Gather()
	for _, mf := range mfs {
		var prefix, label string
		switch mf.GetName() {
		case "pushring_mqtt_refusals_total":
			prefix, label = "mqtt:", "reason"
		case "pushring_mqtt_connects_total":
			prefix, label = "mqtt:connect_", "result"
		case "pushring_http_errors_total":
			prefix, label = "http:", "code"
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			v := uint64(m.GetCounter().GetValue())
			for _, l := range m.GetLabel() {
				if l.GetName() == label && v > 0 && l.GetValue() != "accepted" && l.GetValue() != "redirected" {
					st.Refusals[prefix+l.GetValue()] += v
				}
			}
		}
	}
	return st
}

func (s *clusterStats) publish(ctx context.Context) {
	st := s.sample()
	data, _ := json.Marshal(st)
	pctx, cancel := context.WithTimeout(ctx, statsEvery)
	defer cancel()
	if _, err := s.js.PublishMsg(pctx, &nats.Msg{Subject: s.subject + s.self, Data: data}, jetstream.WithMsgTTL(statsTTL)); err != nil {
		s.log.Debug("cluster statistics: sample not written", "err", err)
	}
	s.mu.Lock()
	s.samples[s.self] = sample{st, time.Now()} // shown here at once, whatever the store does
	s.mu.Unlock()
}

// list returns the samples got within statsTTL, by node.
func (s *clusterStats) list() []api.NodeStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]api.NodeStats, 0, len(s.samples))
	for node, st := range s.samples {
		if time.Since(st.got) < statsTTL {
			out = append(out, st.NodeStats)
		} else {
			delete(s.samples, node) // a node gone
		}
	}
	slices.SortFunc(out, func(a, b api.NodeStats) int { return strings.Compare(a.Node, b.Node) })
	return out
}
