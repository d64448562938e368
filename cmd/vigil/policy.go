package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/vigil-ebpf/vigil/agent"
	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/policy"
	"go.yaml.in/yaml/v3"
)

func policyCommand() *cli.Command {
	return &cli.Command{
		Name:  "policy",
		Usage: "check or try a policy file; show or reload the one the agent enforces",
		Subcommands: []*cli.Command{
			policyCheckCommand(),
			policyTestCommand(),
			policyShowCommand(),
			policyReloadCommand(),
		},
	}
}

func policyCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate a policy file and list every problem in it",
		ArgsUsage: "FILE",
		Description: "Prints each problem as FILE:LINE:COL: field: what is wrong (how to fix it).\n" +
			"Exit status 0 when the policy is valid (warnings are printed), 1 when it has errors\n" +
			"(or warnings, with --strict), 2 for usage errors, 3 when the file cannot be read.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "strict", Usage: "fail on warnings too"},
			outputFlag("text"),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("policy check takes exactly one policy file")
			}
			file := c.Args().First()
			p, err := policy.Load(file)
			var ve *policy.ValidationError
			if err != nil && !errors.As(err, &ve) {
				return err
			}
			res := checkResult{File: file, OK: ve == nil}
			if ve != nil {
				res.Problems = ve.Problems
				res.Errors = ve.Errors()
			} else {
				res.Problems = p.Warnings()
				res.SHA256, res.Rules, res.Default = p.SHA256(), len(p.Rules()), p.Default().Action.String()
			}
			res.Warnings = len(res.Problems) - res.Errors
			if c.Bool("strict") && res.Warnings > 0 {
				res.OK = false
			}
			if c.String("output") == "json" {
				if err := json.NewEncoder(c.App.Writer).Encode(res); err != nil {
					return err
				}
			} else {
				res.print(c.App.Writer, c.Bool("strict"))
			}
			if !res.OK {
				return failedError{fmt.Sprintf("policy %s: %d errors, %d warnings", file, res.Errors, res.Warnings)}
			}
			return nil
		},
	}
}

// checkResult is what `vigil policy check` reports.
type checkResult struct {
	File     string           `json:"file"`
	OK       bool             `json:"ok"`
	Errors   int              `json:"errors"`
	Warnings int              `json:"warnings"`
	Problems []policy.Problem `json:"problems"`
	SHA256   string           `json:"sha256,omitempty"`
	Rules    int              `json:"rules,omitempty"`
	Default  string           `json:"default,omitempty"`
}

func (r *checkResult) print(w io.Writer, strict bool) {
	for _, p := range r.Problems {
		fmt.Fprintln(w, p)
	}
	switch {
	case r.Errors > 0:
		fmt.Fprintf(w, "FAIL %s: %d errors, %d warnings\n", r.File, r.Errors, r.Warnings)
	case !r.OK:
		fmt.Fprintf(w, "FAIL %s: %d warnings (--strict)\n", r.File, r.Warnings)
	default:
		fmt.Fprintf(w, "OK   %s: %d rules, default %s, %d warnings, sha256 %s\n", r.File, r.Rules, r.Default, r.Warnings, r.SHA256)
	}
}

