package http

import (
	"fmt"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// TestSessions replays what curl and a Go HTTP server said to each other,
// recorded by capture; VIGIL_L7_CAPTURE=1 records them again.
func TestSessions(t *testing.T) {
	if l7test.Capturing() {
		capture(t)
	}
	l7test.ReplaySessions(t, func() l7.Parser { return New(l7.DefaultOptions()) }, l7test.Capturing())
}

// capture runs curl through a recording relay to a loopback server, one
// session per scenario.
func capture(t *testing.T) {
	srv := httptest.NewServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		switch r.URL.Path {
		case "/denied":
			nethttp.Error(w, "no", nethttp.StatusForbidden)
		case "/chunked":
			f := w.(nethttp.Flusher)
			for i := range 3 {
				fmt.Fprintf(w, "part %d\n", i)
				f.Flush()
			}
		case "/big":
			w.Write([]byte(strings.Repeat("x", 100<<10)))
		default:
			fmt.Fprintf(w, "%s %s read %d bytes\n", r.Method, r.URL.Path, n)
		}
	}))
	defer srv.Close()
	body := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(body, []byte(strings.Repeat("upload ", 3000)), 0o644); err != nil {
		t.Fatal(err)
	}
	scenarios := []struct {
		name string
		args func(base string) []string
	}{
		{"curl-get", func(b string) []string { return []string{b + "/hello?token=secret&x=1"} }},
		{"curl-keepalive", func(b string) []string {
			return []string{b + "/one", b + "/denied", "--next", "-sS", "-I", b + "/head"}
		}},
		{"curl-post-expect", func(b string) []string {
			return []string{"--data-binary", "@" + body, "-H", "Expect: 100-continue", b + "/upload"}
		}},
		{"curl-post-chunked", func(b string) []string {
			return []string{"--data-binary", "@" + body, "-H", "Transfer-Encoding: chunked", b + "/upload"}
		}},
		{"curl-chunked-response", func(b string) []string { return []string{b + "/chunked"} }},
		{"curl-big-response", func(b string) []string { return []string{b + "/big"} }},
	}
	for _, sc := range scenarios {
		rec, err := l7test.NewRecorder(srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		args := append([]string{"-sS", "--http1.1", "-o", "/dev/null"}, sc.args("http://"+rec.Addr())...)
		if out, err := exec.Command("curl", args...).CombinedOutput(); err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		conns := rec.Close()
		if len(conns) != 1 {
			t.Fatalf("%s: curl made %d connections; want 1", sc.name, len(conns))
		}
		l7test.SaveSession(t, sc.name, conns[0], nil)
	}
}
