package intercept

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

const acceptTimeout = 10 * time.Second

// cgroupID is the id of a cgroup v2 directory: its inode number.
func cgroupID(t *testing.T, dir string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestRedirect: a TCP connect to a captured destination lands on the proxy,
// Lookup names the original destination and the caller, and getpeername
// inside the client shows the original destination.
func TestRedirect(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})

	tests := []struct {
		name    string
		family  int
		dst     netip.AddrPort // as the client passes it to connect()
		want    netip.AddrPort // Origin.Dst
		proxyIP netip.Addr     // the proxy sees the client from here
	}{
		{"v4", 4, netip.AddrPortFrom(e.peer4, 80), netip.AddrPortFrom(e.peer4, 80), netip.MustParseAddr("127.0.0.1")},
		{"v6", 6, netip.AddrPortFrom(e.peer6, 443), netip.AddrPortFrom(e.peer6, 443), netip.MustParseAddr("::1")},
		{"v4-mapped", 6, netip.AddrPortFrom(netip.AddrFrom16(e.peer4.As16()), 5432), netip.AddrPortFrom(e.peer4, 5432), netip.MustParseAddr("127.0.0.1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := &asUser{uid: 1234, gid: 5678}
			c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: tt.family, Addr: tt.dst.String(), Payload: "ping"}, user)
			conn := proxy.accept(t, acceptTimeout)
			remote := netip.MustParseAddrPort(conn.RemoteAddr().String())
			if remote.Addr().Unmap() != tt.proxyIP {
				t.Errorf("proxy sees client at %v; want an address of %v", remote, tt.proxyIP)
			}
			o := lookup(t, ic, conn)
			if got := serveOnce(t, conn, "pong"); got != "ping" {
				t.Errorf("proxy read %q; want %q", got, "ping")
			}
			res := c.wait(t)
			t.Logf("origin %+v; client %+v", o, res)
			if res.Err != "" {
				t.Fatalf("client: %s", res.Err)
			}

			if o.Dst != tt.want {
				t.Errorf("Origin.Dst = %v; want %v", o.Dst, tt.want)
			}
			if o.PID != uint32(c.cmd.Process.Pid) || o.TID != uint32(res.TID) {
				t.Errorf("Origin.PID, TID = %d, %d; want %d, %d", o.PID, o.TID, c.cmd.Process.Pid, res.TID)
			}
			if o.UID != user.uid || o.GID != user.gid {
				t.Errorf("Origin.UID, GID = %d, %d; want %d, %d", o.UID, o.GID, user.uid, user.gid)
			}
			if o.Comm != "vigil-client" {
				t.Errorf("Origin.Comm = %q; want %q", o.Comm, "vigil-client")
			}
			if o.CgroupID != cgroupID(t, cg) {
				t.Errorf("Origin.CgroupID = %d; want %d", o.CgroupID, cgroupID(t, cg))
			}
			if o.NetnsCookie != ic.NetnsCookie() {
				t.Errorf("Origin.NetnsCookie = %d; want %d", o.NetnsCookie, ic.NetnsCookie())
			}
			if o.SocketCookie != res.Cookie {
				t.Errorf("Origin.SocketCookie = %d; want the client's SO_COOKIE %d", o.SocketCookie, res.Cookie)
			}
			// Inside the client nothing shows the redirect.
			if res.Peer != tt.dst.String() {
				t.Errorf("client getpeername = %s; want %v", res.Peer, tt.dst)
			}
			if res.Local != remote.String() && netip.MustParseAddrPort(res.Local).Addr().Unmap() != remote.Addr().Unmap() {
				t.Errorf("client getsockname = %s; proxy saw %v", res.Local, remote)
			}
			if res.Reply != "pong" {
				t.Errorf("client read %q; want %q", res.Reply, "pong")
			}
			// Lookup consumed the entry.
			if _, ok, err := ic.Lookup(remote); ok || err != nil {
				t.Errorf("second Lookup(%v) = _, %v, %v; want not found", remote, ok, err)
			}
		})
	}
	st, err := ic.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Redirected < 3 || st.Established < 3 {
		t.Errorf("Stats = %+v; want at least 3 redirected and established", st)
	}
}

