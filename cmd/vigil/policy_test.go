package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// vigilPolicy runs the CLI in-process like vigil, with the policy command
// added to the app if it is not registered there.
func vigilPolicy(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	app := newApp(strings.NewReader(""), &out, &errb)
	if !slices.ContainsFunc(app.Commands, func(c *cli.Command) bool { return c.Name == "policy" }) {
		app.Commands = append(app.Commands, policyCommand())
	}
	code := run(context.Background(), app, append([]string{"vigil"}, args...))
	return code, out.String(), errb.String()
}

const examplePolicy = "../../deploy/policy.example.yaml"

func TestPolicyCheckExample(t *testing.T) {
	code, out, errs := vigilPolicy(t, "policy", "check", examplePolicy)
	if code != exitOK || !strings.Contains(out, "OK   "+examplePolicy+": 5 rules, default audit, 1 warnings, sha256 ") {
		t.Fatalf("policy check example = %d, %q, %q; want OK", code, out, errs)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(examplePolicy) + `:\d+:\d+: warning: rules\[2\]\.match\.dst\.names: `).MatchString(out) {
		t.Errorf("policy check example does not print its warning with file:line:col:\n%s", out)
	}
	code, out, _ = vigilPolicy(t, "policy", "check", "--strict", examplePolicy)
	if code != exitFailure || !strings.Contains(out, "FAIL "+examplePolicy+": 1 warnings (--strict)") {
		t.Errorf("policy check --strict example = %d, %q; want failure on its warning", code, out)
	}
}

func TestPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: vigil.dev/v1\ndefault: deny\nrules:\n  - name: a\n    action: deny\n    match:\n      dst:\n        cidr: [\"10.1.2.0/33\"]\n        port: [\"80\"]\n"), 0o600)
	code, out, _ := vigilPolicy(t, "policy", "check", bad)
	want := bad + `:8:16: rules[0].match.dst.cidr: "10.1.2.0/33" is not a CIDR (write it like 10.1.2.0/24; prefix lengths are 0 to 32)
` + bad + `:9:9: rules[0].match.dst: unknown field "port" (did you mean ports?)
FAIL ` + bad + `: 2 errors, 0 warnings
`
	if code != exitFailure || out != want {
		t.Errorf("policy check bad = %d,\n%s\nwant %d,\n%s", code, out, exitFailure, want)
	}

	code, out, _ = vigilPolicy(t, "policy", "check", "-o", "json", bad)
	var res checkResult
	if code != exitFailure || json.Unmarshal([]byte(out), &res) != nil || res.OK || res.Errors != 2 || res.Problems[0].Line != 8 || res.Problems[0].Col != 16 {
		t.Errorf("policy check -o json bad = %d, %q", code, out)
	}

	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("apiVersion: vigil.dev/v1\ndefault: allow\n"), 0o600)
	code, out, _ = vigilPolicy(t, "policy", "check", "--strict", good)
	if code != exitOK || !strings.HasPrefix(out, "OK   "+good+": 0 rules, default allow, 0 warnings") {
		t.Errorf("policy check --strict good = %d, %q", code, out)
	}

	code, _, errs := vigilPolicy(t, "policy", "check", filepath.Join(dir, "missing.yaml"))
	if code != exitInternal || !strings.Contains(errs, "no such file") {
		t.Errorf("policy check missing = %d, %q", code, errs)
	}
	code, _, errs = vigilPolicy(t, "policy", "check")
	if code != exitUsage || !strings.Contains(errs, "exactly one policy file") {
		t.Errorf("policy check without a file = %d, %q", code, errs)
	}
}

