package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// String formats s compactly for tests: ranges that cover everything are
// left out.
func (s KernelSegment) String() string {
	var parts []string
	if s.PortLow != 0 || s.PortHigh != math.MaxUint16 {
		parts = append(parts, fmt.Sprintf("port %d-%d", s.PortLow, s.PortHigh))
	}
	if s.UIDLow != 0 || s.UIDHigh != math.MaxUint32 {
		parts = append(parts, fmt.Sprintf("uid %d-%d", s.UIDLow, s.UIDHigh))
	}
	if s.GIDLow != 0 || s.GIDHigh != math.MaxUint32 {
		parts = append(parts, fmt.Sprintf("gid %d-%d", s.GIDLow, s.GIDHigh))
	}
	if s.Deny {
		parts = append(parts, fmt.Sprintf("deny %d %s", s.Rule, ErrnoName(s.Errno)))
	} else {
		parts = append(parts, "pass")
	}
	return strings.Join(parts, " ")
}

func (t KernelTable) lines() []string {
	var out []string
	for _, e := range t.Entries {
		segs := make([]string, len(e.Segments))
		for i, s := range e.Segments {
			segs[i] = s.String()
		}
		out = append(out, e.Prefix.String()+": "+strings.Join(segs, "; "))
	}
	return out
}