func policyTestCommand() *cli.Command {
	return &cli.Command{
		Name:      "test",
		Usage:     "show what a policy decides for one connection",
		ArgsUsage: "FILE",
		Description: "Describes a connection with flags and prints the decision, the rule that made it\n" +
			"and, for deny, the errno the client sees. Fields not given are unknown (\"\"), and a rule\n" +
			"that matches on a field never matches an unknown value; --uid and --gid default to 0.\n" +
			"Exit status 0 when a decision was made (whatever it is), 1 when the policy is invalid,\n" +
			"2 for usage errors, 3 when the file cannot be read.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dst", Required: true, Usage: "original destination, like 10.0.0.5:5432 or [fd00::1]:443"},
			&cli.StringFlag{Name: "name", Usage: "destination DNS name (as TLS SNI or HTTP Host would tell)"},
			&cli.Uint64Flag{Name: "uid", Usage: "uid of the connecting process"},
			&cli.Uint64Flag{Name: "gid", Usage: "gid of the connecting process"},
			&cli.StringFlag{Name: "user", Usage: "user name of the uid"},
			&cli.StringFlag{Name: "comm", Usage: "task name (at most 15 bytes)"},
			&cli.StringFlag{Name: "exe", Usage: "absolute path of the executable"},
			&cli.StringFlag{Name: "cgroup", Usage: "cgroup v2 path, like /system.slice/nginx.service"},
			&cli.StringFlag{Name: "container", Usage: "container id"},
			&cli.StringFlag{Name: "namespace", Usage: "Kubernetes namespace"},
			&cli.StringFlag{Name: "pod", Usage: "Kubernetes pod name"},
			&cli.StringSliceFlag{Name: "label", Usage: "pod label as key=value (repeat for more)"},
			&cli.StringFlag{Name: "service-account", Usage: "Kubernetes service account of the pod"},
			&cli.StringFlag{Name: "image", Usage: "container image, as the pod spec names it"},
			outputFlag("text"),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("policy test takes exactly one policy file")
			}
			in, err := testInput(c)
			if err != nil {
				return err
			}
			file := c.Args().First()
			p, err := policy.Load(file)
			var ve *policy.ValidationError
			if errors.As(err, &ve) {
				fmt.Fprintln(c.App.ErrWriter, ve)
				fmt.Fprintf(c.App.ErrWriter, "vigil: policy %s is not valid: fix the errors above (vigil policy check %s)\n", file, file)
				return failedError{"invalid policy"}
			}
			if err != nil {
				return err
			}
			d := p.Decide(in)
			res := testResult{Action: d.Action.String(), Rule: d.Rule, Errno: policy.ErrnoName(d.Errno), Policy: file, SHA256: p.SHA256()}
			if r, ok := p.Rule(d.Rule); ok {
				res.Line = r.Line
				res.L7 = ruleGuardrails(p, r)
			}
			if c.String("output") == "json" {
				return json.NewEncoder(c.App.Writer).Encode(res)
			}
			w := c.App.Writer
			fmt.Fprintf(w, "decision  %s\n", res.Action)
			if res.Line > 0 {
				fmt.Fprintf(w, "rule      %s (%s:%d)\n", res.Rule, file, res.Line)
			} else {
				fmt.Fprintf(w, "rule      %s (no rule matched)\n", res.Rule)
			}
			if res.Errno != "" {
				fmt.Fprintf(w, "errno     %s\n", res.Errno)
			}
			res.L7.print(w)
			if in.Name == "" && p.UsesNames() {
				fmt.Fprintln(c.App.ErrWriter, "note: rules that match destination names were skipped: give --name to try them")
			}
			return nil
		},
	}
}

// testResult is what `vigil policy test` reports.
type testResult struct {
	Action string          `json:"action"`
	Rule   string          `json:"rule"`
	Line   int             `json:"line,omitempty"`  // of the rule; 0 for the default
	Errno  string          `json:"errno,omitempty"` // for deny
	Policy string          `json:"policy"`
	SHA256 string          `json:"sha256"`
	L7     *testGuardrails `json:"l7,omitempty"` // the rule's l7 section; nil without one
}

// testGuardrails are the l7 section of the rule that matched, as `vigil
// policy test` shows them.
type testGuardrails struct {
	RequireTLS           bool           `json:"require_tls"`
	Redact               bool           `json:"redact"`
	Audit                string         `json:"audit"` // async or required
	SQLDenyKinds         []string       `json:"sql_deny_kinds,omitempty"`
	SQLDenyDeleteNoWhere bool           `json:"sql_deny_delete_without_where,omitempty"`
	SQLDenyUpdateNoWhere bool           `json:"sql_deny_update_without_where,omitempty"`
	RedisDenyCommands    []string       `json:"redis_deny_commands,omitempty"`
	HTTPDeny             []testHTTPDeny `json:"http_deny,omitempty"`
}

// testHTTPDeny is one entry of an l7 section's http.deny.
type testHTTPDeny struct {
	Methods []string `json:"methods,omitempty"` // none: any method
	Paths   []string `json:"paths,omitempty"`   // none: any path
}

// l7Source is the part of a policy file ruleGuardrails reads back: the
// lists of each rule's l7 section (the file is valid, Load checked it).
type l7Source struct {
	Rules []struct {
		L7 *struct {
			SQL *struct {
				DenyKinds   []string `yaml:"deny_kinds"`
				DeleteWhere bool     `yaml:"deny_delete_without_where"`
				UpdateWhere bool     `yaml:"deny_update_without_where"`
			} `yaml:"sql"`
			Redis *struct {
				DenyCommands []string `yaml:"deny_commands"`
			} `yaml:"redis"`
			HTTP *struct {
				Deny []struct {
					Methods []string `yaml:"methods"`
					Paths   []string `yaml:"paths"`
				} `yaml:"deny"`
			} `yaml:"http"`
		} `yaml:"l7"`
	} `yaml:"rules"`
}

