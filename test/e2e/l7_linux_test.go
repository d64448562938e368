package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// l7Server is an HTTP server on loopback that answers every request with
// its method and path, and remembers them in seen (if not nil).
func l7Server(t *testing.T, tls bool, seen *syncBuffer) int {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if seen != nil {
			fmt.Fprintf(seen, "%s %s\n", r.Method, r.URL.Path)
		}
		fmt.Fprintf(w, "%s %s ok\n", r.Method, r.URL.Path)
	})
	srv := httptest.NewUnstartedServer(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return ln.Addr().(*net.TCPAddr).Port
}

func command(args []string) *exec.Cmd { return exec.Command(args[0], args[1:]...) }

// l7Run runs a client inside the test cgroup and returns its combined
// output; a non-zero exit is not an error here (denials make clients
// fail), the output says what happened.
func l7Run(t *testing.T, cg, stdin string, args ...string) string {
	t.Helper()
	cmd := cgroupCmd(context.Background(), cg, args[0], args[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	t.Logf("%s: %v\n%s", strings.Join(args, " "), err, out)
	return string(out)
}

// TestL7Guardrails sends real clients through the proxy to real servers
// under a policy with guardrails: redis-cli FLUSHALL, a psql DROP TABLE,
// a MariaDB TRUNCATE and a curl DELETE on an admin path are refused with
// each protocol's own error while the sessions go on, allowed requests
// are recorded with their text, and the log verifies.
func TestL7Guardrails(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"psql", "redis-cli", "curl", "mysql"} {
		requireTool(t, tool)
	}
	pg := envPort(t, "VIGIL_E2E_PG_PORT", 54329)
	rd := envPort(t, "VIGIL_E2E_REDIS_PORT", 63799)
	my := envPort(t, "VIGIL_E2E_MARIADB_PORT", 33069)
	requireServer(t, "PostgreSQL", pg)
	requireServer(t, "Redis", rd)
	requireServer(t, "MariaDB", my)
	var seen syncBuffer
	web := l7Server(t, false, &seen)

	policy := fmt.Sprintf(`apiVersion: vigil.dev/v1
default: allow
rules:
  - name: no-destructive-sql
    action: allow
    match: {dst: {ports: [%d, %d]}}
    l7:
      sql: {deny_kinds: [DROP, TRUNCATE], deny_delete_without_where: true}
  - name: redis-guard
    action: allow
    match: {dst: {ports: [%d]}}
    l7:
      redis: {deny_commands: [FLUSHALL, FLUSHDB, CONFIG]}
      audit: required
  - name: web-guard
    action: audit
    match: {dst: {ports: [%d]}}
    l7:
      http: {deny: [{methods: [DELETE], paths: ["/admin/*"]}]}
`, pg, my, rd, web)
	polPath := filepath.Join(t.TempDir(), "policy.yaml")
	replaceFile(t, polPath, policy)

	// Data the denied statements would destroy.
	key := randName("vigil-l7-")
	run(t, exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(rd), "set", key, "kept"))
	table := strings.ReplaceAll(randName("vigil_l7_"), "-", "_")
	run(t, exec.Command("psql", "-h", "127.0.0.1", "-p", strconv.Itoa(pg), "-U", "postgres", "-Atc", "create table "+table+" (x int); insert into "+table+" values (1)"))
	mysql := func(args ...string) []string {
		return append([]string{"mysql", "--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P", strconv.Itoa(my), "-u", "root", "-ptest", "--skip-ssl"}, args...)
	}
	run(t, command(mysql("-e", "create database if not exists vigil_l7; create table vigil_l7."+table+" (x int); insert into vigil_l7."+table+" values (1)")))

	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(pg, rd, my, web), "--policy", polPath)

	t.Run("redis", func(t *testing.T) {
		out := l7Run(t, cg, "FLUSHALL\nGET "+key+"\n", "redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(rd))
		if !strings.Contains(out, "ERR denied by policy") || !strings.Contains(out, "kept") {
			t.Errorf("redis-cli output %q; want the FLUSHALL denied with ERR and the GET answered", out)
		}
	})
	t.Run("postgres", func(t *testing.T) {
		out := l7Run(t, cg, "DROP TABLE "+table+";\nSELECT count(*) FROM "+table+";\n",
			"psql", "-h", "127.0.0.1", "-p", strconv.Itoa(pg), "-U", "postgres", "-At")
		if !strings.Contains(out, "permission denied by policy") || !strings.Contains(out, "\n1\n") && !strings.HasSuffix(strings.TrimSpace(out), "1") {
			t.Errorf("psql output %q; want the DROP denied and the SELECT answered in the same session", out)
		}
	})
	t.Run("mariadb", func(t *testing.T) {
		out := l7Run(t, cg, "TRUNCATE TABLE vigil_l7."+table+";\nSELECT count(*) FROM vigil_l7."+table+";\n",
			mysql("--force", "-N")...)
		if !strings.Contains(out, "denied by policy") || !strings.Contains(out, "1") {
			t.Errorf("mysql output %q; want the TRUNCATE denied and the SELECT answered", out)
		}
	})
	t.Run("http", func(t *testing.T) {
		url := "http://127.0.0.1:" + strconv.Itoa(web)
		code := l7Run(t, cg, "", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "DELETE", url+"/admin/users")
		if code != "403" {
			t.Errorf("curl DELETE /admin/users = %q; want 403", code)
		}
		out := l7Run(t, cg, "", "curl", "-sS", "-X", "DELETE", url+"/public", "--next", "-X", "DELETE", url+"/admin/users")
		if !strings.Contains(out, "DELETE /public ok") || !strings.Contains(out, "forbidden by policy") {
			t.Errorf("curl on one connection = %q; want /public answered, then /admin refused", out)
		}
		// The body of a denied request never reaches the server, so a
		// request hidden in it cannot either.
		smuggled := "DELETE /admin/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
		l7Run(t, cg, "", "curl", "-sS", "-X", "DELETE", "--data-binary", smuggled, url+"/admin/users")
		if strings.Contains(seen.String(), "/admin") {
			t.Errorf("the server saw %q; want no /admin request", seen.String())
		}
	})
	a.stop()

	// The denied statements did nothing.
	if out := run(t, exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(rd), "get", key)); !strings.Contains(string(out), "kept") {
		t.Errorf("redis key after FLUSHALL = %q; want it kept", out)
	}
	run(t, exec.Command("psql", "-h", "127.0.0.1", "-p", strconv.Itoa(pg), "-U", "postgres", "-Atc", "drop table "+table))
	run(t, command(mysql("-e", "drop table vigil_l7."+table)))

	es := entries(t, a.dataDir)
	type want struct {
		rule, protocol, kind, decision string
		text                           string // the recorded text starts with it
	}
	wants := []want{
		{"redis-guard", "redis", "FLUSHALL", "deny", ""},
		{"redis-guard", "redis", "GET", "allow", "GET " + key},
		{"no-destructive-sql", "postgres", "DROP", "deny", ""},
		{"no-destructive-sql", "postgres", "SELECT", "allow", "SELECT count(*) FROM " + table},
		{"no-destructive-sql", "mysql", "TRUNCATE", "deny", ""},
		{"web-guard", "http", "DELETE", "deny", "DELETE /admin/users"},
		{"web-guard", "http", "DELETE", "audit", "DELETE /public"},
	}
	for _, w := range wants {
		found := false
		for _, e := range es {
			if e.Type != auditlog.L7Request || e.Rule != w.rule || e.Attr("protocol") != w.protocol || e.Attr("kind") != w.kind ||
				string(e.Decision) != w.decision || !strings.HasPrefix(e.Attr("text"), w.text) {
				continue
			}
			found = true
			if e.Identity.PID == 0 || e.Src == "" || e.Dst == "" || e.Attr("open_seq") == "" {
				t.Errorf("l7.request %+v lacks the connection's identity or addresses", e)
			}
			if w.decision == "deny" && e.Attr("deny_reason") == "" {
				t.Errorf("denied l7.request %+v has no deny_reason", e)
			}
		}
		if !found {
			t.Errorf("no l7.request with rule %s, %s %s, decision %s, text %q", w.rule, w.protocol, w.kind, w.decision, w.text)
		}
	}
	// audit: required: the GET's entry was durable before the GET went
	// out, and its answer is an entry of its own.
	var responded bool
	for _, e := range es {
		if e.Type == "l7.response" && e.Rule == "redis-guard" && e.Attr("kind") == "GET" && e.Attr("status") == "ok" && e.Attr("request_seq") != "" {
			responded = true
		}
	}
	if !responded {
		t.Errorf("no l7.response for the GET under audit: required")
	}
	if t.Failed() {
		for _, e := range es {
			if e.Type == auditlog.L7Request || e.Type == auditlog.ConnClose {
				t.Logf("%s %s %s %v", e.Type, e.Decision, e.Rule, e.Attrs)
			}
		}
	}
	verify(t, a.dataDir)
}

