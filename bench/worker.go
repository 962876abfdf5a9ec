package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pushring/pushring/bench/hist"
	"github.com/pushring/pushring/mqtt/mqttc"
)

// --procs N > 1 spreads a run's receiving clients (fanout members, direct
// users, idle clients) over N worker processes: the harness re-executes
// its own binary as `<exe> worker` (WorkerArg; the binary must then call
// ServeWorker), so no process opens more than its share of sockets (one
// process may open at most 20,000 files here). The coordinator keeps the
// setup, the publishers, the timing and the table; a worker connects its
// share, counts deliveries with the same per-receiver accounting as one
// process (receiver.onPublish) and sends its sums back.
//
// Protocol, one JSON object per line: the coordinator writes the job to
// the worker's stdin; the worker answers "connected" (or "error") on its
// stdout. Fanout and direct then get "arm" (the window; answered
// "armed", after which the worker reports its delivery count as "total"
// every 50 ms) and "stop" (the worker closes its clients and answers
// "result"). Idle gets "stop" only. EOF on stdin ends a worker.

// WorkerArg is the hidden subcommand that starts a worker process.
const WorkerArg = "worker"

// workerTick is how often an armed worker reports its delivery count.
const workerTick = 50 * time.Millisecond

// workerMsg is every message of the protocol; Op says which.
type workerMsg struct {
	Op string `json:"op"`

	// job (coordinator → worker): "fanout" (members counted per
	// publisher) or "idle" (silent clients).
	Clients        []Client `json:"clients,omitempty"` // Addr set: where each one dials
	SourceAddrs    []string `json:"source_addrs,omitempty"`
	QoS            byte     `json:"qos,omitempty"`
	Publishers     int      `json:"publishers,omitempty"`
	SeriesLen      int      `json:"series_len,omitempty"`
	BufSize        int      `json:"buf_size,omitempty"`
	ConnectWorkers int      `json:"connect_workers,omitempty"`
	CAPEM          string   `json:"ca_pem,omitempty"`     // set: dial over TLS, verifying the server against this CA
	Persistent     bool     `json:"persistent,omitempty"` // clients ask for persistent sessions
	MQTT5          bool     `json:"mqtt5,omitempty"`      // clients speak MQTT 5.0
	WebSocket      string   `json:"web_socket,omitempty"` // set: dial MQTT over WebSocket at this path

	// arm: the window as unix ns (window's t0, start, end).
	T0    int64 `json:"t0,omitempty"`
	Start int64 `json:"start,omitempty"`
	End   int64 `json:"end,omitempty"`

	// worker → coordinator
	Connected  int           `json:"connected,omitempty"`
	TLSVersion uint16        `json:"tls_version,omitempty"` // connected: the version the worker's clients negotiated
	Total      uint64        `json:"total,omitempty"`
	Result     *workerResult `json:"result,omitempty"`
	Error      string        `json:"error,omitempty"`
}

// workerResult is a worker's receivers summed: what run() folds from
// each receiver, folded over the worker's.
type workerResult struct {
	Window   uint64          `json:"window"`
	Distinct uint64          `json:"distinct"`
	Dups     uint64          `json:"dups"`
	Bad      uint64          `json:"bad"`
	Hist     *hist.Histogram `json:"hist"`
	Series   []uint64        `json:"series"` // per seriesStep from t0, up to the stop
}

