package intercept

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CgroupRoot returns where the cgroup v2 hierarchy is mounted, read from
// /proc/mounts. It is not always /sys/fs/cgroup: hybrid hosts mount it at
// /sys/fs/cgroup/unified.
func CgroupRoot() (string, error) {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "", &Error{Kind: ErrNoCgroupV2, Msg: "no cgroup v2 mount found", Err: err, Hint: hintCgroupV2}
	}
	defer f.Close()
	return cgroup2Mount(f)
}

// cgroup2Mount returns the mount point of the first cgroup2 entry of a
// /proc/mounts listing.
func cgroup2Mount(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "cgroup2" {
			return unescapeMount(fields[1]), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", &Error{Kind: ErrNoCgroupV2, Msg: "no cgroup v2 mount found", Err: fmt.Errorf("read /proc/mounts: %w", err), Hint: hintCgroupV2}
	}
	return "", &Error{Kind: ErrNoCgroupV2, Msg: "no cgroup v2 mount found in /proc/mounts", Hint: hintCgroupV2}
}

// unescapeMount undoes the octal escapes (\040 for space) of /proc/mounts.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// checkCgroup2 verifies that path is a directory on a cgroup v2 file system
// and returns its cgroup id (the directory's inode number).
func checkCgroup2(path string) (uint64, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return 0, &Error{Kind: ErrNoCgroupV2, Msg: fmt.Sprintf("cgroup %s", path), Err: err, Hint: "CgroupPath must be an existing cgroup v2 directory"}
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, &Error{Kind: ErrNoCgroupV2, Msg: fmt.Sprintf("%s is not a cgroup v2 directory", path), Hint: "use a directory under the cgroup2 mount (see /proc/mounts), or leave CgroupPath empty for the whole host"}
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, &Error{Kind: ErrNoCgroupV2, Msg: fmt.Sprintf("cgroup %s", path), Err: err}
	}
	return st.Ino, nil
}
