package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pushring/pushring/bench/hist"
	"github.com/pushring/pushring/client"
	"github.com/pushring/pushring/mqtt/mqttc"
)

// ChurnConfig is the churn scenario: Workers concurrent clients that
// connect, subscribe and disconnect over and over (pushring: first with
// Users password users, each cycle a login, then with devices).
type ChurnConfig struct {
	Users            int // pushring: users created for the login phase
	Workers          int
	QoS              byte // of the subscriptions
	Duration, Warmup time.Duration
	Log              func(format string, args ...any)
}

// ChurnPlan is what a system set up for churn.
type ChurnPlan struct {
	// Users log in (Login) before each connect: Password is the
	// password, the token login returns is the MQTT password. Empty on
	// plain brokers.
	Users []Client
	// Devices connect without a login (device keys; anonymous on plain
	// brokers), one per worker.
	Devices []Client
	Login   func(ctx context.Context, id, password string) (token string, err error)
	Note    string
}

// ChurnSystem is a System that can set up the churn scenario.
type ChurnSystem interface {
	SetupChurn(ctx context.Context, users, workers int) (*ChurnPlan, error)
}

// SetupChurn creates, under a per-run prefix, users password users
// (POST /v1/users: the node hashes each password with argon2id) and one
// device per worker.
func (s *Pushring) SetupChurn(ctx context.Context, users, workers int) (*ChurnPlan, error) {
	if s.prefix == "" {
		s.prefix = "pb" + randHex(3) + "-"
	}
	plan := &ChurnPlan{
		Users: make([]Client, users),
		Login: s.login,
		Note: "login phase: users (POST /v1/sessions, argon2id on the node, then CONNECT with the token); " +
			"connect phase: devices (key auth, no argon2); both subscribe /private/<id>/#",
	}
	if err := parallel(ctx, users, 8, func(ctx context.Context, i int) error {
		id := s.prefix + "u" + strconv.Itoa(i)
		pw := randHex(12)
		if _, err := s.api.CreateUser(ctx, id, pw); err != nil {
			return err
		}
		plan.Users[i] = Client{ID: id, Username: id, Password: pw, Filter: "/private/" + id + "/#"}
		return nil
	}); err != nil {
		return nil, err
	}
	var err error
	if plan.Devices, err = s.privateDevices(ctx, "c", workers); err != nil {
		return nil, err
	}
	return plan, nil
}

// login is POST /v1/sessions (no Authorization): the session token.
func (s *Pushring) login(ctx context.Context, id, password string) (string, error) {
	out, err := s.api.Login(ctx, id, password)
	var ae *client.APIError
	switch {
	case errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests:
		return "", errors.New("login: 429 rate limited (a node's default --login-rate is 2/s per address, burst 50; the node pushbench starts has -1)")
	case err != nil:
		return "", fmt.Errorf("login: %w", err)
	case out.Token == "":
		return "", fmt.Errorf("login: no token in %q", out.Body())
	}
	return out.Token, nil
}

// SetupChurn: one anonymous client per worker, each subscribing to its
// own topic /c/<id>; no logins.
func (b *Broker) SetupChurn(ctx context.Context, users, workers int) (*ChurnPlan, error) {
	plan := &ChurnPlan{Devices: make([]Client, workers), Note: "anonymous; connect, subscribe /c/<id>, disconnect (no logins)"}
	for i := range plan.Devices {
		id := "w" + strconv.Itoa(i)
		plan.Devices[i] = Client{ID: id, Filter: "/c/" + id}
	}
	return plan, nil
}

// churn steps, each with its own histogram and count.
const (
	stepLogin = iota
	stepTokenConnect
	stepConnect
	stepSubscribe
	nSteps
)

type churnStats struct {
	h      [nSteps]*hist.Histogram
	n      [nSteps]uint64 // completed inside the window
	errors uint64         // over warmup and window
	first  error
}

func newChurnStats() *churnStats {
	s := &churnStats{}
	for i := range s.h {
		s.h[i] = hist.New()
	}
	return s
}

func (s *churnStats) merge(o *churnStats) {
	for i := range s.h {
		s.h[i].Merge(o.h[i])
		s.n[i] += o.n[i]
	}
	s.errors += o.errors
	if s.first == nil {
		s.first = o.first
	}
}

