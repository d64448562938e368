package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/pkg/ship/s3"
)

func archiveCommand() *cli.Command {
	return &cli.Command{
		Name:  "archive",
		Usage: "work with the log archive shipped to S3",
		Subcommands: []*cli.Command{{
			Name:      "pull",
			Usage:     "download a shipped archive for offline review",
			ArgsUsage: "s3://BUCKET/PREFIX/HOST DIR",
			Description: "Downloads every segment object as a log directory (segment-<seq>.vlog) and every\n" +
				"checkpoint object into DIR/checkpoints/, so `vigil verify --pubkey K DIR` works on it.\n" +
				"Prints the seq gaps the object names show. DIR must be empty or absent.",
			Flags: s3Flags,
			Action: func(c *cli.Context) error {
				if c.Args().Len() != 2 {
					return usagef("archive pull takes s3://BUCKET/PREFIX/HOST and a directory")
				}
				src, dir := c.Args().Get(0), c.Args().Get(1)
				bucket, root, err := s3.ParseURL(src)
				if err != nil {
					return usagef("%v", err)
				}
				if des, err := os.ReadDir(dir); err == nil && len(des) > 0 {
					return usagef("%s is not empty: pull into a new directory", dir)
				}
				cl, err := s3Client(c)
				if err != nil {
					return err
				}
				l, err := s3.Pull(c.Context, cl, bucket, root, dir)
				if err != nil {
					return err
				}
				w := c.App.Writer
				fmt.Fprintf(w, "pulled %d segments and %d checkpoints from %s into %s\n", len(l.Segments), len(l.Checkpoints), src, dir)
				if n := len(l.Segments); n > 0 {
					fmt.Fprintf(w, "  seqs       %d..%d\n", l.Segments[0].First, l.Segments[n-1].Last)
				}
				for _, g := range l.Gaps {
					fmt.Fprintf(w, "  MISSING    seqs %d..%d (no segment object)\n", g[0], g[1])
				}
				fmt.Fprintf(w, "verify it with: vigil verify --pubkey signing.pub %s\n", filepath.Clean(dir))
				if len(l.Gaps) > 0 {
					return failedError{fmt.Sprintf("%d gaps in the archive", len(l.Gaps))}
				}
				return nil
			},
		}},
	}
}
