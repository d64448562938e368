package intercept

import (
	"errors"
	"strings"
	"testing"
)

func TestCgroup2Mount(t *testing.T) {
	hybrid := `tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
`
	tests := []struct{ mounts, want string }{
		{hybrid, "/sys/fs/cgroup/unified"},
		{"cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n", "/sys/fs/cgroup"},
		{"none /mnt/my\\040cgroups cgroup2 rw 0 0\n", "/mnt/my cgroups"},
	}
	for _, tt := range tests {
		got, err := cgroup2Mount(strings.NewReader(tt.mounts))
		if err != nil || got != tt.want {
			t.Errorf("cgroup2Mount(%q) = %q, %v; want %q", tt.mounts, got, err, tt.want)
		}
	}

	_, err := cgroup2Mount(strings.NewReader("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"))
	if !errors.Is(err, ErrNoCgroupV2) || !strings.Contains(err.Error(), "no cgroup v2 mount found") {
		t.Errorf("cgroup2Mount(v1 only) = %v; want ErrNoCgroupV2 saying no cgroup v2 mount found", err)
	}
}
