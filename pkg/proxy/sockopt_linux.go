package proxy

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// markControl returns a net.Dialer Control function that sets SO_MARK on
// the socket before it connects, and the options of keepAliveControl.
// A socket that cannot be marked is not dialed: unmarked, it would be
// redirected back to the proxy.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_MARK %#x: %w", mark, serr)
		}
		return keepAliveControl(network, address, c)
	}
}

// Keepalive settings of every proxy socket: the first probe after 15 s of
// silence, then every 15 s, 9 unanswered probes close the connection (Go's
// defaults for net.KeepAliveConfig{Enable: true}).
const (
	keepAliveIdle     = 15
	keepAliveInterval = 15
	keepAliveCount    = 9
)

// notSentLowat bounds the bytes a proxy socket holds that TCP has not sent
// yet (TCP_NOTSENT_LOWAT): the relay is woken to write more only below it.
// It does not limit the congestion window or the bytes in flight, so a
// long fat path is not slowed; it keeps the relay from queueing megabytes
// ahead of the network. Those bytes are the pages the client wrote: with
// less of them in flight they are still in the CPU's cache when they are
// copied out, and a bulk relay over loopback cost ~25-30% less CPU per MiB
// on the reference machine (128 KiB; 64 KiB and 256 KiB measured about
// the same).
const notSentLowat = 128 << 10

// clientRcvbuf is the receive buffer (SO_RCVBUF, which the kernel doubles)
// of the sockets accepted from applications. They are always loopback,
// where 256 KiB of window is far more than the round trip needs, and a
// small buffer keeps the client from running megabytes ahead of the relay:
// the data is still cache-hot when it is copied out at the far end. With
// notSentLowat, it took a bulk relay over loopback from ~850 to ~620 µs of
// CPU per MiB on the reference machine. It stays below the default
// net.core.rmem_max (208 KiB), which caps it.
const clientRcvbuf = 128 << 10

// listenControl sets the options of the listening socket, which accepted
// sockets inherit: those of keepAliveControl, and clientRcvbuf (set before
// listen, so the window scale is chosen for it).
func listenControl(network, address string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, clientRcvbuf)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_RCVBUF: %w", serr)
	}
	return keepAliveControl(network, address, c)
}

// keepAliveControl sets the options every proxy socket carries, before it
// connects or listens: keepalive and notSentLowat. Sockets accepted from a
// listening socket inherit keepalive, but not notSentLowat: relay sets
// that on the client's socket (setNotSentLowat).
func keepAliveControl(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		for _, o := range []struct{ level, opt, v int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveInterval},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
			{unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notSentLowat},
		} {
			if serr = unix.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set socket options: %w", serr)
	}
	return nil
}

// checkMark fails with one clear sentence when sockets cannot be marked.
func checkMark(mark uint32) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("proxy: probe socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("proxy: cannot mark outbound connections with SO_MARK (needs CAP_NET_ADMIN): run the agent as root or grant it CAP_NET_ADMIN: %w", err)
		}
		return fmt.Errorf("proxy: set SO_MARK: %w", err)
	}
	return nil
}

// setNotSentLowat sets notSentLowat on c. Failing is harmless (the relay
// only costs more CPU), so the error is dropped.
func setNotSentLowat(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notSentLowat)
	})
}

// tcpBytes returns the bytes received plus the bytes acknowledged by the
// peer on c, from the kernel's TCP_INFO. They move while data flows either
// way, even while splice(2) keeps the data out of userspace.
func tcpBytes(c *net.TCPConn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return 0, err
	}
	if ierr != nil {
		return 0, ierr
	}
	return info.Bytes_received + info.Bytes_acked, nil
}
