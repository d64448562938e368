package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/vigil-ebpf/vigil/bpf"
)

// Interceptor is the loaded and attached kernel side. Its methods are safe
// for concurrent use, except that only one ReadEvents runs at a time.
type Interceptor struct {
	cfg      Config
	log      *slog.Logger
	objs     bpf.InterceptObjects
	links    []link.Link
	events   *ringbuf.Reader
	netns    uint64
	cgroupID uint64

	denySpec    *ebpf.MapSpec // one generation of the deny table (the inner map of vigil_deny)
	denyMu      sync.Mutex    // serializes SetDeny
	denyEntries int           // prefixes of the deny table in force

	// adoptedCounters: the stats map came from PinPath, left by an
	// earlier agent, rather than created by this Open.
	adoptedCounters bool

	readMu     sync.Mutex
	detachOnce sync.Once
	detachErr  error
	closeOnce  sync.Once
	closeErr   error
}

// Open loads the programs, configures them from cfg, and attaches them to
// cfg.CgroupPath. The error matches ErrPermission, ErrNoCgroupV2,
// ErrKernelTooOld or ErrVerifier when one of those is the reason.
func Open(ctx context.Context, cfg Config) (*Interceptor, error) {
	cfg = cfg.withDefaults()
	capture, err := compileCapture(cfg.Capture)
	if err != nil {
		return nil, err
	}
	if cfg.CgroupPath == "" {
		if cfg.CgroupPath, err = CgroupRoot(); err != nil {
			return nil, err
		}
	}
	cgroupID, err := checkCgroup2(cfg.CgroupPath)
	if err != nil {
		return nil, err
	}
	if cfg.PinPath != "" {
		if err := preparePinPath(cfg.PinPath); err != nil {
			return nil, err
		}
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, classify("raise RLIMIT_MEMLOCK", err)
	}
	netns, err := ownNetnsCookie()
	if err != nil {
		return nil, err
	}
	if err := probeKernel(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	i := &Interceptor{cfg: cfg, log: cfg.Logger, netns: netns, cgroupID: cgroupID}
	if err := i.load(); err != nil {
		return nil, err
	}
	if err := i.start(ctx, capture); err != nil {
		i.Close()
		return nil, err
	}
	return i, nil
}

// start fills the capture set, opens the event reader and attaches the
// programs, the connect hooks last so that nothing is redirected before the
// hooks that clean up after it are in place.
func (i *Interceptor) start(ctx context.Context, capture map[netip.Prefix][]portRange) error {
	if err := i.writeCapture(capture); err != nil {
		return err
	}
	var err error
	if i.events, err = ringbuf.NewReader(i.objs.VigilEvents); err != nil {
		return fmt.Errorf("intercept: event reader: %w", err)
	}
	adopted := 0
	for _, h := range hooks {
		if err := ctx.Err(); err != nil {
			return err
		}
		l, reused, err := i.attach(h)
		if err != nil {
			return err
		}
		if reused {
			adopted++
		}
		i.links = append(i.links, l)
	}
	i.log.Info("interception attached",
		"cgroup", i.cfg.CgroupPath, "proxy_port", i.cfg.ProxyPort,
		"capture_prefixes", len(capture), "pin_path", i.cfg.PinPath,
		"links_adopted", adopted, "netns_cookie", i.netns)
	return nil
}

// NetnsCookie returns the cookie of the agent's network namespace: connects
// from any other namespace are reported, not redirected.
func (i *Interceptor) NetnsCookie() uint64 { return i.netns }

// AdoptedCounters reports whether the kernel's counters (Stats) were
// adopted from pins an earlier agent left, rather than created at zero by
// this Open: only adopted counters hold counts from before this agent.
func (i *Interceptor) AdoptedCounters() bool { return i.adoptedCounters }

// Detach closes the links and keeps the maps and the event reader. Without
// PinPath the programs detach, so connections go direct again and the
// programs queue no more events: a reader that drains after Detach
// records every event they queued. With PinPath the pinned links keep
// redirecting (fail-closed). Close calls it too.
func (i *Interceptor) Detach() error {
	i.detachOnce.Do(func() {
		var errs []error
		// Connect hooks were attached last; detach them first.
		for j := len(i.links) - 1; j >= 0; j-- {
			errs = append(errs, i.links[j].Close())
		}
		if err := errors.Join(errs...); err != nil {
			i.detachErr = fmt.Errorf("intercept: detach: %w", err)
		}
	})
	return i.detachErr
}

// StopEvents closes the event reader and ends ReadEvents without draining:
// with PinPath what is still queued waits in the pinned ring buffer for
// the next agent. Close calls it too.
func (i *Interceptor) StopEvents() error {
	if i.events == nil {
		return nil
	}
	return i.events.Close()
}

// Close closes the event reader, links and maps. Without PinPath the
// programs detach and connections go direct again (fail-open); with it the
// pinned links keep redirecting to the proxy port (fail-closed).
func (i *Interceptor) Close() error {
	i.closeOnce.Do(func() {
		var errs []error
		if i.events != nil {
			errs = append(errs, i.events.Close())
		}
		errs = append(errs, i.Detach(), i.objs.Close())
		if err := errors.Join(errs...); err != nil {
			i.closeErr = fmt.Errorf("intercept: close: %w", err)
		}
	})
	return i.closeErr
}

// ownNetnsCookie returns the cookie of the calling thread's network
// namespace (SO_NETNS_COOKIE, Linux 5.14).
func ownNetnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, &Error{Msg: "read own network namespace cookie", Err: os.NewSyscallError("socket", err)}
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		if errors.Is(err, unix.ENOPROTOOPT) {
			return 0, &Error{Kind: ErrKernelTooOld, Msg: "kernel lacks SO_NETNS_COOKIE (Linux 5.14)", Err: err, Hint: hintKernel}
		}
		return 0, &Error{Msg: "read own network namespace cookie", Err: os.NewSyscallError("getsockopt SO_NETNS_COOKIE", err)}
	}
	return cookie, nil
}

// SetCapture replaces the capture set while the programs stay attached.
// New rules go in before stale ones go out, so the set is never empty in
// between; connections already redirected are unaffected.
func (i *Interceptor) SetCapture(rules []CaptureRule) error {
	if len(rules) == 0 {
		rules = DefaultCapture()
	}
	compiled, err := compileCapture(rules)
	if err != nil {
		return err
	}
	return i.writeCapture(compiled)
}
