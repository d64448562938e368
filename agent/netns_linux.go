package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/netns"
	"github.com/vigil-ebpf/vigil/pkg/proxy"
	"golang.org/x/sys/unix"
)

// workloads serves the network namespaces of workloads (pods,
// containers): in each one it holds proxy listeners on loopback at the
// proxy port, and the kernel redirects connects from there to them.
type workloads struct {
	tracker *netns.Tracker

	mu     sync.Mutex
	served map[uint64]netns.ID  // netns cookie -> namespace, while served
	kicked map[uint64]time.Time // netns cookie -> when its last netns.bypass asked for a rescan
}

// newWorkloads prepares namespace tracking; nil when Config.MaxNetns < 0.
// Discovery is scoped to the captured cgroup: the connect hooks see
// nothing from processes outside it. On the whole host, namespaces
// bind-mounted under /run/netns (pods between two processes) count too.
func (a *Agent) newWorkloads() (*workloads, error) {
	if a.cfg.MaxNetns < 0 {
		return nil, nil
	}
	if !hasCap(unix.CAP_SYS_ADMIN) {
		// setns(2) into another network namespace needs it; without it
		// every adoption would fail. Say so once and keep reporting.
		a.log.Warn("workload network namespaces are not served: entering them (setns) needs CAP_SYS_ADMIN; their connects are only reported (netns.bypass). Grant CAP_SYS_ADMIN, or pass --max-netns 0 to silence this")
		return nil, nil
	}
	self, err := netns.StatNS("/proc/self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("agent: own network namespace: %w", err)
	}
	sc := netns.Scanner{}
	root, err := intercept.CgroupRoot()
	if err != nil {
		return nil, err
	}
	if cg := a.cfg.CgroupPath; cg != "" && filepath.Clean(cg) != filepath.Clean(root) {
		sc.BindDirs = []string{}
		sc.Pids = func() ([]int, error) { return cgroupPids(cg) }
	}
	w := &workloads{served: make(map[uint64]netns.ID), kicked: make(map[uint64]time.Time)}
	w.tracker = netns.NewTracker(netns.TrackerConfig{
		Scanner: sc,
		Exclude: []netns.ID{self},
		Max:     a.maxNetns(),
		Logger:  a.log,
	}, a.adoptNetns)
	return w, nil
}

func (a *Agent) maxNetns() int {
	if a.cfg.MaxNetns == 0 {
		return intercept.DefaultMaxNetns
	}
	return a.cfg.MaxNetns
}

// hasCap reports whether the agent's effective set holds capability bit;
// true when it cannot tell (the kernel's own errors then speak).
func hasCap(bit int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return true
	}
	return data[bit/32].Effective&(1<<(uint(bit)%32)) != 0
}

