// Package e2e runs the real vigil binary against the real kernel, real
// clients (psql, redis-cli, curl, bash) and real servers started by
// scripts/e2e-env.sh. Everything here needs root.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// vigilBin is the binary under test, built once in TestMain.
var vigilBin string

func TestMain(m *testing.M) {
	if os.Getenv(clientEnv) != "" {
		os.Exit(runClientMode())
	}
	dir, err := os.MkdirTemp("", "vigil-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vigilBin = filepath.Join(dir, "vigil")
	build := exec.Command("go", "build", "-o", vigilBin, "../../cmd/vigil")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build vigil:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireRoot skips unless the test can attach BPF programs and start
// servers; with VIGIL_REQUIRE_PRIVILEGED=1 (CI) it fails instead.
func requireRoot(t *testing.T) {
	t.Helper()
	reason := ""
	if os.Geteuid() != 0 {
		reason = "not root"
	} else if _, err := intercept.CgroupRoot(); err != nil {
		reason = err.Error()
	}
	testenv.Need(t, "root, cgroup v2 and BPF", reason)
}

// requireTool skips (or fails in CI) when a client program is missing.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	testenv.Need(t, name, "not installed: run scripts/e2e-env.sh start")
}

func envPort(t *testing.T, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", name, v, err)
		}
		return p
	}
	return def
}

// requireServer fails (CI) or skips when a server does not answer.
func requireServer(t *testing.T, what string, port int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err == nil {
		c.Close()
		return
	}
	testenv.Need(t, what, fmt.Sprintf("not listening on 127.0.0.1:%d: run scripts/e2e-env.sh start", port))
}

func randName(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// testCgroup creates a throwaway cgroup under the cgroup2 root; processes
// started with cgroupCmd run inside it. Never the root itself.
func testCgroup(t *testing.T) string {
	t.Helper()
	root, err := intercept.CgroupRoot()
	if err != nil {
		t.Fatal(err)
	}
	cg := filepath.Join(root, randName("vigil-e2e-"))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Processes may take a moment to leave after exiting.
		for i := 0; i < 50; i++ {
			if os.Remove(cg) == nil || os.IsNotExist(os.Remove(cg)) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove cgroup %s", cg)
	})
	return cg
}

// cgroupCmd returns a command that first moves itself into cg, then execs
// name args. The pid the kernel records is the pid of that process.
func cgroupCmd(ctx context.Context, cg, name string, args ...string) *exec.Cmd {
	script := `echo $$ > "$0/cgroup.procs" && exec "$@"`
	return exec.CommandContext(ctx, "sh", append([]string{"-c", script, cg, name}, args...)...)
}

// freePort returns a TCP port free on loopback right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freePrivilegedPort returns a port below 1024 free on both loopbacks, as
// the default proxy port is: binding it needs CAP_NET_BIND_SERVICE.
func freePrivilegedPort(t *testing.T) int {
	t.Helper()
	for p := 1023; p >= 900; p-- {
		l4, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(p)))
		l4.Close()
		if err != nil {
			continue
		}
		l6.Close()
		return p
	}
	t.Fatal("no free port in 900-1023")
	return 0
}

// agentProc is a running `vigil agent`.
type agentProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	dataDir string
	port    int
	socket  string // control API socket
	stderr  *syncBuffer
	done    chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent runs vigil agent capturing cg, with extra flags, and waits
// until it serves. dataDir "" makes a new one.
func startAgent(t *testing.T, cg, dataDir string, port int, extra ...string) *agentProc {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	if port == 0 {
		port = freePort(t)
	}
	// A short path of its own: unix socket paths are limited to 108 bytes.
	sockDir, err := os.MkdirTemp("", "vigil-e2e-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	socket := filepath.Join(sockDir, "vigil.sock")
	args := append([]string{"agent", "--data-dir", dataDir, "--cgroup", cg, "--proxy-port", strconv.Itoa(port), "--socket", socket}, extra...)
	cmd := exec.Command(vigilBin, args...)
	a := &agentProc{t: t, cmd: cmd, dataDir: dataDir, port: port, socket: socket, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = a.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.done <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(a.stderr.String(), "vigil agent started") {
		select {
		case err := <-a.done:
			t.Fatalf("agent exited early (%v):\n%s", err, a.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("agent did not start:\n%s", a.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { a.kill() })
	return a
}

// stop sends SIGTERM and waits for a clean exit.
func (a *agentProc) stop() {
	a.t.Helper()
	if a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-a.done:
		if err != nil {
			a.t.Errorf("agent exit: %v\n%s", err, a.stderr.String())
		}
	case <-time.After(30 * time.Second):
		a.cmd.Process.Kill()
		a.t.Fatalf("agent did not stop on SIGTERM:\n%s", a.stderr.String())
	}
}

// kill sends SIGKILL, as a crash would.
func (a *agentProc) kill() {
	if a.cmd.ProcessState != nil {
		return
	}
	a.cmd.Process.Kill()
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
	}
}

// entries reads the log in dir.
func entries(t *testing.T, dir string) []auditlog.Entry {
	t.Helper()
	var es []auditlog.Entry
	if err := auditlog.Scan(context.Background(), dir, 1, func(r auditlog.Record) error {
		es = append(es, r.Entry)
		return nil
	}); err != nil {
		t.Fatalf("scan %s: %v", dir, err)
	}
	return es
}

// verify runs `vigil verify` on dir with its generated public key.
func verify(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command(vigilBin, "verify", "--pubkey", filepath.Join(dir, keys.PublicKeyFile), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("vigil verify %s: %v\n%s", dir, err, out)
	}
	return string(out)
}

// run runs cmd and returns its stdout, failing the test on error.
func run(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), err, out.String(), errb.String())
	}
	return out.Bytes()
}
