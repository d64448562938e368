package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// benchPolicy returns a policy of n rules that mix destination CIDRs,
// ports and port ranges, uids and uid ranges, comm names and patterns, and
// not: blocks. Rule i matches only connections built by benchInput(i).
func benchPolicy(n int) string {
	var b strings.Builder
	b.WriteString("apiVersion: vigil.dev/v1\ndefault: allow\nrules:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: rule-%d\n    action: %s\n    match:\n", i, []string{"deny", "audit", "allow"}[i%3])
		cidr := fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
		port := 1000 + i
		switch i % 4 {
		case 0: // CIDR and port
			fmt.Fprintf(&b, "      dst: {cidr: [%q], ports: [\"%d\"]}\n", cidr, port)
		case 1: // port range and uid
			fmt.Fprintf(&b, "      dst: {ports: [\"%d-%d\"]}\n      workload: {uids: [%d]}\n", port, port+1, 10000+i)
		case 2: // uid range and comm
			fmt.Fprintf(&b, "      workload: {uids: [\"%d-%d\"], comm: [\"proc-%d\"]}\n", 10000+i, 10000+i, i)
		case 3: // IPv6 CIDR, comm pattern, exclusion
			fmt.Fprintf(&b, "      dst: {cidr: [\"fd00:%x::/48\"]}\n      workload: {comm: [\"w%d-*\"]}\n    not:\n      workload: {uids: [0]}\n", i, i)
		}
	}
	return b.String()
}

// benchInput returns a connection that rule i of benchPolicy matches.
func benchInput(i int) Input {
	in := Input{Dst: netip.MustParseAddrPort(fmt.Sprintf("192.0.2.1:%d", 1000+i)), UID: 1, Comm: "bash"}
	switch i % 4 {
	case 0:
		in.Dst = netip.MustParseAddrPort(fmt.Sprintf("10.%d.%d.7:%d", i/256, i%256, 1000+i))
	case 1:
		in.UID = uint32(10000 + i)
	case 2:
		in.UID, in.Comm = uint32(10000+i), fmt.Sprintf("proc-%d", i)
	case 3:
		in.Dst = netip.MustParseAddrPort(fmt.Sprintf("[fd00:%x::9]:443", i))
		in.Comm = fmt.Sprintf("w%d-x", i)
		in.UID = 1000
	}
	return in
}

func TestBenchPolicy(t *testing.T) {
	p, err := Parse("bench.yaml", []byte(benchPolicy(1000)))
	if err != nil {
		t.Fatal(err)
	}
	if w := p.Warnings(); len(w) != 0 {
		t.Fatalf("warnings: %v", w)
	}
	for i := range 1000 {
		if d := p.Decide(benchInput(i)); d.Rule != fmt.Sprintf("rule-%d", i) {
			t.Fatalf("Decide(benchInput(%d)) = %+v", i, d)
		}
	}
	if d := p.Decide(Input{Dst: netip.MustParseAddrPort("192.0.2.1:443"), UID: 1, Comm: "bash"}); d.Rule != DefaultRule {
		t.Fatalf("no-match input decided %+v", d)
	}
}

func BenchmarkDecide(b *testing.B) {
	const n = 1000
	p, err := Parse("bench.yaml", []byte(benchPolicy(n)))
	if err != nil {
		b.Fatal(err)
	}
	noMatch := Input{Dst: netip.MustParseAddrPort("192.0.2.1:443"), UID: 1, Comm: "bash", Exe: "/usr/bin/bash"}
	// Matches rule-999's cidr/comm family but fails its not: (uid 0), so
	// every index hit is checked and rejected.
	rejected := benchInput(n - 1)
	rejected.UID = 0
	for _, bc := range []struct {
		name string
		in   Input
		rule string
	}{
		{"1000rules/early", benchInput(1), "rule-1"},
		{"1000rules/late", benchInput(n - 2), fmt.Sprintf("rule-%d", n-2)},
		{"1000rules/late-v6-pattern", benchInput(n - 1), fmt.Sprintf("rule-%d", n-1)},
		{"1000rules/nomatch", noMatch, DefaultRule},
		{"1000rules/nomatch-after-not", rejected, DefaultRule},
	} {
		if d := p.Decide(bc.in); d.Rule != bc.rule {
			b.Fatalf("%s: Decide = %+v; want rule %s", bc.name, d, bc.rule)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Decide(bc.in)
			}
		})
	}
}

// BenchmarkDecideLinear is the reference linear scan, for comparison.
func BenchmarkDecideLinear(b *testing.B) {
	p, err := Parse("bench.yaml", []byte(benchPolicy(1000)))
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Dst: netip.MustParseAddrPort("192.0.2.1:443"), UID: 1, Comm: "bash"}
	for b.Loop() {
		p.decideSlow(in)
	}
}

// BenchmarkDecidePatterns is the worst case: 1,000 rules whose only
// constraint is a comm pattern, none of which matches, so the index
// narrows nothing and every pattern is tried.
func BenchmarkDecidePatterns(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("apiVersion: vigil.dev/v1\ndefault: allow\nrules:\n")
	for i := range 1000 {
		fmt.Fprintf(&sb, "  - {name: r%d, action: deny, match: {workload: {comm: [\"*-%d\"]}}}\n", i, i)
	}
	p, err := Parse("patterns.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Dst: netip.MustParseAddrPort("192.0.2.1:443"), Comm: "bash"}
	for b.Loop() {
		p.Decide(in)
	}
}

func BenchmarkParse(b *testing.B) {
	src := []byte(benchPolicy(1000))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := Parse("bench.yaml", src); err != nil {
			b.Fatal(err)
		}
	}
}
