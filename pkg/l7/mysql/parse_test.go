package mysql

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/capture"
)

func cl(b ...[]byte) capture.Chunk {
	return capture.Chunk{Dir: l7.FromClient, Data: bytes.Join(b, nil)}
}
func sv(b ...[]byte) capture.Chunk {
	return capture.Chunk{Dir: l7.FromServer, Data: bytes.Join(b, nil)}
}

const testCaps = capProtocol41 | capSecureConnection | capPluginAuth | capConnectWithDB | capMySQL | capSSL | 1<<16 | 1<<17

// greeting builds a server greeting offering caps.
func greeting(caps uint32) []byte {
	b := append([]byte{10}, "8.0.36\x00"...)
	b = append(b, 1, 0, 0, 0)
	b = append(b, "12345678\x00"...)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps))
	b = append(b, 45, 2, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(caps>>16))
	b = append(b, 21)
	b = append(b, make([]byte, 10)...)
	b = append(b, "123456789012\x00mysql_native_password\x00"...)
	return packet(0, b)
}

func handshake(caps uint32, user, db string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, caps)
	b = binary.LittleEndian.AppendUint32(b, 1<<24)
	b = append(b, 45)
	b = append(b, make([]byte, 23)...)
	b = append(b, user...)
	b = append(b, 0, 20)
	b = append(b, make([]byte, 20)...)
	b = append(b, db...)
	b = append(b, 0)
	b = append(b, "mysql_native_password\x00"...)
	return packet(1, b)
}

var (
	okPkt     = func(seq byte) []byte { return packet(seq, []byte{0, 0, 0, 2, 0, 0, 0}) }
	login     = []capture.Chunk{sv(greeting(testCaps)), cl(handshake(testCaps&^capSSL, "bob", "shop")), sv(okPkt(2))}
	loginWant = "STARTUP user=bob database=shop server_version=8.0.36 target=shop"
)

func eof(seq byte, status uint16) []byte {
	return packet(seq, binary.LittleEndian.AppendUint16([]byte{0xfe, 0, 0}, status))
}

func query(text string) []byte { return packet(0, append([]byte{comQuery}, text...)) }

func colDef(seq byte) []byte {
	return packet(seq, append([]byte{3}, "def\x00\x00\x00\x01a\x00\x0c\x3f\x00\x0b\x00\x00\x00\x03\x00\x00\x00\x00\x00"...))
}

func errPkt(seq byte, errno uint16, msg string) []byte { return ErrPacket(seq, errno, "42S02", msg) }

func with(chunks ...capture.Chunk) []capture.Chunk {
	return append(append([]capture.Chunk{}, login...), chunks...)
}

