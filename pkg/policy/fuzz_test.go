package policy

import (
	"errors"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, that a rejected file
// always says why, and that an accepted one decides like the reference
// and compiles a kernel table that agrees with it.
// The seed corpus in testdata/fuzz/FuzzParse holds real policies.
func FuzzParse(f *testing.F) {
	f.Add([]byte(decidePolicy))
	f.Add([]byte(newGen(1).policy(5)))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Errors() == 0 || ve.Error() == "" {
				t.Fatalf("Parse error %v (%T) has no problems", err, err)
			}
			return
		}
		if p.Default().Action == 0 {
			t.Fatalf("accepted policy has no default")
		}
		kt := p.Kernel(16, 4096)
		g := newGen(uint64(len(data)))
		for range 20 {
			in := g.input()
			got, want := p.Decide(in), p.decideSlow(in)
			if got != want {
				t.Fatalf("Decide(%+v) = %+v; reference %+v", in, got, want)
			}
			if s := kt.decide(in.Dst, in.UID, in.GID); in.Dst.IsValid() && s != nil &&
				(got.Action != Deny || got.Rule != p.RuleName(s.Rule) || got.Errno != s.Errno) {
				t.Fatalf("kernel table denies %+v by %s; Decide = %+v", in, p.RuleName(s.Rule), got)
			}
		}
	})
}
