package intercept

import (
	"fmt"
	"net/netip"
	"syscall"
)

// Limits of the kernel's deny table (bpf/types.h, bpf/maps.h).
const (
	// MaxDenySegments is DENY_MAX_SEGS: segments per prefix.
	MaxDenySegments = 16
	// MaxDenyEntries is max_entries of the deny trie: prefixes per table.
	MaxDenyEntries = 4096
)

// DenyRuleDefault is DenySegment.Rule (and Event.Rule) of a deny made by
// the policy's default rather than by one of its rules.
const DenyRuleDefault = ^uint32(0)

// DenyTable is the part of a policy the kernel enforces alone: TCP
// connects it refuses without redirecting them to the proxy. For a
// destination, the entry with the longest prefix containing it applies
// (IPv4-mapped IPv6 destinations are looked up as IPv4); its segments are
// tried in order and the first whose ports, uid and gid contain the
// connection decides. A connection no segment matches, or whose first
// matching segment does not deny, goes on as before (to the proxy, or
// direct when it is device-bound or from an unserved namespace).
//
// Every captured TCP connect is looked up except exempt and marked ones:
// device-bound sockets and unserved namespaces are, so that neither (any
// user may bind a socket to a device) steps around a kernel deny.
type DenyTable struct {
	// Generation identifies this table in the events of the denies it
	// makes (Event.Generation), so that the caller can map Event.Rule back
	// to the policy the table came from.
	Generation uint32
	Entries    []DenyEntry // at most MaxDenyEntries, one per prefix
}

// DenyEntry is one prefix of a DenyTable.
type DenyEntry struct {
	Prefix   netip.Prefix
	Segments []DenySegment // at most MaxDenySegments
}

// DenySegment is a set of connections to an entry's prefix (inclusive
// ranges) and what the kernel does with them.
type DenySegment struct {
	PortLow, PortHigh uint16
	UIDLow, UIDHigh   uint32
	GIDLow, GIDHigh   uint32
	// Deny refuses matching connections with Errno; false leaves them to
	// the proxy (and ends the search: later segments do not apply).
	Deny  bool
	Rule  uint32        // reported with the deny: a rule index, or DenyRuleDefault
	Errno syscall.Errno // connect()'s error for a deny (1 to 4095)
}

// check validates t against the kernel's limits and returns its entries
// keyed by normalized prefix.
func (t *DenyTable) check() (map[netip.Prefix][]DenySegment, error) {
	if len(t.Entries) > MaxDenyEntries {
		return nil, fmt.Errorf("intercept: deny table has %d prefixes, the kernel holds %d", len(t.Entries), MaxDenyEntries)
	}
	out := make(map[netip.Prefix][]DenySegment, len(t.Entries))
	for _, e := range t.Entries {
		if !e.Prefix.IsValid() {
			return nil, fmt.Errorf("intercept: deny table: invalid prefix %v", e.Prefix)
		}
		p := normalizePrefix(e.Prefix)
		if _, dup := out[p]; dup {
			return nil, fmt.Errorf("intercept: deny table: prefix %s given twice", p)
		}
		if len(e.Segments) > MaxDenySegments {
			return nil, fmt.Errorf("intercept: deny table: %s has %d segments, the kernel holds %d", p, len(e.Segments), MaxDenySegments)
		}
		for _, s := range e.Segments {
			if s.PortLow > s.PortHigh || s.UIDLow > s.UIDHigh || s.GIDLow > s.GIDHigh {
				return nil, fmt.Errorf("intercept: deny table: %s: segment %+v has a backwards range", p, s)
			}
			if s.Deny && (s.Errno <= 0 || s.Errno > 4095) {
				return nil, fmt.Errorf("intercept: deny table: %s: errno %d is not one connect() can return", p, int(s.Errno))
			}
		}
		out[p] = e.Segments
	}
	return out, nil
}
