//go:build linux

package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"golang.org/x/sys/unix"
)

// TestRelayBothWays sends 1 MiB of random bytes through the proxy to an
// echo server while reading the echo, over IPv4 and IPv6 listeners.
func TestRelayBothWays(t *testing.T) {
	e := newEnv(t, nil)
	dst := server(t, echo)
	for _, proxyAddr := range e.p.Addrs() {
		t.Run(proxyAddr.Addr().String(), func(t *testing.T) {
			c, _, err := e.dialTo(proxyAddr, dst, true)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := make([]byte, 1<<20)
			rand.Read(want)
			werr := make(chan error, 1)
			go func() {
				_, err := c.Write(want)
				if err == nil {
					err = c.CloseWrite()
				}
				werr <- err
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-werr; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("echo through proxy: got %d bytes, want the %d sent", len(got), len(want))
			}
		})
	}
	e.waitIdle(t)
	es := e.entries(t)
	closes := ofType(es, auditlog.ConnClose)
	if len(closes) != len(e.p.Addrs()) {
		t.Fatalf("conn.close entries = %d; want %d", len(closes), len(e.p.Addrs()))
	}
	for _, cl := range closes {
		if in, out := attrInt(t, cl, "bytes_in"), attrInt(t, cl, "bytes_out"); in != 1<<20 || out != 1<<20 {
			t.Errorf("conn.close bytes_in, bytes_out = %d, %d; want %d each", in, out, 1<<20)
		}
		if r := cl.Attr("reason"); r != reasonClosed {
			t.Errorf("conn.close reason = %q; want %q", r, reasonClosed)
		}
	}
	opens := ofType(es, auditlog.ConnOpen)
	if len(opens) != len(closes) {
		t.Fatalf("conn.open entries = %d; want %d", len(opens), len(closes))
	}
	o := opens[0]
	if o.Dst != dst.String() || o.Proto != "tcp" || o.Decision != auditlog.Allow || o.Rule != RuleDefaultAllow {
		t.Errorf("conn.open = %+v; want tcp to %s, allow by %s", o, dst, RuleDefaultAllow)
	}
	id := o.Identity
	exe, _ := os.Executable()
	if id.PID != uint64(os.Getpid()) || id.UID != uint64(os.Getuid()) || id.CgroupID != 4242 || id.NetnsCookie != 4097 || id.Exe != exe || id.Cmdline == "" {
		t.Errorf("conn.open identity = %+v; want pid %d, uid %d, cgroup id 4242, netns 4097, exe %s, a cmdline", id, os.Getpid(), os.Getuid(), exe)
	}
	if s := e.p.Stats(); s.Relayed != 2 || s.BytesIn != 2<<20 || s.BytesOut != 2<<20 || s.Refused != 0 {
		t.Errorf("Stats() = %+v; want 2 relayed, 2 MiB each way", s)
	}
}

// TestHalfClose: the client closes its sending side, the server sees EOF
// and still gets its response through.
func TestHalfClose(t *testing.T) {
	e := newEnv(t, nil)
	response := bytes.Repeat([]byte("response "), 100_000)
	serverGot := make(chan []byte, 1)
	dst := server(t, func(c *net.TCPConn) {
		req, err := io.ReadAll(c) // returns at the client's FIN
		if err != nil {
			serverGot <- nil
			return
		}
		serverGot <- req
		time.Sleep(50 * time.Millisecond) // the response goes out after the client's half-close
		c.Write(response)
	})
	c := e.dial(t, dst)
	defer c.Close()
	if _, err := c.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := <-serverGot; string(got) != "request" {
		t.Fatalf("server read %q before EOF; want %q", got, "request")
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, response) {
		t.Fatalf("client got %d bytes after its half-close; want %d", len(got), len(response))
	}
}

// slowAuditor is the real log behind a slow disk: conn.open entries take
// 100ms to be appended, so a proxy that did not wait would be caught.
type slowAuditor struct{ *auditlog.Log }

