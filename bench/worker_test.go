package bench

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pushring/pushring/bench/hist"
)

func TestWorkerAddrs(t *testing.T) {
	seen := map[string]int{}
	for w := range 3 {
		a := workerAddrs(w, 3, 4)
		if len(a) != 4 || a[0] != [...]string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}[w] {
			t.Fatalf("worker %d: %v", w, a)
		}
		for _, s := range a {
			if o, ok := seen[s]; ok {
				t.Fatalf("%s for workers %d and %d", s, o, w)
			}
			seen[s] = w
		}
	}
	if a := workerAddrs(1, 2, 200); a[199] != "127.0.1.145" { // 2 + 1 + 199×2 = 401
		t.Fatalf("last address %s", a[199])
	}
}

// The receivers' figures summed in two "workers", sent as JSON and folded
// by the coordinator equal those run() folds from the same receivers in
// one process: window deliveries, duplicates, distinct, series, histogram.
func TestWorkerFoldEqualsOneProcess(t *testing.T) {
	const pubs, members, seriesLen = 3, 6, 40
	base := time.Now().UnixNano()
	var w window
	w.t0.Store(base)
	w.start.Store(base + int64(500*time.Millisecond))
	w.end.Store(base + int64(1500*time.Millisecond))
	recv := make([]*receiver, members)
	for i := range recv {
		recv[i] = &receiver{h: hist.New(), seen: make([][]uint64, pubs), series: make([]uint32, seriesLen)}
	}
	payload := make([]byte, headerLen+4)
	for i, r := range recv {
		for range 2000 {
			binary.BigEndian.PutUint32(payload, uint32(rand.IntN(pubs)))
			binary.BigEndian.PutUint64(payload[4:], uint64(rand.IntN(3000))) // repeats: duplicates
			binary.BigEndian.PutUint64(payload[12:], uint64(time.Now().UnixNano()-rand.Int64N(int64(time.Second))))
			r.onPublish(&w, payload)
		}
		if i == 2 {
			r.onPublish(&w, payload[:5]) // malformed
		}
	}
	// The half of the receivers in the second worker get one more
	// delivery each, inside a window around now.
	now := time.Now().UnixNano()
	w.start.Store(now - int64(time.Second))
	w.end.Store(now + int64(time.Second))
	for _, r := range recv[members/2:] {
		binary.BigEndian.PutUint32(payload, 0)
		binary.BigEndian.PutUint64(payload[4:], 5000)
		binary.BigEndian.PutUint64(payload[12:], uint64(now-int64(3*time.Millisecond)))
		r.onPublish(&w, payload)
	}

	// One process, as run() folds its receivers.
	const end = 30
	one := Result{Series: make([]uint64, end)}
	h1 := hist.New()
	var distinct1 uint64
	for _, r := range recv {
		for i, n := range r.series[:end] {
			one.Series[i] += uint64(n)
		}
		h1.Merge(r.h)
		one.Deliveries += r.window
		one.Duplicates += r.dups
		distinct1 += r.distinct
	}

	// Two workers: summarize, JSON, foldWorkers.
	var results []*workerResult
	for _, part := range [][]*receiver{recv[:members/2], recv[members/2:]} {
		b, err := json.Marshal(workerMsg{Op: "result", Result: summarize(part, end-3)})
		if err != nil {
			t.Fatal(err)
		}
		var m workerMsg
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		// A worker stops before the coordinator computes end: its series
		// may be shorter; the missing tail is zero here by construction.
		results = append(results, m.Result)
	}
	for _, r := range recv {
		for _, n := range r.series[end-3 : end] {
			if n != 0 {
				t.Fatalf("series tail not empty: %v", r.series)
			}
		}
	}
	many := Result{Series: make([]uint64, end)}
	h2 := hist.New()
	distinct2 := foldWorkers(&many, h2, results)

	if one.Deliveries == 0 || one.Duplicates == 0 || distinct1 == 0 {
		t.Fatalf("test data: window %d dups %d distinct %d", one.Deliveries, one.Duplicates, distinct1)
	}
	if distinct1 != distinct2 || one.Deliveries != many.Deliveries || one.Duplicates != many.Duplicates {
		t.Errorf("distinct %d/%d window %d/%d dups %d/%d", distinct1, distinct2, one.Deliveries, many.Deliveries, one.Duplicates, many.Duplicates)
	}
	for i := range one.Series {
		if one.Series[i] != many.Series[i] {
			t.Fatalf("series differ at %d: %v vs %v", i, one.Series, many.Series)
		}
	}
	j1, _ := json.Marshal(h1)
	j2, _ := json.Marshal(h2)
	if string(j1) != string(j2) {
		t.Errorf("histograms differ:\n%s\n%s", j1, j2)
	}
	if many.Note != "; 1 malformed payloads" {
		t.Errorf("note %q", many.Note)
	}
}

// ServeWorker's protocol, with no clients: job → connected, arm → armed
// (then totals), stop → result.
func TestServeWorkerProtocol(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- ServeWorker(inR, outW); outW.Close() }()
	enc, dec := json.NewEncoder(inW), json.NewDecoder(outR)
	next := func() workerMsg {
		for {
			var m workerMsg
			if err := dec.Decode(&m); err != nil {
				t.Fatal(err)
			}
			if m.Op != "total" {
				return m
			}
		}
	}
	enc.Encode(workerMsg{Op: "fanout", Publishers: 2, SeriesLen: 10})
	if m := next(); m.Op != "connected" || m.Connected != 0 {
		t.Fatalf("%+v", m)
	}
	now := time.Now().UnixNano()
	enc.Encode(workerMsg{Op: "arm", T0: now, Start: now, End: now + 1e9})
	if m := next(); m.Op != "armed" {
		t.Fatalf("%+v", m)
	}
	// Armed, it reports totals: wait for two of them before stopping it.
	// (Only totals come until then, so read them here.)
	for totals := 0; totals < 2; totals++ {
		var m workerMsg
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		if m.Op != "total" || m.Total != 0 {
			t.Fatalf("armed: got %+v, want totals of 0", m)
		}
	}
	enc.Encode(workerMsg{Op: "stop"})
	m := next()
	if m.Op != "result" || m.Result == nil || m.Result.Hist == nil || m.Result.Hist.Count() != 0 || len(m.Result.Series) == 0 {
		t.Fatalf("%+v", m)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	inW.Close()
}
