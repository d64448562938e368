package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
)

const decidePolicy = `apiVersion: vigil.dev/v1
default: allow
rules:
  - name: db-deny
    action: deny
    match:
      dst: {cidr: ["10.1.2.0/24", "fd00::/64"], ports: ["5432", "6000-6010"]}
    not:
      workload: {namespaces: ["payments"], pods: ["api-*"], labels: {app: api}}
  - name: metadata
    action: deny
    errno: EACCES
    match: {dst: {cidr: ["169.254.169.254"]}}
    not: {workload: {uids: [0]}}
  - name: names
    action: audit
    match: {dst: {names: ["db.internal", "*.corp.example"]}}
  - name: uids
    action: audit
    match: {workload: {uids: [1000, "2000-2999"], gids: [100]}}
  - name: users
    action: deny
    errno: EPERM
    match: {workload: {users: ["mallory", "eve*"]}}
  - name: comm
    action: deny
    errno: ETIMEDOUT
    match: {workload: {comm: ["nc", "ncat"]}}
  - name: exe
    action: audit
    match: {workload: {exe: ["/tmp/*"]}}
  - name: cgroup
    action: audit
    match: {workload: {cgroup: ["/system.slice/*.service"]}, dst: {ports: ["25"]}}
  - name: container
    action: deny
    match: {workload: {container: ["3f9a*", "deadbeef"]}}
  - name: labels
    action: audit
    match: {workload: {labels: {tier: "", env: "prod-*"}}}
  - name: service-accounts
    action: deny
    errno: EACCES
    match: {workload: {serviceAccounts: ["builder", "ci-*"]}, dst: {ports: ["22"]}}
  - name: images
    action: audit
    match: {workload: {images: ["registry.example/debug:*", "busybox"]}}
  - name: v6-any
    action: audit
    match: {dst: {cidr: ["::/0"], ports: ["1-1023"]}}
`