func (a slowAuditor) Append(ctx context.Context, e auditlog.Entry) (*auditlog.Ack, error) {
	if e.Type == auditlog.ConnOpen {
		time.Sleep(100 * time.Millisecond)
	}
	return a.Log.Append(ctx, e)
}

// TestOpenDurableBeforeFirstByte checks, at the moment the destination
// accepts and when the first byte reaches it, that conn.open is on disk.
func TestOpenDurableBeforeFirstByte(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Auditor = slowAuditor{c.Auditor.(*auditlog.Log)} })
	type check struct {
		atAccept, atRead int // conn.open entries durable at accept, at first byte
	}
	checks := make(chan check, 1)
	// The writer acknowledges an entry after writing and syncing it, so an
	// entry in the segment file is one whose Ack was at most an fsync away;
	// one not in the file has certainly not been acknowledged.
	durableOpens := func() int { return len(ofType(onDisk(t, e.dir), auditlog.ConnOpen)) }
	dst := server(t, func(c *net.TCPConn) {
		var ck check
		ck.atAccept = durableOpens()
		b := make([]byte, 1)
		if _, err := io.ReadFull(c, b); err == nil {
			ck.atRead = durableOpens()
		}
		checks <- ck
		c.Write(b)
	})
	c := e.dial(t, dst)
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	ck := <-checks
	if ck.atRead != 1 {
		t.Errorf("durable conn.open entries when the first byte arrived = %d; want 1", ck.atRead)
	}
	t.Logf("durable conn.open entries when the destination accepted: %d (the dial runs alongside the append)", ck.atAccept)
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
}

type denyDecider struct{ dst netip.AddrPort }

func (d denyDecider) Decide(_ context.Context, c *Conn) Decision {
	if c.Origin.Dst == d.dst {
		return Decision{Verdict: auditlog.Deny, Rule: "no-db"}
	}
	return Decision{Verdict: auditlog.Audit, Rule: "flag-rest"}
}

func TestDeny(t *testing.T) {
	denied := server(t, echo) // never dialed
	e := newEnv(t, func(c *Config) { c.Decider = denyDecider{denied} })
	e.dialReset(t, denied, true)
	// The entry was on disk before the reset.
	es := onDisk(t, e.dir)
	deny := ofType(es, auditlog.ConnDeny)
	if len(deny) != 1 || len(es) != 1 {
		t.Fatalf("log = %+v; want one conn.deny", es)
	}
	if d := deny[0]; d.Decision != auditlog.Deny || d.Rule != "no-db" || d.Dst != denied.String() || d.Identity.PID != uint64(os.Getpid()) {
		t.Errorf("conn.deny = %+v; want deny by no-db to %s with identity", d, denied)
	}

	// Audit verdicts relay and are recorded as such.
	dst := server(t, echo)
	c2 := e.dial(t, dst)
	c2.Write([]byte("hi"))
	c2.CloseWrite()
	if b, _ := io.ReadAll(c2); string(b) != "hi" {
		t.Errorf("audited connection echoed %q; want %q", b, "hi")
	}
	c2.Close()
	e.waitIdle(t)
	if o := ofType(e.entries(t), auditlog.ConnOpen); len(o) != 1 || o[0].Decision != auditlog.Audit || o[0].Rule != "flag-rest" {
		t.Errorf("conn.open entries = %+v; want one with decision audit, rule flag-rest", o)
	}
	if s := e.p.Stats(); s.Denied != 1 || s.Refused != 1 || s.Relayed != 1 {
		t.Errorf("Stats() = %+v; want 1 denied, 1 refused, 1 relayed", s)
	}
}

// TestAuditFailureRefuses: with a log that cannot be written, nothing is
// relayed and the client is reset.
func TestAuditFailureRefuses(t *testing.T) {
	e := newEnv(t, nil)
	if err := e.log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var serverBytes int64
	dst := server(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		mu.Lock()
		serverBytes += n
		mu.Unlock()
	})
	for range 3 {
		e.dialReset(t, dst, true)
	}
	e.waitIdle(t)
	s := e.p.Stats()
	if s.AuditRefused != 3 || s.AuditFailures < 3 || s.Refused != 3 || s.Relayed != 0 {
		t.Errorf("Stats() = %+v; want 3 refused for audit failures, none relayed", s)
	}
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if serverBytes != 0 {
		t.Errorf("destination received %d bytes; want 0", serverBytes)
	}
}

