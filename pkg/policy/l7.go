package policy

import (
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// The fields of a rule's l7 section.
var (
	l7Fields      = []string{"sql", "redis", "http", "require_tls", "redact", "audit"}
	l7SQLFields   = []string{"deny_kinds", "deny_delete_without_where", "deny_update_without_where"}
	l7RedisFields = []string{"deny_commands"}
	l7HTTPFields  = []string{"deny"}
	l7HTTPDeny    = []string{"methods", "paths"}
)

// Guardrails are the request-level rules of one policy rule (its l7
// section): which requests the proxy refuses on the connections the rule
// allows, and how it records them. A rule with an l7 section has its
// connections' requests parsed and recorded as l7.request entries; one
// without has them relayed untouched. Guardrails are immutable.
type Guardrails struct {
	sqlKinds      []string // upper case, sorted
	sqlDelNoWhere bool
	sqlUpdNoWhere bool
	redisCommands []string // "FLUSHALL" or "CONFIG SET", upper case, sorted
	http          []httpDeny
	requireTLS    bool
	redact        bool
	durable       bool
}

// httpDeny denies HTTP requests whose method and path both match (a field
// left out matches any value).
type httpDeny struct {
	methods []string
	paths   []string // path.Match patterns; a final * also matches deeper paths
}

// RequireTLS reports whether a plaintext session is refused.
func (g *Guardrails) RequireTLS() bool { return g.requireTLS }

// Redact reports whether literals are masked before requests are recorded
// (the default).
func (g *Guardrails) Redact() bool { return g.redact }

// AuditRequired reports whether each request's entry must be durable
// before the request is forwarded (audit: required).
func (g *Guardrails) AuditRequired() bool { return g.durable }

// Denies reports whether the guardrails deny any request at all (an SQL,
// Redis or HTTP deny list); an l7 section without one only audits.
func (g *Guardrails) Denies() bool {
	return len(g.sqlKinds) > 0 || g.sqlDelNoWhere || g.sqlUpdNoWhere || len(g.redisCommands) > 0 || len(g.http) > 0
}

// Check reports whether req is denied by the guardrails and, if so, why
// (a short phrase naming the guardrail, recorded in the audit entry and
// sent to the client in the protocol's error).
func (g *Guardrails) Check(req *l7.Request) (deny bool, reason string) {
	switch req.Protocol {
	case "postgres", "mysql":
		return g.checkSQL(req)
	case "redis":
		return g.checkRedis(req)
	case "http":
		return g.checkHTTP(req)
	}
	return false, ""
}

func (g *Guardrails) checkSQL(req *l7.Request) (bool, string) {
	kinds := []string{req.Kind}
	if all := req.Attrs["sql_kinds"]; all != "" {
		kinds = strings.Split(all, ",")
	}
	for _, k := range kinds {
		if _, found := slices.BinarySearch(g.sqlKinds, strings.ToUpper(k)); found {
			return true, "SQL " + strings.ToUpper(k) + " is not allowed"
		}
	}
	if req.Attrs["sql_where"] == "false" {
		for _, k := range kinds {
			switch {
			case g.sqlDelNoWhere && strings.EqualFold(k, "DELETE"):
				return true, "DELETE without WHERE is not allowed"
			case g.sqlUpdNoWhere && strings.EqualFold(k, "UPDATE"):
				return true, "UPDATE without WHERE is not allowed"
			}
		}
	}
	return false, ""
}

func (g *Guardrails) checkRedis(req *l7.Request) (bool, string) {
	name := strings.ToUpper(req.Kind)
	if _, found := slices.BinarySearch(g.redisCommands, name); found {
		return true, "command " + name + " is not allowed"
	}
	if sub := req.Attrs["subcommand"]; sub != "" {
		full := name + " " + strings.ToUpper(sub)
		if _, found := slices.BinarySearch(g.redisCommands, full); found {
			return true, "command " + full + " is not allowed"
		}
	}
	return false, ""
}

func (g *Guardrails) checkHTTP(req *l7.Request) (bool, string) {
	if len(g.http) == 0 {
		return false, ""
	}
	p := HTTPPath(req.Attrs["path"])
	for _, d := range g.http {
		if len(d.methods) > 0 && !slices.Contains(d.methods, req.Kind) {
			continue
		}
		if len(d.paths) > 0 && !slices.ContainsFunc(d.paths, func(pat string) bool { return matchPath(pat, p) }) {
			continue
		}
		return true, req.Kind + " " + p + " is not allowed"
	}
	return false, ""
}

// HTTPPath is the form of a request path that guardrails compare: the
// query cut off, percent-encoding decoded, and dot segments and repeated
// slashes removed, so that /a/../admin, //admin and /%61dmin are all
// /admin. A path that does not decode is compared as written.
func HTTPPath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	p, _, _ = strings.Cut(p, "#")
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	trailing := strings.HasSuffix(p, "/") && len(p) > 1
	p = path.Clean(p)
	if trailing && p != "/" {
		p += "/"
	}
	return p
}

// matchPath matches a cleaned path against a pattern: path.Match, except
// that a pattern ending in * also matches everything below it, so
// /admin/* covers /admin/users/1 as well as /admin/users.
func matchPath(pat, p string) bool {
	if ok, _ := path.Match(pat, p); ok {
		return true
	}
	if !strings.HasSuffix(pat, "*") {
		return false
	}
	// Try each prefix of p that ends before a slash.
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 {
			if ok, _ := path.Match(pat, p[:i]); ok {
				return true
			}
		}
	}
	return false
}

