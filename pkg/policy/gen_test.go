package policy

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
)

// gen makes random policies and inputs from small pools of values, so
// that rules overlap and inputs often match.
type gen struct{ r *rand.Rand }

func newGen(seed uint64) *gen { return &gen{rand.New(rand.NewPCG(seed, 7))} }

var pools = map[string][]any{
	"cidr":            {"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "192.168.0.0/16", "0.0.0.0/0", "fd00::/8", "fd00:1::/32", "::/0", "fd00:1::5"},
	"ports":           {"80", "443", "1-1024", "5432", "6000-6010", "65535", "1", "80-443"},
	"names":           {"db.internal", "*.corp.example", "a.corp.example", "x?.io", "[ab].io"},
	"uids":            {0, 1000, "1000-1999", 65534, "0-4294967295"},
	"gids":            {0, 100, "100-200"},
	"users":           {"app", "root", "a*"},
	"comm":            {"psql", "curl", "p*", "c?rl"},
	"exe":             {"/usr/bin/psql", "/usr/bin/*", "/bin/?url"},
	"cgroup":          {"/system.slice/*.service", "/system.slice/a.service", "/kubepods/x"},
	"container":       {"3f9a*", "3f9abc", "deadbeef"},
	"namespaces":      {"payments", "default", "pay*"},
	"pods":            {"api-1", "api-*", "web-0"},
	"serviceAccounts": {"default", "api", "ci-*"},
	"images":          {"busybox", "registry.example/api:*", "nginx:1.27"},
}

var inputPools = struct {
	addrs                                          []string
	ports, ids                                     []uint32
	names, users, comms, exes, cgroups, containers []string
	namespaces, pods                               []string
	serviceAccounts, images                        []string
}{
	addrs:           []string{"10.1.2.3", "10.1.2.4", "10.1.9.9", "10.200.0.1", "192.168.1.1", "8.8.8.8", "fd00::1", "fd00:1::5", "fd00:1::6", "2001:db8::1", "::ffff:10.1.2.3", "0.0.0.0", ""},
	ports:           []uint32{0, 1, 22, 80, 443, 444, 1024, 1025, 5432, 6000, 6005, 6011, 65535},
	ids:             []uint32{0, 1, 100, 150, 1000, 1500, 2000, 65534, 4294967295},
	names:           []string{"", "db.internal", "DB.internal.", "a.corp.example", "b.corp.example", "x1.io", "a.io", "c.io"},
	users:           []string{"", "app", "root", "alice", "bob"},
	comms:           []string{"", "psql", "curl", "cxrl", "python3"},
	exes:            []string{"", "/usr/bin/psql", "/usr/bin/curl", "/bin/curl", "/usr/local/bin/x"},
	cgroups:         []string{"", "/system.slice/a.service", "/system.slice/b.service", "/kubepods/x", "/kubepods/y/z"},
	containers:      []string{"", "3f9abc", "3f9a00", "deadbeef", "cafe"},
	namespaces:      []string{"", "payments", "payroll", "default", "kube-system"},
	pods:            []string{"", "api-1", "api-2", "web-0", "db-0"},
	serviceAccounts: []string{"", "default", "api", "ci-runner"},
	images:          []string{"", "busybox", "registry.example/api:2", "nginx:1.27", "nginx:1.28"},
}

func (g *gen) pick(l []any, max int) []any {
	n := 1 + g.r.IntN(max)
	out := make([]any, n)
	for i := range out {
		out[i] = l[g.r.IntN(len(l))]
	}
	return out
}

func (g *gen) matcher(p float64) map[string]any {
	dst, wl := map[string]any{}, map[string]any{}
	for k, vals := range pools {
		if g.r.Float64() >= p {
			continue
		}
		switch k {
		case "cidr", "ports", "names":
			dst[k] = g.pick(vals, 3)
		default:
			wl[k] = g.pick(vals, 3)
		}
	}
	if g.r.Float64() < p {
		labels := map[string]string{}
		for _, kv := range [][2]string{{"app", "api"}, {"app", "w*"}, {"tier", ""}} {
			if g.r.IntN(2) == 0 {
				labels[kv[0]] = kv[1]
			}
		}
		if len(labels) > 0 {
			wl["labels"] = labels
		}
	}
	m := map[string]any{}
	if len(dst) > 0 {
		m["dst"] = dst
	}
	if len(wl) > 0 {
		m["workload"] = wl
	}
	return m
}

// policy returns the YAML (as JSON) of a random policy with n rules.
func (g *gen) policy(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: vigil.dev/v1\ndefault: %s\nrules:\n", []string{"allow", "deny", "audit"}[g.r.IntN(3)])
	for i := range n {
		r := map[string]any{"name": fmt.Sprintf("r%d", i), "action": []string{"allow", "deny", "audit"}[g.r.IntN(3)]}
		if m := g.matcher(0.25); len(m) > 0 || g.r.IntN(10) == 0 {
			r["match"] = m
		}
		if g.r.IntN(5) == 0 {
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

func (g *gen) input() Input {
	p := inputPools
	s := func(l []string) string { return l[g.r.IntN(len(l))] }
	u := func(l []uint32) uint32 { return l[g.r.IntN(len(l))] }
	var dst netip.AddrPort
	if a := s(p.addrs); a != "" {
		dst = netip.AddrPortFrom(netip.MustParseAddr(a), uint16(u(p.ports)))
	}
	in := Input{Dst: dst, Name: s(p.names), UID: u(p.ids), GID: u(p.ids), User: s(p.users), Comm: s(p.comms),
		Exe: s(p.exes), Cgroup: s(p.cgroups), Container: s(p.containers), Namespace: s(p.namespaces), Pod: s(p.pods),
		ServiceAccount: s(p.serviceAccounts), Image: s(p.images)}
	switch g.r.IntN(4) {
	case 0:
		in.Labels = map[string]string{"app": "api"}
	case 1:
		in.Labels = map[string]string{"app": "web", "tier": ""}
	case 2:
		in.Labels = map[string]string{"tier": "x"}
	}
	return in
}