// TestL7Names decides connections by the name the client sends, the TLS
// server name or the HTTP Host: curl to a denied name is reset before
// anything reaches the server, curl to an allowed name goes through and
// its conn.open records the name.
func TestL7Names(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	port := l7Server(t, true, nil)
	var seen syncBuffer
	plain := l7Server(t, false, &seen)
	policy := fmt.Sprintf(`apiVersion: vigil.dev/v1
default: allow
rules:
  - name: no-blocked-name
    action: deny
    match: {dst: {ports: [%d, %d], names: ["blocked.*"]}}
`, port, plain)
	polPath := filepath.Join(t.TempDir(), "policy.yaml")
	replaceFile(t, polPath, policy)
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(port, plain), "--policy", polPath)
	curl := func(name string) string {
		p := strconv.Itoa(port)
		return l7Run(t, cg, "", "curl", "-sSk", "--resolve", name+":"+p+":127.0.0.1", "https://"+name+":"+p+"/x")
	}
	if out := curl("blocked.example"); strings.Contains(out, "GET /x ok") {
		t.Errorf("curl to blocked.example = %q; want it refused", out)
	}
	if out := curl("allowed.example"); !strings.Contains(out, "GET /x ok") {
		t.Errorf("curl to allowed.example = %q; want the answer", out)
	}
	// Plain HTTP: the Host header names the destination.
	url := "http://127.0.0.1:" + strconv.Itoa(plain)
	if out := l7Run(t, cg, "", "curl", "-sS", "-H", "Host: Blocked.Example:80", url+"/y"); strings.Contains(out, "ok") {
		t.Errorf("curl with Host blocked.example = %q; want it refused", out)
	}
	if strings.Contains(seen.String(), "/y") {
		t.Errorf("the server saw %q; want nothing from the refused request", seen.String())
	}
	if out := l7Run(t, cg, "", "curl", "-sS", "-H", "Host: www.example", url+"/z"); !strings.Contains(out, "GET /z ok") {
		t.Errorf("curl with Host www.example = %q; want the answer", out)
	}
	a.stop()
	var denied, opened int
	for _, e := range entries(t, a.dataDir) {
		switch {
		case e.Type == auditlog.ConnDeny && e.Rule == "no-blocked-name" && e.Attr("name") == "blocked.example":
			denied++
		case e.Type == auditlog.ConnOpen && e.Rule == "default" && (e.Attr("name") == "allowed.example" || e.Attr("name") == "www.example"):
			opened++
		}
	}
	if denied != 2 || opened != 2 {
		t.Errorf("conn.deny with name blocked.example: %d, conn.open with an allowed name: %d; want 2 of each (TLS and HTTP)", denied, opened)
	}
	verify(t, a.dataDir)
}

