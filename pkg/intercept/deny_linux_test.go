package intercept

import (
	"math"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// everyone is a segment's uid and gid ranges when it applies to all.
func everyone(s DenySegment) DenySegment {
	s.UIDLow, s.UIDHigh, s.GIDLow, s.GIDHigh = 0, math.MaxUint32, 0, math.MaxUint32
	return s
}

// TestKernelDeny: a destination the deny table denies fails connect()
// with the table's errno without reaching the proxy, and is reported with
// the rule, the generation and the caller; everything else is redirected
// as before.
func TestKernelDeny(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
	evs := collectEvents(t, ic)

	table := DenyTable{Generation: 7, Entries: []DenyEntry{
		{Prefix: netip.PrefixFrom(e.peer4, 32), Segments: []DenySegment{
			everyone(DenySegment{PortLow: 80, PortHigh: 80, Deny: true, Rule: 3, Errno: syscall.ECONNREFUSED}),
			{PortLow: 81, PortHigh: 81, UIDLow: 1234, UIDHigh: 1234, GIDLow: 0, GIDHigh: math.MaxUint32, Deny: true, Rule: 4, Errno: syscall.EPERM},
			everyone(DenySegment{PortLow: 82, PortHigh: 82}), // left to the proxy: the deny below never applies
			everyone(DenySegment{PortLow: 1, PortHigh: 65535, Deny: true, Rule: 5, Errno: syscall.ENETUNREACH}),
		}},
		{Prefix: netip.PrefixFrom(e.peer6, 128), Segments: []DenySegment{
			everyone(DenySegment{PortLow: 443, PortHigh: 443, Deny: true, Rule: DenyRuleDefault, Errno: syscall.EACCES}),
		}},
	}}
	if err := ic.SetDeny(table); err != nil {
		t.Fatalf("SetDeny: %v", err)
	}
	mapped := func(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }
	tests := []struct {
		name   string
		family int
		dst    netip.AddrPort
		user   *asUser
		errno  syscall.Errno // 0: redirected to the proxy
		rule   uint32
	}{
		{"v4 denied", 4, netip.AddrPortFrom(e.peer4, 80), nil, syscall.ECONNREFUSED, 3},
		{"v4-mapped denied", 6, netip.AddrPortFrom(mapped(e.peer4), 80), nil, syscall.ECONNREFUSED, 3},
		{"uid denied", 4, netip.AddrPortFrom(e.peer4, 81), &asUser{1234, 1}, syscall.EPERM, 4},
		{"other uid falls through", 4, netip.AddrPortFrom(e.peer4, 81), &asUser{1000, 1}, syscall.ENETUNREACH, 5},
		{"pass segment", 4, netip.AddrPortFrom(e.peer4, 82), nil, 0, 0},
		{"v6 default", 6, netip.AddrPortFrom(e.peer6, 443), nil, syscall.EACCES, DenyRuleDefault},
		{"v6 other port", 6, netip.AddrPortFrom(e.peer6, 444), nil, 0, 0},
		{"other address", 4, netip.AddrPortFrom(e.host4, 80), nil, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: tt.family, Addr: tt.dst.String(), Exit: true}, tt.user)
			if tt.errno == 0 {
				conn := proxy.accept(t, acceptTimeout)
				lookup(t, ic, conn)
				if res := c.wait(t); res.Err != "" {
					t.Fatalf("client: %s", res.Err)
				}
				return
			}
			res := c.wait(t)
			if syscall.Errno(res.Errno) != tt.errno {
				t.Fatalf("client connect: %q (errno %d); want %v", res.Err, res.Errno, tt.errno)
			}
			pid := uint32(c.cmd.Process.Pid)
			ev := evs.wait(t, "kernel.deny", func(ev Event) bool { return ev.Kind == EventKernelDeny && ev.Origin.PID == pid })
			want := tt.dst.Addr().Unmap()
			if ev.Origin.Dst != netip.AddrPortFrom(want, tt.dst.Port()) || ev.Rule != tt.rule || ev.Generation != 7 || ev.Errno != tt.errno || ev.Proto != "tcp" {
				t.Errorf("event = %+v; want dst %v rule %d generation 7 errno %v", ev, tt.dst, tt.rule, tt.errno)
			}
			if ev.Origin.Comm != "vigil-client" || ev.Origin.CgroupID != cgroupID(t, cg) || ev.Origin.TID != uint32(res.TID) {
				t.Errorf("event origin = %+v; want comm vigil-client, cgroup %d, tid %d", ev.Origin, cgroupID(t, cg), res.TID)
			}
			if tt.user != nil && (ev.Origin.UID != tt.user.uid || ev.Origin.GID != tt.user.gid) {
				t.Errorf("event uid, gid = %d, %d; want %d, %d", ev.Origin.UID, ev.Origin.GID, tt.user.uid, tt.user.gid)
			}
		})
	}
	proxy.expectNone(t, 100*time.Millisecond)

	st, err := ic.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.KernelDenied != 5 || st.Deny != 2 {
		t.Errorf("Stats.KernelDenied, Deny = %d, %d; want 5, 2", st.KernelDenied, st.Deny)
	}

	// An empty table denies nothing.
	if err := ic.SetDeny(DenyTable{}); err != nil {
		t.Fatalf("SetDeny(empty): %v", err)
	}
	c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: netip.AddrPortFrom(e.peer4, 80).String(), Exit: true}, nil)
	lookup(t, ic, proxy.accept(t, acceptTimeout))
	if res := c.wait(t); res.Err != "" {
		t.Fatalf("client after clearing the table: %s", res.Err)
	}
	if st, _ := ic.Stats(); st.Deny != 0 {
		t.Errorf("Stats.Deny = %d after clearing; want 0", st.Deny)
	}
}

