package metrics

import (
	"errors"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/version"
)

// scrape serves src through Handler and parses the exposition back.
func scrape(t *testing.T, src Sources) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(Handler(NewRegistry(New(src), version.Get())))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s = %s", Path, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return fams
}

// value returns the value of the series of name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
	for _, m := range f.Metric {
		if !hasLabels(m, want...) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("metric %s%v missing", name, want)
	return 0
}

// histogramOf returns the histogram of name whose labels include want.
func histogramOf(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) *dto.Histogram {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing", name)
	}
	for _, m := range f.Metric {
		if hasLabels(m, want...) && m.Histogram != nil {
			return m.Histogram
		}
	}
	t.Fatalf("histogram %s%v missing", name, want)
	return nil
}

func hasLabels(m *dto.Metric, want ...string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, l := range m.Label {
			if l.GetName() == want[i] && l.GetValue() == want[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// durable is a time-to-durable snapshot with counts in the given buckets.
func durable(counts map[int]uint64, sum time.Duration) auditlog.DurableHistogram {
	bounds := []time.Duration{time.Millisecond, 10 * time.Millisecond, 100 * time.Millisecond}
	h := auditlog.DurableHistogram{Bounds: bounds, Counts: make([]uint64, len(bounds)+1), Sum: sum}
	for i, n := range counts {
		h.Counts[i] = n
		h.Count += n
	}
	return h
}

func TestCollector(t *testing.T) {
	cp := time.Unix(1700000000, 0)
	src := Sources{
		Log: func() auditlog.Stats {
			return auditlog.Stats{NextSeq: 11, DurableSeq: 7, Bytes: 4096, Fsyncs: 3, Lost: 1, Segments: 2,
				CheckpointSize: 7, CheckpointTime: cp, SignErrors: 2,
				Durable:     durable(map[int]uint64{0: 5, 1: 2, 3: 1}, 1500*time.Millisecond),
				DurableLazy: durable(map[int]uint64{1: 4}, 20*time.Millisecond)}
		},
		Proxy: func() proxy.Stats {
			return proxy.Stats{Active: 2, Accepted: 20, Relayed: 12, Refused: 8, Denied: 3, NotRedirected: 1,
				DialFailed: 1, AuditRefused: 1, AuditFailures: 4, BytesIn: 100, BytesOut: 50}
		},
		Kernel: func() (intercept.Stats, error) {
			return intercept.Stats{Origins: 5, Capture: 2, Deny: 3, TCPConnects: 30, Redirected: 20, Established: 19,
				SkippedNotCaptured: 9, UDPReported: 6, EventsLost: 1, KernelDenied: 4}, nil
		},
		Policy: func() PolicyStats { return PolicyStats{Applied: 2, Rejected: 1, Rules: 5} },
		Ship: func() []ship.SinkStatus {
			return []ship.SinkStatus{
				{Name: "worm", Kind: "s3", LastSeq: 5, BacklogEntries: 2, BacklogBytes: 300, LagSeconds: 1.5,
					LastShipped: cp, LastError: "connection refused"},
				{Name: "bus", Kind: "nats", LastSeq: 7},
			}
		},
		Now: func() time.Time { return cp.Add(90 * time.Second) },
	}
	fams := scrape(t, src)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"vigil_log_entries_total", nil, 7},
		{"vigil_log_durable_lag_entries", nil, 3},
		{"vigil_log_bytes_written_total", nil, 4096},
		{"vigil_log_fsyncs_total", nil, 3},
		{"vigil_log_lost_entries_total", nil, 1},
		{"vigil_log_segments", nil, 2},
		{"vigil_log_checkpoint_size_entries", nil, 7},
		{"vigil_log_checkpoint_timestamp_seconds", nil, 1700000000},
		{"vigil_log_writable", nil, 1},
		{"vigil_log_checkpoint_age_seconds", nil, 90},
		{"vigil_log_sign_errors_total", nil, 2},
		{"vigil_proxy_active_connections", nil, 2},
		{"vigil_proxy_connections_accepted_total", nil, 20},
		{"vigil_proxy_connections_relayed_total", nil, 12},
		{"vigil_proxy_connections_refused_total", []string{"reason", "denied"}, 3},
		{"vigil_proxy_connections_refused_total", []string{"reason", "other"}, 2},
		{"vigil_proxy_audit_failures_total", nil, 4},
		{"vigil_proxy_bytes_total", []string{"direction", "in"}, 100},
		{"vigil_proxy_bytes_total", []string{"direction", "out"}, 50},
		{"vigil_kernel_stats_up", nil, 1},
		{"vigil_kernel_map_entries", []string{"map", "origins"}, 5},
		{"vigil_kernel_tcp_connects_total", nil, 30},
		{"vigil_kernel_redirected_total", nil, 20},
		{"vigil_kernel_skipped_total", []string{"reason", "not_captured"}, 9},
		{"vigil_kernel_reported_total", []string{"kind", "udp"}, 6},
		{"vigil_kernel_events_lost_total", nil, 1},
		{"vigil_kernel_denied_total", nil, 4},
		{"vigil_kernel_map_entries", []string{"map", "deny"}, 3},
		{"vigil_ship_backlog_entries", []string{"sink", "worm", "kind", "s3"}, 2},
		{"vigil_ship_backlog_bytes", []string{"sink", "worm"}, 300},
		{"vigil_ship_lag_seconds", []string{"sink", "worm"}, 1.5},
		{"vigil_ship_last_success_timestamp_seconds", []string{"sink", "worm"}, 1700000000},
		{"vigil_ship_last_success_timestamp_seconds", []string{"sink", "bus", "kind", "nats"}, 0},
		{"vigil_ship_last_seq", []string{"sink", "bus"}, 7},
		{"vigil_ship_failing", []string{"sink", "worm"}, 1},
		{"vigil_ship_failing", []string{"sink", "bus"}, 0},
		{"vigil_policy_loads_total", []string{"result", "applied"}, 2},
		{"vigil_policy_loads_total", []string{"result", "rejected"}, 1},
		{"vigil_policy_rules", nil, 5},
		{"vigil_build_info", nil, 1},
	}
	for _, tt := range tests {
		if got := value(t, fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v; want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("go runtime metrics missing")
	}

	h := histogramOf(t, fams, "vigil_log_time_to_durable_seconds", "append", "waited")
	if h.GetSampleCount() != 8 || h.GetSampleSum() != 1.5 {
		t.Errorf("waited histogram count %d, sum %v; want 8, 1.5", h.GetSampleCount(), h.GetSampleSum())
	}
	wantCum := map[float64]uint64{0.001: 5, 0.01: 7, 0.1: 7} // the 8th is above every bound
	for _, b := range h.Bucket {
		if want, ok := wantCum[b.GetUpperBound()]; ok && b.GetCumulativeCount() != want {
			t.Errorf("waited histogram bucket le=%v = %d; want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if lazy := histogramOf(t, fams, "vigil_log_time_to_durable_seconds", "append", "lazy"); lazy.GetSampleCount() != 4 {
		t.Errorf("lazy histogram count = %d; want 4", lazy.GetSampleCount())
	}
	for name, f := range fams {
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}
}

func TestCollectorPartial(t *testing.T) {
	// Without interception there is no proxy or kernel; a failed map read
	// is a gauge, and the log's metrics are still served.
	fams := scrape(t, Sources{Log: func() auditlog.Stats { return auditlog.Stats{Err: errors.New("disk full")} }})
	if got := value(t, fams, "vigil_log_writable"); got != 0 {
		t.Errorf("vigil_log_writable with a failing log = %v; want 0", got)
	}
	if got := value(t, fams, "vigil_log_entries_total"); got != 0 {
		t.Errorf("vigil_log_entries_total of an empty log = %v; want 0", got)
	}
	if _, ok := fams["vigil_log_checkpoint_age_seconds"]; ok {
		t.Error("vigil_log_checkpoint_age_seconds served before the first checkpoint")
	}
	if h := histogramOf(t, fams, "vigil_log_time_to_durable_seconds", "append", "waited"); h.GetSampleCount() != 0 {
		t.Errorf("time-to-durable count of an empty log = %d; want 0", h.GetSampleCount())
	}
	for _, name := range []string{"vigil_proxy_connections_accepted_total", "vigil_kernel_stats_up", "vigil_policy_rules", "vigil_ship_lag_seconds"} {
		if _, ok := fams[name]; ok {
			t.Errorf("%s served without its source", name)
		}
	}
	fams = scrape(t, Sources{Kernel: func() (intercept.Stats, error) { return intercept.Stats{}, errors.New("map gone") }})
	if got := value(t, fams, "vigil_kernel_stats_up"); got != 0 {
		t.Errorf("vigil_kernel_stats_up after a failed read = %v; want 0", got)
	}
	if _, ok := fams["vigil_kernel_redirected_total"]; ok {
		t.Error("kernel counters served after a failed read")
	}
}

// TestDocumented keeps docs/DEPLOY.md's table complete: every metric the
// Collector can emit has a row.
func TestDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/DEPLOY.md")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		New(Sources{}).Describe(ch)
		close(ch)
	}()
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	n := 0
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read the name of %s", d)
		}
		n++
		if !strings.Contains(string(doc), "| `"+m[1]+"` |") {
			t.Errorf("%s has no row in the metrics table of docs/DEPLOY.md", m[1])
		}
	}
	if n < 30 {
		t.Errorf("Describe sent %d descriptors; want every metric", n)
	}
}