// TestBypassMark: a socket with the bypass mark (the agent's own dials)
// reaches the real destination; the same dial without the mark does not.
// With ExemptPID set, a marked dial from any other process is reported.
func TestBypassMark(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	real := e.listenInNetns(t, e.peer4)
	// The test process plays the agent, as the agent passes os.Getpid().
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port(), ExemptPID: uint32(os.Getpid())})
	evs := collectEvents(t, ic)

	c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Mark: DefaultBypassMark, Payload: "direct"}, nil)
	conn := real.accept(t, acceptTimeout)
	if got := serveOnce(t, conn, "ok"); got != "direct" {
		t.Errorf("destination read %q; want %q", got, "direct")
	}
	res := c.wait(t)
	proxy.expectNone(t, 50*time.Millisecond)
	if res.Peer != real.addr().String() || res.Err != "" {
		t.Errorf("marked client: peer %s, err %q; want %v, no error", res.Peer, res.Err, real.addr())
	}
	pid := uint32(c.cmd.Process.Pid)
	isMarked := func(ev Event) bool { return ev.Kind == EventMarkBypass && ev.Origin.PID == pid }
	ev := evs.wait(t, "mark.bypass", isMarked)
	if ev.Proto != "tcp" || ev.Origin.Dst != real.addr() || ev.Origin.SocketCookie != res.Cookie || ev.Origin.Comm != "vigil-client" {
		t.Errorf("event = %+v; want tcp to %v, cookie %d, comm vigil-client", ev, real.addr(), res.Cookie)
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(evs.matching(isMarked)); n != 1 {
		t.Errorf("%d mark.bypass events; want 1", n)
	}

	// The mark does not hide UDP either.
	udp := e.startClient(t, cg, clientSpec{Op: "udp", Family: 4, Addr: netip.AddrPortFrom(e.peer4, 5353).String(), Mark: DefaultBypassMark}, nil)
	if res := udp.wait(t); res.Err != "" {
		t.Fatalf("marked UDP client: %s", res.Err)
	}
	udpPID := uint32(udp.cmd.Process.Pid)
	evs.wait(t, "udp.sendmsg", func(ev Event) bool { return ev.Kind == EventUDPSendmsg && ev.Origin.PID == udpPID })

	c = e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Mark: DefaultBypassMark + 1, Payload: "x"}, nil)
	conn = proxy.accept(t, acceptTimeout)
	if o := lookup(t, ic, conn); o.Dst != real.addr() {
		t.Errorf("unmarked client: Origin.Dst = %v; want %v", o.Dst, real.addr())
	}
	serveOnce(t, conn, "")
	c.wait(t)
	real.expectNone(t, 50*time.Millisecond)

	st, err := ic.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.SkippedMark != 1 || st.Redirected != 1 {
		t.Errorf("Stats: SkippedMark %d, Redirected %d; want 1, 1", st.SkippedMark, st.Redirected)
	}
}

