package auditlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Record kinds: the first byte of every frame body (docs/FORMAT.md, "Frames").
const (
	kindHeader     = 0
	kindEntry      = 1
	kindCheckpoint = 2
)

// frameOverhead is the length and CRC that precede every frame body.
const frameOverhead = 8

// maxFrameLen bounds a frame body. Entries are far smaller; a larger length
// is corruption, not data.
const maxFrameLen = 4 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends length | CRC-32C | body.
func appendFrame(b, body []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(body, castagnoli))
	return append(b, body...)
}

// errTorn marks a frame that ends early or fails its CRC: the signature of a
// write that a crash interrupted (or of corruption, if more frames follow).
var errTorn = errors.New("incomplete or corrupt frame")

// errCRC marks a complete frame whose body fails its CRC; next returns the
// body along with it so that a verifier can tell which entry was changed.
var errCRC = fmt.Errorf("%w: CRC mismatch", errTorn)

// frameReader reads frames sequentially and tracks the offset of each.
type frameReader struct {
	r   *bufio.Reader
	off int64 // offset of the next frame
	buf []byte
}

func newFrameReader(r io.Reader, off int64) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 1<<20), off: off}
}

// next returns the next frame body (valid until the following call) and its
// offset. It returns io.EOF at a clean end, and an error wrapping errTorn for
// a short or corrupt frame; for a complete frame that fails its CRC, the
// error is errCRC and the body is returned too.
func (fr *frameReader) next() ([]byte, int64, error) {
	start := fr.off
	var hdr [frameOverhead]byte
	n, err := io.ReadFull(fr.r, hdr[:])
	if err == io.EOF {
		return nil, start, io.EOF
	}
	if err != nil {
		return nil, start, fmt.Errorf("%w: %d-byte frame header cut short", errTorn, n)
	}
	size := binary.BigEndian.Uint32(hdr[:4])
	sum := binary.BigEndian.Uint32(hdr[4:])
	if size == 0 || size > maxFrameLen {
		return nil, start, fmt.Errorf("%w: frame length %d out of range", errTorn, size)
	}
	if cap(fr.buf) < int(size) {
		fr.buf = make([]byte, size)
	}
	body := fr.buf[:size]
	if n, err := io.ReadFull(fr.r, body); err != nil {
		return nil, start, fmt.Errorf("%w: frame of %d bytes cut short at %d", errTorn, size, n)
	}
	if crc32.Checksum(body, castagnoli) != sum {
		return body, start, errCRC
	}
	fr.off += frameOverhead + int64(size)
	return body, start, nil
}

// entryRecord is the body of an entry frame: the canonical entry, its chain
// hash and the signature over that hash.
type entryRecord struct {
	canonical []byte
	hash      [32]byte
	sig       []byte
}

// appendEntryBody encodes kind | canon_len u32 | canon | hash[32] | sig_len u16 | sig.
func appendEntryBody(b []byte, canonical []byte, hash [32]byte, sig []byte) []byte {
	b = append(b, kindEntry)
	b = binary.BigEndian.AppendUint32(b, uint32(len(canonical)))
	b = append(b, canonical...)
	b = append(b, hash[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(sig)))
	return append(b, sig...)
}

func parseEntryBody(body []byte) (entryRecord, error) {
	var r entryRecord
	bad := func(reason string) (entryRecord, error) {
		return entryRecord{}, &MalformedError{What: "entry record", Reason: reason}
	}
	if len(body) < 1+4 || body[0] != kindEntry {
		return bad("too short")
	}
	n := binary.BigEndian.Uint32(body[1:])
	rest := body[5:]
	if uint64(n) > uint64(len(rest)) {
		return bad("entry length exceeds record")
	}
	r.canonical, rest = rest[:n], rest[n:]
	if len(rest) < 32+2 {
		return bad("missing hash or signature")
	}
	copy(r.hash[:], rest[:32])
	sl := binary.BigEndian.Uint16(rest[32:])
	rest = rest[34:]
	if int(sl) != len(rest) || sl == 0 {
		return bad("signature length does not match record")
	}
	r.sig = rest
	return r, nil
}

// decodeEntryBody parses an entry frame body and decodes its entry.
func decodeEntryBody(body []byte) (entryRecord, Entry, error) {
	rec, err := parseEntryBody(body)
	if err != nil {
		return rec, Entry{}, err
	}
	e, err := DecodeEntry(rec.canonical)
	return rec, e, err
}

// checkpointRecord is the body of a checkpoint frame: the signed note and,
// unsigned, the compact Merkle range at that size, which lets recovery resume
// the tree without rereading every entry (it is checked against the signed
// root before use).
type checkpointRecord struct {
	note []byte
	rng  [][]byte
}

func appendCheckpointBody(b []byte, note []byte, rng [][]byte) []byte {
	b = append(b, kindCheckpoint)
	b = binary.BigEndian.AppendUint32(b, uint32(len(note)))
	b = append(b, note...)
	b = append(b, byte(len(rng)))
	for _, h := range rng {
		b = append(b, h...)
	}
	return b
}

func parseCheckpointBody(body []byte) (checkpointRecord, error) {
	var r checkpointRecord
	bad := func(reason string) (checkpointRecord, error) {
		return checkpointRecord{}, &MalformedError{What: "checkpoint record", Reason: reason}
	}
	if len(body) < 5 || body[0] != kindCheckpoint {
		return bad("too short")
	}
	n := binary.BigEndian.Uint32(body[1:])
	rest := body[5:]
	if uint64(n) >= uint64(len(rest)) {
		return bad("note length exceeds record")
	}
	r.note, rest = rest[:n], rest[n:]
	k := int(rest[0])
	rest = rest[1:]
	if len(rest) != 32*k || k > 64 {
		return bad("compact range does not match its count")
	}
	for i := 0; i < k; i++ {
		r.rng = append(r.rng, rest[32*i:32*i+32])
	}
	return r, nil
}
