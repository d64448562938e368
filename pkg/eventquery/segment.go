package eventquery

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// Segment layout, as specified in docs/FORMAT.md sections 4 to 7. This
// reader needs random access to single frames (the index points at them),
// which pkg/auditlog's sequential Scan does not offer.
const (
	segMagic    = "VIGILLOG"
	segPreamble = len(segMagic) + 2
	frameHdr    = 8
	maxFrame    = 4 << 20
	kindHeader  = 0
	kindEntry   = 1
	kindCheck   = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks the end of what is readable: a frame cut short or failing
// its CRC. At the end of the live segment it is a writer mid-append.
var errTorn = errors.New("incomplete or corrupt frame")

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
type segment struct {
	path     string
	name     string
	firstSeq uint64
}

// listSegments returns dir's segments in chain order.
func listSegments(dir string) ([]segment, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("eventquery: read log directory: %w", err)
	}
	var segs []segment
	for _, de := range des {
		name := de.Name()
		num, ok := strings.CutPrefix(name, "segment-")
		if !ok || de.IsDir() {
			continue
		}
		if num, ok = strings.CutSuffix(num, ".vlog"); !ok {
			continue
		}
		seq, err := strconv.ParseUint(num, 10, 64)
		if err != nil || len(num) != 20 || seq == 0 {
			return nil, fmt.Errorf("eventquery: %s: unexpected segment file name", filepath.Join(dir, name))
		}
		segs = append(segs, segment{path: filepath.Join(dir, name), name: name, firstSeq: seq})
	}
	slices.SortFunc(segs, func(a, b segment) int {
		switch {
		case a.firstSeq < b.firstSeq:
			return -1
		case a.firstSeq > b.firstSeq:
			return 1
		}
		return 0
	})
	return segs, nil
}

// segHeader is what the reader needs from a segment header.
type segHeader struct {
	end      int64    // offset of the first frame after the header
	hash     [32]byte // SHA-256 of the preamble and header frame: identifies the segment for the index
	prevHash [32]byte // chain hash before the first entry
}

// readSegHeader reads the preamble and header frame of f.
func readSegHeader(f io.ReaderAt, name string) (segHeader, error) {
	var h segHeader
	pre := make([]byte, segPreamble+frameHdr)
	if n, err := f.ReadAt(pre, 0); n < len(pre) {
		return h, fmt.Errorf("%w: segment header cut short (%v)", errTorn, err)
	}
	if string(pre[:len(segMagic)]) != segMagic {
		return h, &CorruptError{Segment: name, Reason: "not a vigil segment (bad magic)"}
	}
	if v := binary.BigEndian.Uint16(pre[len(segMagic):]); v != 1 {
		return h, &CorruptError{Segment: name, Offset: int64(len(segMagic)), Reason: fmt.Sprintf("segment format version %d is not supported: upgrade vigil", v)}
	}
	size := binary.BigEndian.Uint32(pre[segPreamble:])
	if size == 0 || size > maxFrame {
		return h, &CorruptError{Segment: name, Offset: int64(segPreamble), Reason: "header frame length out of range"}
	}
	body := make([]byte, size)
	if n, err := f.ReadAt(body, int64(len(pre))); n < len(body) {
		return h, fmt.Errorf("%w: header frame cut short (%v)", errTorn, err)
	}
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(pre[segPreamble+4:]) || body[0] != kindHeader {
		return h, &CorruptError{Segment: name, Offset: int64(segPreamble), Reason: "header frame fails its CRC or is not a header"}
	}
	s := sha256.New()
	s.Write(pre)
	s.Write(body)
	copy(h.hash[:], s.Sum(nil))
	h.end = int64(len(pre)) + int64(size)
	// TLV fields; tag 2 is prev_hash.
	b := body[1:]
	for len(b) >= 6 {
		tag := binary.BigEndian.Uint16(b)
		n := binary.BigEndian.Uint32(b[2:])
		if uint64(n) > uint64(len(b)-6) {
			break
		}
		if tag == 2 && n == 32 {
			copy(h.prevHash[:], b[6:38])
		}
		b = b[6+n:]
	}
	return h, nil
}

