package intercept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"

	"github.com/vigil-ebpf/vigil/bpf"
)

// Address families as the programs store them (types.h FAMILY_V4/V6).
const (
	familyV4 = 4
	familyV6 = 6
)

// lookupRetries are the pauses between Lookup attempts. A connection is
// accepted after the client has seen SYN-ACK and stored its tuple, except
// when the proxy accepts TCP Fast Open data with the SYN: then the accept
// can win the race by microseconds.
var lookupRetries = []time.Duration{0, 200 * time.Microsecond, time.Millisecond, 4 * time.Millisecond}

// Lookup returns, and removes, the origin of the connection the proxy
// accepted from client (the accepted connection's RemoteAddr) on a
// listener in the agent's own network namespace. IPv4-mapped addresses are
// unmapped first. found is false when the kernel recorded nothing for
// client: the connection was not redirected, or its client already closed
// it.
func (i *Interceptor) Lookup(client netip.AddrPort) (o Origin, found bool, err error) {
	return i.LookupNetns(i.netns, client)
}

// LookupNetns is Lookup for a connection accepted on a listener in the
// network namespace with cookie netns (a served workload namespace, see
// ServeNetns): the same client address can exist in many namespaces.
func (i *Interceptor) LookupNetns(netns uint64, client netip.AddrPort) (o Origin, found bool, err error) {
	key := tupleKey(netns, client)
	var v bpf.InterceptOrigin
	for _, pause := range lookupRetries {
		time.Sleep(pause)
		err := i.objs.VigilTuples.LookupAndDelete(&key, &v)
		if err == nil {
			return decodeOrigin(&v), true, nil
		}
		if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return Origin{}, false, fmt.Errorf("intercept: lookup %s: %w", client, err)
		}
	}
	return Origin{}, false, nil
}

func tupleKey(netns uint64, ap netip.AddrPort) bpf.InterceptTupleKey {
	k := bpf.InterceptTupleKey{NetnsCookie: netns, Port: ap.Port()}
	k.Family, k.Addr = packAddr(ap.Addr())
	return k
}

// packAddr lays out a as the programs do: network byte order in memory,
// IPv4 (also IPv4-mapped) in the first word.
func packAddr(a netip.Addr) (family uint8, words [4]uint32) {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		words[0] = binary.NativeEndian.Uint32(b[:])
		return familyV4, words
	}
	b := a.As16()
	for j := range words {
		words[j] = binary.NativeEndian.Uint32(b[4*j:])
	}
	return familyV6, words
}

func unpackAddr(family uint8, words [4]uint32) netip.Addr {
	switch family {
	case familyV4:
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], words[0])
		return netip.AddrFrom4(b)
	case familyV6:
		var b [16]byte
		for j, w := range words {
			binary.NativeEndian.PutUint32(b[4*j:], w)
		}
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

func decodeOrigin(v *bpf.InterceptOrigin) Origin {
	comm := make([]byte, 0, len(v.Comm))
	for _, c := range v.Comm {
		if c == 0 {
			break
		}
		comm = append(comm, byte(c))
	}
	return Origin{
		Dst:          netip.AddrPortFrom(unpackAddr(v.Family, v.DstAddr), v.DstPort),
		PID:          v.Pid,
		TID:          v.Tid,
		UID:          v.Uid,
		GID:          v.Gid,
		Comm:         string(comm),
		CgroupID:     v.CgroupId,
		NetnsCookie:  v.NetnsCookie,
		SocketCookie: v.SocketCookie,
	}
}

