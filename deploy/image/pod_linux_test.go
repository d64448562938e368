package main

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// needPrivileged skips without root, or fails when
// VIGIL_REQUIRE_PRIVILEGED=1 (CI), like internal/testenv in the main
// module, which this module cannot import.
func needPrivileged(t *testing.T, reason string) {
	t.Helper()
	if reason == "" {
		return
	}
	if os.Getenv("VIGIL_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("needs root, cgroup v2 and BPF: %s (VIGIL_REQUIRE_PRIVILEGED=1 turns this skip into a failure)", reason)
	}
	t.Skipf("needs root, cgroup v2 and BPF: %s", reason)
}

// cgroup2Root finds the cgroup2 mount.
func cgroup2Root(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 2 && fs[2] == "cgroup2" {
			return fs[1]
		}
	}
	needPrivileged(t, "no cgroup2 mount")
	return ""
}

// extract unpacks the image's file system into dir.
func extract(t *testing.T, o Options, dir string) {
	t.Helper()
	img, err := Image(o)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(mutate.Extract(img))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode).Perm()); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, os.FileMode(h.Mode).Perm())
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			if err := os.WriteFile(p, b, os.FileMode(h.Mode).Perm()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestImageRunsLikeThePod runs the image the way the DaemonSet's container
// runs it, as closely as a machine without a cluster allows: the image's
// file system as a read-only root, the ConfigMap's files at /etc/vigil,
// the (throwaway) cgroup read-only at /host/sys/fs/cgroup, hostPath data
// and socket directories, the host's /proc, a read-only /sys, the
// container's args, and only the capabilities its securityContext adds,
// with no new privileges. A connection from another user's process must be
// intercepted and recorded with that process's executable.
func TestImageRunsLikeThePod(t *testing.T) {
	if os.Geteuid() != 0 {
		needPrivileged(t, "not root")
	}
	for _, tool := range []string{"unshare", "setpriv", "chroot", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			needPrivileged(t, tool+" not installed")
		}
	}
	work := t.TempDir()
	root := filepath.Join(work, "root")
	o := Options{Binary: staticBinary(t, work), Tag: "vigil:test", Created: time.Unix(0, 0)}
	extract(t, o, root)
	os.MkdirAll(filepath.Join(root, "proc"), 0o555)
	os.MkdirAll(filepath.Join(root, "sys"), 0o555)

	b, err := os.ReadFile("../kubernetes/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatal(err)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	cfg := filepath.Join(work, "config")
	os.MkdirAll(cfg, 0o755)
	for _, f := range []string{"vigil.yaml", "policy.yaml"} {
		b, err := os.ReadFile(filepath.Join("../kubernetes", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(cfg, f), b, 0o644)
	}
	data, run := filepath.Join(work, "data"), filepath.Join(work, "run")
	os.Mkdir(data, 0o700)
	os.Mkdir(run, 0o700)

	cg := filepath.Join(cgroup2Root(t), fmt.Sprintf("vigil-pod-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for i := 0; i < 50 && os.Remove(cg) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}()

	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			conn, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(conn, conn); conn.Close() }()
		}
	}()
	port := echo.Addr().(*net.TCPAddr).Port
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	metricsPort := free()

	// The container's args, $(VAR) expanded as the kubelet does; only the
	// metrics port, the capture set and the proxy port are the test's.
	var args []string
	for _, a := range c.Args {
		a = strings.ReplaceAll(a, "$(NODE_NAME)", "node-1")
		a = strings.ReplaceAll(a, "$(HOST_IP)", "127.0.0.1")
		a = strings.ReplaceAll(a, ":9464", fmt.Sprintf(":%d", metricsPort))
		args = append(args, a)
	}
	args = append(args, fmt.Sprintf("--capture=127.0.0.1/32:%d", port), fmt.Sprintf("--proxy-port=%d", free()))
	bounding := "-all,+sys_chroot" // chroot itself; the agent needs none of it
	for _, capName := range c.SecurityContext.Capabilities.Add {
		bounding += ",+" + strings.ToLower(string(capName))
	}
	var mounts []string
	for _, m := range c.VolumeMounts {
		src := map[string]string{"config": cfg, "data": data, "run": run, "cgroup": cg}[m.Name]
		if src == "" {
			continue // the key Secret is optional; bpffs is for fail-closed only
		}
		dst := filepath.Join(root, m.MountPath)
		mounts = append(mounts, fmt.Sprintf("mount --bind %q %q", src, dst))
		if m.ReadOnly {
			mounts = append(mounts, fmt.Sprintf("mount -o remount,bind,ro %q", dst))
		}
	}
	script := strings.Join(append([]string{
		"set -e",
		"mount --make-rprivate /",
		fmt.Sprintf("mount --bind %q %q", root, root),
	}, append(mounts,
		fmt.Sprintf("mount -t proc proc %q", filepath.Join(root, "proc")),
		fmt.Sprintf("mount -t sysfs -o ro sysfs %q", filepath.Join(root, "sys")),
		fmt.Sprintf("mount -o remount,bind,ro %q", root),
		fmt.Sprintf(`exec setpriv --bounding-set %s --inh-caps -all --no-new-privs chroot %q %s "$@"`, bounding, root, BinaryPath), // no command: the image entrypoint
	)...), "\n")
	cmd := exec.Command("unshare", append([]string{"-m", "bash", "-c", script, "pod"}, args...)...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
		}
	}()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "vigil agent started"); {
		select {
		case err := <-done:
			t.Fatalf("the pod's agent exited (%v):\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod's agent did not start:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	client := exec.Command("sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, cg,
		"setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
		"bash", "-c", fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d; echo hi >&3; read -t 5 x <&3; [ "$x" = hi ]`, port))
	if out, err := client.CombinedOutput(); err != nil {
		t.Fatalf("client: %v\n%s\nagent:\n%s", err, out, stderr.String())
	}
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop")
	}

	out, err := exec.Command(filepath.Join(root, BinaryPath), "events", "--data-dir", data, "-o", "json").Output()
	if err != nil {
		t.Fatalf("vigil events: %v", err)
	}
	found := false
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var e struct {
			Type     string `json:"type"`
			Host     string `json:"host"`
			Dst      string `json:"dst"`
			Identity struct {
				UID uint32 `json:"uid"`
				Exe string `json:"exe"`
			} `json:"identity"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Type != "conn.open" || e.Dst != fmt.Sprintf("127.0.0.1:%d", port) {
			continue
		}
		found = true
		if e.Host != "node-1" || e.Identity.UID != 65534 || !strings.HasSuffix(e.Identity.Exe, "/bash") {
			t.Errorf("conn.open host %q uid %d exe %q; want node-1, 65534, .../bash", e.Host, e.Identity.UID, e.Identity.Exe)
		}
	}
	if !found {
		t.Fatalf("no conn.open for the client in:\n%s\nagent:\n%s", out, stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine exec starts.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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
