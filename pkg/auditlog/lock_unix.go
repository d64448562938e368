//go:build unix

// flock(2) means the same on Linux and macOS (an advisory lock on the open
// file description, released when the descriptor closes; a held lock fails
// LOCK_NB with EWOULDBLOCK), so one file serves every unix.

package auditlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is held with flock for as long as a Log is open. While open it
// holds "pid N"; a clean Close empties it, so a pid found at Open means the
// last writer stopped without closing.
const lockFile = "LOCK"

func lockDir(dir string) (f *os.File, unclean bool, err error) {
	path := filepath.Join(dir, lockFile)
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("auditlog: open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			owner := strings.TrimSpace(string(b))
			if owner == "" {
				owner = "unknown pid"
			}
			return nil, false, fmt.Errorf("auditlog: %s is in use by another vigil process (%s): stop it or choose another data directory", dir, owner)
		}
		return nil, false, fmt.Errorf("auditlog: lock %s: %w", path, err)
	}
	prev := make([]byte, 64)
	n, _ := f.ReadAt(prev, 0)
	unclean = n > 0
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("auditlog: write lock file: %w", err)
	}
	if _, err := f.WriteAt([]byte("pid "+strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("auditlog: write lock file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("auditlog: sync lock file: %w", err)
	}
	return f, unclean, nil
}

// unlockDir releases the lock; clean marks the stop as clean.
func unlockDir(f *os.File, clean bool) {
	if clean {
		if f.Truncate(0) == nil {
			_ = f.Sync()
		}
	}
	_ = f.Close() // closing the descriptor releases the flock
}
