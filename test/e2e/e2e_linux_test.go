package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
)

// clientEnv selects client mode: the test binary re-executed inside the
// test cgroup as a client program.
const clientEnv = "VIGIL_E2E_CLIENT"

// runClientMode implements "concurrent ADDR N": N simultaneous connections
// to an echo server, each checking its echo; and "denyloop ADDR N OK STOP"
// (runDenyLoop).
func runClientMode() int {
	f := strings.Fields(os.Getenv(clientEnv))
	if len(f) == 5 && f[0] == "denyloop" {
		return runDenyLoop(f[1], f[2], f[3], f[4])
	}
	if len(f) != 3 || f[0] != "concurrent" {
		fmt.Fprintln(os.Stderr, "bad client spec")
		return 2
	}
	n, _ := strconv.Atoi(f[2])
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := echoOnce(f[1], fmt.Sprintf("conn-%06d\n", i))
			if err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		fmt.Fprintf(os.Stderr, "%d of %d connections failed; first: %s\n", len(failures), n, failures[0])
		return 1
	}
	return 0
}

func echoOnce(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 20*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// echoServer listens on loopback (v4 and v6 on one port when possible).
func echoServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	serve := func(l net.Listener) {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}
	go serve(l)
	t.Cleanup(func() { l.Close() })
	if l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port)); err == nil {
		go serve(l6)
		t.Cleanup(func() { l6.Close() })
	}
	return port
}

// blobServer serves 1 MiB of fixed random bytes at /blob on v4 and v6.
func blobServer(t *testing.T) (int, []byte) {
	t.Helper()
	blob := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range blob {
		blob[i] = byte(r.Uint32())
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(blob) })
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	if l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port)); err == nil {
		go srv.Serve(l6)
	}
	t.Cleanup(func() { srv.Close() })
	return port, blob
}

func capture(ports ...int) string {
	var rules []string
	for _, p := range ports {
		rules = append(rules, fmt.Sprintf("127.0.0.1/32:%d", p), fmt.Sprintf("::1/128:%d", p))
	}
	return strings.Join(rules, ",")
}

// find returns the entries of type typ from comm to dst.
func find(es []auditlog.Entry, typ auditlog.Type, comm, dst string) []auditlog.Entry {
	var out []auditlog.Entry
	for _, e := range es {
		if e.Type == typ && e.Identity.Comm == comm && e.Dst == dst {
			out = append(out, e)
		}
	}
	return out
}

