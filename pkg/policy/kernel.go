package policy

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"syscall"
)

// KernelTable is the part of a policy that can be decided from what the
// kernel knows at connect() time — destination address and port, uid and
// gid — and that denies: a connection the table denies is denied by
// Decide for every workload, name and label it could have, with the same
// rule and errno. Everything else the table leaves to Decide.
//
// For a destination, the entry with the longest prefix containing it
// applies; its segments are tried in order and the first whose ports, uid
// and gid contain the connection decides. No matching segment, or a
// matching one that does not deny, means "decide in userspace".
type KernelTable struct {
	Entries []KernelEntry // sorted by prefix
	// Truncated is why the table is smaller than the policy allows, or ""
	// when it is complete. A smaller table is still exact: what it leaves
	// out is decided in userspace.
	Truncated string
}

// KernelEntry is one prefix of a KernelTable.
type KernelEntry struct {
	Prefix   netip.Prefix
	Segments []KernelSegment
}

// KernelSegment is a set of connections (inclusive ranges) and what is
// decided for them.
type KernelSegment struct {
	PortLow, PortHigh uint16
	UIDLow, UIDHigh   uint32
	GIDLow, GIDHigh   uint32
	// Deny: the connections are denied by Rule. Otherwise their decision
	// is left to userspace, and later segments do not apply to them.
	Deny  bool
	Rule  int           // for Deny: index in Rules, or -1 for the default; 0 otherwise
	Errno syscall.Errno // for Deny
}

// RuleName returns the name of rule index i as KernelSegment.Rule gives
// it: DefaultRule for -1, "" when out of range.
func (p *Policy) RuleName(i int) string {
	switch {
	case i == -1:
		return DefaultRule
	case i < 0 || i >= len(p.rules):
		return ""
	}
	return p.rules[i].Name
}

// l4Only reports whether a rule's match depends on nothing but what the
// kernel knows at connect(): destination address and port, uid and gid.
// A rule with not: is never, so that an exclusion by any field is left to
// userspace.
func l4Only(r *crule) bool {
	if r.hasNot || len(r.match.labels) > 0 {
		return false
	}
	for i := range r.match.str {
		if r.match.str[i].on {
			return false
		}
	}
	return true
}

// ranges returns s's ranges, or [0, all] when s is not set.
func ranges(s *rangeSet, all uint64) []rng {
	if !s.on {
		return []rng{{0, all}}
	}
	return s.r
}

// Kernel compiles the kernel-enforceable part of p, with at most
// maxSegments segments per entry and maxEntries entries (0: no limit).
//
// For each entry, the segments are the rules that can match a destination
// in it, in file order, then the default: a rule whose match depends only
// on address, port, uid and gid is certain to match the connections of
// its segments, and denies them or leaves them to userspace by its action;
// any other rule only may match, so its segments leave the decision to
// userspace. The first segment that matches a connection is therefore
// either the rule Decide picks for every workload, or a rule that may or
// may not match — in which case userspace decides. A table cut down to
// the limits drops segments from the end and entries altogether, both of
// which only leave more to userspace.
func (p *Policy) Kernel(maxSegments, maxEntries int) KernelTable {
	var t KernelTable
	prefixes := map[netip.Prefix]bool{
		netip.PrefixFrom(netip.IPv4Unspecified(), 0): true,
		netip.PrefixFrom(netip.IPv6Unspecified(), 0): true,
	}
	for i := range p.c.rules {
		m := &p.c.rules[i].match
		for _, l := range [2][]netip.Prefix{m.cidr.v4, m.cidr.v6} {
			for _, pfx := range l {
				prefixes[pfx] = true
			}
		}
	}
	// Entries like their parent are left out below, but each prefix costs
	// a pass over the rules: give up early rather than spend that work on
	// a table that may not fit.
	if maxEntries > 0 && len(prefixes) > maxEntries {
		return KernelTable{Truncated: fmt.Sprintf("the policy names %d prefixes, more than %d", len(prefixes), maxEntries)}
	}
	// Shorter prefixes first, so that an entry's parent is done before it.
	order := slices.SortedFunc(func(yield func(netip.Prefix) bool) {
		for pfx := range prefixes {
			if !yield(pfx) {
				return
			}
		}
	}, func(a, b netip.Prefix) int {
		if c := cmp.Compare(a.Bits(), b.Bits()); c != 0 {
			return c
		}
		return a.Addr().Compare(b.Addr())
	})
	effective := make(map[netip.Prefix][]KernelSegment, len(order))
	for _, e := range order {
		segs, cut := p.kernelSegments(e, maxSegments)
		if cut && t.Truncated == "" {
			t.Truncated = fmt.Sprintf("%s needs more than %d segments", e, maxSegments)
		}
		var parent []KernelSegment
		if par, ok := parentOf(e, effective); ok {
			parent = effective[par]
		}
		effective[e] = segs
		if slices.Equal(segs, parent) {
			continue // the parent's entry already says the same
		}
		t.Entries = append(t.Entries, KernelEntry{Prefix: e, Segments: segs})
	}
	if maxEntries > 0 && len(t.Entries) > maxEntries {
		return KernelTable{Truncated: fmt.Sprintf("the table needs %d prefixes, more than %d", len(t.Entries), maxEntries)}
	}
	slices.SortFunc(t.Entries, func(a, b KernelEntry) int { return a.Prefix.Compare(b.Prefix) })
	return t
}

