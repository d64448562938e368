package agent

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/policy"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/version"
)

// Status sampling.
const (
	rateInterval = 5 * time.Second // how often counters are sampled for rates
	rateWindow   = time.Minute     // rates are averaged over this much history
	kernelMaxAge = time.Second     // kernel counters are re-read at most this often
)

// SinkStatus is the shipping state of one off-host sink.
type SinkStatus = ship.SinkStatus

// statusState is what the status API needs beyond the counters each part
// keeps itself. Everything in it is written off the data path.
type statusState struct {
	capture   atomic.Pointer[string]      // capture set in force (Reload changes it)
	policy    atomic.Pointer[policyState] // the policy in force and when it was loaded
	proxyErr  atomic.Pointer[string]      // why the proxy stopped; nil while it serves
	readerErr atomic.Pointer[string]      // why the kernel event reader stopped; nil while it runs

	mu      sync.Mutex   // guards samples
	samples []rateSample // oldest first, at most rateWindow/rateInterval+1

	kmu        sync.Mutex      // guards the two below; held while the kernel is read
	kernel     kernelSample    // last kernel read
	kernelBase intercept.Stats // kernel counters when Run began
}

// policyState is a loaded policy and when it was put in force.
type policyState struct {
	policy   *policy.Policy
	loadedAt time.Time
	builtin  bool // no file: the built-in allow-all
}

// rateSample is a reading of the counters rates are computed from.
type rateSample struct {
	at       time.Time
	nextSeq  uint64 // log
	accepted uint64 // proxy
}

// kernelSample is a cached read of the kernel side: reading it walks BPF
// maps, which should not happen once per probe of a busy health check.
type kernelSample struct {
	at      time.Time
	stats   intercept.Stats
	err     error
	missing []string // programs not attached

	statsErr error // why stats could not be read (err also covers the attach check)
}

// StatusResponse is the body of GET /v1/status.
type StatusResponse struct {
	Version       string    `json:"version"`
	Commit        string    `json:"commit"`
	Started       time.Time `json:"started"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	PID           int       `json:"pid"`
	Host          string    `json:"host"`
	DataDir       string    `json:"data_dir"`
	Intercept     bool      `json:"intercept"`              // BPF programs and proxy running
	Cgroup        string    `json:"cgroup,omitempty"`       // as configured; "/" is the whole host
	AttachPoint   string    `json:"attach_point,omitempty"` // cgroup v2 directory the programs are attached to
	Capture       string    `json:"capture,omitempty"`
	FailMode      string    `json:"fail_mode,omitempty"`
	ProxyPort     uint16    `json:"proxy_port,omitempty"`
	Goroutines    int       `json:"goroutines"` // of the agent process, for leak checks
	Listeners     int       `json:"listeners"`  // proxy listeners, in the agent's and in workload namespaces

	Policy   PolicyInfo    `json:"policy"`
	Log      LogStatus     `json:"log"`
	Proxy    *ProxyStatus  `json:"proxy,omitempty"`  // nil without interception
	Kernel   *KernelStatus `json:"kernel,omitempty"` // nil without interception
	Shipping []SinkStatus  `json:"shipping"`         // one per sink; empty when nothing ships
	// Retention is local retention (ship.retention); nil when unbounded.
	Retention *ship.RetentionStatus `json:"retention,omitempty"`

	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems"` // why not healthy; empty when healthy
}

// PolicyInfo describes the policy in force.
type PolicyInfo struct {
	File     string    `json:"file"` // "" for the built-in policy
	SHA256   string    `json:"sha256"`
	LoadedAt time.Time `json:"loaded_at"`
	Rules    int       `json:"rules"`
	Default  string    `json:"default"`
	Builtin  bool      `json:"builtin"` // no policy file: allow and record everything
}

