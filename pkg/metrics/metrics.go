// Package metrics exposes vigil's counters to Prometheus. A Collector reads
// the Stats snapshots the audit log, the proxy, the interceptor and the
// shipper already keep, at scrape time only: nothing is added to the data
// path, and a scrape costs one snapshot of each. Names follow the
// Prometheus conventions (vigil_ prefix, _total on counters, base units);
// docs/DEPLOY.md lists every metric.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
	"github.com/vigil-ebpf/vigil/pkg/ship"
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
	Ship   func() []ship.SinkStatus // one per sink; nil or empty when nothing ships
	Now    func() time.Time         // for the checkpoint age; default time.Now
}

// Collector is a prometheus.Collector over Sources.
type Collector struct {
	src Sources

	logEntries, logDurableLag, logBytes, logFsyncs, logLost, logSegments,
	logCheckpointSize, logCheckpointTime, logWritable *prometheus.Desc

	logCheckpointAge, logSignErrors, logDurable *prometheus.Desc

	proxyActive, proxyAccepted, proxyRelayed, proxyRefused, proxyAuditFailures,
	proxyBytes *prometheus.Desc

	kernelMapEntries, kernelConnects, kernelRedirected, kernelEstablished,
	kernelSkipped, kernelReported, kernelMapFull, kernelEventsLost, kernelUp *prometheus.Desc

	kernelDenied *prometheus.Desc

	policyLoads, policyRules *prometheus.Desc

	shipBacklogEntries, shipBacklogBytes, shipLag, shipLastSuccess, shipLastSeq, shipFailing *prometheus.Desc
}

// New returns a Collector reading src.
func New(src Sources) *Collector {
	if src.Now == nil {
		src.Now = time.Now
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("vigil_"+name, help, labels, nil)
	}
	return &Collector{
		src: src,

		logEntries:        d("log_entries_total", "Entries durable in the audit log, this run and earlier ones (the durable seq)."),
		logDurableLag:     d("log_durable_lag_entries", "Entries sequenced but not yet on disk (fsync pending)."),
		logBytes:          d("log_bytes_written_total", "Bytes this process wrote to segment files."),
		logFsyncs:         d("log_fsyncs_total", "fsync calls on segment files by this process (one per commit group)."),
		logLost:           d("log_lost_entries_total", "Entries that could not be recorded; each loss is itself recorded as a log.gap entry."),
		logSegments:       d("log_segments", "Segment files written or found."),
		logCheckpointSize: d("log_checkpoint_size_entries", "Tree size of the last signed checkpoint."),
		logCheckpointTime: d("log_checkpoint_timestamp_seconds", "Unix time of the last signed checkpoint (0 before the first)."),
		logWritable:       d("log_writable", "1 while the audit log can be written, 0 while it fails (audit: required connections are refused)."),

		logCheckpointAge: d("log_checkpoint_age_seconds", "Seconds since this process wrote the last signed checkpoint; absent before the first."),
		logSignErrors:    d("log_sign_errors_total", "Signatures the signer failed to make (entries, gap entries, checkpoints); each fails the log until signing works again."),
		logDurable: d("log_time_to_durable_seconds", "Time from Append to the fsync that made the entry durable, by append kind: "+
			"waited (Append: a connection may wait on it) or lazy (AppendLazy: may wait up to the lazy delay for company).", "append"),

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

		kernelDenied: d("kernel_denied_total", "TCP connect() calls the kernel refused by the policy's deny table (recorded as conn.deny)."),

		policyLoads: d("policy_loads_total", "Policy file loads since start, by result (applied or rejected).", "result"),
		policyRules: d("policy_rules", "Rules in the policy in force."),

		shipBacklogEntries: d("ship_backlog_entries", "Entries durable locally and not yet shipped to the sink.", "sink", "kind"),
		shipBacklogBytes:   d("ship_backlog_bytes", "Local segment bytes not yet shipped to the sink.", "sink", "kind"),
		shipLag:            d("ship_lag_seconds", "Age of the oldest data not yet shipped to the sink; 0 when caught up.", "sink", "kind"),
		shipLastSuccess:    d("ship_last_success_timestamp_seconds", "Unix time the sink last confirmed a write (0 before the first).", "sink", "kind"),
		shipLastSeq:        d("ship_last_seq", "Last entry seq shipped to the sink (or covered by the segments shipped).", "sink", "kind"),
		shipFailing:        d("ship_failing", "1 while the last attempt to ship to the sink failed, 0 otherwise.", "sink", "kind"),
	}
}

