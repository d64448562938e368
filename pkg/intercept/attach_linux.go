package intercept

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/vigil-ebpf/vigil/bpf"
)

// hook is one program and how it attaches to the cgroup.
type hook struct {
	name   string // pinned as link_<name>
	attach ebpf.AttachType
	prog   func(*bpf.InterceptPrograms) *ebpf.Program
}

// hooks lists the programs in attach order: lifecycle and reporting hooks
// first, the redirecting connect hooks last.
var hooks = []hook{
	{"sockops", ebpf.AttachCGroupSockOps, func(p *bpf.InterceptPrograms) *ebpf.Program { return p.VigilSockops }},
	{"sock_release", ebpf.AttachCgroupInetSockRelease, func(p *bpf.InterceptPrograms) *ebpf.Program { return p.VigilRelease }},
	{"getpeername4", ebpf.AttachCgroupInet4GetPeername, func(p *bpf.InterceptPrograms) *ebpf.Program { return p.VigilPeername4 }},
	{"getpeername6", ebpf.AttachCgroupInet6GetPeername, func(p *bpf.InterceptPrograms) *ebpf.Program { return p.VigilPeername6 }},
	{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, func(p *bpf.InterceptPrograms) *ebpf.Program { return p.VigilSendmsg4 }},
	{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, func(p *bpf.InterceptPrograms) *ebpf.Program { return p.VigilSendmsg6 }},
	{"connect4", ebpf.AttachCGroupInet4Connect, func(p *bpf.InterceptPrograms) *ebpf.Program { return p.VigilConnect4 }},
	{"connect6", ebpf.AttachCGroupInet6Connect, func(p *bpf.InterceptPrograms) *ebpf.Program { return p.VigilConnect6 }},
}

// linkPin is the file name of h's pinned link under PinPath.
func (h hook) linkPin() string { return "link_" + h.name }

// attach attaches h to the cgroup. With PinPath it first tries to adopt a
// pinned link on the same cgroup and hook, swapping its program in place so
// that no connect goes unseen during an agent restart; it reports whether
// it did.
func (i *Interceptor) attach(h hook) (link.Link, bool, error) {
	prog := h.prog(&i.objs.InterceptPrograms)
	pin := ""
	if i.cfg.PinPath != "" {
		pin = filepath.Join(i.cfg.PinPath, h.linkPin())
		l, err := link.LoadPinnedLink(pin, nil)
		switch {
		case err == nil:
			if i.sameHook(l, h) {
				if err := l.Update(prog); err == nil {
					return l, true, nil
				} else {
					i.log.Warn("cannot update pinned link; replacing it", "link", pin, "error", err)
				}
			} else {
				i.log.Warn("pinned link is attached elsewhere; replacing it", "link", pin, "cgroup", i.cfg.CgroupPath)
			}
			if err := l.Unpin(); err != nil {
				l.Close()
				return nil, false, fmt.Errorf("intercept: unpin stale link %s: %w", pin, err)
			}
			l.Close()
		case errors.Is(err, os.ErrNotExist):
		default:
			return nil, false, classify("load pinned link "+pin, err)
		}
	}

	l, err := link.AttachCgroup(link.CgroupOptions{Path: i.cfg.CgroupPath, Attach: h.attach, Program: prog})
	if err != nil {
		step := fmt.Sprintf("attach %s to %s", h.name, i.cfg.CgroupPath)
		if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
			return nil, false, &Error{Kind: ErrKernelTooOld, Msg: step, Err: err, Hint: hintKernel}
		}
		return nil, false, classify(step, err)
	}
	if pin != "" {
		if err := l.Pin(pin); err != nil {
			l.Close()
			return nil, false, fmt.Errorf("intercept: pin %s: %w", pin, err)
		}
	}
	return l, false, nil
}

// sameHook reports whether the pinned link l attaches h to our cgroup.
func (i *Interceptor) sameHook(l link.Link, h hook) bool {
	info, err := l.Info()
	if err != nil {
		return false
	}
	cg := info.Cgroup()
	return cg != nil && cg.CgroupId == i.cgroupID && uint32(cg.AttachType) == uint32(h.attach)
}

// preparePinPath creates dir if needed and checks that it is on a bpffs.
func preparePinPath(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &Error{Msg: "create PinPath", Err: err, Hint: "PinPath must be a directory on a bpffs (mount -t bpf bpf /sys/fs/bpf)"}
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return &Error{Msg: "PinPath " + dir, Err: err}
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return &Error{Msg: fmt.Sprintf("PinPath %s is not on a bpffs", dir), Hint: "mount one with mount -t bpf bpf /sys/fs/bpf, or leave PinPath empty for fail-open"}
	}
	return nil
}

// removeMapPins removes the map pins under dir.
func removeMapPins(dir string) error {
	for _, name := range pinnedMaps {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("intercept: remove pinned map: %w", err)
		}
	}
	return nil
}

// Unpin undoes what a fail-closed Open left under pinPath: it detaches the
// pinned links (connections go direct again) and removes the pinned maps.
// It is what switching from fail-closed to fail-open, or uninstalling,
// needs; pins that do not exist are ignored.
func Unpin(pinPath string) error {
	var errs []error
	for _, h := range hooks {
		path := filepath.Join(pinPath, h.linkPin())
		l, err := link.LoadPinnedLink(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := l.Unpin(); err != nil {
			errs = append(errs, err)
		}
		errs = append(errs, l.Close())
	}
	errs = append(errs, removeMapPins(pinPath))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("intercept: unpin %s: %w", pinPath, err)
	}
	return nil
}
