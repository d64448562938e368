package intercept

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
)

// Defaults used by Open for zero Config fields.
//
// DefaultProxyPort is below 1024 on purpose (and unassigned by IANA):
// binding it needs CAP_NET_BIND_SERVICE. In fail-closed mode the pinned
// programs keep redirecting to it while the agent is down; on an
// unprivileged port any local user could bind it then and receive every
// redirected connection.
const (
	DefaultProxyPort  uint16 = 1015
	DefaultBypassMark uint32 = 0x7669
)

// Config configures Open.
type Config struct {
	// CgroupPath is the cgroup v2 directory to attach to; "" means the
	// cgroup2 mount root (the whole host).
	CgroupPath string
	// ProxyPort is the loopback port connections are redirected to (default
	// DefaultProxyPort). Connections to this port on a loopback or
	// unspecified address (the proxy itself) are never redirected; on any
	// other address it is an ordinary destination. Keep it below 1024 in
	// fail-closed mode (see DefaultProxyPort).
	ProxyPort uint16
	// Capture is the set of redirected destinations (default
	// DefaultCapture: all TCP except loopback). See CaptureRule.
	Capture []CaptureRule
	// BypassMark is the SO_MARK of sockets that are never redirected: the
	// agent's own dials (default DefaultBypassMark). Any process with
	// CAP_NET_ADMIN can set it; when ExemptPID is set, a marked TCP connect
	// from any other process still goes direct but is reported
	// (EventMarkBypass), and the mark no longer hides UDP reports.
	BypassMark uint32
	// ExemptPID is the process (thread-group id, as the initial pid
	// namespace numbers it) whose connections are never redirected nor
	// reported: the agent itself, so that its own connections (proxy dials,
	// KMS calls) never loop into its proxy. 0 means none.
	ExemptPID uint32
	// PinPath is "" for fail-open (nothing pinned: the programs detach when
	// the agent exits) or a directory on a bpffs for fail-closed (links and
	// maps are pinned there and keep redirecting after the agent exits). An
	// Open with existing pins adopts them: pinned links are updated to the
	// new programs and pinned maps are reused.
	PinPath string
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Debug includes the full verifier log in load errors.
	Debug bool

	// originsMax, when non-zero, makes the origins map a plain hash of that
	// size instead of an LRU hash, so that a full map is observable (tests).
	originsMax uint32
}

// CaptureRule selects redirected destinations: an address prefix and an
// inclusive port range. PortLow == PortHigh == 0 means every port.
//
// A destination is captured when any rule covers it, with one exception:
// loopback and unspecified destinations (127.0.0.0/8, 0.0.0.0, ::1, ::) are
// captured only by rules whose prefix lies inside them, so 0.0.0.0/0 does not
// capture 127.0.0.1 but 127.0.0.1/32:8080 does. IPv4-mapped IPv6
// destinations are matched as IPv4: 10.0.0.0/8 captures ::ffff:10.1.2.3.
type CaptureRule struct {
	Prefix   netip.Prefix
	PortLow  uint16
	PortHigh uint16
}

// String formats r the way ParseCapture reads it.
func (r CaptureRule) String() string {
	switch {
	case r.PortLow == 0 && r.PortHigh == 0:
		return r.Prefix.String()
	case r.PortLow == r.PortHigh:
		return fmt.Sprintf("%s:%d", r.Prefix, r.PortLow)
	default:
		return fmt.Sprintf("%s:%d-%d", r.Prefix, r.PortLow, r.PortHigh)
	}
}

// DefaultCapture returns the default capture set: every IPv4 and IPv6
// destination on every port, which by the loopback rule of CaptureRule
// excludes loopback.
func DefaultCapture() []CaptureRule {
	return []CaptureRule{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0")},
		{Prefix: netip.MustParsePrefix("::/0")},
	}
}

// ParseCapture parses a comma-separated list of capture rules, each
// PREFIX[:PORT[-PORT]], for example "10.0.0.0/8:5432,0.0.0.0/0:1-65535,::/0".
// IPv6 prefixes need no brackets: the port follows the prefix length.
func ParseCapture(s string) ([]CaptureRule, error) {
	var rules []CaptureRule
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		r, err := parseRule(item)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("intercept: capture list %q has no rules: want PREFIX[:PORT[-PORT]],... e.g. 10.0.0.0/8:5432,::/0", s)
	}
	return rules, nil
}

func parseRule(item string) (CaptureRule, error) {
	bad := func(format string, args ...any) (CaptureRule, error) {
		return CaptureRule{}, fmt.Errorf("intercept: capture rule %q: %s", item, fmt.Sprintf(format, args...))
	}
	slash := strings.IndexByte(item, '/')
	if slash < 0 {
		return bad("missing prefix length: want PREFIX[:PORT[-PORT]] such as 10.0.0.0/8:5432 or fd00::/8")
	}
	prefixText, ports, hasPorts := item, "", false
	if colon := strings.IndexByte(item[slash:], ':'); colon >= 0 {
		prefixText, ports, hasPorts = item[:slash+colon], item[slash+colon+1:], true
	}
	prefix, err := netip.ParsePrefix(prefixText)
	if err != nil {
		return bad("bad prefix %q: want an address/length such as 10.0.0.0/8 or fd00::/8", prefixText)
	}
	r := CaptureRule{Prefix: normalizePrefix(prefix)}
	if !hasPorts {
		return r, nil
	}
	lo, hi, isRange := strings.Cut(ports, "-")
	if !isRange {
		hi = lo
	}
	low, err := parsePort(lo)
	if err != nil {
		return bad("%v", err)
	}
	high, err := parsePort(hi)
	if err != nil {
		return bad("%v", err)
	}
	if low > high {
		return bad("port range %d-%d is backwards", low, high)
	}
	r.PortLow, r.PortHigh = low, high
	return r, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad port %q: want 1-65535", s)
	}
	return uint16(n), nil
}

// normalizePrefix masks p and turns an IPv4-mapped IPv6 prefix
// (::ffff:a.b.c.d/96+n) into the IPv4 prefix the kernel matches it as.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.ProxyPort == 0 {
		c.ProxyPort = DefaultProxyPort
	}
	if c.BypassMark == 0 {
		c.BypassMark = DefaultBypassMark
	}
	if len(c.Capture) == 0 {
		c.Capture = DefaultCapture()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
