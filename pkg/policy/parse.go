package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// APIVersion is the only apiVersion this package reads.
const APIVersion = "vigil.dev/v1"

// maxNodes bounds how many YAML nodes a policy may expand to, aliases
// included, so that a small file cannot make parsing take forever.
const maxNodes = 1 << 20

// The fields each mapping accepts.
var (
	topFields      = []string{"apiVersion", "default", "rules"}
	ruleFields     = []string{"name", "action", "errno", "match", "not", "l7"}
	matchFields    = []string{"dst", "workload"}
	dstFields      = []string{"cidr", "ports", "names"}
	workloadFields = []string{"uids", "gids", "users", "comm", "exe", "cgroup", "container", "namespaces", "pods", "labels", "serviceAccounts", "images"}
)

// ruleSpec is a rule as read from the file.
type ruleSpec struct {
	Rule
	field  string // "rules[2]"
	col    int
	match  matcher
	not    matcher
	hasNot bool
}

// document is a policy file as read, before it is compiled.
type document struct {
	apiVersion string
	def        Action
	rules      []ruleSpec
}

// parser reads a policy document from YAML nodes, collecting every
// problem instead of stopping at the first.
type parser struct {
	file                     string
	probs                    []Problem
	moreErrors, moreWarnings int // not in probs: there were too many
	budget                   int
}

// maxProblems is how many problems a file reports; the rest are counted.
const maxProblems = 200

func (p *parser) report(n *yaml.Node, warn bool, field, hint, format string, a ...any) {
	if len(p.probs) >= maxProblems {
		if !warn {
			p.moreErrors++
		} else {
			p.moreWarnings++
		}
		return
	}
	pr := Problem{File: p.file, Field: field, Msg: fmt.Sprintf(format, a...), Hint: hint, Warning: warn}
	if n != nil {
		pr.Line, pr.Col = n.Line, n.Column
	}
	p.probs = append(p.probs, pr)
}

func (p *parser) errorf(n *yaml.Node, field, hint, format string, a ...any) {
	p.report(n, false, field, hint, format, a...)
}

func (p *parser) warnf(n *yaml.Node, field, hint, format string, a ...any) {
	p.report(n, true, field, hint, format, a...)
}

// resolve follows aliases and charges the node budget. It returns nil
// when the budget is spent (and reports that once).
func (p *parser) resolve(n *yaml.Node) *yaml.Node {
	for depth := 0; n != nil && n.Kind == yaml.AliasNode; depth++ {
		if depth > 100 {
			return nil
		}
		n = n.Alias
	}
	if n == nil {
		return nil
	}
	p.budget--
	if p.budget == 0 {
		p.probs = append(p.probs, Problem{File: p.file, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf("the file expands to more than %d YAML nodes", maxNodes),
			Hint: "write the values out instead of repeating aliases"})
	}
	if p.budget <= 0 {
		return nil
	}
	return n
}

// describe names the kind of a node for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// mapping calls each for every known key of mapping n, in file order, and
// reports unknown and repeated keys.
func (p *parser) mapping(n *yaml.Node, field string, known []string, each func(key string, k, v *yaml.Node)) bool {
	if n = p.resolve(n); n == nil {
		return false
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, field, "it takes "+strings.Join(known, ", "), "want a mapping, got %s", describe(n))
		return false
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := p.resolve(n.Content[i])
		if k == nil {
			return false
		}
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, field, "keys are plain words like "+known[0], "want a field name, got %s", describe(k))
			continue
		}
		key := k.Value
		if line, dup := seen[key]; dup {
			p.errorf(k, join(field, key), "keep one of them", "set twice (first on line %d)", line)
			continue
		}
		seen[key] = k.Line
		if !slices.Contains(known, key) {
			p.errorf(k, field, suggest(key, known), "unknown field %q", key)
			continue
		}
		each(key, k, n.Content[i+1])
	}
	return true
}

// suggest is the hint for an unknown field.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	return "fields here: " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance between short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalar returns the value of a scalar node, reporting anything else.
func (p *parser) scalar(n *yaml.Node, field, what string) (string, bool) {
	if n = p.resolve(n); n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, field, "", "want %s, got %s", what, describe(n))
		return "", false
	}
	return n.Value, true
}

