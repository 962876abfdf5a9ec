package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushring/pushring/bench/hist"
	"github.com/pushring/pushring/mqtt/mqttc"
)

// FanoutConfig is the fanout scenario: Groups × Members, Devices
// publishers per group, Rate messages/s in total (0: as fast as possible).
type FanoutConfig struct {
	Groups, Members, Devices int
	Rate                     float64
	QoS                      byte
	Payload                  int
	Duration, Warmup         time.Duration
	Drain                    time.Duration // max wait for late deliveries after publishing stops
	Inflight                 int           // QoS 1 publish window per publisher
	ConnectWorkers           int
	Procs                    int // > 1: the members in this many worker processes (worker.go)
	// Persistent: members connect with persistent sessions (CleanSession
	// false), so a durable server keeps their positions as they go.
	Persistent bool
	// MQTT5: every client speaks MQTT 5.0 (3.1.1 otherwise).
	MQTT5 bool
	// Messages > 0 makes the run a burst: each publisher sends this many
	// messages as fast as the connection takes them, then stops;
	// deliveries/s and latency cover every delivery, from the start of
	// publishing to the last delivery (Warmup and Duration do not apply).
	Messages int
	Log      func(format string, args ...any)
}

// header of every payload: publisher index, sequence, send time (unix ns).
const headerLen = 4 + 8 + 8