// decide is what the kernel does with a connection: the segment that
// decides it, or nil when userspace does.
func (t KernelTable) decide(dst netip.AddrPort, uid, gid uint32) *KernelSegment {
	a := dst.Addr().Unmap()
	best := -1
	for i, e := range t.Entries {
		if e.Prefix.Addr().BitLen() == a.BitLen() && e.Prefix.Contains(a) && (best < 0 || e.Prefix.Bits() > t.Entries[best].Prefix.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	for i, s := range t.Entries[best].Segments {
		p := dst.Port()
		if p < s.PortLow || p > s.PortHigh || uid < s.UIDLow || uid > s.UIDHigh || gid < s.GIDLow || gid > s.GIDHigh {
			continue
		}
		if !s.Deny {
			return nil
		}
		return &t.Entries[best].Segments[i]
	}
	return nil
}

func TestKernel(t *testing.T) {
	tests := []struct {
		name  string
		def   string
		rules string
		want  []string
	}{
		{"allow all", "allow", "[]", nil},
		{"deny all", "deny", "[]", []string{"0.0.0.0/0: deny -1 ECONNREFUSED", "::/0: deny -1 ECONNREFUSED"}},
		{"deny by cidr", "allow", `[{name: a, action: deny, errno: EACCES, match: {dst: {cidr: ["10.0.0.0/8", "fd00::/8"]}}}]`,
			[]string{"10.0.0.0/8: deny 0 EACCES", "fd00::/8: deny 0 EACCES"}},
		{"deny by cidr, ports, uids and gids", "allow",
			`[{name: a, action: deny, match: {dst: {cidr: ["10.1.2.3"], ports: ["80", "8000-8080"]}, workload: {uids: ["1000-1999"], gids: [5]}}}]`,
			[]string{"10.1.2.3/32: port 80-80 uid 1000-1999 gid 5-5 deny 0 ECONNREFUSED; port 8000-8080 uid 1000-1999 gid 5-5 deny 0 ECONNREFUSED"}},
		{"deny by ports everywhere", "allow", `[{name: a, action: deny, errno: ENETUNREACH, match: {dst: {ports: ["25"]}}}]`,
			[]string{"0.0.0.0/0: port 25-25 deny 0 ENETUNREACH", "::/0: port 25-25 deny 0 ENETUNREACH"}},
		{"deny needing comm stays in userspace", "allow", `[{name: a, action: deny, match: {dst: {cidr: ["10.0.0.0/8"]}, workload: {comm: [curl]}}}]`, nil},
		{"deny needing a name stays in userspace", "allow", `[{name: a, action: deny, match: {dst: {names: [db.internal]}}}]`, nil},
		{"deny with not stays in userspace", "allow", `[{name: a, action: deny, match: {dst: {cidr: ["10.0.0.0/8"]}}, not: {workload: {uids: [0]}}}]`, nil},
		{"earlier allow carves out", "allow", `[{name: a, action: allow, match: {dst: {cidr: ["10.1.2.3"]}}}, {name: b, action: deny, match: {dst: {cidr: ["10.0.0.0/8"]}}}]`,
			[]string{"10.0.0.0/8: deny 1 ECONNREFUSED", "10.1.2.3/32: "}},
		{"earlier allow by port carves out", "allow", `[{name: a, action: allow, match: {dst: {ports: ["443"]}}}, {name: b, action: deny, match: {dst: {cidr: ["10.0.0.0/8"]}}}]`,
			[]string{"10.0.0.0/8: port 443-443 pass; deny 1 ECONNREFUSED"}},
		{"earlier rule that may match carves out", "allow", `[{name: a, action: allow, match: {dst: {cidr: ["10.1.0.0/16"]}, workload: {exe: [/usr/bin/psql]}}}, {name: b, action: deny, match: {dst: {cidr: ["10.0.0.0/8"]}}}]`,
			[]string{"10.0.0.0/8: deny 1 ECONNREFUSED", "10.1.0.0/16: "}},
		{"earlier deny that may match does not help", "allow", `[{name: a, action: deny, match: {workload: {comm: [curl]}}}, {name: b, action: deny, match: {dst: {cidr: ["10.0.0.0/8"]}}}]`, nil},
		{"later rules do not matter", "allow", `[{name: a, action: deny, match: {dst: {cidr: ["10.0.0.0/8"]}}}, {name: b, action: allow, match: {dst: {cidr: ["10.1.2.3"]}}}]`,
			[]string{"10.0.0.0/8: deny 0 ECONNREFUSED"}},
		{"audit is not a deny", "allow", `[{name: a, action: audit, match: {dst: {cidr: ["10.0.0.0/8"]}}}]`, nil},
		{"default deny outside allowed prefixes", "deny", `[{name: a, action: allow, match: {dst: {cidr: ["10.0.0.0/8"]}}}]`,
			[]string{"0.0.0.0/0: deny -1 ECONNREFUSED", "10.0.0.0/8: ", "::/0: deny -1 ECONNREFUSED"}},
		{"default deny behind a workload rule stays in userspace", "deny", `[{name: a, action: allow, match: {workload: {comm: [curl]}}}]`, nil},
		{"default deny for other uids", "deny", `[{name: a, action: allow, match: {workload: {uids: [0]}}}]`,
			[]string{"0.0.0.0/0: uid 0-0 pass; deny -1 ECONNREFUSED", "::/0: uid 0-0 pass; deny -1 ECONNREFUSED"}},
		{"an entry like its parent is left out", "allow", `[{name: a, action: deny, match: {dst: {cidr: ["10.0.0.0/8"]}}}, {name: b, action: deny, match: {dst: {cidr: ["10.1.0.0/16"]}}}]`,
			[]string{"10.0.0.0/8: deny 0 ECONNREFUSED"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fmt.Sprintf("apiVersion: vigil.dev/v1\ndefault: %s\nrules: %s\n", tt.def, tt.rules)
			p, err := Parse("p.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			kt := p.Kernel(16, 4096)
			if got := kt.lines(); !slices.Equal(got, tt.want) {
				t.Errorf("Kernel() =\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			if kt.Truncated != "" {
				t.Errorf("Truncated = %q; want complete", kt.Truncated)
			}
		})
	}
}

func TestKernelLimits(t *testing.T) {
	var rules []string
	for i := range 40 {
		rules = append(rules, fmt.Sprintf(`{name: r%d, action: deny, match: {dst: {cidr: ["10.%d.0.0/16"], ports: ["%d"]}}}`, i, i, 1000+i))
	}
	rules = append(rules, `{name: all, action: deny, match: {dst: {ports: ["1-999"]}}}`)
	src := "apiVersion: vigil.dev/v1\ndefault: allow\nrules: [" + strings.Join(rules, ", ") + "]\n"
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if kt := p.Kernel(1, 0); kt.Truncated == "" || len(kt.Entries) != 42 {
		t.Errorf("Kernel(1, 0): %d entries, Truncated %q; want 42 entries, truncated", len(kt.Entries), kt.Truncated)
	}
	if kt := p.Kernel(16, 10); kt.Truncated == "" || len(kt.Entries) != 0 {
		t.Errorf("Kernel(16, 10): %d entries, Truncated %q; want none, truncated", len(kt.Entries), kt.Truncated)
	}
}

// kernelPolicy returns a random policy in which most rules match on
// address, port, uid and gid only, so that many denies are
// kernel-enforceable, mixed with rules on anything.
func (g *gen) kernelPolicy(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: vigil.dev/v1\ndefault: %s\nrules:\n", []string{"allow", "deny", "audit"}[g.r.IntN(3)])
	for i := range n {
		r := map[string]any{"name": fmt.Sprintf("r%d", i), "action": []string{"allow", "deny", "deny", "audit"}[g.r.IntN(4)]}
		if r["action"] == "deny" && g.r.IntN(3) == 0 {
			r["errno"] = []string{"EACCES", "EPERM", "ENETUNREACH", "EHOSTUNREACH", "ETIMEDOUT"}[g.r.IntN(5)]
		}
		if g.r.IntN(10) < 7 {
			dst, wl := map[string]any{}, map[string]any{}
			for _, k := range []string{"cidr", "ports", "uids", "gids"} {
				if g.r.IntN(2) == 0 {
					continue
				}
				switch k {
				case "cidr":
					// Prefixes that share their first address with a wider one, too.
					dst[k] = g.pick(append(slices.Clone(pools[k]), "10.0.0.0/16", "10.1.2.0/25", "fd00::/16"), 3)
				case "ports":
					dst[k] = g.pick(pools[k], 3)
				default:
					wl[k] = g.pick(pools[k], 2)
				}
			}
			m := map[string]any{}
			if len(dst) > 0 {
				m["dst"] = dst
			}
			if len(wl) > 0 {
				m["workload"] = wl
			}
			if len(m) > 0 {
				r["match"] = m
			}
		} else if m := g.matcher(0.3); len(m) > 0 {
			r["match"] = m
		}
		if g.r.IntN(10) == 0 {
			if m := g.matcher(0.2); len(m) > 0 {
				r["not"] = m
			}
		}
		js, err := json.Marshal(r)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(&b, "  - %s\n", js)
	}
	return b.String()
}

// TestKernelAgreesWithDecide cross-checks compiled kernel tables against
// Decide on random policies and connections: whatever a table denies,
// Decide denies with the same rule and errno, whatever the rest of the
// connection (workload, name, labels) is. Limits that cut the table down
// must keep it exact.
func TestKernelAgreesWithDecide(t *testing.T) {
	limits := []struct{ segs, entries int }{{16, 4096}, {3, 4096}, {1, 4096}, {16, 8}}
	kernelDenies, decideDenies := 0, 0
	for seed := range uint64(400) {
		g := newGen(seed + 5000)
		src := g.kernelPolicy(1 + int(seed%25))
		if seed%4 == 3 {
			src = g.policy(1 + int(seed%40))
		}
		p, err := Parse("p.yaml", []byte(src))
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, src)
		}
		for _, lim := range limits {
			kt := p.Kernel(lim.segs, lim.entries)
			for _, e := range kt.Entries {
				if len(e.Segments) > lim.segs {
					t.Fatalf("seed %d: %s has %d segments; limit %d", seed, e.Prefix, len(e.Segments), lim.segs)
				}
			}
			if len(kt.Entries) > lim.entries {
				t.Fatalf("seed %d: %d entries; limit %d", seed, len(kt.Entries), lim.entries)
			}
			for range 300 {
				in := g.input()
				if !in.Dst.IsValid() {
					continue // the kernel always knows the destination
				}
				d := p.Decide(in)
				s := kt.decide(in.Dst, in.UID, in.GID)
				if lim.segs == 16 && lim.entries == 4096 && d.Action == Deny {
					decideDenies++
					if s != nil {
						kernelDenies++
					}
				}
				if s == nil {
					continue
				}
				if d.Action != Deny || d.Rule != p.RuleName(s.Rule) || d.Errno != s.Errno {
					t.Fatalf("seed %d, limits %+v: kernel denies %+v by %s (%s), Decide = %+v\npolicy:\n%s\ntable:\n  %s",
						seed, lim, in, p.RuleName(s.Rule), s, d, src, strings.Join(kt.lines(), "\n  "))
				}
			}
		}
	}
	t.Logf("%d of %d denies were made in the kernel", kernelDenies, decideDenies)
	if kernelDenies == 0 {
		t.Error("the kernel table never denied: the test checks nothing")
	}
}

func TestRuleName(t *testing.T) {
	p, err := Parse("p.yaml", []byte("apiVersion: vigil.dev/v1\ndefault: deny\nrules: [{name: a, action: allow}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range map[int]string{-1: DefaultRule, 0: "a", 1: "", -2: ""} {
		if got := p.RuleName(i); got != want {
			t.Errorf("RuleName(%d) = %q; want %q", i, got, want)
		}
	}
}
