package eventquery

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"golang.org/x/sys/unix"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Index file layout (docs/QUERY.md, "Index"): all integers big-endian.
//
//	"VIGILIDX" | u16 version | u32 meta_len | meta | u32 CRC-32C(meta) | sections…
//	meta = u16 name_len | name | u64 segment_size | [32] header_hash | u32 count |
//	       u64 min_seq | u64 max_seq | i64 min_time | i64 max_time |
//	       u16 n | n × (u16 id | u64 offset | u64 length | u32 CRC-32C)
//
// Sections: 1 frame offsets (count × u64), 2 times (count × i64 Unix ns),
// 3 seqs (count × u64), 16+f the dictionary column of field f:
// u32 ndict | ndict × (u16 len | bytes) | u8 width (1, 2 or 4) | count × id.
// Each section has its own CRC so a query reads only the sections it needs.
const (
	idxMagic    = "VIGILIDX"
	idxVersion  = 1
	idxSuffix   = ".vidx"
	secOffsets  = 1
	secTimes    = 2
	secSeqs     = 3
	secField0   = 16
	maxMeta     = 64 << 10
	maxIdxCount = 1 << 26 // far more entries than a 4 GiB segment could hold
)

// segIndex is one segment's index: the metadata, and sections read on
// demand from r.
type segIndex struct {
	name       string
	size       int64
	hdrHash    [32]byte
	count      int
	minSeq     uint64
	maxSeq     uint64
	minT, maxT int64
	secs       map[uint16]secRef
	r          io.ReaderAt
	fileSize   int64
}

type secRef struct {
	off, n int64
	crc    uint32
}

// column is a decoded dictionary column.
type column struct {
	dict []string
	ids  []uint32
}

// indexBuilder accumulates a segment's index while it is scanned.
type indexBuilder struct {
	offsets []uint64
	times   []int64
	seqs    []uint64
	dicts   [numFields]map[string]uint32
	vals    [numFields][]string
	ids     [numFields][]uint32
}

func newIndexBuilder() *indexBuilder {
	b := &indexBuilder{}
	for f := range b.dicts {
		b.dicts[f] = map[string]uint32{}
	}
	return b
}

func (b *indexBuilder) add(e *auditlog.Entry, off int64) {
	b.offsets = append(b.offsets, uint64(off))
	b.times = append(b.times, e.Time.UnixNano())
	b.seqs = append(b.seqs, e.Seq)
	for f := field(0); f < numFields; f++ {
		v := fieldValue(e, f)
		if len(v) > math.MaxUint16 {
			v = v[:math.MaxUint16] // never matched exactly; the re-match decides
		}
		id, ok := b.dicts[f][v]
		if !ok {
			id = uint32(len(b.vals[f]))
			b.dicts[f][v] = id
			b.vals[f] = append(b.vals[f], v)
		}
		b.ids[f] = append(b.ids[f], id)
	}
}

