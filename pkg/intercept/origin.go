package intercept

import (
	"net/netip"
	"syscall"
)

// Origin is what the kernel recorded when a process's connect() was
// redirected to the proxy: where it meant to go and who it was.
type Origin struct {
	Dst          netip.AddrPort // original destination (IPv4-mapped IPv6 unmapped to IPv4)
	PID          uint32         // thread-group id of the caller
	TID          uint32         // thread id of the caller
	UID          uint32
	GID          uint32
	Comm         string // task name at connect time (≤ 15 bytes)
	CgroupID     uint64 // cgroup v2 id of the caller
	NetnsCookie  uint64 // network namespace cookie of the socket
	SocketCookie uint64 // socket cookie of the client socket
}

// Event is something the kernel observed but did not (or could not) send
// through the proxy, reported so that it is audited anyway.
type Event struct {
	Kind   EventKind
	Proto  string         // "tcp" or "udp"
	Src    netip.AddrPort // source, when known
	Origin Origin         // destination and caller identity

	// EventKernelDeny only: what the deny table decided.
	Rule       uint32        // DenySegment.Rule of the segment that denied
	Generation uint32        // DenyTable.Generation of the table in force
	Errno      syscall.Errno // connect()'s error
}

// EventKind names a kernel-observed event.
type EventKind string

// Kernel-observed event kinds.
const (
	EventUDPConnect  EventKind = "udp.connect"  // connect() on a UDP socket to a captured destination
	EventUDPSendmsg  EventKind = "udp.sendmsg"  // sendto()/sendmsg() with an address on an unconnected UDP socket
	EventOtherNetns  EventKind = "netns.bypass" // TCP connect from a network namespace the proxy cannot serve
	EventMapFull     EventKind = "map.full"     // the kernel could not record a connection (map full): it was let through unrecorded
	EventMarkBypass  EventKind = "mark.bypass"  // TCP connect with the bypass mark from a process other than Config.ExemptPID: let through
	EventBoundDevice EventKind = "bound.device" // TCP connect on a device-bound socket (SO_BINDTODEVICE): let through, loopback is out of its reach
	EventRedirectErr EventKind = "redirect.err" // the redirect could not be applied
	EventKernelDeny  EventKind = "kernel.deny"  // TCP connect refused by the deny table (SetDeny): never reached the proxy
)
