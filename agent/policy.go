package agent

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/policy"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
)

// DefaultPolicyPath is read when --policy is not given. With no file there,
// the agent allows and records everything (zero config).
const DefaultPolicyPath = "/etc/vigil/policy.yaml"

// policyWatchInterval is how often the policy file is checked for changes.
const policyWatchInterval = 2 * time.Second

// builtinPolicy is in force when no policy file exists: allow and record
// everything.
const builtinPolicy = "apiVersion: vigil.dev/v1\ndefault: allow\n"

// loadPolicy reads the configured policy. An explicit path must load; the
// default path may be absent, and then the built-in allow-all applies.
func loadPolicy(path string, explicit bool) (p *policy.Policy, fromFile bool, err error) {
	if path != "" {
		p, err = policy.Load(path)
		if err == nil {
			return p, true, nil
		}
		if explicit || !errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}
	}
	p, err = policy.Parse("built-in", []byte(builtinPolicy))
	return p, false, err
}

// decider adapts the current policy to the proxy's Decider.
type decider struct{ holder *policy.Holder }

// Decide maps a connection to policy.Input and the verdict back.
func (d decider) Decide(_ context.Context, c *proxy.Conn) proxy.Decision {
	p := d.holder.Current()
	in := policy.Input{
		Dst:       c.Origin.Dst,
		UID:       c.Origin.UID,
		GID:       c.Origin.GID,
		Comm:      c.Origin.Comm,
		Exe:       c.Identity.Exe,
		Cgroup:    c.Identity.CgroupPath,
		Container: c.Identity.ContainerID,
		Namespace: c.Identity.Namespace,
		Pod:       c.Identity.Pod,
	}
	if p.UsesUsers() { // user.LookupId reads /etc/passwd: not on every connection
		in.User = userName(c.Origin.UID)
	}
	dec := p.Decide(in)
	v := auditlog.Deny
	switch dec.Action {
	case policy.Allow:
		v = auditlog.Allow
	case policy.Audit:
		v = auditlog.Audit
	}
	return proxy.Decision{Verdict: v, Rule: dec.Rule}
}

// userName resolves a uid from the host's user database; "" when unknown.
func userName(uid uint32) string {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return ""
	}
	return u.Username
}

// recordPolicy appends a policy.load entry: which file, its hash and rule
// count when it applied, or why it did not.
func (a *Agent) recordPolicy(ctx context.Context, path string, p *policy.Policy, err error) {
	attrs := map[string]string{"file": path}
	switch {
	case err != nil:
		a.policyRejected.Add(1)
		attrs["result"] = "rejected"
		attrs["error"] = err.Error()
		a.log.Error("policy rejected; keeping the running one", "file", path, "err", err)
	case p == nil:
		attrs["result"] = "none"
		attrs["default"] = "allow"
	default:
		a.policyApplied.Add(1)
		attrs["result"] = "applied"
		attrs["sha256"] = p.SHA256()
		attrs["rules"] = strconv.Itoa(len(p.Rules()))
		attrs["default"] = p.Default().Action.String()
		a.log.Info("policy applied", "file", path, "sha256", p.SHA256(), "rules", len(p.Rules()))
	}
	if _, aerr := a.audit.Append(ctx, auditlog.Entry{Type: auditlog.PolicyLoad, Attrs: attrs}); aerr != nil {
		a.log.Error("cannot record policy.load", "err", aerr)
	}
}

// watchPolicy reloads the policy when its file changes.
func (a *Agent) watchPolicy(ctx context.Context) {
	if a.cfg.PolicyPath == "" {
		return
	}
	a.policy.Watch(ctx, a.cfg.PolicyPath, policyWatchInterval, func(_, next *policy.Policy, err error) {
		if err != nil && !a.cfg.PolicyExplicit && errors.Is(err, fs.ErrNotExist) {
			return // no file at the default path: the built-in policy stays
		}
		a.recordPolicy(ctx, a.cfg.PolicyPath, next, err)
	})
}

// ReloadPolicy re-reads the policy file now (SIGHUP).
func (a *Agent) ReloadPolicy(ctx context.Context) {
	if a.cfg.PolicyPath == "" {
		return
	}
	if _, err := os.Stat(a.cfg.PolicyPath); err != nil && !a.cfg.PolicyExplicit {
		return
	}
	_, next, err := a.policy.Reload(a.cfg.PolicyPath)
	a.recordPolicy(ctx, a.cfg.PolicyPath, next, err)
}
