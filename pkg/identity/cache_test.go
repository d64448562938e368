package identity

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseStartTime(t *testing.T) {
	tests := []struct {
		name, stat string
		want       uint64
		ok         bool
	}{
		{"plain", "42 (bash) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 0 18446744073709551615", 987654, true},
		{"comm with spaces and parens", "42 (a) b (c)) R 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 55 1000 0", 55, true},
		{"no paren", "42 bash S 1", 0, false},
		{"short", "42 (bash) S 1 42", 0, false},
		{"ends at the comm", "42 (bash)", 0, false},
		{"only a paren", ")", 0, false},
		{"ends at the comm after a space", "42 (bash) ", 0, false},
		{"not a number", "42 (bash) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 x 1000", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStartTime([]byte(tt.stat))
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("parseStartTime(%q) = %d, %v; want %d, ok %v", tt.stat, got, err, tt.want, tt.ok)
			}
		})
	}
}

// The start time read for this process matches field 22 of its stat file.
func TestStartTimeSelf(t *testing.T) {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip(err)
	}
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	want, _ := strconv.ParseUint(fields[19], 10, 64)
	got, err := startTime("/proc", uint32(os.Getpid()))
	if err != nil || got != want {
		t.Errorf("startTime(self) = %d, %v; want %d", got, err, want)
	}
}

func TestCacheLookup(t *testing.T) {
	c := NewCache("", 2, time.Hour)
	pid := uint32(os.Getpid())
	first := c.Lookup(pid, "test", 1)
	if !first.Complete || first != FromPID(pid, "") {
		t.Fatalf("Lookup(self) = %+v; want %+v", first, FromPID(pid, ""))
	}
	if c.Len() != 1 {
		t.Errorf("Len() = %d after one lookup; want 1", c.Len())
	}
	if again := c.Lookup(pid, "test", 1); again != first {
		t.Errorf("second Lookup(self) = %+v; want %+v", again, first)
	}
	// Another comm or cgroup is another key; the size bound holds.
	c.Lookup(pid, "other", 1)
	c.Lookup(pid, "test", 2)
	if c.Len() != 2 {
		t.Errorf("Len() = %d; want the bound 2", c.Len())
	}
	if info := c.Lookup(0, "x", 0); info.Complete {
		t.Errorf("Lookup(0).Complete = true; want false")
	}
}

// An entry expires after its ttl, and a process that exited is never served
// from the cache, even when its entry is still fresh.
func TestCacheExpiryAndExit(t *testing.T) {
	now := time.Unix(1000, 0)
	c := NewCache("", 8, time.Second)
	c.now = func() time.Time { return now }
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := uint32(cmd.Process.Pid)
	// Wait until the child has exec'd, so its cmdline is sleep's.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasPrefix(FromPID(pid, "").Cmdline, "sleep") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	info := c.Lookup(pid, "sleep", 7)
	if !info.Complete || info.Cmdline != "sleep 30" {
		t.Fatalf("Lookup(child) = %+v; want complete, cmdline %q", info, "sleep 30")
	}
	now = now.Add(2 * time.Second)
	c.Lookup(pid, "sleep", 7) // expired: read again, entry renewed
	if c.Len() != 1 {
		t.Errorf("Len() = %d; want 1", c.Len())
	}
	cmd.Process.Kill()
	cmd.Wait()
	now = now.Add(startRecheck)
	if got := c.Lookup(pid, "sleep", 7); got.Complete {
		t.Errorf("Lookup(exited child) = %+v; want an incomplete read, not the cached entry", got)
	}
}

// A reused pid (another start time in /proc/PID/stat) is read afresh, but
// only once the start time is due for a recheck.
func TestCacheStartRecheck(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "4242")
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stat := func(start int) string {
		return "4242 (app) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 " + strconv.Itoa(start) + " 1000 0"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/usr/bin/app", filepath.Join(dir, "exe")); err != nil {
		t.Fatal(err)
	}
	write("stat", stat(100))
	write("cmdline", "app\x00--one")
	write("cgroup", "0::/system.slice/app.service\n")

	now := time.Unix(1000, 0)
	c := NewCache(root, 0, time.Hour)
	c.now = func() time.Time { return now }
	if got := c.Lookup(4242, "app", 9).Cmdline; got != "app --one" {
		t.Fatalf("Lookup = %q; want %q", got, "app --one")
	}
	// The pid is reused by another process.
	write("stat", stat(200))
	write("cmdline", "app\x00--two")
	now = now.Add(startRecheck / 2)
	if got := c.Lookup(4242, "app", 9).Cmdline; got != "app --one" {
		t.Errorf("Lookup within the recheck interval = %q; want the cached %q", got, "app --one")
	}
	now = now.Add(startRecheck)
	if got := c.Lookup(4242, "app", 9).Cmdline; got != "app --two" {
		t.Errorf("Lookup after the recheck interval = %q; want the new process's %q", got, "app --two")
	}
}

// BenchmarkCacheLookup is a cache hit for a busy process (its start time
// read within startRecheck: no system call). Compare with
// BenchmarkFromPIDSelf, what every connection cost without the cache.
func BenchmarkCacheLookup(b *testing.B) {
	pid := uint32(os.Getpid())
	c := NewCache("", 0, 0)
	for b.Loop() {
		c.Lookup(pid, "bench", 1)
	}
}