func TestDialFailure(t *testing.T) {
	e := newEnv(t, nil)
	dst := deadPort(t)
	e.dialReset(t, dst, true)
	e.waitIdle(t)
	es := e.entries(t)
	if len(es) != 2 || es[0].Type != auditlog.ConnOpen || es[1].Type != auditlog.ConnClose {
		t.Fatalf("log = %+v; want conn.open, conn.close", es)
	}
	cl := es[1]
	if cl.Attr("error") != "refused" || cl.Attr("reason") != reasonDialFailed || cl.Attr("bytes_in") != "0" || cl.Attr("bytes_out") != "0" ||
		cl.Attr("open_seq") != strconv.FormatUint(es[0].Seq, 10) || cl.Dst != dst.String() {
		t.Errorf("conn.close = %+v; want error=refused, 0 bytes, open_seq %d", cl, es[0].Seq)
	}
	if s := e.p.Stats(); s.DialFailed != 1 || s.Refused != 1 {
		t.Errorf("Stats() = %+v; want 1 dial failure", s)
	}
}

func TestNotRedirected(t *testing.T) {
	e := newEnv(t, nil)
	client := e.dialReset(t, netip.AddrPort{}, false)
	es := e.entries(t)
	if len(es) != 1 || es[0].Type != auditlog.ConnDeny || es[0].Rule != RuleNotRedirected || es[0].Dst != e.addr.String() ||
		es[0].Src != client.String() {
		t.Fatalf("log = %+v; want one conn.deny, rule %s, from %s to %s", es, RuleNotRedirected, client, e.addr)
	}
	if s := e.p.Stats(); s.NotRedirected != 1 || s.Refused != 1 {
		t.Errorf("Stats() = %+v; want 1 not redirected", s)
	}
}

// TestLoop: a destination that is the proxy itself is refused.
func TestLoop(t *testing.T) {
	e := newEnv(t, nil)
	e.dialReset(t, e.addr, true)
	if es := e.entries(t); len(es) != 1 || es[0].Rule != RuleLoop {
		t.Fatalf("log = %+v; want one conn.deny by %s", es, RuleLoop)
	}
}

// TestConcurrent relays 1,000 connections at once and finds an open and a
// close entry for each.
func TestConcurrent(t *testing.T) {
	const n = 1000
	e := newEnv(t, nil)
	dst := server(t, echo)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, _, err := e.dialTo(e.addr, dst, true)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := bytes.Repeat([]byte(strconv.Itoa(i)+" "), 200)
			if _, err := c.Write(msg); err != nil {
				errs <- err
				return
			}
			c.CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- errors.New("connection " + strconv.Itoa(i) + ": echo differs")
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.waitIdle(t)
	es := e.entries(t)
	opens := map[string]auditlog.Entry{}
	for _, en := range ofType(es, auditlog.ConnOpen) {
		opens[strconv.FormatUint(en.Seq, 10)] = en
	}
	closes := ofType(es, auditlog.ConnClose)
	if len(opens) != n || len(closes) != n {
		t.Fatalf("log has %d conn.open and %d conn.close; want %d each", len(opens), len(closes), n)
	}
	for _, cl := range closes {
		o, ok := opens[cl.Attr("open_seq")]
		if !ok || o.Src != cl.Src {
			t.Fatalf("conn.close %d: open_seq %s does not name its conn.open", cl.Seq, cl.Attr("open_seq"))
		}
		delete(opens, cl.Attr("open_seq"))
		if in, out := attrInt(t, cl, "bytes_in"), attrInt(t, cl, "bytes_out"); in != out || in == 0 {
			t.Errorf("conn.close %d: bytes_in %d, bytes_out %d; want equal, non-zero", cl.Seq, in, out)
		}
	}
	if s := e.p.Stats(); s.Accepted != n || s.Relayed != n || s.Refused != 0 || s.AuditFailures != 0 {
		t.Errorf("Stats() = %+v; want %d accepted and relayed", s, n)
	}
}