// ruleGuardrails describes r's l7 section; nil without one. The switches
// come from the compiled guardrails, the lists from the file's text.
func ruleGuardrails(p *policy.Policy, r policy.Rule) *testGuardrails {
	if r.L7 == nil {
		return nil
	}
	g := &testGuardrails{RequireTLS: r.L7.RequireTLS(), Redact: r.L7.Redact(), Audit: "async"}
	if r.L7.AuditRequired() {
		g.Audit = "required"
	}
	var src l7Source
	if yaml.Unmarshal(p.Source(), &src) != nil || r.Index < 0 || r.Index >= len(src.Rules) || src.Rules[r.Index].L7 == nil {
		return g
	}
	l := src.Rules[r.Index].L7
	upper := func(xs []string) []string {
		out := make([]string, len(xs))
		for i, x := range xs {
			out[i] = strings.ToUpper(x)
		}
		return out
	}
	if l.SQL != nil {
		g.SQLDenyKinds = upper(l.SQL.DenyKinds)
		g.SQLDenyDeleteNoWhere, g.SQLDenyUpdateNoWhere = l.SQL.DeleteWhere, l.SQL.UpdateWhere
	}
	if l.Redis != nil {
		g.RedisDenyCommands = upper(l.Redis.DenyCommands)
	}
	if l.HTTP != nil {
		for _, d := range l.HTTP.Deny {
			g.HTTPDeny = append(g.HTTPDeny, testHTTPDeny{Methods: d.Methods, Paths: d.Paths})
		}
	}
	return g
}

// print writes the guardrails as lines of `vigil policy test`; nothing
// for nil.
func (g *testGuardrails) print(w io.Writer) {
	if g == nil {
		return
	}
	onOff := map[bool]string{true: "on", false: "off"}
	fmt.Fprintf(w, "l7        requests parsed and recorded: audit %s, redact %s, require_tls %s\n", g.Audit, onOff[g.Redact], onOff[g.RequireTLS])
	guards := 0
	guard := func(format string, args ...any) {
		fmt.Fprintf(w, "guard     "+format+"\n", args...)
		guards++
	}
	if len(g.SQLDenyKinds) > 0 {
		guard("sql: deny %s", strings.Join(g.SQLDenyKinds, ", "))
	}
	if g.SQLDenyDeleteNoWhere {
		guard("sql: deny DELETE without WHERE")
	}
	if g.SQLDenyUpdateNoWhere {
		guard("sql: deny UPDATE without WHERE")
	}
	if len(g.RedisDenyCommands) > 0 {
		guard("redis: deny %s", strings.Join(g.RedisDenyCommands, ", "))
	}
	for _, d := range g.HTTPDeny {
		methods, paths := "any method", "any path"
		if len(d.Methods) > 0 {
			methods = strings.Join(d.Methods, ", ")
		}
		if len(d.Paths) > 0 {
			paths = strings.Join(d.Paths, ", ")
		}
		guard("http: deny %s on %s", methods, paths)
	}
	if g.RequireTLS {
		guard("tls: refuse a session that is not encrypted")
	}
	if guards == 0 {
		fmt.Fprintln(w, "guard     none: every request is allowed")
	}
}

// testInput builds the connection `vigil policy test` decides on.
func testInput(c *cli.Context) (policy.Input, error) {
	dst, err := netip.ParseAddrPort(c.String("dst"))
	if err != nil {
		return policy.Input{}, usagef("--dst %q is not an address and port: write it like 10.0.0.5:5432 or [fd00::1]:443", c.String("dst"))
	}
	in := policy.Input{
		Dst:       dst,
		Name:      c.String("name"),
		User:      c.String("user"),
		Comm:      c.String("comm"),
		Exe:       c.String("exe"),
		Cgroup:    c.String("cgroup"),
		Container: c.String("container"),
		Namespace: c.String("namespace"),
		Pod:       c.String("pod"),
	}
	in.ServiceAccount, in.Image = c.String("service-account"), c.String("image")
	for _, f := range []string{"uid", "gid"} {
		if c.Uint64(f) > math.MaxUint32 {
			return in, usagef("--%s %d is out of range (0 to %d)", f, c.Uint64(f), uint64(math.MaxUint32))
		}
	}
	in.UID, in.GID = uint32(c.Uint64("uid")), uint32(c.Uint64("gid"))
	for _, l := range c.StringSlice("label") {
		k, v, err := policy.ParseLabel(l)
		if err != nil {
			return in, usagef("--label %q is not key=value", l)
		}
		if in.Labels == nil {
			in.Labels = make(map[string]string)
		}
		in.Labels[k] = v
	}
	return in, nil
}

