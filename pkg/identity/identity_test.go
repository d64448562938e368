package identity

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestFromPIDSelf reads the test process's own /proc entry.
func TestFromPIDSelf(t *testing.T) {
	pid := os.Getpid()
	info := FromPID(uint32(pid), "")
	if !info.Complete {
		t.Errorf("FromPID(self).Complete = false; want true (%+v)", info)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if info.Exe != exe {
		t.Errorf("FromPID(self).Exe = %q; want %q", info.Exe, exe)
	}
	raw, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimRight(string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '})), " ")
	if len(want) > MaxCmdline {
		want = want[:MaxCmdline]
	}
	if got := strings.TrimSuffix(info.Cmdline, TruncMark); !strings.HasPrefix(want, got) || !strings.HasPrefix(got, os.Args[0]) {
		t.Errorf("FromPID(self).Cmdline = %q; want %q", info.Cmdline, want)
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	wantCg, ok := cgroupV2Path(cg)
	if !ok {
		t.Skip("no cgroup v2 line in /proc/self/cgroup")
	}
	if info.CgroupPath != wantCg {
		t.Errorf("FromPID(self).CgroupPath = %q; want %q", info.CgroupPath, wantCg)
	}
	if info.Workload != ParseCgroupPath(wantCg) {
		t.Errorf("FromPID(self).Workload = %+v; want %+v", info.Workload, ParseCgroupPath(wantCg))
	}
}

// TestFromPIDExited asks about a pid that does not exist.
func TestFromPIDExited(t *testing.T) {
	max, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Skip(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(max)), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	// pid_max itself is never handed out.
	info := FromPID(uint32(n), "")
	if info.Complete || info.Exe != "" || info.Cmdline != "" || info.CgroupPath != "" {
		t.Errorf("FromPID(pid_max) = %+v; want empty, Complete false", info)
	}
	if got := FromPID(0, ""); got.Complete {
		t.Errorf("FromPID(0).Complete = true; want false")
	}
}

// fakeProc lays out procRoot/PID with the given files; an empty exe means
// no exe link, a nil content means no file.
func fakeProc(t *testing.T, pid int, exe string, cmdline, cgroup []byte) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if exe != "" {
		if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range map[string][]byte{"cmdline": cmdline, "cgroup": cgroup} {
		if b == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestFromPIDFake(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 2000)
	// A 3-byte rune straddling byte 1024.
	straddle := append(bytes.Repeat([]byte("y"), MaxCmdline-1), "€tail"...)
	hybrid := "12:memory:/docker/" + id1 + "\n1:name=systemd:/docker/" + id1 + "\n0::/docker/" + id1 + "\n"
	tests := []struct {
		name    string
		exe     string
		cmdline []byte
		cgroup  []byte
		want    Info
	}{
		{"container process", "/usr/bin/psql", []byte("psql\x00-h\x00db\x00"), []byte("0::/system.slice/docker-" + id1 + ".scope\n"),
			Info{PID: 42, Exe: "/usr/bin/psql", Cmdline: "psql -h db", CgroupPath: "/system.slice/docker-" + id1 + ".scope",
				Workload: Workload{ContainerID: id1, Runtime: RuntimeDocker}, Complete: true}},
		{"hybrid host", "/bin/sh", []byte("sh\x00"), []byte(hybrid),
			Info{PID: 42, Exe: "/bin/sh", Cmdline: "sh", CgroupPath: "/docker/" + id1,
				Workload: Workload{ContainerID: id1, Runtime: RuntimeDocker}, Complete: true}},
		{"long cmdline", "/bin/x", long, []byte("0::/\n"),
			Info{PID: 42, Exe: "/bin/x", Cmdline: string(long[:MaxCmdline]) + TruncMark, CgroupPath: "/", Complete: true}},
		{"cut inside a rune", "/bin/x", straddle, []byte("0::/\n"),
			Info{PID: 42, Exe: "/bin/x", Cmdline: string(straddle[:MaxCmdline-1]) + TruncMark, CgroupPath: "/", Complete: true}},
		{"exactly the limit", "/bin/x", long[:MaxCmdline], []byte("0::/\n"),
			Info{PID: 42, Exe: "/bin/x", Cmdline: string(long[:MaxCmdline]), CgroupPath: "/", Complete: true}},
		{"zombie: empty cmdline, no exe", "", []byte{}, []byte("0::/system.slice/cron.service\n"),
			Info{PID: 42, CgroupPath: "/system.slice/cron.service", Workload: Workload{Unit: "cron.service", Runtime: RuntimeSystemd}}},
		{"exited between reads", "/usr/bin/curl", []byte("curl\x00"), nil,
			Info{PID: 42, Exe: "/usr/bin/curl", Cmdline: "curl"}},
		{"cgroup v1 only", "/usr/bin/curl", []byte("curl\x00"), []byte("4:memory:/user.slice\n1:name=systemd:/user.slice\n"),
			Info{PID: 42, Exe: "/usr/bin/curl", Cmdline: "curl"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeProc(t, 42, tt.exe, tt.cmdline, tt.cgroup)
			got := FromPID(42, root)
			if got != tt.want {
				t.Errorf("FromPID(42) = %+v; want %+v", got, tt.want)
			}
			if !utf8.ValidString(got.Cmdline) {
				t.Errorf("FromPID(42).Cmdline = %q; not valid UTF-8", got.Cmdline)
			}
		})
	}
}

func BenchmarkFromPIDSelf(b *testing.B) {
	pid := uint32(os.Getpid())
	for b.Loop() {
		FromPID(pid, "")
	}
}
