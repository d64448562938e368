package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/agent"
	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// pgbenchPath finds pgbench: on Debian it lives beside the server, under
// /usr/lib/postgresql/<version>/bin, not on PATH.
func pgbenchPath(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(ms) == 0 {
		testenv.Need(t, "pgbench", "not installed: run scripts/e2e-env.sh start")
		return ""
	}
	sort.Strings(ms)
	return ms[len(ms)-1]
}

// l7Policy writes a policy with one allowing rule per port set, each with
// the given l7 section ("" for a rule without one), and returns its path.
func l7Policy(t testing.TB, rules ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	data := "apiVersion: vigil.dev/v1\ndefault: allow\nrules:\n" + strings.Join(rules, "")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// l7Rule is one rule of l7Policy: name allows the ports, with section as
// its l7 (a YAML flow mapping) or without one when section is "".
func l7Rule(name, section string, ports ...int) string {
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = strconv.Itoa(p)
	}
	r := fmt.Sprintf("  - name: %s\n    action: allow\n    match: {dst: {ports: [%s]}}\n", name, strings.Join(ps, ", "))
	if section != "" {
		r += "    l7: " + section + "\n"
	}
	return r
}

// l7Requests returns the l7.request entries of protocol made by comm.
func l7Requests(es []auditlog.Entry, protocol, comm string) []auditlog.Entry {
	var out []auditlog.Entry
	for _, e := range es {
		if e.Type == auditlog.L7Request && e.Attr("protocol") == protocol && e.Identity.Comm == comm {
			out = append(out, e)
		}
	}
	return out
}

// checkIdentity fails unless every entry carries the identity of a
// process we started: a pid, the comm, uid 0 (the test runs as root) and
// the test's cgroup.
func checkIdentity(t *testing.T, es []auditlog.Entry, comm, cg string) {
	t.Helper()
	base := filepath.Base(cg)
	for _, e := range es {
		id := e.Identity
		if id.PID == 0 || id.Comm != comm || id.UID != 0 || !strings.HasSuffix(id.CgroupPath, base) || e.Attr("open_seq") == "" {
			t.Errorf("%s seq %d: identity %+v, open_seq %q; want pid, comm %s, uid 0, cgroup %s", e.Type, e.Seq, id, e.Attr("open_seq"), comm, base)
			return
		}
	}
}

// countKinds counts entries by their kind attribute.
func countKinds(es []auditlog.Entry) map[string]int {
	n := map[string]int{}
	for _, e := range es {
		n[e.Attr("kind")]++
	}
	return n
}

