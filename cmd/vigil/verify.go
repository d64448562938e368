package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/ship/s3"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify a log directory offline with only the public key",
		ArgsUsage: "DIR | s3://BUCKET/PREFIX/HOST",
		Description: "Checks every segment header, entry encoding, seq, chain hash and signature, and every\n" +
			"checkpoint's signature and Merkle root. Exit status 0 when the log verifies, 1 when it\n" +
			"does not (the first bad seq and the reason are printed), 2 for usage errors, 3 when\n" +
			"it cannot run.\n\n" +
			"An s3:// source is the archive the agent shipped (docs/SHIPPING.md): it is downloaded to a\n" +
			"temporary directory and verified like a local one; in addition a seq gap between segment\n" +
			"objects, an object locked for less than --min-retention, and a log that does not extend\n" +
			"the newest shipped checkpoint are failures. With --remote s3://... and a local DIR, the\n" +
			"local log must extend the newest checkpoint shipped there: a log truncated or rewritten\n" +
			"behind it fails. S3 credentials come from the --s3-* flags or AWS_ACCESS_KEY_ID,\n" +
			"AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL and AWS_REGION.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "pubkey", Required: true, Usage: "PEM public key (signing.pub)", EnvVars: []string{"VIGIL_PUBKEY"}},
			&cli.IntFlag{Name: "workers", Usage: "parallel signature checks (default: all CPUs)"},
			outputFlag("text"),
			&cli.StringFlag{Name: "remote", Usage: "s3://BUCKET/PREFIX/HOST: check the local DIR against the newest checkpoint shipped there"},
			&cli.StringFlag{Name: "min-retention", Usage: "with an s3:// source: fail when an object is locked for less than this after it was written (e.g. 400d)"},
		}, s3Flags...),
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("verify takes exactly one log directory")
			}
			v, err := keys.LoadVerifier(c.String("pubkey"))
			if err != nil {
				return err
			}
			src, remote := c.Args().First(), c.String("remote")
			isS3 := strings.HasPrefix(src, "s3://")
			if remote != "" && (isS3 || !strings.HasPrefix(remote, "s3://")) {
				return usagef("--remote takes s3://BUCKET/PREFIX/HOST and a local log directory as the argument")
			}
			var minRet time.Duration
			if m := c.String("min-retention"); m != "" {
				if !isS3 {
					return usagef("--min-retention applies to an s3:// source")
				}
				if minRet, err = ship.ParseRetention(m); err != nil {
					return usagef("--min-retention: %v", err)
				}
			}
			pub, err := v.PublicKey()
			if err != nil {
				return err
			}
			start := time.Now()
			dir := src
			var (
				listing *s3.Listing
				cl      *minio.Client
				ac      *archiveCheck
			)
			if isS3 {
				var tmp string
				if tmp, listing, cl, err = pullForVerify(c.Context, c, src); err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			rep, err := auditlog.Verify(c.Context, dir, v, auditlog.VerifyOptions{Workers: c.Int("workers")})
			rep.Dir = src
			var ve *auditlog.VerifyError
			if err != nil && !errors.As(err, &ve) {
				return err
			}
			if isS3 && ve != nil && ve.Kind == auditlog.MissingLog {
				ve.Reason = fmt.Sprintf("no segment was shipped to %s yet (%d checkpoint objects): the host has not sealed its first segment; check the host's log against them with --remote", src, len(listing.Checkpoints))
			}
			if ve == nil && isS3 {
				ac = &archiveCheck{}
				if ve, err = checkArchive(c.Context, cl, src, listing, minRet, ac); err != nil {
					return err
				}
			}
			if ve == nil && (isS3 || remote != "") {
				url := src
				if remote != "" {
					bucket, root, err := s3.ParseURL(remote)
					if err != nil {
						return usagef("--remote: %v", err)
					}
					if cl, err = s3Client(c); err != nil {
						return err
					}
					if listing, err = s3.List(c.Context, cl, bucket, root, false); err != nil {
						return err
					}
					url = remote
					ac = &archiveCheck{}
					if ve, err = checkArchive(c.Context, cl, remote, listing, 0, ac); err != nil {
						return err
					}
				}
				// In the archive itself, the newest checkpoints usually
				// cover entries of the segment still open on the host: check
				// the newest one the shipped segments reach.
				limit := rep.LastSeq
				if remote != "" {
					limit = math.MaxUint64
				}
				if n := len(listing.Checkpoints); n > 0 {
					ac.NewestCheckpoint = listing.Checkpoints[n-1].Size
				}
				var note []byte
				if ve == nil {
					if note, err = newestCheckpoint(c.Context, cl, url, listing, limit); err != nil {
						return err
					}
				}
				if ve == nil && note == nil && remote != "" {
					return fmt.Errorf("no checkpoint was shipped to %s: nothing to check the local log against", remote)
				}
				if note != nil {
					ac.LastCheckpoint, _ = ship.CheckpointSize(note)
					ve = checkAgainstShipped(c.Context, dir, rep.LastSeq, note, pub)
					ac.Consistent = ve == nil
				}
			}
			elapsed := time.Since(start)
			if c.String("output") == "json" {
				out := struct {
					OK      bool                  `json:"ok"`
					Report  *auditlog.Report      `json:"report"`
					Error   *auditlog.VerifyError `json:"error,omitempty"`
					Archive *archiveCheck         `json:"archive,omitempty"`
					Seconds float64               `json:"seconds"`
				}{OK: ve == nil, Report: rep, Error: ve, Archive: ac, Seconds: elapsed.Seconds()}
				if err := json.NewEncoder(c.App.Writer).Encode(out); err != nil {
					return err
				}
			} else {
				printReport(c, rep, ve, elapsed)
				printArchive(c, ac, ve)
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
	if rep.PrunedThrough > 0 {
		how := "log.prune"
		if rep.UnshippedPruned {
			how = "log.gap: the last segment removed had NO off-host copy"
		}
		fmt.Fprintf(w, "  pruned       seqs 1..%d removed by local retention (%s, seq %d)\n", rep.PrunedThrough, how, rep.PruneRecord)
	}
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

func printArchive(c *cli.Context, ac *archiveCheck, ve *auditlog.VerifyError) {
	if ac == nil || ve != nil {
		return
	}
	w := c.App.Writer
	fmt.Fprintf(w, "  archive      %s: %d segment objects, %d checkpoint objects, no gaps\n", ac.URL, ac.Segments, ac.Checkpoints)
	if !ac.MinRetainUntil.IsZero() {
		fmt.Fprintf(w, "  retention    every object locked until at least %s\n", ac.MinRetainUntil.Format(time.RFC3339))
	}
	if ac.Consistent {
		fmt.Fprintf(w, "  shipped      the log extends the shipped checkpoint of size %d\n", ac.LastCheckpoint)
	}
	if ac.NewestCheckpoint > ac.LastCheckpoint {
		fmt.Fprintf(w, "  pending      newest shipped checkpoint (size %d) covers entries whose segment is not shipped yet\n", ac.NewestCheckpoint)
	}
}
