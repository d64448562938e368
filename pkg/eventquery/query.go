package eventquery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// ErrNoLog means the directory holds no segment files.
var ErrNoLog = errors.New("eventquery: no audit log segments here")

// errNotSelective sends a segment whose index matches most entries to a scan.
var errNotSelective = errors.New("eventquery: index not selective here")

// errStop ends a query once its limit is reached.
var errStop = errors.New("eventquery: limit reached")

// Source is a log directory to query. It never modifies the log; it may
// write index files (see newIndexStore for where).
type Source struct {
	Dir      string             // log directory or a copy of one
	IndexDir string             // where index files live; "" picks a default (docs/QUERY.md)
	NoIndex  bool               // scan every segment; neither read nor write an index
	Verifier signature.Verifier // if set, each result's chain hash and signature are checked
	Logger   *slog.Logger       // default: discard
	Poll     time.Duration      // how often Follow looks for new entries; default 200ms
}

// Stats describes how a query ran.
type Stats struct {
	Segments int    // segments in the log
	Skipped  int    // segments ruled out by their index metadata
	Indexed  int    // segments answered from an index
	Scanned  int    // segments read in full
	Built    int    // indexes written
	Read     int    // entries decoded
	Matched  int    // entries emitted
	EndSeq   uint64 // last seq in the log when the live segment was read (0 if it was not)
}

// Emit receives one matching entry.
type Emit func(*auditlog.Entry) error

