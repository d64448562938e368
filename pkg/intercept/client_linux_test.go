package intercept

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the client program: TestMain runs runClient
// instead of the tests when clientEnv is set. Clients are started inside the
// test cgroup (clone3 CLONE_INTO_CGROUP), so their sockets belong to it from
// the first syscall on, and they use raw syscalls so that every address
// family and flag is exactly what the test asked for.

const clientEnv = "VIGIL_TEST_CLIENT"

// clientSpec is what a client process does.
type clientSpec struct {
	Op      string // "tcp", "tfo", "iouring", "udp", "loop", "tally", "retry", "open"
	Family  int    // socket family: 4 or 6 (6 also for IPv4-mapped destinations)
	Proto   int    // socket protocol, 0 for the default (TCP, UDP)
	Addr    string // destination, netip.AddrPort syntax ([::ffff:10.0.0.1]:80 for IPv4-mapped)
	Mark    uint32 // SO_MARK to set before connecting, 0 for none
	Device  string // SO_BINDTODEVICE before connecting, "" for none
	Wait    bool   // read stdin to EOF (client.proceed) before doing anything
	Netns   string // network namespace file to enter before creating the socket
	Payload string // written after connecting; then the reply is read to EOF
	Exit    bool   // exit right after connect, without any I/O
	Count   int    // "loop", "tally", "retry": sequential connections
	Cgroup  string // "open": CgroupPath for Open
}

// clientResult is what a client process reports on stdout.
type clientResult struct {
	TID     int
	Cookie  uint64 // SO_COOKIE of the socket
	Local   string // getsockname after connect
	Peer    string // getpeername after connect
	Reply   string
	Errno   int         // of the failed step, if any
	Err     string      // failed step and error
	IsPerm  bool        // "open": errors.Is(err, ErrPermission)
	Skipped string      // the operation is not available here, and why
	Errnos  map[int]int // "tally": connect() results, errno (0 for success) -> count
}

func runClient(specJSON string) {
	var spec clientSpec
	var res clientResult
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		res.Err = err.Error()
	} else {
		clientMain(&spec, &res)
	}
	json.NewEncoder(os.Stdout).Encode(&res)
	os.Exit(0)
}

func clientMain(spec *clientSpec, res *clientResult) {
	// Namespace and thread id are per thread: stay on this one.
	runtime.LockOSThread()
	res.TID = unix.Gettid()
	fail := func(step string, err error) {
		res.Err = fmt.Sprintf("%s: %v", step, err)
		var errno unix.Errno
		if errors.As(err, &errno) {
			res.Errno = int(errno)
		}
	}
	if spec.Wait {
		if _, err := io.Copy(io.Discard, os.Stdin); err != nil {
			fail("wait", err)
			return
		}
	}
	if spec.Netns != "" {
		fd, err := unix.Open(spec.Netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			fail("open netns", err)
			return
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			fail("setns", err)
			return
		}
		unix.Close(fd)
	}
	if spec.Op == "open" {
		clientOpen(spec, res)
		return
	}
	dst, err := netip.ParseAddrPort(spec.Addr)
	if err != nil {
		fail("parse addr", err)
		return
	}
	sa := sockaddr(spec.Family, dst)

	switch spec.Op {
	case "udp":
		clientUDP(spec, res, dst, sa, fail)
		return
	case "tally":
		res.Errnos = make(map[int]int)
		for range spec.Count {
			fd, err := newSocket(spec, unix.SOCK_STREAM)
			if err != nil {
				fail("socket", err)
				return
			}
			var errno unix.Errno
			if err := unix.Connect(fd, sa); err != nil && !errors.As(err, &errno) {
				errno = unix.EINVAL
			}
			res.Errnos[int(errno)]++
			unix.Close(fd)
		}
		return
	case "retry":
		// One socket, connect() again after each failure: Linux lets a
		// refused TCP socket try again, and each try passes the hook.
		fd, err := newSocket(spec, unix.SOCK_STREAM)
		if err != nil {
			fail("socket", err)
			return
		}
		defer unix.Close(fd)
		res.Cookie, _ = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		res.Errnos = make(map[int]int)
		for range spec.Count {
			var errno unix.Errno
			if err := unix.Connect(fd, sa); err != nil && !errors.As(err, &errno) {
				errno = unix.EINVAL
			}
			res.Errnos[int(errno)]++
			if errno == 0 {
				return
			}
		}
		return
	case "loop":
		for n := 0; n < spec.Count; n++ {
			fd, err := newSocket(spec, unix.SOCK_STREAM)
			if err != nil {
				fail("socket", err)
				return
			}
			if err := unix.Connect(fd, sa); err != nil {
				unix.Close(fd)
				fail(fmt.Sprintf("connect #%d", n), err)
				return
			}
			unix.Close(fd)
		}
		return
	}

	fd, err := newSocket(spec, unix.SOCK_STREAM)
	if err != nil {
		fail("socket", err)
		return
	}
	defer unix.Close(fd)
	res.Cookie, _ = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)

	payloadSent := false
	switch spec.Op {
	case "tcp":
		err = unix.Connect(fd, sa)
	case "tfo":
		// sendto(MSG_FASTOPEN) on an unconnected socket connects and sends.
		err = unix.Sendto(fd, []byte(spec.Payload), unix.MSG_FASTOPEN, sa)
		payloadSent = true
	case "iouring":
		var skip string
		skip, err = ioUringConnect(fd, spec.Family, dst)
		if skip != "" {
			res.Skipped = skip
			return
		}
	default:
		err = fmt.Errorf("unknown op %q", spec.Op)
	}
	if err != nil {
		fail(spec.Op+" connect", err)
		return
	}
	if spec.Exit {
		return
	}
	res.Local = sockaddrString(unix.Getsockname(fd))
	res.Peer = sockaddrString(unix.Getpeername(fd))
	if !payloadSent && spec.Payload != "" {
		if _, err := unix.Write(fd, []byte(spec.Payload)); err != nil {
			fail("write", err)
			return
		}
	}
	if spec.Payload == "" {
		return
	}
	unix.Shutdown(fd, unix.SHUT_WR)
	buf := make([]byte, 256)
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			res.Reply += string(buf[:n])
		}
		if n <= 0 || err != nil {
			if err != nil {
				fail("read", err)
			}
			return
		}
	}
}

