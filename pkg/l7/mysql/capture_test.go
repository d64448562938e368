package mysql

import (
	"bufio"
	"crypto/sha1"
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
		t.Skip("set VIGIL_L7_CAPTURE=1 to record captures from the e2e MariaDB")
	}
	port := os.Getenv("VIGIL_E2E_MARIADB_PORT")
	if port == "" {
		port = "33069"
	}
	password := os.Getenv("VIGIL_E2E_MARIADB_PASSWORD")
	if password == "" {
		password = "test"
	}
	target := "127.0.0.1:" + port

	rec, err := capture.Listen(target)
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open("testdata/mariadb-session.sql")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd := exec.Command("mariadb", "--no-defaults", "--protocol=tcp", "-h", "127.0.0.1", "-P", fmt.Sprint(rec.Addr().Port),
		"-uroot", "-p"+password, "--force", "test")
	cmd.Stdin = in
	cmd.Run() // the session has a failing statement on purpose
	if err := capture.Write("testdata/mariadb.cap", rec.Close()); err != nil {
		t.Fatal(err)
	}

	rec, err = capture.Listen(target)
	if err != nil {
		t.Fatal(err)
	}
	if err := binarySession(rec.Addr().String(), password); err != nil {
		t.Fatal(err)
	}
	if err := capture.Write("testdata/prepared.cap", rec.Close()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mariadb", "prepared"} {
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

type conn struct {
	c   net.Conn
	r   *bufio.Reader
	seq byte
}

func (c *conn) read() ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return nil, err
	}
	b := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
	_, err := io.ReadFull(c.r, b)
	c.seq = h[3] + 1
	return b, err
}

func (c *conn) write(b []byte) error {
	_, err := c.c.Write(packet(c.seq, b))
	return err
}

// command sends a command and reads its answer: "ok" one packet,
// "prepare" a prepare OK and its definitions, "rows" a result set with
// EOF packets (CLIENT_DEPRECATE_EOF is not negotiated here).
func (c *conn) command(b []byte, answer string) ([]byte, error) {
	c.seq = 0
	if err := c.write(b); err != nil {
		return nil, err
	}
	first, err := c.read()
	if err != nil || first[0] == 0xff || answer == "ok" {
		return first, err
	}
	n := 0
	switch answer {
	case "prepare":
		cols, params := int(binary.LittleEndian.Uint16(first[5:])), int(binary.LittleEndian.Uint16(first[7:]))
		n = cols + params
		if cols > 0 {
			n++
		}
		if params > 0 {
			n++
		}
	case "rows":
		for eofs := 0; eofs < 2; {
			b, err := c.read()
			if err != nil {
				return nil, err
			}
			if b[0] == 0xfe && len(b) < 9 {
				eofs++
			}
		}
	}
	for ; n > 0; n-- {
		if _, err := c.read(); err != nil {
			return nil, err
		}
	}
	return first, nil
}

// binarySession logs in with mysql_native_password and uses the binary
// protocol the way connectors do: prepare, execute with parameters, close.
func binarySession(addr, password string) error {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &conn{c: nc, r: bufio.NewReader(nc)}
	if err := loginNative(c, password); err != nil {
		return err
	}
	steps := []struct {
		cmd    []byte
		answer string
	}{
		{append([]byte{comQuery}, "CREATE TEMPORARY TABLE vigil_b (id BIGINT, name VARCHAR(16))"...), "ok"},
		{append([]byte{comStmtPrepare}, "INSERT INTO vigil_b VALUES (?, ?)"...), "prepare"},
		{nil, "ok"}, // execute insert, filled in below
		{append([]byte{comStmtPrepare}, "SELECT id, name FROM vigil_b WHERE id > ?"...), "prepare"},
		{nil, "rows"}, // execute select
		{append([]byte{comStmtPrepare}, "SELECT * FROM vigil_no_such"...), "ok"},
		{append([]byte{comStmtPrepare}, "DELETE FROM vigil_b"...), "prepare"},
		{nil, "ok"}, // execute delete
		{[]byte{comInitDB, 't', 'e', 's', 't'}, "ok"},
		{[]byte{0x0e}, "ok"}, // COM_PING
	}
	var ids []uint32
	for i, s := range steps {
		cmd := s.cmd
		if cmd == nil {
			id := ids[len(ids)-1]
			cmd = append([]byte{comStmtExecute}, binary.LittleEndian.AppendUint32(nil, id)...)
			cmd = append(cmd, 0, 1, 0, 0, 0) // no cursor, one iteration
			switch i {
			case 2:
				cmd = append(cmd, 0, 1, 8, 0, 0xfd, 0) // null bitmap, types: LONGLONG, VAR_STRING
				cmd = binary.LittleEndian.AppendUint64(cmd, 7)
				cmd = append(cmd, 5, 's', 'e', 'v', 'e', 'n')
			case 4:
				cmd = append(cmd, 0, 1, 8, 0)
				cmd = binary.LittleEndian.AppendUint64(cmd, 1)
			}
		}
		first, err := c.command(cmd, s.answer)
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		if s.answer == "prepare" {
			ids = append(ids, binary.LittleEndian.Uint32(first[1:]))
		}
	}
	c.seq = 0
	if err := c.write(append([]byte{comStmtClose}, binary.LittleEndian.AppendUint32(nil, ids[0])...)); err != nil {
		return err
	}
	c.seq = 0
	return c.write([]byte{comQuit})
}

// loginNative logs in as root to schema test with mysql_native_password.
func loginNative(c *conn, password string) error {
	g, err := c.read()
	if err != nil {
		return err
	}
	_, rest, _ := cstr(g[1:])
	seed := append([]byte{}, rest[4:12]...)
	rest = rest[12+1+2+1+2+2+1+10:]
	seed = append(seed, rest[:12]...)
	caps := uint32(capProtocol41 | capSecureConnection | capPluginAuth | capConnectWithDB | capConnectAttrs | 1<<16 | 1<<17 | 1<<13)
	hs := binary.LittleEndian.AppendUint32(nil, caps)
	hs = binary.LittleEndian.AppendUint32(hs, 1<<24)
	hs = append(hs, 45)
	hs = append(hs, make([]byte, 23)...)
	hs = append(hs, "root\x00"...)
	sc := scramble(seed, password)
	hs = append(hs, byte(len(sc)))
	hs = append(hs, sc...)
	hs = append(hs, "test\x00mysql_native_password\x00"...)
	attrs := append([]byte{12}, "program_name"...)
	attrs = append(attrs, 12)
	attrs = append(attrs, "vigil-binary"...)
	hs = append(hs, byte(len(attrs)))
	hs = append(hs, attrs...)
	if err := c.write(hs); err != nil {
		return err
	}
	if b, err := c.read(); err != nil || b[0] != 0 {
		return fmt.Errorf("login: %q %v", b, err)
	}
	return nil
}

// scramble computes a mysql_native_password auth response.
func scramble(seed []byte, password string) []byte {
	h1 := sha1.Sum([]byte(password))
	h2 := sha1.Sum(h1[:])
	h := sha1.New()
	h.Write(seed)
	h.Write(h2[:])
	out := h.Sum(nil)
	for i := range out {
		out[i] ^= h1[i]
	}
	return out
}

func packet(seq byte, b []byte) []byte {
	n := len(b)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, b...)
}