// encode returns the index file for a segment.
func (b *indexBuilder) encode(name string, size int64, hdrHash [32]byte) []byte {
	n := len(b.offsets)
	var secs [][]byte
	var ids []uint16
	u64s := func(xs []uint64) []byte {
		out := make([]byte, 0, 8*len(xs))
		for _, x := range xs {
			out = binary.BigEndian.AppendUint64(out, x)
		}
		return out
	}
	times := make([]uint64, n)
	for i, t := range b.times {
		times[i] = uint64(t)
	}
	secs = append(secs, u64s(b.offsets), u64s(times), u64s(b.seqs))
	ids = append(ids, secOffsets, secTimes, secSeqs)
	for f := field(0); f < numFields; f++ {
		var s []byte
		s = binary.BigEndian.AppendUint32(s, uint32(len(b.vals[f])))
		for _, v := range b.vals[f] {
			s = binary.BigEndian.AppendUint16(s, uint16(len(v)))
			s = append(s, v...)
		}
		w := idWidth(len(b.vals[f]))
		s = append(s, byte(w))
		for _, id := range b.ids[f] {
			switch w {
			case 1:
				s = append(s, byte(id))
			case 2:
				s = binary.BigEndian.AppendUint16(s, uint16(id))
			default:
				s = binary.BigEndian.AppendUint32(s, id)
			}
		}
		secs = append(secs, s)
		ids = append(ids, secField0+uint16(f))
	}
	var minSeq, maxSeq uint64
	var minT, maxT int64
	for i := range n {
		if i == 0 || b.seqs[i] < minSeq {
			minSeq = b.seqs[i]
		}
		if i == 0 || b.seqs[i] > maxSeq {
			maxSeq = b.seqs[i]
		}
		if i == 0 || b.times[i] < minT {
			minT = b.times[i]
		}
		if i == 0 || b.times[i] > maxT {
			maxT = b.times[i]
		}
	}
	var meta []byte
	meta = binary.BigEndian.AppendUint16(meta, uint16(len(name)))
	meta = append(meta, name...)
	meta = binary.BigEndian.AppendUint64(meta, uint64(size))
	meta = append(meta, hdrHash[:]...)
	meta = binary.BigEndian.AppendUint32(meta, uint32(n))
	meta = binary.BigEndian.AppendUint64(meta, minSeq)
	meta = binary.BigEndian.AppendUint64(meta, maxSeq)
	meta = binary.BigEndian.AppendUint64(meta, uint64(minT))
	meta = binary.BigEndian.AppendUint64(meta, uint64(maxT))
	meta = binary.BigEndian.AppendUint16(meta, uint16(len(secs)))
	metaLen := len(meta) + len(secs)*(2+8+8+4)
	off := int64(len(idxMagic) + 2 + 4 + metaLen + 4)
	for i, s := range secs {
		meta = binary.BigEndian.AppendUint16(meta, ids[i])
		meta = binary.BigEndian.AppendUint64(meta, uint64(off))
		meta = binary.BigEndian.AppendUint64(meta, uint64(len(s)))
		meta = binary.BigEndian.AppendUint32(meta, crc32.Checksum(s, castagnoli))
		off += int64(len(s))
	}
	out := append([]byte(idxMagic), 0, idxVersion)
	out = binary.BigEndian.AppendUint32(out, uint32(len(meta)))
	out = append(out, meta...)
	out = binary.BigEndian.AppendUint32(out, crc32.Checksum(meta, castagnoli))
	for _, s := range secs {
		out = append(out, s...)
	}
	return out
}

func idWidth(n int) int {
	switch {
	case n <= 1<<8:
		return 1
	case n <= 1<<16:
		return 2
	}
	return 4
}

// errBadIndex marks an index file that cannot be used; the caller rebuilds.
var errBadIndex = errors.New("eventquery: bad index file")

func badIndex(reason string) error { return fmt.Errorf("%w: %s", errBadIndex, reason) }