// parentOf returns the longest prefix in done that strictly contains e.
func parentOf(e netip.Prefix, done map[netip.Prefix][]KernelSegment) (netip.Prefix, bool) {
	for bits := e.Bits() - 1; bits >= 0; bits-- {
		par := netip.PrefixFrom(e.Addr(), bits).Masked()
		if _, ok := done[par]; ok {
			return par, true
		}
	}
	return netip.Prefix{}, false
}

// kernelSegments returns the segments of entry e: for every rule that can
// match a destination whose longest entry is e, in order, then the
// default. (Rule prefixes nest or are disjoint, so a rule prefix that
// contains such a destination contains all of e.) cut reports that
// maxSegments cut the list short.
func (p *Policy) kernelSegments(e netip.Prefix, maxSegments int) (segs []KernelSegment, cut bool) {
	full := func(s KernelSegment) bool {
		return s.PortLow == 0 && s.PortHigh == math.MaxUint16 && s.UIDLow == 0 && s.UIDHigh == math.MaxUint32 &&
			s.GIDLow == 0 && s.GIDHigh == math.MaxUint32
	}
	add := func(s KernelSegment) bool {
		if maxSegments > 0 && len(segs) == maxSegments {
			cut = true
			return false
		}
		segs = append(segs, s)
		return !full(s) // a full segment catches everything after it
	}
	more := true
	for i := range p.c.rules {
		r := &p.c.rules[i]
		if r.match.cidr.on && !r.match.cidr.covers(e) {
			continue
		}
		deny := r.dec.Action == Deny && l4Only(r)
		for _, pr := range ranges(&r.match.num[fPorts], math.MaxUint16) {
			for _, ur := range ranges(&r.match.num[fUIDs], math.MaxUint32) {
				for _, gr := range ranges(&r.match.num[fGIDs], math.MaxUint32) {
					s := KernelSegment{PortLow: uint16(pr.lo), PortHigh: uint16(pr.hi),
						UIDLow: uint32(ur.lo), UIDHigh: uint32(ur.hi), GIDLow: uint32(gr.lo), GIDHigh: uint32(gr.hi), Rule: i}
					if deny {
						s.Deny, s.Errno = true, r.dec.Errno
					}
					if more = add(s); !more {
						break
					}
				}
				if !more {
					break
				}
			}
			if !more {
				break
			}
		}
		if !more {
			break
		}
	}
	if more && p.def.Action == Deny {
		add(KernelSegment{PortHigh: math.MaxUint16, UIDHigh: math.MaxUint32, GIDHigh: math.MaxUint32,
			Deny: true, Rule: -1, Errno: p.def.Errno})
	}
	// What maxSegments cut is left to userspace: the table is still exact.
	// Trailing segments that leave the decision to userspace say nothing
	// a missing segment does not.
	for len(segs) > 0 && !segs[len(segs)-1].Deny {
		segs = segs[:len(segs)-1]
	}
	for i := range segs {
		if !segs[i].Deny {
			segs[i].Rule = 0 // which rule leaves it to userspace does not matter
		}
	}
	return segs, cut
}
