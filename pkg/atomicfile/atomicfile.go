// Package atomicfile replaces small files so that a crash at any moment
// leaves either the old content or the new one, never a torn file, and the
// change survives a power loss once the call returns.
package atomicfile

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with data: it writes a new temporary file beside
// it, syncs it, gives it mode perm (exactly: the umask does not narrow it),
// renames it over path and syncs the directory, so the rename itself is
// durable too. On error path holds its old content or, if only the final
// directory sync failed, the new one; never a mix.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFrom(path, bytes.NewReader(data), perm)
}

// WriteFrom is Write with the content read from r until EOF, for content
// too large to hold in memory (a downloaded segment).
func WriteFrom(path string, r io.Reader, perm os.FileMode) error {
	// A new file of a name of its own (O_EXCL): two writers never share
	// one, and a link planted at a predictable name is never followed.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = io.Copy(f, r)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("atomic write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir makes the creation, removal or renaming of entries in dir
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