// cgroupPids lists the processes of the cgroup subtree at dir.
func cgroupPids(dir string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a child cgroup removed during the walk
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		f, err := os.Open(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if pid, err := strconv.Atoi(s.Text()); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids, err
}

// runWorkloads serves namespaces until ctx ends: a first scan, stale
// entries of a previous agent dropped from a pinned map, then rescans.
func (a *Agent) runWorkloads(ctx context.Context) {
	w := a.netns
	ch, err := w.tracker.Sync(ctx)
	if err != nil {
		a.log.Warn("network namespace scan failed", "err", err)
	}
	w.mu.Lock()
	keep := make(map[uint64]bool, len(w.served))
	for c := range w.served {
		keep[c] = true
	}
	w.mu.Unlock()
	if err := a.icpt.PruneNetns(keep); err != nil {
		a.log.Warn("stale served namespaces not pruned", "err", err)
	}
	a.log.Info("workload network namespaces served", "count", len(ch.Adopted), "failed", ch.Failed, "skipped", ch.Skipped)
	w.tracker.Run(ctx)
}

// kickNetns asks for a rescan when the kernel reports a connect from a
// namespace that is not served: it may be new. One namespace that cannot
// be served (loopback down, the port taken, the limit reached) kicks at
// most once per kickEvery, so its traffic does not turn into rescans.
func (a *Agent) kickNetns(ev intercept.Event) {
	w := a.netns
	if w == nil || ev.Kind != intercept.EventOtherNetns {
		return
	}
	now := time.Now()
	w.mu.Lock()
	last, seen := w.kicked[ev.Origin.NetnsCookie]
	if !seen || now.Sub(last) >= kickEvery {
		if len(w.kicked) >= maxKicked {
			clear(w.kicked)
		}
		w.kicked[ev.Origin.NetnsCookie] = now
	}
	w.mu.Unlock()
	if !seen || now.Sub(last) >= kickEvery {
		w.tracker.Kick()
	}
}

// Bounds of kickNetns.
const (
	kickEvery = 5 * time.Second // per namespace
	maxKicked = 4096            // namespaces remembered; forgotten all at once beyond
)

// adoptNetns binds the proxy's listeners inside h, hands them to the
// proxy with a resolver for that namespace and a dialer that dials from
// it, and only then has the kernel redirect connects from there. The
// listener on 127.0.0.1 is required; [::1] is skipped when IPv6 is off in
// the namespace (IPv4-mapped connects still reach the IPv4 listener).
func (a *Agent) adoptNetns(ctx context.Context, h *netns.Handle) (func(string), error) {
	port := int(a.cfg.ProxyPort)
	lc := proxy.ListenConfig()
	ln4, err := h.Listen(ctx, &lc, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)).String())
	if err != nil {
		return nil, fmt.Errorf("listen on loopback (is lo up?): %w", err)
	}
	lns := []*net.TCPListener{ln4}
	ln6, err := h.Listen(ctx, &lc, fmt.Sprintf("[::1]:%d", port))
	switch {
	case err == nil:
		lns = append(lns, ln6)
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EAFNOSUPPORT):
		// IPv6 is off in the namespace: nothing there can make a native
		// IPv6 connect, and IPv4-mapped ones reach the IPv4 listener.
	default:
		// Anything else (the port taken by a workload) would send the
		// namespace's IPv6 connects somewhere else: do not serve it.
		_ = ln4.Close()
		return nil, fmt.Errorf("listen on [::1]:%d: %w", port, err)
	}
	closeAll := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	cookie, err := netns.Cookie(ln4)
	if err != nil {
		closeAll()
		return nil, err
	}
	if cookie == a.icpt.NetnsCookie() {
		closeAll()
		return nil, errors.New("the agent's own namespace")
	}
	id := h.ID()
	src := proxy.Source{
		Resolver: proxy.ResolverFunc(func(c netip.AddrPort) (intercept.Origin, bool, error) {
			return a.icpt.LookupNetns(cookie, c)
		}),
		Within: h.Do,
		Attrs:  map[string]string{"netns_ino": strconv.FormatUint(id.Ino, 10)},
	}
	var added []*net.TCPListener
	undo := func() {
		for _, ln := range added {
			_ = a.proxy.RemoveListener(ln)
		}
		for _, ln := range lns[len(added):] {
			_ = ln.Close()
		}
	}
	for _, ln := range lns {
		if err := a.proxy.AddListener(ln, src); err != nil {
			undo()
			return nil, err
		}
		added = append(added, ln)
	}
	if err := a.icpt.ServeNetns(cookie); err != nil {
		undo()
		return nil, err
	}
	a.netns.mu.Lock()
	a.netns.served[cookie] = id
	a.netns.mu.Unlock()

	attrs := map[string]string{
		"netns": "adopted", "netns_ino": strconv.FormatUint(id.Ino, 10), "netns_cookie": strconv.FormatUint(cookie, 10),
		"netns_path": h.Path(), "listeners": strconv.Itoa(len(lns)),
	}
	a.recordNetns(ctx, attrs)
	a.log.Info("network namespace served", "netns", id.String(), "cookie", cookie, "path", h.Path(), "listeners", len(lns))

	return func(reason string) {
		// Stop redirecting first, then close: no connect is sent to a
		// listener that is going away. At shutdown the entry stays: with
		// fail-closed pins the namespace's connects are then refused like
		// the host's; fail-open detaches the programs and frees the map.
		var uerr error
		if reason != netns.ReasonShutdown {
			uerr = a.icpt.UnserveNetns(cookie)
		}
		for _, ln := range lns {
			_ = a.proxy.RemoveListener(ln)
		}
		a.netns.mu.Lock()
		delete(a.netns.served, cookie)
		a.netns.mu.Unlock()
		if reason == netns.ReasonShutdown {
			return // agent.stop says it; the programs detach or stay pinned
		}
		if uerr != nil {
			a.log.Warn("served namespace not removed from the kernel map", "netns", id.String(), "err", uerr)
		}
		a.recordNetns(ctx, map[string]string{
			"netns": "released", "reason": reason, "netns_ino": strconv.FormatUint(id.Ino, 10),
			"netns_cookie": strconv.FormatUint(cookie, 10),
		})
		a.log.Info("network namespace released", "netns", id.String(), "cookie", cookie, "reason", reason)
	}, nil
}

// netnsAttr adds attribute netns_ino to attrs for a kernel event from
// another namespace than the agent's: the served namespace with the
// event's cookie, or else the namespace of the thread that connected,
// while it still exists.
func (a *Agent) netnsAttr(attrs map[string]string, o intercept.Origin) {
	if a.icpt == nil || o.NetnsCookie == 0 || o.NetnsCookie == a.icpt.NetnsCookie() {
		return
	}
	if a.netns != nil {
		a.netns.mu.Lock()
		id, ok := a.netns.served[o.NetnsCookie]
		a.netns.mu.Unlock()
		if ok {
			attrs["netns_ino"] = strconv.FormatUint(id.Ino, 10)
			return
		}
	}
	// The thread, or at least its process, may still be there; a process
	// that already exited leaves only the cookie (in the entry's identity).
	for _, path := range []string{fmt.Sprintf("/proc/%d/task/%d/ns/net", o.PID, o.TID), fmt.Sprintf("/proc/%d/ns/net", o.PID)} {
		if id, err := netns.StatNS(path); err == nil {
			attrs["netns_ino"] = strconv.FormatUint(id.Ino, 10)
			return
		}
	}
}

// recordNetns records an adoption or release as an agent.reload entry.
func (a *Agent) recordNetns(ctx context.Context, attrs map[string]string) {
	attrs["result"] = "applied"
	if _, err := a.audit.Append(context.WithoutCancel(ctx), auditlog.Entry{Type: auditlog.AgentReload, Attrs: attrs}); err != nil {
		a.log.Error("cannot record network namespace change", "attrs", attrs, "err", err)
	}
}
