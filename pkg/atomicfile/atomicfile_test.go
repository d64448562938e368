package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name  string
		old   []byte // nil: no file before
		stale bool   // a temporary file left by an earlier crash
		data  []byte
		perm  os.FileMode
	}{
		{name: "new file", data: []byte("a\n"), perm: 0o600},
		{name: "replace", old: []byte("old content"), data: []byte("new"), perm: 0o644},
		{name: "empty", old: []byte("x"), data: []byte{}, perm: 0o600},
		{name: "link planted at an old temporary name", stale: true, data: []byte("fresh"), perm: 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tt.old != nil {
				if err := os.WriteFile(path, tt.old, 0o666); err != nil {
					t.Fatal(err)
				}
			}
			victim := filepath.Join(t.TempDir(), "victim")
			if tt.stale {
				if err := os.WriteFile(victim, []byte("keep"), 0o640); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(victim, path+".tmp"); err != nil {
					t.Fatal(err)
				}
			}
			if err := Write(path, tt.data, tt.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tt.data) {
				t.Errorf("content %q, want %q", got, tt.data)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.perm {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tt.perm)
			}
			if tt.stale {
				fi, err := os.Stat(victim)
				got, _ := os.ReadFile(victim)
				if err != nil || fi.Mode().Perm() != 0o640 || string(got) != "keep" {
					t.Errorf("the link's target was touched: %v, %q", fi.Mode(), got)
				}
			}
			if left := temps(t, dir); len(left) > 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}

// temps lists the temporary files Write leaves in dir (none, normally).
func temps(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	// The target is a directory: the rename fails and nothing is left.
	target := filepath.Join(dir, "d")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("x"), 0o600); err == nil {
		t.Fatal("replacing a non-empty directory succeeded")
	}
	if left := temps(t, dir); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	if err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("sync of a missing directory succeeded")
	}
}

// errReader fails after some bytes, as a download cut off would.
type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, os.ErrDeadlineExceeded
	}
	k := min(len(p), r.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	r.n -= k
	return k, nil
}

// A source that fails part way leaves the old file as it was and no
// temporary file.
func TestWriteFromInterrupted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seg")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrom(path, &errReader{n: 100}, 0o600); err == nil {
		t.Fatal("WriteFrom with a failing source succeeded")
	}
	got, _ := os.ReadFile(path)
	if string(got) != "old" {
		t.Errorf("content after a failed write %q; want the old one", got)
	}
	if left := temps(t, filepath.Dir(path)); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}
