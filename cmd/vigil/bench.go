package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/pkg/auditbench"
	"github.com/vigil-ebpf/vigil/pkg/keys"
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
