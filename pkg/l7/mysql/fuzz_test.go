package mysql

import (
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// FuzzParse feeds arbitrary conversations (in capture format, so the two
// sides keep their order), cut into reads of every size, and checks the
// parser fails only with the contract's errors and keeps its invariants
// (l7test.Run checks lengths and buffer bounds).
// Seeds in testdata/fuzz/FuzzParse come from the real captures.
func FuzzParse(f *testing.F) {
	for _, c := range fuzzSeeds() {
		f.Add(l7test.EncodeCapture(c), []byte{1})
	}
	f.Fuzz(func(t *testing.T, conversation, step []byte) {
		l7test.FuzzConversation(t, func(o l7.Options) l7.Parser { return New(o) }, conversation, step)
	})
}

// fuzzSeeds are short conversations covering each kind of packet, so the
// fuzzer has small inputs to start from besides the recorded sessions.
func fuzzSeeds() [][]l7test.Step {
	return [][]l7test.Step{
		with(cl(query("select a from t; delete from t")),
			sv(packet(1, []byte{1}), colDef(2), eof(3, 0), packet(4, []byte{1, 'x'}), eof(5, statusMoreResults), packet(6, []byte{0, 1, 0, 2, 0, 0, 0}))),
		with(cl(packet(0, append([]byte{comStmtPrepare}, "UPDATE t SET a = ?"...))), sv(packet(1, []byte{0, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}), colDef(2), eof(3, 0)),
			cl(packet(0, []byte{comStmtExecute, 9, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 8, 0, 1, 0, 0, 0, 0, 0, 0, 0})), sv(okPkt(1))),
		with(cl(query("LOAD DATA LOCAL INFILE 'f' INTO TABLE t")), sv(packet(1, []byte{0xfb, 'f'})), cl(packet(2, []byte("1\n")), packet(3, nil)), sv(okPkt(4))),
		{sv(greeting(testCaps)), cl(packet(1, handshake(testCaps, "", "")[4:36]))},
	}
}
