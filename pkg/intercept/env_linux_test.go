package intercept

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/vigil-ebpf/vigil/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(clientEnv); spec != "" {
		runClient(spec)
	}
	code := m.Run()
	if sharedEnv != nil {
		sharedEnv.teardown()
	}
	os.Exit(code)
}

// requirePrivileged skips t unless it can load and attach BPF programs:
// root, cgroup v2, BPF cgroup programs and the ip tool. With
// VIGIL_REQUIRE_PRIVILEGED=1 (CI, which runs as root) it fails instead.
func requirePrivileged(t *testing.T) {
	t.Helper()
	reason := func() string {
		if os.Geteuid() != 0 {
			return "not root"
		}
		if _, err := CgroupRoot(); err != nil {
			return err.Error()
		}
		if err := features.HaveProgramType(ebpf.CGroupSockAddr); err != nil {
			return "cgroup sock_addr programs: " + err.Error()
		}
		if _, err := exec.LookPath("ip"); err != nil {
			return "ip (iproute2) not found"
		}
		return ""
	}()
	testenv.Need(t, "root, cgroup v2 and BPF", reason)
}

// testEnv is what the privileged tests share: a network namespace with a
// veth pair (the only non-loopback destinations any test uses) and a
// world-executable copy of the test binary that clients run as.
type testEnv struct {
	netns    string // name, for ip netns
	netnsRef string // /run/netns/<name>
	hostIf   string
	// Host side and namespace side of the veth pair.
	host4, peer4 netip.Addr // 10.199.X.1, 10.199.X.2
	host6, peer6 netip.Addr // fd00:199:X::1, fd00:199:X::2
	clientBin    string     // .../vigil-client: its name is the clients' comm
	binDir       string
}

var (
	sharedEnv     *testEnv
	sharedEnvErr  error
	sharedEnvOnce sync.Once
)

// env returns the shared environment, creating it on first use.
func env(t *testing.T) *testEnv {
	t.Helper()
	requirePrivileged(t)
	sharedEnvOnce.Do(func() { sharedEnv, sharedEnvErr = newTestEnv() })
	if sharedEnvErr != nil {
		t.Fatalf("test environment: %v", sharedEnvErr)
	}
	return sharedEnv
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newTestEnv() (*testEnv, error) {
	r := randomHex(3)
	var b [1]byte
	rand.Read(b[:])
	x := int(b[0])
	e := &testEnv{
		netns:  "vigiltest-" + r,
		hostIf: "vgt" + r + "h",
		host4:  netip.AddrFrom4([4]byte{10, 199, byte(x), 1}),
		peer4:  netip.AddrFrom4([4]byte{10, 199, byte(x), 2}),
		host6:  netip.MustParseAddr(fmt.Sprintf("fd00:199:%x::1", x)),
		peer6:  netip.MustParseAddr(fmt.Sprintf("fd00:199:%x::2", x)),
	}
	e.netnsRef = "/run/netns/" + e.netns
	peerIf := "vgt" + r + "n"
	cmds := [][]string{
		{"netns", "add", e.netns},
		{"link", "add", e.hostIf, "type", "veth", "peer", "name", peerIf, "netns", e.netns},
		{"addr", "add", e.host4.String() + "/30", "dev", e.hostIf},
		{"-6", "addr", "add", e.host6.String() + "/64", "dev", e.hostIf, "nodad"},
		{"link", "set", e.hostIf, "up"},
		{"-n", e.netns, "addr", "add", e.peer4.String() + "/30", "dev", peerIf},
		{"-n", e.netns, "-6", "addr", "add", e.peer6.String() + "/64", "dev", peerIf, "nodad"},
		{"-n", e.netns, "link", "set", peerIf, "up"},
		{"-n", e.netns, "link", "set", "lo", "up"},
	}
	for _, args := range cmds {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			e.teardown()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	// Clients run as other users too: copy the test binary where they can
	// execute it, under the name that becomes their comm.
	dir, err := os.MkdirTemp("", "vigil-client-")
	if err != nil {
		e.teardown()
		return nil, err
	}
	e.binDir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		e.teardown()
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		e.teardown()
		return nil, err
	}
	e.clientBin = filepath.Join(dir, "vigil-client")
	if err := copyFile(self, e.clientBin, 0o755); err != nil {
		e.teardown()
		return nil, err
	}
	return e, nil
}

func (e *testEnv) teardown() {
	exec.Command("ip", "netns", "del", e.netns).Run()
	exec.Command("ip", "link", "del", e.hostIf).Run()
	if e.binDir != "" {
		os.RemoveAll(e.binDir)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// testCgroup creates a throwaway cgroup under the cgroup2 root, removed
// when t ends. Tests attach only there, never to the root.
func testCgroup(t *testing.T) string {
	t.Helper()
	root, err := CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "vigil-test-"+randomHex(4))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create test cgroup: %v", err)
	}
	t.Cleanup(func() {
		// The clients have been waited for, but the kernel may take a moment
		// to let go of an exited task's cgroup.
		var err error
		for range 100 {
			if err = os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("remove test cgroup %s: %v", dir, err)
	})
	return dir
}

// client is a started client process.
type client struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser // clientSpec.Wait: closing it lets the client go on
	stdout bytes.Buffer
	stderr bytes.Buffer
}

// proceed lets a client started with clientSpec.Wait go on.
func (c *client) proceed() { c.stdin.Close() }

// asUser runs a client with these credentials instead of root's.
type asUser struct{ uid, gid uint32 }

// startClient starts the test binary as a client inside cgroup.
func (e *testEnv) startClient(t *testing.T, cgroup string, spec clientSpec, user *asUser) *client {
	t.Helper()
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cg, err := os.Open(cgroup)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	c := &client{cmd: exec.Command(e.clientBin, "-test.run=^$")}
	c.cmd.Env = append(os.Environ(), clientEnv+"="+string(js))
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	c.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.Fd())}
	if user != nil {
		c.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: user.uid, Gid: user.gid}
	}
	if spec.Wait {
		if c.stdin, err = c.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start client: %v", err)
	}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			c.cmd.Wait()
		}
	})
	return c
}

