package main

import (
	"context"
	"crypto"
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/pkg/auditbench"
	"github.com/vigil-ebpf/vigil/pkg/eventquery"
	"github.com/vigil-ebpf/vigil/pkg/keys"
	"github.com/vigil-ebpf/vigil/pkg/proxybench"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure vigil against a baseline run in the same process",
		Subcommands: []*cli.Command{{
			Name:  "audit",
			Usage: "write N realistic entries through the agent's log writer, compare with plain write+fsync",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "dir", Required: true, Usage: "new log directory (left behind; it passes vigil verify)"},
				&cli.IntFlag{Name: "entries", Value: 200000, Usage: "entries to write"},
				&cli.StringFlag{Name: "key", Usage: "signing key file or KMS URI (default: a fresh ECDSA P-256 key, public key written to DIR/signing.pub)"},
				passwordFileFlag,
				&cli.StringFlag{Name: "type", Value: string(keys.ECDSAP256), Usage: "type of the fresh key when --key is not given"},
				&cli.IntFlag{Name: "workers", Value: 256, Usage: "concurrent appenders, each waiting until its entry is durable"},
				outputFlag("text"),
			},
			Action: benchAudit,
		}, {
			Name:   "proxy",
			Usage:  "intercepted vs direct on this machine: bulk throughput, connections/s, connect+first-byte latency (root)",
			Before: linuxOnly("bench proxy"),
			Flags: []cli.Flag{
				&cli.DurationFlag{Name: "duration", Value: 3 * time.Second, Usage: "length of each connection-rate measurement"},
				&cli.IntFlag{Name: "bulk-mib", Value: 512, Usage: "MiB streamed in each bulk measurement"},
				&cli.IntSliceFlag{Name: "clients", Value: cli.NewIntSlice(1, 32), Usage: "concurrent clients for the connection rate"},
				&cli.StringFlag{Name: "type", Value: string(keys.ECDSAP256), Usage: "type of the fresh signing key (ecdsa-p256, ed25519)"},
				&cli.IntFlag{Name: "rounds", Value: 4, Usage: "slices each measurement is cut into, direct and intercepted taking turns"},
				&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the whole run (client, proxy and server share the process) to this file"},
				outputFlag("text"),
			},
			Action: benchProxy,
		}, {
			Name:  "query",
			Usage: "write N synthetic entries over 24h, then time selective `vigil events` queries with and without the index",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "dir", Required: true, Usage: "new log directory (left behind with its index and signing.pub)"},
				&cli.IntFlag{Name: "entries", Value: 1000000, Usage: "entries to write (1M takes about a minute here; docs/PERFORMANCE.md has 10M)"},
				&cli.Int64Flag{Name: "segment-bytes", Value: 64 << 20, Usage: "segment size, as the agent's default"},
				outputFlag("text"),
			},
			Action: benchQuery,
		}},
	}
}

