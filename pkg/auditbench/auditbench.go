// Package auditbench measures the audit log's write and verify paths against
// a plain write+fsync baseline run in the same process, so results are
// ratios that hold on noisy shared machines.
package auditbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// Config describes one benchmark run.
type Config struct {
	Dir     string // log directory to create; must be missing or empty
	Entries int    // entries to write in each run
	Workers int    // concurrent appenders, each waiting for durability like a connection does
	Signer  signature.SignerVerifier
	Verify  signature.Verifier // if set, the log is verified afterwards and timed
}

// Run is the outcome of one write run.
type Run struct {
	Entries       int     `json:"entries"`
	Seconds       float64 `json:"seconds"`
	EntriesPerSec float64 `json:"entries_per_sec"`
	MBPerSec      float64 `json:"mb_per_sec"`
	P50Micros     float64 `json:"p50_us"` // time from Append to durable
	P99Micros     float64 `json:"p99_us"`
	Fsyncs        uint64  `json:"fsyncs"`
}

// Result compares the audit log with the baseline.
type Result struct {
	Audit        Run     `json:"audit"`
	Baseline     Run     `json:"baseline"`
	Ratio        float64 `json:"ratio"` // audit entries/s ÷ baseline entries/s
	VerifyPerSec float64 `json:"verify_entries_per_sec,omitempty"`
	VerifyRatio  float64 `json:"verify_ratio,omitempty"` // verify rate ÷ audit write rate
}

// Measure runs the audit log and then the baseline with the same entries
// and concurrency.
func Measure(ctx context.Context, cfg Config) (Result, error) {
	var res Result
	if cfg.Entries <= 0 || cfg.Workers <= 0 {
		return res, errors.New("auditbench: entries and workers must be positive")
	}
	if des, err := os.ReadDir(cfg.Dir); err == nil {
		for _, de := range des {
			if n := de.Name(); n != keys.PrivateKeyFile && n != keys.PublicKeyFile {
				return res, fmt.Errorf("auditbench: %s already holds %s: give a new directory", cfg.Dir, n)
			}
		}
	}
	var err error
	if res.Audit, err = runAudit(ctx, cfg); err != nil {
		return res, err
	}
	base, err := os.MkdirTemp(filepath.Dir(filepath.Clean(cfg.Dir)), ".vigil-baseline-")
	if err != nil {
		return res, fmt.Errorf("auditbench: baseline dir: %w", err)
	}
	defer os.RemoveAll(base)
	if res.Baseline, err = runBaseline(ctx, cfg, filepath.Join(base, "plain.log")); err != nil {
		return res, err
	}
	res.Ratio = res.Audit.EntriesPerSec / res.Baseline.EntriesPerSec
	if cfg.Verify != nil {
		start := time.Now()
		rep, err := auditlog.Verify(ctx, cfg.Dir, cfg.Verify, auditlog.VerifyOptions{})
		if err != nil {
			return res, fmt.Errorf("auditbench: the benchmark log does not verify: %w", err)
		}
		res.VerifyPerSec = float64(rep.Entries) / time.Since(start).Seconds()
		res.VerifyRatio = res.VerifyPerSec / res.Audit.EntriesPerSec
	}
	return res, nil
}

// entry returns a realistic connection event.
func entry(i int) auditlog.Entry {
	typ, attrs := auditlog.ConnOpen, map[string]string(nil)
	if i%2 == 1 {
		typ = auditlog.ConnClose
		attrs = map[string]string{"bytes_in": strconv.Itoa(1200 + i%5000), "bytes_out": strconv.Itoa(340 + i%700), "duration_ms": strconv.Itoa(i % 9000)}
	}
	return auditlog.Entry{
		Type: typ,
		Identity: auditlog.Identity{
			PID: uint64(20000 + i%5000), TID: uint64(20000 + i%5000), UID: 1000, GID: 1000,
			Comm: "psql", Exe: "/usr/lib/postgresql/15/bin/psql", Cmdline: "psql -h db.internal -U app payments",
			CgroupPath: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c.slice/cri-containerd-3f9a.scope",
			CgroupID:   uint64(7000 + i%50), ContainerID: "3f9a6c1e2b7d", Runtime: "containerd", Pod: "payments-api-7d9f", Namespace: "payments",
		},
		Proto: "tcp", Src: "10.244.1.17:" + strconv.Itoa(32768+i%28000), Dst: "10.96.0.42:5432",
		Decision: auditlog.Allow, Rule: "payments-db", Attrs: attrs,
	}
}

