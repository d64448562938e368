package redis

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// TestDenyRedisCLI runs redis-cli against the real Redis through a relay
// that denies FLUSHDB: redis-cli prints the error, goes on with the next
// command on the same connection, and the key written before survives.
// It works in database 9, so a broken deny empties only its own.
func TestDenyRedisCLI(t *testing.T) {
	port := os.Getenv("VIGIL_E2E_REDIS_PORT")
	if port == "" {
		port = "63799"
	}
	target := "127.0.0.1:" + port
	if _, err := exec.LookPath("redis-cli"); err != nil {
		testenv.Need(t, "redis-cli", "not installed (scripts/e2e-env.sh start installs it)")
	}
	if c, err := net.Dial("tcp", target); err != nil {
		testenv.Need(t, "Redis on "+target, "run scripts/e2e-env.sh start")
	} else {
		c.Close()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			go func() {
				defer c.Close()
				defer s.Close()
				l7test.Tap(c, s, New(l7.DefaultOptions()), func(r *l7.Request) bool { return r.Kind == "FLUSHDB" })
			}()
		}
	}()
	cmd := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), "-n", "9")
	cmd.Stdin = strings.NewReader("SET vigil:l7test:deny kept\nFLUSHDB\nGETDEL vigil:l7test:deny\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli: %v\n%s", err, out)
	}
	// redis-cli follows an error with an empty line when not on a terminal.
	if want := "OK\nERR denied by policy: test policy\n\nkept\n"; string(out) != want {
		t.Errorf("redis-cli printed %q; want %q", out, want)
	}
}
