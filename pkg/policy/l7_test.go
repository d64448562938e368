package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

const l7Policy = `apiVersion: vigil.dev/v1
default: allow
rules:
  - name: no-destructive-sql
    action: allow
    match: {dst: {ports: [5432, 3306]}}
    l7:
      sql: {deny_kinds: [DROP, truncate], deny_delete_without_where: true}
  - name: redis-guard
    action: audit
    match: {dst: {ports: [6379]}}
    l7:
      redis: {deny_commands: [FLUSHALL, FLUSHDB, "config set"]}
      redact: false
      audit: required
  - name: web
    action: allow
    match: {dst: {ports: [80, 443]}}
    l7:
      http: {deny: [{methods: [DELETE], paths: ["/admin/*"]}, {paths: ["/secret"]}]}
      require_tls: true
  - name: plain
    action: allow
    match: {dst: {ports: [8080]}}
`

func TestGuardrailsParse(t *testing.T) {
	p, err := Parse("p.yaml", []byte(l7Policy))
	if err != nil {
		t.Fatal(err)
	}
	dec := func(port uint16) Decision {
		return p.Decide(Input{Dst: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port)})
	}
	sqlG, redisG, webG := dec(5432).L7, dec(6379).L7, dec(443).L7
	if sqlG == nil || redisG == nil || webG == nil {
		t.Fatalf("L7 = %v, %v, %v; want guardrails on each", sqlG, redisG, webG)
	}
	if dec(8080).L7 != nil || p.Default().L7 != nil {
		t.Errorf("a rule without l7 and the default have guardrails")
	}
	if !sqlG.Redact() || sqlG.RequireTLS() || sqlG.AuditRequired() {
		t.Errorf("sql guardrails: redact %v, require_tls %v, audit required %v; want true, false, false", sqlG.Redact(), sqlG.RequireTLS(), sqlG.AuditRequired())
	}
	if redisG.Redact() || !redisG.AuditRequired() {
		t.Errorf("redis guardrails: redact %v, audit required %v; want false, true", redisG.Redact(), redisG.AuditRequired())
	}
	if !webG.RequireTLS() {
		t.Errorf("web guardrails: require_tls false")
	}
	r, _ := p.Rule("redis-guard")
	if r.L7 != redisG {
		t.Errorf("Rule(redis-guard).L7 is not the decision's guardrails")
	}

	tests := []struct {
		g    *Guardrails
		req  l7.Request
		deny string // substring of the reason; "" for allowed
	}{
		{sqlG, l7.Request{Protocol: "postgres", Kind: "DROP"}, "SQL DROP"},
		{sqlG, l7.Request{Protocol: "mysql", Kind: "TRUNCATE"}, "SQL TRUNCATE"},
		{sqlG, l7.Request{Protocol: "postgres", Kind: "SELECT"}, ""},
		{sqlG, l7.Request{Protocol: "postgres", Kind: "INSERT", Attrs: map[string]string{"sql_kinds": "SELECT,INSERT,DROP"}}, "SQL DROP"},
		{sqlG, l7.Request{Protocol: "postgres", Kind: "DELETE", Attrs: map[string]string{"sql_where": "false"}}, "DELETE without WHERE"},
		{sqlG, l7.Request{Protocol: "postgres", Kind: "DELETE"}, ""},
		{sqlG, l7.Request{Protocol: "postgres", Kind: "UPDATE", Attrs: map[string]string{"sql_where": "false"}}, ""},
		{sqlG, l7.Request{Protocol: "redis", Kind: "DROP"}, ""},
		{redisG, l7.Request{Protocol: "redis", Kind: "FLUSHALL"}, "FLUSHALL"},
		{redisG, l7.Request{Protocol: "redis", Kind: "flushdb"}, "FLUSHDB"},
		{redisG, l7.Request{Protocol: "redis", Kind: "CONFIG", Attrs: map[string]string{"subcommand": "SET"}}, "CONFIG SET"},
		{redisG, l7.Request{Protocol: "redis", Kind: "CONFIG", Attrs: map[string]string{"subcommand": "GET"}}, ""},
		{redisG, l7.Request{Protocol: "redis", Kind: "GET"}, ""},
		{webG, l7.Request{Protocol: "http", Kind: "DELETE", Attrs: map[string]string{"path": "/admin/users/1"}}, "DELETE /admin/users/1"},
		{webG, l7.Request{Protocol: "http", Kind: "DELETE", Attrs: map[string]string{"path": "/x/../admin/a?b=c"}}, "DELETE /admin/a"},
		{webG, l7.Request{Protocol: "http", Kind: "DELETE", Attrs: map[string]string{"path": "//%61dmin/a"}}, "DELETE /admin/a"},
		{webG, l7.Request{Protocol: "http", Kind: "GET", Attrs: map[string]string{"path": "/admin/a"}}, ""},
		{webG, l7.Request{Protocol: "http", Kind: "DELETE", Attrs: map[string]string{"path": "/administrator"}}, ""},
		{webG, l7.Request{Protocol: "http", Kind: "GET", Attrs: map[string]string{"path": "/secret?x=1"}}, "GET /secret"},
		{webG, l7.Request{Protocol: "http", Kind: "GET", Attrs: map[string]string{"path": "/secret/more"}}, ""},
		{webG, l7.Request{Protocol: "tls", Kind: "client_hello"}, ""},
	}
	for _, tt := range tests {
		deny, reason := tt.g.Check(&tt.req)
		if deny != (tt.deny != "") || !strings.Contains(reason, tt.deny) {
			t.Errorf("Check(%s %s %v) = %v, %q; want deny %v with %q", tt.req.Protocol, tt.req.Kind, tt.req.Attrs, deny, reason, tt.deny != "", tt.deny)
		}
	}
}

