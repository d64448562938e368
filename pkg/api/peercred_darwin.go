package api

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerUID reads the peer's effective uid as of connect, as SO_PEERCRED does
// on Linux; macOS has no SO_PEERCRED but LOCAL_PEERCRED at level SOL_LOCAL.
func peerUID(c *net.UnixConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Xucred
	var serr error
	err = rc.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return -1, err
	}
	return int(cred.Uid), nil
}
