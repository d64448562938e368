package policy

import (
	"net/netip"
	"path"
	"slices"
	"strings"
)

// String fields a rule can match, in the order of matcher.str and
// input.str.
const (
	fNames           = iota // dst.names
	fUsers                  // workload.users
	fComm                   // workload.comm
	fExe                    // workload.exe
	fCgroup                 // workload.cgroup
	fContainer              // workload.container
	fNamespaces             // workload.namespaces
	fPods                   // workload.pods
	fServiceAccounts        // workload.serviceAccounts
	fImages                 // workload.images
	numStr
)

// Numeric fields a rule can match, in the order of matcher.num and
// input.num.
const (
	fPorts = iota // dst.ports
	fUIDs         // workload.uids
	fGIDs         // workload.gids
	numNum
)

// strFieldNames are the YAML paths of the string fields, for messages.
var strFieldNames = [numStr]string{"dst.names", "workload.users", "workload.comm", "workload.exe", "workload.cgroup", "workload.container", "workload.namespaces", "workload.pods", "workload.serviceAccounts", "workload.images"}

// smallSet is how many literal values a strSet scans linearly before it
// uses a map.
const smallSet = 8

// strSet matches a string against literal values and path.Match patterns.
type strSet struct {
	on    bool                // the field is set; an unset field matches anything
	exact []string            // literal values, sorted, no duplicates
	set   map[string]struct{} // exact as a map, when it has more than smallSet values
	globs []glob              // patterns with *, ?, [ or \
	empty bool                // "" is a value like any other (labels); otherwise "" (unknown) never matches
}

func (s *strSet) add(v string) {
	if isGlob(v) {
		if !slices.ContainsFunc(s.globs, func(g glob) bool { return g.pat == v }) {
			s.globs = append(s.globs, newGlob(v))
		}
		return
	}
	if i, found := slices.BinarySearch(s.exact, v); !found {
		s.exact = slices.Insert(s.exact, i, v)
	}
}

// seal prepares s for matching after the last add.
func (s *strSet) seal() {
	if len(s.exact) > smallSet {
		s.set = make(map[string]struct{}, len(s.exact))
		for _, v := range s.exact {
			s.set[v] = struct{}{}
		}
	}
}

// hasExact reports whether v is one of the literal values.
func (s *strSet) hasExact(v string) bool {
	if s.set != nil {
		_, ok := s.set[v]
		return ok
	}
	for _, e := range s.exact {
		if e == v {
			return true
		}
	}
	return false
}

// match reports whether v is one of the values or matches one of the
// patterns. An unknown value ("") matches nothing, unless s.empty.
func (s *strSet) match(v string) bool {
	if v == "" && !s.empty {
		return false
	}
	if s.hasExact(v) {
		return true
	}
	for i := range s.globs {
		if s.globs[i].match(v) {
			return true
		}
	}
	return false
}

// hasGlob reports whether pattern pat is one of s's patterns.
func (s *strSet) hasGlob(pat string) bool {
	return slices.ContainsFunc(s.globs, func(g glob) bool { return g.pat == pat })
}

// glob is a path.Match pattern with its literal prefix and suffix, which
// rule most values out before path.Match runs.
type glob struct {
	pat    string
	prefix string // the pattern before its first *, ?, [ or \
	suffix string // the pattern after its last *, ?, [, ] or \
}

