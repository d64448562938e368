package intercept

import (
	"errors"
)

// Sentinel errors for the reasons interception cannot start; test with
// errors.Is on an error from Open.
var (
	// ErrPermission: the process may not load BPF programs or attach them.
	ErrPermission = errors.New("insufficient privileges")
	// ErrNoCgroupV2: no cgroup v2 hierarchy to attach to.
	ErrNoCgroupV2 = errors.New("no cgroup v2")
	// ErrKernelTooOld: the kernel lacks a program type, attach type, map
	// type or helper the programs need.
	ErrKernelTooOld = errors.New("kernel too old")
	// ErrVerifier: the kernel's verifier rejected a program.
	ErrVerifier = errors.New("verifier rejected program")
)

// Hints appended to errors, one sentence each.
const (
	hintPermission = "run as root or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN"
	hintCgroupV2   = "mount cgroup v2 (mount -t cgroup2 none /sys/fs/cgroup) or boot with systemd.unified_cgroup_hierarchy=1"
	hintKernel     = "upgrade to Linux 5.18 or newer with CONFIG_BPF_SYSCALL, CONFIG_CGROUP_BPF and CONFIG_DEBUG_INFO_BTF"
	hintVerifier   = "set Debug to include the verifier log, and report it with the kernel version"
)

// Error is an error from Open that names its Kind and what to do about it.
type Error struct {
	Kind error  // ErrPermission, ErrNoCgroupV2, ErrKernelTooOld, ErrVerifier, or nil
	Msg  string // what failed
	Err  error  // the cause, or nil
	Hint string // what to do, or ""
}

// Error returns "intercept: Msg: Err: Hint", leaving out empty parts.
func (e *Error) Error() string {
	s := "intercept: " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }
