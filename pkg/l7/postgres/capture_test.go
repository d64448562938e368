package postgres

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/l7/internal/capture"
)

// TestRecordCaptures regenerates testdata/*.cap from a real server and
// real clients. It runs only when VIGIL_L7_CAPTURE=1 (scripts/l7-captures.sh
// sets it after `scripts/e2e-env.sh start`).
func TestRecordCaptures(t *testing.T) {
	if os.Getenv("VIGIL_L7_CAPTURE") != "1" {
		t.Skip("set VIGIL_L7_CAPTURE=1 to record captures from the e2e PostgreSQL")
	}
	port := os.Getenv("VIGIL_E2E_PG_PORT")
	if port == "" {
		port = "54329"
	}
	target := "127.0.0.1:" + port

	rec, err := capture.Listen(target)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("psql", "-h", "127.0.0.1", "-p", fmt.Sprint(rec.Addr().Port), "-U", "postgres",
		"-d", "postgres", "-X", "-q", "-f", "testdata/psql-session.sql")
	cmd.Env = append(os.Environ(), "PGAPPNAME=vigil-capture", "PGSSLMODE=prefer")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if err := capture.Write("testdata/psql.cap", rec.Close()); err != nil {
		t.Fatal(err)
	}

	rec, err = capture.Listen(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := extendedSession(rec.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if err := capture.Write("testdata/extended.cap", rec.Close()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"psql", "extended"} {
		chunks, err := capture.Read("testdata/" + name + ".cap")
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile("testdata/" + name + ".cap")
		if err != nil {
			t.Fatal(err)
		}
		if err := capture.WriteSeed("testdata/fuzz/FuzzParse/"+name, raw, []byte{byte(len(chunks) % 7)}); err != nil {
			t.Fatal(err)
		}
	}
}

// extendedSession speaks the extended query protocol the way drivers do
// (libpq's PQexecParams, pgx, JDBC batches), pipelining several batches.
func extendedSession(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	var out []byte
	out = startupMsg(map[string]string{"user": "postgres", "database": "postgres", "application_name": "vigil-extended"})
	if err := send(c, r, out, 1); err != nil {
		return err
	}
	q := msg('Q', cs("CREATE TEMP TABLE vigil_x (v int)"))
	if err := send(c, r, q, 1); err != nil {
		return err
	}
	// Two batches pipelined in one write.
	out = nil
	out = append(out, msg('P', cs(""), cs("INSERT INTO vigil_x VALUES ($1), (2)"), []byte{0, 0})...)
	out = append(out, msg('B', cs(""), cs(""), []byte{0, 0, 0, 1}, be32(2), []byte("41"), []byte{0, 0})...)
	out = append(out, msg('D', []byte{'P'}, cs(""))...)
	out = append(out, msg('E', cs(""), be32(0))...)
	out = append(out, msg('S')...)
	out = append(out, msg('P', cs("upd"), cs("UPDATE vigil_x SET v = v + 1 WHERE v = $1"), []byte{0, 0})...)
	out = append(out, msg('B', cs(""), cs("upd"), []byte{0, 0, 0, 1}, be32(2), []byte("41"), []byte{0, 0})...)
	out = append(out, msg('E', cs(""), be32(0))...)
	out = append(out, msg('B', cs("p2"), cs("upd"), []byte{0, 0, 0, 1}, be32(1), []byte("2"), []byte{0, 0})...)
	out = append(out, msg('E', cs("p2"), be32(0))...)
	out = append(out, msg('S')...)
	if err := send(c, r, out, 2); err != nil {
		return err
	}
	// A batch that fails at Parse, then one that runs after it.
	out = nil
	out = append(out, msg('P', cs(""), cs("SELECT * FROM vigil_no_such"), []byte{0, 0})...)
	out = append(out, msg('B', cs(""), cs(""), []byte{0, 0, 0, 0, 0, 0})...)
	out = append(out, msg('E', cs(""), be32(0))...)
	out = append(out, msg('S')...)
	out = append(out, msg('P', cs(""), cs("DELETE FROM vigil_x"), []byte{0, 0})...)
	out = append(out, msg('B', cs(""), cs(""), []byte{0, 0, 0, 0, 0, 0})...)
	out = append(out, msg('E', cs(""), be32(0))...)
	out = append(out, msg('S')...)
	if err := send(c, r, out, 2); err != nil {
		return err
	}
	out = append(msg('C', []byte{'S'}, cs("upd")), msg('S')...)
	if err := send(c, r, out, 1); err != nil {
		return err
	}
	if err := send(c, r, msg('Q', cs("DROP TABLE vigil_x")), 1); err != nil {
		return err
	}
	_, err = c.Write(msg('X'))
	return err
}

// send writes b and reads server messages until n ReadyForQuery.
func send(c net.Conn, r *bufio.Reader, b []byte, n int) error {
	if _, err := c.Write(b); err != nil {
		return err
	}
	for n > 0 {
		var h [5]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return err
		}
		body := make([]byte, binary.BigEndian.Uint32(h[1:])-4)
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		if h[0] == 'Z' {
			n--
		}
	}
	return nil
}

func startupMsg(params map[string]string) []byte {
	b := be32(0)
	b = append(b, be32(codeV3)...)
	for _, k := range []string{"user", "database", "application_name"} {
		b = append(b, cs(k)...)
		b = append(b, cs(params[k])...)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

func msg(t byte, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	b := []byte{t}
	b = append(b, be32(uint32(4+len(body)))...)
	return append(b, body...)
}

func cs(s string) []byte { return append([]byte(s), 0) }

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
