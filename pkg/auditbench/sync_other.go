//go:build !linux

package auditbench

import "os"

// datasync flushes f as the audit log's writer does outside Linux
// (os.File.Sync, F_FULLFSYNC on macOS), so the baseline pays for the same
// guarantee.
func datasync(f *os.File) error { return f.Sync() }
