package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// check parses src as "p.yaml" and returns every problem, errors and
// warnings, as printed.
func check(t *testing.T, src string) []string {
	t.Helper()
	p, err := Parse("p.yaml", []byte(src))
	var probs []Problem
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		probs = ve.Problems
		if p != nil {
			t.Errorf("Parse returned a policy and an error")
		}
	case err != nil:
		t.Fatalf("Parse: %v (not a *ValidationError)", err)
	default:
		probs = p.Warnings()
	}
	out := make([]string, len(probs))
	for i, pr := range probs {
		out[i] = pr.String()
	}
	return out
}

const head = "apiVersion: vigil.dev/v1\ndefault: deny\nrules:\n"

func TestParseProblems(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // each a substring of one problem, in order; all problems must be listed
	}{
		{"ok", head + "  - name: a\n    action: allow\n    match: {dst: {ports: [\"80\"]}}\n", nil},
		{"no rules", "apiVersion: vigil.dev/v1\ndefault: allow\n", nil},
		{"empty rules", "apiVersion: vigil.dev/v1\ndefault: allow\nrules: []\n", nil},
		{"empty file", "", []string{`p.yaml: the file is empty (start from deploy/policy.example.yaml)`}},
		{"only comments", "# nothing\n", []string{`the file is empty`}},
		{"null document", "~\n", []string{`p.yaml:1:1: the file has no policy in it`}},
		{"not a mapping", "- a\n", []string{`p.yaml:1:1: want a mapping, got a list`}},
		{"syntax", "apiVersion: vigil.dev/v1\ndefault: [allow\n", []string{`not valid YAML`}},
		{"syntax line", "apiVersion: vigil.dev/v1\n  default: allow\n", []string{`p.yaml:2: not valid YAML: mapping values are not allowed`}},
		{"two documents", "apiVersion: vigil.dev/v1\ndefault: allow\n---\ndefault: deny\n", []string{`p.yaml:3:1: a second YAML document starts here`}},
		{"missing default", "apiVersion: vigil.dev/v1\n", []string{`p.yaml:1:1: default: missing (add default: deny`}},
		{"missing apiVersion", "default: deny\n", []string{`p.yaml:1:1: apiVersion: missing (add apiVersion: vigil.dev/v1`}},
		{"bad apiVersion", "apiVersion: vigil.dev/v2\ndefault: deny\n", []string{`p.yaml:1:13: apiVersion: unsupported apiVersion "vigil.dev/v2" (write apiVersion: vigil.dev/v1)`}},
		{"bad default", "apiVersion: vigil.dev/v1\ndefault: Deny\n", []string{`p.yaml:2:10: default: unknown action "Deny" (write deny)`}},
		{"unknown top field", "apiVersion: vigil.dev/v1\ndefault: deny\nrule: []\n", []string{`p.yaml:3:1: unknown field "rule" (did you mean rules?)`}},
		{"repeated field", "apiVersion: vigil.dev/v1\ndefault: deny\ndefault: allow\n", []string{`p.yaml:3:1: default: set twice (first on line 2)`}},
		{"rules not a list", "apiVersion: vigil.dev/v1\ndefault: deny\nrules: {}\n", []string{`p.yaml:3:8: rules: want a list, got a mapping`}},
		{"rules null", "apiVersion: vigil.dev/v1\ndefault: deny\nrules:\n", []string{`rules: want a list, got nothing (write a list of rules (rules: [] for none))`}},
		{"rule no name no action", head + "  - match: {dst: {ports: [\"80\"]}}\n", []string{
			`p.yaml:4:5: rules[0]: rule has no name`, `p.yaml:4:5: rules[0]: rule has no action`}},
		{"bad name", head + "  - name: \"a b\"\n    action: allow\n    match: {dst: {ports: [\"80\"]}}\n", []string{`p.yaml:4:11: rules[0].name: rule name "a b" is not allowed`}},
		{"reserved name", head + "  - name: default\n    action: allow\n    match: {dst: {ports: [\"80\"]}}\n", []string{`"default" is reserved`}},
		{"duplicate name", head + "  - name: a\n    action: allow\n    match: {dst: {ports: [\"80\"]}}\n  - name: a\n    action: deny\n    match: {dst: {ports: [\"81\"]}}\n",
			[]string{`p.yaml:7:11: rules[1].name: "a" is already the name of rules[0] (line 4) (rule names are recorded in the audit log and must be unique)`}},
		{"unknown action", head + "  - name: a\n    action: block\n    match: {dst: {ports: [\"80\"]}}\n", []string{`p.yaml:5:13: rules[0].action: unknown action "block" (use allow, deny or audit)`}},
		{"unknown errno", head + "  - name: a\n    action: deny\n    errno: ENOPE\n    match: {dst: {ports: [\"80\"]}}\n", []string{`p.yaml:6:12: rules[0].errno: unknown errno "ENOPE" (use ECONNREFUSED, EACCES, EPERM, ETIMEDOUT, ENETUNREACH or EHOSTUNREACH)`}},
		{"lowercase errno", head + "  - name: a\n    action: deny\n    errno: eperm\n    match: {dst: {ports: [\"80\"]}}\n", []string{`unknown errno "eperm" (write EPERM)`}},
		{"errno on allow", head + "  - name: a\n    action: allow\n    errno: EPERM\n    match: {dst: {ports: [\"80\"]}}\n", []string{`p.yaml:6:12: rules[0].errno: errno applies only to deny`}},
		{"bad cidr", head + "  - name: a\n    action: deny\n    match:\n      dst:\n        cidr: [\"10.1.2.0/33\"]\n",
			[]string{`p.yaml:8:16: rules[0].match.dst.cidr: "10.1.2.0/33" is not a CIDR (write it like 10.1.2.0/24; prefix lengths are 0 to 32)`}},
		{"bad v6 cidr", head + "  - name: a\n    action: deny\n    match: {dst: {cidr: [\"fd00::/129\"]}}\n", []string{`"fd00::/129" is not a CIDR (write it like fd00::/64; prefix lengths are 0 to 128)`}},
		{"not a cidr", head + "  - name: a\n    action: deny\n    match: {dst: {cidr: [\"db\"]}}\n", []string{`"db" is not a CIDR or address`}},
		{"host bits", head + "  - name: a\n    action: deny\n    match: {dst: {cidr: [\"10.1.2.3/24\"]}}\n", []string{`"10.1.2.3/24" has bits set after the prefix length (write 10.1.2.0/24 for the network, or 10.1.2.3/32 for the one address)`}},
		{"mapped cidr", head + "  - name: a\n    action: deny\n    match: {dst: {cidr: [\"::ffff:10.0.0.0/104\"]}}\n", []string{`is an IPv4-mapped IPv6 address`}},
		{"zone", head + "  - name: a\n    action: deny\n    match: {dst: {cidr: [\"fe80::1%eth0\"]}}\n", []string{`has an IPv6 zone`}},
		{"ports", head + "  - name: a\n    action: deny\n    match: {dst: {ports: [\"6010-6000\", 70000, \"http\", 0, \"-1\", \"+5\", 80]}}\n", []string{
			`p.yaml:6:27: rules[0].match.dst.ports: range "6010-6000" runs backwards (write "6000-6010")`,
			`p.yaml:6:40: rules[0].match.dst.ports: "70000" is out of range (ports are 1 to 65535)`,
			`p.yaml:6:47: rules[0].match.dst.ports: "http" is not a valid port or range`,
			`"0" is out of range`, `"-1" is not a valid port or range`, `"+5" is not a valid port or range`}},
		{"ports scalar", head + "  - name: a\n    action: deny\n    match: {dst: {ports: 80}}\n", []string{`rules[0].match.dst.ports: want a list, got "80" (write it as a list: ["80"])`}},
		{"ports empty", head + "  - name: a\n    action: deny\n    match: {dst: {ports: []}}\n", []string{`rules[0].match.dst.ports: empty list matches nothing (remove the field to match any value)`}},
		{"uids", head + "  - name: a\n    action: deny\n    match: {workload: {uids: [-1, \"5-2\", 4294967296, 4294967295, \"0-10\"]}}\n", []string{
			`"-1" is not a valid id or range`, `range "5-2" runs backwards`, `"4294967296" is out of range (ids are 0 to 4294967295)`}},
		{"unknown match field", head + "  - name: a\n    action: deny\n    match: {dst: {port: [\"80\"]}, workload: {uid: [1]}, src: {}}\n", []string{
			`rules[0].match.dst: unknown field "port" (did you mean ports?)`,
			`rules[0].match.workload: unknown field "uid" (did you mean uids?)`,
			`rules[0].match: unknown field "src" (fields here: dst, workload)`}},
		{"match null", head + "  - name: a\n    action: deny\n    match:\n", []string{
			`rules[0].match: want a mapping, got nothing (it takes dst, workload)`}},
		{"bad pattern", head + "  - name: a\n    action: deny\n    match: {workload: {exe: [\"/usr/bin/[a-\"]}}\n", []string{`"/usr/bin/[a-" is not a valid pattern`}},
		{"empty value", head + "  - name: a\n    action: deny\n    match: {workload: {comm: [\"\"]}}\n", []string{`rules[0].match.workload.comm: empty value (remove it)`}},
		{"list of lists", head + "  - name: a\n    action: deny\n    match: {workload: {comm: [[a]]}}\n", []string{`rules[0].match.workload.comm: want a string, got a list`}},
		{"names", head + "  - name: a\n    action: deny\n    match: {dst: {names: [\"10.0.0.1\", \"a b\", \"x/y\", \"DB.Internal.\"]}}\n", []string{
			`warning: rules[0].match.dst.names: this rule never matches a connection whose destination name is unknown`,
			`"10.0.0.1" is an address, not a name (put addresses under dst.cidr)`, `"a b" is not a DNS name`, `"x/y" is not a DNS name`}},
		{"allow by name alone", head + "  - name: a\n    action: allow\n    match: {dst: {names: [\"db.internal\"]}}\n", []string{
			`p.yaml:4:5: warning: rules[0]: rule "a" lets a connection through by its name alone: the name is what the client sends (TLS SNI, HTTP Host), so any workload the rule covers can reach any address by sending it (add the destination's cidr`,
			`warning: rules[0].match.dst.names: this rule never matches`}},
		{"audit by name alone", head + "  - name: a\n    action: audit\n    match: {dst: {names: [\"db.internal\"], ports: [\"443\"]}}\n", []string{
			`warning: rules[0]: rule "a" lets a connection through by its name alone`,
			`warning: rules[0].match.dst.names: this rule never matches`}},
		{"allow by name and cidr", head + "  - name: a\n    action: allow\n    match: {dst: {names: [\"db.internal\"], cidr: [\"10.0.0.0/24\"]}}\n", []string{
			`warning: rules[0].match.dst.names: this rule never matches`}},
		{"names in not", head + "  - name: a\n    action: deny\n    match: {dst: {ports: [\"443\"]}}\n    not: {dst: {names: [\"ok.example\"]}}\n", []string{
			`warning: rules[0].not.dst.names: this exclusion never applies to a connection whose destination name is unknown`}},
		{"labels", head + "  - name: a\n    action: deny\n    match: {workload: {labels: {app: api, tier: \"\", env: \"[x\", x: [1], \"\": a, y: }}}\n", []string{
			`rules[0].match.workload.labels.env: "[x" is not a valid pattern`,
			`rules[0].match.workload.labels.x: want a value, got a list`,
			`rules[0].match.workload.labels: empty label name`,
			`rules[0].match.workload.labels.y: want a value, got nothing (y: "" matches an empty value)`}},
		{"labels empty", head + "  - name: a\n    action: deny\n    match: {workload: {labels: {}}}\n", []string{`labels: no labels`}},
		{"comm too long", head + "  - name: a\n    action: deny\n    match: {workload: {comm: [\"kube-controller-manager\"]}}\n", []string{
			`warning: rules[0].match.workload.comm: "kube-controller-manager" never matches: the kernel keeps only the first 15 bytes of a task name (write "kube-controller")`}},
		{"relative exe", head + "  - name: a\n    action: deny\n    match: {workload: {exe: [\"psql\"], cgroup: [\"system.slice\"]}}\n", []string{
			`warning: rules[0].match.workload.exe: "psql" does not start with /`, `warning: rules[0].match.workload.cgroup: "system.slice" does not start with /`}},
		{"double star", head + "  - name: a\n    action: deny\n    match: {workload: {cgroup: [\"/kubepods/**\"]}}\n", []string{`warning: rules[0].match.workload.cgroup: "/kubepods/**": ** is not recursive here`}},
		{"empty match", head + "  - name: all\n    action: audit\n  - name: b\n    action: deny\n    match: {dst: {ports: [\"22\"]}}\n", []string{
			`p.yaml:4:5: warning: rules[0]: rule "all" has no match: it matches every connection`,
			`p.yaml:6:5: warning: rules[1]: rule "b" can never match: rules[0] "all" (line 4) comes first and matches every connection it would (move it above rules[0], or narrow rules[0])`}},
		{"empty not", head + "  - name: a\n    action: deny\n    match: {dst: {ports: [\"22\"]}}\n    not: {}\n", []string{
			`p.yaml:7:10: rules[0].not: empty not would exclude every connection (remove it, or list what to exclude)`}},
		{"match everything but", head + "  - name: all-but\n    action: audit\n    not: {dst: {ports: [\"22\"]}}\n  - name: b\n    action: deny\n    match: {dst: {ports: [\"22\"]}}\n", nil},
		{"alias", "apiVersion: vigil.dev/v1\ndefault: deny\nx: &p [\"80\"]\n", []string{`unknown field "x"`}},
		{"aliases ok", "apiVersion: vigil.dev/v1\ndefault: deny\nrules:\n  - name: a\n    action: deny\n    match: {dst: {ports: &p [\"80\"]}}\n  - name: b\n    action: deny\n    match: {dst: {ports: *p}, workload: {uids: [1]}}\n", []string{
			`warning: rules[1]: rule "b" can never match`}},
		{"key not scalar", "apiVersion: vigil.dev/v1\ndefault: deny\n? [a]\n: b\n", []string{`want a field name, got a list`}},
		{"merge key", "apiVersion: vigil.dev/v1\ndefault: deny\n<<: {a: 1}\n", []string{`unknown field "<<"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check(t, tt.src)
			if len(got) != len(tt.want) {
				t.Fatalf("problems =\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(tt.want), strings.Join(tt.want, "\n"))
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %d = %s\nwant it to contain %s", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestAllProblemsAtOnce checks that one bad file yields every problem in
// file order, with the documented format.
func TestAllProblemsAtOnce(t *testing.T) {
	_, err := Load(filepath.Join("testdata", "errors.yaml"))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Load(errors.yaml) = %v; want *ValidationError", err)
	}
	want := `testdata/errors.yaml:1:1: default: missing (add default: deny, allow or audit; it decides connections no rule matches)
testdata/errors.yaml:9:13: rules[1].action: unknown action "block" (use allow, deny or audit)
testdata/errors.yaml:12:16: rules[1].match.dst.cidr: "10.1.2.0/33" is not a CIDR (write it like 10.1.2.0/24; prefix lengths are 0 to 32)
testdata/errors.yaml:13:9: rules[1].match.dst: unknown field "port" (did you mean ports?)
testdata/errors.yaml:14:11: rules[2].name: "db" is already the name of rules[0] (line 3) (rule names are recorded in the audit log and must be unique)
testdata/errors.yaml:16:12: rules[2].errno: errno applies only to deny (remove errno, or make the action deny)
testdata/errors.yaml:19:17: rules[2].match.dst.ports: range "6010-6000" runs backwards (write "6000-6010")
testdata/errors.yaml:19:30: rules[2].match.dst.ports: "70000" is out of range (ports are 1 to 65535)
testdata/errors.yaml:19:39: rules[2].match.dst.ports: "http" is not a valid port or range (write it like "5432" or "6000-6010")
testdata/errors.yaml:21:15: rules[2].match.workload.exe: "/usr/bin/[a-" is not a valid pattern (patterns use *, ? and [a-z] as in Go's path.Match; quote a literal *, ?, [ or \ with \)`
	if got := ve.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	if ve.Errors() != 10 {
		t.Errorf("Errors() = %d; want 10", ve.Errors())
	}
}

func TestShadowed(t *testing.T) {
	p, err := Load(filepath.Join("testdata", "shadowed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	w := p.Warnings()
	if len(w) != 1 || !w[0].Warning || w[0].Line != 10 || !strings.Contains(w[0].Msg, `rule "one-web-server" can never match: rules[0] "internal-web" (line 4)`) {
		t.Errorf("Warnings() = %v; want one-web-server shadowed by internal-web", w)
	}
}

// TestShadowCases lists pairs of rules: whether the second is reported
// as unreachable behind the first.
func TestShadowCases(t *testing.T) {
	tests := []struct {
		name          string
		first, second string // match: blocks
		firstNot      string
		want          bool
	}{
		{"narrower cidr", `{dst: {cidr: ["10.0.0.0/8"]}}`, `{dst: {cidr: ["10.1.0.0/16", "10.2.3.4"]}}`, "", true},
		{"cidr outside", `{dst: {cidr: ["10.0.0.0/8"]}}`, `{dst: {cidr: ["10.1.0.0/16", "11.0.0.0/16"]}}`, "", false},
		{"v6 inside v4 only", `{dst: {cidr: ["0.0.0.0/0"]}}`, `{dst: {cidr: ["fd00::/8"]}}`, "", false},
		{"v6", `{dst: {cidr: ["::/0"]}}`, `{dst: {cidr: ["fd00::/8"]}}`, "", true},
		{"second unconstrained", `{dst: {cidr: ["0.0.0.0/0", "::/0"]}}`, `{dst: {ports: ["80"]}}`, "", false},
		{"first unconstrained field", `{dst: {ports: ["1-1024"]}}`, `{dst: {ports: ["80", "443"], cidr: ["10.0.0.0/8"]}}`, "", true},
		{"merged port ranges", `{dst: {ports: ["1-100", "101-200"]}}`, `{dst: {ports: ["50-150"]}}`, "", true},
		{"port outside", `{dst: {ports: ["1-100"]}}`, `{dst: {ports: ["50-150"]}}`, "", false},
		{"uid ranges", `{workload: {uids: ["1000-1999"]}}`, `{workload: {uids: [1000, 1500]}}`, "", true},
		{"gid not uid", `{workload: {gids: [0]}}`, `{workload: {uids: [0]}}`, "", false},
		{"literal under pattern", `{workload: {exe: ["/usr/bin/*"]}}`, `{workload: {exe: ["/usr/bin/psql"]}}`, "", true},
		{"pattern does not cross slash", `{workload: {exe: ["/usr/*"]}}`, `{workload: {exe: ["/usr/bin/psql"]}}`, "", false},
		{"same pattern", `{workload: {pods: ["api-*"]}}`, `{workload: {pods: ["api-*"], namespaces: [x]}}`, "", true},
		{"narrower pattern not certain", `{workload: {pods: ["api-*"]}}`, `{workload: {pods: ["api-1*"]}}`, "", false},
		{"names", `{dst: {names: ["*.corp.example"]}}`, `{dst: {names: ["db.corp.example"], ports: ["5432"]}}`, "", true},
		{"labels subset", `{workload: {labels: {app: api}}}`, `{workload: {labels: {app: api, tier: web}}}`, "", true},
		{"labels missing", `{workload: {labels: {app: api, tier: web}}}`, `{workload: {labels: {app: api}}}`, "", false},
		{"labels pattern", `{workload: {labels: {app: "a*"}}}`, `{workload: {labels: {app: api}}}`, "", true},
		{"first has not", `{dst: {ports: ["80"]}}`, `{dst: {ports: ["80"]}}`, `{workload: {uids: [0]}}`, false},
		{"identical", `{dst: {ports: ["80"]}, workload: {comm: [curl]}}`, `{workload: {comm: [curl]}, dst: {ports: ["80"]}}`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := head + "  - name: first\n    action: allow\n    match: " + tt.first + "\n"
			if tt.firstNot != "" {
				src += "    not: " + tt.firstNot + "\n"
			}
			src += "  - name: second\n    action: deny\n    match: " + tt.second + "\n"
			probs := check(t, src)
			got := false
			for _, p := range probs {
				if strings.Contains(p, "can never match") {
					got = true
				} else if !strings.Contains(p, "destination name is unknown") && !strings.Contains(p, "by its name alone") {
					t.Errorf("unexpected problem %s", p)
				}
			}
			if got != tt.want {
				t.Errorf("second reported unreachable = %v; want %v (problems %q)", got, tt.want, probs)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	p, err := Load(filepath.Join("testdata", "minimal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	const sum = "b0b9a7e3d7ff7bfd47eb5fa27d2e9e9c5c6bdfe0a5e6cbe4bce2bc86e1e6b5d0"
	data, _ := os.ReadFile(filepath.Join("testdata", "minimal.yaml"))
	q, _ := Parse("x", data)
	if p.SHA256() != q.SHA256() || len(p.SHA256()) != 64 || p.SHA256() == sum {
		t.Errorf("SHA256() = %q", p.SHA256())
	}
	if p.Version() != APIVersion || p.File() != filepath.Join("testdata", "minimal.yaml") || len(p.Rules()) != 0 {
		t.Errorf("Version() = %q, File() = %q, Rules() = %v", p.Version(), p.File(), p.Rules())
	}
	if d := p.Default(); d.Action != Allow || d.Rule != DefaultRule || d.Errno != 0 {
		t.Errorf("Default() = %+v", d)
	}
	if _, err := Load(filepath.Join("testdata", "missing.yaml")); err == nil || !strings.HasPrefix(err.Error(), "policy: open ") {
		t.Errorf("Load(missing) = %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load(big) = %v", err)
	}
}

// TestExamplePolicy keeps deploy/policy.example.yaml valid: it may only
// warn about its names matcher.
func TestExamplePolicy(t *testing.T) {
	p, err := Load(filepath.Join("..", "..", "deploy", "policy.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range p.Warnings() {
		if !strings.Contains(w.Msg, "destination name is unknown") {
			t.Errorf("unexpected warning: %s", w)
		}
	}
	if len(p.Rules()) < 5 {
		t.Errorf("example has %d rules", len(p.Rules()))
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range []Action{Allow, Deny, Audit} {
		b, err := a.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ParseAction(string(b)); got != a || err != nil {
			t.Errorf("ParseAction(%q) = %v, %v; want %v", b, got, err, a)
		}
	}
	if _, err := ParseAction(""); err == nil {
		t.Error(`ParseAction("") succeeded`)
	}
	if _, err := Action(0).MarshalText(); err == nil || Action(0).String() != "invalid" || Action(9).String() != "invalid" {
		t.Error("invalid actions encode")
	}
}

func TestUsesUsers(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want bool
	}{
		{"apiVersion: vigil.dev/v1\ndefault: allow\n", false},
		{"apiVersion: vigil.dev/v1\ndefault: allow\nrules:\n  - name: r\n    action: deny\n    match:\n      workload: { uids: [1000] }\n", false},
		{"apiVersion: vigil.dev/v1\ndefault: allow\nrules:\n  - name: r\n    action: deny\n    match:\n      workload: { users: [app] }\n", true},
	} {
		p, err := Parse("p.yaml", []byte(tt.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := p.UsesUsers(); got != tt.want {
			t.Errorf("UsesUsers() = %v; want %v for\n%s", got, tt.want, tt.yaml)
		}
	}
}