// clientUDP sends two datagrams with an address (one report expected), then
// connects and sends one more.
func clientUDP(spec *clientSpec, res *clientResult, dst netip.AddrPort, sa unix.Sockaddr, fail func(string, error)) {
	fd, err := newSocket(spec, unix.SOCK_DGRAM)
	if err != nil {
		fail("socket", err)
		return
	}
	defer unix.Close(fd)
	res.Cookie, _ = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	for range 2 {
		if err := unix.Sendto(fd, []byte("q"), 0, sa); err != nil {
			fail("sendto", err)
			return
		}
	}
	// connect() to another port of the same host: reported as udp.connect.
	other := sockaddr(spec.Family, netip.AddrPortFrom(dst.Addr(), dst.Port()+1))
	if err := unix.Connect(fd, other); err != nil {
		fail("connect", err)
		return
	}
	if _, err := unix.Write(fd, []byte("q")); err != nil {
		fail("send", err)
	}
}

func clientOpen(spec *clientSpec, res *clientResult) {
	ic, err := Open(context.Background(), Config{CgroupPath: spec.Cgroup})
	if err == nil {
		ic.Close()
		return
	}
	res.Err = err.Error()
	res.IsPerm = errors.Is(err, ErrPermission)
}

func newSocket(spec *clientSpec, typ int) (int, error) {
	domain := unix.AF_INET
	if spec.Family == 6 {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, spec.Proto)
	if err != nil {
		return -1, err
	}
	if spec.Mark != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(spec.Mark)); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	if spec.Device != "" {
		if err := unix.BindToDevice(fd, spec.Device); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

func sockaddr(family int, ap netip.AddrPort) unix.Sockaddr {
	if family == 6 {
		return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().Unmap().As4()}
}

func sockaddrString(sa unix.Sockaddr, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port)).String()
	}
	return fmt.Sprintf("%T", sa)
}

// io_uring, by raw system calls: enough to submit one IORING_OP_CONNECT.

const (
	ioringOpConnect     = 16
	ioringEnterGetevent = 1
	ioringFeatSingleMap = 1
	ioringOffSQRing     = 0
	ioringOffCQRing     = 0x8000000
	ioringOffSQEs       = 0x10000000
)

type ioSqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, Cqes, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioUringParams struct {
	SqEntries, CqEntries, Flags, SqThreadCPU, SqThreadIdle, Features, WqFd uint32
	Resv                                                                   [3]uint32
	SqOff                                                                  ioSqringOffsets
	CqOff                                                                  ioCqringOffsets
}

type ioUringSQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64 // addrlen for connect
	Addr        uint64 // sockaddr for connect
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	Pad         uint64
}

type ioUringCQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

// ioUringConnect connects fd to dst with IORING_OP_CONNECT. skip is set
// when io_uring is unavailable here.
func ioUringConnect(fd, family int, dst netip.AddrPort) (skip string, err error) {
	var p ioUringParams
	ringFd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 4, uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		switch errno {
		case unix.ENOSYS, unix.EPERM, unix.EACCES:
			return fmt.Sprintf("io_uring_setup: %v (kernel without io_uring, or kernel.io_uring_disabled set)", errno), nil
		}
		return "", fmt.Errorf("io_uring_setup: %w", errno)
	}
	defer unix.Close(int(ringFd))

	sqSize := int(p.SqOff.Array + p.SqEntries*4)
	cqSize := int(p.CqOff.Cqes + p.CqEntries*uint32(unsafe.Sizeof(ioUringCQE{})))
	if p.Features&ioringFeatSingleMap != 0 {
		sqSize = max(sqSize, cqSize)
	}
	sq, err := unix.Mmap(int(ringFd), ioringOffSQRing, sqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return "", fmt.Errorf("mmap sq ring: %w", err)
	}
	defer unix.Munmap(sq)
	cq := sq
	if p.Features&ioringFeatSingleMap == 0 {
		if cq, err = unix.Mmap(int(ringFd), ioringOffCQRing, cqSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			return "", fmt.Errorf("mmap cq ring: %w", err)
		}
		defer unix.Munmap(cq)
	}
	sqes, err := unix.Mmap(int(ringFd), ioringOffSQEs, int(p.SqEntries)*int(unsafe.Sizeof(ioUringSQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return "", fmt.Errorf("mmap sqes: %w", err)
	}
	defer unix.Munmap(sqes)

	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

	var raw unix.RawSockaddrAny
	var rawLen uintptr
	if family == 6 {
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&raw))
		sa.Family = unix.AF_INET6
		sa.Addr = dst.Addr().As16()
		sa.Port = htons(dst.Port())
		rawLen = unix.SizeofSockaddrInet6
	} else {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&raw))
		sa.Family = unix.AF_INET
		sa.Addr = dst.Addr().Unmap().As4()
		sa.Port = htons(dst.Port())
		rawLen = unix.SizeofSockaddrInet4
	}

	sqe := (*ioUringSQE)(unsafe.Pointer(&sqes[0]))
	*sqe = ioUringSQE{
		Opcode:   ioringOpConnect,
		Fd:       int32(fd),
		Off:      uint64(rawLen),
		Addr:     uint64(uintptr(unsafe.Pointer(&raw))),
		UserData: 0x76696769,
	}
	tail := atomic.LoadUint32(u32(sq, p.SqOff.Tail))
	mask := *u32(sq, p.SqOff.RingMask)
	*u32(sq, p.SqOff.Array+4*(tail&mask)) = 0
	atomic.StoreUint32(u32(sq, p.SqOff.Tail), tail+1)

	_, _, errno = unix.Syscall6(unix.SYS_IO_URING_ENTER, ringFd, 1, 1, ioringEnterGetevent, 0, 0)
	runtime.KeepAlive(&raw)
	if errno != 0 {
		return "", fmt.Errorf("io_uring_enter: %w", errno)
	}
	head := atomic.LoadUint32(u32(cq, p.CqOff.Head))
	if head == atomic.LoadUint32(u32(cq, p.CqOff.Tail)) {
		return "", errors.New("io_uring: no completion")
	}
	cqMask := *u32(cq, p.CqOff.RingMask)
	cqe := (*ioUringCQE)(unsafe.Pointer(&cq[p.CqOff.Cqes+(head&cqMask)*uint32(unsafe.Sizeof(ioUringCQE{}))]))
	res := cqe.Res
	atomic.StoreUint32(u32(cq, p.CqOff.Head), head+1)
	if res < 0 {
		return "", fmt.Errorf("IORING_OP_CONNECT: %w", unix.Errno(-res))
	}
	return "", nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