// list calls each for every element of sequence n, which must not be
// empty.
func (p *parser) list(n *yaml.Node, field, example string, each func(el *yaml.Node)) bool {
	if n = p.resolve(n); n == nil {
		return false
	}
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag != "!!null":
		p.errorf(n, field, fmt.Sprintf("write it as a list: [%q]", n.Value), "want a list, got %s", describe(n))
		return false
	case n.Kind != yaml.SequenceNode:
		p.errorf(n, field, "write it as a list, like "+example, "want a list, got %s", describe(n))
		return false
	case len(n.Content) == 0:
		p.errorf(n, field, "remove the field to match any value", "empty list matches nothing")
		return false
	}
	for _, el := range n.Content {
		if el = p.resolve(el); el == nil {
			return false
		}
		each(el)
	}
	return true
}

// yamlLine finds the line number in a yaml syntax error.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// parseDocument reads the YAML of a policy file.
func (p *parser) parseDocument(data []byte) *document {
	doc := &document{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := decode(dec, &root); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, "", "start from deploy/policy.example.yaml", "the file is empty")
		} else {
			p.yamlError(err)
		}
		return doc
	}
	var extra yaml.Node
	if err := decode(dec, &extra); err == nil {
		p.errorf(&extra, "", "keep one policy per file", "a second YAML document starts here")
	} else if !errors.Is(err, io.EOF) {
		p.yamlError(err)
	}
	top := &root
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		top = top.Content[0]
	}
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		p.errorf(top, "", "start from deploy/policy.example.yaml", "the file has no policy in it")
		return doc
	}
	var defNode *yaml.Node
	ok := p.mapping(top, "", topFields, func(key string, k, v *yaml.Node) {
		switch key {
		case "apiVersion":
			if s, ok := p.scalar(v, key, "a version"); ok && s != APIVersion {
				p.errorf(v, key, "write apiVersion: "+APIVersion, "unsupported apiVersion %q", s)
			} else if ok {
				doc.apiVersion = s
			}
		case "default":
			defNode = k
			doc.def, _ = p.action(v, key)
		case "rules":
			p.rules(v, doc)
		}
	})
	if !ok {
		return doc
	}
	if defNode == nil {
		p.errorf(top, "default", "add default: deny, allow or audit; it decides connections no rule matches", "missing")
	}
	if doc.apiVersion == "" && !p.has("apiVersion") {
		p.errorf(top, "apiVersion", "add apiVersion: "+APIVersion+" as the first line", "missing")
	}
	return doc
}

// errors counts the errors reported so far.
func (p *parser) errors() int {
	n := p.moreErrors
	for _, pr := range p.probs {
		if !pr.Warning {
			n++
		}
	}
	return n
}

// has reports whether a problem was already reported for field.
func (p *parser) has(field string) bool {
	return slices.ContainsFunc(p.probs, func(pr Problem) bool { return pr.Field == field })
}

// decode reads the next YAML document. A panic in the YAML library on
// malformed input is returned as an error: a bad file must never take down
// the agent that is reloading it.
func decode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

func (p *parser) yamlError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = err.Error()[len(m[0]):]
	}
	p.probs = append(p.probs, Problem{File: p.file, Line: line, Msg: "not valid YAML: " + msg,
		Hint: "check indentation and quoting around this line"})
}

// action reads allow, deny or audit.
func (p *parser) action(n *yaml.Node, field string) (Action, bool) {
	s, ok := p.scalar(n, field, "allow, deny or audit")
	if !ok {
		return 0, false
	}
	a, err := ParseAction(s)
	if err != nil {
		hint := "use allow, deny or audit"
		if a2, err2 := ParseAction(strings.ToLower(s)); err2 == nil {
			hint = "write " + a2.String()
		}
		p.errorf(n, field, hint, "unknown action %q", s)
		return 0, false
	}
	return a, true
}

// ruleName is what a rule name may contain: it is recorded in every audit
// entry the rule decides.
var ruleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)

