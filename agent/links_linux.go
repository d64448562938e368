package agent

import (
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// agentPrograms are the BPF programs (by kernel name) the interceptor
// attaches to its cgroup, and where. Without the connect hooks nothing is
// redirected; without the others redirected connections lose their origin.
var agentPrograms = []struct {
	attach ebpf.AttachType
	name   string
}{
	{ebpf.AttachCGroupInet4Connect, "vigil_connect4"},
	{ebpf.AttachCGroupInet6Connect, "vigil_connect6"},
	{ebpf.AttachCGroupSockOps, "vigil_sockops"},
	{ebpf.AttachCgroupInetSockRelease, "vigil_release"},
	{ebpf.AttachCgroupInet4GetPeername, "vigil_peername4"},
	{ebpf.AttachCgroupInet6GetPeername, "vigil_peername6"},
	{ebpf.AttachCGroupUDP4Sendmsg, "vigil_sendmsg4"},
	{ebpf.AttachCGroupUDP6Sendmsg, "vigil_sendmsg6"},
}

// missingPrograms asks the kernel which of agentPrograms are not attached
// to the cgroup at dir (someone detached them, or removed the cgroup).
func missingPrograms(dir string) ([]string, error) {
	if dir == "" {
		return nil, fmt.Errorf("no cgroup v2 attach point")
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open attach point: %w", os.NewSyscallError("open "+dir, err))
	}
	defer unix.Close(fd)
	var missing []string
	for _, want := range agentPrograms {
		res, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: want.attach})
		if err != nil {
			return nil, fmt.Errorf("query %s programs on %s: %w", want.attach, dir, err)
		}
		found := false
		for _, ap := range res.Programs {
			if found = programName(ap.ID) == want.name; found {
				break
			}
		}
		if !found {
			missing = append(missing, want.name)
		}
	}
	return missing, nil
}

// programName is the kernel's name for the program with id; "" when it
// is gone or cannot be read.
func programName(id ebpf.ProgramID) string {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return ""
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return ""
	}
	return info.Name
}
