package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushring/pushring/client"
	"github.com/pushring/pushring/internal/chaos"
)

// ChaosConfig is the chaos scenario: durable QoS 1 group and direct
// traffic over a cluster of pushring nodes on three NATS servers while a
// fault schedule kills, stops and restarts them.
type ChaosConfig struct {
	Bin     string   // the pushring binary
	NATSBin string   // the nats-server binary
	Extra   []string // extra flags for every node
	Nodes   int
	Members int // persistent member devices of the one group
	// GroupRate and DirectRate are the two publishers' messages a second.
	GroupRate, DirectRate float64
	// Duration is the traffic's length from its start (the schedule's
	// clock); it runs at least chaosTail past the last step's end.
	Duration time.Duration
	// Settle is the longest wait, after the traffic, for every
	// acknowledged message to reach its recipients.
	Settle time.Duration
	Faults []chaos.Fault
	Log    func(format string, args ...any)
}

// chaosTail is the traffic after the last step of the schedule: the
// recovery from it is measured too.
const chaosTail = 5 * time.Second

// ChaosReport is the chaos row's own part of the JSON.
type ChaosReport struct {
	Schedule []chaos.Fault  `json:"schedule"`
	Events   []chaos.Event  `json:"events"`
	Windows  []chaos.Window `json:"windows"`
	Total    chaos.Window   `json:"total"`
	// NATSServers is the size of the NATS cluster (JetStream R3).
	NATSServers int     `json:"nats_servers"`
	DirectRate  float64 `json:"direct_rate"` // direct messages/s (the row's Rate is the group's)
	TrafficS    float64 `json:"traffic_s"`
	SettledS    float64 `json:"settled_s"` // from the end of the traffic until nothing was missing (or Settle)
	// Reconnects of the two publishers, and member reconnects whose
	// CONNACK said the session was not present.
	GroupPublisherReconnects  int `json:"group_publisher_reconnects"`
	DirectPublisherReconnects int `json:"direct_publisher_reconnects"`
	SessionsNotPresent        int `json:"sessions_not_present"`
	// Counters of every node at the end (since its last start).
	NodeCounters map[string]map[string]float64 `json:"node_counters,omitempty"`
}

// chaosCounters are the node metrics the report lists at the end: what
// the durable paths did.
var chaosCounters = []string{"pushring_fanout_resent_total", "pushring_fanout_ack_timeouts_total", "pushring_session_replays_total",
	"pushring_session_replayed_total", "pushring_queue_dropped_total", "pushring_fanout_withhold_timeouts_total",
	"pushring_session_kicked_total", "pushring_journal_store_errors_total"}

