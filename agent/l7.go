package agent

import (
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/policy"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
)

// l7Config is the proxy's request inspection: the parsers the agent is
// built with, by the protocol names the detector returns. Only
// connections whose rule has an l7 section are inspected.
func l7Config() proxy.L7Config {
	return proxy.L7Config{
		Parsers: map[string]proxy.NewParser{},
		Detect:  portDetect,
	}
}

// portDetect names a protocol by its well-known port alone.
func portDetect(port uint16, _ l7.Dir, _ []byte) (string, bool) {
	switch port {
	case 6379:
		return "redis", true
	case 5432:
		return "postgres", true
	case 3306:
		return "mysql", true
	case 80:
		return "http", true
	case 443:
		return "tls", true
	}
	return "", true
}

// l7Rules converts a rule's guardrails for the proxy; nil when the rule
// has no l7 section.
func l7Rules(g *policy.Guardrails) *proxy.L7Rules {
	if g == nil {
		return nil
	}
	return &proxy.L7Rules{Guard: g, RequireTLS: g.RequireTLS(), Redact: g.Redact(), Durable: g.AuditRequired()}
}