// TestShutdownDrains: Shutdown stops accepting, lets a live relay finish,
// and resets what is left at its deadline.
func TestShutdownDrains(t *testing.T) {
	e := newEnv(t, nil)
	dst := server(t, echo)
	c1 := e.dial(t, dst)
	c2 := e.dial(t, dst)
	for _, c := range []*net.TCPConn{c1, c2} {
		roundTrip(t, c, "before")
	}
	shut := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	go func() { shut <- e.p.Shutdown(ctx) }()

	// New connections are refused once the listener is closed.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, _, err := e.dialTo(e.addr, dst, true)
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		// Reset: the connection was in the backlog as the listener closed.
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial after Shutdown = %v; want connection refused", err)
		}
		if c != nil {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("proxy still accepting after Shutdown")
		}
		time.Sleep(time.Millisecond)
	}
	// Live relays keep working while draining.
	roundTrip(t, c1, "during")
	roundTrip(t, c2, "during")
	c1.CloseWrite()
	if b, err := io.ReadAll(c1); err != nil || len(b) != 0 {
		t.Errorf("c1 after half-close: %q, %v; want EOF", b, err)
	}
	c1.Close()
	// c2 stays open past the deadline and is reset.
	expectReset(t, c2)
	c2.Close()
	if err := <-shut; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown() = %v; want deadline exceeded", err)
	}
	if err := <-e.serve; err != nil {
		t.Errorf("Serve() = %v; want nil", err)
	}
	e.serve <- nil // for the cleanup
	reasons := map[string]string{}
	for _, cl := range ofType(e.entries(t), auditlog.ConnClose) {
		reasons[cl.Src] = cl.Attr("reason")
	}
	if r1, r2 := reasons[c1.LocalAddr().String()], reasons[c2.LocalAddr().String()]; r1 != reasonClosed || r2 != reasonShutdown {
		t.Errorf("conn.close reasons = %q, %q; want %q, %q", r1, r2, reasonClosed, reasonShutdown)
	}
}

// TestServeContextDrains: ending Serve's context stops accepting, and Serve
// returns when the last relay ends.
func TestServeContextDrains(t *testing.T) {
	e := newEnv(t, nil)
	dst := server(t, echo)
	c := e.dial(t, dst)
	defer c.Close()
	roundTrip(t, c, "before")
	e.cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, _, err := e.dialTo(e.addr, dst, true)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("proxy still accepting after its context ended")
		}
		time.Sleep(time.Millisecond)
	}
	roundTrip(t, c, "during")
	select {
	case err := <-e.serve:
		t.Fatalf("Serve() = %v with a relay still open; want it to wait", err)
	case <-time.After(100 * time.Millisecond):
	}
	c.Close()
	select {
	case err := <-e.serve:
		if err != nil {
			t.Errorf("Serve() = %v; want nil", err)
		}
		e.serve <- nil // for the cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last relay ended")
	}
}

func roundTrip(t *testing.T, c *net.TCPConn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len(msg))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != msg {
		t.Fatalf("round trip %q: got %q, %v", msg, b, err)
	}
}

// TestIdleTimeout: a silent relay is closed, one trickling bytes is not.
func TestIdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.IdleTimeout = idle })
	dst := server(t, echo)
	start := time.Now()
	quiet := e.dial(t, dst)
	defer quiet.Close()
	busy := e.dial(t, dst)
	defer busy.Close()
	closedAt := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, quiet)
		closedAt <- time.Since(start)
	}()
	for time.Since(start) < 3*idle {
		roundTrip(t, busy, ".")
		time.Sleep(idle / 3)
	}
	select {
	case d := <-closedAt:
		if d < idle || d > 2*idle { // idle+idle/4 at most, plus scheduling
			t.Errorf("quiet relay closed after %v; want between %v and %v", d, idle, 2*idle)
		}
	default:
		t.Fatal("quiet relay still open")
	}
	roundTrip(t, busy, "still here")
	busy.Close()
	e.waitIdle(t)
	reasons := map[string]int{}
	for _, cl := range ofType(e.entries(t), auditlog.ConnClose) {
		reasons[cl.Attr("reason")]++
	}
	if reasons[reasonIdle] != 1 || reasons[reasonIdle]+reasons[reasonClosed] != 2 {
		t.Errorf("conn.close reasons = %v; want one idle, one closed", reasons)
	}
}