// TestL7Pgbench runs pgbench, initialisation (COPY of 100,000 rows) and a
// bounded TPC-B-like run, through the L7 relay: every statement is
// recorded with pgbench's identity, the run completes with the number of
// transactions asked for, pgbench's DROP TABLE is refused with
// PostgreSQL's error, and the log verifies.
func TestL7Pgbench(t *testing.T) {
	requireRoot(t)
	requireTool(t, "psql")
	pgbench := pgbenchPath(t)
	pg := envPort(t, "VIGIL_E2E_PG_PORT", 54329)
	requireServer(t, "PostgreSQL", pg)
	db := strings.ReplaceAll(randName("vigil_pgbench_"), "-", "_")
	psql := func(sql string) *exec.Cmd {
		return exec.Command("psql", "-h", "127.0.0.1", "-p", strconv.Itoa(pg), "-U", "postgres", "-Atc", sql)
	}
	run(t, psql("create database "+db))
	t.Cleanup(func() { psql("drop database if exists " + db).Run() })

	polPath := l7Policy(t, l7Rule("pg-l7", "{sql: {deny_kinds: [DROP]}, redact: false}", pg))
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(pg), "--policy", polPath)
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(pg), "-U", "postgres"}
	// The database is new: initialise without the drop step (-I d), which
	// the guardrail refuses.
	run(t, cgroupCmd(t.Context(), cg, pgbench, append(append([]string{"-i", "-I", "tgvp", "-s", "1", "-q"}, args...), db)...))
	if out := l7Run(t, cg, "", append(append([]string{pgbench, "-i", "-I", "d"}, args...), db)...); !strings.Contains(out, "permission denied by policy: SQL DROP is not allowed") {
		t.Errorf("pgbench -i -I d = %q; want its DROP refused with PostgreSQL's error", out)
	}
	out := run(t, cgroupCmd(t.Context(), cg, pgbench, append(append([]string{"-t", "50", "-c", "2", "-n"}, args...), db)...))
	if !bytes.Contains(out, []byte("number of transactions actually processed: 100/100")) {
		t.Errorf("pgbench output:\n%s\nwant 100/100 transactions processed", out)
	}
	a.stop()

	es := entries(t, a.dataDir)
	reqs := l7Requests(es, "postgres", "pgbench")
	checkIdentity(t, reqs, "pgbench", cg)
	kinds := countKinds(reqs)
	// Each TPC-B-like transaction: BEGIN, 3 UPDATE, SELECT, INSERT, END.
	if kinds["BEGIN"] < 100 || kinds["UPDATE"] < 300 || kinds["SELECT"] < 100 || kinds["INSERT"] < 100 || kinds["COPY"] < 1 {
		t.Errorf("pgbench statements recorded by kind: %v; want ≥100 BEGIN, ≥300 UPDATE, ≥100 SELECT, ≥100 INSERT and the initialisation's COPY", kinds)
	}
	if kinds["DROP"] != 1 {
		t.Errorf("%d DROP statements recorded; want the refused one", kinds["DROP"])
	}
	var balance bool
	for _, e := range reqs {
		if strings.HasPrefix(e.Attr("text"), "UPDATE pgbench_accounts SET abalance = abalance +") && e.Attr("status") == "ok" {
			balance = true
		}
		if e.Attr("kind") == "DROP" && (e.Decision != auditlog.Deny || e.Attr("deny_reason") != "SQL DROP is not allowed") {
			t.Errorf("pgbench's DROP entry: decision %s, attrs %v; want deny, SQL DROP is not allowed", e.Decision, e.Attrs)
		}
	}
	if !balance {
		t.Errorf("no completed l7.request with pgbench's own UPDATE pgbench_accounts text")
	}
	for _, e := range es {
		if e.Type == auditlog.ConnClose && e.Identity.Comm == "pgbench" && (e.Attr("l7") != "postgres" || e.Attr("l7_stopped") != "") {
			t.Errorf("pgbench conn.close %v; want l7=postgres and parsing never stopped", e.Attrs)
		}
	}
	verify(t, a.dataDir)
}

// benchClients is redis-benchmark's -c in TestL7RedisBenchmark.
const benchClients = 4

