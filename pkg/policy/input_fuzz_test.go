package policy

import (
	"math"
	"net/netip"
	"strings"
	"testing"
)

// FuzzDecideInput describes a connection the way `vigil policy test`
// flags do (--dst, --name, --label, --comm, ...) from fuzzed text:
// malformed flags are refused, and any connection built from the rest
// gets the same decision from Decide and the reference, by a rule the
// policy has.
func FuzzDecideInput(f *testing.F) {
	type seed struct {
		dst, name, label, comm, exe, cgroup, container, workload string
		uid                                                      uint64
	}
	for _, s := range []seed{
		{"10.1.2.3:5432", "", "app=api", "psql", "/usr/bin/psql", "/system.slice/x.service", "", "payments/api-1", 0},
		{"[fd00::1]:6005", "DB.Internal", "tier=", "nc", "/tmp/nc", "", "3f9a0000", "", 1000},
		{"169.254.169.254:80", "x.corp.example", "env=prod-eu", "", "", "", "deadbeef", "ns/", 2500},
		{"[::ffff:10.1.2.3]:5432", ".", "=v", "ncat", "/tmp/", "/", "", "/pod", math.MaxUint32 + 1},
		{"10.1.2.3", "", "novalue", "", "", "", "", "", 0},
		{"[fe80::1%eth0]:22", "*", "a=b=c", "mallory", "", "", "", "", 0},
		{"", "", "", "", "", "", "", "", 0},
	} {
		f.Add(s.dst, s.name, s.label, s.comm, s.exe, s.cgroup, s.container, s.workload, s.uid)
	}
	p, err := Parse("p.yaml", []byte(decidePolicy))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, dst, name, label, comm, exe, cgroup, container, workload string, uid uint64) {
		in := Input{Name: name, Comm: comm, Exe: exe, Cgroup: cgroup, Container: container,
			User: comm, ServiceAccount: container, Image: exe}
		if dst != "" {
			a, err := netip.ParseAddrPort(dst)
			if err != nil {
				return // the command refuses it as a usage error
			}
			in.Dst = a
		}
		if uid > math.MaxUint32 {
			return // refused as out of range
		}
		in.UID, in.GID = uint32(uid), uint32(uid>>16)
		if ns, pod, ok := strings.Cut(workload, "/"); ok {
			in.Namespace, in.Pod = ns, pod
		}
		if label != "" {
			k, v, err := ParseLabel(label)
			if err != nil {
				if err.Error() == "" {
					t.Fatal("empty ParseLabel error")
				}
				return
			}
			if k == "" {
				t.Fatalf("ParseLabel(%q) accepted an empty key", label)
			}
			in.Labels = map[string]string{k: v}
		}
		got, want := p.Decide(in), p.decideSlow(in)
		if got != want {
			t.Fatalf("Decide(%+v) = %+v; reference %+v", in, got, want)
		}
		if _, ok := p.Rule(got.Rule); !ok && got.Rule != DefaultRule {
			t.Fatalf("Decide(%+v) names the unknown rule %q", in, got.Rule)
		}
	})
}
