package identity

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Defaults for NewCache.
const (
	DefaultCacheSize = 4096
	DefaultCacheTTL  = time.Second
)

// startRecheck is how long a process's start time, once read, is taken as
// still valid for the same pid, comm and cgroup without reading
// /proc/PID/stat again. The kernel hands out pids in increasing order and
// wraps at pid_max (at least 32768): for a pid to be reused, the host
// must create some 32,000 processes first, which takes far longer than
// this, so a pid seen this recently is still the same process.
const startRecheck = 20 * time.Millisecond

// Cache remembers what FromPID read about a process, so that a process
// opening many connections costs at most one small read of /proc/PID/stat
// per connection (none within startRecheck of the last) instead of
// reading its exe link, command line and cgroup each time (three files,
// nine system calls, and the cgroup path parsed).
//
// An entry is used only for the same process: the pid, its start time
// (from /proc/PID/stat, so a reused pid never matches), and the comm and
// cgroup id that the kernel recorded at connect time (an exec renames the
// thread; a move to another cgroup changes the id). An exec that keeps the
// comm, or a process rewriting its own command line, is seen at most ttl
// late. Only complete reads are kept. A Cache is safe for concurrent use.
type Cache struct {
	procRoot string
	size     int
	ttl      time.Duration
	now      func() time.Time

	mu     sync.Mutex
	m      map[cacheKey]cacheEntry
	starts map[procKey]startSeen
}

// procKey is a process as the kernel names it at connect time.
type procKey struct {
	pid      uint32
	cgroupID uint64
	comm     string
}

// startSeen is the start time of a process and when it was read.
type startSeen struct {
	start uint64
	at    time.Time
}

type cacheKey struct {
	procKey
	start uint64 // start time in clock ticks after boot (field 22 of /proc/PID/stat)
}

type cacheEntry struct {
	info    Info
	expires time.Time
}

// NewCache returns a cache of at most size processes (DefaultCacheSize
// when size ≤ 0), each kept for ttl (DefaultCacheTTL when ttl ≤ 0), read
// from procRoot ("/proc" when empty; see FromPID).
func NewCache(procRoot string, size int, ttl time.Duration) *Cache {
	if procRoot == "" {
		procRoot = "/proc"
	}
	if size <= 0 {
		size = DefaultCacheSize
	}
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	return &Cache{procRoot: procRoot, size: size, ttl: ttl, now: time.Now,
		m: make(map[cacheKey]cacheEntry), starts: make(map[procKey]startSeen)}
}

// Lookup returns what FromPID would, for the process pid whose thread the
// kernel saw with comm in cgroup cgroupID.
func (c *Cache) Lookup(pid uint32, comm string, cgroupID uint64) Info {
	if pid == 0 {
		return FromPID(pid, c.procRoot)
	}
	pk := procKey{pid: pid, cgroupID: cgroupID, comm: comm}
	now := c.now()
	c.mu.Lock()
	seen, ok := c.starts[pk]
	c.mu.Unlock()
	start := seen.start
	if !ok || now.Sub(seen.at) >= startRecheck || now.Before(seen.at) {
		var err error
		if start, err = startTime(c.procRoot, pid); err != nil {
			return FromPID(pid, c.procRoot) // gone or unreadable: FromPID says what it can
		}
		c.mu.Lock()
		if _, ok := c.starts[pk]; !ok && len(c.starts) >= c.size {
			clear(c.starts) // rebuilt at one stat read per process
		}
		c.starts[pk] = startSeen{start: start, at: now}
		c.mu.Unlock()
	}
	k := cacheKey{procKey: pk, start: start}
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.info
	}
	info := FromPID(pid, c.procRoot)
	if !info.Complete {
		return info
	}
	// The process may have exited and its pid been reused while it was
	// read: keep the result only if the start time still matches.
	if s, err := startTime(c.procRoot, pid); err != nil || s != start {
		return info
	}
	c.mu.Lock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.size {
		c.evict(now)
	}
	c.m[k] = cacheEntry{info: info, expires: now.Add(c.ttl)}
	c.mu.Unlock()
	return info
}

// evict drops expired entries, or, if none has expired, one at random
// (map order), so the cache stays within its size. c.mu is held.
func (c *Cache) evict(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.expires) {
			delete(c.m, k)
		}
	}
	for k := range c.m {
		if len(c.m) < c.size {
			break
		}
		delete(c.m, k)
	}
}

// Len returns the number of cached processes.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// errStat is returned for a /proc/PID/stat that cannot be parsed.
var errStat = errors.New("identity: malformed /proc/PID/stat: want a start time in field 22, after the ')' that ends the command name; check that the proc root is a procfs mount")

// startTime reads field 22 (starttime) of /proc/PID/stat. The comm in
// field 2 may hold spaces and parentheses, so fields are counted from the
// last ')'.
func startTime(procRoot string, pid uint32) (uint64, error) {
	var buf [512]byte
	f, err := os.Open(filepath.Join(procRoot, strconv.FormatUint(uint64(pid), 10), "stat"))
	if err != nil {
		return 0, err
	}
	n, err := f.Read(buf[:])
	f.Close()
	if err != nil {
		return 0, err
	}
	return parseStartTime(buf[:n])
}

func parseStartTime(stat []byte) (uint64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errStat
	}
	// After ") " come fields 3, 4, …; starttime is field 22. A file that
	// ends at the ')' has none of them.
	rest := stat[i+1:]
	if len(rest) == 0 {
		return 0, errStat
	}
	for field := 2; field < 21; field++ {
		j := bytes.IndexByte(rest[1:], ' ')
		if j < 0 {
			return 0, errStat
		}
		rest = rest[j+1:]
	}
	rest = bytes.TrimLeft(rest, " ")
	if j := bytes.IndexByte(rest, ' '); j >= 0 {
		rest = rest[:j]
	}
	v, err := strconv.ParseUint(string(rest), 10, 64)
	if err != nil {
		return 0, errStat
	}
	return v, nil
}
