package mysql

import (
	"bufio"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/capture"
)

// liveMariaDB returns the e2e MariaDB's address and password, or skips
// (fails in CI) when it does not answer.
func liveMariaDB(t *testing.T) (string, string) {
	t.Helper()
	port := os.Getenv("VIGIL_E2E_MARIADB_PORT")
	if port == "" {
		port = "33069"
	}
	password := os.Getenv("VIGIL_E2E_MARIADB_PASSWORD")
	if password == "" {
		password = "test"
	}
	addr := "127.0.0.1:" + port
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		testenv.Need(t, "MariaDB on "+addr, "run scripts/e2e-env.sh start")
	} else {
		c.Close()
	}
	return addr, password
}

func denyDrop(r *l7.Request) string {
	if r.Kind == "DROP" || r.Attrs["sql_where"] == "false" {
		return `rule "no-drop"`
	}
	return ""
}

// TestDenyLive runs the mariadb client through a relay that denies DROP
// and DELETE/UPDATE without WHERE, and checks that the client reports the
// denial and its session goes on.
func TestDenyLive(t *testing.T) {
	addr, password := liveMariaDB(t)
	if _, err := exec.LookPath("mariadb"); err != nil {
		testenv.Need(t, "the mariadb client", err.Error())
	}
	g, err := capture.NewGuard(addr, func() l7.Parser { return New(l7.DefaultOptions()) }, denyDrop)
	if err != nil {
		t.Fatal(err)
	}
	script := "CREATE TEMPORARY TABLE vigil_live (a INT);\nINSERT INTO vigil_live VALUES (1);\nDELETE FROM vigil_live;\nDROP TEMPORARY TABLE vigil_live;\nSELECT CONCAT('after ', COUNT(*)) FROM vigil_live;\n"
	cmd := exec.Command("mariadb", "--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P", strings.Split(g.Addr().String(), ":")[1],
		"-uroot", "-p"+password, "--force", "-N", "test")
	cmd.Stdin = strings.NewReader(script)
	out, _ := cmd.CombinedOutput()
	reqs, errs := g.Close()
	if len(errs) > 0 {
		t.Fatalf("parse errors: %v", errs)
	}
	got := string(out)
	for _, want := range []string{`ERROR 1142 (42000)`, `Access denied by policy: rule "no-drop"`, "after 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("mariadb output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "Access denied by policy"); n != 2 {
		t.Errorf("mariadb output: %d denials; want 2 (DELETE without WHERE, DROP):\n%s", n, got)
	}
	if len(reqs) < 6 {
		t.Errorf("requests = %d; want at least 6 (login and 5 statements)", len(reqs))
	}
}

// TestDenyLivePrepared denies the execution of a prepared statement and
// checks the next command is answered as usual.
func TestDenyLivePrepared(t *testing.T) {
	addr, password := liveMariaDB(t)
	g, err := capture.NewGuard(addr, func() l7.Parser { return New(l7.DefaultOptions()) }, denyDrop)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	nc, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &conn{c: nc, r: bufio.NewReader(nc)}
	if err := loginNative(c, password); err != nil {
		t.Fatal(err)
	}
	first, err := c.command(append([]byte{comStmtPrepare}, "DROP TABLE IF EXISTS vigil_nothing"...), "prepare")
	if err != nil || first[0] != 0 {
		t.Fatalf("prepare: %q %v", first, err)
	}
	id := binary.LittleEndian.Uint32(first[1:])
	exec := append([]byte{comStmtExecute}, binary.LittleEndian.AppendUint32(nil, id)...)
	exec = append(exec, 0, 1, 0, 0, 0)
	got, err := c.command(exec, "ok")
	if err != nil || got[0] != 0xff || binary.LittleEndian.Uint16(got[1:]) != 1142 || c.seq != 2 {
		t.Fatalf("denied execute answered %q (next seq %d), %v; want ERR 1142 with sequence id 1", got, c.seq, err)
	}
	if got, err = c.command([]byte{0x0e}, "ok"); err != nil || got[0] != 0 {
		t.Fatalf("ping after the denial: %q %v", got, err)
	}
}