// openIndex reads an index's metadata from r (fileSize bytes). Sections are
// read later, on demand, each checked against its CRC.
func openIndex(r io.ReaderAt, fileSize int64) (*segIndex, error) {
	pre := make([]byte, len(idxMagic)+2+4)
	if _, err := r.ReadAt(pre, 0); err != nil {
		return nil, badIndex("too short")
	}
	if string(pre[:len(idxMagic)]) != idxMagic {
		return nil, badIndex("bad magic")
	}
	if v := binary.BigEndian.Uint16(pre[len(idxMagic):]); v != idxVersion {
		return nil, badIndex(fmt.Sprintf("version %d", v))
	}
	ml := binary.BigEndian.Uint32(pre[len(idxMagic)+2:])
	if ml > maxMeta || int64(len(pre))+int64(ml)+4 > fileSize {
		return nil, badIndex("metadata length out of range")
	}
	meta := make([]byte, ml+4)
	if _, err := r.ReadAt(meta, int64(len(pre))); err != nil {
		return nil, badIndex("metadata cut short")
	}
	if crc32.Checksum(meta[:ml], castagnoli) != binary.BigEndian.Uint32(meta[ml:]) {
		return nil, badIndex("metadata CRC mismatch")
	}
	d := decoder{b: meta[:ml]}
	x := &segIndex{r: r, fileSize: fileSize, secs: map[uint16]secRef{}}
	nl := int(d.u16())
	x.name = string(d.bytes(nl))
	x.size = int64(d.u64())
	copy(x.hdrHash[:], d.bytes(32))
	x.count = int(d.u32())
	x.minSeq, x.maxSeq = d.u64(), d.u64()
	x.minT, x.maxT = int64(d.u64()), int64(d.u64())
	ns := int(d.u16())
	for range ns {
		id := d.u16()
		ref := secRef{off: int64(d.u64()), n: int64(d.u64()), crc: d.u32()}
		if d.err == nil && (ref.off < 0 || ref.n < 0 || ref.off > fileSize || ref.n > fileSize-ref.off) {
			return nil, badIndex("section outside the file")
		}
		x.secs[id] = ref
	}
	if d.err != nil || len(d.b) != 0 {
		return nil, badIndex("metadata malformed")
	}
	if x.count > maxIdxCount || x.size < 0 {
		return nil, badIndex("entry count out of range")
	}
	return x, nil
}

// section reads and checks section id.
func (x *segIndex) section(id uint16) ([]byte, error) {
	ref, ok := x.secs[id]
	if !ok {
		return nil, badIndex(fmt.Sprintf("section %d missing", id))
	}
	b := make([]byte, ref.n)
	if _, err := x.r.ReadAt(b, ref.off); err != nil && !(errors.Is(err, io.EOF) && ref.off+ref.n == x.fileSize) {
		return nil, badIndex(fmt.Sprintf("section %d cut short", id))
	}
	if crc32.Checksum(b, castagnoli) != ref.crc {
		return nil, badIndex(fmt.Sprintf("section %d CRC mismatch", id))
	}
	return b, nil
}

