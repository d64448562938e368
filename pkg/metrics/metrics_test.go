package metrics

import (
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
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
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
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

func TestCollector(t *testing.T) {
	cp := time.Unix(1700000000, 0)
	src := Sources{
		Log: func() auditlog.Stats {
			return auditlog.Stats{NextSeq: 11, DurableSeq: 7, Bytes: 4096, Fsyncs: 3, Lost: 1, Segments: 2,
				CheckpointSize: 7, CheckpointTime: cp}
		},
		Proxy: func() proxy.Stats {
			return proxy.Stats{Active: 2, Accepted: 20, Relayed: 12, Refused: 8, Denied: 3, NotRedirected: 1,
				DialFailed: 1, AuditRefused: 1, AuditFailures: 4, BytesIn: 100, BytesOut: 50}
		},
		Kernel: func() (intercept.Stats, error) {
			return intercept.Stats{Origins: 5, Capture: 2, TCPConnects: 30, Redirected: 20, Established: 19,
				SkippedNotCaptured: 9, UDPReported: 6, EventsLost: 1}, nil
		},
		Policy: func() PolicyStats { return PolicyStats{Applied: 2, Rejected: 1, Rules: 5} },
	}
	fams := scrape(t, src)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"vigil_log_entries_total", nil, 10},
		{"vigil_log_durable_lag_entries", nil, 3},
		{"vigil_log_bytes_written_total", nil, 4096},
		{"vigil_log_fsyncs_total", nil, 3},
		{"vigil_log_lost_entries_total", nil, 1},
		{"vigil_log_segments", nil, 2},
		{"vigil_log_checkpoint_size_entries", nil, 7},
		{"vigil_log_checkpoint_timestamp_seconds", nil, 1700000000},
		{"vigil_log_writable", nil, 1},
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
	for _, name := range []string{"vigil_proxy_connections_accepted_total", "vigil_kernel_stats_up", "vigil_policy_rules"} {
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
