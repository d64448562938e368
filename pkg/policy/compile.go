package policy

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
)

// How decisions are made fast.
//
// Rule i is bit i of a bitset. For every field some rule constrains, an
// index maps the connection's value of that field to the set of rules
// that can match it:
//
//   - numbers (port, uid, gid) and addresses (IPv4 and IPv6 separately):
//     the key space is cut into intervals at every range and prefix
//     boundary; a binary search finds the interval, which has its set;
//   - strings: literal values map to their set; any other known value gets
//     the rules that do not constrain the field or have a pattern for it;
//     an unknown value ("") gets only the rules that do not constrain it.
//
// Decide ANDs one set per field, word by word, and checks the candidates
// in rule order against what the index does not decide exactly (patterns,
// labels, not:). The first that passes decides. The sets are interned, so
// rules with the same constraints share memory.

// maxIndexWords bounds the memory of the index (in 64-bit words). A field
// whose index would go past it is not indexed, and every candidate is then
// checked in full.
const maxIndexWords = 4 << 20

// u128 is an index key: an IPv6 address, or a number in lo.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) next() (u128, bool) {
	if a.lo != ^uint64(0) {
		return u128{a.hi, a.lo + 1}, true
	}
	if a.hi != ^uint64(0) {
		return u128{a.hi + 1, 0}, true
	}
	return u128{}, false
}

func addrKey(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// prefixRange is the first and last address of p.
func prefixRange(p netip.Prefix) (lo, hi u128) {
	lo = addrKey(p.Addr())
	hi = lo
	// Shifting a uint64 by 64 or more gives 0, so 1<<64 - 1 is all ones.
	if host := uint(p.Addr().BitLen() - p.Bits()); host >= 64 {
		hi.lo = ^uint64(0)
		hi.hi |= uint64(1)<<(host-64) - 1
	} else {
		hi.lo |= uint64(1)<<host - 1
	}
	return lo, hi
}

// interner deduplicates bitsets.
type interner struct {
	words int
	m     map[string][]uint64
	buf   []byte
	total int // words stored
}

func (in *interner) get(b []uint64) []uint64 {
	in.buf = in.buf[:0]
	for _, w := range b {
		in.buf = binary.LittleEndian.AppendUint64(in.buf, w)
	}
	if s, ok := in.m[string(in.buf)]; ok {
		return s
	}
	s := slices.Clone(b)
	in.m[string(in.buf)] = s
	in.total += len(s)
	return s
}

// ivIndex maps a key to the rules whose ranges contain it.
type ivIndex struct {
	on     bool
	bounds []u128     // bounds[j] is where interval j starts; bounds[0] is 0
	sets   [][]uint64 // sets[j]: rules that can match a key in interval j
}

func (x *ivIndex) lookup(k u128) []uint64 {
	lo, hi := 0, len(x.bounds)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if k.less(x.bounds[m]) {
			hi = m
		} else {
			lo = m
		}
	}
	return x.sets[lo]
}

type span struct{ lo, hi u128 }

