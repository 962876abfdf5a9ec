package bench

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushring/pushring/client"
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
	Faults []Fault
	Log    func(format string, args ...any)
}

// chaosTail is the traffic after the last step of the schedule: the
// recovery from it is measured too.
const chaosTail = 5 * time.Second

// chaosDirectTargets is how many members get direct messages, in turn
// (spread evenly over the members): each gets enough to check their order.
const chaosDirectTargets = 30

// ChaosWindow is a stretch of a chaos run: before the first fault
// ("steady"), or from a fault (kill9, term, stop) to the next one; the
// restarts and continues in between belong to it. Messages count in the
// window they were made in: one made just before a fault and lost by it
// counts in the window before.
type ChaosWindow struct {
	Name  string  `json:"name"`
	FromS float64 `json:"from_s"` // since the traffic started
	ToS   float64 `json:"to_s"`
	Fault bool    `json:"fault"`

	GroupMade   int `json:"group_made"`
	GroupAcked  int `json:"group_acked"` // PUBACKed: owed to every member
	DirectMade  int `json:"direct_made"`
	DirectAcked int `json:"direct_acked"`
	// Expected member deliveries of the acknowledged messages, those that
	// came (at least once), those that never did, extra copies, and first
	// deliveries that came after a later message of the same publisher.
	Expected   int `json:"expected"`
	Got        int `json:"got"`
	Lost       int `json:"lost"`
	LostGroup  int `json:"lost_group"`
	LostDirect int `json:"lost_direct"`
	Duplicates int `json:"duplicates"`
	OutOfOrder int `json:"out_of_order"`
	Strays     int `json:"strays,omitempty"` // deliveries to the wrong member, or unreadable

	// Members whose connection broke in the window, and for them the time
	// from the fault to their first delivery after they reconnected; Never:
	// those that got none before the end.
	Disconnected        int      `json:"disconnected"`
	ReconnectFirstP50ms *float64 `json:"reconnect_first_delivery_p50_ms,omitempty"`
	ReconnectFirstMaxms *float64 `json:"reconnect_first_delivery_max_ms,omitempty"`
	Never               int      `json:"never_delivered,omitempty"`
	// The longest a member went without a group message in the window
	// (max and median over the members).
	SilenceMaxms float64 `json:"silence_max_ms"`
	SilenceP50ms float64 `json:"silence_p50_ms"`

	firsts, silences []time.Duration
	from, to         time.Duration // since the epoch
}