// TestNotCaptured: loopback (outside the default capture set), ports
// outside a rule's range, and the proxy port itself go direct.
func TestNotCaptured(t *testing.T) {
	e := env(t)
	proxy := newProxy(t, 0)

	t.Run("loopback by default", func(t *testing.T) {
		cg := testCgroup(t)
		ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
		local := newServer(t, listen(t, "tcp4", "127.0.0.1:0"))
		c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: local.addr().String(), Payload: "lo"}, nil)
		serveOnce(t, local.accept(t, acceptTimeout), "")
		if res := c.wait(t); res.Err != "" {
			t.Fatalf("client: %s", res.Err)
		}
		proxy.expectNone(t, 50*time.Millisecond)
		if st, _ := ic.Stats(); st.SkippedNotCaptured != 1 || st.Redirected != 0 {
			t.Errorf("Stats: SkippedNotCaptured %d, Redirected %d; want 1, 0", st.SkippedNotCaptured, st.Redirected)
		}
	})

	t.Run("port outside the rule", func(t *testing.T) {
		cg := testCgroup(t)
		real := e.listenInNetns(t, e.peer4) // an ephemeral port, above 1000
		rules, err := ParseCapture(netip.PrefixFrom(e.peer4, 30).Masked().String() + ":1-1000")
		if err != nil {
			t.Fatal(err)
		}
		ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port(), Capture: rules})

		c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "x"}, nil)
		serveOnce(t, real.accept(t, acceptTimeout), "")
		c.wait(t)
		proxy.expectNone(t, 50*time.Millisecond)

		// Inside the range: redirected. v6 is not in the set at all.
		c = e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: netip.AddrPortFrom(e.peer4, 999).String(), Payload: "x"}, nil)
		conn := proxy.accept(t, acceptTimeout)
		if o := lookup(t, ic, conn); o.Dst.Port() != 999 {
			t.Errorf("Origin.Dst = %v; want port 999", o.Dst)
		}
		serveOnce(t, conn, "")
		c.wait(t)

		real6 := e.listenInNetns(t, e.peer6)
		c = e.startClient(t, cg, clientSpec{Op: "tcp", Family: 6, Addr: real6.addr().String(), Payload: "x"}, nil)
		serveOnce(t, real6.accept(t, acceptTimeout), "")
		c.wait(t)
		proxy.expectNone(t, 50*time.Millisecond)
	})

	t.Run("outside the cgroup", func(t *testing.T) {
		cg := testCgroup(t)
		open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
		real := e.listenInNetns(t, e.peer4)
		// The test process is not in cg: its own dial goes direct.
		conn, err := net.DialTimeout("tcp", real.addr().String(), acceptTimeout)
		if err != nil {
			t.Fatalf("dial from outside the cgroup: %v", err)
		}
		conn.Close()
		real.accept(t, acceptTimeout)
		proxy.expectNone(t, 50*time.Millisecond)
	})

	t.Run("proxy port", func(t *testing.T) {
		cg := testCgroup(t)
		// Loopback and 0.0.0.0 captured too: only the proxy-port rule keeps
		// the proxy itself from being redirected.
		rules, err := ParseCapture("0.0.0.0/0,127.0.0.0/8,0.0.0.0/32,::1/128")
		if err != nil {
			t.Fatal(err)
		}
		ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port(), Capture: rules})

		// Elsewhere the proxy port is an ordinary destination: redirected.
		dst := netip.AddrPortFrom(e.peer4, proxy.port())
		c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: dst.String(), Payload: "x"}, nil)
		conn := proxy.accept(t, acceptTimeout)
		if o := lookup(t, ic, conn); o.Dst != dst {
			t.Errorf("Origin.Dst = %v; want %v", o.Dst, dst)
		}
		serveOnce(t, conn, "")
		c.wait(t)

		// The proxy itself (loopback or unspecified address) is left alone.
		for _, tt := range []struct {
			family int
			addr   netip.Addr
		}{
			{4, netip.MustParseAddr("127.0.0.1")},
			{4, netip.MustParseAddr("0.0.0.0")},
			{6, netip.MustParseAddr("::1")},
			{6, netip.MustParseAddr("::ffff:127.0.0.1")},
		} {
			dst := netip.AddrPortFrom(tt.addr, proxy.port())
			c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: tt.family, Addr: dst.String(), Payload: "x"}, nil)
			conn := proxy.accept(t, acceptTimeout)
			if o, ok, _ := ic.Lookup(netip.MustParseAddrPort(conn.RemoteAddr().String())); ok {
				t.Errorf("connect to %v was redirected: Origin %+v", dst, o)
			}
			serveOnce(t, conn, "")
			// (The kernel itself turns 0.0.0.0 into 127.0.0.1.)
			if res := c.wait(t); res.Err != "" || res.Peer != dst.String() && !tt.addr.IsUnspecified() {
				t.Errorf("connect to %v: err %q, peer %s", dst, res.Err, res.Peer)
			}
		}
		if st, _ := ic.Stats(); st.Redirected != 1 || st.SkippedNotCaptured != 4 {
			t.Errorf("Stats: Redirected %d, SkippedNotCaptured %d; want 1, 4", st.Redirected, st.SkippedNotCaptured)
		}
	})
}

// TestExemptPID: connections of Config.ExemptPID (the agent's own) go
// direct and are not reported; other processes are still redirected.
func TestExemptPID(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	real := e.listenInNetns(t, e.peer4)

	// The client plays the agent: started first, it waits until Open knows its pid.
	agent := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "mine", Wait: true}, nil)
	pid := uint32(agent.cmd.Process.Pid)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port(), ExemptPID: pid})
	evs := collectEvents(t, ic)
	agent.proceed()
	if got := serveOnce(t, real.accept(t, acceptTimeout), "ok"); got != "mine" {
		t.Errorf("destination read %q; want %q", got, "mine")
	}
	if res := agent.wait(t); res.Err != "" || res.Peer != real.addr().String() {
		t.Fatalf("exempt client: err %q, peer %s; want no error, %v", res.Err, res.Peer, real.addr())
	}
	proxy.expectNone(t, 50*time.Millisecond)

	c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "x"}, nil)
	conn := proxy.accept(t, acceptTimeout)
	if o := lookup(t, ic, conn); o.Dst != real.addr() || o.PID == pid {
		t.Errorf("other client: Origin %+v; want Dst %v, not the exempt pid", o, real.addr())
	}
	serveOnce(t, conn, "")
	c.wait(t)
	real.expectNone(t, 20*time.Millisecond)

	if m := evs.matching(func(ev Event) bool { return ev.Origin.PID == pid }); len(m) != 0 {
		t.Errorf("events of the exempt pid: %+v; want none", m)
	}
	if st, _ := ic.Stats(); st.SkippedExempt != 1 || st.Redirected != 1 {
		t.Errorf("Stats: SkippedExempt %d, Redirected %d; want 1, 1", st.SkippedExempt, st.Redirected)
	}
}