// record is one decoded entry frame.
type record struct {
	entry auditlog.Entry
	off   int64
	canon []byte // valid until the next read
	hash  [32]byte
	sig   []byte // valid until the next read
}

// parseEntryFrame decodes an entry record body (docs/FORMAT.md 7.2).
func parseEntryFrame(body []byte, rec *record) error {
	if len(body) < 5 || body[0] != kindEntry {
		return errors.New("entry record too short")
	}
	n := binary.BigEndian.Uint32(body[1:])
	rest := body[5:]
	if uint64(n) > uint64(len(rest)) || len(rest)-int(n) < 34 {
		return errors.New("entry record lengths do not add up")
	}
	rec.canon, rest = rest[:n], rest[n:]
	copy(rec.hash[:], rest[:32])
	sl := binary.BigEndian.Uint16(rest[32:])
	rec.sig = rest[34:]
	if int(sl) != len(rec.sig) || sl == 0 {
		return errors.New("signature length does not match record")
	}
	e, err := auditlog.DecodeEntry(rec.canon)
	if err != nil {
		return err
	}
	rec.entry = e
	return nil
}

// frameScanner reads frames sequentially from an offset.
type frameScanner struct {
	r   *bufio.Reader
	off int64
	buf []byte
}

func newFrameScanner(f *os.File, off int64) (*frameScanner, error) {
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return &frameScanner{r: bufio.NewReaderSize(f, 1<<20), off: off}, nil
}

// next returns the next frame body and its offset, io.EOF at a clean end,
// or an error wrapping errTorn.
func (fs *frameScanner) next() ([]byte, int64, error) {
	start := fs.off
	var hdr [frameHdr]byte
	n, err := io.ReadFull(fs.r, hdr[:])
	if err == io.EOF {
		return nil, start, io.EOF
	}
	if err != nil {
		return nil, start, fmt.Errorf("%w: frame header cut short at %d bytes", errTorn, n)
	}
	size := binary.BigEndian.Uint32(hdr[:4])
	if size == 0 || size > maxFrame {
		return nil, start, fmt.Errorf("%w: frame length %d out of range", errTorn, size)
	}
	if cap(fs.buf) < int(size) {
		fs.buf = make([]byte, size)
	}
	body := fs.buf[:size]
	if n, err := io.ReadFull(fs.r, body); err != nil {
		return nil, start, fmt.Errorf("%w: frame of %d bytes cut short at %d", errTorn, size, n)
	}
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, start, fmt.Errorf("%w: CRC mismatch", errTorn)
	}
	fs.off += frameHdr + int64(size)
	return body, start, nil
}

// readFrameAt reads the entry frame at off into rec; buf is reused.
func readFrameAt(f io.ReaderAt, name string, off int64, buf *[]byte, rec *record) error {
	var hdr [frameHdr]byte
	if _, err := f.ReadAt(hdr[:], off); err != nil {
		return &CorruptError{Segment: name, Offset: off, Reason: "indexed frame is past the end of the segment"}
	}
	size := binary.BigEndian.Uint32(hdr[:4])
	if size == 0 || size > maxFrame {
		return &CorruptError{Segment: name, Offset: off, Reason: fmt.Sprintf("frame length %d out of range", size)}
	}
	if cap(*buf) < int(size) {
		*buf = make([]byte, size)
	}
	body := (*buf)[:size]
	if _, err := f.ReadAt(body, off+frameHdr); err != nil {
		return &CorruptError{Segment: name, Offset: off, Reason: "frame cut short"}
	}
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
		return &CorruptError{Segment: name, Offset: off, Reason: "frame fails its CRC"}
	}
	if err := parseEntryFrame(body, rec); err != nil {
		return &CorruptError{Segment: name, Offset: off, Reason: err.Error()}
	}
	rec.off = off
	return nil
}
