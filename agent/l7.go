package agent

import (
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/detect"
	l7http "github.com/vigil-ebpf/vigil/pkg/l7/http"
	"github.com/vigil-ebpf/vigil/pkg/l7/mysql"
	"github.com/vigil-ebpf/vigil/pkg/l7/postgres"
	"github.com/vigil-ebpf/vigil/pkg/l7/redis"
	l7tls "github.com/vigil-ebpf/vigil/pkg/l7/tls"
	"github.com/vigil-ebpf/vigil/pkg/policy"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
)

// l7Config is the proxy's request inspection: the parsers the agent is
// built with, by the protocol names pkg/l7/detect returns. The proxy
// imports none of them; only connections whose rule has an l7 section
// (and, for destination names, those of a policy that matches names) are
// looked at.
func l7Config() proxy.L7Config {
	return proxy.L7Config{
		Parsers: map[string]proxy.NewParser{
			detect.TLS:      func(o l7.Options) l7.Parser { return l7tls.New(o) },
			detect.HTTP:     func(o l7.Options) l7.Parser { return l7http.New(o) },
			detect.Redis:    func(o l7.Options) l7.Parser { return redis.New(o) },
			detect.Postgres: func(o l7.Options) l7.Parser { return postgres.New(o) },
			detect.MySQL:    func(o l7.Options) l7.Parser { return mysql.New(o) },
		},
		Detect:      detect.Detect,
		ServerFirst: detect.ServerFirst,
	}
}

// l7Rules converts a rule's guardrails for the proxy; nil when the rule
// has no l7 section.
func l7Rules(g *policy.Guardrails) *proxy.L7Rules {
	if g == nil {
		return nil
	}
	return &proxy.L7Rules{Guard: g, RequireTLS: g.RequireTLS(), Redact: g.Redact(), Durable: g.AuditRequired()}
}
