package l7test

import (
	"errors"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Fuzz is the body of a parser's fuzz target: it sends client, then
// server, to fresh parsers (with redaction on, then off) once whole and
// once in reads of split bytes. Run checks the contract on every call;
// Fuzz adds that both runs fail alike and, when they succeed, report the
// same events.
func Fuzz(t *testing.T, newParser func(l7.Options) l7.Parser, client, server []byte, split uint8) {
	steps := []Step{{Dir: l7.FromClient, Data: client}, {Dir: l7.FromServer, Data: server}}
	for _, redact := range []bool{true, false} {
		opts := l7.Options{Redact: redact}
		whole, werr := Run(newParser(opts), steps, Whole)
		parts, perr := Run(newParser(opts), steps, Chunks(int(split)%64+1))
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
		_ = newParser(opts).Deny(&l7.Request{}, "fuzz")
	}
}

// isParseError reports the errors a parser may return; anything else
// from Run is a broken contract.
func isParseError(err error) bool {
	return errors.Is(err, l7.ErrProtocol) || errors.Is(err, l7.ErrTooLarge)
}

// FuzzConversation is the body of a fuzz target that takes a whole
// conversation in capture format (so the two sides keep their order) and
// a read size: it runs the conversation, in reads of step[0] bytes (0:
// whole steps), through a parser with redaction on and one with it off.
// Run checks the contract on every call; FuzzConversation adds that
// response errors stay within l7.MaxText and that Deny takes every
// request reported.
func FuzzConversation(t *testing.T, newParser func(l7.Options) l7.Parser, conversation, step []byte) {
	steps := DecodeCapture(conversation)
	split := Whole
	if len(step) > 0 && step[0] > 0 {
		split = Chunks(int(step[0]))
	}
	for _, redact := range []bool{true, false} {
		p := newParser(l7.Options{Redact: redact})
		res, err := Run(p, steps, split)
		if err != nil && !isParseError(err) {
			t.Fatalf("Run: %v", err)
		}
		for _, r := range res.Requests {
			p.Deny(r, "fuzz")
		}
		for _, r := range res.Responses {
			if len(r.Error) > l7.MaxText {
				t.Fatalf("response error of %d bytes", len(r.Error))
			}
		}
	}
}
