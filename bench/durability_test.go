package bench

import (
	"strings"
	"testing"
)

// TestParseCounters sums every series of a name, labelled or not, and
// leaves out names the node does not export.
func TestParseCounters(t *testing.T) {
	in := `# HELP pushring_journal_stored_total Messages the journal stream acknowledged.
# TYPE pushring_journal_stored_total counter
pushring_journal_stored_total 1200
pushring_journal_stored_bytes_total 1.5e+06
pushring_journal_stored_total_other 7
pushring_journal_store_errors_total{reason="timeout"} 2
pushring_journal_store_errors_total{reason="refused"} 3
pushring_mqtt_session_records_pos_batch_writes_total{result="ok"} 10
pushring_mqtt_session_records_pos_batch_writes_total{result="stale"} 1
`
	got, err := parseCounters(strings.NewReader(in), durableMetrics)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{metricStored: 1200, metricStoredBytes: 1.5e6, metricStoreErrors: 5, metricPosWrites: 11}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if _, err := parseCounters(strings.NewReader("pushring_journal_stored_total x\n"), durableMetrics); err == nil {
		t.Error("a value that is not a number: no error")
	}
}

// TestFillDurable divides the counters' growth over a run by the
// messages sent and the distinct deliveries.
func TestFillDurable(t *testing.T) {
	a := map[string]float64{metricStored: 100, metricStoredBytes: 10000, metricPosWrites: 5, metricNATSOut: 1000, metricNATSIn: 2000}
	b := map[string]float64{metricStored: 300, metricStoredBytes: 30000, metricStoreErrors: 1, metricPosWrites: 15, metricRecWrites: 10,
		metricNATSOut: 1500, metricNATSIn: 2700}
	res := Result{Sent: 200}
	fillDurable(&res, a, b, 2000)
	switch {
	case res.StoredPerPublish == nil || *res.StoredPerPublish != 1:
		t.Errorf("stored per publish %v, want 1", res.StoredPerPublish)
	case *res.StoredBytesPerPublish != 100:
		t.Errorf("stored bytes per publish %v, want 100", *res.StoredBytesPerPublish)
	case *res.StoreErrors != 1:
		t.Errorf("store errors %v, want 1", *res.StoreErrors)
	case *res.RecordWritesPerDelivery != 0.01:
		t.Errorf("record writes per delivery %v, want 0.01", *res.RecordWritesPerDelivery)
	case res.NATSOutPerPublish == nil || *res.NATSOutPerPublish != 2.5 || *res.NATSInPerPublish != 3.5:
		t.Errorf("NATS messages per publish %v out, %v in, want 2.5 and 3.5", res.NATSOutPerPublish, res.NATSInPerPublish)
	}
	// A node without a journal: nothing filled.
	res = Result{Sent: 200}
	fillDurable(&res, map[string]float64{}, map[string]float64{}, 2000)
	if res.StoredPerPublish != nil || res.RecordWritesPerDelivery != nil {
		t.Errorf("figures without a journal: %+v", res)
	}
}
