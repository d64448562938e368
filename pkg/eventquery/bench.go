package eventquery

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// BenchConfig describes a `vigil bench query` run.
type BenchConfig struct {
	Dir             string // new log directory (must be missing or empty)
	Entries         int    // synthetic entries to write
	SegmentMaxBytes int64  // segment size; default 64 MiB like the agent
}

// BenchQuery is one query measured without and with the index.
type BenchQuery struct {
	Name         string  `json:"name"`
	Params       string  `json:"params"`
	Matches      int     `json:"matches"`
	ScanSeconds  float64 `json:"scan_seconds"`  // every segment read in full
	IndexSeconds float64 `json:"index_seconds"` // sealed segments through their index
	Ratio        float64 `json:"ratio"`         // scan ÷ index
}

// BenchResult is what Bench measured.
type BenchResult struct {
	Entries      int          `json:"entries"`
	Segments     int          `json:"segments"`
	LogBytes     int64        `json:"log_bytes"`
	IndexBytes   int64        `json:"index_bytes"`
	WriteSeconds float64      `json:"write_seconds"`
	BuildSeconds float64      `json:"index_build_seconds"` // first query, which scans and writes the indexes
	Queries      []BenchQuery `json:"queries"`
}

// Bench writes a synthetic log of cfg.Entries entries spread over 24
// hours (signed with a fresh Ed25519 key, the fastest signer, left in Dir), then times
// selective queries with every segment scanned and through the index, in
// the same run.
func Bench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	var res BenchResult
	if cfg.Entries <= 0 {
		return res, errors.New("eventquery: bench needs a positive number of entries")
	}
	if des, err := os.ReadDir(cfg.Dir); err == nil && len(des) > 0 {
		return res, fmt.Errorf("eventquery: bench directory %s is not empty: choose a new one", cfg.Dir)
	}
	// The key pair stays in the directory, so `vigil verify` and
	// `vigil events --verify` work on the result.
	p, err := keys.WritePair(cfg.Dir, keys.Ed25519, nil)
	if err != nil {
		return res, err
	}
	sv, err := keys.LoadSigner(ctx, p.PrivatePath, nil)
	if err != nil {
		return res, err
	}
	if cfg.SegmentMaxBytes <= 0 {
		cfg.SegmentMaxBytes = 64 << 20
	}
	span := 24 * time.Hour
	t0 := time.Now().Add(-span).Truncate(time.Hour)
	start := time.Now()
	opts := auditlog.Options{Signer: sv, SegmentMaxBytes: cfg.SegmentMaxBytes, SegmentMaxAge: 365 * 24 * time.Hour, CheckpointEvery: 100000}
	if err := WriteSynthetic(ctx, cfg.Dir, opts, cfg.Entries, t0, span); err != nil {
		return res, err
	}
	res.WriteSeconds = time.Since(start).Seconds()
	res.Entries = cfg.Entries

	idx := &Source{Dir: cfg.Dir, IndexDir: filepath.Join(cfg.Dir, "index")}
	scan := &Source{Dir: cfg.Dir, NoIndex: true}
	count := func(src *Source, q url.Values) (int, float64, Stats, error) {
		f, err := ParseValues(q, t0.Add(span))
		if err != nil {
			return 0, 0, Stats{}, err
		}
		n := 0
		start := time.Now()
		st, err := src.Query(ctx, f, func(*auditlog.Entry) error { n++; return nil })
		return n, time.Since(start).Seconds(), st, err
	}
	_, secs, st, err := count(idx, url.Values{"pid": {"1"}})
	if err != nil {
		return res, err
	}
	res.BuildSeconds, res.Segments = secs, st.Segments
	res.LogBytes, res.IndexBytes = dirBytes(cfg.Dir), dirBytes(filepath.Join(cfg.Dir, "index"))

	step := span / time.Duration(cfg.Entries)
	mid := SyntheticEntry(cfg.Entries/2, t0, step)
	third := SyntheticEntry(cfg.Entries/3, t0, step)
	dstIP, _ := splitHostPort(third.Dst)
	hour := t0.Add(14 * time.Hour)
	queries := []struct {
		name string
		q    url.Values
	}{
		{"one hour (14:00-15:00)", url.Values{"since": {hour.Format(time.RFC3339)}, "until": {hour.Add(time.Hour).Format(time.RFC3339)}}},
		{"pid", url.Values{"pid": {strconv.FormatUint(mid.Identity.PID, 10)}}},
		{"destination ip", url.Values{"dst": {dstIP}}},
		{"pod+port, one hour", url.Values{"pod": {"app-15"}, "namespace": {"payments"}, "port": {"5432"},
			"since": {hour.Format(time.RFC3339)}, "until": {hour.Add(time.Hour).Format(time.RFC3339)}}},
		{"deny decisions", url.Values{"decision": {"deny"}}},
	}
	for _, qq := range queries {
		ns, ss, _, err := count(scan, qq.q)
		if err != nil {
			return res, err
		}
		ni, si, _, err := count(idx, qq.q)
		if err != nil {
			return res, err
		}
		if ns != ni {
			return res, fmt.Errorf("eventquery: bench %s: %d matches by scan, %d through the index", qq.name, ns, ni)
		}
		bq := BenchQuery{Name: qq.name, Params: qq.q.Encode(), Matches: ni, ScanSeconds: ss, IndexSeconds: si}
		if si > 0 {
			bq.Ratio = ss / si
		}
		res.Queries = append(res.Queries, bq)
	}
	return res, nil
}

func dirBytes(dir string) int64 {
	var n int64
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		if fi, err := de.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}
