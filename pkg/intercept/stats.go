package intercept

// Stats is a snapshot of the kernel side: how many entries each map holds
// and what the programs counted since the counters were created (pinned
// counters survive agent restarts).
type Stats struct {
	Origins int // socket cookie -> origin entries (redirected sockets not yet closed)
	Tuples  int // client address -> origin entries (established, not yet looked up or closed)
	UDPSeen int // (socket, destination, kind) already reported: UDP, mark.bypass, bound.device
	Capture int // capture set prefixes
	Deny    int // deny table prefixes (SetDeny)
	Netns   int // served workload network namespaces (ServeNetns)

	TCPConnects        uint64 // TCP connect()s seen in the cgroup subtree
	Redirected         uint64 // TCP connect()s rewritten to the proxy
	Established        uint64 // redirected connections that reached ESTABLISHED
	SkippedMark        uint64 // not redirected: the socket had the bypass mark
	SkippedExempt      uint64 // not redirected: the caller was Config.ExemptPID
	SkippedNotCaptured uint64 // not redirected: destination outside the capture set, or the proxy itself
	OtherNetns         uint64 // reported, not redirected: another network namespace
	BoundDevice        uint64 // reported, not redirected: the socket was bound to a device
	UDPReported        uint64 // UDP connect()/sendmsg() events reported
	MapFull            uint64 // an origin could not be stored: let through unredirected
	EventsLost         uint64 // events dropped because the ring buffer was full
	KernelDenied       uint64 // TCP connect()s refused by the deny table (each reported as EventKernelDeny)
	RedirectedNetns    uint64 // of Redirected: from a served workload network namespace

	// CountersID is the kernel's id of the map holding the counters. It
	// stays the same while pinned counters are adopted across restarts
	// and changes when they are created afresh, so together with the boot
	// id it tells whether two readings come from the same counters.
	CountersID uint32
}
