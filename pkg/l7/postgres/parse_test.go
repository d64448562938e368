package postgres

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

func cl(b ...[]byte) l7test.Step {
	return l7test.Step{Dir: l7.FromClient, Data: bytes.Join(b, nil)}
}
func sv(b ...[]byte) l7test.Step {
	return l7test.Step{Dir: l7.FromServer, Data: bytes.Join(b, nil)}
}

var (
	sslRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}
	authOK     = msg('R', be32(0))
	rfqIdle    = msg('Z', []byte{'I'})
	startup    = startupMsg(map[string]string{"user": "alice", "database": "shop", "application_name": "app"})
)

func cc(tag string) []byte { return msg('C', cs(tag)) }

// TestConversations feeds each conversation whole, byte by byte, and split
// at every point of every chunk, and checks the same requests and
// responses come out each time.
func TestConversations(t *testing.T) {

	tests := []struct {
		name      string
		chunks    []l7test.Step
		want      string
		encrypted bool
	}{
		{
			name:   "ssl refused then startup",
			chunks: []l7test.Step{cl(sslRequest), sv([]byte("N")), cl(startup), sv(authOK, msg('S', cs("server_version"), cs("15")), msg('K', be32(7), be32(9)), rfqIdle)},
			want:   "STARTUP user=alice database=shop application_name=app\n-> ok",
		},
		{
			name:      "ssl accepted",
			chunks:    []l7test.Step{cl(sslRequest), sv([]byte("S")), cl([]byte{0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5}), sv([]byte{0x16, 3, 3, 0, 1, 9})},
			encrypted: true,
		},
		{
			name:      "direct ssl",
			chunks:    []l7test.Step{cl([]byte{0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5})},
			encrypted: true,
		},
		{
			name:   "cancel",
			chunks: []l7test.Step{cl([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e}, be32(77), be32(1))},
			want:   "CANCEL",
		},
		{
			name: "simple query with notice and rows",
			chunks: []l7test.Step{cl(startup), sv(authOK, rfqIdle), cl(msg('Q', cs("select * from t where a = 'x'"))),
				sv(msg('T', []byte{0, 0}), msg('N', []byte{'M'}, cs("hi"), []byte{0}), msg('D', []byte{0, 0}), cc("SELECT 1"), rfqIdle)},
			want: "STARTUP user=alice database=shop application_name=app\nSELECT select * from t where a = ?\n-> ok\n-> ok tag=SELECT 1",
		},
		{
			name: "pipelined extended batches",
			chunks: []l7test.Step{cl(startup), sv(authOK, rfqIdle),
				cl(msg('P', cs("s1"), cs("DELETE FROM t"), []byte{0, 0}), msg('B', cs(""), cs("s1"), []byte{0, 0, 0, 0, 0, 0}), msg('E', cs(""), be32(0)), msg('S'),
					msg('B', cs("p"), cs("s1"), []byte{0, 0, 0, 0, 0, 0}), msg('D', []byte{'P'}, cs("p")), msg('E', cs("p"), be32(0)), msg('C', []byte{'S'}, cs("s1")), msg('S')),
				sv(msg('1'), msg('2'), cc("DELETE 4"), rfqIdle, msg('2'), msg('n'), cc("DELETE 0"), msg('3'), rfqIdle)},
			want: "STARTUP user=alice database=shop application_name=app\nDELETE DELETE FROM t sql_where=false statement=s1\nDELETE DELETE FROM t sql_where=false statement=s1\n-> ok\n-> ok tag=DELETE 4\n-> ok tag=DELETE 0",
		},
		{
			name: "error skips the rest of the batch",
			chunks: []l7test.Step{cl(startup), sv(authOK, rfqIdle),
				cl(msg('P', cs(""), cs("SELECT 1/0"), []byte{0, 0}), msg('B', cs(""), cs(""), []byte{0, 0, 0, 0, 0, 0}), msg('E', cs(""), be32(0)),
					msg('P', cs(""), cs("DROP TABLE t"), []byte{0, 0}), msg('B', cs(""), cs(""), []byte{0, 0, 0, 0, 0, 0}), msg('E', cs(""), be32(0)), msg('S')),
				sv(msg('1'), msg('2'), ErrorResponse("ERROR", "22012", "division by zero"), rfqIdle)},
			want: "STARTUP user=alice database=shop application_name=app\nDROP SELECT ?/?; DROP TABLE t sql_kinds=SELECT,DROP executes=2\n-> ok\n-> error division by zero sqlstate=22012",
		},
		{
			name: "flush then sync",
			chunks: []l7test.Step{cl(startup), sv(authOK, rfqIdle),
				cl(msg('P', cs(""), cs("UPDATE t SET a = 1 WHERE b"), []byte{0, 0}), msg('B', cs(""), cs(""), []byte{0, 0, 0, 0, 0, 0}), msg('E', cs(""), be32(0)), msg('H')),
				sv(msg('1'), msg('2'), cc("UPDATE 2")),
				cl(msg('P', cs(""), cs("SELECT 2"), []byte{0, 0}), msg('B', cs(""), cs(""), []byte{0, 0, 0, 0, 0, 0}), msg('E', cs(""), be32(0)), msg('S')),
				sv(msg('1'), msg('2'), cc("SELECT 1"), rfqIdle)},
			want: "STARTUP user=alice database=shop application_name=app\nUPDATE UPDATE t SET a = ? WHERE b\nSELECT SELECT ?\n-> ok\n-> ok tag=UPDATE 2\n-> ok tag=SELECT 1",
		},
		{
			name: "copy in and out",
			chunks: []l7test.Step{cl(startup), sv(authOK, rfqIdle), cl(msg('Q', cs("COPY t FROM STDIN"))), sv(msg('G', []byte{0, 0, 0})),
				cl(msg('d', []byte("1\tx\n")), msg('d', []byte("2\ty\n")), msg('c')), sv(cc("COPY 2"), rfqIdle),
				cl(msg('Q', cs("COPY t TO STDOUT"))), sv(msg('H', []byte{0, 0, 0}), msg('d', []byte("1\tx\n")), msg('c'), cc("COPY 1"), rfqIdle)},
			want: "STARTUP user=alice database=shop application_name=app\nCOPY COPY t FROM STDIN\nCOPY COPY t TO STDOUT\n-> ok\n-> ok tag=COPY 2\n-> ok tag=COPY 1",
		},
		{
			name:   "fatal startup error",
			chunks: []l7test.Step{cl(startup), sv(ErrorResponse("FATAL", "28P01", "password authentication failed"))},
			want:   "STARTUP user=alice database=shop application_name=app\n-> error password authentication failed sqlstate=28P01",
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, dv := range l7test.Deliveries(tt.chunks) {
				p := New(l7.DefaultOptions())
				res, err := l7test.Run(p, dv.Steps, dv.Split)
				if err != nil {
					t.Fatalf("%s: %v", dv.Name, err)
				}
				if got := strings.Join(summary(res), "\n"); got != tt.want {
					t.Fatalf("%s: got\n%s\nwant\n%s", dv.Name, got, tt.want)
				}
				if p.Encrypted() != tt.encrypted {
					t.Fatalf("%s: Encrypted() = %v; want %v", dv.Name, p.Encrypted(), tt.encrypted)
				}
				if res.Left != [2]int{} {
					t.Fatalf("%s: %v bytes left uncovered by messages", dv.Name, res.Left)
				}
			}
		})
	}
}