// TestRealClients sends psql, redis-cli and curl through interception over
// IPv4 and IPv6, checks that what they get is byte-identical to the direct
// path, and that the log holds their opens and closes with the real pid,
// uid and comm, and verifies.
func TestRealClients(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"psql", "redis-cli", "curl"} {
		requireTool(t, tool)
	}
	pg := envPort(t, "VIGIL_E2E_PG_PORT", 54329)
	rd := envPort(t, "VIGIL_E2E_REDIS_PORT", 63799)
	requireServer(t, "PostgreSQL", pg)
	requireServer(t, "Redis", rd)
	httpPort, blob := blobServer(t)
	ctx := context.Background()

	value := strings.Repeat("vigil-", 10000)
	run(t, exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(rd), "set", "vigil-e2e-key", value))

	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(pg, rd, httpPort))

	type client struct {
		comm string
		port int
		args func(host string) []string
		want func(direct []byte) []byte
	}
	clients := []client{
		{"psql", pg, func(h string) []string {
			return []string{"psql", "-h", h, "-p", strconv.Itoa(pg), "-U", "postgres", "-Atc", "select string_agg(md5(g::text), ',') from generate_series(1, 3000) g"}
		}, nil},
		{"redis-cli", rd, func(h string) []string {
			return []string{"redis-cli", "-h", h, "-p", strconv.Itoa(rd), "get", "vigil-e2e-key"}
		}, nil},
		{"curl", httpPort, func(h string) []string {
			host := h
			if strings.Contains(h, ":") {
				host = "[" + h + "]"
			}
			return []string{"curl", "-sS", "--fail", "http://" + host + ":" + strconv.Itoa(httpPort) + "/blob"}
		}, func([]byte) []byte { return blob }},
	}
	type ran struct {
		comm string
		pid  int
		dst  string
	}
	var runs []ran
	for _, host := range []string{"127.0.0.1", "::1"} {
		for _, c := range clients {
			t.Run(c.comm+"/"+host, func(t *testing.T) {
				args := c.args(host)
				direct := run(t, exec.Command(args[0], args[1:]...))
				cmd := cgroupCmd(ctx, cg, args[0], args[1:]...)
				got := run(t, cmd)
				want := direct
				if c.want != nil {
					want = c.want(direct)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s through vigil returned %d bytes that differ from the direct %d", c.comm, len(got), len(want))
				}
				runs = append(runs, ran{c.comm, cmd.Process.Pid, net.JoinHostPort(host, strconv.Itoa(c.port))})
			})
		}
	}
	a.stop()
	es := entries(t, a.dataDir)
	for _, r := range runs {
		opens := find(es, auditlog.ConnOpen, r.comm, r.dst)
		if len(opens) == 0 {
			t.Errorf("no conn.open from %s to %s in the log", r.comm, r.dst)
			continue
		}
		var open *auditlog.Entry
		for i := range opens {
			if opens[i].Identity.PID == uint64(r.pid) {
				open = &opens[i]
			}
		}
		if open == nil {
			t.Errorf("conn.open from %s to %s has pid %d; want %d", r.comm, r.dst, opens[0].Identity.PID, r.pid)
			continue
		}
		if open.Identity.UID != 0 || open.Identity.CgroupID == 0 || !strings.HasSuffix(open.Identity.CgroupPath, filepath.Base(cg)) {
			t.Errorf("conn.open identity = %+v; want uid 0 and the test cgroup", open.Identity)
		}
		var closed bool
		for _, e := range find(es, auditlog.ConnClose, r.comm, r.dst) {
			if e.Src == open.Src {
				closed = true
				if in, _ := strconv.Atoi(e.Attr("bytes_in")); in == 0 {
					t.Errorf("conn.close for %s to %s has bytes_in 0: %v", r.comm, r.dst, e.Attrs)
				}
			}
		}
		if !closed {
			t.Errorf("no conn.close for %s from %s to %s", r.comm, open.Src, r.dst)
		}
	}
	out := verify(t, a.dataDir)
	t.Logf("verify:\n%s", out)
}

// TestConcurrentConnections relays 1,000 simultaneous connections and
// audits every one of them.
func TestConcurrentConnections(t *testing.T) {
	requireRoot(t)
	port := echoServer(t)
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(port))
	const n = 1000
	cmd := cgroupCmd(context.Background(), cg, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=concurrent 127.0.0.1:%d %d", clientEnv, port, n))
	run(t, cmd)
	a.stop()
	es := entries(t, a.dataDir)
	dst := fmt.Sprintf("127.0.0.1:%d", port)
	opens, closes := 0, 0
	for _, e := range es {
		if e.Dst != dst || e.Identity.PID != uint64(cmd.Process.Pid) {
			continue
		}
		switch e.Type {
		case auditlog.ConnOpen:
			opens++
		case auditlog.ConnClose:
			closes++
		}
	}
	if opens != n || closes != n {
		t.Errorf("log has %d conn.open and %d conn.close for the client; want %d each", opens, closes, n)
	}
	verify(t, a.dataDir)
}

// TestShortLivedProcess: a process that exits right after connecting still
// gets its identity from the kernel.
func TestShortLivedProcess(t *testing.T) {
	requireRoot(t)
	requireTool(t, "bash")
	port := echoServer(t)
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(port))
	cmd := cgroupCmd(context.Background(), cg, "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; echo bye >&3", port))
	run(t, cmd)
	time.Sleep(200 * time.Millisecond)
	a.stop()
	opens := find(entries(t, a.dataDir), auditlog.ConnOpen, "bash", fmt.Sprintf("127.0.0.1:%d", port))
	if len(opens) != 1 || opens[0].Identity.PID != uint64(cmd.Process.Pid) {
		t.Fatalf("conn.open entries from bash = %+v; want one with pid %d", opens, cmd.Process.Pid)
	}
}

// TestNonLoopbackDestination reaches a test host in a network namespace
// with the default capture set (everything but loopback).
func TestNonLoopbackDestination(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	requireTool(t, "python3")
	ip := testHost(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from the test host\n"), 0o644)
	ns := ip.ns
	srv := exec.Command("ip", "netns", "exec", ns, "python3", "-m", "http.server", "8080", "--bind", ip.addr, "--directory", dir)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	url := "http://" + ip.addr + ":8080/hello.txt"
	waitFor(t, func() bool { return exec.Command("curl", "-sf", "-o", "/dev/null", url).Run() == nil })
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0)
	got := run(t, cgroupCmd(context.Background(), cg, "curl", "-sS", "--fail", url))
	if string(got) != "hello from the test host\n" {
		t.Errorf("curl through vigil = %q", got)
	}
	a.stop()
	if opens := find(entries(t, a.dataDir), auditlog.ConnOpen, "curl", ip.addr+":8080"); len(opens) != 1 {
		t.Errorf("conn.open from curl to %s:8080: %d entries; want 1", ip.addr, len(opens))
	}
	verify(t, a.dataDir)
}

