package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/netns"
)

// podNet is a test host namespace that pods reach over veth pairs, with an
// HTTP server on every address it gets.
type podNet struct {
	host   string // name of the test host namespace
	subnet int    // 10.197.subnet.0/24: a /30 per pod
	port   int
	blob   []byte
	pods   int
}

// newPodNet creates the test host namespace and its server (/blob: 1 MiB
// of fixed random bytes; /hello: a line).
func newPodNet(t *testing.T) *podNet {
	t.Helper()
	n := &podNet{host: randName("vigilh"), subnet: rand.IntN(250) + 1, port: 8080, blob: make([]byte, 1<<20)}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range n.blob {
		n.blob[i] = byte(r.Uint32())
	}
	for _, c := range [][]string{{"netns", "add", n.host}, {"-n", n.host, "link", "set", "lo", "up"}} {
		ipCmd(t, c...)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", n.host).Run() })
	h, err := netns.Open("/run/netns/"+n.host, netns.ID{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ln, err := h.Listen(context.Background(), nil, fmt.Sprintf("[::]:%d", n.port)) // IPv4 and IPv6
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/blob", func(w http.ResponseWriter, _ *http.Request) { w.Write(n.blob) })
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "hello from the test host") })
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return n
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// pod is a workload in a network namespace of its own, like a Kubernetes
// pod: a long-lived process (the "pause" container) in its own cgroup,
// and a veth pair to the test host namespace.
type pod struct {
	ns       string
	cg       string
	addr     string // the pod's address
	server   string // the test host's address as the pod reaches it
	server6  string // the same over IPv6
	pause    *exec.Cmd
	id       netns.ID
	linkedAt time.Time // when its veth pair was created
}

// newPod creates the namespace and starts the pod's pause process in a
// child cgroup of parent, then (as a CNI plugin does once the sandbox
// exists) creates the veth pair in the root namespace and moves its ends.
func (n *podNet) newPod(t *testing.T, parent string) *pod {
	t.Helper()
	i := n.pods
	n.pods++
	p := &pod{ns: randName("vigilp"), cg: filepath.Join(parent, fmt.Sprintf("pod%d", i)),
		addr: fmt.Sprintf("10.197.%d.%d", n.subnet, 4*i+2), server: fmt.Sprintf("10.197.%d.%d", n.subnet, 4*i+1),
		server6: netip.MustParseAddr(fmt.Sprintf("fd00:197:%x:%x::1", n.subnet, i)).String()}
	ipCmd(t, "netns", "add", p.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", p.ns).Run() })
	ipCmd(t, "-n", p.ns, "link", "set", "lo", "up")
	if err := os.Mkdir(p.cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroup(p.cg) })
	p.pause = cgroupCmd(context.Background(), p.cg, "ip", "netns", "exec", p.ns, "sleep", "600")
	if err := p.pause.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	id, err := netns.StatNS("/run/netns/" + p.ns)
	if err != nil {
		t.Fatal(err)
	}
	p.id = id
	waitFor(t, func() bool {
		got, err := netns.StatNS(fmt.Sprintf("/proc/%d/ns/net", p.pause.Process.Pid))
		return err == nil && got == id
	})
	podIf, hostIf := fmt.Sprintf("vp%s", p.ns[len(p.ns)-8:]), fmt.Sprintf("vh%s", p.ns[len(p.ns)-8:])
	p.linkedAt = time.Now()
	ipCmd(t, "link", "add", podIf, "type", "veth", "peer", "name", hostIf)
	ipCmd(t, "link", "set", podIf, "netns", p.ns)
	ipCmd(t, "link", "set", hostIf, "netns", n.host)
	ipCmd(t, "-n", p.ns, "addr", "add", p.addr+"/30", "dev", podIf)
	ipCmd(t, "-n", p.ns, "link", "set", podIf, "up")
	ipCmd(t, "-n", p.ns, "-6", "addr", "add", fmt.Sprintf("fd00:197:%x:%x::2/64", n.subnet, i), "dev", podIf, "nodad")
	ipCmd(t, "-n", n.host, "addr", "add", p.server+"/30", "dev", hostIf)
	ipCmd(t, "-n", n.host, "-6", "addr", "add", p.server6+"/64", "dev", hostIf, "nodad")
	ipCmd(t, "-n", n.host, "link", "set", hostIf, "up")
	return p
}

// stop ends the pause process.
func (p *pod) stop() {
	if p.pause.ProcessState == nil {
		p.pause.Process.Kill()
		p.pause.Wait()
	}
}

// run runs name args inside the pod: its namespace and its cgroup.
func (p *pod) cmd(name string, args ...string) *exec.Cmd {
	return cgroupCmd(context.Background(), p.cg, "ip", append([]string{"netns", "exec", p.ns, name}, args...)...)
}

// listening reports whether a socket listens on port in the namespace of
// pid, from /proc/PID/net/tcp (that namespace's view).
func listening(pid, port int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return false
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 3 && f[1] == local && f[3] == "0A" {
			return true
		}
	}
	return false
}