// churnPhase runs op on workers goroutines for warmup+dur; op calls
// done(step, t0) as each step ends, which counts and records the step if
// it ended inside the window. It returns the merged stats and the
// server's and the harness's CPU seconds in the window.
func churnPhase(ctx context.Context, pid, workers int, warmup, dur time.Duration,
	op func(ctx context.Context, w int, done func(step int, t0 time.Time)) error) (*churnStats, float64, float64) {
	start := time.Now()
	ws, we := start.Add(warmup), start.Add(warmup+dur)
	all := newChurnStats()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := newChurnStats()
			done := func(step int, t0 time.Time) {
				if now := time.Now(); !now.Before(ws) && now.Before(we) {
					st.h[step].Record(int64(now.Sub(t0)))
					st.n[step]++
				}
			}
			for ctx.Err() == nil && time.Now().Before(we) {
				if err := op(ctx, w, done); err != nil && ctx.Err() == nil {
					st.errors++
					if st.first == nil {
						st.first = err
					}
					sleepCtx(ctx, 20*time.Millisecond) // no hot loop against a refusing server
				}
			}
			mu.Lock()
			all.merge(st)
			mu.Unlock()
		}()
	}
	sleepCtx(ctx, time.Until(ws))
	var srv0 ProcSample
	if pid > 0 {
		srv0, _ = ReadProc(pid)
	}
	self0, _ := ReadProc(0)
	sleepCtx(ctx, time.Until(we))
	self1, _ := ReadProc(0)
	var srvCPU float64
	if pid > 0 {
		if srv1, err := ReadProc(pid); err == nil {
			srvCPU = srv1.CPUSeconds - srv0.CPUSeconds
		}
	}
	wg.Wait()
	return all, srvCPU, self1.CPUSeconds - self0.CPUSeconds
}

// RunChurn runs the churn scenario against sys and returns its row: on
// pushring a login phase (users: login, CONNECT with the token,
// SUBSCRIBE, DISCONNECT) and a connect phase (devices: CONNECT,
// SUBSCRIBE, DISCONNECT), each for cfg.Warmup + cfg.Duration; on a plain
// broker the connect phase only (anonymous).
func RunChurn(ctx context.Context, sys System, cfg ChurnConfig) (res Result) {
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	res = Result{System: sys.Name(), Scenario: "churn", QoS: int(cfg.QoS), Workers: cfg.Workers,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds()}
	logf := cfg.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	ct := tlsOf(sys)
	defer func() { res.TLS = ct.negotiated() }()
	fail := func(err error) Result { res.Error = err.Error(); return res }
	cs, ok := sys.(ChurnSystem)
	if !ok {
		return fail(fmt.Errorf("%s cannot run churn", sys.Name()))
	}
	t0 := time.Now()
	plan, err := cs.SetupChurn(ctx, cfg.Users, cfg.Workers)
	if err != nil {
		return fail(fmt.Errorf("setup: %w", err))
	}
	res.SetupS = time.Since(t0).Seconds()
	res.Members, res.Devices, res.Connections = len(plan.Users), len(plan.Devices), cfg.Workers
	res.Note = plan.Note
	logf("%s: set up %d users, %d devices in %.1f s", sys.Name(), len(plan.Users), len(plan.Devices), res.SetupS)

	nsrc := min(cfg.Workers, 64) // worker w dials from 127.0.0.(w%64+1): ephemeral ports, per-address limits
	dial := func(w int, c Client, password string) (*mqttc.Conn, error) {
		return mqttc.Dial(dialAddr(sys, c), mqttc.Options{ClientID: c.ID, Username: c.Username, Password: password,
			LocalAddr: sourceAddr(w, nsrc), BufSize: 4 << 10, TLS: ct.config(), WebSocket: wsOf(sys)})
	}
	subscribe := func(c *mqttc.Conn, cl Client, done func(int, time.Time), step int) error {
		t := time.Now()
		if err := c.Subscribe(cl.Filter, cfg.QoS, 10*time.Second); err != nil {
			c.Abort()
			return fmt.Errorf("%s: %w", cl.ID, err)
		}
		if step >= 0 {
			done(step, t)
		}
		c.Close()
		return nil
	}
	ms := func(ns int64) *float64 { v := float64(ns) / 1e6; return &v }
	rate := func(n uint64) *float64 { v := float64(n) / cfg.Duration.Seconds(); return &v }
	var srvCPU, selfCPU float64
	var firstErr error
	pid := sys.PID()

	if len(plan.Users) > 0 && plan.Login != nil {
		workers := min(cfg.Workers, len(plan.Users))
		next := make([]int, workers) // worker w logs in as users w, w+workers, … in turn
		st, sc, hc := churnPhase(ctx, pid, workers, cfg.Warmup, cfg.Duration, func(ctx context.Context, w int, done func(int, time.Time)) error {
			u := plan.Users[w+next[w]*workers]
			if next[w]++; w+next[w]*workers >= len(plan.Users) {
				next[w] = 0
			}
			t := time.Now()
			token, err := plan.Login(ctx, u.ID, u.Password)
			if err != nil {
				return fmt.Errorf("%s: %w", u.ID, err)
			}
			done(stepLogin, t)
			t = time.Now()
			c, err := dial(w, u, token)
			if err != nil {
				return fmt.Errorf("%s: connect: %w", u.ID, err)
			}
			done(stepTokenConnect, t)
			return subscribe(c, u, done, -1)
		})
		srvCPU, selfCPU, firstErr = sc, hc, st.first
		res.Errors += st.errors
		res.LoginsPerS = rate(st.n[stepLogin])
		res.LoginP50ms, res.LoginP99ms = ms(st.h[stepLogin].Quantile(0.5)), ms(st.h[stepLogin].Quantile(0.99))
		res.TokenConnectP50ms, res.TokenConnectP99ms = ms(st.h[stepTokenConnect].Quantile(0.5)), ms(st.h[stepTokenConnect].Quantile(0.99))
		res.Note += fmt.Sprintf("; login phase (%d workers): %.0f logins/s, %.0f token CONNECTs/s",
			workers, *res.LoginsPerS, *rate(st.n[stepTokenConnect]))
		logf("%s: %.0f logins/s (p50 %.1f ms, p99 %.1f ms), errors %d", sys.Name(), *res.LoginsPerS, *res.LoginP50ms, *res.LoginP99ms, st.errors)
	}
	if ctx.Err() != nil {
		return fail(context.Cause(ctx))
	}

	st, sc, hc := churnPhase(ctx, pid, len(plan.Devices), cfg.Warmup, cfg.Duration, func(ctx context.Context, w int, done func(int, time.Time)) error {
		d := plan.Devices[w]
		t := time.Now()
		c, err := dial(w, d, d.Password)
		if err != nil {
			return fmt.Errorf("%s: connect: %w", d.ID, err)
		}
		done(stepConnect, t)
		return subscribe(c, d, done, stepSubscribe)
	})
	srvCPU += sc
	res.HarnessCPUs = selfCPU + hc
	if pid > 0 {
		res.ServerCPUs = &srvCPU
		if p, err := ReadProc(pid); err == nil {
			rss := float64(p.RSSKiB) / 1024
			res.ServerRSSMiB = &rss
		}
	}
	if firstErr == nil {
		firstErr = st.first
	}
	res.Errors += st.errors
	res.ConnectsPerS = rate(st.n[stepConnect])
	res.ConnectP50ms, res.ConnectP99ms = ms(st.h[stepConnect].Quantile(0.5)), ms(st.h[stepConnect].Quantile(0.99))
	res.SubscribeP50ms, res.SubscribeP99ms = ms(st.h[stepSubscribe].Quantile(0.5)), ms(st.h[stepSubscribe].Quantile(0.99))
	logf("%s: %.0f connects/s (p50 %.2f ms, p99 %.2f ms), errors %d", sys.Name(), *res.ConnectsPerS, *res.ConnectP50ms, *res.ConnectP99ms, st.errors)
	if res.Errors > 0 {
		res.Note += fmt.Sprintf("; %d errors, the first: %v", res.Errors, firstErr)
	}
	if ctx.Err() != nil {
		return fail(context.Cause(ctx))
	}
	return res
}