func TestDecide(t *testing.T) {
	p, err := Parse("p.yaml", []byte(decidePolicy))
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddrPort
	api := map[string]string{"app": "api"}
	tests := []struct {
		name  string
		in    Input
		rule  string
		act   Action
		errno syscall.Errno
	}{
		{"nothing matches", Input{Dst: dst("192.0.2.1:443")}, DefaultRule, Allow, 0},
		{"zero input", Input{}, DefaultRule, Allow, 0},
		{"db v4 first port", Input{Dst: dst("10.1.2.3:5432")}, "db-deny", Deny, syscall.ECONNREFUSED},
		{"db v4 range end", Input{Dst: dst("10.1.2.255:6010")}, "db-deny", Deny, syscall.ECONNREFUSED},
		{"db v4 past range", Input{Dst: dst("10.1.2.3:6011")}, DefaultRule, Allow, 0},
		{"db v4 outside cidr", Input{Dst: dst("10.1.3.0:5432")}, DefaultRule, Allow, 0},
		{"db v4-mapped", Input{Dst: dst("[::ffff:10.1.2.3]:5432")}, "db-deny", Deny, syscall.ECONNREFUSED},
		{"db v6", Input{Dst: dst("[fd00::1]:5432")}, "db-deny", Deny, syscall.ECONNREFUSED},
		{"db v6 with zone", Input{Dst: netip.AddrPortFrom(netip.MustParseAddr("fd00::1").WithZone("eth0"), 5432)}, "db-deny", Deny, syscall.ECONNREFUSED},
		{"db v6 outside", Input{Dst: dst("[fd00:0:0:1::1]:5432")}, DefaultRule, Allow, 0},
		{"db excluded api pod", Input{Dst: dst("10.1.2.3:5432"), Namespace: "payments", Pod: "api-7f", Labels: api}, DefaultRule, Allow, 0},
		{"db api pod wrong ns", Input{Dst: dst("10.1.2.3:5432"), Namespace: "web", Pod: "api-7f", Labels: api}, "db-deny", Deny, syscall.ECONNREFUSED},
		{"db api pod no label", Input{Dst: dst("10.1.2.3:5432"), Namespace: "payments", Pod: "api-7f"}, "db-deny", Deny, syscall.ECONNREFUSED},
		{"db api pod other label", Input{Dst: dst("10.1.2.3:5432"), Namespace: "payments", Pod: "api-7f", Labels: map[string]string{"app": "web"}}, "db-deny", Deny, syscall.ECONNREFUSED},
		{"metadata", Input{Dst: dst("169.254.169.254:80"), UID: 1}, "metadata", Deny, syscall.EACCES},
		{"metadata root", Input{Dst: dst("169.254.169.254:80"), UID: 0}, DefaultRule, Allow, 0},
		{"metadata neighbour", Input{Dst: dst("169.254.169.253:80"), UID: 1}, DefaultRule, Allow, 0},
		{"name exact", Input{Dst: dst("192.0.2.1:443"), Name: "db.internal"}, "names", Audit, 0},
		{"name case and dot", Input{Dst: dst("192.0.2.1:443"), Name: "DB.Internal."}, "names", Audit, 0},
		{"name pattern", Input{Dst: dst("192.0.2.1:443"), Name: "x.corp.example"}, "names", Audit, 0},
		{"name pattern apex", Input{Dst: dst("192.0.2.1:443"), Name: "corp.example"}, DefaultRule, Allow, 0},
		{"name unknown", Input{Dst: dst("192.0.2.1:443")}, DefaultRule, Allow, 0},
		{"uid", Input{Dst: dst("192.0.2.1:443"), UID: 1000, GID: 100}, "uids", Audit, 0},
		{"uid range", Input{Dst: dst("192.0.2.1:443"), UID: 2999, GID: 100}, "uids", Audit, 0},
		{"uid wrong gid", Input{Dst: dst("192.0.2.1:443"), UID: 2999, GID: 101}, DefaultRule, Allow, 0},
		{"uid past range", Input{Dst: dst("192.0.2.1:443"), UID: 3000, GID: 100}, DefaultRule, Allow, 0},
		{"user", Input{Dst: dst("192.0.2.1:443"), User: "mallory"}, "users", Deny, syscall.EPERM},
		{"user pattern", Input{Dst: dst("192.0.2.1:443"), User: "eve2"}, "users", Deny, syscall.EPERM},
		{"user unknown", Input{Dst: dst("192.0.2.1:443")}, DefaultRule, Allow, 0},
		{"comm", Input{Dst: dst("192.0.2.1:443"), Comm: "ncat"}, "comm", Deny, syscall.ETIMEDOUT},
		{"comm prefix only", Input{Dst: dst("192.0.2.1:443"), Comm: "n"}, DefaultRule, Allow, 0},
		{"exe", Input{Dst: dst("192.0.2.1:443"), Exe: "/tmp/x"}, "exe", Audit, 0},
		{"exe deeper", Input{Dst: dst("192.0.2.1:443"), Exe: "/tmp/a/x"}, DefaultRule, Allow, 0},
		{"cgroup", Input{Dst: dst("192.0.2.1:25"), Cgroup: "/system.slice/postfix.service"}, "cgroup", Audit, 0},
		{"cgroup other port", Input{Dst: dst("192.0.2.1:26"), Cgroup: "/system.slice/postfix.service"}, DefaultRule, Allow, 0},
		{"container prefix", Input{Dst: dst("192.0.2.1:443"), Container: "3f9a0123"}, "container", Deny, syscall.ECONNREFUSED},
		{"container exact", Input{Dst: dst("192.0.2.1:443"), Container: "deadbeef"}, "container", Deny, syscall.ECONNREFUSED},
		{"container other", Input{Dst: dst("192.0.2.1:443"), Container: "deadbeef0"}, DefaultRule, Allow, 0},
		{"labels", Input{Dst: dst("192.0.2.1:443"), Labels: map[string]string{"tier": "", "env": "prod-eu"}}, "labels", Audit, 0},
		{"labels one missing", Input{Dst: dst("192.0.2.1:443"), Labels: map[string]string{"env": "prod-eu"}}, DefaultRule, Allow, 0},
		{"service account", Input{Dst: dst("192.0.2.1:22"), ServiceAccount: "builder"}, "service-accounts", Deny, syscall.EACCES},
		{"service account pattern", Input{Dst: dst("192.0.2.1:22"), ServiceAccount: "ci-runner"}, "service-accounts", Deny, syscall.EACCES},
		{"service account other port", Input{Dst: dst("192.0.2.1:23"), ServiceAccount: "builder"}, DefaultRule, Allow, 0},
		{"service account other", Input{Dst: dst("192.0.2.1:22"), ServiceAccount: "default"}, DefaultRule, Allow, 0},
		{"service account unknown", Input{Dst: dst("192.0.2.1:22")}, DefaultRule, Allow, 0},
		{"image pattern", Input{Dst: dst("192.0.2.1:443"), Image: "registry.example/debug:1.0"}, "images", Audit, 0},
		{"image exact", Input{Dst: dst("192.0.2.1:443"), Image: "busybox"}, "images", Audit, 0},
		{"image other tag is another image", Input{Dst: dst("192.0.2.1:443"), Image: "busybox:1.36"}, DefaultRule, Allow, 0},
		{"image unknown", Input{Dst: dst("192.0.2.1:443")}, DefaultRule, Allow, 0},
		{"v6 any low port", Input{Dst: dst("[2001:db8::1]:22")}, "v6-any", Audit, 0},
		{"v6 any v4", Input{Dst: dst("192.0.2.1:22")}, DefaultRule, Allow, 0},
		{"first match wins", Input{Dst: dst("10.1.2.3:5432"), Comm: "nc", UID: 1000, GID: 100}, "db-deny", Deny, syscall.ECONNREFUSED},
		{"order among later", Input{Dst: dst("192.0.2.1:443"), Comm: "nc", UID: 1000, GID: 100, User: "eve"}, "uids", Audit, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := p.Decide(tt.in)
			want := Decision{Action: tt.act, Rule: tt.rule, Errno: tt.errno}
			if got != want {
				t.Errorf("Decide(%+v) = %+v; want %+v", tt.in, got, want)
			}
			if slow := p.decideSlow(tt.in); slow != want {
				t.Errorf("decideSlow(%+v) = %+v; want %+v", tt.in, slow, want)
			}
		})
	}
}