// TestBoundDevice: a socket bound to a device (SO_BINDTODEVICE) cannot
// reach loopback: it goes direct, and a bound.device event says so.
func TestBoundDevice(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
	evs := collectEvents(t, ic)

	for _, tt := range []struct {
		name   string
		family int
		addr   netip.Addr
	}{{"v4", 4, e.peer4}, {"v6", 6, e.peer6}} {
		t.Run(tt.name, func(t *testing.T) {
			real := e.listenInNetns(t, tt.addr)
			c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: tt.family, Addr: real.addr().String(), Device: e.hostIf, Payload: "bound"}, nil)
			if got := serveOnce(t, real.accept(t, acceptTimeout), "ok"); got != "bound" {
				t.Errorf("destination read %q; want %q", got, "bound")
			}
			res := c.wait(t)
			if res.Err != "" || res.Reply != "ok" || res.Peer != real.addr().String() {
				t.Fatalf("client: err %q, reply %q, peer %s; want no error, ok, %v", res.Err, res.Reply, res.Peer, real.addr())
			}
			pid := uint32(c.cmd.Process.Pid)
			ev := evs.wait(t, "bound.device", func(ev Event) bool { return ev.Kind == EventBoundDevice && ev.Origin.PID == pid })
			if ev.Proto != "tcp" || ev.Origin.Dst != real.addr() || ev.Origin.SocketCookie != res.Cookie || ev.Origin.Comm != "vigil-client" {
				t.Errorf("event = %+v; want tcp to %v, cookie %d, comm vigil-client", ev, real.addr(), res.Cookie)
			}
		})
	}
	proxy.expectNone(t, 20*time.Millisecond)
	if st, _ := ic.Stats(); st.BoundDevice != 2 || st.Redirected != 0 || st.Origins != 0 {
		t.Errorf("Stats = %+v; want BoundDevice 2, nothing redirected or recorded", st)
	}
}

// TestUDPReported: UDP is never redirected; sendto with an address and
// connect are reported once per socket and destination.
func TestUDPReported(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
	evs := collectEvents(t, ic)

	for _, tt := range []struct {
		name   string
		family int
		dst    netip.AddrPort
	}{
		{"v4", 4, netip.AddrPortFrom(e.peer4, 5353)},
		{"v6", 6, netip.AddrPortFrom(e.peer6, 5353)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.startClient(t, cg, clientSpec{Op: "udp", Family: tt.family, Addr: tt.dst.String()}, &asUser{uid: 1234, gid: 5678})
			res := c.wait(t)
			if res.Err != "" {
				t.Fatalf("client: %s", res.Err)
			}
			pid := uint32(c.cmd.Process.Pid)
			connected := netip.AddrPortFrom(tt.dst.Addr(), tt.dst.Port()+1)
			for _, want := range []struct {
				kind EventKind
				dst  netip.AddrPort
			}{{EventUDPSendmsg, tt.dst}, {EventUDPConnect, connected}} {
				match := func(ev Event) bool {
					return ev.Kind == want.kind && ev.Origin.PID == pid && ev.Origin.Dst == want.dst
				}
				ev := evs.wait(t, string(want.kind), match)
				if ev.Proto != "udp" || ev.Origin.UID != 1234 || ev.Origin.Comm != "vigil-client" || ev.Origin.SocketCookie != res.Cookie {
					t.Errorf("%s event = %+v; want udp from uid 1234, comm vigil-client, cookie %d", want.kind, ev, res.Cookie)
				}
				time.Sleep(20 * time.Millisecond)
				if n := len(evs.matching(match)); n != 1 {
					t.Errorf("%d %s events for %v; want 1 (one per socket and destination)", n, want.kind, want.dst)
				}
			}
		})
	}
	proxy.expectNone(t, 20*time.Millisecond)
	if st, _ := ic.Stats(); st.UDPReported != 4 || st.UDPSeen != 4 {
		t.Errorf("Stats: UDPReported %d, UDPSeen %d; want 4, 4", st.UDPReported, st.UDPSeen)
	}
}