// TestFailModes kills the agent with SIGKILL in both fail modes: fail-open
// lets clients connect directly, fail-closed makes them fail until an agent
// is back; a restart recovers the log and the chain continues.
func TestFailModes(t *testing.T) {
	requireRoot(t)
	port := echoServer(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	client := func(cg string) error {
		cmd := cgroupCmd(context.Background(), cg, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=concurrent %s 1", clientEnv, addr))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	t.Run("open", func(t *testing.T) {
		cg := testCgroup(t)
		a := startAgent(t, cg, "", 0, "--capture", capture(port))
		if err := client(cg); err != nil {
			t.Fatalf("client through the agent: %v", err)
		}
		a.kill()
		if err := client(cg); err != nil {
			t.Errorf("fail-open: client after kill -9 = %v; want a direct connection", err)
		}
		b := startAgent(t, cg, a.dataDir, 0, "--capture", capture(port))
		if err := client(cg); err != nil {
			t.Errorf("client after restart = %v", err)
		}
		b.stop()
		es := entries(t, a.dataDir)
		var recovered bool
		for _, e := range es {
			recovered = recovered || e.Type == auditlog.LogRecovery
		}
		if !recovered {
			t.Error("no log.recovery entry after kill -9")
		}
		verify(t, a.dataDir)
	})
	t.Run("closed", func(t *testing.T) {
		pin := bpffsDir(t)
		cg := testCgroup(t)
		proxyPort := freePort(t) // the same port after the restart, which adopts the pins
		a := startAgent(t, cg, "", proxyPort, "--capture", capture(port), "--fail-mode", "closed", "--pin-path", pin)
		if err := client(cg); err != nil {
			t.Fatalf("client through the agent: %v", err)
		}
		a.kill()
		err := client(cg)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("fail-closed: client after kill -9 = %v; want connection refused", err)
		}
		b := startAgent(t, cg, a.dataDir, proxyPort, "--capture", capture(port), "--fail-mode", "closed", "--pin-path", pin)
		if err := client(cg); err != nil {
			t.Errorf("client after restart (adopting the pins) = %v", err)
		}
		b.stop()
		verify(t, a.dataDir)
	})
}

// bpffsDir returns a fresh directory on a bpffs, removed (with its pins,
// which detaches pinned links) at cleanup.
func bpffsDir(t *testing.T) string {
	t.Helper()
	if !isBPFFS("/sys/fs/bpf") {
		if out, err := exec.Command("mount", "-t", "bpf", "bpf", "/sys/fs/bpf").CombinedOutput(); err != nil {
			t.Fatalf("mount bpffs: %v: %s", err, out)
		}
	}
	dir := filepath.Join("/sys/fs/bpf", randName("vigil-e2e-"))
	t.Cleanup(func() {
		if err := intercept.Unpin(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Logf("unpin %s: %v", dir, err)
		}
		os.RemoveAll(dir)
	})
	return dir
}

func isBPFFS(path string) bool {
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && f[1] == path && f[2] == "bpf" {
			return true
		}
	}
	return false
}

type netnsHost struct{ ns, addr string }

// testHost creates a network namespace with a veth pair: the test host's
// address is 10.198.X.2, the root side 10.198.X.1. Removed at cleanup.
func testHost(t *testing.T) netnsHost {
	t.Helper()
	ns := randName("vigile2e")
	x := rand.IntN(250) + 1
	hostIf, peerIf := "ve"+ns[len(ns)-8:], "vp"+ns[len(ns)-8:]
	h := netnsHost{ns: ns, addr: fmt.Sprintf("10.198.%d.2", x)}
	cmds := [][]string{
		{"ip", "netns", "add", ns},
		{"ip", "link", "add", hostIf, "type", "veth", "peer", "name", peerIf},
		{"ip", "link", "set", peerIf, "netns", ns},
		{"ip", "addr", "add", fmt.Sprintf("10.198.%d.1/30", x), "dev", hostIf},
		{"ip", "link", "set", hostIf, "up"},
		{"ip", "-n", ns, "addr", "add", h.addr + "/30", "dev", peerIf},
		{"ip", "-n", ns, "link", "set", peerIf, "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
	}
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", hostIf).Run()
		exec.Command("ip", "netns", "del", ns).Run()
	})
	for _, c := range cmds {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(c, " "), err, out)
		}
	}
	return h
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if ok() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("condition not met within 10s")
}