// TestConversations feeds each conversation whole, byte by byte, and split
// at every point of every chunk, and checks the same requests and
// responses come out each time.
func TestConversations(t *testing.T) {
	tests := []struct {
		name      string
		chunks    []capture.Chunk
		want      string
		encrypted bool
	}{
		{
			name:      "ssl request",
			chunks:    []capture.Chunk{sv(greeting(testCaps)), cl(packet(1, handshake(testCaps, "", "")[4:36])), cl([]byte{0x16, 3, 1, 0, 1, 0}), sv([]byte{0x16, 3, 3})},
			encrypted: true,
		},
		{
			name:   "login refused",
			chunks: []capture.Chunk{sv(greeting(testCaps)), cl(handshake(testCaps&^capSSL, "bob", "")), sv(errPkt(2, 1045, "Access denied"))},
			want:   "STARTUP user=bob server_version=8.0.36\n-> error Access denied errno=1045 sqlstate=42S02",
		},
		{
			name:   "too many connections",
			chunks: []capture.Chunk{sv(errPkt(0, 1040, "Too many connections"))},
		},
		{
			name: "result set with EOF and a second result",
			chunks: with(cl(query("select a from t; select a from t")),
				sv(packet(1, []byte{1}), colDef(2), eof(3, 0), packet(4, []byte{1, 'x'}), packet(5, []byte{0xfb}), eof(6, statusMoreResults),
					packet(7, []byte{1}), colDef(8), eof(9, 0), eof(10, 0))),
			want: loginWant + "\nSELECT select a from t; select a from t sql_kinds=SELECT,SELECT target=shop\n-> ok\n-> ok rows=2",
		},
		{
			name: "error and ok",
			chunks: with(cl(query("delete from t")), sv(packet(1, []byte{0, 3, 0, 2, 0, 0, 0})),
				cl(query("select * from nope")), sv(errPkt(1, 1146, "no table"))),
			want: loginWant + "\nDELETE delete from t sql_where=false target=shop\nSELECT select * from nope target=shop\n-> ok\n-> ok affected_rows=3\n-> error no table errno=1146 sqlstate=42S02",
		},
		{
			name: "change user with auth switch",
			chunks: with(cl(packet(0, append([]byte{comChangeUser}, "carol\x00\x00shop\x00"...))),
				sv(packet(1, append([]byte{0xfe}, "mysql_native_password\x00abcdefghijklmnopqrst\x00"...))),
				cl(packet(2, make([]byte, 20))), sv(okPkt(3)), cl(query("select 1"))),
			want: loginWant + "\nCHANGE_USER user=carol database=shop target=shop\nSELECT select ? target=shop\n-> ok\n-> ok",
		},
		{
			name: "query attributes",
			chunks: []capture.Chunk{sv(greeting(testCaps | capQueryAttributes)), cl(handshake((testCaps|capQueryAttributes)&^capSSL, "bob", "shop")), sv(okPkt(2)),
				cl(packet(0, append([]byte{comQuery, 0, 1}, "select 1"...))), sv(okPkt(1)),
				cl(packet(0, append([]byte{comQuery, 2, 1, 0, 1, 8, 0, 2, 'i', 'd', 0xfd, 0, 1, 'n', 7, 0, 0, 0, 0, 0, 0, 0, 1, 'v'}, "DROP TABLE t"...))), sv(okPkt(1))},
			want: loginWant + "\nSELECT select ? target=shop\nDROP DROP TABLE t target=shop\n-> ok\n-> ok affected_rows=0\n-> ok affected_rows=0",
		},
		{
			name: "result set without metadata",
			chunks: []capture.Chunk{sv(greeting(testCaps | capOptionalMetadata | capDeprecateEOF)), cl(handshake((testCaps|capOptionalMetadata|capDeprecateEOF)&^capSSL, "bob", "shop")), sv(okPkt(2)),
				cl(query("select a from t")), sv(packet(1, []byte{1, 0}), packet(2, []byte{1, 'x'}), packet(3, []byte{1, 'y'}), packet(4, []byte{0xfe, 0, 0, 2, 0, 0, 0}))},
			want: loginWant + "\nSELECT select a from t target=shop\n-> ok\n-> ok rows=2",
		},
		{
			name: "local infile",
			chunks: with(cl(query("LOAD DATA LOCAL INFILE 'f' INTO TABLE t")), sv(packet(1, append([]byte{0xfb}, 'f'))),
				cl(packet(2, []byte("1\n2\n")), packet(3, nil)), sv(packet(4, []byte{0, 2, 0, 2, 0, 0, 0}))),
			want: loginWant + "\nLOAD LOAD DATA LOCAL INFILE ? INTO TABLE t target=shop\n-> ok\n-> ok affected_rows=2",
		},
		{
			name: "prepare, execute, close, init db, ping",
			chunks: with(cl(packet(0, append([]byte{comStmtPrepare}, "UPDATE t SET a = ? WHERE b = 'x'"...))),
				sv(packet(1, []byte{0, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}), colDef(2), eof(3, 0)),
				cl(packet(0, []byte{comStmtExecute, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0})),
				sv(packet(1, []byte{0, 1, 0, 2, 0, 0, 0})),
				cl(packet(0, []byte{comStmtClose, 9, 0, 0, 0}), packet(0, append([]byte{comInitDB}, "other"...))), sv(okPkt(1)),
				cl(packet(0, []byte{0x0e})), sv(okPkt(1)),
				cl(query("select 1"))),
			want: loginWant + "\nUPDATE UPDATE t SET a = ? WHERE b = ? statement_id=9 target=shop\nUSE USE other target=other\nSELECT select ? target=other\n-> ok\n-> ok affected_rows=1\n-> ok",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(how string, chunks []capture.Chunk, step int) {
				t.Helper()
				p := New(l7.DefaultOptions())
				res, err := capture.Replay(p, chunks, step)
				if err != nil {
					t.Fatalf("%s: %v", how, err)
				}
				if got := strings.Join(summary(res), "\n"); got != tt.want {
					t.Fatalf("%s: got\n%s\nwant\n%s", how, got, tt.want)
				}
				if p.Encrypted() != tt.encrypted {
					t.Fatalf("%s: Encrypted() = %v; want %v", how, p.Encrypted(), tt.encrypted)
				}
				total := 0
				for _, c := range chunks {
					total += len(c.Data)
				}
				if res.Bytes[0]+res.Bytes[1] != total {
					t.Fatalf("%s: messages cover %d bytes of %d", how, res.Bytes[0]+res.Bytes[1], total)
				}
			}
			check("whole", tt.chunks, 0)
			check("byte by byte", tt.chunks, 1)
			for i, c := range tt.chunks {
				for k := 1; k < len(c.Data); k++ {
					split := append([]capture.Chunk{}, tt.chunks[:i]...)
					split = append(split, capture.Chunk{Dir: c.Dir, Data: c.Data[:k]}, capture.Chunk{Dir: c.Dir, Data: c.Data[k:]})
					split = append(split, tt.chunks[i+1:]...)
					check("split", split, 0)
				}
			}
		})
	}
}