// ServeWorker runs one worker process: it reads the job and commands from
// in and writes its answers to out (pushbench worker: stdin and stdout).
func ServeWorker(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(bufio.NewReader(in))
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(m workerMsg) error {
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(m)
	}
	var job workerMsg
	if err := dec.Decode(&job); err != nil {
		return fmt.Errorf("reading the job: %w", err)
	}
	if job.ConnectWorkers <= 0 {
		job.ConnectWorkers = 32
	}
	var ct *clientTLS
	if job.CAPEM != "" {
		var err error
		if ct, err = newClientTLS([]byte(job.CAPEM)); err != nil {
			return send(workerMsg{Op: "error", Error: err.Error()})
		}
	}
	var w window
	w.start.Store(1<<63 - 1)
	w.end.Store(1<<63 - 1)
	w.t0.Store(1<<63 - 1)

	// Connect and subscribe, as run() and RunIdle do in one process.
	conns := make([]*mqttc.Conn, len(job.Clients))
	var loops sync.WaitGroup
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		loops.Wait()
	}
	defer closeAll()
	err := parallel(context.Background(), len(job.Clients), job.ConnectWorkers, func(ctx context.Context, i int) error {
		m := job.Clients[i]
		o := mqttc.Options{ClientID: m.ID, Username: m.Username, Password: m.Password, BufSize: job.BufSize, TLS: ct.config(), Persistent: job.Persistent, WebSocket: job.WebSocket, MQTT5: job.MQTT5}
		if len(job.SourceAddrs) > 0 {
			o.LocalAddr = job.SourceAddrs[i%len(job.SourceAddrs)]
		}
		c, err := mqttc.Dial(m.Addr, o)
		if err != nil {
			return fmt.Errorf("client %s: %w", m.ID, err)
		}
		if err := c.Subscribe(m.Filter, job.QoS, 10*time.Second); err != nil {
			c.Close()
			return fmt.Errorf("client %s: %w", m.ID, err)
		}
		conns[i] = c
		return nil
	})
	if err != nil {
		if serr := send(workerMsg{Op: "error", Error: err.Error()}); serr != nil {
			return err
		}
		return nil // the coordinator reports it
	}
	var recv []*receiver
	if job.Op == "fanout" {
		recv = make([]*receiver, len(conns))
		for i, c := range conns {
			recv[i] = &receiver{conn: c, h: hist.New(), seen: make([][]uint64, job.Publishers), series: make([]uint32, job.SeriesLen)}
		}
	}
	for i, c := range conns {
		loops.Add(1)
		go func() {
			defer loops.Done()
			if recv == nil {
				c.Run(nil)
				return
			}
			r := recv[i]
			r.conn.Run(func(_, payload []byte) { r.onPublish(&w, payload) })
		}()
	}
	if err := send(workerMsg{Op: "connected", Connected: len(conns), TLSVersion: ct.lastVersion()}); err != nil {
		return err
	}

	tick := make(chan struct{})
	var ticking sync.WaitGroup
	defer func() { close(tick); ticking.Wait() }()
	for {
		var m workerMsg
		if err := dec.Decode(&m); err != nil {
			return nil // the coordinator is gone (EOF): close and exit
		}
		switch m.Op {
		case "arm":
			w.t0.Store(m.T0)
			w.start.Store(m.Start)
			w.end.Store(m.End)
			if err := send(workerMsg{Op: "armed"}); err != nil {
				return err
			}
			ticking.Add(1)
			go func() {
				defer ticking.Done()
				t := time.NewTicker(workerTick)
				defer t.Stop()
				for {
					select {
					case <-tick:
						return
					case <-t.C:
					}
					var n uint64
					for _, r := range recv {
						n += r.total.Load()
					}
					if send(workerMsg{Op: "total", Total: n}) != nil {
						return
					}
				}
			}()
		case "stop":
			closeAll()
			conns = nil
			end := 0
			if t0 := w.t0.Load(); t0 != 1<<63-1 && job.SeriesLen > 0 {
				end = max(min(int((time.Now().UnixNano()-t0)/int64(seriesStep))+1, job.SeriesLen), 0)
			}
			return send(workerMsg{Op: "result", Result: summarize(recv, end)})
		default:
			return fmt.Errorf("unknown command %q", m.Op)
		}
	}
}

// summarize sums a worker's receivers (read loops ended), the series up
// to end.
func summarize(recv []*receiver, end int) *workerResult {
	res := &workerResult{Hist: hist.New(), Series: make([]uint64, end)}
	for _, r := range recv {
		for i := range res.Series {
			res.Series[i] += uint64(r.series[i])
		}
		res.Hist.Merge(r.h)
		res.Window += r.window
		res.Distinct += r.distinct
		res.Dups += r.dups
		res.Bad += r.bad
	}
	return res
}

// workerProc is one worker process, seen from the coordinator.
type workerProc struct {
	idx   int
	cmd   *exec.Cmd
	stdin io.WriteCloser
	enc   *json.Encoder
	msgs  chan workerMsg // every answer but "total"; closed at EOF
	total atomic.Uint64  // the last "total"
	exit  chan struct{}  // closed when the process has exited
	err   error          // its exit status, once exit is closed
}

// workerPool is the receiving side of a run in worker processes.
type workerPool struct {
	procs []*workerProc
}

