// Package eventquery answers filtered queries over an audit log directory:
// it matches entries against a Filter, keeps a per-segment index beside the
// log so selective queries skip most of the data, follows the log as it
// grows, and encodes results as a table, JSON lines or CSV. It only reads
// the log; the index is a cache that is rebuilt whenever it does not match
// its segment, and every entry it points to is re-read and re-matched.
// docs/QUERY.md describes filters, formats and the index.
package eventquery

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// field is an indexed entry attribute; its value is a string so one
// dictionary format serves all of them.
type field uint8

// Indexed fields. The order is part of the index file format.
const (
	fType field = iota
	fPID
	fUID
	fComm
	fExe
	fDstIP
	fDstPort
	fDecision
	fRule
	fPod
	fNamespace
	fContainer
	numFields
)

var fieldNames = [numFields]string{"type", "pid", "uid", "comm", "exe", "dst-ip", "dst-port", "decision", "rule", "pod", "namespace", "container"}

// fieldValue extracts f from e the same way for matching and indexing, so
// the index can never disagree with a scan.
func fieldValue(e *auditlog.Entry, f field) string {
	id := &e.Identity
	switch f {
	case fType:
		return string(e.Type)
	case fPID:
		if id.PID == 0 {
			return ""
		}
		return strconv.FormatUint(id.PID, 10)
	case fUID:
		if id.PID == 0 && id.UID == 0 {
			return "" // identity unknown
		}
		return strconv.FormatUint(id.UID, 10)
	case fComm:
		return id.Comm
	case fExe:
		return id.Exe
	case fDstIP:
		ip, _ := splitHostPort(e.Dst)
		return ip
	case fDstPort:
		_, port := splitHostPort(e.Dst)
		return port
	case fDecision:
		return string(e.Decision)
	case fRule:
		return e.Rule
	case fPod:
		return firstNonEmpty(id.Pod, e.Attrs["pod"])
	case fNamespace:
		return firstNonEmpty(id.Namespace, e.Attrs["namespace"])
	case fContainer:
		return firstNonEmpty(id.ContainerID, e.Attrs["container"])
	}
	return ""
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// splitHostPort splits "ip:port" or "[v6]:port"; a value without a port is
// all host.
func splitHostPort(s string) (host, port string) {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return s, ""
	}
	if a, err := netip.ParseAddr(h); err == nil {
		h = a.Unmap().String() // one spelling for IPv4-mapped IPv6
	}
	return h, p
}

// cond is one indexed condition: the entry's field value must satisfy pred.
type cond struct {
	f    field
	pred func(string) bool
}

// Filter selects entries. The zero Filter matches everything. Build one
// with ParseValues, which is shared by the CLI and the control API.
type Filter struct {
	Since, Until time.Time // inclusive, exclusive; zero is open
	FromSeq      uint64    // first seq (0 or 1: from the start)
	ToSeq        uint64    // last seq, inclusive (0: no bound)
	Limit        int       // at most this many results (0: all)
	Reverse      bool      // newest first
	Grep         string    // case-insensitive substring of any attribute value (statement, command, path, ...)

	conds []cond                       // indexed conditions
	extra []func(*auditlog.Entry) bool // conditions the index cannot answer
}

// Params lists the query parameters ParseValues understands, as documented
// in docs/API.md and mirrored by `vigil events` flags.
var Params = []string{"since", "until", "type", "pid", "uid", "comm", "exe", "dst", "port",
	"decision", "rule", "pod", "namespace", "container", "grep", "limit", "reverse", "from-seq", "follow"}

