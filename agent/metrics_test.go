package agent

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestMetricsEndpoint(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, Config{DataDir: dir, MetricsAddr: "127.0.0.1:0", PolicyPath: dir + "/none.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	url := "http://" + a.MetricsAddr() + "/metrics"
	var fams map[string]float64
	// Run records agent.start and policy.load; wait until both are counted.
	for deadline := time.Now().Add(10 * time.Second); ; {
		fams = scrapeValues(t, url)
		if fams["vigil_log_entries_total"] >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := fams["vigil_log_entries_total"]; got < 2 {
		t.Errorf("vigil_log_entries_total = %v; want ≥ 2 (agent.start, policy.load)", got)
	}
	if got := fams["vigil_log_writable"]; got != 1 {
		t.Errorf("vigil_log_writable = %v; want 1", got)
	}
	if _, ok := fams["vigil_proxy_connections_accepted_total"]; ok {
		t.Error("proxy metrics served by an agent without interception")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := net.DialTimeout("tcp", a.MetricsAddr(), time.Second); err == nil {
		t.Error("metrics port still open after Run returned")
	}
}

func TestMetricsAddrTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir := t.TempDir()
	_, err = New(context.Background(), Config{DataDir: dir, MetricsAddr: ln.Addr().String(), PolicyPath: dir + "/none.yaml"})
	if err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("New with a taken metrics port = %v; want an error naming --metrics-addr", err)
	}
	// The failed start released the log: a second agent can open it.
	a, err := New(context.Background(), Config{DataDir: dir, PolicyPath: dir + "/none.yaml"})
	if err != nil {
		t.Fatalf("New after a failed start = %v", err)
	}
	a.Close(context.Background())
}

// scrapeValues fetches url and returns each unlabelled series' value.
func scrapeValues(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			if len(m.Label) > 0 {
				continue
			}
			switch {
			case m.Counter != nil:
				out[name] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name] = m.Gauge.GetValue()
			}
		}
	}
	return out
}