// TestFastOpenAndIOUring: sendto(MSG_FASTOPEN) and io_uring's
// IORING_OP_CONNECT go through the same connect hook.
func TestFastOpenAndIOUring(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
	evs := collectEvents(t, ic)

	t.Run("tfo redirected", func(t *testing.T) {
		mode, err := os.ReadFile("/proc/sys/net/ipv4/tcp_fastopen")
		if err != nil {
			t.Fatal(err)
		}
		if v := strings.TrimSpace(string(mode)); v == "0" || v == "2" {
			t.Skipf("net.ipv4.tcp_fastopen = %s in the host namespace: client Fast Open is off; the other-netns case below still covers the hook", v)
		}
		dst := netip.AddrPortFrom(e.peer4, 8080)
		c := e.startClient(t, cg, clientSpec{Op: "tfo", Family: 4, Addr: dst.String(), Payload: "fastopen"}, nil)
		conn := proxy.accept(t, acceptTimeout)
		o := lookup(t, ic, conn)
		if got := serveOnce(t, conn, "ok"); got != "fastopen" {
			t.Errorf("proxy read %q; want %q", got, "fastopen")
		}
		res := c.wait(t)
		if res.Err != "" {
			t.Fatalf("client: %s", res.Err)
		}
		if o.Dst != dst || o.PID != uint32(c.cmd.Process.Pid) {
			t.Errorf("Origin = %+v; want Dst %v, PID %d", o, dst, c.cmd.Process.Pid)
		}
		if res.Peer != dst.String() {
			t.Errorf("client getpeername = %s; want %v", res.Peer, dst)
		}
	})

	t.Run("tfo in another netns recorded", func(t *testing.T) {
		// Fast Open on, in the test's own namespace only.
		if out, err := exec.Command("ip", "netns", "exec", e.netns, "sysctl", "-qw", "net.ipv4.tcp_fastopen=3").CombinedOutput(); err != nil {
			t.Fatalf("enable tcp_fastopen in %s: %v: %s", e.netns, err, out)
		}
		real := e.listenInNetns(t, e.peer4)
		c := e.startClient(t, cg, clientSpec{Op: "tfo", Family: 4, Addr: real.addr().String(), Netns: e.netnsRef, Payload: "fastopen"}, nil)
		if got := serveOnce(t, real.accept(t, acceptTimeout), "ok"); got != "fastopen" {
			t.Errorf("destination read %q; want %q", got, "fastopen")
		}
		if res := c.wait(t); res.Err != "" || res.Reply != "ok" {
			t.Fatalf("client: %q, reply %q", res.Err, res.Reply)
		}
		pid := uint32(c.cmd.Process.Pid)
		evs.wait(t, "netns.bypass", func(ev Event) bool {
			return ev.Kind == EventOtherNetns && ev.Origin.PID == pid && ev.Origin.Dst == real.addr()
		})
	})

	for _, tt := range []struct {
		name   string
		family int
		dst    netip.AddrPort
	}{
		{"io_uring v4", 4, netip.AddrPortFrom(e.peer4, 8443)},
		{"io_uring v6", 6, netip.AddrPortFrom(e.peer6, 8443)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.startClient(t, cg, clientSpec{Op: "iouring", Family: tt.family, Addr: tt.dst.String(), Payload: "uring"}, nil)
			type accepted struct{ o Origin }
			got := make(chan accepted, 1)
			go func() {
				select {
				case conn := <-proxy.conns:
					remote := netip.MustParseAddrPort(conn.RemoteAddr().String())
					o, _, _ := ic.Lookup(remote)
					conn.SetDeadline(time.Now().Add(5 * time.Second))
					buf := make([]byte, 16)
					conn.Read(buf)
					conn.Write([]byte("ok"))
					conn.Close()
					got <- accepted{o}
				case <-time.After(acceptTimeout):
					close(got)
				}
			}()
			res := c.wait(t)
			if res.Skipped != "" {
				t.Skipf("io_uring is not available here: %s", res.Skipped)
			}
			if res.Err != "" {
				t.Fatalf("client: %s", res.Err)
			}
			a, ok := <-got
			if !ok {
				t.Fatal("io_uring connect did not reach the proxy")
			}
			if a.o.Dst != tt.dst || a.o.PID != uint32(c.cmd.Process.Pid) {
				t.Errorf("Origin = %+v; want Dst %v, PID %d", a.o, tt.dst, c.cmd.Process.Pid)
			}
			if res.Peer != tt.dst.String() || res.Reply != "ok" {
				t.Errorf("client: peer %s, reply %q; want %v, ok", res.Peer, res.Reply, tt.dst)
			}
		})
	}
}

// TestOtherNetns: a client of the cgroup in another network namespace is
// reported, not redirected, and still reaches its own destination.
func TestOtherNetns(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
	evs := collectEvents(t, ic)
	real := e.listenInNetns(t, e.peer4)

	c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Netns: e.netnsRef, Payload: "mine"}, nil)
	if got := serveOnce(t, real.accept(t, acceptTimeout), "ok"); got != "mine" {
		t.Errorf("destination read %q; want %q", got, "mine")
	}
	res := c.wait(t)
	if res.Err != "" || res.Reply != "ok" || res.Peer != real.addr().String() {
		t.Fatalf("client: err %q, reply %q, peer %s; want no error, ok, %v", res.Err, res.Reply, res.Peer, real.addr())
	}
	proxy.expectNone(t, 20*time.Millisecond)

	pid := uint32(c.cmd.Process.Pid)
	ev := evs.wait(t, "netns.bypass", func(ev Event) bool { return ev.Kind == EventOtherNetns && ev.Origin.PID == pid })
	if ev.Proto != "tcp" || ev.Origin.Dst != real.addr() || ev.Origin.NetnsCookie == ic.NetnsCookie() || ev.Origin.SocketCookie != res.Cookie {
		t.Errorf("event = %+v; want tcp to %v from another netns (agent's is %d), cookie %d", ev, real.addr(), ic.NetnsCookie(), res.Cookie)
	}
	if st, _ := ic.Stats(); st.OtherNetns != 1 || st.Redirected != 0 || st.Origins != 0 {
		t.Errorf("Stats = %+v; want OtherNetns 1, nothing redirected or recorded", st)
	}
}