// RunChaos runs the chaos scenario and returns its row.
func RunChaos(ctx context.Context, cfg ChaosConfig) (res Result) {
	res = Result{System: "pushring-chaos", Scenario: "chaos", QoS: 1, Groups: 1, Members: cfg.Members, Devices: 2,
		Rate: cfg.GroupRate, Nodes: cfg.Nodes}
	logf := cfg.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	fail := func(err error) Result { res.Error = err.Error(); return res }
	t0 := time.Now()
	dir, err := os.MkdirTemp("", "pushbench-chaos-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	adminKey := randHex(32)
	cc, err := chaos.Start(chaos.Config{Bin: cfg.Bin, NATSBin: cfg.NATSBin, Dir: dir, AdminKey: adminKey, Nodes: cfg.Nodes,
		Flags: append([]string{"--connect-rate", "-1", "--login-rate", "-1", "--publish-rate", "-1", "--publish-bytes-rate", "-1",
			"--log-level", "warn"}, cfg.Extra...)})
	if cc != nil {
		defer cc.Stop()
	}
	if err != nil {
		return fail(fmt.Errorf("start: %w", err))
	}
	apis := map[string]*Pushring{}
	for _, nd := range cc.Nodes {
		apis[nd.ID] = NewPushring(nd.MQTT, "http://"+nd.HTTP, adminKey, 0)
	}
	logf("chaos: %d nodes on 3 NATS servers up in %.1f s", cfg.Nodes, time.Since(t0).Seconds())

	// Setup through n1: one group, its members, two publisher devices; then
	// each client's home (GET /v1/route), its first address to dial.
	n1 := apis[cc.Nodes[0].ID]
	plan, err := setupChaos(ctx, n1, cfg.Members)
	if err != nil {
		return fail(fmt.Errorf("setup: %w", err))
	}
	gid := strings.TrimPrefix(plan.Publishers[0].Topic, "/group/")
	routes := make([]string, len(plan.Members)+2)
	if err := parallel(ctx, len(routes), 16, func(ctx context.Context, i int) error {
		c := plan.Publishers[max(0, i-len(plan.Members))]
		if i < len(plan.Members) {
			c = plan.Members[i]
		}
		return retry(ctx, func() error {
			r, err := n1.api.Route(ctx, c.ID)
			if err == nil {
				routes[i] = r.HomeNode().ID
			}
			return err
		})
	}); err != nil {
		return fail(fmt.Errorf("route: %w", err))
	}
	res.SetupS = time.Since(t0).Seconds()
	logf("chaos: set up %d member devices and 2 publishers in %.1f s (with the processes' start)", len(plan.Members), res.SetupS)

	epoch := time.Now()
	members := make([]*chaos.Member, len(plan.Members))
	homes := map[string]int{}
	for i, c := range plan.Members {
		members[i] = chaos.NewMember(c.ID, i, len(plan.Members), epoch)
		members[i].Run(cc.MQTTAddrs(routes[i]), session(c), c.Filter)
		homes[routes[i]]++
	}
	defer func() {
		var wg sync.WaitGroup
		for _, m := range members {
			wg.Go(m.Stop)
		}
		wg.Wait()
	}()
	// Warm-up: group messages through n1 until every member got one: the
	// sessions, subscriptions and routes are in place.
	k := 0
	if err := chaos.WaitFor(60*time.Second, 200*time.Millisecond, func() error {
		if ctx.Err() != nil {
			return chaos.GiveUp{Err: ctx.Err()}
		}
		for _, m := range members {
			if !m.Warm() {
				if _, err := n1.api.PublishGroup(ctx, gid, client.Payload{Text: "w " + strconv.Itoa(k), QoS: 1}); err != nil {
					return err
				}
				k++
				return fmt.Errorf("%s has no warm-up message yet", m.ID)
			}
		}
		return nil
	}); err != nil {
		return fail(fmt.Errorf("warm-up: %w", err))
	}
	res.Connections = len(members) + 2
	res.ConnectS = time.Since(epoch).Seconds()
	logf("chaos: %d members connected and warm in %.1f s, homed %v", len(members), res.ConnectS, homes)

	// Traffic.
	every := func(rate float64) time.Duration { return time.Duration(float64(time.Second) / rate) }
	gp, dp := plan.Publishers[0], plan.Publishers[1]
	group := &chaos.Publisher{Session: session(gp), Addrs: cc.MQTTAddrs(routes[len(plan.Members)]), Every: every(cfg.GroupRate), Epoch: epoch,
		Message: func(seq int) (string, []byte) { return gp.Topic, []byte("g " + strconv.Itoa(seq)) }}
	direct := &chaos.Publisher{Session: session(dp), Addrs: cc.MQTTAddrs(routes[len(plan.Members)+1]), Every: every(cfg.DirectRate), Epoch: epoch,
		Message: func(seq int) (string, []byte) {
			return "/private/" + plan.Members[chaos.DirectTarget(seq, len(plan.Members))].ID, []byte("d " + strconv.Itoa(seq))
		}}
	stopTraffic := chaos.StartTraffic(10*time.Second, group, direct)
	defer stopTraffic()
	// The schedule's clock starts once both publishers had a PUBACK.
	if err := chaos.WaitFor(30*time.Second, 10*time.Millisecond, func() error { return chaos.Publishing(group, direct) }); err != nil {
		return fail(fmt.Errorf("traffic: %w", err))
	}
	start := time.Now()
	rep := &ChaosReport{Schedule: cfg.Faults, NATSServers: len(cc.NATS), DirectRate: cfg.DirectRate}
	res.Chaos = rep

	// Faults: a timetable; a step waits for the one before it.
	events, stepErr := chaos.Play(ctx, start, cfg.Faults, cc.Apply, func(ev chaos.Event) {
		logf("chaos: %s %s (%s) at %.1f s, done at %.1f s %s%s", ev.Action, ev.Target, ev.Resolved, ev.Began.Seconds(), ev.End.Seconds(), ev.Note, ev.Error)
	})
	rep.Events = events
	end := cfg.Duration
	if len(events) > 0 {
		end = max(end, events[len(events)-1].End+chaosTail)
	}
	sleepCtx(ctx, time.Until(start.Add(end)))
	trafficEnd := time.Since(epoch)
	stopTraffic()
	rep.TrafficS = time.Since(start).Seconds()

	// Settle: everything acknowledged delivered, or cfg.Settle passed.
	grecs, drecs := group.Records(), direct.Records()
	rep.SettledS = chaos.Settle(ctx.Done(), cfg.Settle, members, grecs, drecs).Seconds()

	// Report.
	startD := start.Sub(epoch)
	wins := chaos.Windows(events, startD, trafficEnd)
	total := chaos.Analyze(members, grecs, drecs, wins)
	for _, w := range wins {
		w.Finish(startD)
		rep.Windows = append(rep.Windows, *w)
	}
	total.Finish(startD)
	rep.Total = *total
	rep.GroupPublisherReconnects, rep.DirectPublisherReconnects = group.Reconnects(), direct.Reconnects()
	for _, m := range members {
		rep.SessionsNotPresent += m.History().NotPresent
	}
	rep.NodeCounters = map[string]map[string]float64{}
	for _, nd := range cc.Nodes {
		if !nd.Up() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if m, err := apis[nd.ID].scrapeCounters(cctx, chaosCounters); err == nil {
			rep.NodeCounters[nd.ID] = m
		}
		cancel()
	}
	res.Sent = uint64(total.GroupAcked + total.DirectAcked)
	res.Deliveries = uint64(total.Got)
	res.Lost, res.Duplicates = uint64(total.Lost), uint64(total.Duplicates)
	res.DurationS = rep.TrafficS
	res.Note = fmt.Sprintf("%d nodes on %d NATS servers (JetStream R3); %d persistent member devices of one group (homes %s), "+
		"a group publisher at %g msg/s and a direct publisher at %g msg/s (to %d members in turn), QoS 1; "+
		"the group publisher homed on %s, the direct one on %s; every member and device reconnects through its home node first, then the nodes after it in turn",
		cfg.Nodes, len(cc.NATS), len(members), homesString(homes), cfg.GroupRate, cfg.DirectRate, min(chaos.DirectTargets, len(members)),
		routes[len(plan.Members)], routes[len(plan.Members)+1])
	if stepErr != nil && ctx.Err() == nil {
		res.Note += "; the schedule stopped: " + stepErr.Error()
	}
	if ctx.Err() != nil {
		res.Error = "interrupted"
	}
	return res
}

// session is the MQTT session of a device of the plan.
func session(c Client) chaos.Session {
	return chaos.Session{ClientID: c.ID, Username: c.Username, Password: c.Password}
}

// setupChaos creates, under a per-run prefix, one group, members member
// devices and two publisher devices of it, through s. A membership is
// tried again for a while: on R3 buckets a read right after a write (of
// the device, of the group) may reach a replica that has not applied it
// yet, and answer 404.
func setupChaos(ctx context.Context, s *Pushring, members int) (*FanoutPlan, error) {
	prefix := "pbc" + randHex(3) + "-"
	gid := prefix + "all"
	plan := &FanoutPlan{Members: make([]Client, members), Publishers: make([]Client, 2)}
	if _, err := s.api.CreateGroup(ctx, gid, false); err != nil {
		return nil, err
	}
	device := func(ctx context.Context, id string, publisher bool) (Client, error) {
		d, err := s.api.CreateDevice(ctx, id)
		if err != nil {
			return Client{}, err
		}
		c := Client{ID: id, Username: id, Password: d.Key, Filter: "/private/" + id + "/#"}
		err = retry(ctx, func() error {
			if publisher {
				c.Topic = "/group/" + gid
				_, err = s.api.SetPublisher(ctx, gid, id, true)
			} else {
				_, err = s.api.SetMember(ctx, gid, id, true)
			}
			return err
		})
		return c, err
	}
	err := parallel(ctx, members+2, 16, func(ctx context.Context, i int) error {
		var err error
		if i < members {
			plan.Members[i], err = device(ctx, fmt.Sprintf("%sm%03d", prefix, i), false)
		} else {
			plan.Publishers[i-members], err = device(ctx, fmt.Sprintf("%sp%d", prefix, i-members), true)
		}
		return err
	})
	return plan, err
}

func homesString(h map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(h)) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, h[k]))
	}
	return strings.Join(parts, " ")
}

