package proxy

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// Accepted and dialed sockets carry keepalive and the unsent-bytes bound:
// keepalive set once on the listener and inherited, the bound set by relay;
// both set by the dialer's control function.
func TestSocketOptions(t *testing.T) {
	lc := listenConfig()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := net.Dialer{KeepAlive: -1, Control: keepAliveControl}
	dialed, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	setNotSentLowat(accepted.(*net.TCPConn)) // as relay does
	rc, err := accepted.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var rcvbuf int
	rc.Control(func(fd uintptr) { rcvbuf, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF) })
	if err != nil || rcvbuf != 2*clientRcvbuf { // the kernel doubles it
		t.Errorf("accepted socket: SO_RCVBUF = %d, %v; want %d", rcvbuf, err, 2*clientRcvbuf)
	}
	for name, c := range map[string]net.Conn{"accepted": accepted, "dialed": dialed} {
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []struct {
			name       string
			level, opt int
			want       int
		}{
			{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle},
			{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveInterval},
			{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
			{"TCP_NOTSENT_LOWAT", unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, notSentLowat},
		} {
			var got int
			var gerr error
			rc.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), o.level, o.opt) })
			if gerr != nil || got != o.want {
				t.Errorf("%s socket: %s = %d, %v; want %d", name, o.name, got, gerr, o.want)
			}
		}
	}
}