// TestOtherNetnsReportedOnce: a socket in an unserved namespace that
// connects again and again is reported once per destination, so one busy
// workload cannot fill the ring buffer; the counter still sees every try.
func TestOtherNetnsReportedOnce(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})
	evs := collectEvents(t, ic)

	const tries = 50
	dst := netip.AddrPortFrom(e.peer4, 9) // nothing listens: each connect() is refused
	var pids []uint32
	for range 2 { // two sockets: one report each
		c := e.startClient(t, cg, clientSpec{Op: "retry", Family: 4, Addr: dst.String(), Netns: e.netnsRef, Count: tries}, nil)
		res := c.wait(t)
		if res.Err != "" || res.Errnos[int(unix.ECONNREFUSED)] != tries {
			t.Fatalf("client: err %q, results by errno %v; want %d refused", res.Err, res.Errnos, tries)
		}
		pid := uint32(c.cmd.Process.Pid)
		pids = append(pids, pid)
		evs.wait(t, "netns.bypass", func(ev Event) bool { return ev.Kind == EventOtherNetns && ev.Origin.PID == pid })
	}
	proxy.expectNone(t, 50*time.Millisecond)
	for _, pid := range pids {
		if got := evs.matching(func(ev Event) bool { return ev.Kind == EventOtherNetns && ev.Origin.PID == pid }); len(got) != 1 {
			t.Errorf("pid %d: %d netns.bypass events for %d connects on one socket; want 1", pid, len(got), tries)
		}
	}
	if st, _ := ic.Stats(); st.OtherNetns != 2*tries || st.EventsLost != 0 {
		t.Errorf("Stats: OtherNetns %d, EventsLost %d; want %d, 0", st.OtherNetns, st.EventsLost, 2*tries)
	}
}

// TestMapFull: when an origin cannot be stored the connection goes through
// unredirected and a map.full event says so.
func TestMapFull(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port(), originsMax: 1})
	evs := collectEvents(t, ic)
	real := e.listenInNetns(t, e.peer4)

	// The first connection takes the only slot and holds it.
	first := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: netip.AddrPortFrom(e.peer4, 80).String(), Payload: "hold"}, nil)
	held := proxy.accept(t, acceptTimeout)
	lookup(t, ic, held)

	second := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "through"}, nil)
	if got := serveOnce(t, real.accept(t, acceptTimeout), "ok"); got != "through" {
		t.Errorf("destination read %q; want %q", got, "through")
	}
	if res := second.wait(t); res.Err != "" {
		t.Fatalf("second client: %s", res.Err)
	}
	pid := uint32(second.cmd.Process.Pid)
	evs.wait(t, "map.full", func(ev Event) bool {
		return ev.Kind == EventMapFull && ev.Origin.PID == pid && ev.Origin.Dst == real.addr()
	})
	serveOnce(t, held, "")
	first.wait(t)
	if st, _ := ic.Stats(); st.MapFull != 1 {
		t.Errorf("Stats.MapFull = %d; want 1", st.MapFull)
	}
}

// TestNoGrowth: 10,000 sequential short connections leave the maps as
// empty as they found them.
func TestNoGrowth(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})

	const n = 10000
	dst := netip.AddrPortFrom(e.peer4, 80)
	found := make(chan int, 1)
	go func() {
		ok := 0
		for range n {
			select {
			case conn := <-proxy.conns:
				if _, hit, _ := ic.Lookup(netip.MustParseAddrPort(conn.RemoteAddr().String())); hit {
					ok++
				}
				conn.Close()
			case <-time.After(acceptTimeout):
				found <- ok
				return
			}
		}
		found <- ok
	}()
	start := time.Now()
	res := e.run(t, cg, clientSpec{Op: "loop", Family: 4, Addr: dst.String(), Count: n}, nil)
	if res.Err != "" {
		t.Fatalf("client: %s", res.Err)
	}
	if got := <-found; got != n {
		t.Errorf("Lookup found %d of %d connections", got, n)
	}
	t.Logf("%d connections in %v", n, time.Since(start))

	const slack = 8
	var st Stats
	deadline := time.Now().Add(5 * time.Second)
	for {
		var err error
		if st, err = ic.Stats(); err != nil {
			t.Fatal(err)
		}
		if st.Origins <= slack && st.Tuples <= slack || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("stats after the run: %+v", st)
	if st.Origins > slack || st.Tuples > slack {
		t.Errorf("after %d connections: %d origins, %d tuples left; want at most %d each", n, st.Origins, st.Tuples, slack)
	}
	if st.Redirected != n || st.Established != n {
		t.Errorf("Stats: Redirected %d, Established %d; want %d", st.Redirected, st.Established, n)
	}
}

