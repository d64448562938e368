package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// requiredCaps are the capabilities interception needs, found by running
// the agent with each one dropped (TestCapabilities in test/e2e proves the
// set is sufficient and that each one is needed; docs/DEPLOY.md says why).
var requiredCaps = []struct {
	bit  int
	name string
	why  string
}{
	{unix.CAP_BPF, "CAP_BPF", "load BPF programs and maps"},
	{unix.CAP_PERFMON, "CAP_PERFMON", "BPF helpers that read task data (bpf_get_current_comm)"},
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", "attach cgroup socket programs and set SO_MARK on the proxy's dials"},
	{unix.CAP_SYS_PTRACE, "CAP_SYS_PTRACE", "read /proc/PID/exe of other users' processes"},
}

// bindCap is required on top of requiredCaps when the proxy port is
// privileged (below net.ipv4.ip_unprivileged_port_start), as the default is.
var bindCap = struct {
	bit  int
	name string
	why  string
}{unix.CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE", "bind the proxy port, which is below 1024 so that no other user can take it"}

// unprivilegedPortStart is the lowest port anyone may bind (1024 unless the
// sysctl says otherwise).
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

// checkCaps names every required capability missing from the effective
// set, in one sentence, before anything is loaded: without it a missing
// CAP_PERFMON surfaces as "kernel lacks bpf_get_current_comm", which sends
// people to upgrade a kernel that is fine.
func checkCaps(proxyPort uint16) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return nil // cannot tell: let the kernel's own errors speak
	}
	var missing, why []string
	caps := requiredCaps
	if int(proxyPort) < unprivilegedPortStart() {
		caps = append(caps[:len(caps):len(caps)], bindCap)
	}
	for _, c := range caps {
		if data[c.bit/32].Effective&(1<<(uint(c.bit)%32)) == 0 {
			missing = append(missing, c.name)
			why = append(why, c.name+": "+c.why)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("agent: missing capabilities %s (%s): run the agent as root, or grant them (systemd: CapabilityBoundingSet; Kubernetes: securityContext.capabilities.add; see docs/DEPLOY.md)",
		strings.Join(missing, ", "), strings.Join(why, "; "))
}
