package intercept

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParseCapture feeds arbitrary text as a --capture list: ParseCapture
// must reject it with an error that quotes the offending rule, or accept
// rules that print back (CaptureRule.String) to a list that parses to the
// same rules, and that compile into the kernel's capture table.
func FuzzParseCapture(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1/32:5432,::1/128:1-1024",
		"10.0.0.0/8:5432,0.0.0.0/0:1-65535,::/0",
		"fd00::/8",
		" 10.1.2.3/24 , ,",
		"::ffff:10.0.0.0/104:443",
		"10.0.0.0/8:0",
		"10.0.0.0/8:65536",
		"10.0.0.0/8:80-79",
		"10.0.0.0/8:-",
		"10.0.0.0/8:1-2-3",
		"10.0.0.0",
		"10.0.0.0/33",
		"[::1]/128:80",
		"fe80::1%eth0/64",
		",",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rules, err := ParseCapture(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "intercept: capture ") {
				t.Fatalf("ParseCapture(%q) error %q does not say which rule is wrong", s, err)
			}
			return
		}
		if len(rules) == 0 {
			t.Fatalf("ParseCapture(%q) accepted no rules", s)
		}
		texts := make([]string, len(rules))
		for i, r := range rules {
			if r.PortLow > r.PortHigh || (r.PortLow == 0) != (r.PortHigh == 0) {
				t.Fatalf("ParseCapture(%q) rule %d has ports %d-%d", s, i, r.PortLow, r.PortHigh)
			}
			if r.Prefix != r.Prefix.Masked() {
				t.Fatalf("ParseCapture(%q) rule %d prefix %s is not masked", s, i, r.Prefix)
			}
			texts[i] = r.String()
		}
		again, err := ParseCapture(strings.Join(texts, ","))
		if err != nil {
			t.Fatalf("ParseCapture(%q) printed as %q, which does not parse: %v", s, texts, err)
		}
		if !slices.Equal(rules, again) {
			t.Fatalf("ParseCapture(%q) = %v; printed and parsed again = %v", s, rules, again)
		}
		if _, err := compileCapture(rules); err != nil && err.Error() == "" {
			t.Fatalf("compileCapture(%v): empty error", rules)
		}
	})
}
