package eventquery

import (
	"errors"
	"fmt"
	"io"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// The segment format is decoded by pkg/auditlog; this file only turns its
// errors into ones that name where the archive is damaged.

// CorruptError names where an archive is damaged.
type CorruptError struct {
	Segment string // segment file name
	Offset  int64  // byte offset of the bad frame
	Reason  string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("eventquery: %s: damaged at byte %d: %s (run vigil verify on the directory for details)", e.Segment, e.Offset, e.Reason)
}

// segment is one segment file of a log directory.
type segment = auditlog.SegmentFile

// listSegments returns dir's segments in chain order.
func listSegments(dir string) ([]segment, error) {
	segs, err := auditlog.Segments(dir)
	if err != nil {
		return nil, fmt.Errorf("eventquery: %w", err)
	}
	return segs, nil
}

// readSegHeader reads the preamble and header frame of seg. An error
// wrapping auditlog.ErrTorn means the header is not all there yet (the
// writer is creating the segment); any other is a *CorruptError.
func readSegHeader(f io.ReaderAt, seg segment) (auditlog.SegmentStart, error) {
	h, err := auditlog.ReadSegmentStart(f)
	if err != nil && !errors.Is(err, auditlog.ErrTorn) {
		var me *auditlog.MalformedError
		off := int64(0)
		if errors.As(err, &me) {
			off = int64(me.Offset)
		}
		return h, &CorruptError{Segment: seg.Name, Offset: off, Reason: err.Error()}
	}
	return h, err
}

// readFrameAt reads the entry frame at off, which an index gave, into
// rec; buf is reused. Every frame is checked again: the index is a cache.
func readFrameAt(f io.ReaderAt, seg segment, off int64, buf *[]byte, rec *auditlog.Record) error {
	r, err := auditlog.ReadEntryAt(f, off, buf)
	if err != nil {
		return &CorruptError{Segment: seg.Name, Offset: off, Reason: err.Error()}
	}
	*rec = r
	return nil
}