func policyShowCommand() *cli.Command {
	return &cli.Command{
		Name:  "show",
		Usage: "print the policy the running agent enforces, byte for byte",
		Description: "Writes the policy file exactly as the agent loaded it to stdout, and its source,\n" +
			"SHA-256 and load time to stderr, so `vigil policy show > p.yaml` saves a copy with that\n" +
			"hash. --hash prints only the SHA-256. Exit status 0 on success, 1 when the agent is\n" +
			"not running, 2 for usage errors, 3 when it cannot ask.",
		Flags: []cli.Flag{
			controlSocketFlag(),
			&cli.BoolFlag{Name: "hash", Usage: "print only the policy's SHA-256"},
			outputFlag("text"),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("policy show takes no arguments (got %q): it shows what the agent enforces; read a file with cat", c.Args().First())
			}
			var p agent.PolicyResponse
			if err := api.NewClient(c.String("socket")).Get(c.Context, api.Prefix+"/policy", nil, &p); err != nil {
				return agentUnreachable(c, err)
			}
			if sum := sha256.Sum256(p.Source); hex.EncodeToString(sum[:]) != p.SHA256 {
				return fmt.Errorf("the agent sent a policy whose SHA-256 is %x, not the %s it reports", sum, p.SHA256)
			}
			w := c.App.Writer
			switch {
			case c.String("output") == "json":
				return json.NewEncoder(w).Encode(p)
			case c.Bool("hash"):
				fmt.Fprintln(w, p.SHA256)
				return nil
			}
			src := p.File
			if p.Builtin {
				src = "built-in allow-all (no policy file)"
			}
			fmt.Fprintf(c.App.ErrWriter, "# %s\n# sha256 %s, loaded %s\n", src, p.SHA256, p.LoadedAt.Local().Format(time.RFC3339))
			_, err := w.Write(p.Source)
			return err
		},
	}
}

func policyReloadCommand() *cli.Command {
	return &cli.Command{
		Name:  "reload",
		Usage: "make the running agent re-read its policy file now (as SIGHUP does)",
		Description: "The file is validated first: a bad one changes nothing, its problems are printed\n" +
			"and the agent keeps enforcing the policy it had. Exit status 0 when the file was\n" +
			"applied (or there is no file and the built-in policy stays), 1 when it was rejected\n" +
			"or the agent is not running, 2 for usage errors, 3 when it cannot ask.",
		Flags: []cli.Flag{
			controlSocketFlag(),
			outputFlag("text"),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("policy reload takes no arguments: the agent re-reads the file it was started with")
			}
			var r agent.ReloadResponse
			err := api.NewClient(c.String("socket")).Post(c.Context, api.Prefix+"/policy/reload", nil, &r)
			var se *api.StatusError
			if errors.As(err, &se) && se.Code == http.StatusUnprocessableEntity {
				fmt.Fprintln(c.App.ErrWriter, se.Message)
				fmt.Fprintln(c.App.ErrWriter, "vigil: policy rejected: the agent keeps enforcing the policy it had (vigil policy show); fix the file (vigil policy check FILE) and reload")
				return failedError{"policy rejected"}
			}
			if err != nil {
				return agentUnreachable(c, err)
			}
			if c.String("output") == "json" {
				return json.NewEncoder(c.App.Writer).Encode(r)
			}
			p := r.Policy
			switch {
			case r.Result == "none":
				fmt.Fprintf(c.App.Writer, "no policy file: the built-in allow-all stays (sha256 %s)\n", p.SHA256)
			case r.Changed:
				fmt.Fprintf(c.App.Writer, "applied %s: %d rules, default %s, sha256 %s\n", p.File, p.Rules, p.Default, p.SHA256)
			default:
				fmt.Fprintf(c.App.Writer, "applied %s (unchanged): %d rules, default %s, sha256 %s\n", p.File, p.Rules, p.Default, p.SHA256)
			}
			return nil
		},
	}
}
