package ship

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// localSegment is one segment file of the local log.
type localSegment struct {
	Name  string // file name
	Path  string
	First uint64
	Size  int64
}

// listLocal returns the segments of the log in dir in seq order.
func listLocal(dir string) ([]localSegment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("ship: read log directory: %w", err)
	}
	var segs []localSegment
	for _, de := range des {
		n := de.Name()
		if de.IsDir() || !strings.HasPrefix(n, "segment-") || !strings.HasSuffix(n, ".vlog") {
			continue
		}
		num := strings.TrimSuffix(strings.TrimPrefix(n, "segment-"), ".vlog")
		first, err := strconv.ParseUint(num, 10, 64)
		if err != nil || len(num) != 20 || first == 0 {
			continue // auditlog refuses such a directory; not ours to judge
		}
		info, err := de.Info()
		if err != nil {
			return nil, fmt.Errorf("ship: %w", err)
		}
		segs = append(segs, localSegment{Name: n, Path: filepath.Join(dir, n), First: first, Size: info.Size()})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].First < segs[j].First })
	return segs, nil
}

// sealedSegment is a local segment that no writer appends to any more,
// with what an object name needs.
type sealedSegment struct {
	localSegment
	Last uint64 // last seq in it (First-1 when it holds no entry)
}

// sealed returns the segments before the last one: the writer only ever
// appends to the last segment, so every other one is final.
func sealed(segs []localSegment) []sealedSegment {
	if len(segs) < 2 {
		return nil
	}
	out := make([]sealedSegment, 0, len(segs)-1)
	for i, s := range segs[:len(segs)-1] {
		out = append(out, sealedSegment{localSegment: s, Last: segs[i+1].First - 1})
	}
	return out
}

// firstEntryTime returns the time of the entry with seq first in the log.
func firstEntryTime(ctx context.Context, dir string, seg sealedSegment) (time.Time, error) {
	var t time.Time
	err := auditlog.Scan(ctx, dir, seg.First, func(r auditlog.Record) error {
		if r.Segment == seg.Name && r.Entry.Seq == seg.First {
			t = r.Entry.Time
		}
		return auditlog.ErrStop
	})
	if err != nil {
		return t, fmt.Errorf("ship: read %s: %w", seg.Name, err)
	}
	if t.IsZero() {
		st, err := os.Stat(seg.Path)
		if err != nil {
			return t, fmt.Errorf("ship: %w", err)
		}
		t = st.ModTime()
	}
	return t.UTC(), nil
}

// Checkpoint is a signed checkpoint note and the tree size it commits to.
type Checkpoint struct {
	Size uint64
	Note []byte // the signed note, exactly as in the log's checkpoint file
}

// readCheckpoint returns the log's newest signed checkpoint, or ok=false
// when it has none yet. The signature is not checked here: the shipper
// forwards what the writer signed, and verifiers check it.
func readCheckpoint(dir string) (Checkpoint, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, auditlog.CheckpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("ship: read checkpoint: %w", err)
	}
	size, err := CheckpointSize(b)
	if err != nil {
		return Checkpoint{}, false, err
	}
	return Checkpoint{Size: size, Note: b}, true, nil
}

// CheckpointSize parses the tree size out of a signed checkpoint note
// without checking its signature.
func CheckpointSize(note []byte) (uint64, error) {
	text, _, ok := strings.Cut(string(note), "\n\n")
	if !ok {
		return 0, errors.New("ship: checkpoint note has no signature block")
	}
	var c log.Checkpoint
	if _, err := c.Unmarshal([]byte(text + "\n")); err != nil {
		return 0, fmt.Errorf("ship: checkpoint note: %w", err)
	}
	return c.Size, nil
}
