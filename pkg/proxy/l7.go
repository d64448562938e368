package proxy

import (
	"context"
	"net/netip"
	"strconv"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// NewParser makes the parser of one connection (l7.Parser); the agent maps
// protocol names to the constructors of pkg/l7/<proto>.
type NewParser func(l7.Options) l7.Parser

// Defaults for L7Config.
const (
	DefaultFirstBytesWait = 500 * time.Millisecond
	DefaultResponseWait   = 30 * time.Second
)

// L7Config turns on request-level inspection. The zero value inspects
// nothing: every connection is relayed with splice as before.
type L7Config struct {
	// Parsers maps a protocol name, as Detect returns it, to its parser.
	// A detected protocol without a parser is relayed untouched.
	Parsers map[string]NewParser
	// Detect names the protocol of a connection to port from the first
	// bytes p that direction d sent (pkg/l7/detect.Detect): done is false
	// while more bytes could change the answer; "" is unknown. Required
	// with Parsers.
	Detect func(port uint16, d l7.Dir, p []byte) (proto string, done bool)
	// ServerFirst reports ports whose protocol starts with the server
	// (MySQL): no client bytes are waited for before deciding such a
	// connection, since none come. nil means none.
	ServerFirst func(port uint16) bool
	// FirstBytesWait bounds how long a connection waits for its client's
	// first message before it is decided, when the policy matches
	// destination names; default DefaultFirstBytesWait.
	FirstBytesWait time.Duration
	// ResponseWait bounds how long a request's l7.request entry waits for
	// the response that completes it; default DefaultResponseWait.
	ResponseWait time.Duration
}

func (c *L7Config) enabled() bool { return len(c.Parsers) > 0 && c.Detect != nil }

// L7Rules say what the proxy does with the requests of one connection. A
// Decision with L7 set has the connection's protocol detected and, if a
// parser knows it, every request parsed, checked and recorded.
type L7Rules struct {
	Guard      Guard // nil: no request is denied
	RequireTLS bool  // refuse a session that is not encrypted
	Redact     bool  // mask literals and values before recording (l7.Options.Redact)
	// Durable makes each request's l7.request entry durable before the
	// request is forwarded; otherwise entries share later flushes.
	Durable bool
}

// strict reports whether the rules need every request of the connection
// seen: a guardrail that can deny, require_tls or audit: required. Such a
// connection is reset, not relayed blind, when its requests cannot be
// parsed; one that only audits falls back to relaying plain bytes.
func (r *L7Rules) strict() bool {
	if r == nil {
		return false
	}
	if r.RequireTLS || r.Durable {
		return true
	}
	if r.Guard == nil {
		return false
	}
	if d, ok := r.Guard.(denier); ok {
		return d.Denies()
	}
	return true
}

// denier is a Guard that can tell it denies nothing; a Guard that cannot
// tell counts as one that denies.
type denier interface {
	Denies() bool
}

// Guard checks one request against the guardrails of the rule that
// allowed its connection; *policy.Guardrails is one.
type Guard interface {
	Check(req *l7.Request) (deny bool, reason string)
}

// nameDecider is a Decider whose decisions can depend on Conn.Name; the
// proxy then learns the name, when the client reveals it, before deciding.
type nameDecider interface {
	UsesNames() bool
}

// l7conn is what the proxy knows about a connection's protocol.
type l7conn struct {
	rules *L7Rules
	// proto and dir are the detected protocol and the direction it was
	// recognised in, when detection ran before the decision (names).
	proto    string
	dir      l7.Dir
	detected bool
	port     uint16  // of the original destination, the detector's hint
	stats    l7stats // written by the relay, read once it returned
	// conn and rule are what the connection was decided with, kept when
	// the Decider uses names: an HTTP request whose Host names another
	// destination is decided again (l7relay.redecide).
	conn *Conn
	rule string
}

// learnName waits, within FirstBytesWait, for the client's first message
// and sets c.Name from its TLS SNI or HTTP Host, if the Decider uses
// names. Nothing is consumed from the client: bytes are peeked at. It
// reports whether the Decider uses names.
func (p *Proxy) learnName(s *session, c *Conn) (names bool) {
	cfg := &p.cfg.L7
	nd, ok := p.cfg.Decider.(nameDecider)
	if !cfg.enabled() || !ok || !nd.UsesNames() {
		return false
	}
	port := c.Origin.Dst.Port()
	if cfg.ServerFirst != nil && cfg.ServerFirst(port) {
		return true
	}
	wait := cfg.FirstBytesWait
	if wait <= 0 {
		wait = DefaultFirstBytesWait
	}
	_ = s.client.SetReadDeadline(time.Now().Add(wait))
	defer func() { _ = s.client.SetReadDeadline(time.Time{}) }()
	pk := newPeeker(s.client)
	proto := p.detect(pk, l7.FromClient, port)
	s.l7 = &l7conn{proto: proto, dir: l7.FromClient, detected: proto != ""}
	newParser := cfg.Parsers[proto]
	if (proto != "tls" && proto != "http") || newParser == nil {
		return true
	}
	// A parser of its own reads the peeked bytes; the relay's parser
	// starts from the first byte again.
	pr := newParser(l7.DefaultOptions())
	off := 0 // bytes of pk the parser consumed
	for {
		msgs, err := safeParse(pr, l7.FromClient, pk.bytes()[off:])
		if err != nil {
			return true
		}
		for _, m := range msgs {
			if m.Request != nil {
				c.Name = hostName(m.Request.Target)
				return true
			}
			off += m.Len
		}
		if err := pk.more(); err != nil {
			return true
		}
	}
}

// hostName turns a TLS server name or HTTP Host into a destination name:
// no port, no brackets, lower case; "" for an address.
func hostName(h string) string {
	if ap, err := netip.ParseAddrPort(h); err == nil && ap.IsValid() {
		return ""
	}
	h = l7.HostKey(h)
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	return h
}

// attachL7 keeps the decision's L7 rules for the relay and records the
// destination name in the conn.open entry. names: the Decider uses names,
// so the relay decides again when an HTTP request names another one.
func (p *Proxy) attachL7(s *session, c *Conn, d Decision, e *auditlog.Entry, names bool) {
	if c.Name != "" {
		e.Attrs = withAttr(e.Attrs, "name", c.Name)
	}
	if d.L7 == nil || !p.cfg.L7.enabled() {
		return
	}
	if s.l7 == nil {
		s.l7 = &l7conn{}
	}
	s.l7.rules = d.L7
	s.l7.port = c.Origin.Dst.Port()
	if names {
		s.l7.conn, s.l7.rule = c, d.Rule
	}
}

// relayFor relays s: with splice when no L7 rules apply, through the
// L7 relay otherwise.
func (p *Proxy) relayFor(ctx context.Context, s *session, open auditlog.Entry, openSeq uint64) (in, out int64) {
	if s.l7 == nil || s.l7.rules == nil {
		return p.relay(s)
	}
	return p.relayL7(ctx, s, open, openSeq)
}

// l7CloseAttrs adds what the L7 relay saw to the conn.close attributes.
func (s *session) l7CloseAttrs(attrs map[string]string) {
	if s.l7 == nil || s.l7.rules == nil {
		return
	}
	st := s.l7.stats
	if st.proto == "" {
		attrs["l7"] = "none"
		return
	}
	attrs["l7"] = st.proto
	attrs["l7_requests"] = strconv.Itoa(st.requests)
	if st.denied > 0 {
		attrs["l7_denied"] = strconv.Itoa(st.denied)
	}
	if st.stopped != "" {
		attrs["l7_stopped"] = st.stopped
	}
}
