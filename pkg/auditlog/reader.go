package auditlog

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// This file is the read side of the segment format for other packages
// that read a log directory on their own terms (pkg/eventquery keeps an
// index of frame offsets and follows a live log), so that the format is
// decoded in one place. Scan is the simpler choice when reading every
// entry in order is enough.

// ErrTorn marks a header or frame that is cut short or fails its CRC. At
// the end of the newest segment it is a write in progress; anywhere else
// it is damage.
var ErrTorn = errTorn

// Frame kinds: the first byte of every frame body (docs/FORMAT.md,
// "Frames"). A reader skips checkpoints and treats any other kind as
// damage.
const (
	KindHeader     = kindHeader
	KindEntry      = kindEntry
	KindCheckpoint = kindCheckpoint
)

// SegmentName returns the file name of the segment whose first entry is
// first: segment-<first, 20 digits>.vlog, so lexical order is chain order.
func SegmentName(first uint64) string { return segmentName(first) }

// ParseSegmentName returns the first seq a segment file name stands for,
// and false if name is not a well-formed segment name.
func ParseSegmentName(name string) (uint64, bool) {
	num, ok := strings.CutPrefix(name, segmentPrefix)
	if !ok {
		return 0, false
	}
	if num, ok = strings.CutSuffix(num, segmentSuffix); !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	if err != nil || len(num) != 20 || seq == 0 {
		return 0, false
	}
	return seq, true
}

// SegmentFile is one segment file of a log directory.
type SegmentFile struct {
	Path     string
	Name     string // base name of Path
	FirstSeq uint64 // from the file name; the header says it again
}

// Segments lists the segment files of dir in chain order. It reads only
// the directory, and fails on a file named like a segment whose name does
// not parse.
func Segments(dir string) ([]SegmentFile, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	out := make([]SegmentFile, len(segs))
	for i, s := range segs {
		out[i] = SegmentFile{Path: s.Path, Name: filepath.Base(s.Path), FirstSeq: s.FirstSeq}
	}
	return out, nil
}

// SegmentStart is what precedes the first frame of a segment.
type SegmentStart struct {
	Header SegmentHeader
	// End is the offset of the first frame after the header.
	End int64
	// Digest is the SHA-256 of the preamble and header frame. It tells
	// two segments of the same name apart (a log directory recreated),
	// so a cache built for one is not used for the other.
	Digest [32]byte
}

// ReadSegmentStart reads the preamble and header frame of a segment with
// two reads at offset 0. A start cut short wraps ErrTorn (a segment the
// writer is creating); anything else wrong, a header that fails its CRC
// included, is a *MalformedError.
func ReadSegmentStart(r io.ReaderAt) (SegmentStart, error) {
	var s SegmentStart
	pre := make([]byte, preambleLength+frameOverhead)
	if n, err := r.ReadAt(pre, 0); n < len(pre) {
		return s, fmt.Errorf("%w: segment header cut short at %d bytes (%v)", errTorn, n, err)
	}
	v, err := parsePreamble(pre[:preambleLength])
	if err != nil {
		return s, err
	}
	s.Header.Version = v
	bad := func(reason string) (SegmentStart, error) {
		return SegmentStart{}, &MalformedError{What: "segment header", Offset: preambleLength, Reason: reason}
	}
	size := binary.BigEndian.Uint32(pre[preambleLength:])
	if size == 0 || size > maxFrameLen {
		return bad("header frame length out of range")
	}
	body := make([]byte, size)
	if n, err := r.ReadAt(body, int64(len(pre))); n < len(body) {
		return s, fmt.Errorf("%w: header frame cut short at %d of %d bytes (%v)", errTorn, n, size, err)
	}
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(pre[preambleLength+4:]) {
		return bad("header frame fails its CRC")
	}
	if body[0] != kindHeader {
		return bad("first frame is not a header")
	}
	if err := parseHeaderFields(&s.Header, body[1:]); err != nil {
		return SegmentStart{}, err
	}
	h := sha256.New()
	h.Write(pre)
	h.Write(body)
	h.Sum(s.Digest[:0])
	s.End = int64(len(pre)) + int64(size)
	return s, nil
}

// FrameReader reads the frames of a segment in order.
type FrameReader struct {
	fr *frameReader
}

// NewFrameReader reads frames from r, whose first byte is at offset off
// of the segment (SegmentStart.End for the first frame). It buffers.
func NewFrameReader(r io.Reader, off int64) *FrameReader {
	return &FrameReader{fr: newFrameReader(r, off)}
}

// Next returns the next frame's body (valid until the next call) and its
// offset. It returns io.EOF at a clean end and an error wrapping ErrTorn
// for a frame cut short or failing its CRC; after an error the reader
// stays at that frame.
func (r *FrameReader) Next() ([]byte, int64, error) {
	body, off, err := r.fr.next()
	if err != nil {
		return nil, off, err
	}
	return body, off, nil
}

// Offset is where the next frame starts: after the last one Next
// returned without error.
func (r *FrameReader) Offset() int64 { return r.fr.off }

// DecodeEntryFrame decodes an entry frame body found at off into a
// Record (Segment left empty). Canonical and Signature point into body.
func DecodeEntryFrame(body []byte, off int64) (Record, error) {
	rec, e, err := decodeEntryBody(body)
	if err != nil {
		return Record{}, err
	}
	return Record{Entry: e, Canonical: rec.canonical, Hash: rec.hash, Signature: rec.sig, Offset: off}, nil
}

// ReadEntryAt reads and decodes the entry frame that starts at off, for
// a reader that keeps its own index of frame offsets. It takes nothing on
// trust: a frame past the end, cut short, failing its CRC or not an entry
// is an error. buf is scratch space reused across calls; the Record's
// Canonical and Signature point into it.
func ReadEntryAt(r io.ReaderAt, off int64, buf *[]byte) (Record, error) {
	var hdr [frameOverhead]byte
	if _, err := r.ReadAt(hdr[:], off); err != nil {
		return Record{}, errors.New("frame is past the end of the segment")
	}
	size := binary.BigEndian.Uint32(hdr[:4])
	if size == 0 || size > maxFrameLen {
		return Record{}, fmt.Errorf("frame length %d out of range", size)
	}
	if cap(*buf) < int(size) {
		*buf = make([]byte, size)
	}
	body := (*buf)[:size]
	if _, err := r.ReadAt(body, off+frameOverhead); err != nil {
		return Record{}, errors.New("frame cut short")
	}
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
		return Record{}, errors.New("frame fails its CRC")
	}
	return DecodeEntryFrame(body, off)
}