// Result is one row of the report.
type Result struct {
	System         string   `json:"system"`
	Scenario       string   `json:"scenario"`
	QoS            int      `json:"qos"`
	Groups         int      `json:"groups"`
	Members        int      `json:"members"`
	Devices        int      `json:"devices"`
	PayloadBytes   int      `json:"payload_bytes"`
	Rate           float64  `json:"rate"`
	DurationS      float64  `json:"duration_s"`
	WarmupS        float64  `json:"warmup_s"`
	Connections    int      `json:"connections"`
	Procs          int      `json:"procs,omitempty"`      // worker processes holding the receiving clients (--procs > 1)
	TLS            string   `json:"tls,omitempty"`        // the TLS version the clients negotiated ("TLS 1.3"); "": plain TCP
	Persistent     bool     `json:"persistent,omitempty"` // members held persistent sessions (--persistent)
	MQTT5          bool     `json:"mqtt5,omitempty"`      // every client spoke MQTT 5.0 (--mqtt5)
	Sent           uint64   `json:"sent"`
	Deliveries     uint64   `json:"deliveries"` // in the measured window
	DeliveriesPerS float64  `json:"deliveries_per_s"`
	P50ms          float64  `json:"p50_ms"`
	P90ms          float64  `json:"p90_ms"`
	P99ms          float64  `json:"p99_ms"`
	Maxms          float64  `json:"max_ms"`
	Meanms         float64  `json:"mean_ms"`
	Lost           uint64   `json:"lost"`
	Duplicates     uint64   `json:"duplicates"`
	KiBPerConn     *float64 `json:"kib_per_conn"`
	ServerRSSMiB   *float64 `json:"server_rss_mib"`
	ServerCPUs     *float64 `json:"server_cpu_s"` // CPU seconds in the measured window
	HarnessCPUs    float64  `json:"harness_cpu_s"`
	SetupS         float64  `json:"setup_s"`
	ConnectS       float64  `json:"connect_s"`
	Note           string   `json:"note,omitempty"`
	Error          string   `json:"error,omitempty"`

	// A burst (FanoutConfig.Messages): messages per publisher, and the
	// seconds from the start of publishing to the last delivery, the
	// denominator of its deliveries/s.
	BurstMessages int      `json:"burst_messages,omitempty"`
	BurstS        *float64 `json:"burst_s,omitempty"`
	// --runs N > 1: the lowest and highest deliveries/s of the runs that
	// did not fail, next to their median in DeliveriesPerS.
	DeliveriesPerSMin *float64 `json:"deliveries_per_s_min,omitempty"`
	DeliveriesPerSMax *float64 `json:"deliveries_per_s_max,omitempty"`

	// Write system calls of the server and read system calls of the
	// harness over the span of ServerCPUs (fanout and direct; all the
	// harness's clients when they run in this process): deliveries per
	// call is how well the server batches its socket writes, and the
	// members' reads follow them.
	ServerWrites *float64 `json:"server_write_calls,omitempty"`
	HarnessReads *float64 `json:"harness_read_calls,omitempty"`

	// pushring's durable QoS 1, from its /metrics before publishing and
	// after the drain (durability.go): journal records and bytes stored
	// per message published, store errors, and session-record writes
	// (batched delivery positions and session records) per delivery.
	// Nil for other systems and for a node without a journal.
	StoredPerPublish        *float64 `json:"stored_per_publish,omitempty"`
	StoredBytesPerPublish   *float64 `json:"stored_bytes_per_publish,omitempty"`
	StoreErrors             *float64 `json:"store_errors,omitempty"`
	RecordWritesPerDelivery *float64 `json:"record_writes_per_delivery,omitempty"`
	// The node's NATS connection (durability.go): messages it published
	// and received per message published (journal appends and their
	// acknowledgements, envelopes, KV writes and reads, API requests).
	NATSOutPerPublish *float64 `json:"nats_out_per_publish,omitempty"`
	NATSInPerPublish  *float64 `json:"nats_in_per_publish,omitempty"`

	// pushring with --webhook and --offline-members (webhook.go): the
	// receiver the harness registered ("dead", "ok"; "": none), the
	// members per group that never connect, the node's
	// pushring_webhook_events_total by result and pushring_webhook_queued
	// after the drain (totals since the node started, every event type),
	// and the requests the harness's receiver got (of those,
	// message.offline events).
	Webhook                string   `json:"webhook,omitempty"`
	OfflineMembers         int      `json:"offline_members,omitempty"`
	WebhookDelivered       *float64 `json:"webhook_delivered,omitempty"`
	WebhookQueueFull       *float64 `json:"webhook_queue_full,omitempty"`
	WebhookFailed          *float64 `json:"webhook_failed,omitempty"`
	WebhookQueued          *float64 `json:"webhook_queued,omitempty"`
	WebhookSkipped         *float64 `json:"webhook_skipped,omitempty"`
	WebhookRequests        *float64 `json:"webhook_requests,omitempty"`
	WebhookOfflineRequests *float64 `json:"webhook_offline_requests,omitempty"`

	// churn (churn.go): login (users) and connect-only (devices or
	// anonymous) figures; nil or zero in other scenarios.
	Workers           int      `json:"workers,omitempty"`
	LoginsPerS        *float64 `json:"logins_per_s,omitempty"`
	LoginP50ms        *float64 `json:"login_p50_ms,omitempty"`
	LoginP99ms        *float64 `json:"login_p99_ms,omitempty"`
	TokenConnectP50ms *float64 `json:"token_connect_p50_ms,omitempty"`
	TokenConnectP99ms *float64 `json:"token_connect_p99_ms,omitempty"`
	ConnectsPerS      *float64 `json:"connects_per_s,omitempty"`
	ConnectP50ms      *float64 `json:"connect_p50_ms,omitempty"`
	ConnectP99ms      *float64 `json:"connect_p99_ms,omitempty"`
	SubscribeP50ms    *float64 `json:"subscribe_p50_ms,omitempty"`
	SubscribeP99ms    *float64 `json:"subscribe_p99_ms,omitempty"`
	Errors            uint64   `json:"errors,omitempty"`

	// cluster (cluster.go): nodes, inter-node envelopes per group publish,
	// the cluster/single-node deliveries ratio, per-node details.
	Nodes               int           `json:"nodes,omitempty"`
	EnvelopesPerPublish *float64      `json:"envelopes_per_publish,omitempty"`
	AcksPerPublish      *float64      `json:"acks_per_publish,omitempty"` // QoS 1 confirmation envelopes between nodes per group publish
	HomeNodesPerGroup   *float64      `json:"home_nodes_per_group,omitempty"`
	ClusterOverSingle   *float64      `json:"cluster_over_single,omitempty"`
	NodesCPUs           *float64      `json:"nodes_cpu_s,omitempty"`
	NodesRSSMiB         *float64      `json:"nodes_rss_mib,omitempty"`
	ClusterNodes        []ClusterNode `json:"cluster_nodes,omitempty"`

	// chaos (chaos.go): the fault schedule as it ran and the figures per
	// fault window; Sent is the messages PUBACKed, Deliveries the member
	// deliveries of those that came, Lost and Duplicates the totals.
	Chaos *ChaosReport `json:"chaos,omitempty"`

	// For the report (--report): the latency distribution, [ms, fraction
	// at most ms] pairs, and deliveries per SeriesStepMs from the start of
	// publishing (warmup, window, drain).
	LatencyCDF   [][2]float64 `json:"latency_cdf,omitempty"`
	SeriesStepMs float64      `json:"series_step_ms,omitempty"`
	Series       []uint64     `json:"deliveries_series,omitempty"`

	// --runs N > 1: Run is the run (1..N) of an entry in Runs; a result
	// with Runs holds the medians of its figures over the runs that did
	// not fail, its latency CDF from all those runs' histograms merged,
	// and the series of the run with the median deliveries/s (SeriesRun).
	Run       int      `json:"run,omitempty"`
	SeriesRun int      `json:"series_run,omitempty"`
	Runs      []Result `json:"runs,omitempty"`

	hist *hist.Histogram // merged latency histogram, for medians over runs
}