// LogStatus describes the audit log.
type LogStatus struct {
	NextSeq        uint64    `json:"next_seq"`
	DurableSeq     uint64    `json:"durable_seq"`
	DurableLag     uint64    `json:"durable_lag"` // entries appended but not yet on disk: next_seq-1-durable_seq
	Entries        uint64    `json:"entries"`     // in the whole log, this run and earlier ones
	Segments       int64     `json:"segments"`
	Bytes          int64     `json:"bytes"` // written by this run
	CheckpointSize uint64    `json:"checkpoint_size"`
	CheckpointTime time.Time `json:"checkpoint_time,omitzero"`
	AppendsPerSec  float64   `json:"appends_per_sec"` // over the last minute
	Fsyncs         uint64    `json:"fsyncs"`
	Lost           uint64    `json:"lost"` // entries that could not be recorded since start
	KeyID          string    `json:"key_id"`
	Error          string    `json:"error,omitempty"` // why the log cannot be written now
}

// ProxyStatus is the proxy's counters since start.
type ProxyStatus struct {
	Active         int64    `json:"active"`
	Accepted       uint64   `json:"accepted"`
	AcceptedPerSec float64  `json:"accepted_per_sec"` // over the last minute
	Relayed        uint64   `json:"relayed"`
	Refused        uint64   `json:"refused"`
	Denied         uint64   `json:"denied"`
	NotRedirected  uint64   `json:"not_redirected"`
	DialFailed     uint64   `json:"dial_failed"`
	AuditRefused   uint64   `json:"audit_refused"`
	AuditFailures  uint64   `json:"audit_failures"`
	BytesIn        uint64   `json:"bytes_in"`
	BytesOut       uint64   `json:"bytes_out"`
	L7             L7Status `json:"l7"`
}

// L7Status is the request-level inspection counters of the proxy
// (connections decided by a rule with an l7 section).
type L7Status struct {
	Parsed   uint64            `json:"parsed"`   // connections whose requests were parsed
	Unparsed uint64            `json:"unparsed"` // protocol unknown or without a parser: relayed untouched
	Requests uint64            `json:"requests"`
	Denied   uint64            `json:"denied"`  // requests refused by a guardrail or for want of TLS
	Stopped  map[string]uint64 `json:"stopped"` // connections whose parsing stopped, by reason (proxy.L7StopReasons)
}

// KernelStatus is what the BPF programs hold and counted (intercept.Stats).
// Counters of pinned maps (fail-closed) include earlier runs.
type KernelStatus struct {
	Origins            int      `json:"origins"`
	Tuples             int      `json:"tuples"`
	UDPSeen            int      `json:"udp_seen"`
	CapturePrefixes    int      `json:"capture_prefixes"`
	TCPConnects        uint64   `json:"tcp_connects"`
	Redirected         uint64   `json:"redirected"`
	Established        uint64   `json:"established"`
	SkippedMark        uint64   `json:"skipped_mark"`
	SkippedExempt      uint64   `json:"skipped_exempt"`
	SkippedNotCaptured uint64   `json:"skipped_not_captured"`
	OtherNetns         uint64   `json:"other_netns"`
	BoundDevice        uint64   `json:"bound_device"`
	UDPReported        uint64   `json:"udp_reported"`
	MapFull            uint64   `json:"map_full"`
	EventsLost         uint64   `json:"events_lost"`
	KernelDenied       uint64   `json:"kernel_denied"`              // connects refused by the kernel deny table
	NetnsServed        int      `json:"netns_served"`               // workload network namespaces in the kernel's served map
	RedirectedNetns    uint64   `json:"redirected_netns"`           // of redirected: from served workload namespaces
	MissingPrograms    []string `json:"missing_programs,omitempty"` // vigil programs not attached to the attach point
	Error              string   `json:"error,omitempty"`            // why the counters could not be read
}