// TestL7RedisBenchmark runs redis-benchmark (4 clients, 2,000 SET and
// 2,000 GET) through the L7 relay with a guardrail: every command is
// recorded with redis-benchmark's identity and answered, `vigil events`
// finds them, and the log verifies.
func TestL7RedisBenchmark(t *testing.T) {
	requireRoot(t)
	requireTool(t, "redis-benchmark")
	rd := envPort(t, "VIGIL_E2E_REDIS_PORT", 63799)
	requireServer(t, "Redis", rd)
	polPath := l7Policy(t, l7Rule("redis-l7", "{redis: {deny_commands: [FLUSHALL, FLUSHDB]}}", rd))
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(rd), "--policy", polPath)
	out := run(t, cgroupCmd(t.Context(), cg, "redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(rd),
		"-n", "2000", "-c", strconv.Itoa(benchClients), "-t", "set,get", "-q", "--csv"))
	if !bytes.Contains(out, []byte(`"SET"`)) || !bytes.Contains(out, []byte(`"GET"`)) {
		t.Errorf("redis-benchmark output:\n%s\nwant SET and GET results", out)
	}

	// The agent answers queries while it runs.
	ev := run(t, exec.Command(vigilBin, "events", "--socket", a.socket, "-o", "json", "--type", "l7.request", "--comm", "redis-benchmark", "--limit", "5"))
	var lines int
	sc := bufio.NewScanner(bytes.NewReader(ev))
	for sc.Scan() {
		var e auditlog.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("vigil events line %q: %v", sc.Text(), err)
		}
		if e.Identity.Comm != "redis-benchmark" || e.Attr("protocol") != "redis" {
			t.Errorf("vigil events gave %+v; want redis l7.request from redis-benchmark", e)
		}
		lines++
	}
	if lines != 5 {
		t.Errorf("vigil events --type l7.request --comm redis-benchmark --limit 5 printed %d entries:\n%s", lines, ev)
	}
	// vigil status counts the requests parsed.
	var st agent.StatusResponse
	if err := json.Unmarshal(run(t, exec.Command(vigilBin, "status", "--socket", a.socket, "-o", "json")), &st); err != nil {
		t.Fatalf("vigil status -o json: %v", err)
	}
	if st.Proxy == nil || st.Proxy.L7.Parsed < benchClients || st.Proxy.L7.Requests < 4000 || st.Proxy.L7.Denied != 0 {
		t.Errorf("vigil status proxy = %+v; want ≥%d connections parsed, ≥4000 requests, none denied", st.Proxy, benchClients)
	}
	if txt := run(t, exec.Command(vigilBin, "status", "--socket", a.socket)); !bytes.Contains(txt, []byte("l7         ")) {
		t.Errorf("vigil status:\n%s\nwant an l7 row", txt)
	}
	a.stop()

	es := entries(t, a.dataDir)
	reqs := l7Requests(es, "redis", "redis-benchmark")
	checkIdentity(t, reqs, "redis-benchmark", cg)
	kinds := countKinds(reqs)
	var okSet, okGet int
	for _, e := range reqs {
		if e.Attr("status") != "ok" {
			continue
		}
		switch e.Attr("kind") {
		case "SET":
			okSet++
		case "GET":
			okGet++
		}
	}
	if okSet < 2000 || okGet < 2000 {
		t.Errorf("redis-benchmark commands recorded by kind: %v, answered SET %d, GET %d; want ≥2000 of each answered", kinds, okSet, okGet)
	}
	verify(t, a.dataDir)
}

// TestL7MariaDBClient runs the mariadb client through the L7 relay: its
// statements are recorded with its identity and results, a guardrail
// denial reaches it as a MariaDB error while the batch goes on (--force),
// and the log verifies.
func TestL7MariaDBClient(t *testing.T) {
	requireRoot(t)
	requireTool(t, "mariadb")
	my := envPort(t, "VIGIL_E2E_MARIADB_PORT", 33069)
	requireServer(t, "MariaDB", my)
	polPath := l7Policy(t, l7Rule("mariadb-l7", "{sql: {deny_delete_without_where: true}, redact: false}", my))
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(my), "--policy", polPath)
	table := "test." + strings.ReplaceAll(randName("vigil_my_"), "-", "_")
	script := "CREATE TABLE " + table + " (id INT PRIMARY KEY, v VARCHAR(16));\n" +
		"INSERT INTO " + table + " VALUES (1, 'one'), (2, 'two');\n" +
		"DELETE FROM " + table + ";\n" +
		"SELECT count(*) FROM " + table + ";\n" +
		"DELETE FROM " + table + " WHERE id = 2;\n" +
		"SELECT v FROM " + table + " ORDER BY id;\n" +
		"DROP TABLE " + table + ";\n"
	out := l7Run(t, cg, script, "mariadb", "--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P", strconv.Itoa(my),
		"-u", "root", "-ptest", "--skip-ssl", "--force", "-N")
	if !strings.Contains(out, "DELETE without WHERE is not allowed") || !strings.Contains(out, "\n2\n") || !strings.Contains(out, "one") {
		t.Errorf("mariadb output %q; want the DELETE without WHERE refused, then count 2 and the row left by the DELETE with WHERE", out)
	}
	a.stop()

	es := entries(t, a.dataDir)
	reqs := l7Requests(es, "mysql", "mariadb")
	checkIdentity(t, reqs, "mariadb", cg)
	type want struct{ kind, decision, text string }
	for _, w := range []want{
		{"CREATE", "allow", "CREATE TABLE " + table},
		{"INSERT", "allow", "INSERT INTO " + table + " VALUES (1, 'one')"},
		{"DELETE", "deny", "DELETE FROM " + table},
		{"DELETE", "allow", "DELETE FROM " + table + " WHERE id = 2"},
		{"SELECT", "allow", "SELECT v FROM " + table},
		{"DROP", "allow", "DROP TABLE " + table},
	} {
		found := false
		for _, e := range reqs {
			if e.Attr("kind") == w.kind && string(e.Decision) == w.decision && strings.HasPrefix(e.Attr("text"), w.text) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no l7.request from mariadb: %s %s %q", w.decision, w.kind, w.text)
		}
	}
	if t.Failed() {
		for _, e := range reqs {
			t.Logf("%s %s %v", e.Type, e.Decision, e.Attrs)
		}
	}
	verify(t, a.dataDir)
}