// Describe sends every descriptor the Collector can emit.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.logEntries, c.logDurableLag, c.logBytes, c.logFsyncs, c.logLost, c.logSegments,
		c.logCheckpointSize, c.logCheckpointTime, c.logWritable,
		c.logCheckpointAge, c.logSignErrors, c.logDurable,
		c.proxyActive, c.proxyAccepted, c.proxyRelayed, c.proxyRefused, c.proxyAuditFailures, c.proxyBytes,
		c.kernelMapEntries, c.kernelConnects, c.kernelRedirected, c.kernelEstablished,
		c.kernelSkipped, c.kernelReported, c.kernelMapFull, c.kernelEventsLost, c.kernelUp,
		c.kernelDenied,
		c.policyLoads, c.policyRules,
		c.shipBacklogEntries, c.shipBacklogBytes, c.shipLag, c.shipLastSuccess, c.shipLastSeq, c.shipFailing,
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
	if c.src.Ship != nil {
		for _, st := range c.src.Ship() {
			c.collectShip(ch, st)
		}
	}
}

func (c *Collector) collectLog(ch chan<- prometheus.Metric, s auditlog.Stats) {
	writable := 1.0
	if s.Err != nil {
		writable = 0
	}
	var cpTime float64
	if !s.CheckpointTime.IsZero() {
		cpTime = float64(s.CheckpointTime.UnixNano()) / float64(time.Second)
	}
	// The durable seq, not the next one: a failing log rewinds the
	// sequencer over the entries it voids, and a counter must not go back.
	ch <- counter(c.logEntries, float64(s.DurableSeq))
	ch <- gauge(c.logDurableLag, float64(s.DurableLag()))
	ch <- counter(c.logBytes, float64(s.Bytes))
	ch <- counter(c.logFsyncs, float64(s.Fsyncs))
	ch <- counter(c.logLost, float64(s.Lost))
	ch <- gauge(c.logSegments, float64(s.Segments))
	ch <- gauge(c.logCheckpointSize, float64(s.CheckpointSize))
	ch <- gauge(c.logCheckpointTime, cpTime)
	ch <- gauge(c.logWritable, writable)
	if !s.CheckpointTime.IsZero() {
		ch <- gauge(c.logCheckpointAge, max(c.src.Now().Sub(s.CheckpointTime).Seconds(), 0))
	}
	ch <- counter(c.logSignErrors, float64(s.SignErrors))
	ch <- histogram(c.logDurable, s.Durable, "waited")
	ch <- histogram(c.logDurable, s.DurableLazy, "lazy")
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
	ch <- counter(c.kernelDenied, float64(s.KernelDenied))
	ch <- gauge(c.kernelMapEntries, float64(s.Deny), "deny")
}

func (c *Collector) collectShip(ch chan<- prometheus.Metric, s ship.SinkStatus) {
	var last float64
	if !s.LastShipped.IsZero() {
		last = float64(s.LastShipped.UnixNano()) / float64(time.Second)
	}
	failing := 0.0
	if s.LastError != "" {
		failing = 1
	}
	ch <- gauge(c.shipBacklogEntries, float64(s.BacklogEntries), s.Name, s.Kind)
	ch <- gauge(c.shipBacklogBytes, float64(s.BacklogBytes), s.Name, s.Kind)
	ch <- gauge(c.shipLag, s.LagSeconds, s.Name, s.Kind)
	ch <- gauge(c.shipLastSuccess, last, s.Name, s.Kind)
	ch <- gauge(c.shipLastSeq, float64(s.LastSeq), s.Name, s.Kind)
	ch <- gauge(c.shipFailing, failing, s.Name, s.Kind)
}

// histogram turns a time-to-durable snapshot into a Prometheus histogram:
// cumulative counts per upper bound in seconds; +Inf is the total count.
func histogram(d *prometheus.Desc, h auditlog.DurableHistogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets, labels...)
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