// ParseValues builds a Filter from query parameters (repeatable ones may be
// given several times). now anchors relative times. Unknown parameters are
// an error, so a typo never silently widens a query.
func ParseValues(q url.Values, now time.Time) (*Filter, error) {
	known := map[string]bool{}
	for _, p := range Params {
		known[p] = true
	}
	for k := range q {
		if !known[k] {
			return nil, fmt.Errorf("eventquery: unknown filter %q (known: %s)", k, strings.Join(Params, ", "))
		}
	}
	f := &Filter{}
	var err error
	if s := q.Get("since"); s != "" {
		if f.Since, err = ParseTime(s, now); err != nil {
			return nil, fmt.Errorf("eventquery: since: %w", err)
		}
	}
	if s := q.Get("until"); s != "" {
		if f.Until, err = ParseTime(s, now); err != nil {
			return nil, fmt.Errorf("eventquery: until: %w", err)
		}
		if isDay(s) {
			f.Until = f.Until.AddDate(0, 0, 1) // --until yesterday includes all of yesterday
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return nil, fmt.Errorf("eventquery: until (%s) must be after since (%s)", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339))
	}
	uints := func(name string) ([]uint64, error) {
		var out []uint64
		for _, s := range q[name] {
			for _, p := range splitList(s) {
				n, err := strconv.ParseUint(p, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("eventquery: %s: %q is not a number", name, p)
				}
				out = append(out, n)
			}
		}
		return out, nil
	}
	for _, name := range []string{"pid", "uid"} {
		ns, err := uints(name)
		if err != nil {
			return nil, err
		}
		if len(ns) > 0 {
			set := map[string]bool{}
			for _, n := range ns {
				set[strconv.FormatUint(n, 10)] = true
			}
			fl := fPID
			if name == "uid" {
				fl = fUID
			}
			f.conds = append(f.conds, cond{fl, func(v string) bool { return set[v] }})
		}
	}
	exact := func(name string, fl field) {
		var vals []string
		for _, s := range q[name] {
			vals = append(vals, splitList(s)...)
		}
		if len(vals) == 0 {
			return
		}
		set := map[string]bool{}
		for _, v := range vals {
			set[v] = true
		}
		f.conds = append(f.conds, cond{fl, func(v string) bool { return set[v] }})
	}
	exact("type", fType)
	exact("decision", fDecision)
	exact("rule", fRule)
	globs := []struct {
		name   string
		fl     field
		prefix bool
	}{{"comm", fComm, false}, {"exe", fExe, false}, {"pod", fPod, false}, {"namespace", fNamespace, false}, {"container", fContainer, true}}
	for _, g := range globs {
		pat := q.Get(g.name)
		if pat == "" {
			continue
		}
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("eventquery: %s: bad pattern %q: %w", g.name, pat, err)
		}
		prefix := g.prefix
		f.conds = append(f.conds, cond{g.fl, func(v string) bool {
			if v == "" {
				return false
			}
			if ok, _ := path.Match(pat, v); ok {
				return true
			}
			return prefix && strings.HasPrefix(v, pat) // container ids are often given shortened
		}})
	}
	if s := q.Get("dst"); s != "" {
		if err := f.parseDst(s); err != nil {
			return nil, err
		}
	}
	if s := q.Get("port"); s != "" {
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("eventquery: port: %q is not a port number", s)
		}
		ps := strconv.FormatUint(p, 10)
		f.conds = append(f.conds, cond{fDstPort, func(v string) bool { return v == ps }})
	}
	if s := q.Get("grep"); s != "" {
		f.Grep = s
		needle := strings.ToLower(s)
		f.extra = append(f.extra, func(e *auditlog.Entry) bool {
			for _, v := range e.Attrs {
				if strings.Contains(strings.ToLower(v), needle) {
					return true
				}
			}
			return false
		})
	}
	if s := q.Get("limit"); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 0 {
			return nil, fmt.Errorf("eventquery: limit: %q is not a count", s)
		}
	}
	if s := q.Get("from-seq"); s != "" {
		if f.FromSeq, err = strconv.ParseUint(s, 10, 64); err != nil {
			return nil, fmt.Errorf("eventquery: from-seq: %q is not a seq", s)
		}
	}
	if f.Reverse, err = parseBool(q.Get("reverse")); err != nil {
		return nil, fmt.Errorf("eventquery: reverse: %w", err)
	}
	return f, nil
}

