package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"

	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Handle methods after Close.
var ErrClosed = errors.New("netns: handle closed")

// Handle is an open network namespace. It keeps the namespace alive until
// Close, and so do sockets created in it. Its methods are safe for
// concurrent use; Close waits for Do calls in progress.
type Handle struct {
	id   ID
	path string

	mu     sync.RWMutex // held for reading while a thread uses fd
	fd     vnetns.NsHandle
	closed bool
}

// Open opens the namespace at path (/proc/PID/ns/net, a bind mount under
// /run/netns). When want is not zero the namespace must be that one: a pid
// can be reused between a scan and the open.
func Open(path string, want ID) (*Handle, error) {
	fd, err := vnetns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("netns: open %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		_ = fd.Close()
		return nil, fmt.Errorf("netns: open %s: %w", path, os.NewSyscallError("fstat", err))
	}
	id := ID{Dev: st.Dev, Ino: st.Ino}
	if !want.IsZero() && id != want {
		_ = fd.Close()
		return nil, fmt.Errorf("netns: open %s: namespace %s, want %s: it changed since it was found", path, id, want)
	}
	return &Handle{id: id, path: path, fd: fd}, nil
}

// Current opens the network namespace of the calling thread.
func Current() (*Handle, error) {
	return Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), ID{})
}

// ID identifies the namespace.
func (h *Handle) ID() ID { return h.id }

// Path is where the namespace was opened from.
func (h *Handle) Path() string { return h.path }

// Close releases the handle; the namespace lives on while processes,
// bind mounts or sockets hold it.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	return h.fd.Close()
}

// Do runs fn on an OS thread inside the namespace and returns its error.
// Sockets fn creates belong to the namespace. fn must not start goroutines
// that expect to run there: only the calling thread is inside.
func (h *Handle) Do(fn func() error) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return ErrClosed
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := vnetns.Set(h.fd); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter %s: %w", h.id, err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			// Stay locked: the thread exits with this goroutine rather
			// than run other goroutines in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("netns: return from %s: %w", h.id, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Listen binds a TCP listener on addr inside the namespace.
func (h *Handle) Listen(ctx context.Context, lc *net.ListenConfig, addr string) (*net.TCPListener, error) {
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	var ln net.Listener
	err := h.Do(func() error {
		var err error
		ln, err = lc.Listen(ctx, "tcp", addr)
		return err
	})
	if err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// Cookie returns the network namespace cookie of the socket behind c (a
// listener or connection): what BPF programs see as bpf_get_netns_cookie.
func Cookie(c syscall.Conn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("netns: cookie: %w", err)
	}
	var cookie uint64
	var serr error
	if err := rc.Control(func(fd uintptr) {
		cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	}); err != nil {
		return 0, fmt.Errorf("netns: cookie: %w", err)
	}
	if serr != nil {
		return 0, fmt.Errorf("netns: cookie: %w", os.NewSyscallError("getsockopt SO_NETNS_COOKIE", serr))
	}
	return cookie, nil
}
