// Package intercept is the Go side of vigil's connection interception: it
// loads the programs in github.com/vigil-ebpf/vigil/bpf, attaches them to a
// cgroup v2 subtree, and gives the proxy what the kernel recorded.
//
// A TCP connect() from a process in the subtree to a captured destination is
// rewritten to the proxy port on loopback (127.0.0.1, ::1, or
// ::ffff:127.0.0.1 for IPv4-mapped destinations). The kernel records the
// original destination and the caller's identity ([Origin]); the proxy gets
// it with [Interceptor.Lookup] from the accepted connection's remote address.
// Paths the kernel can see but not redirect (UDP, other network namespaces,
// device-bound sockets, the bypass mark used by another process, a full
// map) arrive as [Event] values through [Interceptor.ReadEvents], as do
// connects the kernel refused itself by the deny table that
// [Interceptor.SetDeny] loads.
//
// Open needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN), cgroup v2
// and Linux 5.18 or newer; its errors match [ErrPermission], [ErrNoCgroupV2],
// [ErrKernelTooOld] or [ErrVerifier] with errors.Is. docs/INTERCEPTION.md
// describes the hooks, maps, lifetimes and fail modes.
package intercept
