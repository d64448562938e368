package postgres

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/capture"
)

// benchConversations are typical workloads, 100 statements each after a
// login: short queries with a few rows, extended-protocol batches as
// drivers send them, and COPY of 8 KiB data messages.
func benchConversations() map[string][]capture.Chunk {
	rows := func(n int) []byte {
		var b []byte
		b = append(b, msg('T', []byte{0, 1}, cs("name"), make([]byte, 18))...)
		for i := range n {
			b = append(b, msg('D', []byte{0, 1}, be32(20), []byte(fmt.Sprintf("%020d", i)))...)
		}
		return append(b, append(cc(fmt.Sprintf("SELECT %d", n)), rfqIdle...)...)
	}
	out := map[string][]capture.Chunk{}
	conv := []capture.Chunk{cl(startup), sv(authOK, rfqIdle)}
	for i := range 100 {
		conv = append(conv, cl(msg('Q', cs(fmt.Sprintf("SELECT id, name, email FROM users WHERE id = %d AND status = 'active'", i)))), sv(rows(10)))
	}
	out["query"] = conv
	conv = []capture.Chunk{cl(startup), sv(authOK, rfqIdle)}
	for i := range 100 {
		conv = append(conv, cl(msg('P', cs(""), cs("UPDATE accounts SET balance = balance + $1 WHERE id = $2"), []byte{0, 0}),
			msg('B', cs(""), cs(""), []byte{0, 0, 0, 2}, be32(3), []byte("100"), be32(4), []byte(fmt.Sprintf("%04d", i)), []byte{0, 0}),
			msg('D', []byte{'P'}, cs("")), msg('E', cs(""), be32(0)), msg('S')),
			sv(msg('1'), msg('2'), msg('n'), cc("UPDATE 1"), rfqIdle))
	}
	out["extended"] = conv
	data := bytes.Repeat([]byte("42\tsome text\t2026-01-01\n"), 8192/24)
	conv = []capture.Chunk{cl(startup), sv(authOK, rfqIdle), cl(msg('Q', cs("COPY t FROM STDIN"))), sv(msg('G', []byte{0, 0, 0}))}
	for range 100 {
		conv = append(conv, cl(msg('d', data)))
	}
	conv = append(conv, cl(msg('c')), sv(cc("COPY 34100"), rfqIdle))
	out["copy"] = conv
	return out
}

func BenchmarkParse(b *testing.B) {
	convs := benchConversations()
	for _, name := range []string{"query", "extended", "copy"} {
		b.Run(name, func(b *testing.B) {
			capture.Bench(b, func() l7.Parser { return New(l7.DefaultOptions()) }, convs[name])
		})
	}
}