// seriesStep is the bucket width of Result.Series.
const seriesStep = 100 * time.Millisecond

type receiver struct {
	conn     *mqttc.Conn
	h        *hist.Histogram
	seen     [][]uint64 // per publisher: bitset of sequence numbers
	window   uint64
	distinct uint64
	dups     uint64
	bad      uint64
	total    atomic.Uint64
	series   []uint32 // deliveries per seriesStep since window.t0 (read after the read loop ends)
	last     int64    // unix ns of the last distinct delivery (read after the read loop ends)
}

// window is the measured window and t0, the start of publishing (the
// series' origin), as unix ns.
type window struct{ start, end, t0 atomic.Int64 }

func (r *receiver) onPublish(w *window, payload []byte) {
	now := time.Now().UnixNano()
	r.total.Add(1)
	if len(payload) < headerLen {
		r.bad++
		return
	}
	pub := binary.BigEndian.Uint32(payload)
	seq := binary.BigEndian.Uint64(payload[4:])
	ts := int64(binary.BigEndian.Uint64(payload[12:]))
	if int(pub) >= len(r.seen) {
		r.bad++
		return
	}
	bs := r.seen[pub]
	word := int(seq / 64)
	if word >= len(bs) {
		bs = append(bs, make([]uint64, word+1-len(bs)+len(bs)/2)...)
		r.seen[pub] = bs
	}
	bit := uint64(1) << (seq % 64)
	if bs[word]&bit != 0 {
		r.dups++
		return
	}
	bs[word] |= bit
	r.distinct++
	r.last = now
	if d := now - w.t0.Load(); d >= 0 && len(r.series) > 0 {
		r.series[min(int(d/int64(seriesStep)), len(r.series)-1)]++
	}
	if now >= w.start.Load() && now < w.end.Load() {
		r.window++
		r.h.Record(now - ts)
	}
}

// RunFanout runs the fanout scenario against sys and returns its row.
func RunFanout(ctx context.Context, sys System, cfg FanoutConfig) Result {
	return run(ctx, sys, cfg, false)
}

// RunDirect runs the direct scenario: cfg.Members users, cfg.Devices
// senders, each message to a random user's inbox (cfg.Groups is ignored).
func RunDirect(ctx context.Context, sys System, cfg FanoutConfig) Result {
	cfg.Groups = 1
	return run(ctx, sys, cfg, true)
}

