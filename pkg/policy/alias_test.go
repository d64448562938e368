package policy

import (
	"strings"
	"testing"
	"time"
)

// TestAliasBomb checks that aliases cannot make a small file expand into
// a huge one, nor into a huge list of problems.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: vigil.dev/v1\ndefault: deny\nrules:\n  - &r {name: a, action: deny, match: {dst: {ports: [" +
		strings.Repeat(`"x", `, 2000) + "\"80\"]}}}\n")
	b.WriteString(strings.Repeat("  - *r\n", 2000))
	start := time.Now()
	got := check(t, b.String())
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("parsing took %v", d)
	}
	if len(got) > maxProblems+2 {
		t.Errorf("%d problems; want at most %d", len(got), maxProblems+2)
	}
	if !strings.Contains(strings.Join(got, "\n"), "expands to more than") {
		t.Errorf("the expansion limit is not reported")
	}
	if last := got[len(got)-1]; !strings.Contains(last, "more problems") {
		t.Errorf("last problem = %s; want a count of the ones left out", last)
	}
}
