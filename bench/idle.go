package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pushring/pushring/mqtt/mqttc"
)

// IdleConfig is the idle scenario: Clients connected, subscribed, silent
// clients; the server's RSS with them minus its RSS before, per client.
type IdleConfig struct {
	Clients        int
	QoS            byte          // of the subscriptions
	Settle         time.Duration // wait after the last connect before reading RSS
	SourceAddrs    int           // spread over 127.0.0.1..127.0.0.N; 0: one per 5,000 clients
	ConnectWorkers int
	Procs          int // > 1: the clients in this many worker processes, each on its own source addresses (worker.go)
	Log            func(format string, args ...any)
}

// sourceAddr is the i-th of n loopback source addresses ("" for n <= 1).
func sourceAddr(i, n int) string {
	if n <= 1 {
		return ""
	}
	k := i % n
	return fmt.Sprintf("127.0.%d.%d", (k+1)/256, (k+1)%256)
}

// RunIdle runs the idle scenario against sys and returns its row.
func RunIdle(ctx context.Context, sys System, cfg IdleConfig) (res Result) {
	res = Result{System: sys.Name(), Scenario: "idle", QoS: int(cfg.QoS), Members: cfg.Clients}
	logf := cfg.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if cfg.ConnectWorkers <= 0 {
		cfg.ConnectWorkers = 32
	}
	if cfg.SourceAddrs <= 0 {
		cfg.SourceAddrs = cfg.Clients/5000 + 1 // ports in TIME_WAIT from an earlier run must not run out
	}
	ct := tlsOf(sys)
	defer func() { res.TLS = ct.negotiated() }()
	fail := func(err error) Result { res.Error = err.Error(); return res }
	pid := sys.PID()
	if pid <= 0 {
		return fail(errors.New("idle needs the server's pid (--start-pushring or --server-pid)"))
	}

	t0 := time.Now()
	plan, err := sys.SetupIdle(ctx, cfg.Clients)
	if err != nil {
		return fail(fmt.Errorf("setup: %w", err))
	}
	res.SetupS = time.Since(t0).Seconds()
	res.Note = plan.Note
	logf("%s: set up %d clients in %.1f s", sys.Name(), len(plan.Members), res.SetupS)

	sleepCtx(ctx, cfg.Settle) // let the setup's garbage settle before the baseline reading
	before, err := ReadProc(pid)
	if err != nil {
		return fail(fmt.Errorf("reading the server's RSS: %w", err))
	}

	t0 = time.Now()
	conns := make([]*mqttc.Conn, len(plan.Members))
	var loops sync.WaitGroup
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		loops.Wait()
	}()
	limit := limitNote(sys, len(plan.Members), cfg.Procs) // the server's own open-files limit, said when exceeded
	res.Note += limit
	var pool *workerPool // --procs > 1: the clients are in worker processes, conns stays empty
	if cfg.Procs > 1 {
		conns = nil
		pool, err = connectInWorkers(ctx, sys, cfg.Procs, workerMsg{Op: "idle", Clients: plan.Members, QoS: cfg.QoS, BufSize: 512,
			ConnectWorkers: cfg.ConnectWorkers}, cfg.SourceAddrs, &res)
		if pool != nil {
			defer pool.close()
		}
	} else {
		err = parallel(ctx, len(plan.Members), cfg.ConnectWorkers, func(ctx context.Context, i int) error {
			m := plan.Members[i]
			c, err := mqttc.Dial(sys.MQTTAddr(), mqttc.Options{ClientID: m.ID, Username: m.Username, Password: m.Password,
				LocalAddr: sourceAddr(i, cfg.SourceAddrs), BufSize: 512, TLS: ct.config(), WebSocket: wsOf(sys)})
			if err != nil {
				return fmt.Errorf("client %s: %w", m.ID, err)
			}
			if err := c.Subscribe(m.Filter, cfg.QoS, 10*time.Second); err != nil {
				c.Close()
				return fmt.Errorf("client %s: %w", m.ID, err)
			}
			conns[i] = c
			return nil
		})
	}
	if err != nil {
		return fail(fmt.Errorf("connect: %w%s", err, limit))
	}
	for _, c := range conns {
		loops.Add(1)
		go func() { defer loops.Done(); c.Run(nil) }()
	}
	res.Connections = len(plan.Members)
	res.ConnectS = time.Since(t0).Seconds()
	logf("%s: %d idle connections in %.1f s (%d source addresses)", sys.Name(), res.Connections, res.ConnectS, cfg.SourceAddrs)

	self0, _ := ReadProc(0)
	workers0 := pool.cpuSeconds()
	srv0, _ := ReadProc(pid)
	sleepCtx(ctx, cfg.Settle)
	self1, _ := ReadProc(0)
	workers1 := pool.cpuSeconds()
	after, err := ReadProc(pid)
	if err != nil {
		return fail(fmt.Errorf("reading the server's RSS: %w", err))
	}
	cpu := after.CPUSeconds - srv0.CPUSeconds
	rss := float64(after.RSSKiB) / 1024
	per := float64(after.RSSKiB-before.RSSKiB) / float64(res.Connections)
	res.ServerCPUs, res.ServerRSSMiB, res.KiBPerConn = &cpu, &rss, &per
	res.HarnessCPUs = self1.CPUSeconds - self0.CPUSeconds + workers1 - workers0
	res.DurationS = cfg.Settle.Seconds()
	res.Note += fmt.Sprintf("; server RSS %.1f MiB before connecting, %.1f MiB with %d clients after %v",
		float64(before.RSSKiB)/1024, rss, res.Connections, cfg.Settle)
	return res
}