// TestReloadCapture changes the capture set through the config file and
// SIGHUP, without a restart.
func TestReloadCapture(t *testing.T) {
	requireRoot(t)
	a1, a2 := echoServer(t), echoServer(t)
	cfgPath := filepath.Join(t.TempDir(), "vigil.yaml")
	writeCfg := func(ports ...int) {
		var b strings.Builder
		b.WriteString("capture:\n")
		for _, p := range ports {
			fmt.Fprintf(&b, "  - \"127.0.0.1/32:%d\"\n", p)
		}
		if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(a1)
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--config", cfgPath)
	client := func(port int) {
		cmd := cgroupCmd(context.Background(), cg, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=concurrent 127.0.0.1:%d 1", clientEnv, port))
		run(t, cmd)
	}
	client(a2) // not captured yet
	writeCfg(a1, a2)
	a.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(a.stderr.String(), "configuration reloaded") })
	client(a2)
	os.WriteFile(cfgPath, []byte("capture: [\"not-a-cidr\"]\n"), 0o600)
	a.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(a.stderr.String(), "configuration reload failed") })
	client(a2) // still captured: the bad file changed nothing
	a.stop()
	es := entries(t, a.dataDir)
	opens := 0
	var reloads int
	for _, e := range es {
		if e.Type == auditlog.ConnOpen && e.Dst == fmt.Sprintf("127.0.0.1:%d", a2) {
			opens++
		}
		if e.Type == auditlog.AgentReload {
			reloads++
		}
	}
	if opens != 2 || reloads != 1 {
		t.Errorf("conn.open to the second port: %d (want 2: after the reload, and after the rejected one); agent.reload entries: %d (want 1)", opens, reloads)
	}
	verify(t, a.dataDir)
}

// TestPolicyDenyAndReload denies a destination by policy, then allows it
// by editing the file, which the agent picks up on its own; a bad edit
// keeps the running policy.
func TestPolicyDenyAndReload(t *testing.T) {
	requireRoot(t)
	port := echoServer(t)
	polPath := filepath.Join(t.TempDir(), "policy.yaml")
	writePolicy := func(action string) {
		p := fmt.Sprintf("apiVersion: vigil.dev/v1\ndefault: allow\nrules:\n  - name: no-echo\n    action: %s\n    match:\n      dst: { ports: [\"%d\"] }\n", action, port)
		replaceFile(t, polPath, p)
	}
	writePolicy("deny")
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(port), "--policy", polPath)
	client := func() error {
		cmd := cgroupCmd(context.Background(), cg, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=concurrent 127.0.0.1:%d 1", clientEnv, port))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := client(); err == nil {
		t.Fatal("client succeeded under a deny rule")
	}
	writePolicy("allow")
	waitFor(t, func() bool { return client() == nil })
	replaceFile(t, polPath, "apiVersion: vigil.dev/v1\ndefault: maybe\n")
	waitFor(t, func() bool { return strings.Contains(a.stderr.String(), "policy rejected") })
	if err := client(); err != nil {
		t.Errorf("client after a rejected policy edit = %v; want the allow policy still in force", err)
	}
	a.stop()
	var denies, applied, rejected int
	for _, e := range entries(t, a.dataDir) {
		switch {
		case e.Type == auditlog.ConnDeny && e.Rule == "no-echo":
			denies++
		case e.Type == auditlog.PolicyLoad && e.Attr("result") == "applied":
			applied++
		case e.Type == auditlog.PolicyLoad && e.Attr("result") == "rejected":
			rejected++
		}
	}
	// Every attempt before the reload took effect was denied and recorded.
	if denies < 1 || applied != 2 || rejected != 1 {
		t.Errorf("conn.deny by no-echo: %d (want ≥ 1); policy.load applied: %d (want 2), rejected: %d (want 1)", denies, applied, rejected)
	}
	verify(t, a.dataDir)
}

// replaceFile swaps path's contents atomically, as an editor or a ConfigMap
// update does, so the agent's watcher never reads half a file.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}