// TestL7RequireTLS: where a rule requires TLS, a plaintext Redis command
// and a PostgreSQL session the server would not encrypt are refused with
// the protocol's error, and the refusal is recorded.
func TestL7RequireTLS(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"psql", "redis-cli"} {
		requireTool(t, tool)
	}
	pg := envPort(t, "VIGIL_E2E_PG_PORT", 54329)
	rd := envPort(t, "VIGIL_E2E_REDIS_PORT", 63799)
	requireServer(t, "PostgreSQL", pg)
	requireServer(t, "Redis", rd)
	policy := fmt.Sprintf(`apiVersion: vigil.dev/v1
default: allow
rules:
  - name: tls-only
    action: allow
    match: {dst: {ports: [%d, %d]}}
    l7: {require_tls: true}
`, pg, rd)
	polPath := filepath.Join(t.TempDir(), "policy.yaml")
	replaceFile(t, polPath, policy)
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(pg, rd), "--policy", polPath)
	if out := l7Run(t, cg, "", "redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(rd), "PING"); !strings.Contains(out, "TLS is required") || strings.Contains(out, "PONG") {
		t.Errorf("redis-cli PING = %q; want it refused for want of TLS", out)
	}
	// sslmode=prefer: the server declines SSL, the client goes on in
	// plaintext, and its startup is refused.
	if out := l7Run(t, cg, "", "psql", "-h", "127.0.0.1", "-p", strconv.Itoa(pg), "-U", "postgres", "-Atc", "select 1"); !strings.Contains(out, "TLS is required") {
		t.Errorf("psql = %q; want it refused for want of TLS", out)
	}
	a.stop()
	refused := map[string]bool{}
	for _, e := range entries(t, a.dataDir) {
		if e.Type == auditlog.L7Request && e.Decision == auditlog.Deny && e.Rule == "tls-only" && e.Attr("deny_reason") == "TLS is required" {
			refused[e.Attr("protocol")] = true
		}
		if e.Type == auditlog.ConnClose && e.Rule == "tls-only" && e.Attr("reason") != "tls_required" {
			t.Errorf("conn.close %v; want reason tls_required", e.Attrs)
		}
	}
	if !refused["redis"] || !refused["postgres"] {
		t.Errorf("refusals recorded for %v; want redis and postgres", refused)
	}
	verify(t, a.dataDir)
}
