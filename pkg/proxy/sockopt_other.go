//go:build !linux

package proxy

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"syscall"
)

// errNotLinux is why no proxy runs here: its outbound connections must
// carry SO_MARK so the kernel side does not send them back to it, and both
// exist on Linux only.
var errNotLinux = fmt.Errorf("proxy: the proxy runs on Linux only (this is %s)", runtime.GOOS)

// checkMark fails outside Linux, so New does.
func checkMark(uint32) error { return errNotLinux }

// markControl refuses to dial outside Linux.
func markControl(uint32) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error { return errNotLinux }
}

// listenControl refuses to listen outside Linux.
func listenControl(string, string, syscall.RawConn) error { return errNotLinux }

// setNotSentLowat does nothing outside Linux.
func setNotSentLowat(*net.TCPConn) {}

// tcpBytes has no TCP_INFO counters to read outside Linux.
func tcpBytes(*net.TCPConn) (uint64, error) { return 0, errors.ErrUnsupported }