// TestRelaySplices checks that relayed bytes never pass through the
// proxy's userspace: read(2) and write(2) count into /proc/self/io's
// rchar and wchar, splice(2) does not. The test's own client and server
// read and write each byte once; a copying proxy would double that.
func TestRelaySplices(t *testing.T) {
	e := newEnv(t, nil)
	const size = 64 << 20
	received := make(chan int64, 1)
	dst := server(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		received <- n
	})
	c := e.dial(t, dst)
	defer c.Close()
	roundTripDeadline := time.Now().Add(30 * time.Second)
	c.SetDeadline(roundTripDeadline)
	before := procIO(t)
	buf := make([]byte, 1<<20)
	for range size / len(buf) {
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.CloseWrite()
	if n := <-received; n != size {
		t.Fatalf("destination received %d bytes; want %d", n, size)
	}
	after := procIO(t)
	read := after["rchar"] - before["rchar"]
	t.Logf("relaying %d MiB: rchar +%d, wchar +%d", size>>20, read, after["wchar"]-before["wchar"])
	if read > size*5/4 {
		t.Errorf("bytes read by the process while relaying %d = %d; want about %d (the destination's reads only): the relay copies through userspace", size, read, size)
	}
}

func procIO(t *testing.T) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skip(err)
	}
	m := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if ok {
			m[k], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return m
}

// TestDialTimeout: a destination whose accept queue is full drops SYNs; the
// client is reset after DialTimeout and the entry says timeout.
func TestDialTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.DialTimeout = timeout })
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil { // never accepted
		t.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	// Fill the accept queue until SYNs are dropped.
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", dst.String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		defer c.Close()
		if i == 8 {
			t.Fatal("accept queue of a backlog-0 listener never filled")
		}
	}
	start := time.Now()
	e.dialReset(t, dst, true)
	if d := time.Since(start); d < timeout {
		t.Errorf("client reset after %v; want at least the dial timeout %v", d, timeout)
	}
	e.waitIdle(t)
	cl := ofType(e.entries(t), auditlog.ConnClose)
	if len(cl) != 1 || cl[0].Attr("error") != "timeout" {
		t.Fatalf("conn.close entries = %+v; want one with error=timeout", cl)
	}
}

func TestIPv6Unavailable(t *testing.T) {
	tests := []struct {
		addr string
		err  error
		want bool
	}{
		{"[::1]:15001", &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)}, true},  // sysctl disable_ipv6=1
		{"[::1]:15001", &net.OpError{Op: "listen", Err: os.NewSyscallError("socket", syscall.EAFNOSUPPORT)}, true}, // ipv6.disable=1
		{"[::1]:15001", &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}, false},
		{"127.0.0.1:15001", &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)}, false},
		{"localhost:15001", &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)}, false},
	}
	for _, tt := range tests {
		if got := ipv6Unavailable(tt.addr, tt.err); got != tt.want {
			t.Errorf("ipv6Unavailable(%q, %v) = %v; want %v", tt.addr, tt.err, got, tt.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	requireNetAdmin(t)
	res := &mapResolver{m: map[netip.AddrPort]intercept.Origin{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	l := &auditlog.Log{}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no resolver", Config{Auditor: l}, "no resolver"},
		{"no auditor", Config{Resolver: res}, "no auditor"},
		{"port taken", Config{Resolver: res, Auditor: l, Listen: []string{ln.Addr().String()}}, "address already in use"},
		{"negative idle", Config{Resolver: res, Auditor: l, IdleTimeout: -time.Second}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if err == nil {
				p.Shutdown(context.Background())
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() = %v; want an error containing %q", err, tt.want)
			}
		})
	}
}