// TestLargeMessages streams COPY data, a data row and a Bind far larger
// than the parse buffer, in steps of various sizes, without holding more
// than l7.MaxBuffer (l7test.Run fails if the parser does).
func TestLargeMessages(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 3*l7.MaxBuffer+17)
	bigBind := msg('B', cs(""), cs("s"), []byte{0, 0, 0, 1}, be32(uint32(len(big))), big, []byte{0, 0})
	chunks := []l7test.Step{cl(startup), sv(authOK, rfqIdle),
		cl(msg('Q', cs("COPY t FROM STDIN"))), sv(msg('G', []byte{0, 0, 0})),
		cl(msg('d', big), msg('d', big[:10]), msg('c')), sv(cc("COPY 2"), rfqIdle),
		cl(msg('Q', cs("SELECT big FROM t"))), sv(msg('T', []byte{0, 0}), msg('D', big), cc("SELECT 1"), rfqIdle),
		cl(msg('P', cs("s"), cs("INSERT INTO t VALUES ($1)"), []byte{0, 0}), bigBind, msg('E', cs(""), be32(0)), msg('S')),
		sv(msg('1'), msg('2'), cc("INSERT 0 1"), rfqIdle),
	}
	want := "STARTUP user=alice database=shop application_name=app\nCOPY COPY t FROM STDIN\nSELECT SELECT big FROM t\nINSERT INSERT INTO t VALUES ($1) statement=s\n" +
		"-> ok\n-> ok tag=COPY 2\n-> ok tag=SELECT 1\n-> ok tag=INSERT 0 1"
	for _, step := range []int{0, 1000, 4096, l7.MaxBuffer - 1} {
		res, err := l7test.Run(New(l7.DefaultOptions()), chunks, l7test.Chunks(step))
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if got := strings.Join(summary(res), "\n"); got != want {
			t.Fatalf("step %d: got\n%s\nwant\n%s", step, got, want)
		}
	}
}

