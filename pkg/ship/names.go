package ship

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// Object names are deterministic so that a plain listing of a bucket shows
// what is there and what is missing:
//
//	PREFIX/HOST/segments/YYYY/MM/DD/<first seq>-<last seq>.seg
//	PREFIX/HOST/checkpoints/<tree size>.ckpt
//
// Numbers are zero-padded to 20 digits, so lexical order is seq order
// within a day and across days (dates only grow with seq). The date is the
// UTC time of the segment's first entry.
const (
	segmentDir    = "segments"
	checkpointDir = "checkpoints"
	segmentExt    = ".seg"
	checkpointExt = ".ckpt"
)

// SegmentObject is the object name of a sealed segment holding seqs
// first..last whose first entry was written at t.
func SegmentObject(prefix, host string, first, last uint64, t time.Time) string {
	t = t.UTC()
	return join(prefix, host, segmentDir, fmt.Sprintf("%04d/%02d/%02d", t.Year(), int(t.Month()), t.Day()),
		fmt.Sprintf("%020d-%020d%s", first, last, segmentExt))
}

// CheckpointObject is the object name of the signed checkpoint of size entries.
func CheckpointObject(prefix, host string, size uint64) string {
	return join(prefix, host, checkpointDir, fmt.Sprintf("%020d%s", size, checkpointExt))
}

// SegmentRange is the seq range a segment object name claims.
type SegmentRange struct {
	Name        string // object name
	First, Last uint64 // seqs; Last = First-1 for a segment without entries
}

// ParseSegmentObject returns the seq range in a segment object name, or
// ok=false when name is not one.
func ParseSegmentObject(name string) (SegmentRange, bool) {
	base := path.Base(name)
	if !strings.HasSuffix(base, segmentExt) || !strings.Contains(name, "/"+segmentDir+"/") {
		return SegmentRange{}, false
	}
	a, b, ok := strings.Cut(strings.TrimSuffix(base, segmentExt), "-")
	if !ok || len(a) != 20 || len(b) != 20 {
		return SegmentRange{}, false
	}
	first, err1 := strconv.ParseUint(a, 10, 64)
	last, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil || first == 0 || last+1 < first {
		return SegmentRange{}, false
	}
	return SegmentRange{Name: name, First: first, Last: last}, true
}

// ParseCheckpointObject returns the tree size in a checkpoint object name.
func ParseCheckpointObject(name string) (uint64, bool) {
	base := path.Base(name)
	if !strings.HasSuffix(base, checkpointExt) || !strings.Contains(name, "/"+checkpointDir+"/") {
		return 0, false
	}
	num := strings.TrimSuffix(base, checkpointExt)
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || len(num) != 20 || n == 0 {
		return 0, false
	}
	return n, true
}

// LocalSegmentName is the file name auditlog uses for the segment starting
// at first, so a downloaded archive is a log directory again.
func LocalSegmentName(first uint64) string {
	return fmt.Sprintf("segment-%020d.vlog", first)
}

func join(parts ...string) string {
	var keep []string
	for _, p := range parts {
		if p = strings.Trim(p, "/"); p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, "/")
}

// Gaps returns the seq ranges missing between consecutive segments (sorted
// by First), and before the first one when it does not start at seq 1.
func Gaps(segs []SegmentRange) [][2]uint64 {
	var gaps [][2]uint64
	next := uint64(1)
	for _, s := range segs {
		if s.First > next {
			gaps = append(gaps, [2]uint64{next, s.First - 1})
		}
		if s.Last+1 > next {
			next = s.Last + 1
		}
	}
	return gaps
}
