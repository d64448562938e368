package mysql

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

// fuzzSeeds are short conversations covering each kind of packet, so the
// fuzzer has small inputs to start from besides the recorded sessions.
func fuzzSeeds() [][]capture.Chunk {
	return [][]capture.Chunk{
		with(cl(query("select a from t; delete from t")),
			sv(packet(1, []byte{1}), colDef(2), eof(3, 0), packet(4, []byte{1, 'x'}), eof(5, statusMoreResults), packet(6, []byte{0, 1, 0, 2, 0, 0, 0}))),
		with(cl(packet(0, append([]byte{comStmtPrepare}, "UPDATE t SET a = ?"...))), sv(packet(1, []byte{0, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}), colDef(2), eof(3, 0)),
			cl(packet(0, []byte{comStmtExecute, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0})), sv(okPkt(1))),
		with(cl(query("LOAD DATA LOCAL INFILE 'f' INTO TABLE t")), sv(packet(1, []byte{0xfb, 'f'})), cl(packet(2, []byte("1\n")), packet(3, nil)), sv(okPkt(4))),
		{sv(greeting(testCaps)), cl(packet(1, handshake(testCaps, "", "")[4:36]))},
	}
}
