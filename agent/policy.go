package agent

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/user"
	"strconv"
	"sync"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/identity"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/podinfo"
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
type decider struct {
	holder *policy.Holder
	pods   *podinfo.Cache // nil when Kubernetes is off
}

// Decide maps a connection to policy.Input and the verdict back.
func (d decider) Decide(_ context.Context, c *proxy.Conn) proxy.Decision {
	p := d.holder.Current()
	in := policy.Input{
		Dst:       c.Origin.Dst,
		Name:      c.Name,
		UID:       c.Origin.UID,
		GID:       c.Origin.GID,
		Comm:      c.Origin.Comm,
		Exe:       c.Identity.Exe,
		Cgroup:    c.Identity.CgroupPath,
		Container: c.Identity.ContainerID,
		Namespace: c.Identity.Namespace,
		Pod:       c.Identity.Pod,
	}
	podInput(d.pods, &in, c.Process.Workload)
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
	return proxy.Decision{Verdict: v, Rule: dec.Rule, L7: l7Rules(dec.L7)}
}

// UsesNames tells the proxy to learn a connection's destination name
// before deciding it, when the policy in force matches names.
func (d decider) UsesNames() bool { return d.holder.Current().UsesNames() }

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
// kernel holds what applyKernelPolicy reported, if anything.
func (a *Agent) recordPolicy(ctx context.Context, path string, p *policy.Policy, err error, kernel map[string]string) {
	attrs := map[string]string{"file": path}
	maps.Copy(attrs, kernel)
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
	if err == nil {
		a.notePolicy(p)
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
		var kernel map[string]string
		if err == nil {
			kernel = a.applyKernelPolicy()
		}
		a.recordPolicy(ctx, a.cfg.PolicyPath, next, err, kernel)
	})
}

// ReloadPolicy re-reads the policy file now (SIGHUP).
func (a *Agent) ReloadPolicy(ctx context.Context) { _, _ = a.reloadPolicy(ctx) }

// reloadPolicy is ReloadPolicy reporting whether there was a file to read
// and, if it was not applied, why.
func (a *Agent) reloadPolicy(ctx context.Context) (read bool, err error) {
	if a.cfg.PolicyPath == "" {
		return false, nil
	}
	if _, err := os.Stat(a.cfg.PolicyPath); err != nil && !a.cfg.PolicyExplicit {
		return false, nil
	}
	_, next, err := a.policy.Reload(a.cfg.PolicyPath)
	var kernel map[string]string
	if err == nil {
		kernel = a.applyKernelPolicy()
	}
	a.recordPolicy(ctx, a.cfg.PolicyPath, next, err, kernel)
	return true, err
}

// kernelGenerations is how many recent deny tables the agent remembers,
// to name the rule of a kernel deny reported after a reload.
const kernelGenerations = 16

// kernelPolicy remembers which policy each deny table in the kernel came
// from: a deny event names its table by generation and its rule by index.
type kernelPolicy struct {
	mu   sync.Mutex
	next uint32                    // generation of the next table
	gens map[uint32]*policy.Policy // the last kernelGenerations tables

	applyMu   sync.Mutex        // serializes applyKernelPolicy
	applied   *policy.Policy    // the policy whose table is in the kernel
	lastAttrs map[string]string // what applying it reported
}

// register returns the generation for a table compiled from p.
// Generations start at a random value, so that events left in a pinned
// ring buffer by an earlier agent are unlikely to name one of ours.
func (k *kernelPolicy) register(p *policy.Policy) uint32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gens == nil {
		var b [4]byte
		_, _ = rand.Read(b[:])
		k.next = binary.LittleEndian.Uint32(b[:])
		k.gens = make(map[uint32]*policy.Policy)
	}
	gen := k.next
	k.next++
	k.gens[gen] = p
	delete(k.gens, gen-kernelGenerations)
	return gen
}

// lookup returns the policy of generation gen, or nil.
func (k *kernelPolicy) lookup(gen uint32) *policy.Policy {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.gens[gen]
}