func (s *Source) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Query calls emit for every entry matching f, in seq order (or newest
// first if f.Reverse), at most f.Limit of them. Sealed segments are read
// through their index when one is valid, and indexed as they are scanned
// otherwise; the last (live) segment is always scanned.
func (s *Source) Query(ctx context.Context, f *Filter, emit Emit) (Stats, error) {
	var st Stats
	segs, err := listSegments(s.Dir)
	if err != nil {
		return st, err
	}
	st.Segments = len(segs)
	if len(segs) == 0 {
		return st, fmt.Errorf("%w: %s", ErrNoLog, s.Dir)
	}
	var store indexStore
	if !s.NoIndex {
		store = newIndexStore(s.Dir, s.IndexDir)
		store.prune(segs)
	}
	q := &queryRun{src: s, f: f, emit: emit, st: &st, store: store}
	order := make([]int, len(segs))
	for i := range order {
		order[i] = i
	}
	if f.Reverse {
		slices.Reverse(order)
	}
	for _, i := range order {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		seg := segs[i]
		last := i == len(segs)-1
		// Segment-level seq pruning from the file names.
		if !last && f.FromSeq > 0 && segs[i+1].FirstSeq <= f.FromSeq {
			continue
		}
		if f.ToSeq != 0 && seg.FirstSeq > f.ToSeq {
			continue
		}
		err := q.segment(ctx, seg, last)
		if errors.Is(err, errStop) {
			return st, nil
		}
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// queryRun is the state of one Query.
type queryRun struct {
	src   *Source
	f     *Filter
	emit  Emit
	st    *Stats
	store indexStore
	buf   []byte
}

// out emits e, or keeps it for a reverse query of this segment.
func (q *queryRun) out(e *auditlog.Entry, rev *[]auditlog.Entry) error {
	if q.f.Reverse {
		*rev = append(*rev, *e)
		if q.f.Limit > 0 && len(*rev) > 2*q.f.Limit+1024 {
			*rev = append((*rev)[:0], (*rev)[len(*rev)-q.f.Limit:]...)
		}
		return nil
	}
	q.st.Matched++
	if err := q.emit(e); err != nil {
		return err
	}
	if q.f.Limit > 0 && q.st.Matched >= q.f.Limit {
		return errStop
	}
	return nil
}

func (q *queryRun) flushReverse(rev []auditlog.Entry) error {
	for i := len(rev) - 1; i >= 0; i-- {
		q.st.Matched++
		if err := q.emit(&rev[i]); err != nil {
			return err
		}
		if q.f.Limit > 0 && q.st.Matched >= q.f.Limit {
			return errStop
		}
	}
	return nil
}

func (q *queryRun) segment(ctx context.Context, seg segment, last bool) error {
	f, err := os.Open(seg.Path)
	if err != nil {
		return fmt.Errorf("eventquery: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("eventquery: %w", err)
	}
	h, err := readSegHeader(f, seg)
	if err != nil {
		if last && errors.Is(err, auditlog.ErrTorn) {
			q.st.EndSeq = seg.FirstSeq - 1 // a segment just created
			return nil
		}
		var ce *CorruptError
		if !errors.As(err, &ce) {
			err = &CorruptError{Segment: seg.Name, Reason: err.Error()}
		}
		return err
	}
	haveIndex := false
	if !last && !q.src.NoIndex {
		if x, xf := q.store.load(seg, fi.Size(), h.Digest); x != nil {
			defer xf.Close()
			haveIndex = true
			if q.f.selective() {
				err := q.indexed(ctx, seg, f, h, x)
				switch {
				case errors.Is(err, errBadIndex):
					q.src.logger().Debug("index unusable, rescanning", "segment", seg.Name, "err", err)
					haveIndex = false
				case !errors.Is(err, errNotSelective):
					return err
				}
			}
		}
	}
	return q.scan(ctx, seg, f, h, fi.Size(), last, !last && !haveIndex && q.store.write != "")
}

// scan reads a whole segment, matching every entry; for a sealed segment it
// builds and stores the index on the way.
func (q *queryRun) scan(ctx context.Context, seg segment, f *os.File, h auditlog.SegmentStart, size int64, last, build bool) error {
	q.st.Scanned++
	var b *indexBuilder
	if build {
		b = newIndexBuilder()
	}
	if _, err := f.Seek(h.End, io.SeekStart); err != nil {
		return fmt.Errorf("eventquery: %w", err)
	}
	fs := auditlog.NewFrameReader(f, h.End)
	prev := h.Header.PrevHash
	var rev []auditlog.Entry
	stopped := false
	endSeq := seg.FirstSeq - 1
	var rec auditlog.Record
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		body, off, err := fs.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if last {
				break // a writer mid-append
			}
			return &CorruptError{Segment: seg.Name, Offset: off, Reason: err.Error()}
		}
		switch body[0] {
		case auditlog.KindEntry:
		case auditlog.KindCheckpoint:
			continue
		default:
			return &CorruptError{Segment: seg.Name, Offset: off, Reason: fmt.Sprintf("unknown record kind %d", body[0])}
		}
		rec, err = auditlog.DecodeEntryFrame(body, off)
		if err != nil {
			return &CorruptError{Segment: seg.Name, Offset: off, Reason: err.Error()}
		}
		q.st.Read++
		e := &rec.Entry
		endSeq = e.Seq
		if b != nil {
			b.add(e, off)
		}
		if !stopped && q.f.Match(e) {
			if err := q.verify(seg, &rec, prev); err != nil {
				return err
			}
			if err := q.out(e, &rev); err != nil {
				if !errors.Is(err, errStop) || b == nil {
					return err
				}
				stopped = true // finish the index before stopping
			}
		}
		prev = rec.Hash
	}
	if last {
		q.st.EndSeq = endSeq
	}
	if b != nil && len(b.offsets) > 0 {
		if err := q.store.save(seg.Name, b.encode(seg.Name, size, h.Digest)); err != nil {
			q.src.logger().Debug("index not saved", "segment", seg.Name, "err", err)
		} else {
			q.st.Built++
		}
	}
	if stopped {
		return errStop
	}
	return q.flushReverse(rev)
}

// indexed answers a segment from its index: candidates come from the time
// and field columns, and each is re-read from the segment and re-matched.
func (q *queryRun) indexed(ctx context.Context, seg segment, f *os.File, h auditlog.SegmentStart, x *segIndex) error {
	fl := q.f
	if !fl.timeOverlaps(x.minT, x.maxT) || x.maxSeq < fl.FromSeq || (fl.ToSeq != 0 && x.minSeq > fl.ToSeq) || x.count == 0 {
		q.st.Skipped++
		return nil
	}
	var cand []int32 // nil: every entry
	narrow := func(keep func(i int) bool) {
		if cand == nil {
			cand = make([]int32, 0, 64)
			for i := range x.count {
				if keep(i) {
					cand = append(cand, int32(i))
				}
			}
			return
		}
		cand = slices.DeleteFunc(cand, func(i int32) bool { return !keep(int(i)) })
	}
	if !fl.Since.IsZero() || !fl.Until.IsZero() {
		ts, err := x.u64s(secTimes)
		if err != nil {
			return err
		}
		narrow(func(i int) bool { return fl.timeOverlaps(int64(ts[i]), int64(ts[i])) })
	}
	if fl.FromSeq > x.minSeq || (fl.ToSeq != 0 && fl.ToSeq < x.maxSeq) {
		seqs, err := x.u64s(secSeqs)
		if err != nil {
			return err
		}
		narrow(func(i int) bool { return seqs[i] >= fl.FromSeq && (fl.ToSeq == 0 || seqs[i] <= fl.ToSeq) })
	}
	for _, c := range fl.conds {
		if cand != nil && len(cand) == 0 {
			break
		}
		col, err := x.column(c.f)
		if err != nil {
			return err
		}
		ok := make([]bool, len(col.dict))
		any := false
		for i, v := range col.dict {
			ok[i] = c.pred(v)
			any = any || ok[i]
		}
		if !any {
			cand = []int32{}
			break
		}
		narrow(func(i int) bool { return ok[col.ids[i]] })
	}
	if cand != nil && len(cand) == 0 {
		q.st.Skipped++
		return nil
	}
	if cand == nil || len(cand)*4 > x.count {
		// Most of the segment matches: reading it in order is cheaper.
		return errNotSelective
	}
	offs, err := x.u64s(secOffsets)
	if err != nil {
		return err
	}
	q.st.Indexed++
	// Collect before emitting: a bad offset found half-way must fall back
	// to a scan without having printed anything twice.
	var hits []auditlog.Entry
	var rec auditlog.Record
	for n, i := range cand {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := readFrameAt(f, seg, int64(offs[i]), &q.buf, &rec); err != nil {
			// The index is a cache: an offset that does not lead to an
			// entry means the index is wrong, not the log.
			return errors.Join(errBadIndex, err)
		}
		q.st.Read++
		if !q.f.Match(&rec.Entry) {
			continue
		}
		if q.src.Verifier != nil {
			prev := h.Header.PrevHash
			if i > 0 {
				var p auditlog.Record
				var pb []byte
				if err := readFrameAt(f, seg, int64(offs[i-1]), &pb, &p); err != nil {
					return errors.Join(errBadIndex, err)
				}
				prev = p.Hash
			}
			if err := q.verify(seg, &rec, prev); err != nil {
				return err
			}
		}
		hits = append(hits, rec.Entry)
		if !q.f.Reverse && q.f.Limit > 0 && q.st.Matched+len(hits) >= q.f.Limit {
			break
		}
	}
	if q.f.Reverse {
		return q.flushReverse(hits)
	}
	for i := range hits {
		if err := q.out(&hits[i], nil); err != nil {
			return err
		}
	}
	return nil
}

// VerifyError says that an entry about to be printed is not authentic.
type VerifyError struct {
	Seq     uint64
	Segment string
	Offset  int64
	Reason  string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("eventquery: verify: seq %d (%s, byte %d): %s; run vigil verify on the directory for the full report", e.Seq, e.Segment, e.Offset, e.Reason)
}

// verify checks rec's chain hash against prev and its signature, when the
// source has a verifier.
func (q *queryRun) verify(seg segment, rec *auditlog.Record, prev [32]byte) error {
	return verifyRecord(q.src.Verifier, seg, rec, prev)
}

func verifyRecord(v signature.Verifier, seg segment, rec *auditlog.Record, prev [32]byte) error {
	if v == nil {
		return nil
	}
	if auditlog.ChainHash(prev, rec.Canonical) != rec.Hash {
		return &VerifyError{Seq: rec.Entry.Seq, Segment: seg.Name, Offset: rec.Offset, Reason: "chain hash does not follow from the entry before (entry changed)"}
	}
	if err := v.VerifySignature(bytes.NewReader(rec.Signature), bytes.NewReader(rec.Hash[:])); err != nil {
		return &VerifyError{Seq: rec.Entry.Seq, Segment: seg.Name, Offset: rec.Offset, Reason: "signature does not verify with the given public key"}
	}
	return nil
}
