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