// sqlWord and redisCommand are what deny_kinds and deny_commands accept.
var (
	sqlWord      = regexp.MustCompile(`^[A-Za-z]+$`)
	redisCommand = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.|-]*( [A-Za-z][A-Za-z0-9_.|-]*)?$`)
	httpMethod   = regexp.MustCompile(`^[A-Z]+$`)
)

// guardrails reads a rule's l7 section.
func (p *parser) guardrails(n *yaml.Node, field string) *Guardrails {
	g := &Guardrails{redact: true}
	p.mapping(n, field, l7Fields, func(key string, _, v *yaml.Node) {
		f := field + "." + key
		switch key {
		case "sql":
			p.nonEmpty(v, f, "deny_kinds: [DROP]")
			p.mapping(v, f, l7SQLFields, func(key string, _, v *yaml.Node) {
				f := f + "." + key
				switch key {
				case "deny_kinds":
					p.list(v, f, "[DROP, TRUNCATE]", func(el *yaml.Node) {
						if s, ok := p.scalar(el, f, "a statement kind"); ok {
							if !sqlWord.MatchString(s) {
								p.errorf(el, f, "statement kinds are the first keyword: DROP, TRUNCATE, DELETE", "%q is not a statement kind", s)
								return
							}
							g.sqlKinds = insertSorted(g.sqlKinds, strings.ToUpper(s))
						}
					})
				case "deny_delete_without_where":
					g.sqlDelNoWhere, _ = p.boolean(v, f)
				case "deny_update_without_where":
					g.sqlUpdNoWhere, _ = p.boolean(v, f)
				}
			})
		case "redis":
			p.nonEmpty(v, f, "deny_commands: [FLUSHALL]")
			p.mapping(v, f, l7RedisFields, func(key string, _, v *yaml.Node) {
				f := f + "." + key
				p.list(v, f, "[FLUSHALL, FLUSHDB, CONFIG]", func(el *yaml.Node) {
					if s, ok := p.scalar(el, f, "a command"); ok {
						if !redisCommand.MatchString(s) {
							p.errorf(el, f, `write a command name, or a command and subcommand: FLUSHALL, "CONFIG SET"`, "%q is not a Redis command", s)
							return
						}
						g.redisCommands = insertSorted(g.redisCommands, strings.ToUpper(s))
					}
				})
			})
		case "http":
			p.nonEmpty(v, f, `deny: [{methods: [DELETE], paths: ["/admin/*"]}]`)
			p.mapping(v, f, l7HTTPFields, func(key string, _, v *yaml.Node) {
				f := f + "." + key
				i := 0
				p.list(v, f, `[{methods: [DELETE], paths: ["/admin/*"]}]`, func(el *yaml.Node) {
					g.http = append(g.http, p.httpDeny(el, f+"["+itoa(i)+"]"))
					i++
				})
			})
		case "require_tls":
			g.requireTLS, _ = p.boolean(v, f)
		case "redact":
			g.redact, _ = p.boolean(v, f)
		case "audit":
			if s, ok := p.scalar(v, f, "required or async"); ok {
				switch s {
				case "required":
					g.durable = true
				case "async":
				default:
					p.errorf(v, f, "use required (each request's entry is durable before the request is forwarded) or async (the default)", "unknown audit mode %q", s)
				}
			}
		}
	})
	return g
}

// httpDeny reads one entry of http.deny.
func (p *parser) httpDeny(n *yaml.Node, field string) httpDeny {
	var d httpDeny
	p.nonEmpty(n, field, `methods: [DELETE] or paths: ["/admin/*"]`)
	p.mapping(n, field, l7HTTPDeny, func(key string, _, v *yaml.Node) {
		f := field + "." + key
		switch key {
		case "methods":
			p.list(v, f, "[DELETE, PUT]", func(el *yaml.Node) {
				if s, ok := p.scalar(el, f, "a method"); ok {
					switch {
					case httpMethod.MatchString(strings.ToUpper(s)) && !httpMethod.MatchString(s):
						p.errorf(el, f, "write "+strings.ToUpper(s)+": methods are case-sensitive", "%q is not an HTTP method", s)
					case !httpMethod.MatchString(s):
						p.errorf(el, f, "methods are upper-case words: GET, DELETE", "%q is not an HTTP method", s)
					default:
						d.methods = append(d.methods, s)
					}
				}
			})
		case "paths":
			p.list(v, f, `["/admin/*"]`, func(el *yaml.Node) {
				s, ok := p.scalar(el, f, "a path")
				if !ok {
					return
				}
				if s == "" || s[0] != '/' {
					p.errorf(el, f, "paths start with /: "+"/"+s, "%q is not a path", s)
					return
				}
				if _, err := path.Match(s, ""); err != nil {
					p.errorf(el, f, `patterns use *, ? and [a-z] as in Go's path.Match`, "%q is not a valid pattern", s)
					return
				}
				d.paths = append(d.paths, s)
			})
		}
	})
	return d
}

// nonEmpty reports an empty mapping (which would deny nothing).
func (p *parser) nonEmpty(n *yaml.Node, field, example string) {
	if r := p.resolve(n); r != nil && r.Kind == yaml.MappingNode && len(r.Content) == 0 {
		p.errorf(r, field, "remove it, or say what to deny, like "+example, "empty: it denies nothing")
	}
}

// boolean reads true or false.
func (p *parser) boolean(n *yaml.Node, field string) (bool, bool) {
	s, ok := p.scalar(n, field, "true or false")
	if !ok {
		return false, false
	}
	switch s {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	p.errorf(n, field, "write true or false", "want true or false, got %q", s)
	return false, false
}

func insertSorted(l []string, s string) []string {
	if i, found := slices.BinarySearch(l, s); !found {
		l = slices.Insert(l, i, s)
	}
	return l
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
