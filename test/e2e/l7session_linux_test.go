package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// TestL7HostChange: curl keeps one connection alive for several requests
// to the same URL host while it sends another Host header on each. The
// connection is decided by the name of its first request; a later
// request whose Host a name rule denies gets a 403 with Connection:
// close and never reaches the server, and curl's next request opens a
// new connection, decided on its own. A Host that differs only in case
// and port is the same name.
func TestL7HostChange(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	var seen syncBuffer
	web := l7Server(t, false, &seen)
	policy := fmt.Sprintf(`apiVersion: vigil.dev/v1
default: allow
rules:
  - name: no-denied-name
    action: deny
    match: {dst: {ports: [%[1]d], names: ["denied.example"]}}
  - name: web-by-name
    action: allow
    match: {dst: {ports: [%[1]d], names: ["allowed.example"], cidr: ["127.0.0.1"]}}
    l7:
      http: {deny: [{methods: [DELETE]}]}
`, web)
	polPath := filepath.Join(t.TempDir(), "policy.yaml")
	replaceFile(t, polPath, policy)
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(web), "--policy", polPath)

	url := "http://127.0.0.1:" + strconv.Itoa(web)
	out := l7Run(t, cg, "", "curl", "-sS", "-v",
		"-H", "Host: allowed.example", url+"/a",
		"--next", "-H", "Host: Allowed.Example:80", url+"/b",
		"--next", "-H", "Host: denied.example", url+"/c",
		"--next", "-H", "Host: allowed.example", url+"/d")
	for _, want := range []string{"GET /a ok", "GET /b ok", "HTTP/1.1 403 Forbidden", "Host changed on a kept-alive connection", "GET /d ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("curl output lacks %q", want)
		}
	}
	if strings.Contains(out, "GET /c ok") || strings.Contains(seen.String(), "/c") {
		t.Errorf("the server saw %q; want no /c (its Host is denied)", seen.String())
	}
	a.stop()

	es := entries(t, a.dataDir)
	var denied []auditlog.Entry
	opens, closedByHost := 0, 0
	for _, e := range es {
		switch {
		case e.Type == auditlog.L7Request && e.Decision == auditlog.Deny:
			denied = append(denied, e)
		case e.Type == auditlog.ConnOpen && e.Rule == "web-by-name" && e.Attr("name") == "allowed.example":
			opens++
		case e.Type == auditlog.ConnClose && e.Rule == "web-by-name" && e.Attr("reason") == "host_changed":
			closedByHost++
		}
	}
	if len(denied) != 1 || denied[0].Rule != "no-denied-name" || denied[0].Attr("text") != "GET /c" ||
		!strings.Contains(denied[0].Attr("deny_reason"), `"denied.example"`) || denied[0].Identity.Comm != "curl" {
		t.Errorf("denied l7.request entries %+v; want GET /c denied by no-denied-name, Host changed", denied)
	}
	if opens != 2 || closedByHost != 1 {
		t.Errorf("conn.open by allowed.example: %d, conn.close host_changed: %d; want 2 and 1 (the denial closes the first connection)", opens, closedByHost)
	}
	verify(t, a.dataDir)
}

// TestL7RedisTransaction: redis-cli, through the proxy under a rule that
// denies FLUSHALL, queues a transaction with a FLUSHALL in it. The
// FLUSHALL gets the guardrail's error, and EXEC then fails with
// EXECABORT, as it would had Redis rejected the command itself: nothing
// of the transaction ran, and the connection goes on.
func TestL7RedisTransaction(t *testing.T) {
	requireRoot(t)
	requireTool(t, "redis-cli")
	rd := envPort(t, "VIGIL_E2E_REDIS_PORT", 63799)
	requireServer(t, "Redis", rd)
	polPath := l7Policy(t, l7Rule("redis-guard", "{redis: {deny_commands: [FLUSHALL]}}", rd))
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(rd), "--policy", polPath)

	k1, k2 := randName("vigil-tx-"), randName("vigil-tx-")
	in := strings.Join([]string{"MULTI", "SET " + k1 + " v", "FLUSHALL", "SET " + k2 + " v", "EXEC", "GET " + k1, "GET " + k2, "PING"}, "\n") + "\n"
	out := l7Run(t, cg, in, "redis-cli", "--no-raw", "-h", "127.0.0.1", "-p", strconv.Itoa(rd))
	want := []string{"OK", "QUEUED", "(error) ERR denied by policy: command FLUSHALL is not allowed", "QUEUED",
		"(error) EXECABORT Transaction discarded because of previous errors.", "(nil)", "(nil)", "PONG"}
	if got := strings.Split(strings.TrimSpace(out), "\n"); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("redis-cli printed\n%s\nwant\n%s", out, strings.Join(want, "\n"))
	}
	a.stop()
	// Nothing of the transaction ran.
	for _, k := range []string{k1, k2} {
		if got := strings.TrimSpace(string(run(t, exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(rd), "exists", k)))); got != "0" {
			t.Errorf("EXISTS %s = %s; want 0", k, got)
		}
	}

	es := l7Requests(entries(t, a.dataDir), "redis", "redis-cli")
	var execE, flush *auditlog.Entry
	for i, e := range es {
		switch e.Attr("kind") {
		case "EXEC":
			execE = &es[i]
		case "FLUSHALL":
			flush = &es[i]
		}
	}
	switch {
	case flush == nil || flush.Decision != auditlog.Deny || flush.Attr("multi") != "true":
		t.Errorf("FLUSHALL entry %+v; want denied, multi=true", flush)
	case execE == nil || execE.Decision != auditlog.Deny || execE.Rule != "redis-guard" ||
		!strings.Contains(execE.Attr("deny_reason"), "FLUSHALL was denied"):
		t.Errorf("EXEC entry %+v; want denied by redis-guard, naming FLUSHALL", execE)
	}
	checkIdentity(t, es, "redis-cli", cg)
	verify(t, a.dataDir)
}
