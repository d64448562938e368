// Package policy reads vigil's connection policy, a YAML file of rules that
// match a connection's destination and workload and allow, deny or audit
// it, and decides connections against it.
//
// A Policy is immutable once parsed; Holder swaps whole policies atomically
// for hot reload. docs/POLICY.md describes the file format.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
)

// MaxFileSize is the largest policy file Load reads (a Kubernetes
// ConfigMap holds at most 1 MiB).
const MaxFileSize = 4 << 20

// DefaultRule is the rule name of decisions that no rule matched.
const DefaultRule = "default"

// Action is what a rule does with a connection it matches.
type Action uint8

// Actions. The zero Action is invalid.
const (
	Allow Action = iota + 1 // relay the connection
	Deny                    // refuse it with the rule's errno
	Audit                   // relay it, flagged in the audit log
)

var actionNames = [...]string{Allow: "allow", Deny: "deny", Audit: "audit"}

// String returns "allow", "deny" or "audit" ("invalid" otherwise).
func (a Action) String() string {
	if a == 0 || int(a) >= len(actionNames) {
		return "invalid"
	}
	return actionNames[a]
}

// MarshalText encodes a as its name.
func (a Action) MarshalText() ([]byte, error) {
	if a.String() == "invalid" {
		return nil, fmt.Errorf("policy: invalid action %d", uint8(a))
	}
	return []byte(a.String()), nil
}

// ParseAction reads "allow", "deny" or "audit".
func ParseAction(s string) (Action, error) {
	for a, name := range actionNames {
		if name != "" && name == s {
			return Action(a), nil
		}
	}
	return 0, fmt.Errorf("policy: unknown action %q", s)
}

// errnos are the errors a deny rule may make connect() fail with.
var errnos = map[string]syscall.Errno{
	"ECONNREFUSED": syscall.ECONNREFUSED,
	"EACCES":       syscall.EACCES,
	"EPERM":        syscall.EPERM,
	"ETIMEDOUT":    syscall.ETIMEDOUT,
	"ENETUNREACH":  syscall.ENETUNREACH,
	"EHOSTUNREACH": syscall.EHOSTUNREACH,
}

// errnoHint lists the names of errnos, for messages.
const errnoHint = "use ECONNREFUSED, EACCES, EPERM, ETIMEDOUT, ENETUNREACH or EHOSTUNREACH"

// ErrnoName returns the name of an errno a rule can set ("ECONNREFUSED"),
// or "" for any other value.
func ErrnoName(e syscall.Errno) string {
	for name, v := range errnos {
		if v == e {
			return name
		}
	}
	return ""
}

// Decision is the policy's verdict on one connection.
type Decision struct {
	Action Action
	Rule   string        // name of the rule that matched, or DefaultRule
	Errno  syscall.Errno // for Deny: how the client's connect() fails (ECONNREFUSED unless the rule says); 0 otherwise
	L7     *Guardrails   // the rule's l7 section: its connections' requests are parsed, recorded and checked; nil without one
}

// Input is what a decision is made on. Unknown strings are "", and a rule
// that constrains a field never matches an unknown value of it.
type Input struct {
	Dst       netip.AddrPort    // original destination; IPv4-mapped IPv6 is compared as IPv4
	Name      string            // destination DNS name (TLS SNI, HTTP Host); compared case-insensitively
	UID, GID  uint32            // of the connecting process
	User      string            // user name of UID
	Comm      string            // kernel task name (≤ 15 bytes)
	Exe       string            // absolute path of the executable
	Cgroup    string            // cgroup v2 path relative to the cgroup root, starting with /
	Container string            // container id
	Namespace string            // Kubernetes namespace of Pod
	Pod       string            // Kubernetes pod name
	Labels    map[string]string // Kubernetes pod labels

	ServiceAccount string // Kubernetes service account of Pod
	Image          string // image of the container, as the pod spec names it ("registry.example/api:1.4")
}

// ParseLabel splits "key=value" (value may be empty).
func ParseLabel(s string) (key, value string, err error) {
	key, value, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return "", "", fmt.Errorf("policy: label %q is not key=value", s)
	}
	return key, value, nil
}

