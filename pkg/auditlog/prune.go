package auditlog

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/compact"
	"github.com/vigil-ebpf/vigil/pkg/atomicfile"
)

// LogPrune is the type of the entry written before the oldest segment is
// deleted from the host after every sink confirmed it (docs/FORMAT.md, 15).
// A segment dropped without an off-host copy is recorded as a LogGap entry
// with the same attributes, so the loss is said out loud.
const LogPrune Type = "log.prune"

// Attributes of a prune record (a log.prune entry, or a log.gap entry that
// drops unshipped data). A verifier needs pruned_last, anchor and range to
// check what remains; the others say what was removed and where it went.
const (
	PruneFirst   = "pruned_first" // first seq removed, decimal
	PruneLast    = "pruned_last"  // last seq removed, decimal: the remaining log starts at pruned_last+1
	PruneAnchor  = "anchor"       // chain hash of entry pruned_last, hex
	PruneRange   = "range"        // RFC 6962 compact range of leaves [0, pruned_last), hex hashes joined by ","
	PruneSegment = "segment"      // file name of the removed segment
	PruneBytes   = "bytes"        // its size, decimal
	// PruneShippedPrefix precedes a sink name; the value says where that
	// sink holds the removed entries (an object key, "seq N").
	PruneShippedPrefix = "shipped."
)

// pruneMarker names the segment whose prune record is being written, so
// that a start after a crash between the record and the deletion finishes
// the deletion. It is a hint: the signed record is what allows it.
const pruneMarker = "PRUNING"

// PruneRequest asks to remove the oldest segment of the log.
type PruneRequest struct {
	Segment string // file name of the oldest segment
	// Shipped maps each sink name to where it holds the segment's entries.
	Shipped map[string]string
	// Unshipped drops the segment although some sink does not hold it: the
	// record is a log.gap entry with Reason.
	Unshipped bool
	Reason    string // why an unshipped segment is dropped (required with Unshipped)
}

// PruneResult says what Prune removed.
type PruneResult struct {
	First, Last uint64 // seqs removed
	Bytes       int64  // size of the removed file
	RecordSeq   uint64 // seq of the log.prune or log.gap entry
}

// prunePoint is a signed statement that the log starts after Last.
type prunePoint struct {
	Seq    uint64   // seq of the prune record
	Hash   [32]byte // its chain hash
	Type   Type
	First  uint64
	Last   uint64
	Anchor [32]byte
	Range  [][]byte // compact range [0, Last)
}

// parsePrunePoint reads the prune attributes of e; ok=false when e is not
// a prune record.
func parsePrunePoint(e *Entry) (prunePoint, bool, error) {
	p := prunePoint{Seq: e.Seq, Type: e.Type}
	if (e.Type != LogPrune && e.Type != LogGap) || e.Attrs[PruneLast] == "" {
		return p, false, nil
	}
	var err error
	if p.Last, err = strconv.ParseUint(e.Attrs[PruneLast], 10, 64); err != nil || p.Last == 0 || p.Last >= e.Seq {
		return p, true, fmt.Errorf("prune record %d: bad %s %q", e.Seq, PruneLast, e.Attrs[PruneLast])
	}
	if p.First, err = strconv.ParseUint(e.Attrs[PruneFirst], 10, 64); err != nil || p.First == 0 || p.First > p.Last {
		return p, true, fmt.Errorf("prune record %d: bad %s %q", e.Seq, PruneFirst, e.Attrs[PruneFirst])
	}
	a, err := hex.DecodeString(e.Attrs[PruneAnchor])
	if err != nil || len(a) != 32 {
		return p, true, fmt.Errorf("prune record %d: %s is not 32 bytes of hex", e.Seq, PruneAnchor)
	}
	copy(p.Anchor[:], a)
	for _, s := range strings.Split(e.Attrs[PruneRange], ",") {
		h, err := hex.DecodeString(s)
		if err != nil || len(h) != 32 {
			return p, true, fmt.Errorf("prune record %d: %s holds a hash that is not 32 bytes of hex", e.Seq, PruneRange)
		}
		p.Range = append(p.Range, h)
	}
	if want := compact.RangeSize(0, p.Last); len(p.Range) != want {
		return p, true, fmt.Errorf("prune record %d: %s has %d hashes, a tree of %d leaves needs %d", e.Seq, PruneRange, len(p.Range), p.Last, want)
	}
	return p, true, nil
}

// tree returns the Merkle compact range the record vouches for.
func (p prunePoint) tree() (*compact.Range, error) {
	return rangeFactory.NewRange(0, p.Last, p.Range)
}