// retry calls fn until it succeeds, for up to 10 s: on R3 buckets a read
// right after a write may reach a replica that has not applied it yet.
func retry(ctx context.Context, fn func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WriteChaosTable prints the chaos row: one line per window and the
// total, then the schedule as it ran and the nodes' counters.
func (r *Report) WriteChaosTable(out io.Writer) {
	tw := newTable(out)
	fmt.Fprintln(tw, "window\tfrom s\tto s\tgroup acked\tdirect acked\texpected\tgot\tlost\tdups\tout of order\tdisconnected\treconnect→delivery p50 ms\tmax ms\tnever\tsilence max ms\t")
	r1 := func(p *float64) string { return optf(p, "%.0f") }
	var notes []string
	for _, x := range r.Results {
		if x.Error != "" && x.Chaos == nil {
			fmt.Fprintf(tw, "%s\tfailed\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", x.System)
			continue
		}
		if x.Chaos == nil {
			continue
		}
		row := func(w *chaos.Window) {
			from, to := fmt.Sprintf("%.1f", w.FromS), fmt.Sprintf("%.1f", w.ToS)
			if w.Name == "total" {
				from, to = "", fmt.Sprintf("%.1f", x.Chaos.TrafficS)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%.0f\t\n", w.Name, from, to, w.GroupAcked, w.DirectAcked,
				w.Expected, w.Got, w.Lost, w.Duplicates, w.OutOfOrder, w.Disconnected, r1(w.ReconnectFirstP50ms), r1(w.ReconnectFirstMaxms), w.Never, w.SilenceMaxms)
		}
		for i := range x.Chaos.Windows {
			row(&x.Chaos.Windows[i])
		}
		row(&x.Chaos.Total)
		c := x.Chaos
		for _, ev := range c.Events {
			s := fmt.Sprintf("step %s:%s:%s → %s, began %.1f s, done %.1f s", fmtSeconds(ev.At), ev.Action, ev.Target, ev.Resolved, ev.Began.Seconds(), ev.End.Seconds())
			if ev.Note != "" {
				s += ": " + ev.Note
			}
			if ev.Error != "" {
				s += ": FAILED: " + ev.Error
			}
			notes = append(notes, s)
		}
		t := c.Total
		notes = append(notes, fmt.Sprintf("total: %d group messages made, %d acknowledged; %d direct made, %d acknowledged; lost %d (group %d, direct %d), %d duplicates, %d out of order, %d strays; "+
			"settled %.1f s after the traffic; publishers reconnected %d (group) and %d (direct) times; %d member reconnects found no session",
			t.GroupMade, t.GroupAcked, t.DirectMade, t.DirectAcked, t.Lost, t.LostGroup, t.LostDirect, t.Duplicates, t.OutOfOrder, t.Strays,
			c.SettledS, c.GroupPublisherReconnects, c.DirectPublisherReconnects, c.SessionsNotPresent))
		for _, id := range slices.Sorted(maps.Keys(c.NodeCounters)) {
			var parts []string
			for _, name := range chaosCounters {
				if v, ok := c.NodeCounters[id][name]; ok {
					parts = append(parts, fmt.Sprintf("%s=%.0f", strings.TrimPrefix(name, "pushring_"), v))
				}
			}
			notes = append(notes, fmt.Sprintf("counters of %s (since its last start): %s", id, strings.Join(parts, " ")))
		}
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(out, n)
	}
	writeNotes(out, r.Results)
}

func fmtSeconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s" }
