package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// The node's counters of durable QoS 1, read from its /metrics before
// publishing and after the drain: what the journal stored, and the
// session-record writes (delivery positions, batched) that keep it
// replayable.
const (
	metricStored      = "pushring_journal_stored_total"
	metricStoredBytes = "pushring_journal_stored_bytes_total"
	metricStoreErrors = "pushring_journal_store_errors_total"
	metricPosWrites   = "pushring_mqtt_session_records_pos_batch_writes_total"
	metricRecWrites   = "pushring_mqtt_session_records_writes_total"
	metricNATSOut     = "pushring_nats_out_messages_total"
	metricNATSIn      = "pushring_nats_in_messages_total"
)

var durableMetrics = []string{metricStored, metricStoredBytes, metricStoreErrors, metricPosWrites, metricRecWrites, metricNATSOut, metricNATSIn}

// scrapeCounters returns, for each of names, the sum over its series
// (all label values) on the node's /metrics; a name the node does not
// export is absent from the map.
func (s *Pushring) scrapeCounters(ctx context.Context, names []string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.http+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseCounters(resp.Body, names)
}

// parseCounters sums, per name in names, the values of the Prometheus
// text format's samples of that name (any labels). A name with labels,
// `name{label="value"}`, is the one sample written exactly so.
func parseCounters(r io.Reader, names []string) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			continue
		}
		name := line[:end]
		for _, n := range names {
			labelled := strings.IndexByte(n, '{') >= 0
			if labelled && !(strings.HasPrefix(line, n) && strings.HasPrefix(line[len(n):], " ")) || !labelled && n != name {
				continue
			}
			rest := line[end:]
			if rest[0] == '{' { // labels
				rest = rest[strings.LastIndexByte(rest, '}')+1:]
			}
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return nil, fmt.Errorf("metrics: %q: %w", line, err)
			}
			out[n] += v
		}
	}
	return out, sc.Err()
}

// fillDurable sets res's per-publish and per-delivery figures from the
// counters before (a) and after (b) a run that sent res.Sent messages and
// made distinct deliveries. A node without a journal (no stored counter)
// leaves them nil.
func fillDurable(res *Result, a, b map[string]float64, distinct uint64) {
	if _, ok := b[metricStored]; !ok || res.Sent == 0 {
		return
	}
	d := func(name string) float64 { return b[name] - a[name] }
	per := func(v float64, n uint64) *float64 { x := v / float64(n); return &x }
	res.StoredPerPublish = per(d(metricStored), res.Sent)
	res.StoredBytesPerPublish = per(d(metricStoredBytes), res.Sent)
	errs := d(metricStoreErrors)
	res.StoreErrors = &errs
	if distinct > 0 {
		res.RecordWritesPerDelivery = per(d(metricPosWrites)+d(metricRecWrites), distinct)
	}
	if _, ok := b[metricNATSOut]; ok {
		res.NATSOutPerPublish = per(d(metricNATSOut), res.Sent)
		res.NATSInPerPublish = per(d(metricNATSIn), res.Sent)
	}
}