// wait waits for the client and returns its report.
func (c *client) wait(t *testing.T) clientResult {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("client: %v; stderr: %s", err, c.stderr.String())
		}
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-done
		t.Fatalf("client did not finish in 30s; stderr: %s", c.stderr.String())
	}
	var res clientResult
	if err := json.Unmarshal(c.stdout.Bytes(), &res); err != nil {
		t.Fatalf("client report %q: %v; stderr: %s", c.stdout.String(), err, c.stderr.String())
	}
	return res
}

// run starts a client and waits for it.
func (e *testEnv) run(t *testing.T, cgroup string, spec clientSpec, user *asUser) clientResult {
	t.Helper()
	return e.startClient(t, cgroup, spec, user).wait(t)
}

// server is a set of TCP listeners whose accepted connections arrive on
// one channel: the test's stand-in for the proxy, or a real destination.
type server struct {
	lns   []net.Listener
	conns chan net.Conn
}

func newServer(t *testing.T, lns ...net.Listener) *server {
	s := &server{lns: lns, conns: make(chan net.Conn, 64)}
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				s.conns <- c
			}
		}()
	}
	t.Cleanup(s.close)
	return s
}

func (s *server) close() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

func (s *server) port() uint16 {
	return netip.MustParseAddrPort(s.lns[0].Addr().String()).Port()
}

func (s *server) addr() netip.AddrPort {
	return netip.MustParseAddrPort(s.lns[0].Addr().String())
}

// accept returns the next accepted connection, or fails t after timeout.
func (s *server) accept(t *testing.T, timeout time.Duration) net.Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(timeout):
		t.Fatalf("no connection accepted on %v within %v", s.lns[0].Addr(), timeout)
		return nil
	}
}

// expectNone fails t if a connection arrives within d.
func (s *server) expectNone(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case c := <-s.conns:
		c.Close()
		t.Fatalf("unexpected connection on %v from %v", s.lns[0].Addr(), c.RemoteAddr())
	case <-time.After(d):
	}
}

// newProxy listens on 127.0.0.1 and ::1 on the same port (port 0: any).
func newProxy(t *testing.T, port uint16) *server {
	t.Helper()
	for range 20 {
		ln4, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("proxy listen: %v", err)
		}
		p := netip.MustParseAddrPort(ln4.Addr().String()).Port()
		ln6, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", p))
		if err != nil {
			ln4.Close()
			if port != 0 {
				t.Fatalf("proxy listen [::1]:%d: %v", p, err)
			}
			continue
		}
		return newServer(t, ln4, ln6)
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return nil
}

// listenInNetns listens on addr inside the test network namespace: a real
// destination on the test host.
func (e *testEnv) listenInNetns(t *testing.T, addr netip.Addr) *server {
	t.Helper()
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := os.Open(e.netnsRef)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			// Back home: the thread can serve other goroutines again.
			// Otherwise it stays locked and exits with this goroutine.
			runtime.UnlockOSThread()
		}
		ch <- result{ln, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in %s on %v: %v", e.netns, addr, r.err)
	}
	return newServer(t, r.ln)
}

// events collects what ReadEvents reports for the life of a test.
type events struct {
	mu  sync.Mutex
	evs []Event
}

func collectEvents(t *testing.T, ic *Interceptor) *events {
	ctx, cancel := context.WithCancel(context.Background())
	ev := &events{}
	done := make(chan error, 1)
	go func() {
		done <- ic.ReadEvents(ctx, func(e Event) {
			ev.mu.Lock()
			ev.evs = append(ev.evs, e)
			ev.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ReadEvents: %v", err)
		}
	})
	return ev
}

// matching returns the events for which match is true.
func (ev *events) matching(match func(Event) bool) []Event {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var out []Event
	for _, e := range ev.evs {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// wait returns the first event for which match is true, waiting up to 5s.
func (ev *events) wait(t *testing.T, what string, match func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m := ev.matching(match); len(m) > 0 {
			return m[0]
		}
		if time.Now().After(deadline) {
			ev.mu.Lock()
			defer ev.mu.Unlock()
			t.Fatalf("no %s event within 5s; got %+v", what, ev.evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// open opens an Interceptor for the test and closes it at the end.
func open(t *testing.T, cfg Config) *Interceptor {
	t.Helper()
	start := time.Now()
	ic, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Logf("Open took %v", time.Since(start))
	t.Cleanup(func() { ic.Close() })
	return ic
}

// lookup looks up the origin of an accepted connection.
func lookup(t *testing.T, ic *Interceptor, c net.Conn) Origin {
	t.Helper()
	remote := netip.MustParseAddrPort(c.RemoteAddr().String())
	o, ok, err := ic.Lookup(remote)
	if err != nil || !ok {
		t.Fatalf("Lookup(%v) = _, %v, %v; want an origin", remote, ok, err)
	}
	return o
}

// serveOnce reads a client's payload to EOF and replies.
func serveOnce(t *testing.T, c net.Conn, reply string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("read from client: %v", err)
	}
	if _, err := c.Write([]byte(reply)); err != nil {
		t.Errorf("reply to client: %v", err)
	}
	c.Close()
	return string(got)
}
