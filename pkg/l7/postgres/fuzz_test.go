package postgres

import (
	"errors"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/capture"
)

// FuzzParse feeds arbitrary client and server bytes, cut into arbitrary
// pieces, and checks the parser fails only with the contract's errors and
// keeps its invariants (capture.Feed checks lengths and buffer bounds).
// Seeds in testdata/fuzz/FuzzParse come from the real captures.
func FuzzParse(f *testing.F) {
	f.Add(append(append([]byte{}, sslRequest...), startup...), []byte("N"), []byte{3})
	f.Fuzz(func(t *testing.T, client, server, sizes []byte) {
		for _, redact := range []bool{true, false} {
			p := New(l7.Options{Redact: redact})
			res, err := capture.Replay(p, capture.Interleave(client, server, sizes), 0)
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