// TestL7CurlTLS sends curl over TLS to a local HTTPS server under a rule
// that requires TLS: the session goes through (the require_tls path that
// allows), its ClientHello is recorded with the SNI curl sent and curl's
// identity, conn.open names the server, and the log verifies.
func TestL7CurlTLS(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	port := l7Server(t, true, nil)
	// A names matcher makes the proxy read the SNI before deciding, so
	// conn.open records it too.
	polPath := l7Policy(t,
		"  - name: no-evil\n    action: deny\n    match: {dst: {names: [\"evil.example\"]}}\n",
		l7Rule("tls-only", "{require_tls: true}", port))
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(port), "--policy", polPath)
	p := strconv.Itoa(port)
	out := l7Run(t, cg, "", "curl", "-sSk", "--resolve", "svc.example:"+p+":127.0.0.1", "https://svc.example:"+p+"/tls-path")
	if !strings.Contains(out, "GET /tls-path ok") {
		t.Errorf("curl over TLS = %q; want the answer", out)
	}
	a.stop()

	es := entries(t, a.dataDir)
	reqs := l7Requests(es, "tls", "curl")
	checkIdentity(t, reqs, "curl", cg)
	if len(reqs) != 1 {
		t.Fatalf("%d tls l7.request entries from curl; want 1", len(reqs))
	}
	e := reqs[0]
	// The server's first record (its ServerHello) completes the entry.
	if e.Rule != "tls-only" || e.Decision != auditlog.Allow || e.Attr("kind") != "client_hello" || e.Attr("target") != "svc.example" ||
		e.Attr("text") != "client_hello svc.example" || e.Attr("status") != "ok" ||
		!strings.HasPrefix(e.Attr("version"), "TLS1.") || !strings.Contains(e.Attr("alpn"), "http/1.1") {
		t.Errorf("curl's l7.request: rule %s, decision %s, attrs %v; want tls-only allow, client_hello for svc.example with version and ALPN", e.Rule, e.Decision, e.Attrs)
	}
	var opened bool
	for _, e := range es {
		if e.Type == auditlog.ConnOpen && e.Identity.Comm == "curl" && e.Rule == "tls-only" && e.Attr("name") == "svc.example" {
			opened = true
		}
		if e.Type == auditlog.ConnClose && e.Identity.Comm == "curl" && (e.Attr("l7") != "tls" || e.Attr("l7_stopped") != "encrypted") {
			t.Errorf("curl conn.close %v; want l7=tls, parsing stopped once encrypted", e.Attrs)
		}
	}
	if !opened {
		t.Errorf("no conn.open from curl with rule tls-only and name svc.example")
	}
	verify(t, a.dataDir)
}