// ChaosReport is the chaos row's own part of the JSON.
type ChaosReport struct {
	Schedule []Fault       `json:"schedule"`
	Events   []FaultEvent  `json:"events"`
	Windows  []ChaosWindow `json:"windows"`
	Total    ChaosWindow   `json:"total"`
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
	cc, err := startChaosCluster(cfg.Bin, cfg.NATSBin, cfg.Nodes, cfg.Extra)
	if err != nil {
		return fail(fmt.Errorf("start: %w", err))
	}
	defer cc.stop()
	logf("chaos: %d nodes on 3 NATS servers up in %.1f s", cfg.Nodes, time.Since(t0).Seconds())

	// Setup through n1: one group, its members, two publisher devices; then
	// each client's home (GET /v1/route), its first address to dial.
	n1 := cc.nodes[0].api
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
	step := max(1, len(plan.Members)/min(chaosDirectTargets, len(plan.Members)))
	nTargets := min(chaosDirectTargets, len(plan.Members))
	target := func(seq int) int { return seq % nTargets * step }
	members := make([]*chaosMember, len(plan.Members))
	homes := map[string]int{}
	for i, c := range plan.Members {
		m := &chaosMember{idx: i, c: c, addrs: cc.mqttAddrs(routes[i]), epoch: epoch,
			direct: "/private/" + c.ID, groupPrefix: "/private/" + c.ID + "/group/"}
		m.isTarget = func(seq int) bool { return target(seq) == m.idx }
		members[i] = m
		homes[routes[i]]++
	}
	for _, m := range members {
		m.start()
	}
	defer func() {
		var wg sync.WaitGroup
		for _, m := range members {
			wg.Go(m.stop)
		}
		wg.Wait()
	}()
	// Warm-up: group messages through n1 until every member got one: the
	// sessions, subscriptions and routes are in place.
	k := 0
	if err := waitFor(60*time.Second, 200*time.Millisecond, func() error {
		if ctx.Err() != nil {
			return giveUp{ctx.Err()}
		}
		for _, m := range members {
			if !m.isWarm() {
				if _, err := n1.api.PublishGroup(ctx, gid, client.Payload{Text: "w " + strconv.Itoa(k), QoS: 1}); err != nil {
					return err
				}
				k++
				return fmt.Errorf("%s has no warm-up message yet", m.c.ID)
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
	group := &chaosPublisher{c: gp, addrs: cc.mqttAddrs(routes[len(plan.Members)]), every: every(cfg.GroupRate), epoch: epoch,
		message: func(seq int) (string, []byte) { return gp.Topic, []byte("g " + strconv.Itoa(seq)) }}
	direct := &chaosPublisher{c: dp, addrs: cc.mqttAddrs(routes[len(plan.Members)+1]), every: every(cfg.DirectRate), epoch: epoch,
		message: func(seq int) (string, []byte) {
			return "/private/" + plan.Members[target(seq)].ID, []byte("d " + strconv.Itoa(seq))
		}}
	pubs := []*chaosPublisher{group, direct}
	for _, p := range pubs {
		p.start()
	}
	stopTraffic := sync.OnceFunc(func() {
		var wg sync.WaitGroup
		for _, p := range pubs {
			wg.Go(func() { p.finish(10 * time.Second) })
		}
		wg.Wait()
	})
	defer stopTraffic()
	// The schedule's clock starts once both publishers had a PUBACK.
	if err := waitFor(30*time.Second, 10*time.Millisecond, func() error {
		for _, p := range pubs {
			if !p.acked() {
				return fmt.Errorf("%s has no PUBACK yet", p.c.ID)
			}
		}
		return nil
	}); err != nil {
		return fail(fmt.Errorf("traffic: %w", err))
	}
	start := time.Now()
	rep := &ChaosReport{Schedule: cfg.Faults, NATSServers: len(cc.nats), DirectRate: cfg.DirectRate}
	res.Chaos = rep

	// Faults: a timetable; a step waits for the one before it.
	var events []FaultEvent
	var stepErr error
	for _, f := range cfg.Faults {
		if wait := f.At - time.Since(start); wait > 0 {
			sleepCtx(ctx, wait)
		}
		if ctx.Err() != nil {
			break
		}
		ev := FaultEvent{Fault: f, BeganS: time.Since(start).Seconds()}
		var err error
		ev.Resolved, ev.Note, err = cc.apply(f)
		ev.EndS = time.Since(start).Seconds()
		if err != nil {
			ev.Error = err.Error()
		}
		logf("chaos: %s %s (%s) at %.1f s, done at %.1f s %s%s", f.Action, f.Target, ev.Resolved, ev.BeganS, ev.EndS, ev.Note, ev.Error)
		events = append(events, ev)
		if err != nil {
			stepErr = fmt.Errorf("step %s:%s:%s: %w", f.At, f.Action, f.Target, err)
			break
		}
	}
	rep.Events = events
	end := cfg.Duration
	if len(events) > 0 {
		end = max(end, time.Duration(events[len(events)-1].EndS*float64(time.Second))+chaosTail)
	}
	sleepCtx(ctx, time.Until(start.Add(end)))
	trafficEnd := time.Since(epoch)
	stopTraffic()
	rep.TrafficS = time.Since(start).Seconds()

	// Settle: everything acknowledged delivered, or cfg.Settle passed.
	grecs, drecs := group.records(), direct.records()
	settleFrom := time.Now()
	for time.Since(settleFrom) < cfg.Settle && ctx.Err() == nil {
		if chaosMissing(members, grecs, drecs) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep.SettledS = time.Since(settleFrom).Seconds()

	// Report.
	startD := start.Sub(epoch)
	wins := chaosWindows(events, startD, trafficEnd)
	total := chaosAnalyze(members, grecs, drecs, target, wins)
	for _, w := range wins {
		w.finish(startD)
		rep.Windows = append(rep.Windows, *w)
	}
	total.finish(startD)
	rep.Total = *total
	group.mu.Lock()
	rep.GroupPublisherReconnects = max(0, group.conns-1)
	group.mu.Unlock()
	direct.mu.Lock()
	rep.DirectPublisherReconnects = max(0, direct.conns-1)
	direct.mu.Unlock()
	for _, m := range members {
		m.mu.Lock()
		rep.SessionsNotPresent += m.notPresent
		m.mu.Unlock()
	}
	rep.NodeCounters = map[string]map[string]float64{}
	for _, nd := range cc.nodes {
		if !nd.running() || nd.stopped {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if m, err := nd.api.scrapeCounters(cctx, chaosCounters); err == nil {
			rep.NodeCounters[nd.id] = m
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
		cfg.Nodes, len(cc.nats), len(members), homesString(homes), cfg.GroupRate, cfg.DirectRate, nTargets,
		routes[len(plan.Members)], routes[len(plan.Members)+1])
	if stepErr != nil {
		res.Note += "; the schedule stopped: " + stepErr.Error()
	}
	if ctx.Err() != nil {
		res.Error = "interrupted"
	}
	return res
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

// chaosMissing counts acknowledged member deliveries not (yet) made.
func chaosMissing(ms []*chaosMember, grecs, drecs []pubRecord) int {
	n := 0
	for _, m := range ms {
		m.mu.Lock()
		gseen := make([]bool, len(grecs))
		dseen := map[int32]bool{}
		for _, a := range m.got {
			switch {
			case a.kind == 'g' && int(a.seq) < len(gseen):
				gseen[a.seq] = true
			case a.kind == 'd':
				dseen[a.seq] = true
			}
		}
		for seq, r := range grecs {
			if r.acked != 0 && !gseen[seq] {
				n++
			}
		}
		for seq, r := range drecs {
			if r.acked != 0 && m.isTarget(seq) && !dseen[int32(seq)] {
				n++
			}
		}
		m.mu.Unlock()
	}
	return n
}

// chaosWindows cuts [start, end) (since the epoch) at each disruptive step
// of events (whose times are since start).
func chaosWindows(events []FaultEvent, start, end time.Duration) []*ChaosWindow {
	wins := []*ChaosWindow{{Name: "steady", from: start}}
	for _, ev := range events {
		if !ev.disruptive() {
			continue
		}
		at := start + time.Duration(ev.BeganS*float64(time.Second))
		wins[len(wins)-1].to = at
		name := ev.Action + " " + ev.Resolved
		if ev.Resolved != ev.Target {
			name += " (" + ev.Target + ")"
		}
		wins = append(wins, &ChaosWindow{Name: name, from: at, Fault: true})
	}
	wins[len(wins)-1].to = end
	return wins
}

func (w *ChaosWindow) of(at time.Duration) bool { return at >= w.from && at < w.to }

// finish sets the exported times and figures from the collected ones.
func (w *ChaosWindow) finish(start time.Duration) {
	if w.Name != "total" {
		w.FromS, w.ToS = (w.from - start).Seconds(), (w.to - start).Seconds()
	}
	ms := func(d time.Duration) *float64 { v := float64(d) / 1e6; return &v }
	if len(w.firsts) > 0 {
		slices.Sort(w.firsts)
		w.ReconnectFirstP50ms, w.ReconnectFirstMaxms = ms(w.firsts[len(w.firsts)/2]), ms(w.firsts[len(w.firsts)-1])
	}
	if len(w.silences) > 0 {
		slices.Sort(w.silences)
		w.SilenceP50ms, w.SilenceMaxms = *ms(w.silences[len(w.silences)/2]), *ms(w.silences[len(w.silences)-1])
	}
}

// chaosAnalyze fills the windows (a message made before the first window
// belongs to it, one made after the last window's end to the last) and
// returns the totals. target maps a direct message to its member.
func chaosAnalyze(ms []*chaosMember, grecs, drecs []pubRecord, target func(int) int, wins []*ChaosWindow) *ChaosWindow {
	winOf := func(at time.Duration) *ChaosWindow {
		for _, w := range wins {
			if at < w.to {
				return w
			}
		}
		return wins[len(wins)-1]
	}
	gWin := make([]*ChaosWindow, len(grecs))
	for i, r := range grecs {
		w := winOf(r.made)
		gWin[i] = w
		w.GroupMade++
		if r.acked != 0 {
			w.GroupAcked++
			w.Expected += len(ms)
		}
	}
	dWin := make([]*ChaosWindow, len(drecs))
	for i, r := range drecs {
		w := winOf(r.made)
		dWin[i] = w
		w.DirectMade++
		if r.acked != 0 {
			w.DirectAcked++
			w.Expected++
		}
	}
	gcount := make([]int, len(grecs))
	dcount := make([]int, len(drecs))
	for _, m := range ms {
		m.mu.Lock()
		got := slices.Clone(m.got)
		lost, conns := slices.Clone(m.lost), slices.Clone(m.conns)
		wins[0].Strays += m.strays
		m.mu.Unlock()

		// Copies, and first deliveries out of order, per publisher.
		clear(gcount)
		clear(dcount)
		maxG, maxD := -1, -1
		for _, a := range got {
			seq := int(a.seq)
			switch {
			case a.kind == 'g' && seq < len(grecs):
				gcount[seq]++
				if gcount[seq] == 1 && grecs[seq].acked != 0 {
					if seq < maxG {
						gWin[seq].OutOfOrder++
					} else {
						maxG = seq
					}
				}
			case a.kind == 'd' && seq < len(drecs):
				dcount[seq]++
				if dcount[seq] == 1 && drecs[seq].acked != 0 {
					if seq < maxD {
						dWin[seq].OutOfOrder++
					} else {
						maxD = seq
					}
				}
			}
		}
		for seq, r := range grecs {
			if r.acked == 0 {
				continue
			}
			switch n := gcount[seq]; {
			case n == 0:
				gWin[seq].Lost++
				gWin[seq].LostGroup++
			default:
				gWin[seq].Got++
				gWin[seq].Duplicates += n - 1
			}
		}
		for seq, r := range drecs {
			if r.acked == 0 || target(seq) != m.idx {
				continue
			}
			switch n := dcount[seq]; {
			case n == 0:
				dWin[seq].Lost++
				dWin[seq].LostDirect++
			default:
				dWin[seq].Got++
				dWin[seq].Duplicates += n - 1
			}
		}

		for _, w := range wins {
			// The longest silence (no group message) within w.
			var silence time.Duration
			last := w.from
			for _, a := range got {
				if a.kind != 'g' || a.at < w.from {
					continue
				}
				silence = max(silence, min(a.at, w.to)-last)
				if a.at >= w.to {
					break
				}
				last = a.at
			}
			silence = max(silence, w.to-last)
			w.silences = append(w.silences, silence)

			if !w.Fault {
				continue
			}
			// A member disconnected by the fault: the time from the fault
			// to its first delivery after it reconnected.
			i := slices.IndexFunc(lost, w.of)
			if i < 0 {
				continue
			}
			w.Disconnected++
			j := slices.IndexFunc(conns, func(at time.Duration) bool { return at > lost[i] })
			k := -1
			if j >= 0 {
				k = slices.IndexFunc(got, func(a chaosArrival) bool { return a.at > conns[j] })
			}
			if k < 0 {
				w.Never++
				continue
			}
			w.firsts = append(w.firsts, got[k].at-w.from)
		}
	}
	total := &ChaosWindow{Name: "total"}
	for _, w := range wins {
		total.GroupMade += w.GroupMade
		total.GroupAcked += w.GroupAcked
		total.DirectMade += w.DirectMade
		total.DirectAcked += w.DirectAcked
		total.Expected += w.Expected
		total.Got += w.Got
		total.Lost += w.Lost
		total.LostGroup += w.LostGroup
		total.LostDirect += w.LostDirect
		total.Duplicates += w.Duplicates
		total.OutOfOrder += w.OutOfOrder
		total.Strays += w.Strays
		total.Disconnected += w.Disconnected
		total.Never += w.Never
		total.firsts = append(total.firsts, w.firsts...)
		total.silences = append(total.silences, w.silences...)
	}
	return total
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
		row := func(w *ChaosWindow) {
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
			s := fmt.Sprintf("step %s:%s:%s → %s, began %.1f s, done %.1f s", fmtSeconds(ev.At), ev.Action, ev.Target, ev.Resolved, ev.BeganS, ev.EndS)
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