func newGlob(pat string) glob {
	i := strings.IndexAny(pat, `*?[\`)
	j := strings.LastIndexAny(pat, `*?[]\`)
	return glob{pat: pat, prefix: pat[:i], suffix: pat[j+1:]}
}

func (g *glob) match(v string) bool {
	if !strings.HasPrefix(v, g.prefix) || !strings.HasSuffix(v, g.suffix) {
		return false
	}
	ok, _ := path.Match(g.pat, v)
	return ok
}

// isGlob reports whether s uses path.Match syntax.
func isGlob(s string) bool { return strings.ContainsAny(s, `*?[\`) }

// rng is an inclusive range of numbers.
type rng struct{ lo, hi uint64 }

// rangeSet matches a number against sorted, merged, inclusive ranges.
type rangeSet struct {
	on bool // the field is set; an unset field matches anything
	r  []rng
}

// seal sorts and merges the ranges after the last append.
func (s *rangeSet) seal() {
	slices.SortFunc(s.r, func(a, b rng) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	out := s.r[:0]
	for _, x := range s.r {
		if n := len(out); n > 0 && (x.lo <= out[n-1].hi || x.lo-1 == out[n-1].hi) {
			out[n-1].hi = max(out[n-1].hi, x.hi)
			continue
		}
		out = append(out, x)
	}
	s.r = out
}

func (s *rangeSet) contains(v uint64) bool {
	lo, hi := 0, len(s.r)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch {
		case v < s.r[m].lo:
			hi = m
		case v > s.r[m].hi:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

// covers reports whether every number in x is in s.
func (s *rangeSet) covers(x rng) bool {
	for _, r := range s.r {
		if r.lo <= x.lo && x.hi <= r.hi {
			return true
		}
	}
	return false
}

// cidrSet matches an address against prefixes.
type cidrSet struct {
	on     bool           // the field is set; an unset field matches anything
	v4, v6 []netip.Prefix // masked, sorted, no duplicates
}

func (s *cidrSet) add(p netip.Prefix) {
	l := &s.v6
	if p.Addr().Is4() {
		l = &s.v4
	}
	if i, found := slices.BinarySearchFunc(*l, p, netip.Prefix.Compare); !found {
		*l = slices.Insert(*l, i, p)
	}
}

// contains reports whether a (unmapped, without zone) is in one of the
// prefixes. An invalid address is in none.
func (s *cidrSet) contains(a netip.Addr) bool {
	l := s.v6
	if a.Is4() {
		l = s.v4
	}
	for _, p := range l {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// covers reports whether every address in x is in one of the prefixes.
func (s *cidrSet) covers(x netip.Prefix) bool {
	l := s.v6
	if x.Addr().Is4() {
		l = s.v4
	}
	for _, p := range l {
		if p.Bits() <= x.Bits() && p.Contains(x.Addr()) {
			return true
		}
	}
	return false
}

// labelMatch requires a pod label to be present with a matching value.
type labelMatch struct {
	key string
	val strSet
}

// matcher is one match: or not: block. Fields are ANDed; the values of
// one field are ORed.
type matcher struct {
	cidr   cidrSet
	num    [numNum]rangeSet
	str    [numStr]strSet
	labels []labelMatch // sorted by key
}

// fields returns a bit for each field m sets (labels count as one).
func (m *matcher) fields() uint32 {
	var f uint32
	if m.cidr.on {
		f |= 1
	}
	for i := range m.num {
		if m.num[i].on {
			f |= 1 << (1 + i)
		}
	}
	for i := range m.str {
		if m.str[i].on {
			f |= 1 << (1 + numNum + i)
		}
	}
	if len(m.labels) > 0 {
		f |= 1 << (1 + numNum + numStr)
	}
	return f
}

// isEmpty reports whether m sets no field, and so matches everything.
func (m *matcher) isEmpty() bool {
	if m.cidr.on || len(m.labels) > 0 {
		return false
	}
	for i := range m.num {
		if m.num[i].on {
			return false
		}
	}
	for i := range m.str {
		if m.str[i].on {
			return false
		}
	}
	return true
}

func (m *matcher) seal() {
	for i := range m.num {
		m.num[i].seal()
	}
	for i := range m.str {
		m.str[i].seal()
	}
	for i := range m.labels {
		m.labels[i].val.seal()
	}
	slices.SortFunc(m.labels, func(a, b labelMatch) int { return strings.Compare(a.key, b.key) })
}

// matches is the reference definition of what a matcher matches; the
// compiled index must agree with it.
func (m *matcher) matches(in *input) bool {
	if m.cidr.on && !m.cidr.contains(in.addr) {
		return false
	}
	for i := range m.num {
		if m.num[i].on && !m.num[i].contains(in.num[i]) {
			return false
		}
	}
	for i := range m.str {
		if m.str[i].on && !m.str[i].match(in.str[i]) {
			return false
		}
	}
	return m.matchLabels(in)
}

// matchRest checks what the index does not decide exactly: patterns and
// labels.
func (m *matcher) matchRest(in *input) bool {
	for i := range m.str {
		if s := &m.str[i]; s.on && len(s.globs) > 0 && !s.match(in.str[i]) {
			return false
		}
	}
	return m.matchLabels(in)
}

func (m *matcher) matchLabels(in *input) bool {
	for i := range m.labels {
		v, ok := in.labels[m.labels[i].key]
		if !ok || !m.labels[i].val.match(v) {
			return false
		}
	}
	return true
}

// input is an Input normalized once per decision.
type input struct {
	addr   netip.Addr // unmapped, without zone; invalid when unknown
	num    [numNum]uint64
	str    [numStr]string
	labels map[string]string
}

func normalize(in *Input) input {
	n := input{
		addr:   in.Dst.Addr().Unmap().WithZone(""),
		num:    [numNum]uint64{uint64(in.Dst.Port()), uint64(in.UID), uint64(in.GID)},
		str:    [numStr]string{normName(in.Name), in.User, in.Comm, in.Exe, in.Cgroup, in.Container, in.Namespace, in.Pod, in.ServiceAccount, in.Image},
		labels: in.Labels,
	}
	return n
}

// normName lower-cases a DNS name and drops a final dot.
func normName(s string) string {
	s = strings.TrimSuffix(s, ".")
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}