// multi splits a logical packet into 16 MiB physical packets.
func multi(seq byte, payload []byte) []byte {
	var out []byte
	for {
		n := min(len(payload), maxPayload)
		out = append(out, packet(seq, payload[:n])...)
		payload = payload[n:]
		seq++
		if n < maxPayload {
			return out
		}
	}
}

// TestMultiPacket streams a row and a COM_STMT_EXECUTE larger than 16 MiB
// (continuation packets) without holding more than l7.MaxBuffer.
func TestMultiPacket(t *testing.T) {
	row := make([]byte, maxPayload+100)
	row[0] = 0xfe // a length-encoded string of 8-byte length, as such a row starts
	exec := append([]byte{comStmtExecute, 9, 0, 0, 0}, make([]byte, maxPayload)...)
	chunks := with(cl(packet(0, append([]byte{comStmtPrepare}, "INSERT INTO t VALUES (?)"...))),
		sv(packet(1, []byte{0, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}), colDef(2), eof(3, 0)),
		cl(query("select big from t")), sv(packet(1, []byte{1}), colDef(2), eof(3, 0), multi(4, row), eof(6, 0)),
		cl(multi(0, exec)), sv(okPkt(2)),
	)
	want := loginWant + "\nSELECT select big from t target=shop\nINSERT INSERT INTO t VALUES (?) statement_id=9 target=shop\n-> ok\n-> ok rows=1\n-> ok affected_rows=0"
	for _, step := range []int{1 << 20, l7.MaxBuffer - 3} {
		p := New(l7.DefaultOptions())
		res, err := capture.Replay(p, chunks, step)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if got := strings.Join(summary(res), "\n"); got != want {
			t.Fatalf("step %d: got\n%s\nwant\n%s", step, got, want)
		}
	}
	// A streamed command cannot be dropped whole: Deny says so.
	p := New(l7.DefaultOptions())
	res, err := capture.Replay(p, with(cl(multi(0, exec))), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Deny(res.Requests[len(res.Requests)-1], "x"); got != nil {
		t.Fatalf("Deny(streamed) = %q; want nil", got)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name   string
		chunks []capture.Chunk
		want   error
	}{
		{"client first", []capture.Chunk{cl(query("select 1"))}, l7.ErrProtocol},
		{"http", []capture.Chunk{sv([]byte("HTTP/1.1 200 OK\r\n\r\n"))}, l7.ErrProtocol},
		{"bad greeting", []capture.Chunk{sv(packet(0, []byte{9, 'x'}))}, l7.ErrProtocol},
		{"short handshake", []capture.Chunk{sv(greeting(testCaps)), cl(packet(1, []byte{1, 2, 3}))}, l7.ErrProtocol},
		{"query too large", with(cl(query(strings.Repeat("x", l7.MaxBuffer)))), l7.ErrTooLarge},
		{"unknown command", with(cl(packet(0, []byte{0x77}))), l7.ErrProtocol},
		{"empty command", with(cl(packet(0, nil))), l7.ErrProtocol},
		{"bad column count", with(cl(query("select 1")), sv(packet(1, []byte{0xfe}))), l7.ErrProtocol},
		{"compressed", []capture.Chunk{sv(greeting(testCaps | capCompress)), cl(handshake(testCaps|capCompress, "a", "")), sv(okPkt(2))}, l7.ErrProtocol},
		{"binlog", with(cl(packet(0, []byte{comBinlogDump, 0, 0, 0, 0}))), l7.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := capture.Replay(New(l7.DefaultOptions()), tt.chunks, 0)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Replay = %v; want %v", err, tt.want)
			}
		})
	}
}

// TestDeny checks the ERR packet a denied request is answered with, and
// that the connection goes on.
func TestDeny(t *testing.T) {
	p := New(l7.DefaultOptions())
	res, err := capture.Replay(p, with(cl(query("DROP TABLE t"))), 0)
	if err != nil {
		t.Fatal(err)
	}
	req := res.Requests[len(res.Requests)-1]
	want := ErrPacket(1, 1142, "42000", `Access denied by policy: rule "no-drop"`)
	if got := p.Deny(req, `rule "no-drop"`); !bytes.Equal(got, want) {
		t.Fatalf("Deny = %q; want %q", got, want)
	}
	res, err = capture.Replay(p, []capture.Chunk{cl(query("select 1")), sv(okPkt(1))}, 0)
	if err != nil || len(res.Responses) != 1 || res.Responses[0].Status != "ok" {
		t.Fatalf("after Deny: %v %v", summary(res), err)
	}

	p = New(l7.DefaultOptions())
	res, err = capture.Replay(p, login[:2], 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Deny(res.Requests[0], "x"), ErrPacket(2, 1227, "42000", "Access denied by policy: x"); !bytes.Equal(got, want) {
		t.Fatalf("Deny(login) = %q; want %q", got, want)
	}
}