func TestErrors(t *testing.T) {
	huge := strings.Repeat("x", l7.MaxBuffer)
	tests := []struct {
		name   string
		chunks []l7test.Step
		want   error
	}{
		{"garbage startup", []l7test.Step{cl([]byte("GET / HTTP/1.1\r\n\r\n"))}, l7.ErrProtocol},
		{"old protocol", []l7test.Step{cl([]byte{0, 0, 0, 8, 0, 2, 0, 0})}, l7.ErrProtocol},
		{"startup without user", []l7test.Step{cl(startupMsg(map[string]string{"database": "x"}))}, l7.ErrProtocol},
		{"unknown message", []l7test.Step{cl(startup), cl([]byte{'Z', 0, 0, 0, 4})}, l7.ErrProtocol},
		{"short length", []l7test.Step{cl(startup), cl([]byte{'Q', 0, 0, 0, 2})}, l7.ErrProtocol},
		{"query without terminator", []l7test.Step{cl(startup), cl([]byte{'Q', 0, 0, 0, 5, 'x'})}, l7.ErrProtocol},
		{"query too large", []l7test.Step{cl(startup), cl(msg('Q', cs(huge)))}, l7.ErrTooLarge},
		{"parse too large", []l7test.Step{cl(startup), cl(msg('P', cs(""), cs(huge), []byte{0, 0}))}, l7.ErrTooLarge},
		{"bad server type", []l7test.Step{cl(startup), sv([]byte{'x', 0, 0, 0, 4})}, l7.ErrProtocol},
		{"bad ssl answer", []l7test.Step{cl(sslRequest), sv([]byte("Q"))}, l7.ErrProtocol},
		{"bytes after cancel", []l7test.Step{cl([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e}, be32(77), be32(1), []byte("x"))}, l7.ErrProtocol},
		{"short function call", []l7test.Step{cl(startup), cl([]byte{'F', 0, 0, 0, 4})}, l7.ErrProtocol},
		{"bad ready", []l7test.Step{cl(startup), sv([]byte{'Z', 0, 0, 0, 6, 'I', 'I'})}, l7.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l7test.Run(New(l7.DefaultOptions()), tt.chunks, l7test.Whole)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Replay = %v; want %v", err, tt.want)
			}
		})
	}
}

