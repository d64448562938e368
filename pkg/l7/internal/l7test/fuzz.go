package l7test

import (
	"errors"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Fuzz is the body of a parser's fuzz target: it sends client, then
// server, to fresh parsers once whole and once in reads of split bytes.
// Run checks the contract on every call; Fuzz adds that both runs fail
// alike and, when they succeed, report the same events.
func Fuzz(t *testing.T, newParser func() l7.Parser, client, server []byte, split uint8) {
	steps := []Step{{Dir: l7.FromClient, Data: client}, {Dir: l7.FromServer, Data: server}}
	whole, werr := Run(newParser(), steps, Whole)
	parts, perr := Run(newParser(), steps, Chunks(int(split)%64+1))
	for _, err := range []error{werr, perr} {
		if err != nil && !isParseError(err) {
			t.Fatal(err)
		}
	}
	if (werr == nil) != (perr == nil) {
		t.Fatalf("whole: %v; in reads of %d: %v", werr, int(split)%64+1, perr)
	}
	if werr == nil && (whole.String() != parts.String() || whole.Consumed != parts.Consumed) {
		t.Fatalf("whole:\n%s\n%v\nin reads of %d:\n%s\n%v", whole, whole.Consumed, int(split)%64+1, parts, parts.Consumed)
	}
	p := newParser()
	_ = p.Deny(&l7.Request{}, "fuzz")
}

// isParseError reports the errors a parser may return; anything else
// from Run is a broken contract.
func isParseError(err error) bool {
	return errors.Is(err, l7.ErrProtocol) || errors.Is(err, l7.ErrTooLarge)
}
