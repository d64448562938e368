package tls

import (
	"fmt"
	nethttp "net/http"
	"net/http/httptest"
	"os/exec"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// TestSessions replays what curl and a Go HTTPS server said to each other,
// recorded by capture; VIGIL_L7_CAPTURE=1 records them again.
func TestSessions(t *testing.T) {
	if l7test.Capturing() {
		capture(t)
	}
	l7test.ReplaySessions(t, func() l7.Parser { return New(l7.DefaultOptions()) }, l7test.Capturing())
}

// capture runs curl through a recording relay to a loopback HTTPS server.
// --resolve points the name at the relay, so curl sends it as SNI while
// connecting to loopback only.
func capture(t *testing.T) {
	srv := httptest.NewUnstartedServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		fmt.Fprintf(w, "hello over %s\n", r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	scenarios := []struct {
		name string
		args []string
	}{
		{"curl-https", nil},
		{"curl-https-tls12", []string{"--tlsv1.2", "--tls-max", "1.2", "--http1.1"}},
	}
	for _, sc := range scenarios {
		rec, err := l7test.NewRecorder(srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		host := fmt.Sprintf("vigil.example.test:%d", rec.Port())
		args := append([]string{"-sS", "-k", "-o", "/dev/null", "--resolve", host + ":127.0.0.1"}, sc.args...)
		args = append(args, "https://"+host+"/")
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