// notePolicy remembers the policy just put in force (nil: the built-in
// one), unless a newer one already replaced it.
func (a *Agent) notePolicy(p *policy.Policy) {
	st := &policyState{policy: p, loadedAt: time.Now(), builtin: p == nil}
	if p == nil {
		st.policy = a.policy.Current()
	} else if p != a.policy.Current() {
		return // a later load won; its own call records it
	}
	a.status.policy.Store(st)
}

// policyInfo describes the policy in force.
func (a *Agent) policyInfo() (PolicyInfo, *policy.Policy) {
	st := a.status.policy.Load()
	if st == nil || st.policy != a.policy.Current() {
		// Loaded but not yet noted (or before Run): describe it anyway.
		st = &policyState{policy: a.policy.Current(), builtin: !a.policyFromFile && st == nil}
	}
	p := st.policy
	info := PolicyInfo{
		File: p.File(), SHA256: p.SHA256(), LoadedAt: st.loadedAt, Rules: len(p.Rules()),
		Default: p.Default().Action.String(), Builtin: st.builtin,
	}
	if st.builtin {
		info.File = ""
	}
	return info, p
}

// sample records the counters rates are computed from; Run calls it every
// rateInterval. It reads atomics only.
func (a *Agent) sample(now time.Time) {
	s := rateSample{at: now, nextSeq: a.audit.Stats().NextSeq}
	if a.proxy != nil {
		s.accepted = a.proxy.Stats().Accepted
	}
	a.status.addSample(s)
}

// addSample appends s and forgets samples older than the rate window.
func (st *statusState) addSample(s rateSample) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.samples = append(st.samples, s)
	keep := int(rateWindow/rateInterval) + 1
	if n := len(st.samples); n > keep {
		st.samples = append(st.samples[:0], st.samples[n-keep:]...)
	}
}

// rates returns appends/s and accepted connections/s between the oldest
// sample of the last minute and now.
func (a *Agent) rates(now rateSample) (appends, accepted float64) {
	st := &a.status
	st.mu.Lock()
	var old rateSample
	if len(st.samples) > 0 {
		old = st.samples[0]
	}
	st.mu.Unlock()
	secs := now.at.Sub(old.at).Seconds()
	if old.at.IsZero() || secs < 0.001 {
		return 0, 0
	}
	if now.nextSeq >= old.nextSeq {
		appends = float64(now.nextSeq-old.nextSeq) / secs
	}
	if now.accepted >= old.accepted {
		accepted = float64(now.accepted-old.accepted) / secs
	}
	return appends, accepted
}

// kernelStatus reads the kernel counters and checks the attached programs,
// at most once per kernelMaxAge whatever the number of callers.
func (a *Agent) kernelStatus(now time.Time) kernelSample {
	st := &a.status
	st.kmu.Lock()
	defer st.kmu.Unlock()
	if !st.kernel.at.IsZero() && now.Sub(st.kernel.at) < kernelMaxAge {
		return st.kernel
	}
	ks := kernelSample{at: now}
	ks.stats, ks.err = a.icpt.Stats()
	ks.statsErr = ks.err
	if ks.err == nil {
		ks.missing, ks.err = missingPrograms(a.attachPoint())
	}
	st.kernel = ks
	return ks
}

// attachPoint is the cgroup directory the programs are attached to.
func (a *Agent) attachPoint() string {
	if a.cfg.CgroupPath != "" {
		return a.cfg.CgroupPath
	}
	root, err := intercept.CgroupRoot()
	if err != nil {
		return ""
	}
	return root
}

