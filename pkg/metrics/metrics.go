// Package metrics exposes vigil's counters to Prometheus. A Collector reads
// the Stats snapshots the audit log, the proxy and the interceptor already
// keep, at scrape time only: nothing is added to the data path, and a
// scrape costs one snapshot of each.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
)

// PolicyStats counts policy loads since the agent started.
type PolicyStats struct {
	Applied  uint64 // files that loaded and were put in force
	Rejected uint64 // files that failed validation; the previous policy stayed
	Rules    int    // rules in the policy in force
}

// Sources are the snapshots a Collector reads. A nil function is a part the
// agent does not run (no proxy or interceptor without interception): its
// metrics are left out rather than reported as zero.
type Sources struct {
	Log    func() auditlog.Stats
	Proxy  func() proxy.Stats
	Kernel func() (intercept.Stats, error)
	Policy func() PolicyStats
}

// Collector is a prometheus.Collector over Sources.
type Collector struct {
	src Sources

	logEntries, logDurableLag, logBytes, logFsyncs, logLost, logSegments,
	logCheckpointSize, logCheckpointTime, logWritable *prometheus.Desc

	proxyActive, proxyAccepted, proxyRelayed, proxyRefused, proxyAuditFailures,
	proxyBytes *prometheus.Desc

	kernelMapEntries, kernelConnects, kernelRedirected, kernelEstablished,
	kernelSkipped, kernelReported, kernelMapFull, kernelEventsLost, kernelUp *prometheus.Desc

	policyLoads, policyRules *prometheus.Desc
}

// New returns a Collector reading src.
func New(src Sources) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("vigil_"+name, help, labels, nil)
	}
	return &Collector{
		src: src,

		logEntries:        d("log_entries_total", "Entries sequenced in the audit log (all runs: the next seq minus one)."),
		logDurableLag:     d("log_durable_lag_entries", "Entries sequenced but not yet on disk (fsync pending)."),
		logBytes:          d("log_bytes_written_total", "Bytes this process wrote to segment files."),
		logFsyncs:         d("log_fsyncs_total", "fsync calls on segment files by this process (one per commit group)."),
		logLost:           d("log_lost_entries_total", "Entries that could not be recorded; each loss is itself recorded as a log.gap entry."),
		logSegments:       d("log_segments", "Segment files written or found."),
		logCheckpointSize: d("log_checkpoint_size_entries", "Tree size of the last signed checkpoint."),
		logCheckpointTime: d("log_checkpoint_timestamp_seconds", "Unix time of the last signed checkpoint (0 before the first)."),
		logWritable:       d("log_writable", "1 while the audit log can be written, 0 while it fails (audit: required connections are refused)."),

		proxyActive:        d("proxy_active_connections", "Connections the proxy is handling now."),
		proxyAccepted:      d("proxy_connections_accepted_total", "Connections the proxy accepted."),
		proxyRelayed:       d("proxy_connections_relayed_total", "Connections relayed to their original destination."),
		proxyRefused:       d("proxy_connections_refused_total", "Connections closed without relaying, by reason; the sum is every refusal.", "reason"),
		proxyAuditFailures: d("proxy_audit_failures_total", "Audit entries the proxy could not append or make durable."),
		proxyBytes:         d("proxy_bytes_total", "Bytes relayed, counted when a relay ends; out is client to destination.", "direction"),

		kernelMapEntries:  d("kernel_map_entries", "Entries in each BPF map.", "map"),
		kernelConnects:    d("kernel_tcp_connects_total", "TCP connect() calls the BPF programs saw in the captured cgroup subtree."),
		kernelRedirected:  d("kernel_redirected_total", "TCP connect() calls rewritten to the proxy."),
		kernelEstablished: d("kernel_established_total", "Redirected connections that reached ESTABLISHED."),
		kernelSkipped:     d("kernel_skipped_total", "TCP connect() calls not redirected, by reason.", "reason"),
		kernelReported:    d("kernel_reported_total", "Paths the kernel reported but did not redirect (recorded as conn.bypass), by kind.", "kind"),
		kernelMapFull:     d("kernel_map_full_total", "Connections let through unredirected because the origin map was full."),
		kernelEventsLost:  d("kernel_events_lost_total", "Kernel events dropped because the ring buffer was full."),
		kernelUp:          d("kernel_stats_up", "1 when the BPF maps could be read at this scrape, 0 when not."),

		policyLoads: d("policy_loads_total", "Policy file loads since start, by result (applied or rejected).", "result"),
		policyRules: d("policy_rules", "Rules in the policy in force."),
	}
}

// Describe sends every descriptor the Collector can emit.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.logEntries, c.logDurableLag, c.logBytes, c.logFsyncs, c.logLost, c.logSegments,
		c.logCheckpointSize, c.logCheckpointTime, c.logWritable,
		c.proxyActive, c.proxyAccepted, c.proxyRelayed, c.proxyRefused, c.proxyAuditFailures, c.proxyBytes,
		c.kernelMapEntries, c.kernelConnects, c.kernelRedirected, c.kernelEstablished,
		c.kernelSkipped, c.kernelReported, c.kernelMapFull, c.kernelEventsLost, c.kernelUp,
		c.policyLoads, c.policyRules,
	} {
		ch <- d
	}
}