// findPrunePoint returns the newest prune record in the log whose
// pruned_last is boundary, searching from the newest segment backwards: the
// record that vouches for the start of a pruned log is written shortly
// before its oldest remaining segment became the first one, so it is
// normally near the end. ok=false when there is none.
func findPrunePoint(ctx context.Context, segs []segmentFile, boundary uint64) (prunePoint, bool, error) {
	for i := len(segs) - 1; i >= 0; i-- {
		var (
			found prunePoint
			ok    bool
		)
		err := scanSegment(ctx, segs[i], i == len(segs)-1, 0, func(r Record) error {
			if r.Entry.Type != LogPrune && r.Entry.Type != LogGap {
				return nil
			}
			p, is, err := parsePrunePoint(&r.Entry)
			if !is || err != nil || p.Last != boundary {
				return nil // a malformed record vouches for nothing; verify reports the gap
			}
			p.Hash = r.Hash
			found, ok = p, true
			return nil
		})
		if err != nil {
			return prunePoint{}, false, err
		}
		if ok {
			return found, true, nil
		}
	}
	return prunePoint{}, false, nil
}

// Prune removes the oldest segment of the log after recording, in a signed
// entry, the seqs it held, the chain hash of its last entry, the Merkle
// compact range at that point and where the entries were shipped. The
// file is deleted only once that entry is durable; a crash in between
// leaves the file, and the next Prune (or FinishPrune) deletes it.
//
// Only a segment before the newest sealed one may go: the live segment is
// being written, and the newest sealed one ends with the checkpoint that
// recovery resumes from. Prune is not safe for concurrent use with itself.
func (l *Log) Prune(ctx context.Context, req PruneRequest) (PruneResult, error) {
	var res PruneResult
	if req.Unshipped && req.Reason == "" {
		return res, errors.New("auditlog: prune: an unshipped segment needs a reason")
	}
	// A failing log would refuse the record (and count it as lost).
	if err := l.Stats().Err; err != nil {
		return res, fmt.Errorf("auditlog: prune: the log cannot be written now, so nothing is removed: %w", err)
	}
	if err := l.FinishPrune(ctx); err != nil {
		return res, err
	}
	e, path, res, err := l.preparePrune(ctx, req)
	if err != nil {
		return res, err
	}
	if err := atomicfile.Write(filepath.Join(l.dir, pruneMarker), []byte(req.Segment+"\n"), 0o644); err != nil {
		return res, fmt.Errorf("auditlog: prune: write marker: %w", err)
	}
	if res.RecordSeq, err = l.AppendSync(ctx, e); err != nil {
		return res, fmt.Errorf("auditlog: prune: record: %w", err)
	}
	if err := removeSegment(l.dir, path); err != nil {
		return res, err
	}
	if req.Unshipped {
		l.log.Error("deleted audit entries that no sink holds", "first", res.First, "last", res.Last, "segment", req.Segment, "reason", req.Reason, "record", res.RecordSeq)
	} else {
		l.log.Info("pruned shipped audit segment", "first", res.First, "last", res.Last, "segment", req.Segment, "record", res.RecordSeq)
	}
	return res, nil
}

