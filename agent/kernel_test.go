package agent

import (
	"net/netip"
	"syscall"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/policy"
)

func TestDenyTable(t *testing.T) {
	p, err := policy.Parse("p.yaml", []byte(`apiVersion: vigil.dev/v1
default: deny
rules:
  - {name: web, action: allow, match: {dst: {ports: ["443"]}}}
  - {name: no-db, action: deny, errno: EACCES, match: {dst: {cidr: ["10.1.0.0/16"], ports: ["5432"]}, workload: {uids: ["1000-1999"]}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	got := denyTable(42, p.Kernel(intercept.MaxDenySegments, intercept.MaxDenyEntries))
	if got.Generation != 42 || len(got.Entries) != 3 {
		t.Fatalf("denyTable = %+v; want generation 42 and 3 entries", got)
	}
	byPrefix := map[netip.Prefix][]intercept.DenySegment{}
	for _, e := range got.Entries {
		byPrefix[e.Prefix] = e.Segments
	}
	v4 := byPrefix[netip.MustParsePrefix("0.0.0.0/0")]
	if len(v4) != 2 || v4[0].Deny || v4[0].PortLow != 443 ||
		!v4[1].Deny || v4[1].Rule != intercept.DenyRuleDefault || v4[1].Errno != syscall.ECONNREFUSED {
		t.Errorf("0.0.0.0/0 segments = %+v; want 443 left to the proxy, then the default deny", v4)
	}
	db := byPrefix[netip.MustParsePrefix("10.1.0.0/16")]
	if len(db) != 3 || !db[1].Deny || db[1].Rule != 1 || db[1].Errno != syscall.EACCES || db[1].UIDLow != 1000 || db[1].UIDHigh != 1999 ||
		db[1].PortLow != 5432 || db[1].PortHigh != 5432 {
		t.Errorf("10.1.0.0/16 segments = %+v; want web, no-db (rule 1, uids 1000-1999, EACCES), default", db)
	}
}

func TestKernelGenerations(t *testing.T) {
	var k kernelPolicy
	p, err := policy.Parse("p.yaml", []byte("apiVersion: vigil.dev/v1\ndefault: allow\n"))
	if err != nil {
		t.Fatal(err)
	}
	first := k.register(p)
	for range kernelGenerations - 1 {
		k.register(p)
	}
	if k.lookup(first) != p {
		t.Errorf("generation %d forgotten after %d newer ones; want it kept", first, kernelGenerations-1)
	}
	last := k.register(p)
	if last != first+kernelGenerations {
		t.Errorf("generation after %d registrations = %d; want %d", kernelGenerations, last, first+kernelGenerations)
	}
	if k.lookup(first) != nil || k.lookup(last) != p {
		t.Errorf("after %d newer generations: lookup(first) = %v, lookup(last) = %v; want nil and the policy", kernelGenerations, k.lookup(first), k.lookup(last))
	}
}