func benchAudit(c *cli.Context) error {
	dir := c.String("dir")
	sv, err := benchSigner(c, dir)
	if err != nil {
		return err
	}
	res, err := auditbench.Measure(c.Context, auditbench.Config{
		Dir: dir, Entries: c.Int("entries"), Workers: c.Int("workers"), Signer: sv, Verify: sv,
	})
	if err != nil {
		return err
	}
	if c.String("output") == "json" {
		return json.NewEncoder(c.App.Writer).Encode(res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "%-30s %12s %9s %10s %10s %8s\n", "run", "entries/s", "MB/s", "p50", "p99", "fsyncs")
	row := func(name string, r auditbench.Run) {
		fmt.Fprintf(w, "%-30s %12.0f %9.1f %8.0fµs %8.0fµs %8d\n", name, r.EntriesPerSec, r.MBPerSec, r.P50Micros, r.P99Micros, r.Fsyncs)
	}
	row("audit (signed, chained)", res.Audit)
	row("baseline (plain write+fsync)", res.Baseline)
	fmt.Fprintf(w, "ratio audit/baseline: %.2f\n", res.Ratio)
	fmt.Fprintf(w, "verify: %.0f entries/s (%.2f× the write rate)\n", res.VerifyPerSec, res.VerifyRatio)
	fmt.Fprintf(w, "log left in %s\n", dir)
	return nil
}

// benchSigner loads --key, or creates a fresh key pair inside dir so that
// `vigil verify --pubkey DIR/signing.pub DIR` works afterwards.
func benchSigner(c *cli.Context, dir string) (signature.SignerVerifier, error) {
	if ref := c.String("key"); ref != "" {
		pw, err := readPassword(c)
		if err != nil {
			return nil, err
		}
		return keys.LoadSigner(c.Context, ref, func() ([]byte, error) { return pw, nil })
	}
	p, err := keys.WritePair(dir, keys.Type(c.String("type")), nil)
	if err != nil {
		return nil, err
	}
	return keys.LoadSigner(context.WithoutCancel(c.Context), p.PrivatePath, nil)
}

func benchProxy(c *cli.Context) error {
	dir, err := os.MkdirTemp("", "vigil-bench-proxy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sv, err := keys.Generate(keys.Type(c.String("type")))
	if err != nil {
		return err
	}
	if path := c.String("cpuprofile"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	signer, err := signature.LoadSignerVerifier(sv, crypto.SHA256)
	if err != nil {
		return err
	}
	res, err := proxybench.Measure(c.Context, proxybench.Config{
		Dir: dir, Signer: signer, Duration: c.Duration("duration"), BulkMiB: c.Int("bulk-mib"), Clients: c.IntSlice("clients"), Rounds: c.Int("rounds"),
	})
	if err != nil {
		return err
	}
	if c.String("output") == "json" {
		return json.NewEncoder(c.App.Writer).Encode(res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "bulk, one stream:   direct %8.0f MB/s (cpu %4.0fµs/MiB)   intercepted %8.0f MB/s (cpu %4.0fµs/MiB)   ratio %.2f\n",
		res.BulkDirectMBps, res.BulkDirectCPU, res.BulkProxyMBps, res.BulkProxyCPU, res.BulkRatio)
	for i, d := range res.Direct {
		in := res.Intercepted[i]
		fmt.Fprintf(w, "conns, %2d client(s): direct %8.0f /s (p50 %5.0fµs p99 %6.0fµs cpu %4.0fµs/conn)   intercepted %8.0f /s (p50 %5.0fµs p99 %6.0fµs cpu %4.0fµs/conn)   ratio %.2f\n",
			d.Clients, d.PerSec, d.P50Micros, d.P99Micros, d.CPUMicros, in.PerSec, in.P50Micros, in.P99Micros, in.CPUMicros, res.RateRatio[i])
	}
	fmt.Fprintf(w, "audit: %d signed entries, %d fsyncs (conn.open durable before each relay)\n", res.Audit.Entries, res.Audit.Fsyncs)
	return nil
}

func benchQuery(c *cli.Context) error {
	res, err := eventquery.Bench(c.Context, eventquery.BenchConfig{
		Dir: c.String("dir"), Entries: c.Int("entries"), SegmentMaxBytes: c.Int64("segment-bytes"),
	})
	if err != nil {
		return err
	}
	if c.String("output") == "json" {
		return json.NewEncoder(c.App.Writer).Encode(res)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "log: %d entries in %d segments, %.0f MB; written in %.1fs (%.0f entries/s)\n",
		res.Entries, res.Segments, float64(res.LogBytes)/1e6, res.WriteSeconds, float64(res.Entries)/res.WriteSeconds)
	fmt.Fprintf(w, "index: %.1f MB, built by the first query in %.2fs\n", float64(res.IndexBytes)/1e6, res.BuildSeconds)
	fmt.Fprintf(w, "%-26s %9s %10s %10s %8s\n", "query", "matches", "scan", "index", "ratio")
	for _, q := range res.Queries {
		fmt.Fprintf(w, "%-26s %9d %9.3fs %9.3fs %7.1f×\n", q.Name, q.Matches, q.ScanSeconds, q.IndexSeconds, q.Ratio)
	}
	fmt.Fprintf(w, "log left in %s\n", c.String("dir"))
	return nil
}
