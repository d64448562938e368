package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestCgroupPids(t *testing.T) {
	tests := []struct {
		name  string
		procs map[string]string // cgroup directory (relative) -> cgroup.procs content
		want  []int
	}{
		{"empty cgroup", map[string]string{".": ""}, nil},
		{"one level", map[string]string{".": "10\n11\n"}, []int{10, 11}},
		{"nested pods", map[string]string{".": "1\n", "pod0": "20\n", "pod1": "30\n31\n", "pod1/c": "40\n"}, []int{1, 20, 30, 31, 40}},
		{"junk lines skipped", map[string]string{".": "5\nnot-a-pid\n\n6\n"}, []int{5, 6}},
		{"directory without cgroup.procs", map[string]string{".": "7\n", "gone": "-"}, []int{7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for dir, content := range tt.procs {
				d := filepath.Join(root, dir)
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if content == "-" {
					continue
				}
				if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := cgroupPids(root)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("cgroupPids() = %v; want %v", got, tt.want)
			}
		})
	}
	if _, err := cgroupPids(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("cgroupPids(missing) = %v; want no processes and no error (a removed cgroup)", err)
	}
}