func removeCgroup(cg string) {
	for i := 0; i < 50; i++ {
		if err := os.Remove(cg); err == nil || os.IsNotExist(err) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// agentView is what the netns test reads from GET /v1/status.
type agentView struct {
	Goroutines int
	Listeners  int
	Kernel     struct {
		Origins, Tuples int
		NetnsServed     int    `json:"netns_served"`
		RedirectedNetns uint64 `json:"redirected_netns"`
		OtherNetns      uint64 `json:"other_netns"`
	}
}

func (a *agentProc) view(t *testing.T) agentView {
	t.Helper()
	out := run(t, exec.Command(vigilBin, "status", "--socket", a.socket, "-o", "json"))
	var v agentView
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("vigil status -o json: %v\n%s", err, out)
	}
	return v
}

// fdCount counts the open fds of pid except pipes: Go's splice(2) keeps
// a pool of pipes for relays, freed by the garbage collector, not by us.
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); err == nil && !strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// fdTargets lists what the fds of pid point to, for failure messages.
func fdTargets(pid int) []string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		out = append(out, e.Name()+"->"+l)
	}
	return out
}

// poll calls ok every 20 ms until it is true or limit passes; it returns
// how long that took and whether ok became true.
func poll(limit time.Duration, ok func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if ok() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPodNetns runs clients in pods (network namespaces of their own with
// a veth pair to a test host namespace, each in a cgroup of its own under
// the captured one), created after the agent started. Their connections
// go through the proxy (byte-identical), are recorded with the pod's
// namespace and cgroup, and deleting a pod frees everything the agent held
// for it: map entries, listeners, goroutines, fds, and the namespace
// itself (its veth disappears only once nothing holds it).
func TestPodNetns(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	requireTool(t, "bash")
	requireTool(t, "ip")
	pn := newPodNet(t)
	parent := testCgroup(t)
	a := startAgent(t, parent, "", 0)
	pid := a.cmd.Process.Pid

	// Baseline: the agent serving no pod, settled.
	time.Sleep(300 * time.Millisecond)
	base := a.view(t)
	baseFDs := fdCount(t, pid)
	baseTargets := fdTargets(pid)
	if base.Kernel.NetnsServed != 0 {
		t.Fatalf("netns_served before any pod = %d; want 0", base.Kernel.NetnsServed)
	}

	podA := pn.newPod(t, parent)
	_, ok := poll(5*time.Second, func() bool { return listening(podA.pause.Process.Pid, a.port) })
	if !ok {
		t.Fatalf("no proxy listener in pod A's namespace 5 s after its veth appeared:\n%s", a.stderr.String())
	}
	t.Logf("pod A served %v after its veth was created", time.Since(podA.linkedAt).Round(time.Millisecond))
	if _, ok := poll(5*time.Second, func() bool { return a.view(t).Kernel.NetnsServed == 1 }); !ok {
		t.Fatalf("netns_served did not reach 1: %+v", a.view(t))
	}
	podB := pn.newPod(t, parent)
	if _, ok := poll(5*time.Second, func() bool { return listening(podB.pause.Process.Pid, a.port) }); !ok {
		t.Fatalf("no proxy listener in pod B's namespace 5 s after its veth appeared:\n%s", a.stderr.String())
	}
	t.Logf("pod B served %v after its veth was created", time.Since(podB.linkedAt).Round(time.Millisecond))
	if _, ok := poll(5*time.Second, func() bool { return a.view(t).Kernel.NetnsServed == 2 }); !ok {
		t.Fatalf("netns_served did not reach 2 after pod B: %+v", a.view(t))
	}

	// Clients in the pods: curl fetches 1 MiB, bash talks HTTP by hand.
	blobURL := fmt.Sprintf("http://%s:%d/blob", podA.server, pn.port)
	got := run(t, podA.cmd("curl", "-sS", "--fail", "--max-time", "20", blobURL))
	if !bytes.Equal(got, pn.blob) {
		t.Fatalf("curl in pod A through vigil returned %d bytes that differ from the served %d", len(got), len(pn.blob))
	}
	hello6 := fmt.Sprintf("http://[%s]:%d/hello", podA.server6, pn.port)
	if out := string(run(t, podA.cmd("curl", "-sS", "--fail", "-g", "--max-time", "20", hello6))); out != "hello from the test host\n" {
		t.Fatalf("curl -6 in pod A through vigil got %q", out)
	}
	script := fmt.Sprintf(`exec 3<>/dev/tcp/%s/%d; printf 'GET /hello HTTP/1.0\r\n\r\n' >&3; cat <&3`, podB.server, pn.port)
	if out := string(run(t, podB.cmd("bash", "-c", script))); !strings.Contains(out, "hello from the test host") {
		t.Fatalf("bash in pod B through vigil got %q", out)
	}
	// Kernel counters in the status are up to a second old.
	if _, ok := poll(3*time.Second, func() bool { return a.view(t).Kernel.RedirectedNetns >= 3 }); !ok {
		t.Errorf("redirected_netns = %d; want ≥ 3 (one per pod client)", a.view(t).Kernel.RedirectedNetns)
	}

	// Delete pod A as a runtime does: its processes go, then its bind mount.
	podA.stop()
	ipCmd(t, "netns", "del", podA.ns)
	released, ok := poll(20*time.Second, func() bool { return a.view(t).Kernel.NetnsServed == 1 })
	if !ok {
		t.Fatalf("pod A's namespace still served after deletion: %+v", a.view(t))
	}
	t.Logf("pod A released %v after deletion", released.Round(time.Millisecond))
	// The namespace itself is freed: its veth peer leaves the test host.
	hostIfA := "vh" + podA.ns[len(podA.ns)-8:]
	if _, ok := poll(5*time.Second, func() bool {
		return exec.Command("ip", "-n", pn.host, "link", "show", hostIfA).Run() != nil
	}); !ok {
		t.Errorf("pod A's namespace is still alive (veth %s remains): something holds it", hostIfA)
	}

	podB.stop()
	ipCmd(t, "netns", "del", podB.ns)
	if _, ok := poll(20*time.Second, func() bool { return a.view(t).Kernel.NetnsServed == 0 }); !ok {
		t.Fatalf("pod B's namespace still served after deletion: %+v", a.view(t))
	}
	var after agentView
	var afterFDs int
	if _, ok := poll(5*time.Second, func() bool {
		after, afterFDs = a.view(t), fdCount(t, pid)
		return after.Goroutines <= base.Goroutines && afterFDs <= baseFDs && after.Listeners == base.Listeners &&
			after.Kernel.Origins <= base.Kernel.Origins && after.Kernel.Tuples <= base.Kernel.Tuples
	}); !ok {
		t.Errorf("after both pods were deleted: goroutines %d, fds %d, listeners %d, origins %d, tuples %d; want back to baseline %d, %d, %d, %d, %d",
			after.Goroutines, afterFDs, after.Listeners, after.Kernel.Origins, after.Kernel.Tuples,
			base.Goroutines, baseFDs, base.Listeners, base.Kernel.Origins, base.Kernel.Tuples)
		t.Logf("baseline fds: %v\nfds now: %v", baseTargets, fdTargets(pid))
	}
	t.Logf("baseline: goroutines %d fds %d listeners %d; after: %d %d %d", base.Goroutines, baseFDs, base.Listeners, after.Goroutines, afterFDs, after.Listeners)

	a.stop()
	es := entries(t, a.dataDir)
	checkPodEntry := func(p *pod, comm, dst, srcPrefix string) {
		t.Helper()
		opens := find(es, auditlog.ConnOpen, comm, dst)
		if len(opens) != 1 {
			t.Fatalf("conn.open from %s to %s: %d entries; want 1", comm, dst, len(opens))
		}
		e := opens[0]
		var st syscall.Stat_t
		if err := syscall.Stat(p.cg, &st); err == nil && e.Identity.CgroupID != st.Ino {
			t.Errorf("conn.open from %s: cgroup id %d; want the pod's %d", comm, e.Identity.CgroupID, st.Ino)
		}
		if e.Attrs["netns_ino"] != strconv.FormatUint(p.id.Ino, 10) || e.Identity.NetnsCookie == 0 {
			t.Errorf("conn.open from %s: netns_ino %q, cookie %d; want the pod's %d", comm, e.Attrs["netns_ino"], e.Identity.NetnsCookie, p.id.Ino)
		}
		if !strings.HasPrefix(e.Src, srcPrefix) {
			t.Errorf("conn.open from %s: src %q; want the client's loopback address in its namespace", comm, e.Src)
		}
		if len(find(es, auditlog.ConnClose, comm, dst)) != 1 {
			t.Errorf("conn.close from %s to %s missing", comm, dst)
		}
	}
	checkPodEntry(podA, "curl", fmt.Sprintf("%s:%d", podA.server, pn.port), "127.0.0.1:")
	checkPodEntry(podA, "curl", fmt.Sprintf("[%s]:%d", podA.server6, pn.port), "[::1]:")
	checkPodEntry(podB, "bash", fmt.Sprintf("%s:%d", podB.server, pn.port), "127.0.0.1:")

	// Adoption and release are recorded, once each per pod.
	changes := map[string]int{}
	for _, e := range es {
		if e.Type == auditlog.AgentReload && e.Attrs["netns"] != "" {
			changes[e.Attrs["netns"]+" "+e.Attrs["netns_ino"]]++
		}
	}
	for _, p := range []*pod{podA, podB} {
		ino := strconv.FormatUint(p.id.Ino, 10)
		if changes["adopted "+ino] != 1 || changes["released "+ino] != 1 {
			t.Errorf("agent.reload netns entries for %s = %v; want one adopted and one released", ino, changes)
		}
	}
	if bypass := find(es, auditlog.ConnBypass, "curl", fmt.Sprintf("%s:%d", podA.server, pn.port)); len(bypass) != 0 {
		t.Errorf("curl in a served pod was reported as bypass: %+v", bypass)
	}
	verify(t, a.dataDir)
}

// TestPodNetnsFailClosed: with fail-closed pins, a pod's connections are
// refused while no agent runs (its served entry stays, its listener is
// gone); the next agent serves the pod again and prunes the entry of a pod
// deleted meanwhile.
func TestPodNetnsFailClosed(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	requireTool(t, "ip")
	pn := newPodNet(t)
	parent := testCgroup(t)
	pin := bpffsDir(t)
	proxyPort := freePort(t)
	flags := []string{"--fail-mode", "closed", "--pin-path", pin}
	a := startAgent(t, parent, "", proxyPort, flags...)
	podA, podB := pn.newPod(t, parent), pn.newPod(t, parent)
	if _, ok := poll(5*time.Second, func() bool { return a.view(t).Kernel.NetnsServed == 2 }); !ok {
		t.Fatalf("netns_served did not reach 2: %+v", a.view(t))
	}
	hello := func(p *pod) error {
		cmd := p.cmd("curl", "-sS", "--fail", "--max-time", "10", fmt.Sprintf("http://%s:%d/hello", p.server, pn.port))
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := hello(podA); err != nil {
		t.Fatalf("curl in pod A through the agent: %v", err)
	}

	a.kill()
	// curl exit 7: it could not connect (refused by the pod's own loopback).
	if err := hello(podA); err == nil || !strings.Contains(err.Error(), "(7)") {
		t.Errorf("curl in pod A with no agent (fail-closed) = %v; want a failed connect", err)
	}
	podB.stop()
	ipCmd(t, "netns", "del", podB.ns)

	b := startAgent(t, parent, a.dataDir, proxyPort, flags...)
	if _, ok := poll(5*time.Second, func() bool { return b.view(t).Kernel.NetnsServed == 1 }); !ok {
		t.Fatalf("after restart netns_served = %d; want 1 (pod A adopted again, pod B's entry pruned)", b.view(t).Kernel.NetnsServed)
	}
	if err := hello(podA); err != nil {
		t.Errorf("curl in pod A after restart: %v", err)
	}
	b.stop()
	verify(t, a.dataDir)
}

// TestPodNetnsNotServed: with --max-netns 0 no namespace is served, as
// before: a pod's connection goes direct and is recorded as conn.bypass
// (path netns.bypass) naming the pod's namespace.
func TestPodNetnsNotServed(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	requireTool(t, "ip")
	pn := newPodNet(t)
	parent := testCgroup(t)
	a := startAgent(t, parent, "", 0, "--max-netns", "0")
	p := pn.newPod(t, parent)
	dst := fmt.Sprintf("%s:%d", p.server, pn.port)
	out := run(t, p.cmd("curl", "-sS", "--fail", "--max-time", "10", "http://"+dst+"/hello"))
	if string(out) != "hello from the test host\n" {
		t.Fatalf("curl in an unserved pod got %q", out)
	}
	if listening(p.pause.Process.Pid, a.port) {
		t.Error("a proxy listener appeared in the pod with --max-netns 0")
	}
	time.Sleep(200 * time.Millisecond) // the event reaches the log asynchronously
	a.stop()
	es := entries(t, a.dataDir)
	if opens := find(es, auditlog.ConnOpen, "curl", dst); len(opens) != 0 {
		t.Errorf("conn.open from the unserved pod: %+v; want none", opens)
	}
	bypass := find(es, auditlog.ConnBypass, "curl", dst)
	// netns_ino is read from /proc when the event is recorded, so a curl
	// that has already exited leaves only the kernel's netns cookie.
	if len(bypass) != 1 || bypass[0].Attrs["path"] != "netns.bypass" || bypass[0].Identity.NetnsCookie == 0 ||
		(bypass[0].Attrs["netns_ino"] != "" && bypass[0].Attrs["netns_ino"] != strconv.FormatUint(p.id.Ino, 10)) {
		t.Errorf("conn.bypass from curl to %s = %+v; want one, path netns.bypass, a netns cookie, netns_ino %d if any", dst, bypass, p.id.Ino)
	}
	verify(t, a.dataDir)
}

// TestPodNetnsWithoutSysAdmin: an agent without CAP_SYS_ADMIN cannot enter
// namespaces; it says so once at start and pods stay reported, working.
func TestPodNetnsWithoutSysAdmin(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	requireTool(t, "ip")
	requireTool(t, "setpriv")
	pn := newPodNet(t)
	parent := testCgroup(t)
	sockDir, err := os.MkdirTemp("", "vigil-e2e-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	a := &agentProc{t: t, dataDir: t.TempDir(), port: freePort(t), socket: filepath.Join(sockDir, "vigil.sock"),
		stderr: &syncBuffer{}, done: make(chan error, 1)}
	a.cmd = exec.Command("setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-all", vigilBin, "agent",
		"--data-dir", a.dataDir, "--cgroup", parent, "--proxy-port", strconv.Itoa(a.port), "--socket", a.socket)
	a.cmd.Stderr = a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- a.cmd.Wait() }()
	t.Cleanup(a.kill)
	if _, ok := poll(15*time.Second, func() bool { return strings.Contains(a.stderr.String(), "vigil agent started") }); !ok {
		t.Fatalf("agent did not start:\n%s", a.stderr.String())
	}
	if !strings.Contains(a.stderr.String(), "needs CAP_SYS_ADMIN") {
		t.Errorf("agent without CAP_SYS_ADMIN did not say why pods are not served:\n%s", a.stderr.String())
	}
	p := pn.newPod(t, parent)
	dst := fmt.Sprintf("%s:%d", p.server, pn.port)
	if out := string(run(t, p.cmd("curl", "-sS", "--fail", "--max-time", "10", "http://"+dst+"/hello"))); out != "hello from the test host\n" {
		t.Fatalf("curl in the pod got %q", out)
	}
	time.Sleep(200 * time.Millisecond)
	a.stop()
	es := entries(t, a.dataDir)
	if len(find(es, auditlog.ConnBypass, "curl", dst)) != 1 || len(find(es, auditlog.ConnOpen, "curl", dst)) != 0 {
		t.Errorf("curl from the pod: want one conn.bypass and no conn.open")
	}
	verify(t, a.dataDir)
}