// writeCapture makes the capture trie hold exactly entries. New entries go
// in before stale ones (left in an adopted pinned map) are removed, so a
// reconfiguration never passes through an empty set.
func (i *Interceptor) writeCapture(entries map[netip.Prefix][]portRange) error {
	m := i.objs.VigilCapture
	want := make(map[bpf.InterceptCaptureKey]bool, len(entries))
	for p, ranges := range entries {
		key := captureKey(p)
		var val bpf.InterceptCaptureVal
		val.N = uint32(len(ranges))
		for j, r := range ranges {
			val.Ranges[j].Lo, val.Ranges[j].Hi = r.lo, r.hi
		}
		if err := m.Put(&key, &val); err != nil {
			return fmt.Errorf("intercept: capture set: put %s: %w", p, err)
		}
		want[key] = true
	}
	var stale []bpf.InterceptCaptureKey
	var key bpf.InterceptCaptureKey
	var val bpf.InterceptCaptureVal
	it := m.Iterate()
	for it.Next(&key, &val) {
		if !want[key] {
			stale = append(stale, key)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("intercept: capture set: %w", err)
	}
	for _, k := range stale {
		if err := m.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("intercept: capture set: delete stale entry: %w", err)
		}
	}
	return nil
}

func captureKey(p netip.Prefix) bpf.InterceptCaptureKey {
	k := bpf.InterceptCaptureKey{}
	k.Family, k.Addr = packAddr(p.Addr())
	k.Prefixlen = 32 + uint32(p.Bits())
	return k
}

// Stats counts the entries of each map and sums the per-CPU counters.
func (i *Interceptor) Stats() (Stats, error) {
	var s Stats
	var err error
	counts := []struct {
		m   *ebpf.Map
		out *int
	}{
		{i.objs.VigilOrigins, &s.Origins},
		{i.objs.VigilTuples, &s.Tuples},
		{i.objs.VigilUdpSeen, &s.UDPSeen},
		{i.objs.VigilCapture, &s.Capture},
		{i.objs.VigilNetns, &s.Netns},
	}
	for _, c := range counts {
		if *c.out, err = countEntries(c.m); err != nil {
			return Stats{}, err
		}
	}
	counters := []struct {
		id  bpf.InterceptStatId
		out *uint64
	}{
		{bpf.InterceptStatIdSTAT_TCP_CONNECT, &s.TCPConnects},
		{bpf.InterceptStatIdSTAT_REDIRECTED, &s.Redirected},
		{bpf.InterceptStatIdSTAT_ESTABLISHED, &s.Established},
		{bpf.InterceptStatIdSTAT_SKIP_MARK, &s.SkippedMark},
		{bpf.InterceptStatIdSTAT_SKIP_EXEMPT, &s.SkippedExempt},
		{bpf.InterceptStatIdSTAT_SKIP_NOT_CAPTURED, &s.SkippedNotCaptured},
		{bpf.InterceptStatIdSTAT_OTHER_NETNS, &s.OtherNetns},
		{bpf.InterceptStatIdSTAT_BOUND_DEVICE, &s.BoundDevice},
		{bpf.InterceptStatIdSTAT_UDP_REPORTED, &s.UDPReported},
		{bpf.InterceptStatIdSTAT_MAP_FULL, &s.MapFull},
		{bpf.InterceptStatIdSTAT_EVENTS_LOST, &s.EventsLost},
		{bpf.InterceptStatIdSTAT_KERNEL_DENY, &s.KernelDenied},
		{bpf.InterceptStatIdSTAT_REDIRECTED_NETNS, &s.RedirectedNetns},
	}
	i.denyMu.Lock()
	s.Deny = i.denyEntries
	i.denyMu.Unlock()
	if info, err := i.objs.VigilStats.Info(); err == nil {
		if id, ok := info.ID(); ok {
			s.CountersID = uint32(id)
		}
	}
	for _, c := range counters {
		var perCPU []uint64
		if err := i.objs.VigilStats.Lookup(c.id, &perCPU); err != nil {
			return Stats{}, fmt.Errorf("intercept: stats: %w", err)
		}
		for _, n := range perCPU {
			*c.out += n
		}
	}
	return s, nil
}

// countEntries iterates m and counts its keys.
func countEntries(m *ebpf.Map) (int, error) {
	key := make([]byte, m.KeySize())
	next := make([]byte, m.KeySize())
	n := 0
	var prev any // nil: start from the first key
	for {
		err := m.NextKey(prev, &next)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("intercept: count %s: %w", m, err)
		}
		n++
		copy(key, next)
		prev = key
	}
}
