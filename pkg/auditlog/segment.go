package auditlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Segment file layout (docs/FORMAT.md, "Segment files").
const (
	segmentMagic   = "VIGILLOG"
	formatVersion  = 1
	segmentPrefix  = "segment-"
	segmentSuffix  = ".vlog"
	preambleLength = len(segmentMagic) + 2
)

// Header tags.
const (
	hdrFirstSeq  = 1
	hdrPrevHash  = 2
	hdrKeyID     = 3
	hdrAlgorithm = 4
	hdrHost      = 5
	hdrOrigin    = 6
	hdrCreated   = 7
)

// SegmentHeader opens every segment file: where in the chain it starts and
// which key signs it.
type SegmentHeader struct {
	Version   uint16   // format version of the segment (1)
	FirstSeq  uint64   // seq of the first entry in the segment
	PrevHash  [32]byte // chain hash of the entry before FirstSeq (zero for seq 1)
	KeyID     string   // hex SHA-256 of the signing key's SubjectPublicKeyInfo
	Algorithm string   // signature algorithm, e.g. "ecdsa-p256-sha256"
	Host      string
	Origin    string // checkpoint origin line
	Created   time.Time
}

// segmentName returns the file name of the segment starting at firstSeq.
// Zero-padding makes lexical order equal chain order.
func segmentName(firstSeq uint64) string {
	return fmt.Sprintf("%s%020d%s", segmentPrefix, firstSeq, segmentSuffix)
}

// encodeHeader returns the preamble and header frame of a segment.
func encodeHeader(h SegmentHeader) []byte {
	var w encoder
	w.b = append(w.b, kindHeader)
	w.u64(hdrFirstSeq, h.FirstSeq)
	w.raw(hdrPrevHash, h.PrevHash[:])
	w.str(hdrKeyID, h.KeyID)
	w.str(hdrAlgorithm, h.Algorithm)
	w.str(hdrHost, h.Host)
	w.str(hdrOrigin, h.Origin)
	w.u64(hdrCreated, uint64(h.Created.UnixNano()))
	b := append([]byte(segmentMagic), 0, 0)
	binary.BigEndian.PutUint16(b[len(segmentMagic):], formatVersion)
	return appendFrame(b, w.b)
}

// readHeader reads a segment's preamble and header frame from r and returns
// the header and the frame reader positioned after it.
func readHeader(r io.Reader) (SegmentHeader, *frameReader, error) {
	var h SegmentHeader
	pre := make([]byte, preambleLength)
	if n, err := io.ReadFull(r, pre); err != nil {
		return h, nil, fmt.Errorf("%w: segment preamble cut short at %d bytes", errTorn, n)
	}
	var err error
	if h.Version, err = parsePreamble(pre); err != nil {
		return h, nil, err
	}
	fr := newFrameReader(r, int64(preambleLength))
	body, _, err := fr.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("%w: segment has no header frame", errTorn)
		}
		return h, nil, err
	}
	if body[0] != kindHeader {
		return h, nil, &MalformedError{What: "segment header", Offset: preambleLength, Reason: "first frame is not a header"}
	}
	if err := parseHeaderFields(&h, body[1:]); err != nil {
		return h, nil, err
	}
	return h, fr, nil
}

// parsePreamble checks a segment's magic and format version.
func parsePreamble(pre []byte) (uint16, error) {
	if string(pre[:len(segmentMagic)]) != segmentMagic {
		return 0, &MalformedError{What: "segment header", Reason: "not a vigil segment (bad magic)"}
	}
	v := binary.BigEndian.Uint16(pre[len(segmentMagic):])
	if v != formatVersion {
		return v, &MalformedError{What: "segment header", Offset: len(segmentMagic),
			Reason: fmt.Sprintf("format version %d is not supported by this vigil (reads %d): upgrade vigil", v, formatVersion)}
	}
	return v, nil
}

func parseHeaderFields(h *SegmentHeader, b []byte) error {
	bad := func(reason string) error {
		return &MalformedError{What: "segment header", Offset: preambleLength, Reason: reason}
	}
	last := -1
	for len(b) > 0 {
		if len(b) < 6 {
			return bad("truncated field")
		}
		tag := binary.BigEndian.Uint16(b)
		n := binary.BigEndian.Uint32(b[2:])
		if int(tag) <= last {
			return bad("fields out of order")
		}
		last = int(tag)
		if uint64(n) > uint64(len(b)-6) {
			return bad("field length exceeds header")
		}
		v := b[6 : 6+n]
		b = b[6+n:]
		switch tag {
		case hdrFirstSeq, hdrCreated:
			if len(v) != 8 {
				return bad("integer field is not 8 bytes")
			}
			x := binary.BigEndian.Uint64(v)
			if tag == hdrFirstSeq {
				h.FirstSeq = x
			} else {
				h.Created = time.Unix(0, int64(x)).UTC()
			}
		case hdrPrevHash:
			if len(v) != 32 {
				return bad("previous hash is not 32 bytes")
			}
			copy(h.PrevHash[:], v)
		case hdrKeyID, hdrAlgorithm, hdrHost, hdrOrigin:
			if !utf8.Valid(v) {
				return bad("invalid UTF-8")
			}
			s := string(v)
			switch tag {
			case hdrKeyID:
				h.KeyID = s
			case hdrAlgorithm:
				h.Algorithm = s
			case hdrHost:
				h.Host = s
			case hdrOrigin:
				h.Origin = s
			}
		}
	}
	if h.FirstSeq == 0 {
		return bad("missing first seq")
	}
	if h.FirstSeq == 1 && h.PrevHash != ([32]byte{}) {
		return bad("first segment must start from the zero hash")
	}
	return nil
}

// segmentFile is one segment found in a directory.
type segmentFile struct {
	Path     string
	FirstSeq uint64 // from the file name; checked against the header
}

// listSegments returns the segments in dir in chain order.
func listSegments(dir string) ([]segmentFile, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("auditlog: read log directory: %w", err)
	}
	var segs []segmentFile
	for _, de := range des {
		name := de.Name()
		if !strings.HasPrefix(name, segmentPrefix) || !strings.HasSuffix(name, segmentSuffix) || de.IsDir() {
			continue
		}
		seq, ok := ParseSegmentName(name)
		if !ok {
			return nil, fmt.Errorf("auditlog: %s: unexpected segment file name (want %s)", filepath.Join(dir, name), segmentName(1))
		}
		segs = append(segs, segmentFile{Path: filepath.Join(dir, name), FirstSeq: seq})
	}
	slices.SortFunc(segs, func(a, b segmentFile) int { return cmpU64(a.FirstSeq, b.FirstSeq) })
	return segs, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
