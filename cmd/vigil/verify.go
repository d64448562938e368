package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify a log directory offline with only the public key",
		ArgsUsage: "DIR",
		Description: "Checks every segment header, entry encoding, seq, chain hash and signature, and every\n" +
			"checkpoint's signature and Merkle root. Exit status 0 when the log verifies, 1 when it\n" +
			"does not (the first bad seq and the reason are printed), 2 for usage errors, 3 when\n" +
			"it cannot run.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pubkey", Required: true, Usage: "PEM public key (signing.pub)", EnvVars: []string{"VIGIL_PUBKEY"}},
			&cli.IntFlag{Name: "workers", Usage: "parallel signature checks (default: all CPUs)"},
			outputFlag("text"),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("verify takes exactly one log directory")
			}
			v, err := keys.LoadVerifier(c.String("pubkey"))
			if err != nil {
				return err
			}
			start := time.Now()
			rep, err := auditlog.Verify(c.Context, c.Args().First(), v, auditlog.VerifyOptions{Workers: c.Int("workers")})
			elapsed := time.Since(start)
			var ve *auditlog.VerifyError
			if err != nil && !errors.As(err, &ve) {
				return err
			}
			if c.String("output") == "json" {
				out := struct {
					OK      bool                  `json:"ok"`
					Report  *auditlog.Report      `json:"report"`
					Error   *auditlog.VerifyError `json:"error,omitempty"`
					Seconds float64               `json:"seconds"`
				}{OK: ve == nil, Report: rep, Error: ve, Seconds: elapsed.Seconds()}
				if err := json.NewEncoder(c.App.Writer).Encode(out); err != nil {
					return err
				}
			} else {
				printReport(c, rep, ve, elapsed)
			}
			if ve != nil {
				return failedError{ve.Error()}
			}
			return nil
		},
	}
}

func printReport(c *cli.Context, rep *auditlog.Report, ve *auditlog.VerifyError, elapsed time.Duration) {
	w := c.App.Writer
	if ve != nil {
		fmt.Fprintf(w, "FAIL %s\n", rep.Dir)
		if ve.Seq != 0 {
			fmt.Fprintf(w, "  first bad seq  %d\n", ve.Seq)
		}
		fmt.Fprintf(w, "  problem        %s: %s\n", ve.Kind, ve.Reason)
		if ve.Segment != "" {
			fmt.Fprintf(w, "  where          %s, byte %d\n", ve.Segment, ve.Offset)
		}
		fmt.Fprintf(w, "  verified       %d entries before it\n", rep.Entries)
		return
	}
	fmt.Fprintf(w, "OK   %s\n", rep.Dir)
	fmt.Fprintf(w, "  entries      %d (seq %d..%d) in %d segments\n", rep.Entries, rep.FirstSeq, rep.LastSeq, rep.Segments)
	if rep.Entries > 0 {
		fmt.Fprintf(w, "  time range   %s .. %s\n", rep.FirstTime.Format(time.RFC3339), rep.LastTime.Format(time.RFC3339))
	}
	if cp := rep.LastCheckpoint; cp != nil {
		fmt.Fprintf(w, "  checkpoints  %d, last: size %d root %s (%s)\n", rep.Checkpoints, cp.Size, cp.Root, cp.Origin)
	} else {
		fmt.Fprintf(w, "  checkpoints  none\n")
	}
	if rep.Uncovered > 0 {
		fmt.Fprintf(w, "  uncovered    %d entries after the last checkpoint (writer did not stop cleanly)\n", rep.Uncovered)
	}
	fmt.Fprintf(w, "  key          %s\n", rep.KeyID)
	rate := float64(rep.Entries) / elapsed.Seconds()
	fmt.Fprintf(w, "  took         %s (%.0f entries/s)\n", elapsed.Round(time.Millisecond), rate)
}