// Rule describes one rule of a policy.
type Rule struct {
	Name   string
	Index  int // position in the file's rule list, 0-based
	Line   int // line of the rule in the file
	Action Action
	Errno  syscall.Errno // for Deny
	L7     *Guardrails   // the rule's l7 section, nil without one
}

// Policy is a parsed, validated and compiled policy file. It is immutable
// and safe for concurrent use.
type Policy struct {
	file     string
	sha      string
	src      []byte // the file's bytes, as hashed
	version  string
	def      Decision
	rules    []Rule
	warnings []Problem
	names    bool // some rule matches destination names
	users    bool // some rule matches user names
	c        compiled
}

// Load reads and parses the policy file at path. Problems in the file are
// reported as a *ValidationError naming path.
func Load(path string) (*Policy, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy: %s is larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// Parse parses a policy file's contents; name is the file name used in
// problems. It returns a *ValidationError listing every problem (warnings
// included) when the file has any error. Warnings alone do not fail it:
// see Warnings.
func Parse(name string, data []byte) (*Policy, error) {
	p := &parser{file: name, budget: maxNodes}
	doc := p.parseDocument(data)
	if !hasErrors(p.probs) {
		shadowed(p, doc.rules)
	}
	slices.SortStableFunc(p.probs, func(a, b Problem) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	if n := p.moreErrors + p.moreWarnings; n > 0 {
		p.probs = append(p.probs, Problem{File: name, Msg: fmt.Sprintf("%d more problems (%d errors) not shown", n, p.moreErrors),
			Hint: "fix the ones above first", Warning: p.moreErrors == 0})
	}
	if hasErrors(p.probs) {
		return nil, &ValidationError{File: name, Problems: p.probs}
	}
	sum := sha256.Sum256(data)
	pol := &Policy{
		file:     name,
		sha:      hex.EncodeToString(sum[:]),
		src:      slices.Clone(data),
		version:  doc.apiVersion,
		def:      Decision{Action: doc.def, Rule: DefaultRule},
		warnings: p.probs,
	}
	if doc.def == Deny {
		pol.def.Errno = syscall.ECONNREFUSED
	}
	for _, r := range doc.rules {
		pol.rules = append(pol.rules, r.Rule)
		pol.names = pol.names || r.match.str[fNames].on || r.not.str[fNames].on
		pol.users = pol.users || r.match.str[fUsers].on || r.not.str[fUsers].on
	}
	pol.c = compile(doc.rules)
	return pol, nil
}

func hasErrors(probs []Problem) bool {
	return slices.ContainsFunc(probs, func(p Problem) bool { return !p.Warning })
}

// File returns the file name the policy was loaded from.
func (p *Policy) File() string { return p.file }

// SHA256 returns the hex SHA-256 of the file's bytes, which identifies the
// policy in the audit log.
func (p *Policy) SHA256() string { return p.sha }

// Source returns the exact bytes the policy was parsed from (their
// SHA-256 is SHA256), so that what is in force can be shown as written.
func (p *Policy) Source() []byte { return slices.Clone(p.src) }

// Version returns the file's apiVersion (APIVersion).
func (p *Policy) Version() string { return p.version }

// Default returns the decision for connections no rule matches.
func (p *Policy) Default() Decision { return p.def }

// Rules returns the rules in file order.
func (p *Policy) Rules() []Rule { return slices.Clone(p.rules) }

// Rule returns the rule with the given name.
func (p *Policy) Rule(name string) (Rule, bool) {
	for _, r := range p.rules {
		if r.Name == name {
			return r, true
		}
	}
	return Rule{}, false
}

// UsesNames reports whether some rule matches destination names, so that
// a decision without Input.Name may differ from one with it.
func (p *Policy) UsesNames() bool { return p.names }

// UsesUsers reports whether some rule matches user names, so that callers
// resolve a uid to a name (a read of the user database) only when it can
// matter.
func (p *Policy) UsesUsers() bool { return p.users }

// Warnings returns what looked wrong in the file without being an error:
// unreachable rules, rules that match everything, name matchers.
func (p *Policy) Warnings() []Problem { return slices.Clone(p.warnings) }