// ParseFollow reports whether q asks to follow the log (follow=1).
func ParseFollow(q url.Values) (bool, error) { return parseBool(q.Get("follow")) }

func parseBool(s string) (bool, error) {
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%q is not 1/0/true/false", s)
	}
	return b, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseDst accepts a CIDR, an IP, "ip:port" or "host:port" (host matched
// against the TLS SNI or HTTP Host an L7 tap recorded).
func (f *Filter) parseDst(s string) error {
	if pfx, err := netip.ParsePrefix(s); err == nil {
		pfx = pfx.Masked()
		f.conds = append(f.conds, cond{fDstIP, func(v string) bool {
			a, err := netip.ParseAddr(v)
			return err == nil && pfx.Contains(a.Unmap())
		}})
		return nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		ip := a.Unmap().String()
		f.conds = append(f.conds, cond{fDstIP, func(v string) bool { return v == ip }})
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return fmt.Errorf("eventquery: dst: %q is not a CIDR, an IP, ip:port or host:port", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("eventquery: dst: %q has a bad port", s)
	}
	f.conds = append(f.conds, cond{fDstPort, func(v string) bool { return v == port }})
	if a, err := netip.ParseAddr(host); err == nil {
		ip := a.Unmap().String()
		f.conds = append(f.conds, cond{fDstIP, func(v string) bool { return v == ip }})
		return nil
	}
	host = strings.ToLower(host)
	f.extra = append(f.extra, func(e *auditlog.Entry) bool {
		return strings.EqualFold(e.Attrs["sni"], host) || strings.EqualFold(e.Attrs["host"], host)
	})
	return nil
}

// ParseTime parses an RFC 3339 time, a date (2006-01-02, local midnight),
// a duration before now ("90s", "30m", "1h", "2d"), "today" or "yesterday"
// (local midnight).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
	switch s {
	case "now":
		return now, nil
	case "today":
		return midnight, nil
	case "yesterday":
		return midnight.AddDate(0, 0, -1), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, now.Location()); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateTime, s, now.Location()); err == nil {
		return t, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if d, err := strconv.ParseUint(n, 10, 16); err == nil {
			return now.AddDate(0, 0, -int(d)), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2026-01-02T15:04:05Z), a date, a duration ago (30m, 1h, 2d), today or yesterday", s)
}

// isDay reports whether s names a whole day; it trims s as ParseTime does.
func isDay(s string) bool {
	s = strings.TrimSpace(s)
	if s == "today" || s == "yesterday" {
		return true
	}
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}

// Match reports whether e passes every condition of f.
func (f *Filter) Match(e *auditlog.Entry) bool {
	if !f.matchSeqTime(e.Seq, e.Time.UnixNano()) {
		return false
	}
	for _, c := range f.conds {
		if !c.pred(fieldValue(e, c.f)) {
			return false
		}
	}
	for _, x := range f.extra {
		if !x(e) {
			return false
		}
	}
	return true
}

func (f *Filter) matchSeqTime(seq uint64, t int64) bool {
	if seq < f.FromSeq || (f.ToSeq != 0 && seq > f.ToSeq) {
		return false
	}
	if !f.Since.IsZero() && t < f.Since.UnixNano() {
		return false
	}
	if !f.Until.IsZero() && t >= f.Until.UnixNano() {
		return false
	}
	return true
}

// timeBounds reports whether [minT, maxT] can hold a matching time.
func (f *Filter) timeOverlaps(minT, maxT int64) bool {
	if !f.Since.IsZero() && maxT < f.Since.UnixNano() {
		return false
	}
	if !f.Until.IsZero() && minT >= f.Until.UnixNano() {
		return false
	}
	return true
}

// selective reports whether the index can narrow this filter down.
func (f *Filter) selective() bool {
	return len(f.conds) > 0 || !f.Since.IsZero() || !f.Until.IsZero() || f.FromSeq > 1 || f.ToSeq != 0
}
