package intercept

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/vigil-ebpf/vigil/bpf"
)

// pinnedMaps are the maps pinned (and adopted) under Config.PinPath. The
// .rodata configuration is not among them: it belongs to each load.
var pinnedMaps = []string{
	bpf.InterceptMapVigilOrigins,
	bpf.InterceptMapVigilTuples,
	bpf.InterceptMapVigilCapture,
	bpf.InterceptMapVigilUdpSeen,
	bpf.InterceptMapVigilEvents,
	bpf.InterceptMapVigilStats,
	bpf.InterceptMapVigilNetns,
}

// load configures the embedded collection spec and loads it, reusing maps
// pinned under PinPath when they are compatible.
func (i *Interceptor) load() error {
	spec, err := bpf.LoadIntercept()
	if err != nil {
		return fmt.Errorf("intercept: %w", err)
	}
	vars := map[string]any{
		bpf.InterceptVarCfgProxyPort:   i.cfg.ProxyPort,
		bpf.InterceptVarCfgBypassMark:  i.cfg.BypassMark,
		bpf.InterceptVarCfgNetnsCookie: i.netns,
		bpf.InterceptVarCfgExemptPid:   i.cfg.ExemptPID,
	}
	for name, value := range vars {
		v, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("intercept: embedded programs lack variable %s: regenerate bpf/", name)
		}
		if err := v.Set(value); err != nil {
			return fmt.Errorf("intercept: set %s: %w", name, err)
		}
	}
	spec.Maps[bpf.InterceptMapVigilNetns].MaxEntries = uint32(i.cfg.MaxNetns)
	if n := i.cfg.originsMax; n != 0 {
		m := spec.Maps[bpf.InterceptMapVigilOrigins]
		m.Type, m.MaxEntries = ebpf.Hash, n
	}

	inner := spec.Maps[bpf.InterceptMapVigilDeny].InnerMap
	if inner == nil {
		return fmt.Errorf("intercept: embedded programs lack the deny table's inner map: regenerate bpf/")
	}
	i.denySpec = inner.Copy()

	opts := &ebpf.CollectionOptions{}
	i.adoptedCounters = false
	if i.cfg.PinPath != "" {
		for _, name := range pinnedMaps {
			spec.Maps[name].Pinning = ebpf.PinByName
		}
		opts.Maps.PinPath = i.cfg.PinPath
		_, err := os.Stat(filepath.Join(i.cfg.PinPath, bpf.InterceptMapVigilStats))
		i.adoptedCounters = err == nil
	}

	err = spec.LoadAndAssign(&i.objs, opts)
	if errors.Is(err, ebpf.ErrMapIncompatible) {
		// Pins from a build with another map layout: start those maps afresh.
		i.log.Warn("pinned maps are incompatible with this build; recreating them", "pin_path", i.cfg.PinPath, "error", err)
		if err := removeMapPins(i.cfg.PinPath); err != nil {
			return err
		}
		i.adoptedCounters = false
		err = spec.LoadAndAssign(&i.objs, opts)
	}
	if err != nil {
		return i.classifyLoad(err)
	}
	return nil
}

// probe is one kernel feature the programs need.
type probe struct {
	what string // what is missing, for the error message
	test func() error
}

var probes = []probe{
	{"cgroup sock_addr programs (Linux 4.17)", func() error { return features.HaveProgramType(ebpf.CGroupSockAddr) }},
	{"sockops programs (Linux 4.13)", func() error { return features.HaveProgramType(ebpf.SockOps) }},
	{"cgroup sock programs (Linux 4.10)", func() error { return features.HaveProgramType(ebpf.CGroupSock) }},
	{"LRU hash maps (Linux 4.10)", func() error { return features.HaveMapType(ebpf.LRUHash) }},
	{"LPM trie maps (Linux 4.11)", func() error { return features.HaveMapType(ebpf.LPMTrie) }},
	{"array of maps (Linux 4.12)", func() error { return features.HaveMapType(ebpf.ArrayOfMaps) }},
	{"ring buffer maps (Linux 5.8)", func() error { return features.HaveMapType(ebpf.RingBuf) }},
	{"bpf_get_netns_cookie in cgroup sock_addr programs (Linux 5.7)", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetNetnsCookie)
	}},
	{"bpf_get_socket_cookie in cgroup sock_addr programs (Linux 5.0)", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetSocketCookie)
	}},
	{"bpf_get_current_pid_tgid in cgroup sock_addr programs", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetCurrentPidTgid)
	}},
	{"bpf_get_current_comm in cgroup sock_addr programs", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnGetCurrentComm)
	}},
	{"bpf_ringbuf_reserve in cgroup sock_addr programs (Linux 5.8)", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnRingbufReserve)
	}},
	{"bpf_set_retval in cgroup sock_addr programs (Linux 5.18)", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSockAddr, asm.FnSetRetval)
	}},
	{"bpf_sock_ops_cb_flags_set in sockops programs (Linux 4.17)", func() error {
		return features.HaveProgramHelper(ebpf.SockOps, asm.FnSockOpsCbFlagsSet)
	}},
	{"bpf_get_netns_cookie in sockops programs (Linux 5.15)", func() error {
		return features.HaveProgramHelper(ebpf.SockOps, asm.FnGetNetnsCookie)
	}},
	{"bpf_get_socket_cookie in sockops programs (Linux 5.0)", func() error {
		return features.HaveProgramHelper(ebpf.SockOps, asm.FnGetSocketCookie)
	}},
	{"bpf_get_socket_cookie in cgroup sock programs (Linux 5.10)", func() error {
		return features.HaveProgramHelper(ebpf.CGroupSock, asm.FnGetSocketCookie)
	}},
}

// probeKernel checks, before loading anything, that the kernel has every
// program type, map type and helper the programs use, so that an old
// kernel gets a sentence naming what it lacks rather than a verifier log.
func probeKernel() error {
	for _, p := range probes {
		err := p.test()
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			return &Error{Kind: ErrKernelTooOld, Msg: "kernel lacks " + p.what, Hint: hintKernel}
		default:
			return classify("probe "+p.what, err)
		}
	}
	return nil
}

// classify wraps err from step, naming a permission problem as such.
func classify(step string, err error) error {
	if isPermission(err) {
		return &Error{Kind: ErrPermission, Msg: step, Err: err, Hint: hintPermission}
	}
	return &Error{Msg: step, Err: err}
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// classifyLoad names the reason a collection did not load.
func (i *Interceptor) classifyLoad(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		log := strings.Join(ve.Log, "\n")
		for _, tooOld := range []string{"unknown func", "invalid func", "cannot use helper", "unknown opcode"} {
			if strings.Contains(log, tooOld) {
				return &Error{Kind: ErrKernelTooOld, Msg: "load BPF programs", Err: err, Hint: hintKernel}
			}
		}
		if i.cfg.Debug {
			err = fmt.Errorf("%w\nverifier log:\n%+v", err, ve)
		}
		return &Error{Kind: ErrVerifier, Msg: "load BPF programs", Err: err, Hint: hintVerifier}
	}
	switch {
	case errors.Is(err, unix.EPERM):
		return &Error{Kind: ErrPermission, Msg: "load BPF programs", Err: err, Hint: hintPermission}
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.EINVAL), errors.Is(err, unix.E2BIG):
		return &Error{Kind: ErrKernelTooOld, Msg: "load BPF programs", Err: err, Hint: hintKernel}
	}
	return &Error{Msg: "load BPF programs", Err: err}
}
