package auditlog

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Datasync makes what was written to f durable, as the log's writer
// does; benchmarks use it so their baseline pays for the same guarantee. fdatasync skips the inode
// metadata an append does not need (times), which is most of a flush's cost.
func Datasync(f *os.File) error {
	return syscall.Fdatasync(int(f.Fd()))
}

// reserveBlocks allocates the blocks of [off, off+n) without changing the
// file's size (FALLOC_FL_KEEP_SIZE), so the bytes a reader sees are only
// the ones written.
func reserveBlocks(f *os.File, off, n int64) error {
	return syscall.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, off, n)
}