// Collect takes one snapshot of each source and sends it as metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Log != nil {
		c.collectLog(ch, c.src.Log())
	}
	if c.src.Proxy != nil {
		c.collectProxy(ch, c.src.Proxy())
	}
	if c.src.Kernel != nil {
		s, err := c.src.Kernel()
		if err != nil {
			// A failed map read is a gauge, not a failed scrape: the log
			// and proxy metrics are still worth having.
			ch <- gauge(c.kernelUp, 0)
		} else {
			ch <- gauge(c.kernelUp, 1)
			c.collectKernel(ch, s)
		}
	}
	if c.src.Policy != nil {
		p := c.src.Policy()
		ch <- counter(c.policyLoads, float64(p.Applied), "applied")
		ch <- counter(c.policyLoads, float64(p.Rejected), "rejected")
		ch <- gauge(c.policyRules, float64(p.Rules))
	}
}

func (c *Collector) collectLog(ch chan<- prometheus.Metric, s auditlog.Stats) {
	var sequenced uint64
	if s.NextSeq > 0 {
		sequenced = s.NextSeq - 1 // seqs start at 1
	}
	var lag uint64
	if sequenced > s.DurableSeq {
		lag = sequenced - s.DurableSeq
	}
	writable := 1.0
	if s.Err != nil {
		writable = 0
	}
	var cpTime float64
	if !s.CheckpointTime.IsZero() {
		cpTime = float64(s.CheckpointTime.UnixNano()) / float64(time.Second)
	}
	ch <- counter(c.logEntries, float64(sequenced))
	ch <- gauge(c.logDurableLag, float64(lag))
	ch <- counter(c.logBytes, float64(s.Bytes))
	ch <- counter(c.logFsyncs, float64(s.Fsyncs))
	ch <- counter(c.logLost, float64(s.Lost))
	ch <- gauge(c.logSegments, float64(s.Segments))
	ch <- gauge(c.logCheckpointSize, float64(s.CheckpointSize))
	ch <- gauge(c.logCheckpointTime, cpTime)
	ch <- gauge(c.logWritable, writable)
}

func (c *Collector) collectProxy(ch chan<- prometheus.Metric, s proxy.Stats) {
	ch <- gauge(c.proxyActive, float64(s.Active))
	ch <- counter(c.proxyAccepted, float64(s.Accepted))
	ch <- counter(c.proxyRelayed, float64(s.Relayed))
	// Refused counts every refusal; the named reasons are part of it and
	// "other" (lookup failures, loops) is the rest, so sum() is Refused.
	named := s.Denied + s.NotRedirected + s.DialFailed + s.AuditRefused
	var other uint64
	if s.Refused > named {
		other = s.Refused - named
	}
	for _, r := range []struct {
		reason string
		n      uint64
	}{
		{"denied", s.Denied},
		{"not_redirected", s.NotRedirected},
		{"dial_failed", s.DialFailed},
		{"audit_refused", s.AuditRefused},
		{"other", other},
	} {
		ch <- counter(c.proxyRefused, float64(r.n), r.reason)
	}
	ch <- counter(c.proxyAuditFailures, float64(s.AuditFailures))
	ch <- counter(c.proxyBytes, float64(s.BytesIn), "in")
	ch <- counter(c.proxyBytes, float64(s.BytesOut), "out")
}

func (c *Collector) collectKernel(ch chan<- prometheus.Metric, s intercept.Stats) {
	ch <- gauge(c.kernelMapEntries, float64(s.Origins), "origins")
	ch <- gauge(c.kernelMapEntries, float64(s.Tuples), "tuples")
	ch <- gauge(c.kernelMapEntries, float64(s.UDPSeen), "udp_seen")
	ch <- gauge(c.kernelMapEntries, float64(s.Capture), "capture")
	ch <- counter(c.kernelConnects, float64(s.TCPConnects))
	ch <- counter(c.kernelRedirected, float64(s.Redirected))
	ch <- counter(c.kernelEstablished, float64(s.Established))
	ch <- counter(c.kernelSkipped, float64(s.SkippedMark), "mark")
	ch <- counter(c.kernelSkipped, float64(s.SkippedExempt), "exempt")
	ch <- counter(c.kernelSkipped, float64(s.SkippedNotCaptured), "not_captured")
	ch <- counter(c.kernelReported, float64(s.OtherNetns), "other_netns")
	ch <- counter(c.kernelReported, float64(s.BoundDevice), "bound_device")
	ch <- counter(c.kernelReported, float64(s.UDPReported), "udp")
	ch <- counter(c.kernelMapFull, float64(s.MapFull))
	ch <- counter(c.kernelEventsLost, float64(s.EventsLost))
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
