package mysql

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/capture"
)

// benchConversations are typical workloads, 100 commands each after a
// login: short queries answered with 10 rows, prepared statements executed
// with parameters, and a result set of 100 rows of 8 KiB.
func benchConversations() map[string][]capture.Chunk {
	const caps = testCaps | capDeprecateEOF
	login := []capture.Chunk{sv(greeting(caps)), cl(handshake(caps&^capSSL, "app", "shop")), sv(okPkt(2))}
	rows := func(n, size int) []byte {
		b := append(packet(1, []byte{1}), colDef(2)...)
		row := append([]byte{0xfc}, binary.LittleEndian.AppendUint16(nil, uint16(size))...)
		row = append(row, bytes.Repeat([]byte("v"), size)...)
		for i := range n {
			b = append(b, packet(byte(3+i), row)...)
		}
		return append(b, packet(byte(3+n), []byte{0xfe, 0, 0, 2, 0, 0, 0})...)
	}
	out := map[string][]capture.Chunk{}
	conv := append([]capture.Chunk{}, login...)
	for i := range 100 {
		conv = append(conv, cl(query(fmt.Sprintf("SELECT id, name, email FROM users WHERE id = %d AND status = 'active'", i))), sv(rows(10, 20)))
	}
	out["query"] = conv
	conv = append([]capture.Chunk{}, login...)
	conv = append(conv, cl(packet(0, append([]byte{comStmtPrepare}, "UPDATE accounts SET balance = balance + ? WHERE id = ?"...))),
		sv(packet(1, []byte{0, 9, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0}), colDef(2), colDef(3)))
	for i := range 100 {
		exec := []byte{comStmtExecute, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0, 8, 0}
		exec = binary.LittleEndian.AppendUint64(exec, 100)
		exec = binary.LittleEndian.AppendUint64(exec, uint64(i))
		conv = append(conv, cl(packet(0, exec)), sv(packet(1, []byte{0, 1, 0, 2, 0, 0, 0})))
	}
	out["prepared"] = conv
	conv = append([]capture.Chunk{}, login...)
	conv = append(conv, cl(query("SELECT body FROM documents")), sv(rows(100, 8192)))
	out["rows"] = conv
	return out
}

func BenchmarkParse(b *testing.B) {
	convs := benchConversations()
	for _, name := range []string{"query", "prepared", "rows"} {
		b.Run(name, func(b *testing.B) {
			capture.Bench(b, func() l7.Parser { return New(l7.DefaultOptions()) }, convs[name])
		})
	}
}