// denyTable converts the kernel part of a policy into the form the
// interceptor loads.
func denyTable(gen uint32, kt policy.KernelTable) intercept.DenyTable {
	t := intercept.DenyTable{Generation: gen, Entries: make([]intercept.DenyEntry, len(kt.Entries))}
	for i, e := range kt.Entries {
		segs := make([]intercept.DenySegment, len(e.Segments))
		for j, s := range e.Segments {
			rule := intercept.DenyRuleDefault
			if s.Rule >= 0 {
				rule = uint32(s.Rule)
			}
			segs[j] = intercept.DenySegment{PortLow: s.PortLow, PortHigh: s.PortHigh, UIDLow: s.UIDLow, UIDHigh: s.UIDHigh,
				GIDLow: s.GIDLow, GIDHigh: s.GIDHigh, Deny: s.Deny, Rule: rule, Errno: s.Errno}
		}
		t.Entries[i] = intercept.DenyEntry{Prefix: e.Prefix, Segments: segs}
	}
	return t
}

// applyKernelPolicy loads the kernel-enforceable denies of the policy in
// force (see docs/POLICY.md) and returns attributes for the policy.load
// entry. It reads the policy in force rather than taking one, so that two
// reloads racing (file watch and SIGHUP) always leave the kernel with the
// table of the last policy swapped in. If the table cannot be loaded, the
// kernel denies nothing and every connection is decided in userspace, so
// that no connection is refused by an old table the new policy would
// allow.
func (a *Agent) applyKernelPolicy() map[string]string {
	if a.icpt == nil {
		return nil
	}
	k := &a.kpol
	k.applyMu.Lock()
	defer k.applyMu.Unlock()
	p := a.policy.Current()
	if p == k.applied {
		return maps.Clone(k.lastAttrs)
	}
	k.applied, k.lastAttrs = p, nil
	kt := p.Kernel(intercept.MaxDenySegments, intercept.MaxDenyEntries)
	gen := a.kpol.register(p)
	attrs := map[string]string{"kernel_generation": strconv.FormatUint(uint64(gen), 10),
		"kernel_prefixes": strconv.Itoa(len(kt.Entries))}
	if kt.Truncated != "" {
		attrs["kernel_truncated"] = kt.Truncated
		a.log.Warn("policy: part of the kernel deny table is left to the proxy", "reason", kt.Truncated)
	}
	if err := a.icpt.SetDeny(denyTable(gen, kt)); err != nil {
		a.log.Error("cannot load the kernel deny table; every connection is decided by the proxy", "err", err)
		attrs["kernel_error"] = err.Error()
		attrs["kernel_prefixes"] = "0"
		if cerr := a.icpt.SetDeny(intercept.DenyTable{}); cerr != nil {
			a.log.Error("cannot clear the kernel deny table", "err", cerr)
		}
	}
	k.lastAttrs = attrs
	return maps.Clone(attrs)
}

// kernelDeny records a connection the kernel refused as a conn.deny entry
// naming the rule, from the policy whose table decided it.
func (a *Agent) kernelDeny(ctx context.Context, ev intercept.Event) {
	o := ev.Origin
	info := identity.FromPID(o.PID, "")
	attrs := map[string]string{"path": "kernel", "kernel_generation": strconv.FormatUint(uint64(ev.Generation), 10)}
	if name := policy.ErrnoName(ev.Errno); name != "" {
		attrs["errno"] = name
	} else {
		attrs["errno"] = strconv.Itoa(int(ev.Errno))
	}
	rule := int(ev.Rule)
	if ev.Rule == intercept.DenyRuleDefault {
		rule = -1
	}
	name := fmt.Sprintf("rules[%d]", rule)
	if p := a.kpol.lookup(ev.Generation); p != nil {
		attrs["policy_sha256"] = p.SHA256()
		if n := p.RuleName(rule); n != "" {
			name = n
		}
	} else if rule == -1 {
		name = policy.DefaultRule
	}
	e := auditlog.Entry{
		Type:     auditlog.ConnDeny,
		Identity: proxy.IdentityOf(o, info),
		Proto:    "tcp",
		Dst:      addrString(o.Dst),
		Decision: auditlog.Deny,
		Rule:     name,
		Attrs:    attrs,
	}
	a.netnsAttr(e.Attrs, o)
	a.kernelIdentity(&e.Identity, info, e.Attrs)
	if ev.Src.IsValid() {
		e.Src = ev.Src.String()
	}
	if _, err := a.audit.Append(ctx, e); err != nil && ctx.Err() == nil {
		a.log.Error("cannot record kernel deny", "rule", name, "err", err)
	}
}