// startWorkers starts n worker processes of this very binary.
func startWorkers(n int) (*workerPool, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("worker processes: %w", err)
	}
	p := &workerPool{}
	for i := range n {
		cmd := exec.Command(exe, WorkerArg)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			p.close()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			p.close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			p.close()
			return nil, fmt.Errorf("worker process %d: %w", i, err)
		}
		wp := &workerProc{idx: i, cmd: cmd, stdin: stdin, enc: json.NewEncoder(stdin),
			msgs: make(chan workerMsg, 4), exit: make(chan struct{})}
		p.procs = append(p.procs, wp)
		go func() {
			dec := json.NewDecoder(bufio.NewReader(stdout))
			for {
				var m workerMsg
				if err := dec.Decode(&m); err != nil {
					break
				}
				if m.Op == "total" {
					wp.total.Store(m.Total)
					continue
				}
				wp.msgs <- m
			}
			close(wp.msgs)
			wp.err = cmd.Wait()
			close(wp.exit)
		}()
	}
	return p, nil
}

// await waits for worker w's answer op (an "error" answer, an exit or ctx
// end is an error).
func (w *workerProc) await(ctx context.Context, op string, timeout time.Duration) (workerMsg, error) {
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case m, ok := <-w.msgs:
		switch {
		case !ok:
			<-w.exit
			return m, fmt.Errorf("worker %d exited (%v) before %q", w.idx, w.err, op)
		case m.Op == "error":
			return m, fmt.Errorf("worker %d: %s", w.idx, m.Error)
		case m.Op != op:
			return m, fmt.Errorf("worker %d: %q, want %q", w.idx, m.Op, op)
		}
		return m, nil
	case <-tc:
		return workerMsg{}, fmt.Errorf("worker %d: no %q after %v", w.idx, op, timeout)
	case <-ctx.Done():
		return workerMsg{}, context.Cause(ctx)
	}
}

// each sends msg(i) to every worker i (if msg is not nil) and waits for
// their answers op; it returns them in worker order, or the first error
// (and how many other workers failed).
func (p *workerPool) each(ctx context.Context, msg func(i int) workerMsg, op string, timeout time.Duration) ([]workerMsg, error) {
	if msg != nil {
		for i, w := range p.procs {
			if err := w.enc.Encode(msg(i)); err != nil {
				return nil, fmt.Errorf("worker %d: %w", i, err)
			}
		}
	}
	out := make([]workerMsg, len(p.procs))
	var first error
	failed := 0
	for i, w := range p.procs {
		m, err := w.await(ctx, op, timeout)
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
		out[i] = m
	}
	if failed > 1 {
		first = fmt.Errorf("%w (and %d more workers failed)", first, failed-1)
	}
	return out, first
}

// workerAddrs are worker w's (of n) source addresses: 127.0.0.(2+w),
// then every n-th address after it (127.0.0.(2+w+n), …), per of them, so
// no two workers share an address (127.0.0.1 is the coordinator's).
func workerAddrs(w, n, per int) []string {
	out := make([]string, max(per, 1))
	for k := range out {
		a := 2 + w + k*n
		out[k] = fmt.Sprintf("127.0.%d.%d", a/256, a%256)
	}
	return out
}

// connect hands each worker its share of clients (client i to worker
// i mod n, dialing c.Addr or the system's address) and waits until every
// one is connected and subscribed. addrs is the number of source
// addresses over all workers (0: one per 5,000 clients, at least one per
// worker).
// connectInWorkers is the --procs > 1 path of fanout and idle: it starts
// procs workers, has them connect job.Clients (over addrs source
// addresses; 0: each worker's own default) and records the split in res.
// A non-nil pool is returned also with an error; the caller closes it.
func connectInWorkers(ctx context.Context, sys System, procs int, job workerMsg, addrs int, res *Result) (*workerPool, error) {
	pool, err := startWorkers(procs)
	if err != nil {
		return nil, err
	}
	res.Procs = procs
	res.Note += procsNote(procs, len(job.Clients))
	return pool, pool.connect(ctx, sys, job, addrs)
}

func (p *workerPool) connect(ctx context.Context, sys System, job workerMsg, addrs int) error {
	n := len(p.procs)
	shares := make([][]Client, n)
	for i, c := range job.Clients {
		c.Addr = dialAddr(sys, c)
		shares[i%n] = append(shares[i%n], c)
	}
	if addrs <= 0 {
		addrs = len(job.Clients)/5000 + 1
	}
	per := (addrs + n - 1) / n
	ct := tlsOf(sys)
	out, err := p.each(ctx, func(i int) workerMsg {
		m := job
		m.Clients, m.SourceAddrs, m.CAPEM, m.WebSocket = shares[i], workerAddrs(i, n, per), ct.ca(), wsOf(sys)
		return m
	}, "connected", 0)
	for _, m := range out {
		ct.saw(m.TLSVersion)
	}
	return err
}