// split runs fn(worker, i) for Entries items over Workers goroutines and
// returns the per-item latencies fn reports.
func split(ctx context.Context, cfg Config, fn func(i int) (time.Duration, error)) ([]time.Duration, time.Duration, error) {
	lat := make([]time.Duration, cfg.Entries)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for w := 0; w < cfg.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < cfg.Entries; i += cfg.Workers {
				if ctx.Err() != nil {
					return
				}
				d, err := fn(i)
				if err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				lat[i] = d
			}
		}()
	}
	wg.Wait()
	return lat, time.Since(start), firstErr
}

func summarize(n int, lat []time.Duration, elapsed time.Duration, bytes int64, fsyncs uint64) Run {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(p*float64(len(lat)-1))]) / float64(time.Microsecond)
	}
	return Run{
		Entries:       n,
		Seconds:       elapsed.Seconds(),
		EntriesPerSec: float64(n) / elapsed.Seconds(),
		MBPerSec:      float64(bytes) / elapsed.Seconds() / 1e6,
		P50Micros:     pct(0.50),
		P99Micros:     pct(0.99),
		Fsyncs:        fsyncs,
	}
}

func runAudit(ctx context.Context, cfg Config) (Run, error) {
	l, err := auditlog.Open(ctx, cfg.Dir, auditlog.Options{Signer: cfg.Signer})
	if err != nil {
		return Run{}, err
	}
	lat, elapsed, err := split(ctx, cfg, func(i int) (time.Duration, error) {
		t := time.Now()
		_, err := l.AppendSync(ctx, entry(i))
		return time.Since(t), err
	})
	st := l.Stats()
	if cerr := l.Close(ctx); err == nil {
		err = cerr
	}
	if err != nil {
		return Run{}, err
	}
	return summarize(cfg.Entries, lat, elapsed, st.Bytes, st.Fsyncs), nil
}

// runBaseline writes the same entries as plain JSON lines, unsigned and
// unchained, through the same kind of group commit (one writer, batches,
// one fdatasync per batch), so the ratio isolates the cost of the audit
// log's encoding, chaining, signing and framing.
func runBaseline(ctx context.Context, cfg Config, path string) (Run, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return Run{}, fmt.Errorf("auditbench: %w", err)
	}
	defer f.Close()
	type req struct {
		b    []byte
		done chan error
	}
	reqs := make(chan req, 16384)
	var bytes int64
	var fsyncs uint64
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		var buf []byte
		batch := make([]req, 0, 4096)
		for r := range reqs {
			batch = append(batch[:0], r)
		gather:
			for len(batch) < 4096 {
				select {
				case r, ok := <-reqs:
					if !ok {
						break gather
					}
					batch = append(batch, r)
				default:
					break gather
				}
			}
			buf = buf[:0]
			for _, r := range batch {
				buf = append(buf, r.b...)
			}
			_, err := f.Write(buf)
			if err == nil {
				err = auditlog.Datasync(f)
			}
			fsyncs++
			bytes += int64(len(buf))
			for _, r := range batch {
				r.done <- err
			}
		}
	}()
	lat, elapsed, err := split(ctx, cfg, func(i int) (time.Duration, error) {
		t := time.Now()
		b, err := json.Marshal(entry(i))
		if err != nil {
			return 0, err
		}
		done := make(chan error, 1)
		reqs <- req{b: append(b, '\n'), done: done}
		err = <-done
		return time.Since(t), err
	})
	close(reqs)
	<-writerDone
	if err != nil {
		return Run{}, fmt.Errorf("auditbench: baseline: %w", err)
	}
	return summarize(cfg.Entries, lat, elapsed, bytes, fsyncs), nil
}