// preparePrune checks that req names a segment that may go and builds its
// prune record.
func (l *Log) preparePrune(ctx context.Context, req PruneRequest) (Entry, string, PruneResult, error) {
	var res PruneResult
	segs, err := listSegments(l.dir)
	if err != nil {
		return Entry{}, "", res, err
	}
	if len(segs) < 3 {
		return Entry{}, "", res, fmt.Errorf("auditlog: prune %s: the log has %d segments; the live one and the newest sealed one are kept", req.Segment, len(segs))
	}
	if name := filepath.Base(segs[0].Path); name != req.Segment {
		return Entry{}, "", res, fmt.Errorf("auditlog: prune %s: only the oldest segment (%s) can be removed", req.Segment, name)
	}
	tree, prev := rangeFactory.NewEmptyRange(0), [32]byte{}
	if first := segs[0].FirstSeq; first != 1 {
		p, ok, err := findPrunePoint(ctx, segs, first-1)
		if err != nil {
			return Entry{}, "", res, err
		}
		if !ok {
			return Entry{}, "", res, fmt.Errorf("auditlog: prune %s: the log starts at seq %d and no prune record covers seqs before it: run vigil verify", req.Segment, first)
		}
		if tree, err = p.tree(); err != nil {
			return Entry{}, "", res, fmt.Errorf("auditlog: prune: %w", err)
		}
		prev = p.Anchor
	}
	h, err := readHeaderFile(segs[0].Path)
	if err != nil {
		return Entry{}, "", res, fmt.Errorf("auditlog: prune %s: %w", req.Segment, err)
	}
	if h.PrevHash != prev {
		return Entry{}, "", res, fmt.Errorf("auditlog: prune %s: the segment does not continue the chain before it: run vigil verify", req.Segment)
	}
	// Follow the segment's chain and extend the tree to its end.
	next := h.FirstSeq
	err = scanSegment(ctx, segs[0], false, 0, func(r Record) error {
		if r.Entry.Seq != next || ChainHash(prev, r.Canonical) != r.Hash {
			return fmt.Errorf("seq %d does not continue the chain", r.Entry.Seq)
		}
		prev, next = r.Hash, next+1
		return tree.Append(LeafHash(r.Canonical), nil)
	})
	if err != nil {
		return Entry{}, "", res, fmt.Errorf("auditlog: prune %s: %w: run vigil verify", req.Segment, err)
	}
	h1, err := readHeaderFile(segs[1].Path)
	if err != nil {
		return Entry{}, "", res, fmt.Errorf("auditlog: prune: %s: %w", filepath.Base(segs[1].Path), err)
	}
	if h1.FirstSeq != next || h1.PrevHash != prev {
		return Entry{}, "", res, fmt.Errorf("auditlog: prune %s: the next segment does not continue its chain: run vigil verify", req.Segment)
	}
	if next == h.FirstSeq {
		return Entry{}, "", res, fmt.Errorf("auditlog: prune %s: the segment holds no entry", req.Segment)
	}
	st, err := os.Stat(segs[0].Path)
	if err != nil {
		return Entry{}, "", res, fmt.Errorf("auditlog: prune: %w", err)
	}
	res = PruneResult{First: h.FirstSeq, Last: next - 1, Bytes: st.Size()}
	hashes := make([]string, 0, len(tree.Hashes()))
	for _, x := range tree.Hashes() {
		hashes = append(hashes, hex.EncodeToString(x))
	}
	attrs := map[string]string{
		PruneFirst:   strconv.FormatUint(res.First, 10),
		PruneLast:    strconv.FormatUint(res.Last, 10),
		PruneAnchor:  hex.EncodeToString(prev[:]),
		PruneRange:   strings.Join(hashes, ","),
		PruneSegment: req.Segment,
		PruneBytes:   strconv.FormatInt(res.Bytes, 10),
	}
	for _, k := range slices.Sorted(maps.Keys(req.Shipped)) {
		attrs[PruneShippedPrefix+k] = req.Shipped[k]
	}
	e := Entry{Type: LogPrune, Attrs: attrs}
	if req.Unshipped {
		e.Type = LogGap
		attrs["unshipped"] = "true"
		attrs["lost"] = strconv.FormatUint(res.Last-res.First+1, 10)
		attrs["reason"] = req.Reason
	}
	return e, segs[0].Path, res, nil
}

// FinishPrune completes a prune that a crash interrupted after its record
// was written: the segment named by the marker is deleted when a durable
// prune record covers it, and kept otherwise (the record never made it).
func (l *Log) FinishPrune(ctx context.Context) error {
	b, err := os.ReadFile(filepath.Join(l.dir, pruneMarker))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("auditlog: prune marker: %w", err)
	}
	name := strings.TrimSpace(string(b))
	segs, err := listSegments(l.dir)
	if err != nil {
		return err
	}
	for i, sf := range segs {
		if filepath.Base(sf.Path) != name || i+1 >= len(segs) {
			continue
		}
		_, ok, err := findPrunePoint(ctx, segs, segs[i+1].FirstSeq-1)
		if err != nil {
			return err
		}
		if ok && i == 0 {
			l.log.Info("finishing an interrupted prune", "segment", name)
			return removeSegment(l.dir, sf.Path)
		}
	}
	return removeMarker(l.dir)
}

// removeSegment deletes a pruned segment, then the marker.
func removeSegment(dir, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("auditlog: prune: remove %s: %w", filepath.Base(path), err)
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("auditlog: prune: %w", err)
	}
	return removeMarker(dir)
}