// TestDeny checks the bytes a denied request is answered with and that the
// parser stops waiting for the server's answer to it.
func TestDeny(t *testing.T) {
	batch := bytes.Join([][]byte{msg('P', cs(""), cs("DROP TABLE t"), []byte{0, 0}), msg('B', cs(""), cs(""), []byte{0, 0, 0, 0, 0, 0}), msg('E', cs(""), be32(0))}, nil)
	denyErr := ErrorResponse("ERROR", "42501", `permission denied by policy: rule "no-drop"`)
	tests := []struct {
		name   string
		client []byte
		want   []byte
	}{
		{"query", msg('Q', cs("DROP TABLE t")), append(append([]byte{}, denyErr...), 'Z', 0, 0, 0, 5, 'T')},
		{"batch with sync", append(append([]byte{}, batch...), msg('S')...), append(append([]byte{}, denyErr...), 'Z', 0, 0, 0, 5, 'T')},
		{"batch with flush", append(append([]byte{}, batch...), msg('H')...), denyErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(l7.DefaultOptions())
			res, err := l7test.Run(p, []l7test.Step{cl(startup), sv(authOK, msg('Z', []byte{'T'})), cl(tt.client)}, l7test.Whole)
			if err != nil {
				t.Fatal(err)
			}
			req := res.Requests[len(res.Requests)-1]
			if req.Kind != "DROP" {
				t.Fatalf("Kind = %q; want DROP", req.Kind)
			}
			if got := p.Deny(req, `rule "no-drop"`); !bytes.Equal(got, tt.want) {
				t.Fatalf("Deny = %q; want %q", got, tt.want)
			}
			// The next request is answered by the server as usual.
			res2, err := l7test.Run(p, []l7test.Step{cl(msg('Q', cs("SELECT 1"))), sv(cc("SELECT 1"), rfqIdle)}, l7test.Whole)
			if err != nil {
				t.Fatal(err)
			}
			if len(res2.Responses) != 1 || res2.Responses[0].Attrs["tag"] != "SELECT 1" {
				t.Fatalf("after Deny: %v", summary(res2))
			}
		})
	}
	p := New(l7.DefaultOptions())
	res, err := l7test.Run(p, []l7test.Step{cl(startup)}, l7test.Whole)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Deny(res.Requests[0], "x"); !bytes.Equal(got, ErrorResponse("FATAL", "42501", "permission denied by policy: x")) {
		t.Fatalf("Deny(startup) = %q", got)
	}
}

// TestStatementCache parses and closes many named statements, as drivers
// with statement caches do, and checks the cache stays bounded and keeps
// the statements still open.
func TestStatementCache(t *testing.T) {
	p := New(l7.DefaultOptions())
	if _, err := l7test.Run(p, []l7test.Step{cl(startup), sv(authOK, rfqIdle)}, l7test.Whole); err != nil {
		t.Fatal(err)
	}
	keep := msg('P', cs("keep"), cs("DELETE FROM kept"), []byte{0, 0})
	if _, err := l7test.Run(p, []l7test.Step{cl(keep, msg('S')), sv(rfqIdle)}, l7test.Whole); err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		name := fmt.Sprintf("s%d", i)
		b := bytes.Join([][]byte{msg('P', cs(name), cs("SELECT 1"), []byte{0, 0}), msg('C', []byte{'S'}, cs(name)), msg('S')}, nil)
		if _, err := l7test.Run(p, []l7test.Step{cl(b), sv(rfqIdle)}, l7test.Whole); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(p.c.stmtOrder); n > 100 {
		t.Errorf("eviction order holds %d names after closes; want it compacted", n)
	}
	res, err := l7test.Run(p, []l7test.Step{cl(msg('B', cs(""), cs("keep"), []byte{0, 0, 0, 0, 0, 0}), msg('E', cs(""), be32(0)), msg('S'))}, l7test.Whole)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Requests) != 1 || res.Requests[0].Kind != "DELETE" {
		t.Fatalf("Execute of a kept statement: %v", summary(res))
	}
}

// TestFunctionCall records a FunctionCall, whole or streamed past the
// buffer; a streamed one carries its request on its last piece and cannot
// be denied cleanly.
func TestFunctionCall(t *testing.T) {
	small := msg('F', be32(1234), []byte{0, 0, 0, 1}, be32(1), []byte("x"), []byte{0, 0})
	big := msg('F', be32(1234), []byte{0, 0, 0, 1}, be32(3*l7.MaxBuffer), bytes.Repeat([]byte("x"), 3*l7.MaxBuffer), []byte{0, 0})
	for _, tt := range []struct {
		name    string
		call    []byte
		denyNil bool
	}{{"whole", small, false}, {"streamed", big, true}} {
		t.Run(tt.name, func(t *testing.T) {
			p := New(l7.DefaultOptions())
			res, err := l7test.Run(p, []l7test.Step{cl(startup), sv(authOK, rfqIdle), cl(tt.call)}, l7test.Chunks(4096))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Requests) != 2 || res.Requests[1].Kind != "FUNCTION_CALL" || res.Requests[1].Attrs["function_oid"] != "1234" {
				t.Fatalf("requests: %v", summary(res))
			}
			if got := p.Deny(res.Requests[1], "x"); (got == nil) != tt.denyNil {
				t.Fatalf("Deny = %q; want nil: %v", got, tt.denyNil)
			}
		})
	}
}

