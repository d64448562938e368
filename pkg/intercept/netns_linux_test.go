package intercept

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/netns"
)

// TestServedNetns: once a namespace is served (a proxy listener inside it
// and its cookie in the map), connects from there are redirected to
// loopback inside that namespace, found by LookupNetns with its cookie
// only, with getpeername showing the original destination; after
// UnserveNetns they are reported again.
func TestServedNetns(t *testing.T) {
	e := env(t)
	cg := testCgroup(t)
	hostProxy := newProxy(t, 0)
	ic := open(t, Config{CgroupPath: cg, ProxyPort: hostProxy.port(), MaxNetns: 4})
	evs := collectEvents(t, ic)

	h, err := netns.Open(e.netnsRef, netns.ID{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var lns []net.Listener
	for _, a := range []string{"127.0.0.1", "[::1]"} {
		ln, err := h.Listen(context.Background(), nil, fmt.Sprintf("%s:%d", a, hostProxy.port()))
		if err != nil {
			t.Fatalf("listen in %s: %v", e.netns, err)
		}
		lns = append(lns, ln)
	}
	inner := newServer(t, lns...)
	cookie, err := netns.Cookie(lns[0].(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	if err := ic.ServeNetns(cookie); err != nil {
		t.Fatalf("ServeNetns: %v", err)
	}
	if err := ic.ServeNetns(ic.NetnsCookie()); err != nil {
		t.Errorf("ServeNetns(own namespace) = %v; want a no-op", err)
	}
	if st, _ := ic.Stats(); st.Netns != 1 {
		t.Errorf("Stats.Netns = %d; want 1", st.Netns)
	}

	for _, dst := range []netip.AddrPort{
		netip.AddrPortFrom(e.peer4, 9), // nothing listens there: only the redirect answers
		netip.AddrPortFrom(e.peer6, 9),
	} {
		t.Run(dst.String(), func(t *testing.T) {
			family := 4
			if dst.Addr().Is6() {
				family = 6
			}
			c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: family, Addr: dst.String(), Netns: e.netnsRef, Payload: "pod"}, nil)
			conn := inner.accept(t, acceptTimeout)
			remote := netip.MustParseAddrPort(conn.RemoteAddr().String())
			if _, ok, _ := ic.Lookup(remote); ok {
				t.Errorf("Lookup(%v) in the agent's namespace found a pod connection", remote)
			}
			o, ok, err := ic.LookupNetns(cookie, remote)
			if err != nil || !ok {
				t.Fatalf("LookupNetns(%d, %v) = _, %v, %v; want the origin", cookie, remote, ok, err)
			}
			if o.Dst != dst || o.NetnsCookie != cookie || o.PID != uint32(c.cmd.Process.Pid) {
				t.Errorf("origin = %+v; want dst %v, netns %d, pid %d", o, dst, cookie, c.cmd.Process.Pid)
			}
			if got := serveOnce(t, conn, "ok"); got != "pod" {
				t.Errorf("proxy in the namespace read %q; want pod", got)
			}
			res := c.wait(t)
			if res.Err != "" || res.Reply != "ok" || res.Peer != dst.String() {
				t.Errorf("client: err %q, reply %q, peer %s; want ok from %v", res.Err, res.Reply, res.Peer, dst)
			}
		})
	}
	hostProxy.expectNone(t, 20*time.Millisecond)
	if st, _ := ic.Stats(); st.RedirectedNetns != 2 || st.Redirected != 2 || st.OtherNetns != 0 {
		t.Errorf("Stats = %+v; want 2 redirected from the served namespace, none reported", st)
	}

	if err := ic.UnserveNetns(cookie); err != nil {
		t.Fatal(err)
	}
	if served, _ := ic.ServedNetns(); len(served) != 0 {
		t.Errorf("ServedNetns after UnserveNetns = %v; want none", served)
	}
	c := e.startClient(t, cg, clientSpec{Op: "tcp", Family: 4, Addr: netip.AddrPortFrom(e.peer4, 9).String(), Netns: e.netnsRef, Exit: true}, nil)
	c.wait(t)
	pid := uint32(c.cmd.Process.Pid)
	evs.wait(t, "netns.bypass after UnserveNetns", func(ev Event) bool { return ev.Kind == EventOtherNetns && ev.Origin.PID == pid })
	inner.expectNone(t, 20*time.Millisecond)
}

// TestServeNetnsLimit: the served map holds MaxNetns namespaces; PruneNetns
// keeps only the given ones.
func TestServeNetnsLimit(t *testing.T) {
	env(t)
	ic := open(t, Config{CgroupPath: testCgroup(t), ProxyPort: newProxy(t, 0).port(), MaxNetns: 2})
	for _, c := range []uint64{1001, 1002} {
		if err := ic.ServeNetns(c); err != nil {
			t.Fatalf("ServeNetns(%d): %v", c, err)
		}
	}
	if err := ic.ServeNetns(1003); !errors.Is(err, ErrNetnsFull) {
		t.Errorf("ServeNetns beyond MaxNetns = %v; want ErrNetnsFull", err)
	}
	if err := ic.PruneNetns(map[uint64]bool{1002: true}); err != nil {
		t.Fatal(err)
	}
	if served, _ := ic.ServedNetns(); len(served) != 1 || served[0] != 1002 {
		t.Errorf("ServedNetns after PruneNetns = %v; want [1002]", served)
	}
}
