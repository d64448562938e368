package intercept

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// maxPortRanges is CAPTURE_MAX_RANGES in bpf/types.h.
const maxPortRanges = 16

// maxCaptureEntries is max_entries of vigil_capture in bpf/maps.h.
const maxCaptureEntries = 4096

// localPrefixes are destinations captured only by rules inside them.
var localPrefixes = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("0.0.0.0/32"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("::/128"),
}

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi uint16 }

// compileCapture turns rules into the contents of the kernel's
// longest-prefix-match trie. The kernel only sees the most specific prefix
// containing a destination, so each entry carries the union of the port
// ranges of every rule containing that prefix; prefixes containing no rule
// (the local prefixes when nothing names them) get no ranges and capture
// nothing.
func compileCapture(rules []CaptureRule) (map[netip.Prefix][]portRange, error) {
	prefixes := make(map[netip.Prefix]bool)
	for _, p := range localPrefixes {
		prefixes[p] = true
	}
	for _, r := range rules {
		if !r.Prefix.IsValid() {
			return nil, fmt.Errorf("intercept: capture rule %v: invalid prefix", r)
		}
		if r.PortLow > r.PortHigh {
			return nil, fmt.Errorf("intercept: capture rule %v: port range is backwards", r)
		}
		prefixes[normalizePrefix(r.Prefix)] = true
	}
	if len(prefixes) > maxCaptureEntries {
		return nil, fmt.Errorf("intercept: capture set has %d prefixes, the kernel map holds %d", len(prefixes), maxCaptureEntries)
	}

	out := make(map[netip.Prefix][]portRange, len(prefixes))
	for _, entry := range slices.SortedFunc(maps.Keys(prefixes), comparePrefix) {
		var local netip.Prefix
		for _, l := range localPrefixes {
			if contains(l, entry) {
				local = l
			}
		}
		var ranges []portRange
		for _, r := range rules {
			p := normalizePrefix(r.Prefix)
			if !contains(p, entry) || (local.IsValid() && !contains(local, p)) {
				continue
			}
			if r.PortLow == 0 && r.PortHigh == 0 {
				ranges = append(ranges, portRange{0, 65535})
			} else {
				ranges = append(ranges, portRange{r.PortLow, r.PortHigh})
			}
		}
		ranges = mergeRanges(ranges)
		if len(ranges) > maxPortRanges {
			return nil, fmt.Errorf("intercept: capture set: %s needs %d port ranges, the kernel holds %d per prefix: merge some rules", entry, len(ranges), maxPortRanges)
		}
		out[entry] = ranges
	}
	return out, nil
}

// contains reports whether prefix outer contains prefix inner.
func contains(outer, inner netip.Prefix) bool {
	return outer.Addr().BitLen() == inner.Addr().BitLen() &&
		outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// mergeRanges sorts ranges and joins overlapping and adjacent ones.
func mergeRanges(ranges []portRange) []portRange {
	if len(ranges) == 0 {
		return nil
	}
	slices.SortFunc(ranges, func(a, b portRange) int { return int(a.lo) - int(b.lo) })
	out := []portRange{ranges[0]}
	for _, r := range ranges[1:] {
		last := &out[len(out)-1]
		if int(r.lo) <= int(last.hi)+1 {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}
