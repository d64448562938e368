package postgres

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
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

// livePG returns the e2e PostgreSQL's address, or skips (fails in CI) when
// it does not answer.
func livePG(t *testing.T) string {
	t.Helper()
	port := os.Getenv("VIGIL_E2E_PG_PORT")
	if port == "" {
		port = "54329"
	}
	addr := "127.0.0.1:" + port
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		testenv.Need(t, "PostgreSQL on "+addr, "run scripts/e2e-env.sh start")
	} else {
		c.Close()
	}
	return addr
}

func denyDrop(r *l7.Request) string {
	if r.Kind == "DROP" || r.Attrs["sql_where"] == "false" {
		return `rule "no-drop"`
	}
	return ""
}

// TestDenyLive runs psql through a relay that denies DROP and
// DELETE/UPDATE without WHERE, and checks that psql reports the denial and
// its session goes on.
func TestDenyLive(t *testing.T) {
	addr := livePG(t)
	if _, err := exec.LookPath("psql"); err != nil {
		testenv.Need(t, "psql", err.Error())
	}
	g, err := capture.NewGuard(addr, func() l7.Parser { return New(l7.DefaultOptions()) }, denyDrop)
	if err != nil {
		t.Fatal(err)
	}
	script := "CREATE TEMP TABLE vigil_live (a int);\nINSERT INTO vigil_live VALUES (1);\nDELETE FROM vigil_live;\nBEGIN;\nDROP TABLE vigil_live;\nSELECT 'after ' || count(*) FROM vigil_live;\nROLLBACK;\n"
	cmd := exec.Command("psql", "-h", "127.0.0.1", "-p", strings.Split(g.Addr().String(), ":")[1], "-U", "postgres", "-d", "postgres", "-X", "-At", "-v", "ON_ERROR_STOP=0")
	cmd.Stdin = strings.NewReader(script)
	out, _ := cmd.CombinedOutput()
	reqs, errs := g.Close()
	if len(errs) > 0 {
		t.Fatalf("parse errors: %v", errs)
	}
	got := string(out)
	for _, want := range []string{`permission denied by policy: rule "no-drop"`, "after 1"} {
		if !strings.Contains(got, want) {
			t.Errorf("psql output lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "permission denied by policy") != 2 {
		t.Errorf("psql output: want 2 denials (DELETE without WHERE, DROP):\n%s", got)
	}
	if len(reqs) != 8 {
		t.Errorf("requests = %d; want 8 (startup and 7 statements)", len(reqs))
	}
}

// TestDenyLiveExtended denies an extended-protocol batch and checks the
// server and the client stay in step: the next batch runs as usual.
func TestDenyLiveExtended(t *testing.T) {
	addr := livePG(t)
	g, err := capture.NewGuard(addr, func() l7.Parser { return New(l7.DefaultOptions()) }, denyDrop)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if err := send(c, r, startupMsg(map[string]string{"user": "postgres", "database": "postgres", "application_name": "vigil-live"}), 1); err != nil {
		t.Fatal(err)
	}
	batch := func(text string) []byte {
		return bytes.Join([][]byte{msg('P', cs(""), cs(text), []byte{0, 0}), msg('B', cs(""), cs(""), []byte{0, 0, 0, 0, 0, 0}),
			msg('D', []byte{'P'}, cs("")), msg('E', cs(""), be32(0)), msg('S')}, nil)
	}
	if _, err := c.Write(batch("DROP TABLE IF EXISTS vigil_nothing")); err != nil {
		t.Fatal(err)
	}
	types, err := readUntilReady(r)
	if err != nil {
		t.Fatal(err)
	}
	if types != "EZ" {
		t.Fatalf("denied batch answered with %q; want ErrorResponse, ReadyForQuery", types)
	}
	if _, err := c.Write(batch("SELECT 42")); err != nil {
		t.Fatal(err)
	}
	if types, err = readUntilReady(r); err != nil || types != "12TDCZ" {
		t.Fatalf("next batch answered with %q, %v; want 12TDCZ", types, err)
	}
}

// readUntilReady reads server messages up to ReadyForQuery and returns
// their types.
func readUntilReady(r *bufio.Reader) (string, error) {
	var types []byte
	for {
		var h [5]byte
		if _, err := r.Read(h[:1]); err != nil {
			return string(types), err
		}
		if _, err := io.ReadFull(r, h[1:]); err != nil {
			return string(types), err
		}
		if _, err := io.CopyN(io.Discard, r, int64(binary.BigEndian.Uint32(h[1:])-4)); err != nil {
			return string(types), err
		}
		types = append(types, h[0])
		if h[0] == 'Z' {
			return string(types), nil
		}
	}
}