// TestShortLivedClients: processes that exit right after connect() are
// still named correctly when the proxy gets to their connections.
func TestShortLivedClients(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})

	const n = 16
	pids := make(map[uint32]bool)
	var clients []*client
	for j := range n {
		dst := netip.AddrPortFrom(e.peer4, uint16(7000+j))
		c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: dst.String(), Exit: true}, &asUser{uid: 4321, gid: 4321})
		clients = append(clients, c)
		pids[uint32(c.cmd.Process.Pid)] = true
	}
	for _, c := range clients {
		if res := c.wait(t); res.Err != "" {
			t.Fatalf("client: %s", res.Err)
		}
	}
	// Every client has exited; only now does the proxy accept.
	for range n {
		conn := proxy.accept(t, acceptTimeout)
		o := lookup(t, ic, conn)
		conn.Close()
		if !pids[o.PID] || o.Comm != "vigil-client" || o.UID != 4321 || o.Dst.Addr() != e.peer4 || o.Dst.Port() < 7000 || o.Dst.Port() >= 7000+n {
			t.Errorf("Origin = %+v; want one of the exited clients (comm vigil-client, uid 4321) to %v:7000-%d", o, e.peer4, 7000+n-1)
		}
		delete(pids, o.PID)
	}
}

// mountBPFFS mounts a private bpffs for pins, unmounted (pins released)
// when t ends.
func mountBPFFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// TestFailClosed: with PinPath, Close leaves the programs redirecting, so
// with no proxy connections fail; the next Open adopts the pins.
func TestFailClosed(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	pins := mountBPFFS(t)
	real := e.listenInNetns(t, e.peer4)
	proxy := newProxy(t, 0)
	port := proxy.port()
	cfg := Config{CgroupPath: cg, ProxyPort: port, PinPath: pins}

	ic, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "x"}, nil)
	conn := proxy.accept(t, acceptTimeout)
	lookup(t, ic, conn)
	serveOnce(t, conn, "")
	c.wait(t)

	// The agent dies: its proxy and interceptor go away, the pins stay.
	proxy.close()
	if err := ic.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	res := e.run(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "x"}, nil)
	if res.Errno != int(unix.ECONNREFUSED) {
		t.Errorf("connect with the agent gone: %q; want connection refused (fail-closed)", res.Err)
	}
	real.expectNone(t, 50*time.Millisecond)

	// The agent restarts: same port, same pins, a narrower capture set.
	proxy = newProxy(t, port)
	cfg.Capture = []CaptureRule{{Prefix: netip.MustParsePrefix("0.0.0.0/0")}}
	ic = open(t, cfg)
	for _, h := range hooks {
		if n := attachedPrograms(t, cg, h); n != 1 {
			t.Errorf("%d programs on %s after adoption; want 1", n, h.name)
		}
	}
	// The adopted capture map holds the new set only: 0.0.0.0/0 and the
	// four local prefixes, not the ::/0 of the first run. The refused
	// connection left nothing behind in the adopted origins map.
	if st, err := ic.Stats(); err != nil || st.Capture != 1+len(localPrefixes) || st.Origins != 0 || st.Tuples != 0 {
		t.Errorf("Stats() after adoption = %+v, %v; want %d capture prefixes, no origins or tuples", st, err, 1+len(localPrefixes))
	}
	c = e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "again"}, nil)
	conn = proxy.accept(t, acceptTimeout)
	if o := lookup(t, ic, conn); o.Dst != real.addr() {
		t.Errorf("after adoption: Origin.Dst = %v; want %v", o.Dst, real.addr())
	}
	serveOnce(t, conn, "")
	c.wait(t)

	// Unpin detaches: connections go direct again.
	ic.Close()
	if err := Unpin(pins); err != nil {
		t.Fatalf("Unpin: %v", err)
	}
	c = e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "direct"}, nil)
	serveOnce(t, real.accept(t, acceptTimeout), "")
	c.wait(t)
}

// TestFailOpen: without PinPath, Close detaches and connections go direct.
func TestFailOpen(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	real := e.listenInNetns(t, e.peer4)
	proxy := newProxy(t, 0)
	ic, err := Open(t.Context(), Config{CgroupPath: cg, ProxyPort: proxy.port()})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "x"}, nil)
	conn := proxy.accept(t, acceptTimeout)
	serveOnce(t, conn, "")
	c.wait(t)

	if err := ic.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, h := range hooks {
		if n := attachedPrograms(t, cg, h); n != 0 {
			t.Errorf("%d programs on %s after Close; want 0", n, h.name)
		}
	}
	c = e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: real.addr().String(), Payload: "direct"}, nil)
	if got := serveOnce(t, real.accept(t, acceptTimeout), "ok"); got != "direct" {
		t.Errorf("destination read %q; want %q", got, "direct")
	}
	if res := c.wait(t); res.Err != "" || res.Reply != "ok" {
		t.Errorf("client after Close: err %q, reply %q", res.Err, res.Reply)
	}
	proxy.expectNone(t, 20*time.Millisecond)
}

