//go:build linux

// The proxy runs on Linux only (SO_MARK, TCP_INFO, splice), and so do its
// tests: they drive a real one.

package proxy

import (
	"context"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"golang.org/x/sys/unix"
)

// requireNetAdmin skips t unless outbound sockets can be marked (root or
// CAP_NET_ADMIN). With VIGIL_REQUIRE_PRIVILEGED=1 (CI, which runs as root)
// it fails instead, so the proxy tests cannot silently stop running.
func requireNetAdmin(t testing.TB) {
	t.Helper()
	if err := checkMark(DefaultDialMark); err != nil {
		testenv.Need(t, "CAP_NET_ADMIN for SO_MARK", err.Error())
	}
}

// mapResolver stands in for the kernel's record of redirected connections:
// a map from client address to Origin, filled before the client connects,
// as the kernel does.
type mapResolver struct {
	mu sync.Mutex
	m  map[netip.AddrPort]intercept.Origin
}

func (r *mapResolver) Lookup(client netip.AddrPort) (intercept.Origin, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.m[client]
	return o, ok, nil
}

func (r *mapResolver) add(client netip.AddrPort, o intercept.Origin) {
	r.mu.Lock()
	r.m[client] = o
	r.mu.Unlock()
}

func testSigner(t testing.TB) signature.SignerVerifier { return testenv.Signer(t) }

// env is a proxy serving on loopback with a real audit log in a temp dir.
type env struct {
	log    *auditlog.Log
	dir    string
	res    *mapResolver
	p      *Proxy
	addr   netip.AddrPort // the IPv4 listener
	serve  chan error
	cancel context.CancelFunc // ends Serve's context
	self   intercept.Origin
}

func newEnv(t testing.TB, configure func(*Config)) *env {
	t.Helper()
	requireNetAdmin(t)
	ctx := context.Background()
	dir := t.TempDir()
	l, err := auditlog.Open(ctx, dir, auditlog.Options{Signer: testSigner(t), Host: "test-host"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{log: l, dir: dir, res: &mapResolver{m: make(map[netip.AddrPort]intercept.Origin)}, serve: make(chan error, 1)}
	cfg := Config{Listen: []string{"127.0.0.1:0", "[::1]:0"}, Resolver: e.res, Auditor: l}
	if configure != nil {
		configure(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	for _, a := range p.Addrs() {
		if a.Addr().Is4() {
			e.addr = a
		}
	}
	comm, _ := os.ReadFile("/proc/self/comm")
	e.self = intercept.Origin{
		PID: uint32(os.Getpid()), TID: uint32(unix.Gettid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Comm: strings.TrimSpace(string(comm)), CgroupID: 4242, NetnsCookie: 4097,
	}
	sctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	go func() { e.serve <- p.Serve(sctx) }()
	t.Cleanup(func() {
		defer cancel()
		dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
		defer dcancel()
		_ = p.Shutdown(dctx)
		<-e.serve
		_ = l.Close(ctx)
	})
	return e
}

// dial connects to the proxy as a redirected client headed for dst: like
// the kernel, it records the origin under the client's address before the
// connection is made.
func (e *env) dial(t testing.TB, dst netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, _, err := e.dialTo(e.addr, dst, true)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// dialTo connects to the proxy listening at proxy from a loopback address
// bound before connect, which it returns; register records the origin for
// it first.
func (e *env) dialTo(proxy, dst netip.AddrPort, register bool) (*net.TCPConn, netip.AddrPort, error) {
	o := e.self
	o.Dst = dst
	var client netip.AddrPort
	d := net.Dialer{Control: func(network, _ string, rc syscall.RawConn) error {
		var berr error
		err := rc.Control(func(fd uintptr) {
			// Each client gets a fresh address, so that it never meets a
			// 4-tuple still in TIME_WAIT from an earlier connection (a
			// port bound before connect cannot reuse one the way
			// connect's own port choice can): a random 127/8 address
			// for IPv4, a random port with SO_REUSEADDR on ::1.
			if !proxy.Addr().Is6() {
				ip := [4]byte{127, byte(1 + mrand.IntN(254)), byte(mrand.IntN(256)), byte(1 + mrand.IntN(254))}
				berr = unix.Bind(int(fd), &unix.SockaddrInet4{Addr: ip})
			} else {
				if berr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); berr != nil {
					return
				}
				for range 100 {
					sa := &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16(), Port: 20000 + mrand.IntN(12000)}
					if berr = unix.Bind(int(fd), sa); !errors.Is(berr, unix.EADDRINUSE) {
						break
					}
				}
			}
			if berr != nil {
				return
			}
			var got unix.Sockaddr
			if got, berr = unix.Getsockname(int(fd)); berr != nil {
				return
			}
			switch a := got.(type) {
			case *unix.SockaddrInet4:
				client = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
			case *unix.SockaddrInet6:
				client = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
			}
			if register {
				e.res.add(client, o)
			}
		})
		if err != nil {
			return err
		}
		return berr
	}}
	for attempt := 0; ; attempt++ {
		c, err := d.Dial("tcp", proxy.String())
		// The 4-tuple is still in TIME_WAIT: try another address.
		if (errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL)) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, client, err
		}
		return c.(*net.TCPConn), client, nil
	}
}

// dialReset connects as dial does (registering the origin if register),
// writes a little, and checks that the proxy resets the connection: while
// the client reads, or already while it connects (loopback is fast enough
// for the reset to beat connect's return). It returns the client address.
func (e *env) dialReset(t testing.TB, dst netip.AddrPort, register bool) netip.AddrPort {
	t.Helper()
	c, client, err := e.dialTo(e.addr, dst, register)
	if errors.Is(err, syscall.ECONNRESET) {
		return client
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The reset may arrive before this write, which then reports it (and
	// the read after it sees only EOF).
	if _, err := c.Write([]byte("secret")); errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return client
	}
	expectReset(t, c)
	return client
}

// entries waits until everything appended is durable and returns the log.
func (e *env) entries(t testing.TB) []auditlog.Entry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := e.log.Stats()
		if st.DurableSeq+1 >= st.NextSeq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log not durable: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return onDisk(t, e.dir)
}

// onDisk returns the entries in the log's segment files now.
func onDisk(t testing.TB, dir string) []auditlog.Entry {
	t.Helper()
	var out []auditlog.Entry
	if err := auditlog.Scan(context.Background(), dir, 1, func(r auditlog.Record) error {
		out = append(out, r.Entry)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitIdle waits until the proxy has no connection in hand.
func (e *env) waitIdle(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.p.Stats().Active != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("proxy still has %d connections", e.p.Stats().Active)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ofType(es []auditlog.Entry, typ auditlog.Type) []auditlog.Entry {
	var out []auditlog.Entry
	for _, e := range es {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// server is a destination on loopback running handle for each connection.
func server(t testing.TB, handle func(*net.TCPConn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return addrPort(ln.Addr())
}

// echo copies what it reads back, then half-closes.
func echo(c *net.TCPConn) {
	if _, err := io.Copy(c, c); err == nil {
		_ = c.CloseWrite()
	}
}

// deadPort returns a loopback port nothing listens on.
func deadPort(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := addrPort(ln.Addr())
	ln.Close()
	return a
}

// expectReset reads from c until it fails and checks that it was reset.
func expectReset(t testing.TB, c *net.TCPConn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read from client = %v; want connection reset", err)
	}
}

func attrInt(t testing.TB, e auditlog.Entry, k string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(e.Attr(k), 10, 64)
	if err != nil {
		t.Errorf("entry %d attr %s = %q; want an integer", e.Seq, k, e.Attr(k))
	}
	return n
}
