package proxybench

import "golang.org/x/sys/unix"

// setMark sets SO_MARK on the socket fd.
func setMark(fd uintptr, mark uint32) error {
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
}
