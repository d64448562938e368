//go:build !linux

package auditlog

import (
	"errors"
	"os"
)

// Datasync makes what was written to f durable, as the log's writer
// does; benchmarks use it so their baseline pays for the same guarantee. There is no fdatasync on
// macOS, and its fsync(2) only hands the data to the drive, whose cache may
// still lose it on power loss; os.File.Sync issues F_FULLFSYNC there (and
// falls back to fsync where a file system refuses it), which is the
// guarantee fdatasync gives on Linux. The extra metadata it flushes costs
// time, never correctness.
func Datasync(f *os.File) error {
	return f.Sync()
}

// reserveBlocks does nothing outside Linux: the reservation only makes the
// agent's flushes cheaper (see writer.reserve), and the agent runs on Linux
// only. Without it the writer allocates as it goes.
func reserveBlocks(*os.File, int64, int64) error {
	return errors.ErrUnsupported
}
