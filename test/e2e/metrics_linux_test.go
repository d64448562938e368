package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricsAddr waits for the agent to log the address its metrics server
// bound (--metrics-addr 127.0.0.1:0 picks a free port) and returns it.
func metricsAddr(t *testing.T, a *agentProc) string {
	t.Helper()
	re := regexp.MustCompile(`msg="serving metrics" addr=(\S+)`)
	var addr string
	waitFor(t, func() bool {
		m := re.FindStringSubmatch(a.stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return addr
}

// scrapeMetrics fetches /metrics and returns every sample by name, with
// its labels in braces sorted by name (`vigil_proxy_bytes_total{direction="in"}`);
// a histogram gives name_count and name_sum.
func scrapeMetrics(addr string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse exposition: %w", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			suffix := ""
			if len(labels) > 0 {
				sort.Strings(labels)
				suffix = "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[name+suffix] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name+suffix] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[name+"_count"+suffix] = float64(m.Histogram.GetSampleCount())
				out[name+"_sum"+suffix] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out, nil
}

// TestMetricsUnderTraffic scrapes a real agent's /metrics before, during
// and after traffic through interception: curl downloads relayed, bash
// connects the kernel refuses and connects the proxy refuses by policy.
// Every counter the traffic touches must have moved by at least what the
// traffic did, and no counter may go back between scrapes taken while the
// connections flowed.
func TestMetricsUnderTraffic(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	requireTool(t, "bash")
	bport, blob := blobServer(t)
	kport, uport := echoServer(t), echoServer(t)
	polPath := filepath.Join(t.TempDir(), "policy.yaml")
	replaceFile(t, polPath, fmt.Sprintf(`apiVersion: vigil.dev/v1
default: allow
rules:
  - name: kernel-no-echo
    action: deny
    errno: ECONNREFUSED
    match:
      dst: { cidr: ["127.0.0.1", "::1"], ports: ["%d"] }
  - name: no-bash-to-echo
    action: deny
    match:
      dst: { ports: ["%d"] }
      workload: { comm: [bash] }
`, kport, uport))
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(bport, kport, uport), "--policy", polPath,
		"--metrics-addr", "127.0.0.1:0")
	addr := metricsAddr(t, a)
	before, err := scrapeMetrics(addr)
	if err != nil {
		t.Fatal(err)
	}

	// Scrape in a loop while the traffic below runs.
	monotone := []string{
		"vigil_kernel_tcp_connects_total", "vigil_kernel_redirected_total", "vigil_kernel_denied_total",
		"vigil_proxy_connections_accepted_total", "vigil_proxy_connections_relayed_total",
		`vigil_proxy_bytes_total{direction="in"}`, "vigil_log_entries_total", "vigil_log_fsyncs_total",
		`vigil_log_time_to_durable_seconds_count{append="waited"}`,
	}
	stop := make(chan struct{})
	var (
		wg        sync.WaitGroup
		scrapes   int
		scrapeErr error
	)
	endScrapes := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer endScrapes()
	wg.Add(1)
	go func() {
		defer wg.Done()
		prev := before
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			cur, err := scrapeMetrics(addr)
			if err != nil {
				scrapeErr = err
				return
			}
			for _, name := range monotone {
				if cur[name] < prev[name] {
					scrapeErr = fmt.Errorf("%s went back from %v to %v between two scrapes", name, prev[name], cur[name])
					return
				}
			}
			prev = cur
			scrapes++
		}
	}()

	const downloads, kernelDenies, proxyDenies = 5, 2, 2
	url := "http://127.0.0.1:" + strconv.Itoa(bport) + "/blob"
	for range downloads {
		got := run(t, cgroupCmd(context.Background(), cg, "curl", "-sS", "--fail", url))
		if len(got) != len(blob) {
			t.Fatalf("curl through vigil got %d bytes; want %d", len(got), len(blob))
		}
	}
	bash := func(port int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := cgroupCmd(ctx, cg, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d && echo hi >&3 && cat <&3", port))
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("bash to denied port %d succeeded: %s", port, out)
		}
	}
	for range kernelDenies {
		bash(kport)
	}
	for range proxyDenies {
		bash(uport)
	}

	// Relays are counted when they end and conn.close entries are lazy:
	// wait until the last of them shows.
	want := func(m map[string]float64) bool {
		return m[`vigil_proxy_bytes_total{direction="in"}`]-before[`vigil_proxy_bytes_total{direction="in"}`] >= downloads*float64(len(blob)) &&
			m["vigil_proxy_connections_relayed_total"]-before["vigil_proxy_connections_relayed_total"] >= downloads &&
			m["vigil_kernel_denied_total"]-before["vigil_kernel_denied_total"] >= kernelDenies &&
			m["vigil_log_entries_total"]-before["vigil_log_entries_total"] >= 2*downloads+kernelDenies+proxyDenies
	}
	var after map[string]float64
	waitFor(t, func() bool {
		after, err = scrapeMetrics(addr)
		return err == nil && want(after)
	})
	endScrapes()
	if scrapeErr != nil {
		t.Errorf("scrape during traffic: %v", scrapeErr)
	}
	if scrapes == 0 {
		t.Error("no scrape completed while the traffic ran")
	}
	t.Logf("%d scrapes during traffic", scrapes)

	tests := []struct {
		name string
		min  float64 // least increase the traffic must cause
	}{
		{"vigil_kernel_tcp_connects_total", downloads + kernelDenies + proxyDenies},
		{"vigil_kernel_redirected_total", downloads + proxyDenies},
		{"vigil_kernel_established_total", downloads + proxyDenies},
		{"vigil_kernel_denied_total", kernelDenies},
		{"vigil_proxy_connections_accepted_total", downloads + proxyDenies},
		{"vigil_proxy_connections_relayed_total", downloads},
		{`vigil_proxy_connections_refused_total{reason="denied"}`, proxyDenies},
		{`vigil_proxy_bytes_total{direction="in"}`, downloads * float64(len(blob))},
		{`vigil_proxy_bytes_total{direction="out"}`, downloads}, // the requests
		// conn.open and conn.close per download, conn.deny per refusal.
		{"vigil_log_entries_total", 2*downloads + kernelDenies + proxyDenies},
		{"vigil_log_bytes_written_total", 1},
		{"vigil_log_fsyncs_total", 1},
		// The conn.opens the relays waited on; conn.deny entries are waited on too.
		{`vigil_log_time_to_durable_seconds_count{append="waited"}`, downloads},
		{`vigil_log_time_to_durable_seconds_count{append="lazy"}`, downloads}, // the conn.closes
	}
	for _, tt := range tests {
		b, okb := before[tt.name]
		v, oka := after[tt.name]
		if !okb || !oka {
			t.Errorf("%s missing (before: %v, after: %v)", tt.name, okb, oka)
			continue
		}
		if v-b < tt.min {
			t.Errorf("%s went from %v to %v; want an increase of at least %v", tt.name, b, v, tt.min)
		}
	}
	if s := after[`vigil_log_time_to_durable_seconds_sum{append="waited"}`]; s <= 0 {
		t.Errorf("time-to-durable sum = %v; want > 0", s)
	}
	for name, want := range map[string]float64{"vigil_kernel_stats_up": 1, "vigil_log_writable": 1, `vigil_policy_loads_total{result="applied"}`: 1} {
		if after[name] != want {
			t.Errorf("%s = %v; want %v", name, after[name], want)
		}
	}
	if _, ok := after["vigil_log_checkpoint_age_seconds"]; !ok {
		t.Log("no checkpoint yet: vigil_log_checkpoint_age_seconds absent, as documented")
	}
	a.stop()
	verify(t, a.dataDir)
}