// TestDenyReloadAtomic swaps two tables back and forth while a client
// connects in a loop. Table A denies the destination through a /32; table
// B leaves the /32 to the proxy but denies the /30 around it with another
// rule. A connect that saw half of one table and half of the other would
// be denied by rule 2; each must instead be denied by rule 1 under an A
// generation, or redirected.
func TestDenyReloadAtomic(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
	evs := collectEvents(t, ic)
	go func() { // drain what reaches the proxy
		for c := range proxy.conns {
			c.Close()
		}
	}()

	dst := netip.AddrPortFrom(e.peer4, 80)
	// Many entries make each write take long enough to overlap connects.
	filler := func(gen uint32) []DenyEntry {
		var l []DenyEntry
		for j := range 200 {
			a := netip.AddrFrom4([4]byte{10, 250, byte(j >> 8), byte(j)})
			l = append(l, DenyEntry{Prefix: netip.PrefixFrom(a, 32), Segments: []DenySegment{
				everyone(DenySegment{PortLow: 1, PortHigh: 65535, Deny: true, Rule: 9, Errno: syscall.EPERM})}})
		}
		return l
	}
	tableA := func(gen uint32) DenyTable {
		return DenyTable{Generation: gen, Entries: append(filler(gen), DenyEntry{Prefix: netip.PrefixFrom(e.peer4, 32), Segments: []DenySegment{
			everyone(DenySegment{PortLow: 80, PortHigh: 80, Deny: true, Rule: 1, Errno: syscall.ECONNREFUSED})}})}
	}
	tableB := func(gen uint32) DenyTable {
		return DenyTable{Generation: gen, Entries: append(filler(gen),
			DenyEntry{Prefix: netip.PrefixFrom(e.peer4, 32), Segments: []DenySegment{everyone(DenySegment{PortLow: 1, PortHigh: 65535})}},
			DenyEntry{Prefix: netip.PrefixFrom(e.peer4, 30).Masked(), Segments: []DenySegment{
				everyone(DenySegment{PortLow: 80, PortHigh: 80, Deny: true, Rule: 2, Errno: syscall.EACCES})}})}
	}

	if err := ic.SetDeny(tableA(1)); err != nil {
		t.Fatal(err)
	}
	c := e.startClient(t, cg, clientSpec{Op: "tally", Family: 4, Addr: dst.String(), Count: 20000, Wait: true}, nil)
	c.proceed()
	done := make(chan clientResult, 1)
	go func() { done <- c.wait(t) }()
	swaps := 0
	var res clientResult
loop:
	for gen := uint32(2); ; gen++ {
		select {
		case res = <-done:
			break loop
		default:
		}
		tb := tableB(gen)
		if gen%2 == 1 {
			tb = tableA(gen)
		}
		if err := ic.SetDeny(tb); err != nil {
			t.Fatalf("SetDeny(%d): %v", gen, err)
		}
		swaps++
	}
	t.Logf("%d swaps; client results by errno: %v", swaps, res.Errnos)
	if res.Err != "" {
		t.Fatalf("client: %s", res.Err)
	}
	for errno, n := range res.Errnos {
		if errno != 0 && syscall.Errno(errno) != syscall.ECONNREFUSED {
			t.Errorf("%d connects failed with %v; want only ECONNREFUSED (table A) or success (table B)", n, syscall.Errno(errno))
		}
	}
	if swaps < 2 || res.Errnos[0] == 0 || res.Errnos[int(syscall.ECONNREFUSED)] == 0 {
		t.Errorf("the loop did not see both tables (%d swaps, %v): nothing to compare", swaps, res.Errnos)
	}
	time.Sleep(100 * time.Millisecond)
	for _, ev := range evs.matching(func(ev Event) bool { return ev.Kind == EventKernelDeny }) {
		if ev.Rule != 1 || ev.Generation%2 != 1 {
			t.Errorf("deny event rule %d generation %d; want rule 1 under an odd (A) generation", ev.Rule, ev.Generation)
		}
	}
}

