package http

import (
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// TestDenyCurl: curl asks for a denied path, then an allowed one on the
// same connection; it gets the 403, then the server's answer, over one
// connection, and the server never sees the denied request.
func TestDenyCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Need(t, "curl", "not installed (scripts/e2e-env.sh start installs it)")
	}
	var seen atomic.Value
	seen.Store("")
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.Copy(io.Discard, r.Body)
		seen.Store(seen.Load().(string) + r.Method + " " + r.URL.Path + ";")
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			s, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				c.Close()
				return
			}
			go func() {
				defer c.Close()
				defer s.Close()
				l7test.Tap(c, s, New(l7.DefaultOptions()), func(r *l7.Request) bool {
					return strings.HasPrefix(r.Attrs["path"], "/admin")
				})
			}()
		}
	}()
	base := "http://" + ln.Addr().String()
	out, err := exec.Command("curl", "-sS", "-w", "%{http_code}\n",
		"--data-binary", "small body", base+"/admin", base+"/ok").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	want := "forbidden by policy: test policy\n403\nok\n200\n"
	if string(out) != want {
		t.Errorf("curl printed %q; want %q", out, want)
	}
	if got := seen.Load().(string); got != "POST /ok;" {
		t.Errorf("server saw %q; want only POST /ok", got)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("curl opened %d connections; want 1 (kept alive after the 403)", n)
	}
}