func TestGuardrailsProblems(t *testing.T) {
	rule := "  - name: a\n    action: allow\n    match: {dst: {ports: [\"80\"]}}\n    l7:\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"ok", rule + "      sql: {deny_kinds: [DROP]}\n", nil},
		{"empty l7 records only", rule[:len(rule)-1] + " {}\n", nil},
		{"on deny", "  - name: a\n    action: deny\n    match: {dst: {ports: [\"80\"]}}\n    l7: {redact: true}\n",
			[]string{`p.yaml:7:5: rules[0].l7: l7 applies only to connections the rule lets through (remove l7, or make the action allow or audit)`}},
		{"unknown field", rule + "      sqll: {deny_kinds: [DROP]}\n", []string{`p.yaml:8:7: rules[0].l7: unknown field "sqll" (did you mean sql?)`}},
		{"bad kind", rule + "      sql: {deny_kinds: [\"DROP TABLE\"]}\n", []string{`p.yaml:8:26: rules[0].l7.sql.deny_kinds: "DROP TABLE" is not a statement kind`}},
		{"kinds not a list", rule + "      sql: {deny_kinds: DROP}\n", []string{`rules[0].l7.sql.deny_kinds: want a list, got "DROP" (write it as a list: ["DROP"])`}},
		{"empty sql", rule + "      sql: {}\n", []string{`p.yaml:8:12: rules[0].l7.sql: empty: it denies nothing`}},
		{"bad bool", rule + "      sql: {deny_delete_without_where: yes}\n", []string{`p.yaml:8:40: rules[0].l7.sql.deny_delete_without_where: want true or false, got "yes" (write true or false)`}},
		{"bad command", rule + "      redis: {deny_commands: [\"FLUSH ALL NOW\"]}\n", []string{`"FLUSH ALL NOW" is not a Redis command`}},
		{"lower method", rule + "      http: {deny: [{methods: [delete]}]}\n", []string{`p.yaml:8:32: rules[0].l7.http.deny[0].methods: "delete" is not an HTTP method (write DELETE: methods are case-sensitive)`}},
		{"relative path", rule + "      http: {deny: [{paths: [admin]}]}\n", []string{`rules[0].l7.http.deny[0].paths: "admin" is not a path (paths start with /: /admin)`}},
		{"bad pattern", rule + "      http: {deny: [{paths: [\"/[a-\"]}]}\n", []string{`is not a valid pattern`}},
		{"empty deny entry", rule + "      http: {deny: [{}]}\n", []string{`rules[0].l7.http.deny[0]: empty: it denies nothing`}},
		{"unknown deny field", rule + "      http: {deny: [{method: [GET]}]}\n", []string{`unknown field "method" (did you mean methods?)`}},
		{"audit mode", rule + "      audit: always\n", []string{`p.yaml:8:14: rules[0].l7.audit: unknown audit mode "always"`}},
		{"require_tls", rule + "      require_tls: 1\n", []string{`want true or false, got "1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check(t, head+tt.src)
			if len(got) != len(tt.want) {
				t.Fatalf("problems:\n%s\nwant %d: %q", strings.Join(got, "\n"), len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %d = %s; want it to contain %s", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestGuardrailsDoNotChangeMatching: an l7 section changes what happens
// on a connection, not which rule matches it, so shadowing and the kernel
// table see the same rules with or without it.
func TestGuardrailsDoNotChangeMatching(t *testing.T) {
	src := head + `  - name: all-db
    action: allow
    match: {dst: {ports: ["5432"]}}
    l7: {sql: {deny_kinds: [DROP]}}
  - name: one-db
    action: deny
    match: {dst: {cidr: ["10.0.0.1"], ports: ["5432"]}}
`
	got := check(t, src)
	if len(got) != 1 || !strings.Contains(got[0], `rule "one-db" can never match: rules[0] "all-db"`) {
		t.Errorf("problems = %q; want the shadowing warning", got)
	}
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	kt := p.Kernel(0, 0)
	for _, e := range kt.Entries {
		for _, s := range e.Segments {
			if s.PortLow <= 5432 && 5432 <= s.PortHigh {
				if s.Deny {
					t.Errorf("kernel denies %s port 5432 by rule %d, which an l7 allow rule shadows", e.Prefix, s.Rule)
				}
				break // the first segment that covers the port decides
			}
		}
	}
}

func TestHTTPPath(t *testing.T) {
	for in, want := range map[string]string{
		"/":              "/",
		"":               "/",
		"/a/b/../c":      "/a/c",
		"//admin//x":     "/admin/x",
		"/admin/":        "/admin/",
		"/%2e%2e/admin":  "/admin",
		"/a?b=/../c":     "/a",
		"/a%zz":          "/a%zz",
		"relative/x":     "/relative/x",
		"/x/./y/#frag":   "/x/y/",
		"/%61dmin/users": "/admin/users",
	} {
		if got := HTTPPath(in); got != want {
			t.Errorf("HTTPPath(%q) = %q; want %q", in, got, want)
		}
	}
}

// FuzzGuardrails checks that no request makes Check panic and that the
// path form HTTPPath compares is stable (cleaning it again changes
// nothing), so that one more round of encoding cannot slip past a deny.
func FuzzGuardrails(f *testing.F) {
	p, err := Parse("p.yaml", []byte(l7Policy))
	if err != nil {
		f.Fatal(err)
	}
	var gs []*Guardrails
	for _, r := range p.Rules() {
		if r.L7 != nil {
			gs = append(gs, r.L7)
		}
	}
	f.Add("http", "DELETE", "/admin/../admin/x?y", "")
	f.Add("redis", "CONFIG", "", "SET")
	f.Add("postgres", "DELETE", "", "SELECT,DELETE")
	f.Fuzz(func(t *testing.T, proto, kind, path, extra string) {
		req := &l7.Request{Protocol: proto, Kind: kind, Attrs: map[string]string{"path": path, "subcommand": extra, "sql_kinds": extra, "sql_where": "false"}}
		for _, g := range gs {
			g.Check(req)
		}
		if c := HTTPPath(path); !strings.Contains(c, "%") && HTTPPath(c) != c {
			t.Errorf("HTTPPath(%q) = %q, but HTTPPath(%q) = %q", path, c, c, HTTPPath(c))
		}
	})
}

// TestGuardrailsDenies: an l7 section with a deny list denies; one that
// only audits does not, so the proxy can fall back to plain bytes for it.
func TestGuardrailsDenies(t *testing.T) {
	src := l7Policy + `  - name: audit-only
    action: allow
    match: {dst: {ports: [9000]}}
    l7: {}
`
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for port, want := range map[uint16]bool{5432: true, 6379: true, 443: true, 9000: false} {
		g := p.Decide(Input{Dst: netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port)}).L7
		if g == nil {
			t.Fatalf("port %d: no guardrails", port)
		}
		if got := g.Denies(); got != want {
			t.Errorf("port %d: Denies() = %v; want %v", port, got, want)
		}
	}
}
