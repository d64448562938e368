package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/agent"
	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/eventquery"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

func eventsCommand() *cli.Command {
	return &cli.Command{
		Name:  "events",
		Usage: "query the audit log: filters, table/json/csv output, --follow",
		Description: "Reads through the running agent's control socket, or straight from a log directory\n" +
			"with --data-dir (any copy or archive; it is never modified). Without --data-dir and\n" +
			"with no agent answering on --socket, the default data directory is read instead.\n" +
			"--verify reads the files and checks each printed entry's chain hash and signature.\n" +
			"Times: RFC 3339, a date, 2026-01-02 15:04:05 (local), 30m/1h/2d ago, today, yesterday.\n" +
			"docs/QUERY.md has the details and the index.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Usage: "read this log directory or archive instead of asking the agent", EnvVars: []string{"VIGIL_DATA_DIR"}},
			&cli.StringFlag{Name: "socket", Value: api.DefaultSocket, Usage: "the agent's control socket", EnvVars: []string{"VIGIL_SOCKET"}},
			&cli.StringFlag{Name: "since", Usage: "events at or after this time"},
			&cli.StringFlag{Name: "until", Usage: "events before this time (a day: up to its end)"},
			&cli.StringSliceFlag{Name: "type", Usage: "event type (repeatable, or comma-separated): conn.open, conn.deny, l7.request, ..."},
			&cli.StringSliceFlag{Name: "pid", Usage: "process id (repeatable)"},
			&cli.StringSliceFlag{Name: "uid", Usage: "user id (repeatable)"},
			&cli.StringFlag{Name: "comm", Usage: "process name (glob)"},
			&cli.StringFlag{Name: "exe", Usage: "executable path (glob, e.g. '/usr/bin/py*')"},
			&cli.StringFlag{Name: "dst", Usage: "destination: CIDR, IP, ip:port, or host:port (host from TLS SNI / HTTP Host)"},
			&cli.StringFlag{Name: "port", Usage: "destination port"},
			&cli.StringSliceFlag{Name: "decision", Usage: "allow, deny or audit (repeatable)"},
			&cli.StringSliceFlag{Name: "rule", Usage: "policy rule name (repeatable)"},
			&cli.StringFlag{Name: "pod", Usage: "Kubernetes pod (glob)"},
			&cli.StringFlag{Name: "namespace", Usage: "Kubernetes namespace (glob)"},
			&cli.StringFlag{Name: "container", Usage: "container id (prefix or glob) or name"},
			&cli.StringFlag{Name: "grep", Usage: "text in any attribute (SQL statement, command, path, ...), case-insensitive"},
			&cli.Uint64Flag{Name: "from-seq", Usage: "start at this seq"},
			&cli.IntFlag{Name: "limit", Usage: "print at most this many (0: all)"},
			&cli.BoolFlag{Name: "reverse", Aliases: []string{"r"}, Usage: "newest first"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "after the last matching events, print new ones as they are written (Ctrl-C ends)"},
			&cli.BoolFlag{Name: "verify", Usage: "check the chain hash and signature of every printed entry (needs --pubkey; reads the files)"},
			&cli.StringFlag{Name: "pubkey", Usage: "PEM public key for --verify (signing.pub)", EnvVars: []string{"VIGIL_PUBKEY"}},
			&cli.StringFlag{Name: "index-dir", Usage: "where index files are kept (default: DATA_DIR/index if writable, else the user cache directory)"},
			&cli.BoolFlag{Name: "no-index", Usage: "scan every segment; neither use nor write an index"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "table", Usage: "output format: table, json (one entry per line) or csv"},
		},
		Action: runEvents,
	}
}