// u64s reads a fixed section of count u64 values.
func (x *segIndex) u64s(id uint16) ([]uint64, error) {
	b, err := x.section(id)
	if err != nil {
		return nil, err
	}
	if len(b) != 8*x.count {
		return nil, badIndex(fmt.Sprintf("section %d has the wrong length", id))
	}
	out := make([]uint64, x.count)
	for i := range out {
		out[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	return out, nil
}

// column reads the dictionary column of f.
func (x *segIndex) column(f field) (*column, error) {
	b, err := x.section(secField0 + uint16(f))
	if err != nil {
		return nil, err
	}
	d := decoder{b: b}
	nd := int(d.u32())
	if nd > len(b) {
		return nil, badIndex("dictionary larger than its section")
	}
	// One string for the whole section; dictionary values are substrings
	// of it, so a dictionary of thousands of values costs one allocation.
	all := string(b)
	c := &column{dict: make([]string, 0, nd)}
	for range nd {
		n := int(d.u16())
		at := len(b) - len(d.b)
		if d.bytes(n) == nil && n > 0 {
			break
		}
		c.dict = append(c.dict, all[at:at+n])
	}
	w := int(d.u8())
	if d.err != nil || (w != 1 && w != 2 && w != 4) || len(d.b) != w*x.count {
		return nil, badIndex(fmt.Sprintf("column %s malformed", fieldNames[f]))
	}
	c.ids = make([]uint32, x.count)
	for i := range c.ids {
		var id uint32
		switch w {
		case 1:
			id = uint32(d.b[i])
		case 2:
			id = uint32(binary.BigEndian.Uint16(d.b[2*i:]))
		default:
			id = binary.BigEndian.Uint32(d.b[4*i:])
		}
		if int(id) >= nd {
			return nil, badIndex(fmt.Sprintf("column %s refers past its dictionary", fieldNames[f]))
		}
		c.ids[i] = id
	}
	return c, nil
}

// decoder reads big-endian values, remembering the first overrun.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		d.err = io.ErrUnexpectedEOF
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if b := d.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if b := d.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.bytes(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if b := d.bytes(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// indexStore is where index files live: read from any of dirs, written to
// write ("" when nowhere is writable: queries then scan).
type indexStore struct {
	dirs  []string
	write string
	owned bool // write holds the indexes of this log only: orphans may be removed
}

// newIndexStore picks the index location for logDir: logDir/index when the
// log directory is writable (the agent's own data directory, as root), or
// else a per-directory folder under the user's cache directory, so a
// read-only archive is never modified. An index/ folder that came with a
// read-only archive is not read: whoever made the archive could have left
// one that omits entries, and an index can only ever hide entries, never
// add any (every hit is re-read from the log). explicit overrides both.
func newIndexStore(logDir, explicit string) indexStore {
	if explicit != "" {
		return indexStore{dirs: []string{explicit}, write: explicit}
	}
	local := filepath.Join(logDir, "index")
	s := indexStore{owned: true}
	if unix.Access(logDir, unix.W_OK) == nil {
		s.dirs, s.write = []string{local}, local
		return s
	}
	if cache, err := os.UserCacheDir(); err == nil {
		abs, err := filepath.Abs(logDir)
		if err == nil {
			sum := sha256.Sum256([]byte(abs))
			c := filepath.Join(cache, "vigil", "index", hex.EncodeToString(sum[:8]))
			s.dirs = append(s.dirs, c)
			s.write = c
		}
	}
	return s
}

// load opens the index of seg if one exists and describes exactly this
// segment file (name, size and header hash); otherwise it returns nil and
// the segment is scanned (and the index rebuilt).
func (s indexStore) load(seg segment, size int64, hdrHash [32]byte) (*segIndex, *os.File) {
	for _, d := range s.dirs {
		f, err := os.Open(filepath.Join(d, seg.Name+idxSuffix))
		if err != nil {
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			continue
		}
		x, err := openIndex(f, fi.Size())
		if err != nil || x.name != seg.Name || x.size != size || x.hdrHash != hdrHash {
			f.Close()
			continue
		}
		return x, f
	}
	return nil, nil
}

// staleTemp is how old a temporary index file must be before prune takes
// it for the leftover of a query that died while writing it.
const staleTemp = time.Hour

// prune removes the index files of segments that are gone (deleted by
// retention) and temporary files a query that died left behind, so the
// index directory does not grow without bound beside a log whose size
// retention bounds. It only touches a directory that belongs to this log
// alone (not one named with IndexDir, which may be shared), and only
// files it would have written itself. Failures are harmless: prune runs
// again with the next query.
func (s indexStore) prune(segs []segment) {
	if s.write == "" || !s.owned || len(segs) == 0 {
		return
	}
	ents, err := os.ReadDir(s.write)
	if err != nil {
		return
	}
	live := make(map[string]bool, len(segs))
	for _, seg := range segs {
		live[seg.Name+idxSuffix] = true
	}
	for _, e := range ents {
		name := e.Name()
		switch {
		case !e.Type().IsRegular():
		case strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-"):
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
				os.Remove(filepath.Join(s.write, name))
			}
		case strings.HasSuffix(name, idxSuffix) && !live[name]:
			os.Remove(filepath.Join(s.write, name))
		}
	}
}

// save writes an index file atomically (temporary file and rename), so a
// concurrent query never sees half of one.
func (s indexStore) save(name string, data []byte) error {
	if s.write == "" {
		return nil
	}
	if err := os.MkdirAll(s.write, 0o700); err != nil {
		return fmt.Errorf("eventquery: index directory: %w", err)
	}
	f, err := os.CreateTemp(s.write, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("eventquery: write index: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("eventquery: write index: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("eventquery: write index: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(s.write, name+idxSuffix)); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("eventquery: write index: %w", err)
	}
	return nil
}