func TestDecideDefaultDeny(t *testing.T) {
	p, err := Parse("p.yaml", []byte("apiVersion: vigil.dev/v1\ndefault: deny\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Decide(Input{}), (Decision{Action: Deny, Rule: DefaultRule, Errno: syscall.ECONNREFUSED}); got != want {
		t.Errorf("Decide = %+v; want %+v", got, want)
	}
}

// TestDecideMatchesReference compares the index with the linear reference
// on random policies and inputs, with the index on and off.
func TestDecideMatchesReference(t *testing.T) {
	for seed := range uint64(300) {
		g := newGen(seed)
		src := g.policy(1 + int(seed%80))
		p, err := Parse(fmt.Sprintf("seed%d.yaml", seed), []byte(src))
		if err != nil {
			t.Fatalf("seed %d: %v\n%s", seed, err, src)
		}
		full := *p
		full.c.full, full.c.cidrOn = true, false
		for i := range full.c.num {
			full.c.num[i].on = false
		}
		for i := range full.c.str {
			full.c.str[i].on = false
		}
		for range 300 {
			in := g.input()
			want := p.decideSlow(in)
			if got := p.Decide(in); got != want {
				t.Fatalf("seed %d: Decide(%+v) = %+v; want %+v\n%s", seed, in, got, want, src)
			}
			if got := full.Decide(in); got != want {
				t.Fatalf("seed %d: unindexed Decide(%+v) = %+v; want %+v\n%s", seed, in, got, want, src)
			}
		}
	}
}

// TestShadowSound checks that a rule reported unreachable indeed never
// decides, on random policies and inputs.
func TestShadowSound(t *testing.T) {
	reported := 0
	for seed := range uint64(300) {
		g := newGen(seed + 1000)
		src := g.policy(2 + int(seed%30))
		p, err := Parse("p.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		dead := map[string]bool{}
		for _, w := range p.Warnings() {
			var name string
			if _, err := fmt.Sscanf(w.Msg, "rule %q can never match", &name); err == nil {
				dead[name] = true
				reported++
			}
		}
		for range 500 {
			in := g.input()
			if d := p.Decide(in); dead[d.Rule] {
				t.Fatalf("seed %d: rule %q reported unreachable decided %+v\n%s", seed, d.Rule, in, src)
			}
		}
	}
	if reported == 0 {
		t.Error("no rule was ever reported unreachable: the test checks nothing")
	}
}

func TestDecideNoAllocs(t *testing.T) {
	p, err := Parse("p.yaml", []byte(decidePolicy))
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Dst: netip.MustParseAddrPort("10.1.2.3:5432"), Name: "x.corp.example.", Namespace: "payments", Pod: "api-1", Labels: map[string]string{"app": "api"}, Exe: "/tmp/x"}
	if n := testing.AllocsPerRun(100, func() { p.Decide(in) }); n != 0 {
		t.Errorf("Decide allocates %v times; want 0", n)
	}
}

func TestPrefixRange(t *testing.T) {
	max := ^uint64(0)
	tests := []struct {
		prefix string
		lo, hi u128
	}{
		{"0.0.0.0/0", u128{0, 0}, u128{0, 0xffffffff}},
		{"10.1.2.0/24", u128{0, 0x0a010200}, u128{0, 0x0a0102ff}},
		{"10.1.2.3/32", u128{0, 0x0a010203}, u128{0, 0x0a010203}},
		{"::/0", u128{0, 0}, u128{max, max}},
		{"fd00::/8", u128{0xfd00 << 48, 0}, u128{0xfd00<<48 | (1<<56 - 1), max}},
		{"fd00::/64", u128{0xfd00 << 48, 0}, u128{0xfd00 << 48, max}},
		{"fd00::/65", u128{0xfd00 << 48, 0}, u128{0xfd00 << 48, max >> 1}},
		{"fd00::1/128", u128{0xfd00 << 48, 1}, u128{0xfd00 << 48, 1}},
	}
	for _, tt := range tests {
		lo, hi := prefixRange(netip.MustParsePrefix(tt.prefix))
		if lo != tt.lo || hi != tt.hi {
			t.Errorf("prefixRange(%s) = %x, %x; want %x, %x", tt.prefix, lo, hi, tt.lo, tt.hi)
		}
	}
	if _, ok := (u128{max, max}).next(); ok {
		t.Error("u128 max has a next")
	}
	if n, _ := (u128{0, max}).next(); n != (u128{1, 0}) {
		t.Errorf("next carries to %x", n)
	}
}

// TestManyValues covers sets large enough to be looked up in a map.
func TestManyValues(t *testing.T) {
	var comms []string
	for i := range 20 {
		comms = append(comms, fmt.Sprintf("%q", fmt.Sprintf("c%d", i)))
	}
	src := head + "  - name: many\n    action: allow\n    match: {workload: {comm: [" + strings.Join(comms, ", ") + "]}}\n" +
		"  - name: many-not\n    action: audit\n    not: {workload: {comm: [" + strings.Join(comms, ", ") + "]}}\n"
	p, err := Parse("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for comm, want := range map[string]string{"c0": "many", "c19": "many", "c20": "many-not", "": "many-not"} {
		in := Input{Dst: netip.MustParseAddrPort("10.0.0.1:1"), Comm: comm}
		if d := p.Decide(in); d.Rule != want || p.decideSlow(in).Rule != want {
			t.Errorf("Decide(comm %q) = %+v; want rule %s", comm, d, want)
		}
	}
}

func TestPolicyAccessors(t *testing.T) {
	p, err := Parse("p.yaml", []byte(decidePolicy))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := p.Rule("users"); !ok || r.Index != 4 || r.Line != 21 || r.Action != Deny || r.Errno != syscall.EPERM {
		t.Errorf(`Rule("users") = %+v, %v`, r, ok)
	}
	if _, ok := p.Rule("nope"); ok {
		t.Error(`Rule("nope") found`)
	}
	if !p.UsesNames() {
		t.Error("UsesNames() = false")
	}
	if q, _ := Parse("q", []byte(policyDeny)); q.UsesNames() {
		t.Error("UsesNames() = true for a policy without names")
	}
	for e, want := range map[syscall.Errno]string{syscall.ECONNREFUSED: "ECONNREFUSED", syscall.EACCES: "EACCES", syscall.EPERM: "EPERM", syscall.ETIMEDOUT: "ETIMEDOUT", syscall.ENETUNREACH: "ENETUNREACH", syscall.EHOSTUNREACH: "EHOSTUNREACH", 0: "", syscall.ENOENT: ""} {
		if got := ErrnoName(e); got != want {
			t.Errorf("ErrnoName(%d) = %q; want %q", e, got, want)
		}
	}
	for s, want := range map[string][2]string{"app=api": {"app", "api"}, "a=": {"a", ""}, "a=b=c": {"a", "b=c"}} {
		if k, v, err := ParseLabel(s); err != nil || k != want[0] || v != want[1] {
			t.Errorf("ParseLabel(%q) = %q, %q, %v", s, k, v, err)
		}
	}
	for _, s := range []string{"app", "=x", ""} {
		if _, _, err := ParseLabel(s); err == nil {
			t.Errorf("ParseLabel(%q) succeeded", s)
		}
	}
}