// arm sends the window to every worker and waits until all have it.
func (p *workerPool) arm(ctx context.Context, w *window) error {
	_, err := p.each(ctx, func(int) workerMsg {
		return workerMsg{Op: "arm", T0: w.t0.Load(), Start: w.start.Load(), End: w.end.Load()}
	}, "armed", 30*time.Second)
	return err
}

// total is the sum of the workers' last reported delivery counts (nil: 0).
func (p *workerPool) total() (n uint64) {
	if p == nil {
		return 0
	}
	for _, w := range p.procs {
		n += w.total.Load()
	}
	return n
}

// cpuSeconds is the workers' CPU time so far, from /proc (nil: 0).
func (p *workerPool) cpuSeconds() (s float64) {
	if p == nil {
		return 0
	}
	for _, w := range p.procs {
		if ps, err := ReadProc(w.cmd.Process.Pid); err == nil {
			s += ps.CPUSeconds
		}
	}
	return s
}

// stop has every worker close its clients and returns their results.
func (p *workerPool) stop(ctx context.Context) ([]*workerResult, error) {
	ms, err := p.each(ctx, func(int) workerMsg { return workerMsg{Op: "stop"} }, "result", 2*time.Minute)
	if err != nil {
		return nil, err
	}
	out := make([]*workerResult, len(ms))
	for i, m := range ms {
		if m.Result == nil || m.Result.Hist == nil {
			return nil, fmt.Errorf("worker %d: result without figures", i)
		}
		out[i] = m.Result
	}
	return out, nil
}

// close ends the workers: EOF on their stdin (they close their clients
// and exit), killed after 30 s. Safe on nil and more than once.
func (p *workerPool) close() {
	if p == nil {
		return
	}
	for _, w := range p.procs {
		w.stdin.Close()
	}
	for _, w := range p.procs {
		select {
		case <-w.exit:
		case <-time.After(30 * time.Second):
			w.cmd.Process.Kill()
			<-w.exit
		}
	}
	p.procs = nil
}

// foldWorkers adds the workers' results to res and h as run() adds its
// receivers': window deliveries, duplicates, the series, the histogram;
// it returns their distinct deliveries.
func foldWorkers(res *Result, h *hist.Histogram, results []*workerResult) (distinct uint64) {
	var bad uint64
	for _, r := range results {
		for i, n := range r.Series {
			if i < len(res.Series) {
				res.Series[i] += n
			}
		}
		h.Merge(r.Hist)
		res.Deliveries += r.Window
		res.Duplicates += r.Dups
		distinct += r.Distinct
		bad += r.Bad
	}
	if bad > 0 {
		res.Note += fmt.Sprintf("; %d malformed payloads", bad)
	}
	return distinct
}

// procsNote is the note line's words on the worker processes.
func procsNote(n, clients int) string {
	return fmt.Sprintf("; receiving clients in %d worker processes (about %d each), harness CPU is the coordinator's and theirs", n, (clients+n-1)/n)
}

// nofileLimit is the soft open-files limit of process pid from
// /proc/<pid>/limits, 0 if unknown.
func nofileLimit(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			var soft int
			if _, err := fmt.Sscan(rest, &soft); err == nil {
				return soft
			}
		}
	}
	return 0
}

// limitNote says when clients come within 1,000 of what one process here
// can hold: the server's (its open-files limit from /proc/<pid>/limits; a
// pushring node holds ~19,000 connections at 20,000 files, mosquitto
// about 19,900), or the harness's share per process
// (procs of them, each with this process's limit). "" when neither.
func limitNote(sys System, clients, procs int) string {
	var out string
	if pid := sys.PID(); pid > 0 {
		if lim := nofileLimit(pid); lim > 0 && clients > lim-1000 {
			if strings.HasPrefix(sys.Name(), "pushring") {
				out += fmt.Sprintf("; %d clients exceed what one pushring node process holds here: at most ~%d connections (it may open %d files, /proc/%d/limits)",
					clients, lim-1000, lim, pid)
			} else {
				out += fmt.Sprintf("; %d clients are at or over what one %s process can hold here: it may open at most %d files (/proc/%d/limits)",
					clients, sys.Name(), lim, pid)
			}
		}
	}
	if lim := nofileLimit(os.Getpid()); lim > 0 && (clients+procs-1)/max(procs, 1) > lim-1000 {
		out += fmt.Sprintf("; one harness process holds at most ~%d clients here (%d open files): more --procs", lim-1000, lim)
	}
	return out
}