func (p *parser) rules(n *yaml.Node, doc *document) {
	if n = p.resolve(n); n == nil {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "rules", "write a list of rules (rules: [] for none)", "want a list, got %s", describe(n))
		return
	}
	names := make(map[string]int) // name → index in doc.rules
	for i, rn := range n.Content {
		field := fmt.Sprintf("rules[%d]", i)
		r := ruleSpec{field: field}
		r.Index = i
		r.Line, r.col = rn.Line, rn.Column
		var nameNode, actionNode, errnoNode, l7Node *yaml.Node
		errorsBefore := p.errors()
		if !p.mapping(rn, field, ruleFields, func(key string, k, v *yaml.Node) {
			switch key {
			case "name":
				nameNode = v
				if s, ok := p.scalar(v, field+".name", "a name"); ok {
					if !ruleName.MatchString(s) {
						p.errorf(v, field+".name", "use up to 128 letters, digits and . _ : / -, starting with a letter or digit", "rule name %q is not allowed", s)
					} else if s == DefaultRule {
						p.errorf(v, field+".name", "pick another name", "%q is reserved for decisions no rule makes", s)
					}
					r.Name = s
				}
			case "action":
				actionNode = k
				r.Action, _ = p.action(v, field+".action")
			case "errno":
				errnoNode = v
				if s, ok := p.scalar(v, field+".errno", "an errno name"); ok {
					e, found := errnos[s]
					if !found {
						hint := errnoHint
						if _, ok := errnos[strings.ToUpper(s)]; ok {
							hint = "write " + strings.ToUpper(s)
						}
						p.errorf(v, field+".errno", hint, "unknown errno %q", s)
					}
					r.Errno = e
				}
			case "match":
				p.matcher(v, field+".match", &r.match)
			case "l7":
				l7Node = k
				r.L7 = p.guardrails(v, field+".l7")
			case "not":
				before := p.errors()
				r.hasNot = p.matcher(v, field+".not", &r.not)
				if r.hasNot && r.not.isEmpty() && p.errors() == before {
					p.errorf(v, field+".not", "remove it, or list what to exclude", "empty not would exclude every connection")
				}
			}
		}) {
			doc.rules = append(doc.rules, r)
			continue
		}
		switch {
		case nameNode == nil:
			p.errorf(rn, field, "add name: <unique-name>; it is recorded in the audit log", "rule has no name")
		case r.Name != "":
			if j, dup := names[r.Name]; dup {
				p.errorf(nameNode, field+".name", "rule names are recorded in the audit log and must be unique",
					"%q is already the name of rules[%d] (line %d)", r.Name, j, doc.rules[j].Line)
			} else {
				names[r.Name] = i
			}
		}
		if actionNode == nil {
			p.errorf(rn, field, "add action: allow, deny or audit", "rule has no action")
		}
		if errnoNode != nil && r.Action != Deny && r.Action != 0 {
			p.errorf(errnoNode, field+".errno", "remove errno, or make the action deny", "errno applies only to deny")
		}
		if l7Node != nil && r.Action == Deny {
			p.errorf(l7Node, field+".l7", "remove l7, or make the action allow or audit", "l7 applies only to connections the rule lets through")
		}
		if r.Action == Deny && r.Errno == 0 {
			r.Errno = syscall.ECONNREFUSED
		}
		if r.match.isEmpty() && !r.hasNot && p.errors() == errorsBefore {
			p.warnf(rn, field, "rules after it can never match; give it a match, or make it the default",
				"rule %q has no match: it matches every connection", r.Name)
		}
		if (r.Action == Allow || r.Action == Audit) && r.match.str[fNames].on && !r.match.cidr.on && p.errors() == errorsBefore {
			p.warnf(rn, field, "add the destination's cidr to the match, so the name is allowed only where it really lives",
				"rule %q lets a connection through by its name alone: the name is what the client sends (TLS SNI, HTTP Host), so any workload the rule covers can reach any address by sending it", r.Name)
		}
		r.match.seal()
		r.not.seal()
		doc.rules = append(doc.rules, r)
	}
}