// TestParams checks Bind parameter values are recorded only with Redact
// off, and literals are kept then too.
func TestParams(t *testing.T) {
	chunks, err := l7test.ReadCapture("testdata/extended.cap")
	if err != nil {
		t.Fatal(err)
	}
	for _, redact := range []bool{true, false} {
		res, err := l7test.Run(New(l7.Options{Redact: redact}), chunks, l7test.Whole)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range res.Requests {
			if r.Attrs["extended"] == "true" {
				got = append(got, r.Text+" params="+r.Attrs["params"])
			}
		}
		want := []string{
			"INSERT INTO vigil_x VALUES ($1), (?) params=",
			"UPDATE vigil_x SET v = v + ? WHERE v = $1; UPDATE vigil_x SET v = v + ? WHERE v = $1 params=",
			"SELECT * FROM vigil_no_such params=",
			"DELETE FROM vigil_x params=",
		}
		if !redact {
			want = []string{
				`INSERT INTO vigil_x VALUES ($1), (2) params="41"`,
				`UPDATE vigil_x SET v = v + 1 WHERE v = $1; UPDATE vigil_x SET v = v + 1 WHERE v = $1 params="41"; "2"`,
				"SELECT * FROM vigil_no_such params=",
				"DELETE FROM vigil_x params=",
			}
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("Redact=%v: got\n%s\nwant\n%s", redact, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestPendingBounded sends many Syncs the server has not answered yet:
// they cost no memory each, and too many audited requests without an
// answer stop the parser instead of growing without bound.
func TestPendingBounded(t *testing.T) {
	p := New(l7.DefaultOptions())
	syncs := bytes.Repeat(msg('S'), 100000)
	if _, err := l7test.Run(p, []l7test.Step{cl(startup), sv(authOK, rfqIdle), cl(syncs)}, l7test.Whole); err != nil {
		t.Fatal(err)
	}
	if n := p.outstanding(); n != 1 {
		t.Fatalf("outstanding = %d after plain Syncs; want 1 merged item", n)
	}
	if _, err := l7test.Run(p, []l7test.Step{sv(bytes.Repeat(rfqIdle, 100000))}, l7test.Whole); err != nil {
		t.Fatal(err)
	}
	if n := p.outstanding(); n != 0 {
		t.Fatalf("outstanding = %d after the answers; want 0", n)
	}
	queries := bytes.Repeat(msg('Q', cs("SELECT 1")), maxPending+1)
	if _, err := l7test.Run(p, []l7test.Step{cl(queries)}, l7test.Whole); !errors.Is(err, l7.ErrTooLarge) {
		t.Fatalf("Replay of %d unanswered queries = %v; want ErrTooLarge", maxPending+1, err)
	}
}

// TestPasswordMasked: with Redact off, the password of ALTER ROLE is
// still never recorded.
func TestPasswordMasked(t *testing.T) {
	var b []byte
	startup := []byte{0, 0, 0, 0, 0, 3, 0, 0}
	startup = append(startup, "user\x00u\x00\x00"...)
	binary.BigEndian.PutUint32(startup, uint32(len(startup)))
	b = append(b, startup...)
	q := "ALTER ROLE u PASSWORD 'hunter2'"
	b = append(b, 'Q', 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(b)-4:], uint32(4+len(q)+1))
	b = append(b, q...)
	b = append(b, 0)
	msgs, err := New(l7.Options{}).Parse(l7.FromClient, b)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, m := range msgs {
		if m.Request != nil && m.Request.Kind == "ALTER" {
			texts = append(texts, m.Request.Text)
		}
	}
	if len(texts) != 1 || texts[0] != "ALTER ROLE u PASSWORD ?" {
		t.Errorf("recorded %q; want the password masked", texts)
	}
}