// mergeSpans sorts spans and merges those that overlap or touch (one
// rule's prefixes may nest), in place.
func mergeSpans(l []span) []span {
	slices.SortFunc(l, func(a, b span) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		return 0
	})
	out := l[:0]
	for _, s := range l {
		if n := len(out); n > 0 {
			end, ok := out[n-1].hi.next()
			if !ok || !end.less(s.lo) {
				if out[n-1].hi.less(s.hi) {
					out[n-1].hi = s.hi
				}
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// buildIv indexes ranges[i] of every constrained rule (constrained[i]);
// unconstrained rules are in every set. It returns false when the index
// would be too large.
func buildIv(in *interner, constrained []bool, ranges [][]span) (ivIndex, bool) {
	x := ivIndex{on: true}
	type event struct {
		at   u128
		rule int
		add  bool
	}
	cur := make([]uint64, in.words)
	var evs []event
	for i := range constrained {
		if !constrained[i] {
			cur[i>>6] |= 1 << (i & 63)
			continue
		}
		for _, s := range mergeSpans(ranges[i]) {
			evs = append(evs, event{s.lo, i, true})
			if end, ok := s.hi.next(); ok {
				evs = append(evs, event{end, i, false})
			}
		}
	}
	slices.SortFunc(evs, func(a, b event) int {
		switch {
		case a.at.less(b.at):
			return -1
		case b.at.less(a.at):
			return 1
		}
		return 0
	})
	k := 0
	apply := func(at u128) {
		for ; k < len(evs) && evs[k].at == at; k++ {
			if e := evs[k]; e.add {
				cur[e.rule>>6] |= 1 << (e.rule & 63)
			} else {
				cur[e.rule>>6] &^= 1 << (e.rule & 63)
			}
		}
	}
	apply(u128{})
	x.bounds = []u128{{}}
	x.sets = [][]uint64{in.get(cur)}
	for k < len(evs) {
		at := evs[k].at
		apply(at)
		if slices.Equal(x.sets[len(x.sets)-1], cur) {
			continue // same rules as the interval before: extend it
		}
		x.bounds = append(x.bounds, at)
		x.sets = append(x.sets, in.get(cur))
		if in.total > maxIndexWords {
			return ivIndex{}, false
		}
	}
	return x, true
}

// strIndex maps a string to the rules that can match it.
type strIndex struct {
	on    bool
	exact map[string][]uint64 // literal values: rules with that value, a pattern, or no constraint
	other []uint64            // known values not in exact: rules with a pattern or no constraint
	unc   []uint64            // unknown value "": rules with no constraint
}

func (x *strIndex) lookup(v string) []uint64 {
	if v == "" {
		return x.unc
	}
	if s, ok := x.exact[v]; ok {
		return s
	}
	return x.other
}

func buildStr(in *interner, sets []*strSet) (strIndex, bool) {
	x := strIndex{on: true, exact: make(map[string][]uint64)}
	unc := make([]uint64, in.words)
	other := make([]uint64, in.words)
	lit := make(map[string][]uint64)
	for i, s := range sets {
		bit := uint64(1) << (i & 63)
		switch {
		case !s.on:
			unc[i>>6] |= bit
			other[i>>6] |= bit
		case len(s.globs) > 0:
			other[i>>6] |= bit
		}
		if s.on {
			for _, v := range s.exact {
				b := lit[v]
				if b == nil {
					b = make([]uint64, in.words)
					lit[v] = b
				}
				b[i>>6] |= bit
			}
		}
		if len(lit)*in.words > maxIndexWords {
			return strIndex{}, false
		}
	}
	x.unc, x.other = in.get(unc), in.get(other)
	for v, b := range lit {
		for w := range b {
			b[w] |= other[w]
		}
		x.exact[v] = in.get(b)
	}
	return x, true
}

// crule is a compiled rule.
type crule struct {
	match  matcher
	not    matcher
	hasNot bool
	dec    Decision
}

// compiled is the decision structure of a policy.
type compiled struct {
	rules  []crule
	words  int
	all    []uint64 // every rule
	v4, v6 ivIndex
	cidrOn bool     // some rule constrains the destination address
	unc    []uint64 // rules that do not constrain the destination address
	num    [numNum]ivIndex
	str    [numStr]strIndex
	full   bool // a field is not indexed: check candidates in full
}

func compile(specs []ruleSpec) compiled {
	n := len(specs)
	c := compiled{rules: make([]crule, n), words: (n + 63) / 64}
	in := &interner{words: c.words, m: make(map[string][]uint64)}
	all := make([]uint64, c.words)
	for i, r := range specs {
		c.rules[i] = crule{match: r.match, not: r.not, hasNot: r.hasNot,
			dec: Decision{Action: r.Action, Rule: r.Name, Errno: r.Errno, L7: r.L7}}
		all[i>>6] |= 1 << (i & 63)
	}
	c.all = in.get(all)
	if n == 0 {
		return c
	}

	constrained := make([]bool, n)
	ranges := make([][]span, n)
	unc := make([]uint64, c.words)
	for i := range specs {
		cs := &specs[i].match.cidr
		constrained[i] = cs.on
		c.cidrOn = c.cidrOn || cs.on
		if !cs.on {
			unc[i>>6] |= 1 << (i & 63)
		}
	}
	if c.cidrOn {
		c.unc = in.get(unc)
		for fam, x := range []*ivIndex{&c.v4, &c.v6} {
			for i := range specs {
				ranges[i] = ranges[i][:0]
				l := specs[i].match.cidr.v4
				if fam == 1 {
					l = specs[i].match.cidr.v6
				}
				for _, p := range l {
					lo, hi := prefixRange(p)
					ranges[i] = append(ranges[i], span{lo, hi})
				}
			}
			var ok bool
			if *x, ok = buildIv(in, constrained, ranges); !ok {
				c.full, c.cidrOn = true, false
			}
		}
	}
	for f := range c.num {
		used := false
		for i := range specs {
			rs := &specs[i].match.num[f]
			constrained[i] = rs.on
			used = used || rs.on
			ranges[i] = ranges[i][:0]
			for _, r := range rs.r {
				ranges[i] = append(ranges[i], span{u128{0, r.lo}, u128{0, r.hi}})
			}
		}
		if used {
			var ok bool
			if c.num[f], ok = buildIv(in, constrained, ranges); !ok {
				c.full = true
			}
		}
	}
	sets := make([]*strSet, n)
	for f := range c.str {
		used := false
		for i := range specs {
			sets[i] = &specs[i].match.str[f]
			used = used || sets[i].on
		}
		if used {
			var ok bool
			if c.str[f], ok = buildStr(in, sets); !ok {
				c.full = true
			}
		}
	}
	return c
}

// Decide returns the decision for in: the first rule (in file order)
// whose match matches and whose not does not, or the default. It does not
// allocate (unless in.Name has upper-case letters) and is safe for
// concurrent use.
func (p *Policy) Decide(in Input) Decision {
	c := &p.c
	if len(c.rules) == 0 {
		return p.def
	}
	n := normalize(&in)
	var sets [1 + numNum + numStr][]uint64
	k := 0
	if c.cidrOn {
		switch {
		case n.addr.Is4():
			sets[k] = c.v4.lookup(addrKey(n.addr))
		case n.addr.Is6():
			sets[k] = c.v6.lookup(addrKey(n.addr))
		default:
			sets[k] = c.unc
		}
		k++
	}
	for f := range c.num {
		if c.num[f].on {
			sets[k] = c.num[f].lookup(u128{0, n.num[f]})
			k++
		}
	}
	for f := range c.str {
		if c.str[f].on {
			sets[k] = c.str[f].lookup(n.str[f])
			k++
		}
	}
	if k == 0 {
		sets[0] = c.all
		k = 1
	}
	first := sets[0]
	for w := range c.words {
		m := first[w]
		for j := 1; j < k && m != 0; j++ {
			m &= sets[j][w]
		}
		for m != 0 {
			i := w<<6 | bits.TrailingZeros64(m)
			m &= m - 1
			r := &c.rules[i]
			if c.full {
				if !r.match.matches(&n) {
					continue
				}
			} else if !r.match.matchRest(&n) {
				continue
			}
			if r.hasNot && r.not.matches(&n) {
				continue
			}
			return r.dec
		}
	}
	return p.def
}

// decideSlow is the reference: a linear first-match over the rules.
func (p *Policy) decideSlow(in Input) Decision {
	n := normalize(&in)
	for i := range p.c.rules {
		r := &p.c.rules[i]
		if r.match.matches(&n) && !(r.hasNot && r.not.matches(&n)) {
			return r.dec
		}
	}
	return p.def
}
