package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/agent"
	"github.com/vigil-ebpf/vigil/pkg/api"
)

// controlSocketFlag selects the agent to talk to.
func controlSocketFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "socket", Value: api.DefaultSocket, Usage: "the agent's control API socket", EnvVars: []string{"VIGIL_SOCKET"}}
}

// agentUnreachable turns "nothing listens on the socket" into one line on
// stderr and exit status 1, so that a health check can tell a stopped
// agent from a broken command line; other errors pass through.
func agentUnreachable(c *cli.Context, err error) error {
	if !errors.Is(err, api.ErrNoAgent) {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "vigil: the agent is not running: nothing listens on %s (start it with `vigil agent`, or pass --socket)\n", c.String("socket"))
	return failedError{"agent not running"}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the running agent's health, policy, log and counters (exit 1 when unhealthy)",
		Description: "Asks the agent over its control socket. Exit status 0 when the agent is healthy,\n" +
			"1 when it is unhealthy (the problems are printed) or not running, 2 for usage errors,\n" +
			"3 when it cannot ask (e.g. permission denied on the socket: run as root). Suitable\n" +
			"as a liveness/readiness probe or a systemd health check.",
		Flags: []cli.Flag{
			controlSocketFlag(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table or json"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("status takes no arguments (got %q)", c.Args().First())
			}
			format := c.String("output")
			if format != "table" && format != "json" {
				return usagef("unknown output format %q: use table or json", format)
			}
			var s agent.StatusResponse
			if err := api.NewClient(c.String("socket")).Get(c.Context, api.Prefix+"/status", nil, &s); err != nil {
				return agentUnreachable(c, err)
			}
			if format == "json" {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				if err := enc.Encode(s); err != nil {
					return err
				}
			} else {
				printStatus(c.App.Writer, s)
			}
			if !s.Healthy {
				return failedError{fmt.Sprintf("agent unhealthy: %s", strings.Join(s.Problems, "; "))}
			}
			return nil
		},
	}
}

// printStatus writes the human summary of s.
func printStatus(out io.Writer, s agent.StatusResponse) {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	health := "healthy"
	if !s.Healthy {
		health = fmt.Sprintf("UNHEALTHY (%d problems)", len(s.Problems))
	}
	row("status", "%s", health)
	row("agent", "vigil %s (commit %s), pid %d on %s", s.Version, s.Commit, s.PID, s.Host)
	row("uptime", "%s (since %s)", (time.Duration(s.UptimeSeconds) * time.Second).String(), s.Started.Local().Format(time.DateTime))
	row("data dir", "%s", s.DataDir)
	if s.Intercept {
		row("intercept", "cgroup %s (attached at %s), fail %s, proxy port %d", s.Cgroup, s.AttachPoint, s.FailMode, s.ProxyPort)
		row("capture", "%s", s.Capture)
	} else {
		row("intercept", "off (agent events only)")
	}
	p := s.Policy
	src := p.File
	if p.Builtin {
		src = "built-in allow-all (no policy file)"
	}
	row("policy", "%s: %d rules, default %s", src, p.Rules, p.Default)
	row("", "sha256 %s, loaded %s", p.SHA256, p.LoadedAt.Local().Format(time.DateTime))
	l := s.Log
	row("log", "%d entries (next seq %d, durable %d, lag %d), %.1f appends/s over the last minute", l.Entries, l.NextSeq, l.DurableSeq, l.DurableLag, l.AppendsPerSec)
	cp := "none yet"
	if !l.CheckpointTime.IsZero() {
		cp = fmt.Sprintf("size %d at %s", l.CheckpointSize, l.CheckpointTime.Local().Format(time.DateTime))
	}
	row("", "%d segments, %s written, %d fsyncs, %d lost; checkpoint %s", l.Segments, byteSize(l.Bytes), l.Fsyncs, l.Lost, cp)
	row("", "key %s", l.KeyID)
	if l.Error != "" {
		row("", "ERROR %s", l.Error)
	}
	if x := s.Proxy; x != nil {
		row("proxy", "%d active, %d accepted (%.1f/s), %d relayed, %d refused (%d denied, %d dial failed, %d audit refused, %d not redirected)",
			x.Active, x.Accepted, x.AcceptedPerSec, x.Relayed, x.Refused, x.Denied, x.DialFailed, x.AuditRefused, x.NotRedirected)
		row("", "%s in, %s out, %d audit failures", byteSize(int64(x.BytesIn)), byteSize(int64(x.BytesOut)), x.AuditFailures)
		row("l7", "%d connections parsed, %d unparsed (protocol unknown), %d requests, %d denied; parsing stopped: %s",
			x.L7.Parsed, x.L7.Unparsed, x.L7.Requests, x.L7.Denied, stopReasons(x.L7.Stopped))
	}
	if k := s.Kernel; k != nil {
		row("kernel", "%d TCP connects, %d redirected, %d established, %d denied; skipped: %d marked, %d exempt, %d not captured",
			k.TCPConnects, k.Redirected, k.Established, k.KernelDenied, k.SkippedMark, k.SkippedExempt, k.SkippedNotCaptured)
		row("", "reported: %d other netns, %d bound to a device, %d UDP; %d map full, %d events lost",
			k.OtherNetns, k.BoundDevice, k.UDPReported, k.MapFull, k.EventsLost)
		row("", "maps: %d origins, %d tuples, %d UDP seen, %d capture prefixes", k.Origins, k.Tuples, k.UDPSeen, k.CapturePrefixes)
	}
	if len(s.Shipping) == 0 {
		row("shipping", "no sinks configured")
	}
	for i, sk := range s.Shipping {
		k := ""
		if i == 0 {
			k = "shipping"
		}
		state := "ok"
		if sk.LastError != "" {
			state = "ERROR " + sk.LastError
		}
		row(k, "%s (%s): shipped to seq %d, backlog %d entries (%s), lag %.0fs, %s", sk.Name, sk.Kind, sk.LastSeq, sk.BacklogEntries, byteSize(sk.BacklogBytes), sk.LagSeconds, state)
	}
	if r := s.Retention; r != nil {
		state := "ok"
		if r.Blocked != "" {
			state = "BLOCKED " + r.Blocked
		}
		row("retention", "%s of %s on the host, %d segments pruned, %d entries dropped unshipped, %s",
			byteSize(r.LocalBytes), byteSize(r.MaxBytes), r.PrunedSegments, r.DroppedUnshipped, state)
	}
	_ = w.Flush()
	if len(s.Problems) > 0 {
		fmt.Fprintln(out, "problems:")
		for _, p := range s.Problems {
			fmt.Fprintf(out, "  - %s\n", p)
		}
	}
}

// byteSize formats n bytes with a binary unit.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// stopReasons lists the non-zero counts of stopped, by reason in name
// order ("none" when there are none): "2 encrypted, 1 too_large".
func stopReasons(stopped map[string]uint64) string {
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(stopped)) {
		if n := stopped[r]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, r))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
