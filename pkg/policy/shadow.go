package policy

import (
	"fmt"
	"net/netip"
	"slices"

	"go.yaml.in/yaml/v3"
)

// shadowed warns about rules that can never match because an earlier rule
// without not: matches every connection they would. The check is sound
// but not complete: it only reports what it is certain of, comparing each
// field on its own (prefix containment, range containment, literal values
// against patterns, identical patterns). A rule hidden only by several
// earlier rules together is not reported.
func shadowed(p *parser, rules []ruleSpec) {
	fields := make([]uint32, len(rules))
	for i := range rules {
		fields[i] = rules[i].match.fields()
	}
	for j := range rules {
		for i := range j {
			// A rule that sets a field the later one does not cannot
			// cover it: check that first, it rules out most pairs.
			if rules[i].hasNot || fields[i]&^fields[j] != 0 || !covers(&rules[i].match, &rules[j].match) {
				continue
			}
			p.warnf(&yaml.Node{Line: rules[j].Line, Column: rules[j].col}, rules[j].field,
				fmt.Sprintf("move it above rules[%d], or narrow rules[%d]", i, i),
				"rule %q can never match: rules[%d] %q (line %d) comes first and matches every connection it would",
				rules[j].Name, i, rules[i].Name, rules[i].Line)
			break
		}
	}
}

// covers reports whether a certainly matches every input b matches.
func covers(a, b *matcher) bool {
	if a.cidr.on {
		if !b.cidr.on {
			return false
		}
		for _, l := range [2][]netip.Prefix{b.cidr.v4, b.cidr.v6} {
			for _, p := range l {
				if !a.cidr.covers(p) {
					return false
				}
			}
		}
	}
	for f := range a.num {
		if !a.num[f].on {
			continue
		}
		if !b.num[f].on {
			return false
		}
		for _, r := range b.num[f].r {
			if !a.num[f].covers(r) {
				return false
			}
		}
	}
	for f := range a.str {
		if a.str[f].on && (!b.str[f].on || !coversStr(&a.str[f], &b.str[f])) {
			return false
		}
	}
	for _, la := range a.labels {
		k, found := slices.BinarySearchFunc(b.labels, la.key, func(l labelMatch, key string) int {
			switch {
			case l.key < key:
				return -1
			case l.key > key:
				return 1
			}
			return 0
		})
		if !found || !coversStr(&la.val, &b.labels[k].val) {
			return false
		}
	}
	return true
}

// coversStr reports whether a certainly matches every string b matches:
// each of b's literal values matches a, and each of b's patterns is also
// one of a's.
func coversStr(a, b *strSet) bool {
	for _, v := range b.exact {
		if !a.match(v) {
			return false
		}
	}
	for _, g := range b.globs {
		if !a.hasGlob(g.pat) {
			return false
		}
	}
	return true
}