func run(ctx context.Context, sys System, cfg FanoutConfig, direct bool) (res Result) {
	scenario := "fanout"
	if direct {
		scenario = "direct"
	}
	res = Result{System: sys.Name(), Scenario: scenario, QoS: int(cfg.QoS), Groups: cfg.Groups, Members: cfg.Members,
		Devices: cfg.Devices, PayloadBytes: max(cfg.Payload, headerLen), Rate: cfg.Rate,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds()}
	logf := cfg.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if cfg.ConnectWorkers <= 0 {
		cfg.ConnectWorkers = 32
	}
	burst := cfg.Messages > 0
	if burst {
		if cfg.Procs > 1 {
			res.Error = "a burst (--messages) runs its receivers in this process: it does not apply with --procs"
			return res
		}
		res.BurstMessages = cfg.Messages
		res.DurationS, res.WarmupS = 0, 0
	}
	ct := tlsOf(sys)
	defer func() { res.TLS = ct.negotiated() }()
	fail := func(err error) Result { res.Error = err.Error(); return res }

	t0 := time.Now()
	var plan *FanoutPlan
	var err error
	if direct {
		plan, err = sys.SetupDirect(ctx, cfg.Members, cfg.Devices)
	} else {
		plan, err = sys.SetupFanout(ctx, cfg.Groups, cfg.Members, cfg.Devices)
	}
	if err != nil {
		return fail(fmt.Errorf("setup: %w", err))
	}
	res.SetupS = time.Since(t0).Seconds()
	res.Note = plan.Note
	res.OfflineMembers = plan.Offline
	if p, ok := sys.(*Pushring); ok && p.hook != nil {
		res.Webhook = p.hook.Kind
	}
	logf("%s: set up %d groups, %d members, %d publishers in %.1f s", sys.Name(), cfg.Groups, len(plan.Members), len(plan.Publishers), res.SetupS)

	// Connect and subscribe the members.
	t0 = time.Now()
	var w window
	w.start.Store(math.MaxInt64)
	w.end.Store(math.MaxInt64)
	w.t0.Store(math.MaxInt64)
	// warmup + window + the wait for blocked publishers + drain, and a margin.
	seriesLen := int((cfg.Warmup+cfg.Duration+10*time.Second+cfg.Drain)/seriesStep) + 20
	recv := make([]*receiver, len(plan.Members))
	var conns sync.WaitGroup // read loops
	defer func() {
		for _, r := range recv {
			if r != nil {
				r.conn.Close()
			}
		}
		conns.Wait()
	}()
	limit := limitNote(sys, len(plan.Members), cfg.Procs) // one process's open-files limit, said when exceeded
	res.Note += limit
	if cfg.Persistent {
		res.Persistent = true
		res.Note += "; members hold persistent sessions (clean session off)"
	}
	if cfg.MQTT5 {
		res.MQTT5 = true
		res.Note += "; MQTT 5.0 clients"
	}
	var pool *workerPool // --procs > 1: the members are in worker processes, recv stays empty
	if cfg.Procs > 1 {
		recv = nil
		pool, err = connectInWorkers(ctx, sys, cfg.Procs, workerMsg{Op: "fanout", Clients: plan.Members, QoS: cfg.QoS,
			Publishers: len(plan.Publishers), SeriesLen: seriesLen, ConnectWorkers: cfg.ConnectWorkers, Persistent: cfg.Persistent, MQTT5: cfg.MQTT5}, 0, &res)
		if pool != nil {
			defer pool.close()
		}
	} else {
		err = parallel(ctx, len(plan.Members), cfg.ConnectWorkers, func(ctx context.Context, i int) error {
			m := plan.Members[i]
			c, err := mqttc.Dial(dialAddr(sys, m), mqttc.Options{ClientID: m.ID, Username: m.Username, Password: m.Password, TLS: ct.config(), WebSocket: wsOf(sys),
				Persistent: cfg.Persistent, MQTT5: cfg.MQTT5})
			if err != nil {
				return fmt.Errorf("member %s: %w", m.ID, err)
			}
			if err := c.Subscribe(m.Filter, cfg.QoS, 10*time.Second); err != nil {
				c.Close()
				return fmt.Errorf("member %s: %w", m.ID, err)
			}
			r := &receiver{conn: c, h: hist.New(), seen: make([][]uint64, len(plan.Publishers)), series: make([]uint32, seriesLen)}
			recv[i] = r
			return nil
		})
	}
	if err != nil {
		return fail(fmt.Errorf("connect: %w%s", err, limit))
	}
	for _, r := range recv {
		conns.Add(1)
		go func() {
			defer conns.Done()
			r.conn.Run(func(_, payload []byte) { r.onPublish(&w, payload) })
		}()
	}
	pubs := make([]*mqttc.Conn, len(plan.Publishers))
	var pubLoops sync.WaitGroup
	defer func() {
		for _, c := range pubs {
			if c != nil {
				c.Close()
			}
		}
		pubLoops.Wait()
	}()
	for i, p := range plan.Publishers {
		c, err := mqttc.Dial(dialAddr(sys, p), mqttc.Options{ClientID: p.ID, Username: p.Username, Password: p.Password, Inflight: cfg.Inflight,
			TLS: ct.config(), WebSocket: wsOf(sys), MQTT5: cfg.MQTT5})
		if err != nil {
			return fail(fmt.Errorf("publisher %s: %w", p.ID, err))
		}
		pubs[i] = c
		pubLoops.Add(1)
		go func() { defer pubLoops.Done(); c.Run(nil) }()
	}
	res.Connections = len(plan.Members) + len(pubs)
	res.ConnectS = time.Since(t0).Seconds()
	logf("%s: %d connections in %.1f s", sys.Name(), res.Connections, res.ConnectS)
	// Subscriptions on a broker may take effect a moment after SUBACK
	// (NATS MQTT, pushring's attach records): let them settle.
	time.Sleep(300 * time.Millisecond)

	// Publish.
	stop := make(chan struct{})
	sent := make([]atomic.Uint64, len(pubs))
	perPub := cfg.Rate / float64(len(pubs))
	node, _ := sys.(*Pushring)
	scraped := append(slices.Clone(durableMetrics), webhookMetrics...)
	var counters0 map[string]float64
	if node != nil {
		if counters0, err = node.scrapeCounters(ctx, scraped); err != nil {
			logf("%s: %v (no stored-per-publish figures)", sys.Name(), err)
			node = nil
		}
	}
	var srv0, self0 ProcSample
	pid := sys.PID()
	if burst { // CPU from the start of publishing to the end of the drain
		if pid > 0 {
			srv0, _ = ReadProc(pid)
		}
		self0, _ = ReadProc(0)
	}
	start := time.Now()
	w.t0.Store(start.UnixNano())
	if burst { // every delivery counts
		w.start.Store(start.UnixNano())
	} else {
		w.start.Store(start.Add(cfg.Warmup).UnixNano())
		w.end.Store(start.Add(cfg.Warmup + cfg.Duration).UnixNano())
	}
	if pool != nil {
		if err := pool.arm(ctx, &w); err != nil {
			return fail(fmt.Errorf("workers: %w", err))
		}
	}
	var toUser []atomic.Uint64 // direct: messages sent to each member
	if direct {
		toUser = make([]atomic.Uint64, len(plan.Members))
	}
	var pw sync.WaitGroup
	for i, c := range pubs {
		pw.Add(1)
		go func() {
			defer pw.Done()
			var pick func() (string, func())
			if direct {
				rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
				pick = func() (string, func()) {
					j := rng.IntN(len(plan.Members))
					return plan.Members[j].Inbox, func() { toUser[j].Add(1) }
				}
			}
			publish(c, plan.Publishers[i].Topic, pick, uint32(i), cfg, perPub, start, stop, &sent[i])
		}()
	}
	cpuEnd := func(workers0 float64) {
		self1, _ := ReadProc(0)
		workers1 := pool.cpuSeconds()
		if pid > 0 {
			srv1, err := ReadProc(pid)
			if err == nil {
				cpu := srv1.CPUSeconds - srv0.CPUSeconds
				rss := float64(srv1.RSSKiB) / 1024
				res.ServerCPUs, res.ServerRSSMiB = &cpu, &rss
				if srv1.SyscW > 0 {
					w := float64(srv1.SyscW - srv0.SyscW)
					res.ServerWrites = &w
				}
			}
		}
		res.HarnessCPUs = self1.CPUSeconds - self0.CPUSeconds + workers1 - workers0
		if self1.SyscR > 0 && pool == nil {
			r := float64(self1.SyscR - self0.SyscR)
			res.HarnessReads = &r
		}
	}
	pwDone := make(chan struct{})
	go func() { pw.Wait(); close(pwDone) }()
	if burst { // the publishers stop by themselves after cfg.Messages each
		select {
		case <-pwDone:
		case <-ctx.Done():
		}
	} else {
		sleepCtx(ctx, cfg.Warmup)
		if pid > 0 {
			srv0, _ = ReadProc(pid)
		}
		self0, _ = ReadProc(0)
		workers0 := pool.cpuSeconds()
		sleepCtx(ctx, time.Until(start.Add(cfg.Warmup+cfg.Duration)))
		cpuEnd(workers0)
	}
	close(stop)
	select {
	case <-pwDone:
	case <-time.After(10 * time.Second): // a publisher blocked on a server that stopped reading
		for _, c := range pubs {
			c.Abort()
		}
		<-pwDone
		res.Note += "; publishers aborted (blocked writes after the run)"
	}

	// Drain: wait for late deliveries until all expected arrived, or no
	// progress for a second, or cfg.Drain.
	var expected uint64
	groupSent := make([]uint64, cfg.Groups)
	for i, p := range plan.Publishers {
		n := sent[i].Load()
		res.Sent += n
		groupSent[p.Group] += n
	}
	for j, m := range plan.Members {
		if direct {
			expected += toUser[j].Load()
		} else {
			expected += groupSent[m.Group]
		}
	}
	total := func() (n uint64) {
		for _, r := range recv {
			n += r.total.Load()
		}
		return n + pool.total()
	}
	drainEnd := time.Now().Add(cfg.Drain)
	last, lastChange := total(), time.Now()
	for time.Now().Before(drainEnd) && last < expected && time.Since(lastChange) < time.Second {
		time.Sleep(50 * time.Millisecond)
		if n := total(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	if burst {
		cpuEnd(0)
	}
	var counters1 map[string]float64
	if node != nil {
		if counters1, err = node.scrapeCounters(ctx, scraped); err != nil {
			logf("%s: %v (no stored-per-publish figures)", sys.Name(), err)
		}
	}
	for _, r := range recv {
		r.conn.Close()
	}
	conns.Wait()
	var fromWorkers []*workerResult
	if pool != nil {
		if fromWorkers, err = pool.stop(ctx); err != nil {
			return fail(fmt.Errorf("workers: %w", err))
		}
	}
	end := min(int(time.Since(start)/seriesStep)+1, seriesLen)
	res.SeriesStepMs = float64(seriesStep) / float64(time.Millisecond)
	res.Series = make([]uint64, end)
	h := hist.New()
	var distinct uint64
	var lastAt int64 // the last delivery, unix ns
	for _, r := range recv {
		lastAt = max(lastAt, r.last)
		for i, n := range r.series[:end] {
			res.Series[i] += uint64(n)
		}
		h.Merge(r.h)
		res.Deliveries += r.window
		res.Duplicates += r.dups
		distinct += r.distinct
		if r.bad > 0 && res.Note != "" {
			res.Note += fmt.Sprintf("; %d malformed payloads", r.bad)
		}
	}
	recv = nil
	distinct += foldWorkers(&res, h, fromWorkers)
	if expected > distinct {
		res.Lost = expected - distinct
	}
	if counters1 != nil {
		fillDurable(&res, counters0, counters1, distinct)
		fillWebhook(&res, sys, counters1)
	}
	if burst {
		if lastAt > 0 {
			s := float64(lastAt-start.UnixNano()) / 1e9
			res.BurstS, res.DurationS = &s, s
			res.DeliveriesPerS = float64(res.Deliveries) / s
		}
		res.Note += fmt.Sprintf("; burst: %d messages per publisher at once, deliveries/s from the start of publishing to the last delivery", cfg.Messages)
	} else {
		res.DeliveriesPerS = float64(res.Deliveries) / cfg.Duration.Seconds()
	}
	ms := func(ns int64) float64 { return float64(ns) / 1e6 }
	res.P50ms, res.P90ms, res.P99ms = ms(h.Quantile(0.5)), ms(h.Quantile(0.9)), ms(h.Quantile(0.99))
	res.Maxms, res.Meanms = ms(h.Max()), h.Mean()/1e6
	res.hist = h
	res.LatencyCDF = latencyCDF(h)
	return res
}

// latencyCDF is h's CDF in [ms, fraction] pairs.
func latencyCDF(h *hist.Histogram) [][2]float64 {
	var out [][2]float64
	for _, p := range h.CDF() {
		out = append(out, [2]float64{float64(p.V) / 1e6, p.Frac})
	}
	return out
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// publish sends until stop: at rate messages/s (0: as fast as the
// connection takes them), in batches flushed together. pick, if not nil,
// chooses each message's topic and returns what to call once it is sent.
func publish(c *mqttc.Conn, topic string, pick func() (string, func()), idx uint32, cfg FanoutConfig, rate float64, start time.Time, stop <-chan struct{}, sent *atomic.Uint64) {
	payload := make([]byte, max(cfg.Payload, headerLen))
	for i := headerLen; i < len(payload); i++ {
		payload[i] = 'x'
	}
	binary.BigEndian.PutUint32(payload, idx)
	var seq uint64
	one := func() bool {
		if cfg.Messages > 0 && seq >= uint64(cfg.Messages) {
			return false
		}
		binary.BigEndian.PutUint64(payload[4:], seq)
		binary.BigEndian.PutUint64(payload[12:], uint64(time.Now().UnixNano()))
		t, sentTo := topic, func() {}
		if pick != nil {
			t, sentTo = pick()
		}
		if !c.Publish(t, cfg.QoS, payload, stop) {
			return false
		}
		sentTo()
		seq++
		sent.Store(seq)
		return true
	}
	defer c.Flush()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if rate <= 0 {
			for range 64 {
				if !one() {
					return
				}
			}
			if c.Flush() != nil {
				return
			}
			continue
		}
		due := uint64(time.Since(start).Seconds() * rate)
		for seq < due {
			if !one() {
				return
			}
		}
		if c.Flush() != nil {
			return
		}
		next := start.Add(time.Duration(float64(seq+1) / rate * float64(time.Second)))
		if d := time.Until(next); d > 0 {
			select {
			case <-stop:
				return
			case <-time.After(d):
			}
		}
	}
}
