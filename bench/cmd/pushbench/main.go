// Command pushbench is pushring's load harness: it runs a
// scenario against a pushring node and, in the same run on the same
// machine, against plain MQTT brokers it starts itself (--baseline), and
// prints one row per system. See bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pushring/pushring/bench"
	"github.com/pushring/pushring/internal/chaos"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bench.WorkerArg { // a worker process of --procs (hidden)
		if err := bench.ServeWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "pushbench worker:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("pushbench", flag.ContinueOnError)
	scenario := fs.String("scenario", "fanout", "scenario: fanout, direct, idle, churn, cluster, chaos")
	system := fs.String("system", "pushring", "system under test: pushring, or none (baselines only)")
	target := fs.String("target", "127.0.0.1:1883", "pushring MQTT address (when not --start-pushring)")
	httpURL := fs.String("http", "http://127.0.0.1:8080", "pushring HTTP API base URL (when not --start-pushring)")
	adminKey := fs.String("admin-key", "", "pushring admin key (or PUSHRING_ADMIN_KEY)")
	adminKeyFile := fs.String("admin-key-file", "", "file holding the pushring admin key")
	serverPID := fs.Int("server-pid", 0, "pid of the running pushring node, for its CPU and RSS from /proc")
	startPushring := fs.String("start-pushring", "", "path of a pushring binary to start on free loopback ports (temp data dir), stopped after")
	pushringArgs := fs.String("pushring-args", "", "extra flags, space-separated, for the node --start-pushring starts (e.g. --goroutine-per-conn)")
	baselines := fs.String("baseline", "", "comma-separated plain brokers to start and run the same scenario on: mosquitto, mosquitto-persist (persistence true), nats")
	mosquittoBin := fs.String("mosquitto", "", "mosquitto binary (default: PATH or /usr/sbin/mosquitto)")
	natsBin := fs.String("nats-server", "", "nats-server binary (default: built once from the nats-server/v2 module into the user cache dir)")
	groups := fs.Int("groups", 1, "groups (G)")
	members := fs.Int("members", 100, "members per group (M)")
	devices := fs.Int("devices", 1, "publishing devices per group (D)")
	rate := fs.Float64("rate", 0, "messages/s published in total over all devices; 0: as fast as possible")
	qos := fs.Int("qos", 0, "QoS of publishes and subscriptions: 0, 1 or 2")
	payload := fs.Int("payload", 64, "payload bytes (at least 20: publisher, sequence, timestamp)")
	duration := fs.Duration("duration", 5*time.Second, "measured window")
	warmup := fs.Duration("warmup", time.Second, "publishing before the measured window")
	drain := fs.Duration("drain", 10*time.Second, "longest wait for late deliveries after publishing stops (then missing ones count as lost)")
	inflight := fs.Int("inflight", 16, "QoS 1 publish window per device")
	mqtt5 := fs.Bool("mqtt5", false, "fanout, direct: every client speaks MQTT 5.0 (systems without 5.0 refuse the CONNECT)")
	persistent := fs.Bool("persistent", false, "fanout, direct: members connect with persistent sessions (clean session off), so pushring writes their delivery positions; the journal line reports those writes per delivery")
	messages := fs.Int("messages", 0, "fanout, direct: a burst: each publishing device sends N messages as fast as it can, then stops; deliveries/s from the start of publishing to the last delivery (--warmup, --duration, --rate do not apply)")
	users := fs.Int("users", 100, "direct: users receiving direct messages (N)")
	senders := fs.Int("senders", 1, "direct: sender devices (P), each message to a random user")
	clients := fs.Int("clients", 1000, "idle: connected, subscribed, silent clients (K); one harness process holds at most ~19,000 (20,000 open files): more need --procs")
	settle := fs.Duration("settle", 2*time.Second, "idle: wait before each RSS reading (after setup, after the last connect)")
	sourceAddrs := fs.Int("source-addrs", 0, "idle: spread connections over source addresses 127.0.0.1..N; 0: one per 5,000 clients")
	workers := fs.Int("workers", 16, "churn: concurrent clients connecting, subscribing, disconnecting (pushring: the --users users log in first)")
	nodes := fs.Int("nodes", 3, "cluster: pushring nodes to start (needs --start-pushring); a single node runs too, in the same run")
	// The chaos scenario: QoS 1 traffic while a fault schedule kills,
	// stops and restarts nodes and NATS servers.
	faults := fs.String("faults", chaos.DefaultFaults, "chaos: the fault schedule, "+chaos.FaultsHelp+
		".\nChaos runs pushring only (--start-pushring): 3 NATS servers (R3) and --nodes nodes; unless given, --members 300, --rate 40 (group msgs/s), --duration 60s of traffic, --drain 30s to settle")
	directRate := fs.Float64("direct-rate", 20, "chaos: direct messages/s (to 30 members in turn), next to --rate group messages/s")
	jsonPath := fs.String("json", "", "write the results as JSON to this file")
	reportPath := fs.String("report", "", "write a self-contained HTML report (table, latency CDF, deliveries over time) to this file")
	procs := fs.Int("procs", 1, "worker processes holding the receiving clients (fanout members, direct users, idle clients), each on its own 127.0.0.x source addresses; 1: all in this process")
	runs := fs.Int("runs", 1, "run the scenario N times over all systems, their order reversed every other run; report the medians")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	useTLS := fs.Bool("tls", false, "MQTT over TLS: every server the harness starts gets a TLS listener with a throwaway CA's certificate for 127.0.0.1, and every client dials it (rows named <system>+tls); fanout, direct, idle, churn")
	ruleTopics := fs.Bool("rule-topics", false, "pushring (with --start-pushring): fanout over rule topics (--topic-rules opening bench/# to devices; each group is a topic bench/<gid> its members subscribe to), the plain broker shape; rows named pushring+topics")
	webhook := fs.String("webhook", bench.HookNone, "pushring (with --start-pushring), fanout and direct: a webhook receiver the harness runs on loopback and registers (POST /v1/webhooks, every event type) before the scenario: none, dead (accepts connections, never answers), ok (answers 204 at once); a comma-separated list (none,dead) runs one pushring row each, rows named pushring+hook-<kind>")
	offlineMembers := fs.Int("offline-members", 0, "pushring, fanout: N more members per group that are added to the group and never connect, so every group message makes N message.offline webhook events; nothing is expected at them (the baselines have no groups: they get none)")
	useWS := fs.Bool("ws", false, "MQTT over WebSocket: pushring's clients dial ws://<http>/mqtt, the NATS server gets a websocket listener and mosquitto a websockets one; rows named <system>+ws; fanout, direct, idle")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch *scenario {
	case "fanout":
	case "direct":
		if *users < 1 || *senders < 1 {
			return errors.New("--users and --senders must be positive")
		}
	case "idle":
		if *clients < 1 {
			return errors.New("--clients must be positive")
		}
	case "churn":
		if *users < 1 || *workers < 1 {
			return errors.New("--users and --workers must be positive")
		}
	case "cluster", "chaos":
		if *nodes < 2 {
			return errors.New("--nodes must be at least 2")
		}
	default:
		return fmt.Errorf("unknown scenario %q (fanout, direct, idle, churn, cluster, chaos)", *scenario)
	}
	if *scenario == "chaos" {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		return runChaos(args, set, chaosFlags{startPushring: *startPushring, pushringArgs: *pushringArgs, natsBin: *natsBin,
			nodes: *nodes, members: *members, rate: *rate, directRate: *directRate, duration: *duration, drain: *drain,
			faults: *faults, jsonPath: *jsonPath, reportPath: *reportPath, quiet: *quiet})
	}
	if *qos < 0 || *qos > 2 {
		return errors.New("--qos must be 0, 1 or 2")
	}
	if *procs < 1 {
		return errors.New("--procs must be at least 1")
	}
	if *procs > 1 && *scenario == "churn" {
		return errors.New("--procs does not apply to churn (its --workers clients run in this process)")
	}
	if *messages < 0 {
		return errors.New("--messages must not be negative")
	}
	if *messages > 0 {
		switch {
		case *scenario != "fanout" && *scenario != "direct":
			return errors.New("--messages (a burst) applies to fanout and direct")
		case *procs > 1:
			return errors.New("--messages (a burst) keeps its receivers in this process: it does not apply with --procs")
		case *rate != 0:
			return errors.New("--messages (a burst) publishes as fast as it can: leave --rate at 0")
		}
	}
	if *runs < 1 {
		return errors.New("--runs must be at least 1")
	}
	if *groups < 1 || *members < 1 || *devices < 1 || *duration <= 0 {
		return errors.New("--groups, --members, --devices and --duration must be positive")
	}
	// One throwaway CA and server certificate per run: every server
	// started gets a copy, every client verifies against the CA.
	var tlsMat *bench.TLSMaterial
	if *useTLS {
		switch {
		case *scenario == "cluster":
			return errors.New("--tls does not apply to --scenario cluster (its nodes and the addresses GET /v1/route returns are plain MQTT)")
		case *system == "pushring" && *startPushring == "":
			return errors.New("--tls needs --start-pushring (the harness makes the node's certificate; a running node's CA is unknown to it), or --system none")
		}
		var err error
		if tlsMat, err = bench.NewTLSMaterial(); err != nil {
			return fmt.Errorf("--tls: %w", err)
		}
	}
	if *useWS {
		switch {
		case *useTLS:
			return errors.New("--ws and --tls: choose one")
		case *scenario != "fanout" && *scenario != "direct" && *scenario != "idle":
			return errors.New("--ws applies to the fanout, direct and idle scenarios")
		case *system == "pushring" && *startPushring == "":
			return errors.New("--ws needs --start-pushring, or --system none")
		}
	}
	if *ruleTopics && (*scenario != "fanout" || *system == "pushring" && *startPushring == "") {
		return errors.New("--rule-topics applies to --scenario fanout with --start-pushring")
	}
	var hooks []string
	for _, k := range strings.Split(*webhook, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(bench.HookKinds, k) {
			return fmt.Errorf("--webhook %q: want none, dead or ok (or a comma-separated list of them)", k)
		}
		if slices.Contains(hooks, k) {
			return fmt.Errorf("--webhook: %s twice", k)
		}
		hooks = append(hooks, k)
	}
	if len(hooks) > 1 || hooks[0] != bench.HookNone {
		switch {
		case *system != "pushring" || *startPushring == "":
			return errors.New("--webhook needs --start-pushring (the harness's receiver is on loopback, registered with the node it started)")
		case *scenario != "fanout" && *scenario != "direct":
			return errors.New("--webhook applies to the fanout and direct scenarios")
		}
	}
	if *offlineMembers < 0 {
		return errors.New("--offline-members must not be negative")
	}
	if *offlineMembers > 0 && (*scenario != "fanout" || *ruleTopics) {
		return errors.New("--offline-members applies to --scenario fanout on pushring's groups (not --rule-topics)")
	}
	suffix := ""
	if *useTLS {
		suffix = bench.TLSSuffix
	}
	if *useWS {
		suffix = bench.WSSuffix
	}
	logf := func(format string, a ...any) {
		if !*quiet {
			fmt.Fprintf(os.Stderr, "pushbench: "+format+"\n", a...)
		}
	}
	cfg := bench.FanoutConfig{Groups: *groups, Members: *members, Devices: *devices, Rate: *rate, QoS: byte(*qos),
		Payload: *payload, Duration: *duration, Warmup: *warmup, Drain: *drain, Inflight: *inflight, Procs: *procs,
		Messages: *messages, Persistent: *persistent, MQTT5: *mqtt5, Log: logf}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := &bench.Report{Machine: bench.DescribeMachine(), Command: append([]string{"pushbench"}, args...)}

	measure := func(name string, start func() (bench.System, error)) {
		if ctx.Err() != nil {
			return
		}
		logf("%s: starting", name)
		sys, err := start()
		if err != nil {
			fmt.Fprintf(os.Stderr, "pushbench: %s: %v (skipped)\n", name, err)
			rep.Results = append(rep.Results, bench.Result{System: name, Scenario: *scenario, QoS: *qos, Error: err.Error()})
			return
		}
		var res bench.Result
		switch *scenario {
		case "idle":
			res = bench.RunIdle(ctx, sys, bench.IdleConfig{Clients: *clients, QoS: byte(*qos), Settle: *settle,
				SourceAddrs: *sourceAddrs, Procs: *procs, Log: logf})
		case "direct":
			dc := cfg
			dc.Members, dc.Devices = *users, *senders
			res = bench.RunDirect(ctx, sys, dc)
		case "churn":
			res = bench.RunChurn(ctx, sys, bench.ChurnConfig{Users: *users, Workers: *workers, QoS: byte(*qos),
				Duration: *duration, Warmup: *warmup, Log: logf})
		case "cluster":
			res = bench.RunClusterFanout(ctx, sys, cfg)
		default:
			res = bench.RunFanout(ctx, sys, cfg)
		}
		if err := sys.Stop(); err != nil {
			logf("%s: stop: %v", name, err)
		}
		if res.Error != "" {
			fmt.Fprintf(os.Stderr, "pushbench: %s: %s\n", name, res.Error)
		} else if res.KiBPerConn != nil {
			logf("%s: %.2f KiB per idle connection", name, *res.KiBPerConn)
		} else if res.ConnectsPerS == nil { // churn: RunChurn logged its own figures
			logf("%s: %.0f deliveries/s, p99 %.2f ms, lost %d, duplicates %d", name, res.DeliveriesPerS, res.P99ms, res.Lost, res.Duplicates)
		}
		rep.Results = append(rep.Results, res)
	}
	// runOne queues a system; all run --runs times below, in the order
	// queued in odd runs and reversed in even ones.
	type queued struct {
		name  string
		start func() (bench.System, error)
	}
	var queue []queued
	runOne := func(name string, start func() (bench.System, error)) {
		queue = append(queue, queued{name, start})
	}

	// startNode starts (or targets) the pushring node of one row, with
	// the webhook receiver hook registered.
	startNode := func(hook string) func() (bench.System, error) {
		return func() (bench.System, error) {
			if *startPushring != "" {
				args := strings.Fields(*pushringArgs)
				if *ruleTopics {
					f, err := os.CreateTemp("", "pushbench-rules-*.json")
					if err != nil {
						return nil, err
					}
					defer os.Remove(f.Name()) // read at start
					if _, err := f.WriteString(bench.RuleTopicsFile); err != nil {
						return nil, err
					}
					f.Close()
					args = append(args, "--topic-rules", f.Name())
				}
				s, err := bench.StartPushring(*startPushring, tlsMat, args...)
				if err == nil && *useWS {
					s.UseWebSocket()
				}
				if err == nil && *ruleTopics {
					s.UseRuleTopics()
				}
				if err == nil {
					s.UseOfflineMembers(*offlineMembers)
					if err = s.UseWebhook(ctx, hook); err != nil {
						s.Stop()
						return nil, fmt.Errorf("webhook: %w", err)
					}
				}
				return s, err
			}
			key := *adminKey
			if key == "" && *adminKeyFile != "" {
				b, err := os.ReadFile(*adminKeyFile)
				if err != nil {
					return nil, err
				}
				key = strings.TrimSpace(string(b))
			}
			if key == "" {
				key = os.Getenv("PUSHRING_ADMIN_KEY")
			}
			if key == "" {
				return nil, errors.New("no admin key: --admin-key, --admin-key-file or PUSHRING_ADMIN_KEY")
			}
			s := bench.NewPushring(*target, *httpURL, key, *serverPID)
			s.UseOfflineMembers(*offlineMembers)
			return s, nil
		}
	}

	switch *system {
	case "pushring":
		if *scenario == "cluster" { // a single node and the cluster, both started here
			if *startPushring == "" {
				return errors.New("--scenario cluster starts its nodes itself: it needs --start-pushring")
			}
			for _, n := range []int{1, *nodes} {
				name := "pushring-cluster"
				if n == 1 {
					name = "pushring-single"
				}
				runOne(name, func() (bench.System, error) {
					return bench.StartCluster(*startPushring, n, strings.Fields(*pushringArgs)...)
				})
			}
			break
		}
		for _, hook := range hooks {
			name := "pushring"
			if *ruleTopics {
				name += "+topics"
			}
			runOne(name+bench.HookSuffix(hook)+suffix, startNode(hook))
		}
	case "none", "":
	default:
		return fmt.Errorf("unknown --system %q", *system)
	}
	for _, b := range strings.Split(*baselines, ",") {
		switch b = strings.TrimSpace(b); b {
		case "":
		case "mosquitto":
			runOne(b+suffix, func() (bench.System, error) {
				bin := *mosquittoBin
				if bin == "" {
					var err error
					if bin, err = bench.MosquittoPath(); err != nil {
						return nil, err
					}
				}
				if *useWS {
					return bench.StartMosquittoWS(bin, false)
				}
				return bench.StartMosquitto(bin, tlsMat)
			})
		case "mosquitto-persist":
			runOne(b+suffix, func() (bench.System, error) {
				bin := *mosquittoBin
				if bin == "" {
					var err error
					if bin, err = bench.MosquittoPath(); err != nil {
						return nil, err
					}
				}
				if *useWS {
					return bench.StartMosquittoWS(bin, true)
				}
				return bench.StartMosquittoPersist(bin, tlsMat)
			})
		case "nats":
			runOne(b+suffix, func() (bench.System, error) {
				bin := *natsBin
				if bin == "" {
					var err error
					if bin, err = bench.NATSServerPath(); err != nil {
						return nil, err
					}
				}
				if *useWS {
					return bench.StartNATSWS(bin)
				}
				return bench.StartNATS(bin, tlsMat)
			})
		default:
			fmt.Fprintf(os.Stderr, "pushbench: unknown baseline %q (mosquitto, mosquitto-persist, nats)\n", b)
		}
	}
	for run := 1; run <= *runs; run++ {
		if *runs > 1 {
			logf("run %d of %d", run, *runs)
		}
		for _, i := range bench.RunOrder(len(queue), run) {
			n := len(rep.Results)
			measure(queue[i].name, queue[i].start)
			for j := n; j < len(rep.Results) && *runs > 1; j++ {
				rep.Results[j].Run = run
			}
		}
	}
	rep.Results = bench.Medians(rep.Results) // one row per system: the medians over the runs
	bench.FillClusterRatios(rep.Results)
	if len(rep.Results) == 0 {
		return errors.New("nothing to run")
	}
	if !rep.WriteScenarioTable(os.Stdout) { // churn, cluster
		rep.WriteTable(os.Stdout)
	}
	if *jsonPath != "" {
		if err := rep.WriteJSON(*jsonPath); err != nil {
			return err
		}
	}
	if *reportPath != "" {
		if err := bench.WriteHTMLFile(*reportPath, "pushbench", rep); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return nil
}

// chaosFlags are the flags the chaos scenario reads.
type chaosFlags struct {
	startPushring, pushringArgs, natsBin string
	nodes, members                       int
	rate, directRate                     float64
	duration, drain                      time.Duration
	faults, jsonPath, reportPath         string
	quiet                                bool
}

// runChaos runs the chaos scenario (bench/README.md): pushring only, one
// run; --members, --rate, --duration and --drain have defaults of their
// own here when not given (300 members, 40 group messages/s, 60 s of
// traffic, 30 s to settle).
func runChaos(args []string, set map[string]bool, f chaosFlags) error {
	for _, name := range []string{"baseline", "tls", "procs", "messages", "target", "groups", "devices", "qos"} {
		if set[name] {
			return fmt.Errorf("--%s does not apply to --scenario chaos", name)
		}
	}
	if set["runs"] {
		return errors.New("--runs does not apply to --scenario chaos (one run: its windows are not medians)")
	}
	if f.startPushring == "" {
		return errors.New("--scenario chaos starts its nodes itself: it needs --start-pushring")
	}
	cfg := bench.ChaosConfig{Bin: f.startPushring, Extra: strings.Fields(f.pushringArgs), Nodes: f.nodes,
		Members: 300, GroupRate: 40, DirectRate: f.directRate, Duration: 60 * time.Second, Settle: 30 * time.Second}
	if set["members"] {
		cfg.Members = f.members
	}
	if set["rate"] {
		cfg.GroupRate = f.rate
	}
	if set["duration"] {
		cfg.Duration = f.duration
	}
	if set["drain"] {
		cfg.Settle = f.drain
	}
	if cfg.Members < 2 || cfg.GroupRate <= 0 || cfg.DirectRate <= 0 || cfg.Duration <= 0 {
		return errors.New("chaos: --members must be at least 2, --rate, --direct-rate and --duration positive")
	}
	var err error
	if cfg.Faults, err = chaos.ParseFaults(f.faults, f.nodes); err != nil {
		return fmt.Errorf("--faults: %w", err)
	}
	if cfg.NATSBin = f.natsBin; cfg.NATSBin == "" {
		if cfg.NATSBin, err = bench.NATSServerPath(); err != nil {
			return err
		}
	}
	if !f.quiet {
		cfg.Log = func(format string, a ...any) { fmt.Fprintf(os.Stderr, "pushbench: "+format+"\n", a...) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := &bench.Report{Machine: bench.DescribeMachine(), Command: append([]string{"pushbench"}, args...)}
	rep.Results = []bench.Result{bench.RunChaos(ctx, cfg)}
	rep.WriteScenarioTable(os.Stdout)
	if f.jsonPath != "" {
		if err := rep.WriteJSON(f.jsonPath); err != nil {
			return err
		}
	}
	if f.reportPath != "" {
		if err := bench.WriteHTMLFile(f.reportPath, "pushbench", rep); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if res := rep.Results[0]; res.Error != "" {
		return errors.New(res.Error)
	}
	return nil
}