// attachedPrograms counts the programs attached to cgroup at h's hook.
func attachedPrograms(t *testing.T, cgroup string, h hook) int {
	t.Helper()
	res, err := link.QueryPrograms(link.QueryOptions{Target: openFd(t, cgroup), Attach: h.attach})
	if err != nil {
		t.Fatalf("query %s: %v", h.name, err)
	}
	return len(res.Programs)
}

func openFd(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// TestOpenErrors: what Open says when it cannot start.
func TestOpenErrors(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)

	t.Run("not privileged", func(t *testing.T) {
		res := e.run(t, cg, clientSpec{Op: "open", Cgroup: cg}, &asUser{uid: 65534, gid: 65534})
		if !res.IsPerm || !strings.Contains(res.Err, hintPermission) || strings.Contains(res.Err, "\n") {
			t.Errorf("Open as nobody = %q (ErrPermission: %v); want one line matching ErrPermission that says %q", res.Err, res.IsPerm, hintPermission)
		}
	})
	t.Run("not a cgroup", func(t *testing.T) {
		_, err := Open(t.Context(), Config{CgroupPath: t.TempDir()})
		if !errors.Is(err, ErrNoCgroupV2) {
			t.Errorf("Open(CgroupPath: tmpdir) = %v; want ErrNoCgroupV2", err)
		}
	})
	t.Run("pin path not bpffs", func(t *testing.T) {
		_, err := Open(t.Context(), Config{CgroupPath: cg, PinPath: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "not on a bpffs") {
			t.Errorf("Open(PinPath: tmpdir) = %v; want a bpffs error", err)
		}
	})
	t.Run("bad capture", func(t *testing.T) {
		rules := []CaptureRule{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), PortLow: 10, PortHigh: 1}}
		if _, err := Open(t.Context(), Config{CgroupPath: cg, Capture: rules}); err == nil {
			t.Error("Open with a backwards port range succeeded")
		}
	})
}

func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestMPTCP: an MPTCP connect() reaches the connect hook through its first
// subflow, a TCP socket, so it is redirected and attributed like TCP. (The
// getpeername hook sees the MPTCP socket, whose cookie differs from the
// subflow's: there the proxy's address shows; docs/INTERCEPTION.md.)
func TestMPTCP(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	proxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: proxy.port()})

	dst := netip.AddrPortFrom(e.peer4, 3306)
	c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Proto: unix.IPPROTO_MPTCP, Addr: dst.String(), Payload: "m"}, nil)
	got := make(chan Origin, 1)
	go func() {
		select {
		case conn := <-proxy.conns:
			o, _, _ := ic.Lookup(netip.MustParseAddrPort(conn.RemoteAddr().String()))
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 16)
			conn.Read(buf)
			conn.Close()
			got <- o
		case <-time.After(acceptTimeout):
			close(got)
		}
	}()
	res := c.wait(t)
	if res.Errno == int(unix.EPROTONOSUPPORT) || res.Errno == int(unix.ENOPROTOOPT) {
		t.Skipf("MPTCP is not available here (kernel without CONFIG_MPTCP, or net.mptcp.enabled=0): %s", res.Err)
	}
	if res.Err != "" {
		t.Fatalf("client: %s", res.Err)
	}
	o, ok := <-got
	if !ok {
		t.Fatal("MPTCP connect did not reach the proxy")
	}
	if o.Dst != dst || o.PID != uint32(c.cmd.Process.Pid) || o.Comm != "vigil-client" {
		t.Errorf("Origin = %+v; want Dst %v, PID %d, comm vigil-client", o, dst, c.cmd.Process.Pid)
	}
}

// TestReadEventsEnds: ReadEvents returns nil when its context ends and when
// the Interceptor is closed.
func TestReadEventsEnds(t *testing.T) {
	env(t)
	cg := testCgroup(t)
	ic, err := Open(t.Context(), Config{CgroupPath: cg})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer ic.Close()

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ic.ReadEvents(ctx, func(Event) {}) }()
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ReadEvents after cancel = %v; want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadEvents did not return after its context ended")
	}

	go func() { done <- ic.ReadEvents(t.Context(), func(Event) {}) }()
	time.Sleep(20 * time.Millisecond)
	if err := ic.ReadEvents(t.Context(), func(Event) {}); err == nil {
		t.Error("a second concurrent ReadEvents succeeded; want an error")
	}
	if err := ic.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ReadEvents after Close = %v; want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("ReadEvents did not return after Close")
	}
}
