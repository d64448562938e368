package policy

import (
	"errors"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, that a rejected file
// always says why, and that an accepted one decides like the reference.
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
		g := newGen(uint64(len(data)))
		for range 20 {
			in := g.input()
			if got, want := p.Decide(in), p.decideSlow(in); got != want {
				t.Fatalf("Decide(%+v) = %+v; reference %+v", in, got, want)
			}
		}
	})
}