func removeMarker(dir string) error {
	if err := os.Remove(filepath.Join(dir, pruneMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("auditlog: prune marker: %w", err)
	}
	return nil
}

// pruned prepares verification of a log whose first segment starts after
// seq 1: only a signed prune record later in the log may vouch for the
// missing start. It names the last removed seq, the chain hash to continue
// from and the Merkle compact range to extend, so every later checkpoint
// root is still checked. The record itself is checked like any entry when
// the main pass reaches it. Without one, the missing start is a gap: the
// log was cut from the front.
func (vr *verifyRun) pruned(ctx context.Context, segs []segmentFile) error {
	first := segs[0].FirstSeq
	if first == 1 {
		return nil
	}
	name := filepath.Base(segs[0].Path)
	p, ok, err := findPrunePoint(ctx, segs, first-1)
	if err != nil {
		return &VerifyError{Kind: Malformed, Seq: first, Segment: name, Reason: err.Error()}
	}
	if !ok {
		return &VerifyError{Kind: Gap, Seq: 1, Segment: name, Reason: fmt.Sprintf(
			"the log starts at seq %d: entries 1..%d are missing and no signed log.prune or log.gap record in the log accounts for them (segments were removed from the front)", first, first-1)}
	}
	tree, err := p.tree()
	if err != nil {
		return &VerifyError{Kind: Malformed, Seq: p.Seq, Reason: "prune record: " + err.Error()}
	}
	vr.chain.next, vr.chain.prev, vr.chain.tree = first, p.Anchor, tree
	vr.prune = &p
	vr.rep.PrunedThrough, vr.rep.PruneRecord = p.Last, p.Seq
	vr.rep.UnshippedPruned = p.Type == LogGap
	return nil
}

// PrunedThrough returns the last seq removed from the log in dir by
// retention, as its prune record states (0 when the log starts at seq 1).
// It does not check the record's signature: Verify does.
func PrunedThrough(ctx context.Context, dir string) (uint64, error) {
	segs, err := listSegments(dir)
	if err != nil || len(segs) == 0 || segs[0].FirstSeq == 1 {
		return 0, err
	}
	p, ok, err := findPrunePoint(ctx, segs, segs[0].FirstSeq-1)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, fmt.Errorf("auditlog: the log starts at seq %d and no prune record covers seqs before it: run vigil verify", segs[0].FirstSeq)
	}
	return p.Last, nil
}

// treeStart returns the Merkle range to extend, and the seq of its next
// leaf, for a computation over the first size entries of the log in dir:
// empty at seq 1, or the range a prune record gives.
func treeStart(ctx context.Context, dir string, size uint64) (*compact.Range, uint64, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, 0, err
	}
	if len(segs) == 0 || segs[0].FirstSeq == 1 {
		return rangeFactory.NewEmptyRange(0), 1, nil
	}
	p, ok, err := findPrunePoint(ctx, segs, segs[0].FirstSeq-1)
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, fmt.Errorf("auditlog: the log starts at seq %d and no prune record covers seqs before it: run vigil verify", segs[0].FirstSeq)
	}
	if size < p.Last {
		return nil, 0, fmt.Errorf("auditlog: the log was pruned through seq %d, so the tree of its first %d entries cannot be computed here: use the shipped archive", p.Last, size)
	}
	r, err := p.tree()
	if err != nil {
		return nil, 0, fmt.Errorf("auditlog: prune record %d: %w", p.Seq, err)
	}
	return r, p.Last + 1, nil
}

// prunedBase returns the Merkle range and size that recovery resumes from
// in a pruned log holding no checkpoint: those of the prune record that
// vouches for its start, whose anchor the first segment must continue.
func prunedBase(ctx context.Context, segs []segmentFile) (*compact.Range, uint64, error) {
	name := filepath.Base(segs[0].Path)
	p, ok, err := findPrunePoint(ctx, segs, segs[0].FirstSeq-1)
	if err != nil {
		return nil, 0, err
	}
	if !ok {
		return nil, 0, &CorruptError{Segment: name, Seq: segs[0].FirstSeq, Reason: "the log does not start at seq 1 and neither a checkpoint nor a prune record covers the missing start"}
	}
	h, err := readHeaderFile(segs[0].Path)
	if err != nil || h.PrevHash != p.Anchor {
		return nil, 0, &CorruptError{Segment: name, Seq: segs[0].FirstSeq, Reason: fmt.Sprintf("the segment does not continue the chain hash that prune record %d gives", p.Seq)}
	}
	tree, err := p.tree()
	if err != nil {
		return nil, 0, &CorruptError{Segment: name, Seq: p.Seq, Reason: "prune record: " + err.Error()}
	}
	return tree, p.Last, nil
}