// buildStatus builds the GET /v1/status body. It reads counters only: no lock
// the proxy or the log writer holds while working is taken for longer than
// a load.
func (a *Agent) buildStatus(now time.Time) StatusResponse {
	v := version.Get()
	r := StatusResponse{
		Version: v.Version, Commit: v.Commit, Started: a.started, PID: os.Getpid(),
		Host: a.cfg.Host, DataDir: a.cfg.DataDir, Intercept: a.icpt != nil, Shipping: []SinkStatus{},
	}
	if r.Host == "" {
		r.Host, _ = os.Hostname()
	}
	if !a.started.IsZero() {
		r.UptimeSeconds = now.Sub(a.started).Seconds()
	}
	r.Policy, _ = a.policyInfo()

	ls := a.audit.Stats()
	cur := rateSample{at: now, nextSeq: ls.NextSeq}
	var ps proxy.Stats
	if a.proxy != nil {
		ps = a.proxy.Stats()
		cur.accepted = ps.Accepted
		r.Listeners = a.proxy.Listeners()
	}
	r.Goroutines = runtime.NumGoroutine()
	appends, accepted := a.rates(cur)
	r.Log = logStatus(ls, appends)

	var h health
	h.logErr, h.lost = ls.Err, ls.Lost
	if p := a.status.proxyErr.Load(); p != nil {
		h.proxyStopped = *p
	}
	if p := a.status.readerErr.Load(); p != nil {
		h.readerStopped = *p
	}
	if a.icpt != nil {
		r.Cgroup = a.cfg.CgroupPath
		if r.Cgroup == "" {
			r.Cgroup = "/"
		}
		r.AttachPoint = a.attachPoint()
		if c := a.status.capture.Load(); c != nil {
			r.Capture = *c
		}
		r.FailMode, r.ProxyPort = a.cfg.FailMode, a.cfg.ProxyPort
		r.Proxy = &ProxyStatus{
			Active: ps.Active, Accepted: ps.Accepted, AcceptedPerSec: accepted, Relayed: ps.Relayed,
			Refused: ps.Refused, Denied: ps.Denied, NotRedirected: ps.NotRedirected, DialFailed: ps.DialFailed,
			AuditRefused: ps.AuditRefused, AuditFailures: ps.AuditFailures, BytesIn: ps.BytesIn, BytesOut: ps.BytesOut,
			L7: L7Status{Parsed: ps.L7Parsed, Unparsed: ps.L7Unparsed, Requests: ps.L7Requests, Denied: ps.L7Denied, Stopped: ps.L7Stopped},
		}
		ks := a.kernelStatus(now)
		r.Kernel = kernelView(ks)
		h.attachPoint, h.missing, h.kernelErr = r.AttachPoint, ks.missing, ks.err
		a.status.kmu.Lock()
		base := a.status.kernelBase
		a.status.kmu.Unlock()
		if ks.err == nil {
			h.eventsLost = ks.stats.EventsLost - min(base.EventsLost, ks.stats.EventsLost)
			h.mapFull = ks.stats.MapFull - min(base.MapFull, ks.stats.MapFull)
		}
	}
	if a.ship != nil {
		r.Shipping = append(r.Shipping, a.ship.Status()...)
	}
	h.sinks = r.Shipping
	if rs, ok := a.RetentionStatus(); ok {
		r.Retention = &rs
		h.retentionBlocked = rs.Blocked
	}
	r.Problems = h.problems()
	r.Healthy = len(r.Problems) == 0
	return r
}

func logStatus(s auditlog.Stats, appends float64) LogStatus {
	ls := LogStatus{
		NextSeq: s.NextSeq, DurableSeq: s.DurableSeq, Segments: s.Segments, Bytes: s.Bytes,
		CheckpointSize: s.CheckpointSize, CheckpointTime: s.CheckpointTime, AppendsPerSec: appends,
		Fsyncs: s.Fsyncs, Lost: s.Lost, KeyID: s.KeyID,
	}
	ls.Entries, ls.DurableLag = s.Sequenced(), s.DurableLag()
	if s.Err != nil {
		ls.Error = s.Err.Error()
	}
	return ls
}

