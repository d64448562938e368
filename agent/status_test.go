package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

const (
	testPolicy = "apiVersion: vigil.dev/v1\ndefault: audit\nrules:\n  - name: no-metadata\n    action: deny\n    match:\n      dst:\n        cidr: [\"169.254.169.254/32\"]\n"
	nextPolicy = "apiVersion: vigil.dev/v1\ndefault: deny\n"
	badPolicy  = "apiVersion: vigil.dev/v1\ndefault: maybe\n"
)

// runAgent starts an agent without interception, serving its control API
// on a socket in a temporary directory, and stops it when the test ends.
func runAgent(t *testing.T, cfg Config) (*Agent, *api.Client) {
	t.Helper()
	dir := t.TempDir()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Socket = filepath.Join(dir, "vigil.sock")
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	c := api.NewClient(cfg.Socket)
	for i := 0; ; i++ {
		var v VersionResponse
		err := c.Get(context.Background(), api.Prefix+"/version", nil, &v)
		if err == nil {
			break
		}
		if i == 250 {
			t.Fatalf("control API did not answer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a, c
}

func writePolicy(t *testing.T, path, data string) {
	t.Helper()
	// Replaced atomically, so the watcher never reads half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestStatusAndPolicyRoutes(t *testing.T) {
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy(t, polFile, testPolicy)
	a, c := runAgent(t, Config{PolicyPath: polFile, PolicyExplicit: true, Host: "node-1"})
	ctx := context.Background()

	var v VersionResponse
	if err := c.Get(ctx, api.Prefix+"/version", nil, &v); err != nil || v.Version == "" || v.Started.IsZero() {
		t.Errorf("GET /v1/version = %+v, %v", v, err)
	}

	var raw json.RawMessage
	if err := c.Get(ctx, api.Prefix+"/status", nil, &raw); err != nil {
		t.Fatal(err)
	}
	// Lists are lists, never null, so that clients can iterate them.
	for _, want := range []string{`"shipping": []`, `"problems": []`} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("GET /v1/status lacks %s:\n%s", want, raw)
		}
	}
	var s StatusResponse
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"healthy", s.Healthy && len(s.Problems) == 0},
		{"version", s.Version == v.Version && s.Commit == v.Commit},
		{"started", s.Started.Equal(v.Started) && s.UptimeSeconds > 0},
		{"pid", s.PID == os.Getpid()},
		{"host", s.Host == "node-1"},
		{"data_dir", s.DataDir == a.cfg.DataDir},
		{"no intercept", !s.Intercept && s.Proxy == nil && s.Kernel == nil && s.Cgroup == "" && s.ProxyPort == 0},
		{"policy", s.Policy.File == polFile && s.Policy.SHA256 == sha(testPolicy) && s.Policy.Rules == 1 &&
			s.Policy.Default == "audit" && !s.Policy.Builtin && !s.Policy.LoadedAt.IsZero()},
		// agent.start and policy.load
		{"log seq", s.Log.NextSeq >= 3 && s.Log.Entries == s.Log.NextSeq-1},
		{"log durable", s.Log.DurableSeq+s.Log.DurableLag == s.Log.Entries && s.Log.DurableSeq >= 1},
		{"log key", s.Log.KeyID == a.keyID && s.Log.Error == "" && s.Log.Lost == 0},
		{"log files", s.Log.Segments >= 1 && s.Log.Bytes > 0 && s.Log.Fsyncs >= 1},
		{"shipping", s.Shipping != nil && len(s.Shipping) == 0},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("GET /v1/status: %s wrong in %+v", ch.name, s)
		}
	}

	var p PolicyResponse
	if err := c.Get(ctx, api.Prefix+"/policy", nil, &p); err != nil {
		t.Fatal(err)
	}
	if string(p.Source) != testPolicy || p.SHA256 != sha(testPolicy) || p.File != polFile || p.Rules != 1 {
		t.Errorf("GET /v1/policy = %+v (source %q); want the loaded file", p.PolicyInfo, p.Source)
	}

	// A bad file: 422 naming the problem, the running policy stays.
	writePolicy(t, polFile, badPolicy)
	err := c.Post(ctx, api.Prefix+"/policy/reload", nil, nil)
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusUnprocessableEntity || !strings.Contains(se.Message, polFile+":2:") || !strings.Contains(se.Message, "maybe") {
		t.Errorf("POST /v1/policy/reload of a bad file = %v; want 422 with file:line and the problem", err)
	}
	if err := c.Get(ctx, api.Prefix+"/policy", nil, &p); err != nil || p.SHA256 != sha(testPolicy) {
		t.Errorf("after a rejected reload the policy is %s, %v; want the old one", p.SHA256, err)
	}

	writePolicy(t, polFile, nextPolicy)
	var rr ReloadResponse
	if err := c.Post(ctx, api.Prefix+"/policy/reload", nil, &rr); err != nil {
		t.Fatal(err)
	}
	// The watcher may have applied the file first: then the reload
	// applies the same bytes again.
	if rr.Result != "applied" || rr.Policy.SHA256 != sha(nextPolicy) || rr.Policy.Default != "deny" || rr.Policy.Rules != 0 {
		t.Errorf("POST /v1/policy/reload = %+v; want the new policy applied", rr)
	}
	if err := c.Get(ctx, api.Prefix+"/policy", nil, &p); err != nil || string(p.Source) != nextPolicy {
		t.Errorf("GET /v1/policy after reload = %q, %v", p.Source, err)
	}
	if err := c.Post(ctx, api.Prefix+"/policy/reload", nil, &rr); err != nil || rr.Changed {
		t.Errorf("a second reload of the same file = %+v, %v; want applied, unchanged", rr, err)
	}
	if err := c.Get(ctx, api.Prefix+"/status", nil, &s); err != nil || !s.Healthy || s.Policy.SHA256 != sha(nextPolicy) {
		t.Errorf("GET /v1/status after reload: %v, policy %+v", err, s.Policy)
	}
	if err := c.Get(ctx, api.Prefix+"/nope", nil, &raw); !api.IsNotFound(err) {
		t.Errorf("unknown route = %v; want 404", err)
	}

	// Every reload, rejected or applied, is in the log.
	results := policyLoads(t, a)
	if !strings.HasPrefix(strings.Join(results, ","), "applied,") || !contains(results, "rejected") || len(results) < 4 {
		t.Errorf("policy.load results = %v; want applied first, a rejected one, and the reloads", results)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// policyLoads returns the result attribute of each policy.load entry
// written so far.
func policyLoads(t *testing.T, a *Agent) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for a.audit.Stats().DurableSeq < a.audit.Stats().NextSeq-1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	var res []string
	err := auditlog.Scan(context.Background(), a.cfg.DataDir, 1, func(r auditlog.Record) error {
		if r.Entry.Type == auditlog.PolicyLoad {
			res = append(res, r.Entry.Attrs["result"])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestStatusBuiltinPolicy(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "policy.yaml")
	_, c := runAgent(t, Config{PolicyPath: missing})
	ctx := context.Background()
	var s StatusResponse
	if err := c.Get(ctx, api.Prefix+"/status", nil, &s); err != nil {
		t.Fatal(err)
	}
	if !s.Policy.Builtin || s.Policy.File != "" || s.Policy.Default != "allow" || s.Policy.SHA256 != sha(builtinPolicy) || !s.Healthy {
		t.Errorf("status policy = %+v, healthy %v; want the built-in allow-all", s.Policy, s.Healthy)
	}
	var p PolicyResponse
	if err := c.Get(ctx, api.Prefix+"/policy", nil, &p); err != nil || string(p.Source) != builtinPolicy || !p.Builtin {
		t.Errorf("GET /v1/policy = %+v %q, %v; want the built-in source", p.PolicyInfo, p.Source, err)
	}
	var rr ReloadResponse
	if err := c.Post(ctx, api.Prefix+"/policy/reload", nil, &rr); err != nil || rr.Result != "none" || rr.Changed || !rr.Policy.Builtin {
		t.Errorf("reload with no file at the default path = %+v, %v; want none, built-in stays", rr, err)
	}
	writePolicy(t, missing, nextPolicy)
	if err := c.Post(ctx, api.Prefix+"/policy/reload", nil, &rr); err != nil || rr.Result != "applied" || rr.Policy.Builtin || rr.Policy.File != missing {
		t.Errorf("reload once the default file exists = %+v, %v; want it applied", rr, err)
	}
}

func TestStatusUnhealthy(t *testing.T) {
	a, c := runAgent(t, Config{PolicyPath: filepath.Join(t.TempDir(), "none.yaml")})
	// What Run records when the ring buffer reader returns early.
	noteStopped(&a.status.readerErr, errors.New("intercept: read events: bad file descriptor"))
	var s StatusResponse
	if err := c.Get(context.Background(), api.Prefix+"/status", nil, &s); err != nil {
		t.Fatal(err)
	}
	want := "the kernel event reader stopped: intercept: read events: bad file descriptor"
	if s.Healthy || len(s.Problems) != 1 || s.Problems[0] != want {
		t.Errorf("status with a stopped reader = healthy %v, problems %q; want unhealthy, %q", s.Healthy, s.Problems, want)
	}
}

func TestHealthProblems(t *testing.T) {
	tests := []struct {
		name string
		h    health
		want []string
	}{
		{"healthy", health{}, []string{}},
		{"log", health{logErr: errors.New("write segment: no space left on device")},
			[]string{"the audit log cannot be written: write segment: no space left on device"}},
		{"lost", health{lost: 3}, []string{"3 audit entries lost since the agent started (see the log.gap entries)"}},
		{"proxy", health{proxyStopped: "accept: too many open files"}, []string{"the proxy stopped: accept: too many open files"}},
		{"links", health{attachPoint: "/sys/fs/cgroup", missing: []string{"vigil_connect4", "vigil_connect6"}},
			[]string{"BPF programs not attached to /sys/fs/cgroup: [vigil_connect4 vigil_connect6] (connections there are not intercepted)"}},
		{"kernel", health{kernelErr: errors.New("map gone")}, []string{"cannot read the kernel side: map gone"}},
		{"kernel losses", health{eventsLost: 2, mapFull: 1}, []string{
			"2 kernel events dropped since the agent started (ring buffer full)",
			"1 connections let through unaudited since the agent started (origin map full)"}},
		{"sink", health{sinks: []SinkStatus{{Name: "s3"}, {Name: "nats", LastError: "connection refused"}}},
			[]string{"shipping to nats fails: connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.h.problems()
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || got == nil {
				t.Errorf("problems() = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestRates(t *testing.T) {
	var a Agent
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if ap, ac := a.rates(rateSample{at: t0, nextSeq: 5}); ap != 0 || ac != 0 {
		t.Errorf("rates with no history = %v, %v; want 0", ap, ac)
	}
	// Two minutes of samples: only the last minute counts.
	for i := range 25 {
		a.status.addSample(rateSample{at: t0.Add(time.Duration(i) * rateInterval), nextSeq: uint64(1 + 100*i), accepted: uint64(10 * i)})
	}
	if n := len(a.status.samples); n != int(rateWindow/rateInterval)+1 {
		t.Errorf("kept %d samples; want a minute's worth", n)
	}
	now := rateSample{at: t0.Add(24*rateInterval + rateInterval/2), nextSeq: 1 + 100*24 + 50, accepted: 240 + 5}
	ap, ac := a.rates(now)
	// Oldest kept sample is 12 intervals back: 1250 appends and 125
	// accepts in 62.5s.
	if ap != 20 || ac != 2 {
		t.Errorf("rates = %v appends/s, %v accepted/s; want 20, 2", ap, ac)
	}
}

// TestSlowClients: clients that stall mid-request or never read their
// answer hold nothing that others need.
func TestSlowClients(t *testing.T) {
	polFile := filepath.Join(t.TempDir(), "policy.yaml")
	// A large file, so that an unread answer fills the socket buffer.
	big := testPolicy + strings.Repeat("# padding to make the answer larger than a socket buffer\n", 20000)
	writePolicy(t, polFile, big)
	a, c := runAgent(t, Config{PolicyPath: polFile, PolicyExplicit: true})
	for _, req := range []string{
		"GET /v1/status HTTP/1.1\r\nHost: vigil\r\n",             // headers never finished
		"GET /v1/policy HTTP/1.1\r\nHost: vigil\r\n\r\n",         // answer never read
		"POST /v1/policy/reload HTTP/1.1\r\nHost: vigil\r\n\r\n", // answer never read
	} {
		conn, err := net.Dial("unix", a.cfg.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var rr ReloadResponse
	if err := c.Post(ctx, api.Prefix+"/policy/reload", nil, &rr); err != nil || rr.Policy.SHA256 != sha(big) {
		t.Errorf("reload while other clients stall = %+v, %v", rr, err)
	}
	var s StatusResponse
	if err := c.Get(ctx, api.Prefix+"/status", nil, &s); err != nil || !s.Healthy {
		t.Errorf("status while other clients stall = %v, %v", s.Healthy, err)
	}
	var p PolicyResponse
	if err := c.Get(ctx, api.Prefix+"/policy", nil, &p); err != nil || len(p.Source) != len(big) {
		t.Errorf("policy while other clients stall = %d bytes, %v", len(p.Source), err)
	}
}

// BenchmarkStatusRoute measures GET /v1/status against GET /v1/version,
// the cheapest route, over the same socket in the same run.
func BenchmarkStatusRoute(b *testing.B) {
	dir := b.TempDir()
	cfg := Config{DataDir: filepath.Join(dir, "data"), Socket: filepath.Join(dir, "vigil.sock"), PolicyPath: filepath.Join(dir, "none.yaml")}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	c := api.NewClient(cfg.Socket)
	for i := 0; c.Get(ctx, api.Prefix+"/version", nil, new(VersionResponse)) != nil; i++ {
		if i == 250 {
			b.Fatal("control API did not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	measure := func(route string, out any) time.Duration {
		start := time.Now()
		for range b.N {
			if err := c.Get(ctx, route, nil, out); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	b.ResetTimer()
	base := measure(api.Prefix+"/version", new(VersionResponse))
	st := measure(api.Prefix+"/status", new(StatusResponse))
	b.ReportMetric(float64(base.Microseconds())/float64(b.N), "version-µs/op")
	b.ReportMetric(float64(st.Microseconds())/float64(b.N), "status-µs/op")
	b.ReportMetric(float64(st)/float64(base), "status/version")
}
