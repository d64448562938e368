package auditlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrStop, returned by a Scan callback, ends the scan without error.
var ErrStop = errors.New("auditlog: stop scan")

// Record is one entry as stored in a segment.
type Record struct {
	Entry     Entry
	Canonical []byte // canonical encoding (valid only during the callback)
	Hash      [32]byte
	Signature []byte // valid only during the callback
	Segment   string // segment file name
	Offset    int64  // byte offset of the frame in Segment
}

// Scan calls fn for every entry with seq ≥ from, in seq order, reading dir
// without modifying it. It checks framing and encoding but not the chain or
// signatures (that is Verify's job). A torn frame at the end of the last
// segment ends the scan quietly, since a live writer may be mid-append;
// damage anywhere else is an error naming the segment.
func Scan(ctx context.Context, dir string, from uint64, fn func(Record) error) error {
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	for i, sf := range segs {
		// Skip segments that end before from.
		if i+1 < len(segs) && segs[i+1].FirstSeq <= from {
			continue
		}
		if err := scanSegment(ctx, sf, i == len(segs)-1, from, fn); err != nil {
			if errors.Is(err, ErrStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

func scanSegment(ctx context.Context, sf segmentFile, last bool, from uint64, fn func(Record) error) error {
	name := filepath.Base(sf.Path)
	f, err := os.Open(sf.Path)
	if err != nil {
		return fmt.Errorf("auditlog: %w", err)
	}
	defer f.Close()
	_, fr, err := readHeader(f)
	if err != nil {
		if last && errors.Is(err, errTorn) {
			return nil
		}
		return fmt.Errorf("auditlog: %s: %w", name, err)
	}
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		body, off, err := fr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if last {
				return nil
			}
			return fmt.Errorf("auditlog: %s: damaged frame at byte %d: %w", name, off, err)
		}
		if body[0] != kindEntry {
			continue
		}
		rec, e, err := decodeEntryBody(body)
		if err != nil {
			return fmt.Errorf("auditlog: %s byte %d: %w", name, off, err)
		}
		if e.Seq < from {
			continue
		}
		if err := fn(Record{Entry: e, Canonical: rec.canonical, Hash: rec.hash, Signature: rec.sig, Segment: name, Offset: off}); err != nil {
			return err
		}
	}
}