// WriteChurnTable prints the churn rows: logins (pushring), connects
// (connect-only), step latencies, errors, and pushring's connects/s over
// each row's.
func (r *Report) WriteChurnTable(out io.Writer) {
	tw := newTable(out)
	fmt.Fprintln(tw, "system\tworkers\tlogins/s\tlogin p50 ms\tlogin p99 ms\ttoken CONNECT p50 ms\tp99 ms\tconnects/s\tCONNECT p50 ms\tp99 ms\tSUBSCRIBE p50 ms\tp99 ms\terrors\tsrv CPU s\tharness CPU s\tpushring/this connects/s\t")
	var pr *float64
	for _, x := range r.Results {
		if strings.TrimSuffix(x.System, TLSSuffix) == "pushring" && x.Error == "" && x.Scenario == "churn" {
			pr = x.ConnectsPerS
		}
	}
	for _, x := range r.Results {
		if x.Error != "" {
			fmt.Fprintf(tw, "%s\tfailed\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", x.System)
			continue
		}
		ratio := "-"
		if pr != nil && x.ConnectsPerS != nil && *x.ConnectsPerS > 0 {
			ratio = fmt.Sprintf("%.2f", *pr / *x.ConnectsPerS)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%.2f\t%s\t\n", x.System, x.Workers,
			optf(x.LoginsPerS, "%.0f"), optf(x.LoginP50ms, "%.1f"), optf(x.LoginP99ms, "%.1f"),
			optf(x.TokenConnectP50ms, "%.2f"), optf(x.TokenConnectP99ms, "%.2f"),
			optf(x.ConnectsPerS, "%.0f"), optf(x.ConnectP50ms, "%.2f"), optf(x.ConnectP99ms, "%.2f"),
			optf(x.SubscribeP50ms, "%.2f"), optf(x.SubscribeP99ms, "%.2f"),
			x.Errors, optf(x.ServerCPUs, "%.2f"), x.HarnessCPUs, ratio)
	}
	tw.Flush()
	writeNotes(out, r.Results)
}