func TestPolicyTest(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		out  string // substring of stdout; "|" separates several
		err  string // substring of stderr
	}{
		{"deny", []string{"--dst", "10.1.2.3:5432", "--uid", "1000"}, exitOK,
			"decision  deny\nrule      payments-db-only-from-api (" + examplePolicy + ":|\nerrno     ECONNREFUSED\n", "note: rules that match destination names"},
		{"excluded by not", []string{"--dst", "10.1.2.3:5432", "--namespace", "payments", "--pod", "api-0", "--label", "app=api"}, exitOK,
			"decision  audit\nrule      default (no rule matched)\n", ""},
		{"deny EACCES", []string{"--dst", "169.254.169.254:80", "--uid", "1000"}, exitOK, "rule      no-metadata-service (" + examplePolicy + ":|\nerrno     EACCES\n", ""},
		{"allow by name", []string{"--dst", "10.50.0.1:5432", "--name", "db.internal", "--user", "app", "--comm", "psql", "--exe", "/usr/bin/psql"}, exitOK,
			"decision  allow\nrule      app-db-clients|\nl7        requests parsed and recorded: audit async, redact on, require_tls off\n" +
				"guard     sql: deny DROP, TRUNCATE\nguard     sql: deny DELETE without WHERE\n", ""},
		{"audit", []string{"--dst", "10.9.1.1:22", "--gid", "1500", "--cgroup", "/system.slice/backup.service"}, exitOK, "decision  audit\nrule      backups-audited", ""},
		{"container", []string{"--dst", "192.0.2.1:9100", "--container", "3f9a0011"}, exitOK, "decision  allow\nrule      metrics-from-scraper", ""},
		{"json", []string{"--dst", "[fd00:1:2::5]:6005", "-o", "json"}, exitOK,
			`{"action":"deny","rule":"payments-db-only-from-api","line":`, ""},
		{"bad dst", []string{"--dst", "10.1.2.3"}, exitUsage, "", `--dst "10.1.2.3" is not an address and port`},
		{"no dst", nil, exitUsage, "", `Required flag "dst" not set`},
		{"bad label", []string{"--dst", "10.1.2.3:1", "--label", "app"}, exitUsage, "", `--label "app" is not key=value`},
		{"bad uid", []string{"--dst", "10.1.2.3:1", "--uid", "4294967296"}, exitUsage, "", `--uid 4294967296 is out of range`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"policy", "test"}, tt.args...)
			args = append(args, examplePolicy)
			code, out, errs := vigilPolicy(t, args...)
			outOK := true
			for _, want := range strings.Split(tt.out, "|") {
				outOK = outOK && strings.Contains(out, want)
			}
			if code != tt.code || !outOK || !strings.Contains(errs, tt.err) {
				t.Errorf("vigil %s = %d,\n%s\n%s\nwant %d, %q, %q", strings.Join(args, " "), code, out, errs, tt.code, tt.out, tt.err)
			}
		})
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: vigil.dev/v1\n"), 0o600)
	code, _, errs := vigilPolicy(t, "policy", "test", "--dst", "10.0.0.1:80", bad)
	if code != exitFailure || !strings.Contains(errs, bad+":1:1: default: missing") || !strings.Contains(errs, "is not valid") {
		t.Errorf("policy test on an invalid policy = %d, %q", code, errs)
	}
}

// TestPolicyTestGuardrails: `vigil policy test` shows the l7 section of
// the rule that matched, in text and JSON, and nothing for a rule
// without one.
func TestPolicyTestGuardrails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(file, []byte(`apiVersion: vigil.dev/v1
default: allow
rules:
  - name: plain
    action: allow
    match: {dst: {ports: [22]}}
  - name: record-only
    action: audit
    match: {dst: {ports: [9000]}}
    l7: {}
  - name: guarded
    action: allow
    match: {dst: {ports: [6379, 443]}}
    l7:
      redis: {deny_commands: [flushall, "CONFIG SET"]}
      http: {deny: [{methods: [DELETE], paths: ["/admin/*"]}, {paths: ["/debug"]}]}
      require_tls: true
      redact: false
      audit: required
`), 0o600)
	tests := []struct {
		name, dst, want string
		not             string // must not appear
	}{
		{"no l7", "10.0.0.1:22", "rule      plain (", "l7 "},
		{"record only", "10.0.0.1:9000",
			"l7        requests parsed and recorded: audit async, redact on, require_tls off\nguard     none: every request is allowed\n", ""},
		{"guarded", "10.0.0.1:6379",
			"l7        requests parsed and recorded: audit required, redact off, require_tls on\n" +
				"guard     redis: deny FLUSHALL, CONFIG SET\n" +
				"guard     http: deny DELETE on /admin/*\n" +
				"guard     http: deny any method on /debug\n" +
				"guard     tls: refuse a session that is not encrypted\n", "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := vigilPolicy(t, "policy", "test", "--dst", tt.dst, file)
			if code != exitOK || !strings.Contains(out, tt.want) || tt.not != "" && strings.Contains(out, tt.not) {
				t.Errorf("policy test --dst %s = %d,\n%s%s\nwant %q, not %q", tt.dst, code, out, errs, tt.want, tt.not)
			}
		})
	}
	code, out, _ := vigilPolicy(t, "policy", "test", "-o", "json", "--dst", "10.0.0.1:443", file)
	var res testResult
	if err := json.Unmarshal([]byte(out), &res); code != exitOK || err != nil || res.L7 == nil {
		t.Fatalf("policy test -o json = %d, %q (%v); want an l7 object", code, out, err)
	}
	g := res.L7
	if !g.RequireTLS || g.Redact || g.Audit != "required" || strings.Join(g.RedisDenyCommands, "|") != "FLUSHALL|CONFIG SET" ||
		len(g.HTTPDeny) != 2 || g.HTTPDeny[1].Paths[0] != "/debug" || len(g.HTTPDeny[1].Methods) != 0 {
		t.Errorf("policy test -o json l7 = %+v", g)
	}
	if _, out, _ := vigilPolicy(t, "policy", "test", "-o", "json", "--dst", "10.0.0.1:22", file); strings.Contains(out, `"l7"`) {
		t.Errorf("policy test -o json for a rule without l7 = %q; want no l7 field", out)
	}
}