// TestKernelDenyBypassAttempts: neither a device-bound socket (any user
// may set SO_BINDTODEVICE) nor a namespace the agent does not serve steps
// around a kernel-enforced deny: connect() fails with the table's errno
// and a kernel.deny event says so, not a bound.device or netns.bypass one.
func TestKernelDenyBypassAttempts(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
	evs := collectEvents(t, ic)

	table := DenyTable{Generation: 3, Entries: []DenyEntry{
		{Prefix: netip.PrefixFrom(e.peer4, 32), Segments: []DenySegment{
			everyone(DenySegment{PortLow: 80, PortHigh: 80, Deny: true, Rule: 1, Errno: syscall.ECONNREFUSED})}},
		{Prefix: netip.PrefixFrom(e.peer6, 128), Segments: []DenySegment{
			everyone(DenySegment{PortLow: 80, PortHigh: 80, Deny: true, Rule: 2, Errno: syscall.EPERM})}},
	}}
	if err := ic.SetDeny(table); err != nil {
		t.Fatalf("SetDeny: %v", err)
	}
	tests := []struct {
		name   string
		spec   clientSpec
		errno  syscall.Errno
		rule   uint32
		user   *asUser
		bypass EventKind // the report the deny replaces
	}{
		{"bound v4", clientSpec{Family: 4, Addr: netip.AddrPortFrom(e.peer4, 80).String(), Device: e.hostIf}, syscall.ECONNREFUSED, 1, nil, EventBoundDevice},
		{"bound v6", clientSpec{Family: 6, Addr: netip.AddrPortFrom(e.peer6, 80).String(), Device: e.hostIf}, syscall.EPERM, 2, nil, EventBoundDevice},
		{"bound unprivileged", clientSpec{Family: 4, Addr: netip.AddrPortFrom(e.peer4, 80).String(), Device: e.hostIf}, syscall.ECONNREFUSED, 1, &asUser{1234, 1}, EventBoundDevice},
		{"unserved netns", clientSpec{Family: 4, Addr: netip.AddrPortFrom(e.peer4, 80).String(), Netns: e.netnsRef}, syscall.ECONNREFUSED, 1, nil, EventOtherNetns},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Op, spec.Exit = "tcp", true
			c := e.startClient(t, cg, spec, tt.user)
			res := c.wait(t)
			if syscall.Errno(res.Errno) != tt.errno {
				t.Fatalf("client connect: %q (errno %d); want %v", res.Err, res.Errno, tt.errno)
			}
			pid := uint32(c.cmd.Process.Pid)
			ev := evs.wait(t, "kernel.deny", func(ev Event) bool { return ev.Kind == EventKernelDeny && ev.Origin.PID == pid })
			if ev.Origin.Dst.String() != spec.Addr || ev.Rule != tt.rule || ev.Generation != 3 || ev.Errno != tt.errno {
				t.Errorf("event = %+v; want dst %s rule %d generation 3 errno %v", ev, spec.Addr, tt.rule, tt.errno)
			}
			if got := evs.matching(func(ev Event) bool { return ev.Kind == tt.bypass && ev.Origin.PID == pid }); len(got) != 0 {
				t.Errorf("%d %v events for a denied connect; want none", len(got), tt.bypass)
			}
		})
	}
	proxy.expectNone(t, 20*time.Millisecond)
	if st, _ := ic.Stats(); st.KernelDenied != 4 || st.BoundDevice != 0 || st.OtherNetns != 0 || st.Origins != 0 {
		t.Errorf("Stats = %+v; want KernelDenied 4, no bound-device or other-netns skips, nothing recorded", st)
	}
}