// matcher reads a match: or not: block into m and reports whether it was
// there and readable.
func (p *parser) matcher(n *yaml.Node, field string, m *matcher) bool {
	return p.mapping(n, field, matchFields, func(key string, _, v *yaml.Node) {
		switch key {
		case "dst":
			p.mapping(v, field+".dst", dstFields, func(key string, _, v *yaml.Node) {
				f := field + ".dst." + key
				switch key {
				case "cidr":
					m.cidr.on = true
					p.list(v, f, `["10.0.0.0/8"]`, func(el *yaml.Node) {
						if s, ok := p.scalar(el, f, "a CIDR"); ok {
							if pfx, ok := p.cidr(el, f, s); ok {
								m.cidr.add(pfx)
							}
						}
					})
				case "ports":
					m.num[fPorts].on = true
					p.list(v, f, `["443", "8000-8080"]`, func(el *yaml.Node) {
						if s, ok := p.scalar(el, f, "a port or port range"); ok {
							if r, ok := p.numRange(el, f, s, 1, 65535, "port", `"5432" or "6000-6010"`); ok {
								m.num[fPorts].r = append(m.num[fPorts].r, r)
							}
						}
					})
				case "names":
					p.strings(v, f, fNames, &m.str[fNames], `["db.internal", "*.corp.example"]`)
					p.warnf(v, f, "names are known only from TLS SNI or HTTP Host; add a rule without names for the others", "%s", nameNote(field))
				}
			})
		case "workload":
			p.mapping(v, field+".workload", workloadFields, func(key string, _, v *yaml.Node) {
				f := field + ".workload." + key
				switch key {
				case "uids", "gids":
					i := fUIDs
					if key == "gids" {
						i = fGIDs
					}
					m.num[i].on = true
					p.list(v, f, "[1000]", func(el *yaml.Node) {
						if s, ok := p.scalar(el, f, "an id or id range"); ok {
							if r, ok := p.numRange(el, f, s, 0, 1<<32-1, "id", `1000 or "1000-1999"`); ok {
								m.num[i].r = append(m.num[i].r, r)
							}
						}
					})
				case "users":
					p.strings(v, f, fUsers, &m.str[fUsers], `["app"]`)
				case "comm":
					p.strings(v, f, fComm, &m.str[fComm], `["psql"]`)
				case "exe":
					p.strings(v, f, fExe, &m.str[fExe], `["/usr/bin/psql"]`)
				case "cgroup":
					p.strings(v, f, fCgroup, &m.str[fCgroup], `["/system.slice/*.service"]`)
				case "container":
					p.strings(v, f, fContainer, &m.str[fContainer], `["3f9a*"]`)
				case "namespaces":
					p.strings(v, f, fNamespaces, &m.str[fNamespaces], `["payments"]`)
				case "pods":
					p.strings(v, f, fPods, &m.str[fPods], `["api-*"]`)
				case "serviceAccounts":
					p.strings(v, f, fServiceAccounts, &m.str[fServiceAccounts], `["api"]`)
				case "images":
					p.strings(v, f, fImages, &m.str[fImages], `["registry.example/api:*"]`)
				case "labels":
					p.labels(v, f, m)
				}
			})
		}
	})
}

func nameNote(field string) string {
	if strings.HasSuffix(field, ".not") {
		return "this exclusion never applies to a connection whose destination name is unknown"
	}
	return "this rule never matches a connection whose destination name is unknown"
}

// cidr parses a CIDR or a single address.
func (p *parser) cidr(n *yaml.Node, field, s string) (netip.Prefix, bool) {
	addrPart, bitsPart, slash := strings.Cut(s, "/")
	a, aerr := netip.ParseAddr(addrPart)
	if aerr == nil && a.Zone() != "" {
		p.errorf(n, field, "remove the zone", "%q has an IPv6 zone", s)
		return netip.Prefix{}, false
	}
	if aerr == nil && a.Is4In6() {
		p.errorf(n, field, "write the IPv4 form: vigil compares IPv4-mapped IPv6 destinations as IPv4", "%q is an IPv4-mapped IPv6 address", s)
		return netip.Prefix{}, false
	}
	if !slash {
		if aerr != nil {
			p.errorf(n, field, "write it like 10.1.2.0/24, fd00::/64 or 10.1.2.3", "%q is not a CIDR or address", s)
			return netip.Prefix{}, false
		}
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	pfx, err := netip.ParsePrefix(s)
	if err != nil {
		hint := "write it like 10.1.2.0/24 or fd00::/64"
		if aerr == nil && a.Is4() {
			hint = "write it like 10.1.2.0/24"
		} else if aerr == nil {
			hint = "write it like fd00::/64"
		}
		if aerr == nil {
			if b, err := strconv.Atoi(bitsPart); err == nil && (b < 0 || b > a.BitLen()) {
				hint += fmt.Sprintf("; prefix lengths are 0 to %d", a.BitLen())
			}
		}
		p.errorf(n, field, hint, "%q is not a CIDR", s)
		return netip.Prefix{}, false
	}
	if m := pfx.Masked(); m != pfx {
		p.errorf(n, field, fmt.Sprintf("write %s for the network, or %s/%d for the one address", m, pfx.Addr(), pfx.Addr().BitLen()),
			"%q has bits set after the prefix length", s)
		return netip.Prefix{}, false
	}
	return pfx, true
}

// numRange parses "N" or "N-M" with lo ≤ N ≤ M ≤ hi.
func (p *parser) numRange(n *yaml.Node, field, s string, lo, hi uint64, what, example string) (rng, bool) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	switch {
	case err1 != nil || err2 != nil || a == "" || a[0] == '+' || b[0] == '+':
		p.errorf(n, field, "write it like "+example, "%q is not a valid %s or range", s, what)
		return rng{}, false
	case x < lo || x > hi || y < lo || y > hi:
		p.errorf(n, field, fmt.Sprintf("%ss are %d to %d", what, lo, hi), "%q is out of range", s)
		return rng{}, false
	case x > y:
		p.errorf(n, field, fmt.Sprintf("write \"%d-%d\"", y, x), "range %q runs backwards", s)
		return rng{}, false
	}
	return rng{x, y}, true
}

