package netns

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
)

// ID identifies a namespace: the device and inode of its nsfs file, as
// stat(2) of /proc/PID/ns/net reports them. Inode numbers are what
// `ip netns identify` and `lsns` print.
type ID struct {
	Dev uint64
	Ino uint64
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// String formats id as "net:[INODE]", the way /proc shows it.
func (id ID) String() string { return "net:[" + strconv.FormatUint(id.Ino, 10) + "]" }

// Found is a namespace a scan saw, with one path it can be opened from.
type Found struct {
	ID   ID
	Path string // a bind mount when there is one (it outlives processes), else /proc/PID/ns/net
}

// Scanner finds the network namespaces that exist: those of every process
// under ProcRoot and those bind-mounted in BindDirs.
type Scanner struct {
	ProcRoot string   // default "/proc"
	BindDirs []string // default {"/run/netns"}; "ip netns add" and CNI plugins mount here
	// Pids lists the processes whose namespaces count; nil means every
	// process under ProcRoot.
	Pids func() ([]int, error)
	// Stat identifies the namespace at path; default StatNS, which
	// refuses files that are not namespaces (a /run/netns entry whose
	// mount is gone).
	Stat func(path string) (ID, error)
}

// StatNS identifies the network namespace file at path, following
// symbolic links, and fails when it is not one.
func StatNS(path string) (ID, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return ID{}, &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return ID{}, fmt.Errorf("netns: %s is not a namespace file", path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ID{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return ID{Dev: st.Dev, Ino: st.Ino}, nil
}

// Scan returns every namespace found, each once, ordered by ID. Processes
// that exit during the scan and files that are not namespaces are
// skipped; only an unreadable ProcRoot is an error.
func (s Scanner) Scan() ([]Found, error) {
	procRoot := s.ProcRoot
	if procRoot == "" {
		procRoot = "/proc"
	}
	bindDirs := s.BindDirs
	if bindDirs == nil {
		bindDirs = []string{"/run/netns"}
	}
	stat := s.Stat
	if stat == nil {
		stat = StatNS
	}
	seen := make(map[ID]string)
	// Bind mounts first: their paths stay valid after the last process exits.
	for _, dir := range bindDirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // no such directory: nothing bind-mounted
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if id, err := stat(p); err == nil {
				if _, ok := seen[id]; !ok {
					seen[id] = p
				}
			}
		}
	}
	pids, err := s.pids(procRoot)
	if err != nil {
		return nil, err
	}
	for _, pid := range pids {
		p := filepath.Join(procRoot, strconv.Itoa(pid), "ns", "net")
		id, err := stat(p)
		if err != nil {
			continue // the process exited, or a kernel thread without one
		}
		if _, ok := seen[id]; !ok {
			seen[id] = p
		}
	}
	found := make([]Found, 0, len(seen))
	for id, p := range seen {
		found = append(found, Found{ID: id, Path: p})
	}
	slices.SortFunc(found, func(a, b Found) int {
		if a.ID.Dev != b.ID.Dev {
			return cmpU64(a.ID.Dev, b.ID.Dev)
		}
		return cmpU64(a.ID.Ino, b.ID.Ino)
	})
	return found, nil
}

// pids lists the processes to look at: Pids, or every one in procRoot.
func (s Scanner) pids(procRoot string) ([]int, error) {
	if s.Pids != nil {
		pids, err := s.Pids()
		if err != nil {
			return nil, fmt.Errorf("netns: list processes: %w", err)
		}
		return pids, nil
	}
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("netns: scan %s: %w", procRoot, err)
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if n, err := strconv.ParseUint(e.Name(), 10, 31); err == nil {
			pids = append(pids, int(n))
		}
	}
	return pids, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
