package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
)

// testNetns creates a named network namespace with loopback up (ip netns
// add), removed at cleanup.
func testNetns(t testing.TB) string {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "not root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		reason = "iproute2 (ip) not installed"
	}
	testenv.Need(t, "root and iproute2", reason)
	b := make([]byte, 4)
	rand.Read(b)
	name := "vigilns-" + hex.EncodeToString(b)
	for _, args := range [][]string{{"netns", "add", name}, {"-n", name, "link", "set", "lo", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return name
}

// threadNS is the namespace of the calling goroutine's thread.
func threadNS(t *testing.T) ID {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	id, err := StatNS("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestHandleListenDialCookie(t *testing.T) {
	name := testNetns(t)
	h, err := Open("/run/netns/"+name, ID{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	host := threadNS(t)
	if h.ID() == host {
		t.Fatalf("Open(%s).ID() = host namespace %v", name, host)
	}

	ln, err := h.Listen(context.Background(), nil, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen inside: %v", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	inner, err := Cookie(ln)
	if err != nil {
		t.Fatal(err)
	}
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	outer, err := Cookie(hostLn.(*net.TCPListener))
	hostLn.Close()
	if err != nil {
		t.Fatal(err)
	}
	if inner == outer || inner == 0 {
		t.Errorf("Cookie(listener inside) = %d, host %d; want distinct non-zero", inner, outer)
	}

	// The listener is in the namespace: the host's loopback does not reach it.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second); err == nil {
		// Another process may hold the port on the host; it must not be ours.
		c.Close()
	}
	var c net.Conn
	if err := h.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 2*time.Second)
		return err
	}); err != nil {
		t.Fatalf("dial inside: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo inside = %q, %v; want ping", buf, err)
	}
	if got, _ := Cookie(c.(*net.TCPConn)); got != inner {
		t.Errorf("Cookie(dialed conn) = %d; want the namespace's %d", got, inner)
	}
}

func TestHandleDoRestoresThreads(t *testing.T) {
	name := testNetns(t)
	h, err := Open("/run/netns/"+name, ID{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	host := threadNS(t)
	for i := 0; i < 50; i++ {
		var inside ID
		if err := h.Do(func() error {
			var err error
			inside, err = StatNS("/proc/thread-self/ns/net")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if inside != h.ID() {
			t.Fatalf("Do ran in %v; want %v", inside, h.ID())
		}
	}
	// Threads given back to the scheduler are in the host namespace.
	for i := 0; i < 50; i++ {
		if got := threadNS(t); got != host {
			t.Fatalf("thread namespace after Do = %v; want host %v", got, host)
		}
	}
}

func TestHandleClosed(t *testing.T) {
	name := testNetns(t)
	h, err := Open("/run/netns/"+name, ID{})
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	if err := h.Do(func() error { return nil }); err != ErrClosed {
		t.Errorf("Do after Close = %v; want ErrClosed", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
}

func TestOpenChanged(t *testing.T) {
	name := testNetns(t)
	if _, err := Open("/run/netns/"+name, ID{Dev: 1, Ino: 1}); err == nil {
		t.Error("Open with the wrong expected ID = nil error; want one")
	}
	if _, err := Open("/nonexistent/ns", ID{}); err == nil {
		t.Error("Open(missing) = nil error; want one")
	}
}