// strings reads a list of literal values and patterns for field i.
func (p *parser) strings(n *yaml.Node, field string, i int, s *strSet, example string) {
	s.on = true
	p.list(n, field, example, func(el *yaml.Node) {
		v, ok := p.scalar(el, field, "a string")
		if !ok {
			return
		}
		if v, ok = p.value(el, field, i, v); ok {
			s.add(v)
		}
	})
}

// value checks one string value of field i and returns it normalized.
func (p *parser) value(n *yaml.Node, field string, i int, v string) (string, bool) {
	if v == "" {
		p.errorf(n, field, "remove it", "empty value")
		return "", false
	}
	if !p.pattern(n, field, v) {
		return "", false
	}
	switch i {
	case fNames:
		v = normName(v)
		if _, err := netip.ParseAddr(v); err == nil {
			p.errorf(n, field, "put addresses under dst.cidr", "%q is an address, not a name", v)
			return "", false
		}
		if len(v) > 253 || strings.ContainsFunc(v, func(r rune) bool { return !strings.ContainsRune(dnsChars, r) }) {
			p.errorf(n, field, "names look like db.internal or *.corp.example", "%q is not a DNS name", v)
			return "", false
		}
	case fComm:
		if !isGlob(v) && len(v) > 15 {
			p.warnf(n, field, fmt.Sprintf("write %q", v[:15]), "%q never matches: the kernel keeps only the first 15 bytes of a task name", v)
		}
	case fExe, fCgroup:
		if v[0] != '/' && v[0] != '*' {
			p.warnf(n, field, fmt.Sprintf("write %q", "/"+v), "%q does not start with /: %s is an absolute path", v, strFieldNames[i])
		}
	}
	return v, true
}

// dnsChars are the characters a name pattern may contain.
const dnsChars = "abcdefghijklmnopqrstuvwxyz0123456789-_.*?[]^!\\"

// pattern checks a path.Match pattern.
func (p *parser) pattern(n *yaml.Node, field, v string) bool {
	if !isGlob(v) {
		return true
	}
	if _, err := path.Match(v, ""); err != nil {
		p.errorf(n, field, `patterns use *, ? and [a-z] as in Go's path.Match; quote a literal *, ?, [ or \ with \`, "%q is not a valid pattern", v)
		return false
	}
	if strings.Contains(v, "**") {
		p.warnf(n, field, "* never matches /; write one * per path segment", "%q: ** is not recursive here, it matches like *", v)
	}
	return true
}

// labels reads a mapping of label → value or pattern.
func (p *parser) labels(n *yaml.Node, field string, m *matcher) {
	r := p.resolve(n)
	if r == nil {
		return
	}
	if r.Kind != yaml.MappingNode {
		p.errorf(r, field, "write it like {app: api}", "want a mapping of label to value, got %s", describe(r))
		return
	}
	if len(r.Content) == 0 {
		p.errorf(r, field, "remove the field to match any labels", "no labels")
		return
	}
	seen := make(map[string]bool)
	for i := 0; i+1 < len(r.Content); i += 2 {
		k := p.resolve(r.Content[i])
		if k == nil {
			return
		}
		key, ok := p.scalar(k, field, "a label name")
		if !ok {
			continue
		}
		if key == "" {
			p.errorf(k, field, "remove it", "empty label name")
			continue
		}
		if seen[key] {
			p.errorf(k, field+"."+key, "keep one of them", "label set twice")
			continue
		}
		seen[key] = true
		v := p.resolve(r.Content[i+1])
		if v == nil {
			return
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			p.errorf(v, field+"."+key, key+`: "" matches an empty value`, "want a value, got %s", describe(v))
			continue
		}
		val := v.Value
		if !p.pattern(v, field+"."+key, val) {
			continue
		}
		lm := labelMatch{key: key, val: strSet{on: true, empty: true}}
		lm.val.add(val)
		m.labels = append(m.labels, lm)
	}
}
