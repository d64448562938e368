package postgres

import (
	"errors"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/capture"
)

// FuzzParse feeds arbitrary conversations (in capture format, so the two
// sides keep their order), cut into pieces of every size, and checks the
// parser fails only with the contract's errors and keeps its invariants
// (capture.Feed checks lengths and buffer bounds).
// Seeds in testdata/fuzz/FuzzParse come from the real captures.
func FuzzParse(f *testing.F) {
	for _, c := range fuzzSeeds() {
		f.Add(capture.Encode(c), []byte{1})
	}
	f.Fuzz(func(t *testing.T, conversation, step []byte) {
		chunks := capture.Decode(conversation)
		n := 0
		if len(step) > 0 {
			n = int(step[0])
		}
		for _, redact := range []bool{true, false} {
			p := New(l7.Options{Redact: redact})
			res, err := capture.Replay(p, chunks, n)
			if err != nil && !errors.Is(err, l7.ErrProtocol) && !errors.Is(err, l7.ErrTooLarge) {
				t.Fatalf("Replay: %v", err)
			}
			for _, r := range res.Requests {
				if len(r.Text) > l7.MaxText {
					t.Fatalf("request text of %d bytes", len(r.Text))
				}
				p.Deny(r, "fuzz")
			}
			for _, r := range res.Responses {
				if len(r.Error) > l7.MaxText {
					t.Fatalf("response error of %d bytes", len(r.Error))
				}
			}
		}
	})
}

// fuzzSeeds are short conversations covering each kind of message, so the
// fuzzer has small inputs to start from besides the recorded sessions.
func fuzzSeeds() [][]capture.Chunk {
	batch := []byte{}
	for _, m := range [][]byte{msg('P', cs("s"), cs("DELETE FROM t WHERE a = $1"), []byte{0, 0}), msg('B', cs(""), cs("s"), []byte{0, 0, 0, 1}, be32(1), []byte("1"), []byte{0, 0}),
		msg('D', []byte{'P'}, cs("")), msg('E', cs(""), be32(0)), msg('C', []byte{'S'}, cs("s")), msg('H'), msg('S')} {
		batch = append(batch, m...)
	}
	return [][]capture.Chunk{
		{cl(sslRequest), sv([]byte("N")), cl(startup), sv(authOK, rfqIdle), cl(msg('Q', cs("SELECT 'a'; DROP TABLE t"))), sv(cc("SELECT 1"), ErrorResponse("ERROR", "42501", "no"), rfqIdle)},
		{cl(startup), sv(authOK, rfqIdle), cl(batch), sv(msg('1'), msg('2'), msg('n'), cc("DELETE 1"), msg('3'), rfqIdle)},
		{cl(startup), sv(authOK, rfqIdle), cl(msg('Q', cs("COPY t FROM STDIN"))), sv(msg('G', []byte{0, 0, 0})), cl(msg('d', []byte("1\n")), msg('c')), sv(cc("COPY 1"), rfqIdle)},
		{cl([]byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e}, be32(1), be32(2))},
	}
}
