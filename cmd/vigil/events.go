package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/agent"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "print audit events from a log directory (read-only)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Value: agent.DefaultDataDir, Usage: "log directory or a copy of one", EnvVars: []string{"VIGIL_DATA_DIR"}},
			&cli.StringSliceFlag{Name: "type", Usage: "only these event types (conn.open, conn.close, ...)"},
			&cli.Uint64Flag{Name: "from-seq", Value: 1, Usage: "start at this seq"},
			&cli.IntFlag{Name: "limit", Usage: "print at most this many (0: all)"},
			outputFlag("table"),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("events takes no arguments; use --data-dir")
			}
			format := c.String("output")
			if format != "table" && format != "json" {
				return usagef("unknown output format %q: use table or json", format)
			}
			types := map[auditlog.Type]bool{}
			for _, t := range c.StringSlice("type") {
				types[auditlog.Type(t)] = true
			}
			w := c.App.Writer
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			if format == "table" {
				fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tPROCESS\tUID\tSRC\tDST\tDECISION")
			}
			enc := json.NewEncoder(w)
			n, limit := 0, c.Int("limit")
			err := auditlog.Scan(c.Context, c.String("data-dir"), c.Uint64("from-seq"), func(r auditlog.Record) error {
				e := r.Entry
				if len(types) > 0 && !types[e.Type] {
					return nil
				}
				if format == "json" {
					if err := enc.Encode(e); err != nil {
						return err
					}
				} else {
					proc := ""
					if e.Identity.PID != 0 {
						proc = fmt.Sprintf("%s[%d]", e.Identity.Comm, e.Identity.PID)
					}
					uid := ""
					if e.Identity.PID != 0 {
						uid = fmt.Sprint(e.Identity.UID)
					}
					dec := string(e.Decision)
					if e.Rule != "" {
						dec += " (" + e.Rule + ")"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Local().Format(time.DateTime), e.Type, proc, uid, e.Src, e.Dst, strings.TrimSpace(dec))
				}
				n++
				if limit > 0 && n >= limit {
					return auditlog.ErrStop
				}
				return nil
			})
			if ferr := tw.Flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
}
