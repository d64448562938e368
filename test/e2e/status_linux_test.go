package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStatusCommand runs `vigil status` against a real agent: healthy (all
// programs attached, log writable) and counting a curl it redirected; and
// exit 1 with one line once the agent is gone.
func TestStatusCommand(t *testing.T) {
	requireRoot(t)
	requireTool(t, "curl")
	port, blob := blobServer(t)
	cg := testCgroup(t)
	a := startAgent(t, cg, "", 0, "--capture", capture(port))
	got := run(t, cgroupCmd(context.Background(), cg, "curl", "-sS", "--fail", "http://127.0.0.1:"+strconv.Itoa(port)+"/blob"))
	if !bytes.Equal(got, blob) {
		t.Fatalf("curl through vigil returned %d bytes that differ from the served %d", len(got), len(blob))
	}

	// The relay is counted when it ends, which may be just after curl exits.
	var s struct {
		Healthy  bool
		Problems []string
		Cgroup   string
		Proxy    struct {
			Accepted, Relayed uint64
			BytesIn           uint64 `json:"bytes_in"`
		}
		Kernel struct{ Redirected, Established uint64 }
	}
	var out []byte
	for i := 0; ; i++ {
		out = run(t, exec.Command(vigilBin, "status", "--socket", a.socket, "-o", "json"))
		if err := json.Unmarshal(out, &s); err != nil {
			t.Fatalf("vigil status -o json: %v\n%s", err, out)
		}
		// Kernel counters are read at most once a second (they walk the
		// BPF maps), so they may trail the proxy's by that much.
		if (s.Proxy.BytesIn >= uint64(len(blob)) && s.Kernel.Redirected >= 1 && s.Kernel.Established >= 1) || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !s.Healthy || len(s.Problems) != 0 || s.Cgroup != cg {
		t.Errorf("vigil status: healthy %v, problems %q, cgroup %q; want healthy on %s", s.Healthy, s.Problems, s.Cgroup, cg)
	}
	if s.Proxy.Accepted < 1 || s.Proxy.Relayed < 1 || s.Proxy.BytesIn < uint64(len(blob)) || s.Kernel.Redirected < 1 || s.Kernel.Established < 1 {
		t.Errorf("vigil status counters = proxy %+v, kernel %+v; want the curl redirected and relayed", s.Proxy, s.Kernel)
	}

	table := string(run(t, exec.Command(vigilBin, "status", "--socket", a.socket)))
	for _, want := range []string{"status     healthy\n", "intercept  cgroup " + cg, "redirected"} {
		if !strings.Contains(table, want) {
			t.Errorf("vigil status lacks %q:\n%s", want, table)
		}
	}

	a.stop()
	cmd := exec.Command(vigilBin, "status", "--socket", a.socket)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "the agent is not running") {
		t.Errorf("vigil status after the agent stopped = %v, %q; want exit 1 saying it is not running", err, stderr.String())
	}
}
