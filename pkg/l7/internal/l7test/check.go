package l7test

import (
	"fmt"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// CheckSplits runs steps through fresh parsers delivered whole, byte by
// byte (in 61-byte reads for steps over 16 KiB), and cut at every point of each step (every n-th point for steps
// over 4 KiB), and fails t unless every run reports the same as the whole
// one. It returns the whole run's result.
func CheckSplits(t testing.TB, newParser func() l7.Parser, steps []Step) Result {
	t.Helper()
	want, err := Run(newParser(), steps, Whole)
	if err != nil {
		t.Fatalf("whole: %v", err)
	}
	check := func(name string, s Splitter) {
		got, err := Run(newParser(), steps, s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.String() != want.String() || got.Consumed != want.Consumed || got.Left != want.Left {
			t.Fatalf("%s:\n%s\nconsumed %v left %v; whole:\n%s\nconsumed %v left %v",
				name, got, got.Consumed, got.Left, want, want.Consumed, want.Left)
		}
	}
	longest := 0
	for _, s := range steps {
		longest = max(longest, len(s.Data))
	}
	// Byte by byte costs a parser that waits for a whole message time
	// quadratic in its size; past 16 KiB, small reads prove the same.
	if longest <= 16<<10 {
		check("bytewise", Bytewise)
	} else {
		check("reads of 61 bytes", Chunks(61))
	}
	stride := 1
	if longest > 4096 {
		stride = longest / 1024
	}
	for k := 1; k < longest; k += stride {
		check(fmt.Sprintf("split at %d", k), SplitAt(k))
	}
	return want
}
