// Package identity tells who is behind a process id: its executable,
// command line, cgroup v2 path, and the container, pod or systemd unit that
// path names. It reads /proc only; nothing here needs the container runtime.
package identity

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxCmdline bounds Info.Cmdline: at most this many bytes of the command
// line are kept, followed by TruncMark when there was more.
const MaxCmdline = 1024

// TruncMark ends a command line that was cut at MaxCmdline bytes.
const TruncMark = "…"

// maxCgroupFile bounds how much of /proc/PID/cgroup is read. On cgroup v2
// the file is one short line; hybrid hosts add one line per v1 hierarchy.
const maxCgroupFile = 64 << 10

// Info is what /proc said about one process. Empty fields could not be read
// or do not apply; Complete says whether every read succeeded.
type Info struct {
	PID        uint32
	Exe        string // target of /proc/PID/exe; "/path (deleted)" if the file was replaced
	Cmdline    string // arguments joined by spaces, at most MaxCmdline bytes plus TruncMark
	CgroupPath string // the cgroup v2 ("0::") path, relative to the cgroup namespace root
	Workload          // what CgroupPath says about the container, pod or unit

	// Complete is true when exe, cmdline and cgroup were all read. It is
	// false when the process exited (or its pid was reused) before or while
	// it was read, when /proc is not readable for it (no CAP_SYS_PTRACE for
	// another user's exe link), or when it has no cgroup v2 entry (a
	// cgroup v1-only host).
	Complete bool
}

// FromPID reads what it can about pid under procRoot ("/proc" when empty).
// It never fails: a process that has already exited yields the fields that
// were read before it went (often none) and Complete false.
//
// The pid is the one the kernel reports in the initial pid namespace, so
// procRoot must be a /proc mounted from that namespace (the host's /proc,
// e.g. "/host/proc" in a hostPID pod). Each file is read once, in turn:
// if the pid is reused between two reads the fields may describe two
// processes; callers that need certainty compare Info with what the kernel
// recorded at connect time (comm, cgroup id).
func FromPID(pid uint32, procRoot string) Info {
	if procRoot == "" {
		procRoot = "/proc"
	}
	dir := filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10))
	info := Info{PID: pid, Complete: pid != 0}
	if pid == 0 {
		return info
	}

	if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
		info.Exe = exe
	} else {
		info.Complete = false
	}

	if raw, truncated, err := readBounded(filepath.Join(dir, "cmdline"), MaxCmdline); err == nil {
		info.Cmdline = formatCmdline(raw, truncated)
	} else {
		info.Complete = false
	}

	if raw, _, err := readBounded(filepath.Join(dir, "cgroup"), maxCgroupFile); err == nil {
		if p, ok := cgroupV2Path(raw); ok {
			info.CgroupPath = p
			info.Workload = ParseCgroupPath(p)
		} else {
			info.Complete = false
		}
	} else {
		info.Complete = false
	}
	return info
}

// readBounded reads at most limit bytes of path and reports whether the
// file held more.
func readBounded(path string, limit int) (data []byte, truncated bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	// /proc files report size 0: read in small steps, never past limit.
	data, err = io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		// /proc/PID/cmdline of a process exiting mid-read fails with ESRCH.
		return nil, false, err
	}
	if len(data) > limit {
		return data[:limit], true, nil
	}
	return data, false, nil
}

// formatCmdline turns the NUL-separated argument list into one line:
// NULs become spaces, trailing spaces go, and a cut line ends in TruncMark.
// A cut never splits a UTF-8 sequence.
func formatCmdline(raw []byte, truncated bool) string {
	if truncated {
		// Drop a multi-byte sequence that the cut left incomplete.
		for i := len(raw) - 1; i >= 0 && i >= len(raw)-utf8.UTFMax; i-- {
			if utf8.RuneStart(raw[i]) {
				if !utf8.FullRune(raw[i:]) {
					raw = raw[:i]
				}
				break
			}
		}
	}
	s := string(bytes.ReplaceAll(raw, []byte{0}, []byte{' '}))
	s = strings.TrimRight(s, " ")
	if truncated {
		s += TruncMark
	}
	return s
}

// cgroupV2Path returns the path of the "0::" line of a /proc/PID/cgroup
// file. A cgroup that was removed while the process lived on shows as
// "/path (deleted)"; the suffix is kept, since that is what the kernel says.
func cgroupV2Path(file []byte) (string, bool) {
	for line := range strings.Lines(string(file)) {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return strings.TrimRight(p, "\n"), true
		}
	}
	return "", false
}