func kernelView(ks kernelSample) *KernelStatus {
	s := ks.stats
	k := &KernelStatus{
		Origins: s.Origins, Tuples: s.Tuples, UDPSeen: s.UDPSeen, CapturePrefixes: s.Capture,
		TCPConnects: s.TCPConnects, Redirected: s.Redirected, Established: s.Established,
		SkippedMark: s.SkippedMark, SkippedExempt: s.SkippedExempt, SkippedNotCaptured: s.SkippedNotCaptured,
		OtherNetns: s.OtherNetns, BoundDevice: s.BoundDevice, UDPReported: s.UDPReported,
		MapFull: s.MapFull, EventsLost: s.EventsLost, KernelDenied: s.KernelDenied, MissingPrograms: ks.missing,
	}
	k.NetnsServed, k.RedirectedNetns = s.Netns, s.RedirectedNetns
	if ks.err != nil {
		k.Error = ks.err.Error()
	}
	return k
}

// health is what decides whether the agent is healthy.
type health struct {
	logErr        error    // the log cannot be written
	lost          uint64   // log entries lost since start
	proxyStopped  string   // why the proxy stopped; "" while it serves
	readerStopped string   // why the kernel event reader stopped
	attachPoint   string   // cgroup the programs should be attached to
	missing       []string // programs not attached there
	kernelErr     error    // the kernel counters could not be read
	eventsLost    uint64   // kernel events dropped since start (ring buffer full)
	mapFull       uint64   // connections let through unredirected since start (origin map full)
	sinks         []SinkStatus
	// retentionBlocked says why the log stays over its local budget.
	retentionBlocked string
}

// problems lists, one sentence each, what makes the agent unhealthy.
func (h health) problems() []string {
	p := []string{}
	if h.logErr != nil {
		p = append(p, fmt.Sprintf("the audit log cannot be written: %v", h.logErr))
	}
	if h.lost > 0 {
		p = append(p, fmt.Sprintf("%d audit entries lost since the agent started (see the log.gap entries)", h.lost))
	}
	if h.proxyStopped != "" {
		p = append(p, "the proxy stopped: "+h.proxyStopped)
	}
	if h.readerStopped != "" {
		p = append(p, "the kernel event reader stopped: "+h.readerStopped)
	}
	if h.kernelErr != nil {
		p = append(p, fmt.Sprintf("cannot read the kernel side: %v", h.kernelErr))
	}
	if len(h.missing) > 0 {
		p = append(p, fmt.Sprintf("BPF programs not attached to %s: %v (connections there are not intercepted)", h.attachPoint, h.missing))
	}
	if h.eventsLost > 0 {
		p = append(p, fmt.Sprintf("%d kernel events dropped since the agent started (ring buffer full)", h.eventsLost))
	}
	if h.mapFull > 0 {
		p = append(p, fmt.Sprintf("%d connections let through unaudited since the agent started (origin map full)", h.mapFull))
	}
	if h.retentionBlocked != "" {
		p = append(p, "local retention is over budget: "+h.retentionBlocked)
	}
	for _, s := range h.sinks {
		if s.LastError != "" {
			p = append(p, fmt.Sprintf("shipping to %s fails: %s", s.Name, s.LastError))
		}
	}
	return p
}

// noteStopped records why a long-running part stopped while the agent was
// still meant to run.
func noteStopped(p *atomic.Pointer[string], err error) {
	msg := "it returned without an error"
	if err != nil {
		msg = err.Error()
	}
	p.Store(&msg)
}

// setCapture records the capture set in force.
func (st *statusState) setCapture(c string) { st.capture.Store(&c) }

// sampleRates samples the counters every rateInterval until ctx ends.
func (a *Agent) sampleRates(ctx context.Context) {
	t := time.NewTicker(rateInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.sample(now)
		}
	}
}

// startStatus seeds what status reports relative to the agent's start.
func (a *Agent) startStatus(now time.Time) {
	a.status.setCapture(captureString(a.cfg.Capture))
	a.sample(now)
	if a.icpt != nil {
		if s, err := a.icpt.Stats(); err == nil {
			a.status.kmu.Lock()
			a.status.kernelBase = s
			a.status.kmu.Unlock()
		}
	}
}