// eventsQuery turns the filter flags into the query parameters shared with
// GET /v1/events, so both paths parse them with the same code.
func eventsQuery(c *cli.Context) url.Values {
	q := url.Values{}
	for _, name := range []string{"type", "pid", "uid", "decision", "rule"} {
		for _, v := range c.StringSlice(name) {
			q.Add(name, v)
		}
	}
	for _, name := range []string{"since", "until", "comm", "exe", "dst", "port", "pod", "namespace", "container", "grep"} {
		if v := c.String(name); v != "" {
			q.Set(name, v)
		}
	}
	if c.IsSet("from-seq") {
		q.Set("from-seq", strconv.FormatUint(c.Uint64("from-seq"), 10))
	}
	if c.Int("limit") != 0 {
		q.Set("limit", strconv.Itoa(c.Int("limit")))
	}
	if c.Bool("reverse") {
		q.Set("reverse", "1")
	}
	return q
}

func runEvents(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("events takes no arguments; use --data-dir DIR to read a log directory")
	}
	q := eventsQuery(c)
	f, err := eventquery.ParseValues(q, time.Now())
	if err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "eventquery: "))
	}
	follow := c.Bool("follow")
	if follow && f.Reverse {
		return usagef("--follow prints oldest first; drop --reverse")
	}
	if c.Bool("verify") && c.String("pubkey") == "" {
		return usagef("--verify needs --pubkey (the log's signing.pub)")
	}
	enc, err := eventquery.NewEncoder(c.App.Writer, c.String("output"), nil)
	if err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), "eventquery: "))
	}
	emit := func(e *auditlog.Entry) error {
		if err := enc.Encode(e); err != nil {
			return err
		}
		if follow {
			return enc.Flush() // each event as it happens
		}
		return nil
	}
	// Precedence: --data-dir (or VIGIL_DATA_DIR), then --verify (signatures
	// are in the files), then the agent's socket, then the default data
	// directory when no agent answers.
	dir := c.String("data-dir")
	if dir == "" && c.Bool("verify") {
		dir = agent.DefaultDataDir
	}
	if dir == "" {
		err = eventsFromSocket(c.Context, c.String("socket"), q, follow, emit)
		if errors.Is(err, api.ErrNoAgent) {
			fmt.Fprintf(c.App.ErrWriter, "vigil: no agent on %s; reading %s directly\n", c.String("socket"), agent.DefaultDataDir)
			dir = agent.DefaultDataDir
		} else {
			return finishEvents(c.Context, enc, err)
		}
	}
	src := &eventquery.Source{Dir: dir, IndexDir: c.String("index-dir"), NoIndex: c.Bool("no-index"), Logger: logger(c)}
	if c.Bool("verify") {
		if src.Verifier, err = keys.LoadVerifier(c.String("pubkey")); err != nil {
			return err
		}
	}
	err = finishEvents(c.Context, enc, src.Run(c.Context, f, follow, emit))
	var ve *eventquery.VerifyError
	if errors.As(err, &ve) {
		// Like vigil verify: the command ran and found a forged or changed entry.
		fmt.Fprintf(c.App.ErrWriter, "vigil: %v\n", err)
		return failedError{err.Error()}
	}
	return err
}

// finishEvents flushes what was printed; Ctrl-C while following is a
// normal end.
func finishEvents(ctx context.Context, enc eventquery.Encoder, err error) error {
	if ferr := enc.Flush(); err == nil {
		err = ferr
	}
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// eventsFromSocket streams GET /v1/events and hands each entry to emit.
func eventsFromSocket(ctx context.Context, socket string, q url.Values, follow bool, emit eventquery.Emit) error {
	if follow {
		q.Set("follow", "1")
	}
	body, err := api.NewClient(socket).Stream(ctx, api.Prefix+"/events", q)
	if err != nil {
		return err
	}
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 8<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var probe struct {
			Error *string `json:"error"`
		}
		if err := json.Unmarshal(line, &probe); err != nil {
			return fmt.Errorf("events: bad line from the agent: %w", err)
		}
		if probe.Error != nil {
			return fmt.Errorf("events: the agent stopped the query: %s", *probe.Error)
		}
		var e auditlog.Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("events: bad entry from the agent: %w", err)
		}
		if err := emit(&e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("events: reading from the agent: %w", err)
	}
	return nil
}
