package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// repoRoot is the repository, two levels up from test/e2e.
const repoRoot = "../.."

// unitFile is the shipped systemd unit.
var unitFile = filepath.Join(repoRoot, "deploy/systemd/vigil.service")

// unitSettings reads KEY=VALUE lines of the unit (last one wins, as in
// systemd, except that an empty value does not reset here).
func unitSettings(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok && v != "" {
			m[k] = v
		}
	}
	return m
}

// unitForBinary writes a copy of the unit whose ExecStart runs bin.
func unitForBinary(t *testing.T, bin string) string {
	t.Helper()
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "vigil.service")
	if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/vigil", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSystemdUnitVerify runs systemd-analyze verify on the unit (with
// ExecStart pointing at the binary under test, which verify requires to
// exist) and reports its offline security exposure score.
func TestSystemdUnitVerify(t *testing.T) {
	requireTool(t, "systemd-analyze")
	unit := unitForBinary(t, vigilBin)
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	if err != nil {
		// Older systemd has no --offline: the verify above is what counts.
		t.Logf("systemd-analyze security --offline: %v (skipped)", err)
		return
	}
	m := regexp.MustCompile(`Overall exposure level for vigil.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security exposure: %.1f (0 best, 10 worst)", score)
	// A root BPF agent on the host network cannot get far below 3; above
	// it some hardening line was lost.
	if score > 3.0 {
		t.Errorf("exposure level %.1f; want ≤ 3.0 (a hardening setting was removed?)\n%s", score, out)
	}
}

// TestInstallUninstall installs into a DESTDIR twice, edits the config,
// and uninstalls: idempotent, nothing of the administrator's overwritten,
// the data directory kept and said so.
func TestInstallUninstall(t *testing.T) {
	dest := t.TempDir()
	install := func(verb string) string {
		t.Helper()
		cmd := exec.Command("scripts/install.sh", verb)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "DESTDIR="+dest, "BINARY="+vigilBin, "PREFIX=/usr/local")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh %s: %v\n%s", verb, err, out)
		}
		return string(out)
	}
	install("install")
	files := map[string]os.FileMode{
		"usr/local/bin/vigil":              0o755,
		"etc/systemd/system/vigil.service": 0o644,
		"etc/vigil/vigil.yaml":             0o644,
		"etc/vigil/policy.example.yaml":    0o644,
		"var/lib/vigil":                    0o700 | os.ModeDir,
	}
	for f, mode := range files {
		st, err := os.Stat(filepath.Join(dest, f))
		if err != nil {
			t.Errorf("after install: %v", err)
			continue
		}
		if st.Mode() != mode {
			t.Errorf("%s mode %v; want %v", f, st.Mode(), mode)
		}
	}
	if _, err := os.Stat(filepath.Join(dest, "etc/vigil/policy.yaml")); err == nil {
		t.Error("install put an active policy in place; only the example belongs there")
	}
	cfg := filepath.Join(dest, "etc/vigil/vigil.yaml")
	mine := []byte("data_dir: /srv/vigil\n")
	if err := os.WriteFile(cfg, mine, 0o644); err != nil {
		t.Fatal(err)
	}
	out := install("install")
	if !strings.Contains(out, "up to date") || !strings.Contains(out, "exists, left as it is") {
		t.Errorf("second install said:\n%s\nwant up to date / left as it is", out)
	}
	if b, _ := os.ReadFile(cfg); string(b) != string(mine) {
		t.Errorf("second install changed the edited config to:\n%s", b)
	}
	os.WriteFile(filepath.Join(dest, "var/lib/vigil/seg-1.log"), []byte("audit"), 0o600)
	out = install("uninstall")
	for _, gone := range []string{"usr/local/bin/vigil", "etc/systemd/system/vigil.service", "etc/vigil/policy.example.yaml"} {
		if _, err := os.Stat(filepath.Join(dest, gone)); err == nil {
			t.Errorf("uninstall left %s", gone)
		}
	}
	if _, err := os.Stat(cfg); err != nil {
		t.Errorf("uninstall removed the edited config: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest, "var/lib/vigil/seg-1.log")); err != nil {
		t.Errorf("uninstall removed the data directory: %v", err)
	}
	if !strings.Contains(out, "var/lib/vigil: kept") {
		t.Errorf("uninstall did not say it kept the data directory:\n%s", out)
	}
	install("uninstall") // idempotent
}

// unitCaps returns the unit's CapabilityBoundingSet as setpriv names
// (CAP_NET_ADMIN -> net_admin).
func unitCaps(t *testing.T) []string {
	t.Helper()
	set := unitSettings(t)["CapabilityBoundingSet"]
	var caps []string
	for _, c := range strings.Fields(set) {
		caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	if len(caps) == 0 {
		t.Fatal("the unit has no CapabilityBoundingSet")
	}
	return caps
}

// unitAgent runs the agent as the unit does: the unit's ExecStart flags
// (config and socket moved into a temporary directory), root with only
// caps in the bounding set and no new privileges, capturing cg. It returns
// the data directory, a stop function, and the error and stderr if the
// agent exited instead of starting.
func unitAgent(t *testing.T, cg string, port int, caps []string) (dataDir string, stop func(), failed string) {
	t.Helper()
	exec0 := strings.Fields(unitSettings(t)["ExecStart"])
	if len(exec0) < 2 || exec0[0] != "/usr/local/bin/vigil" {
		t.Fatalf("ExecStart = %q; want /usr/local/bin/vigil ...", exec0)
	}
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "vigil-unit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	dataDir = filepath.Join(dir, "data")
	cfg, err := os.ReadFile(filepath.Join(repoRoot, "deploy/vigil.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c := strings.NewReplacer("/var/lib/vigil", dataDir, "127.0.0.1:9464", "127.0.0.1:0").Replace(string(cfg))
	cfgPath := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfgPath, []byte(c), 0o644)
	args := []string{}
	for _, a := range exec0[1:] {
		switch a {
		case "/etc/vigil/vigil.yaml":
			a = cfgPath
		case "/run/vigil/vigil.sock":
			a = filepath.Join(sockDir, "vigil.sock")
		}
		args = append(args, a)
	}
	args = append(args, "--cgroup", cg, "--proxy-port", strconv.Itoa(freePrivilegedPort(t)),
		"--capture", capture(port), "--policy", filepath.Join(dir, "policy.yaml"))
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("apiVersion: vigil.dev/v1\ndefault: audit\n"), 0o644)
	bounding := "-all"
	for _, c := range caps {
		bounding += ",+" + c
	}
	cmd := exec.Command("setpriv", append([]string{"--bounding-set", bounding, "--inh-caps", "-all", "--no-new-privs", vigilBin}, args...)...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stderr.String(), "vigil agent started") {
		select {
		case err := <-done:
			return dataDir, func() {}, fmt.Sprintf("%v: %s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			t.Fatalf("agent neither started nor exited:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop = func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent exit: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("agent did not stop:\n%s", stderr.String())
		}
	}
	return dataDir, stop, ""
}

// TestUnitCapabilities runs the agent the way the unit does, with the
// unit's capability bounding set and nothing else: it starts, intercepts a
// loopback connection from another user's process in a throwaway cgroup
// and names that process's executable. With any one of those capabilities
// dropped it refuses to start and names the missing one: the set is both
// sufficient and minimal.
func TestUnitCapabilities(t *testing.T) {
	requireRoot(t)
	requireTool(t, "setpriv")
	requireTool(t, "bash")
	caps := unitCaps(t)
	port := echoServer(t)
	cg := testCgroup(t)

	t.Run("sufficient", func(t *testing.T) {
		dataDir, stop, failed := unitAgent(t, cg, port, caps)
		if failed != "" {
			t.Fatalf("agent with the unit's capabilities %v did not start: %s", caps, failed)
		}
		// nobody's bash: its /proc/PID/exe is readable only with CAP_SYS_PTRACE.
		cmd := cgroupCmd(context.Background(), cg, "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
			"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; echo hi >&3; read -t 5 x <&3; [ \"$x\" = hi ]", port))
		run(t, cmd)
		stop()
		var open *auditlog.Entry
		for _, e := range entries(t, dataDir) {
			if e.Type == auditlog.ConnOpen && e.Dst == fmt.Sprintf("127.0.0.1:%d", port) {
				open = &e
				break
			}
		}
		if open == nil {
			t.Fatal("no conn.open for the client: the connection was not intercepted")
		}
		if open.Identity.UID != 65534 || !strings.HasSuffix(open.Identity.Exe, "/bash") {
			t.Errorf("conn.open identity uid %d exe %q; want 65534 and .../bash", open.Identity.UID, open.Identity.Exe)
		}
	})

	for _, drop := range caps {
		t.Run("without_"+drop, func(t *testing.T) {
			var fewer []string
			for _, c := range caps {
				if c != drop {
					fewer = append(fewer, c)
				}
			}
			_, stop, failed := unitAgent(t, cg, port, fewer)
			if failed == "" {
				stop()
				t.Fatalf("agent started without CAP_%s: the unit grants more than it needs", strings.ToUpper(drop))
			}
			want := "CAP_" + strings.ToUpper(drop)
			if !strings.Contains(failed, want) {
				t.Errorf("agent without %s failed with:\n%s\nwant an error naming %s", want, failed, want)
			}
		})
	}
}
