package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/api"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
)

// testCgroup creates an empty cgroup under the cgroup v2 root for the
// agent to attach to, so that nothing else on the host is intercepted.
func testCgroup(t *testing.T) string {
	t.Helper()
	reason := ""
	root, err := intercept.CgroupRoot()
	switch {
	case os.Geteuid() != 0:
		reason = "not root"
	case err != nil:
		reason = err.Error()
	}
	testenv.Need(t, "root, cgroup v2 and BPF", reason)
	b := make([]byte, 4)
	rand.Read(b)
	cg := filepath.Join(root, "vigil-agent-test-"+hex.EncodeToString(b))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	return cg
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// TestStatusMissingPrograms detaches one of the agent's programs behind
// its back, as a careless operator with bpftool could, and expects status
// to name it.
func TestStatusMissingPrograms(t *testing.T) {
	cg := testCgroup(t)
	_, c := runAgent(t, Config{Intercept: true, CgroupPath: cg, ProxyPort: freePort(t), PolicyPath: filepath.Join(t.TempDir(), "none.yaml")})
	ctx := context.Background()
	var s StatusResponse
	if err := c.Get(ctx, api.Prefix+"/status", nil, &s); err != nil {
		t.Fatal(err)
	}
	if !s.Healthy || s.Kernel == nil || len(s.Kernel.MissingPrograms) != 0 || s.AttachPoint != cg || s.Proxy == nil {
		t.Fatalf("status with everything attached = healthy %v, problems %q, kernel %+v", s.Healthy, s.Problems, s.Kernel)
	}

	fd, err := unix.Open(cg, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	res, err := link.QueryPrograms(link.QueryOptions{Target: fd, Attach: ebpf.AttachCGroupInet4Connect})
	if err != nil || len(res.Programs) != 1 {
		t.Fatalf("connect4 programs on %s: %v, %v", cg, res, err)
	}
	detachProgram(t, res.Programs[0].ID)

	// Kernel reads are cached for kernelMaxAge.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := c.Get(ctx, api.Prefix+"/status", nil, &s); err != nil {
			t.Fatal(err)
		}
		if !s.Healthy || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s.Healthy || !slices.Equal(s.Kernel.MissingPrograms, []string{"vigil_connect4"}) || len(s.Problems) != 1 {
		t.Errorf("status after detaching connect4 = healthy %v, missing %q, problems %q; want it named", s.Healthy, s.Kernel.MissingPrograms, s.Problems)
	}
}

// detachProgram detaches the link that attaches the program with id.
func detachProgram(t *testing.T, id ebpf.ProgramID) {
	t.Helper()
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil || info.Program != id {
			continue
		}
		if err := it.Link.Detach(); err != nil {
			t.Fatalf("detach link %d: %v", it.ID, err)
		}
		return
	}
	t.Fatalf("no link attaches program %d (%v)", id, it.Err())
}
