package auditlog

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// Kinds of verification failure, as reported in VerifyError.Kind.
const (
	BadSignature  = "bad-signature"  // an entry's signature does not verify
	ChainBreak    = "chain-break"    // an entry's hash does not follow from the one before
	Gap           = "gap"            // entries are missing
	Reorder       = "reorder"        // an entry is out of order or repeated
	Truncated     = "truncated"      // the log ends early or was cut
	WrongKey      = "wrong-key"      // a segment is signed by another key
	BadCheckpoint = "bad-checkpoint" // a checkpoint's signature or root is wrong
	BadHeader     = "bad-header"     // a segment header is damaged or inconsistent
	Malformed     = "malformed"      // a record cannot be decoded
	MissingLog    = "missing"        // no segments at all
)

// VerifyError names the first thing found wrong with a log.
type VerifyError struct {
	Kind    string `json:"kind"`
	Seq     uint64 `json:"seq,omitempty"` // first bad (or first missing) seq
	Segment string `json:"segment,omitempty"`
	Offset  int64  `json:"offset,omitempty"` // byte offset in Segment
	Reason  string `json:"reason"`
}

func (e *VerifyError) Error() string {
	s := "verify: "
	if e.Seq != 0 {
		s += fmt.Sprintf("seq %d: ", e.Seq)
	}
	s += e.Kind + ": " + e.Reason
	if e.Segment != "" {
		s += fmt.Sprintf(" (%s, byte %d)", e.Segment, e.Offset)
	}
	return s
}

// CheckpointInfo describes a verified checkpoint.
type CheckpointInfo struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   string `json:"root"` // hex
}

// Report summarizes a verified log.
type Report struct {
	Dir            string          `json:"dir"`
	KeyID          string          `json:"key_id"`
	Segments       int             `json:"segments"`
	Entries        uint64          `json:"entries"`
	FirstSeq       uint64          `json:"first_seq"`
	LastSeq        uint64          `json:"last_seq"`
	FirstTime      time.Time       `json:"first_time"`
	LastTime       time.Time       `json:"last_time"`
	Checkpoints    int             `json:"checkpoints"`
	LastCheckpoint *CheckpointInfo `json:"last_checkpoint,omitempty"`
	Uncovered      uint64          `json:"uncovered"` // entries after the last checkpoint
	Root           string          `json:"root"`      // Merkle root over all entries, hex
	// PrunedThrough is the last seq removed from the host by retention
	// (0 when the log starts at seq 1); PruneRecord is the seq of the
	// signed entry that vouches for it.
	PrunedThrough uint64 `json:"pruned_through,omitempty"`
	PruneRecord   uint64 `json:"prune_record,omitempty"`
	// UnshippedPruned is set when that entry is a log.gap: the removed
	// entries had no off-host copy.
	UnshippedPruned bool `json:"unshipped_pruned,omitempty"`
}

// VerifyOptions tunes Verify.
type VerifyOptions struct {
	Workers int // parallel signature checks; default GOMAXPROCS
}

// sigJob is a batch of entry signatures to check off the main path.
type sigJob struct {
	seqs   []uint64
	hashes [][32]byte
	sigs   [][]byte
	segs   []string
	offs   []int64
}

// Verify checks a log directory with only the public key: every segment
// header, every entry's encoding, chain hash, seq and signature, and every
// checkpoint's signature and Merkle root. It streams: memory does not grow
// with the log. On failure it returns the report so far and a *VerifyError
// naming the first bad seq.
func Verify(ctx context.Context, dir string, v signature.Verifier, opts VerifyOptions) (*Report, error) {
	rep := &Report{Dir: dir}
	pub, err := v.PublicKey()
	if err != nil {
		return rep, fmt.Errorf("verify: %w", err)
	}
	if rep.KeyID, err = keys.ID(pub); err != nil {
		return rep, err
	}
	segs, err := listSegments(dir)
	if err != nil {
		return rep, err
	}
	if len(segs) == 0 {
		return rep, &VerifyError{Kind: MissingLog, Reason: fmt.Sprintf("no segment files in %s", dir)}
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	vs := &sigVerifier{v: v}
	jobs := make(chan *sigJob, 2*workers)
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				vs.check(j)
			}
		}()
	}
	vr := &verifyRun{rep: rep, pub: pub, chain: newChainState(), jobs: jobs}
	serr := vr.run(ctx, dir, segs)
	vr.dispatch()
	close(jobs)
	wg.Wait()
	if root, err := vr.chain.root(); err == nil {
		rep.Root = hex.EncodeToString(root)
	}
	// A bad signature before the first sequential failure is the first problem.
	var ve *VerifyError
	if vs.first != nil && (serr == nil || !errors.As(serr, &ve) || ve.Seq == 0 || vs.first.Seq < ve.Seq) {
		return rep, vs.first
	}
	return rep, serr
}

type sigVerifier struct {
	v     signature.Verifier
	mu    sync.Mutex
	first *VerifyError
}

func (s *sigVerifier) check(j *sigJob) {
	for i := range j.seqs {
		if err := s.v.VerifySignature(bytes.NewReader(j.sigs[i]), bytes.NewReader(j.hashes[i][:])); err != nil {
			s.mu.Lock()
			if s.first == nil || j.seqs[i] < s.first.Seq {
				s.first = &VerifyError{Kind: BadSignature, Seq: j.seqs[i], Segment: j.segs[i], Offset: j.offs[i],
					Reason: "signature does not verify with the given public key"}
			}
			s.mu.Unlock()
			return // later entries in this batch cannot be earlier
		}
	}
}

// verifyRun is the sequential half of Verify.
type verifyRun struct {
	rep   *Report
	pub   crypto.PublicKey
	chain *chainState
	jobs  chan *sigJob
	batch *sigJob
	// fileCkpt is the checkpoint file, checked when the chain reaches its size.
	fileCkpt *log.Checkpoint
	// prune vouches for a log whose first segment starts after seq 1.
	prune     *prunePoint
	pruneSeen bool
}

const sigBatch = 256

func (vr *verifyRun) dispatch() {
	if vr.batch != nil && len(vr.batch.seqs) > 0 {
		vr.jobs <- vr.batch
	}
	vr.batch = nil
}

func (vr *verifyRun) queue(seq uint64, hash [32]byte, sig []byte, seg string, off int64) {
	if vr.batch == nil {
		vr.batch = &sigJob{}
	}
	b := vr.batch
	b.seqs = append(b.seqs, seq)
	b.hashes = append(b.hashes, hash)
	b.sigs = append(b.sigs, bytes.Clone(sig))
	b.segs = append(b.segs, seg)
	b.offs = append(b.offs, off)
	if len(b.seqs) == sigBatch {
		vr.dispatch()
	}
}

func (vr *verifyRun) run(ctx context.Context, dir string, segs []segmentFile) error {
	// A checkpoint file that does not verify is reported after the
	// segments: when the whole log is signed by another key, the segment
	// headers say so (wrong-key), which is the more useful answer.
	var fileErr error
	if b, err := os.ReadFile(filepath.Join(dir, CheckpointFile)); err == nil {
		c, err := vr.openCheckpoint(b, "")
		if err != nil {
			fileErr = &VerifyError{Kind: BadCheckpoint, Segment: CheckpointFile, Reason: err.Error()}
		}
		vr.fileCkpt = c
	}
	if err := vr.pruned(ctx, segs); err != nil {
		return err
	}
	for i, sf := range segs {
		if err := vr.segment(ctx, sf, i == 0, i == len(segs)-1); err != nil {
			return err
		}
	}
	if p := vr.prune; p != nil && !vr.pruneSeen {
		return &VerifyError{Kind: Truncated, Seq: p.Seq, Reason: fmt.Sprintf("the prune record at seq %d that vouches for the start of the log was not reached", p.Seq)}
	}
	if fileErr != nil {
		return fileErr
	}
	vr.rep.Uncovered = vr.chain.size()
	if vr.rep.LastCheckpoint != nil {
		vr.rep.Uncovered -= vr.rep.LastCheckpoint.Size
	}
	if c := vr.fileCkpt; c != nil && c.Size > vr.chain.size() {
		return &VerifyError{Kind: Truncated, Seq: vr.chain.next, Segment: CheckpointFile,
			Reason: fmt.Sprintf("the signed checkpoint covers %d entries but the log holds only %d: entries were removed from the end", c.Size, vr.chain.size())}
	}
	return nil
}

// openCheckpoint verifies a signed checkpoint note. origin "" accepts the
// origin the note names (the key is what is checked).
func (vr *verifyRun) openCheckpoint(signed []byte, origin string) (*log.Checkpoint, error) {
	if origin == "" {
		c, err := parseCheckpointText(signed)
		if err != nil {
			return nil, fmt.Errorf("unreadable checkpoint: %w", err)
		}
		origin = c.Origin
	}
	nv, err := keys.NoteVerifier(origin, vr.pub)
	if err != nil {
		return nil, err
	}
	c, _, _, err := log.ParseCheckpoint(signed, origin, nv)
	if err != nil {
		return nil, fmt.Errorf("checkpoint signature or format invalid: %w", err)
	}
	return c, nil
}

func (vr *verifyRun) segment(ctx context.Context, sf segmentFile, first, last bool) error {
	name := filepath.Base(sf.Path)
	f, err := os.Open(sf.Path)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	h, fr, err := readHeader(f)
	if err != nil {
		kind := BadHeader
		if errors.Is(err, errTorn) && last {
			kind = Truncated
		}
		return &VerifyError{Kind: kind, Seq: vr.chain.next, Segment: name, Reason: err.Error()}
	}
	vr.rep.Segments++
	if h.FirstSeq != sf.FirstSeq {
		return &VerifyError{Kind: BadHeader, Seq: h.FirstSeq, Segment: name, Reason: fmt.Sprintf("header says first seq %d but the file name says %d", h.FirstSeq, sf.FirstSeq)}
	}
	if h.KeyID != vr.rep.KeyID {
		return &VerifyError{Kind: WrongKey, Seq: h.FirstSeq, Segment: name,
			Reason: fmt.Sprintf("segment is signed by key %s but the public key given is %s", short(h.KeyID), short(vr.rep.KeyID))}
	}
	switch {
	case first && vr.prune == nil && h.FirstSeq != 1:
		return &VerifyError{Kind: Gap, Seq: 1, Segment: name, Reason: fmt.Sprintf("the log starts at seq %d: entries 1..%d are missing", h.FirstSeq, h.FirstSeq-1)}
	case h.FirstSeq > vr.chain.next:
		return &VerifyError{Kind: Gap, Seq: vr.chain.next, Segment: name, Reason: fmt.Sprintf("segment starts at seq %d but seq %d comes next: a segment is missing", h.FirstSeq, vr.chain.next)}
	case h.FirstSeq < vr.chain.next:
		return &VerifyError{Kind: Reorder, Seq: h.FirstSeq, Segment: name, Reason: fmt.Sprintf("segment starts at seq %d, which an earlier segment already holds", h.FirstSeq)}
	case h.PrevHash != vr.chain.prev:
		return &VerifyError{Kind: ChainBreak, Seq: h.FirstSeq, Segment: name, Reason: "segment header does not continue the chain of the previous segment"}
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
			// A complete frame failing its CRC with more of the log after
			// it was changed, not torn: name the entry if it is one.
			if errors.Is(err, errCRC) && (!last || off+frameOverhead+int64(len(body)) < st.Size()) {
				if ve := vr.changedEntry(body, name, off); ve != nil {
					return ve
				}
			}
			kind := Malformed
			if last {
				kind = Truncated
			}
			return &VerifyError{Kind: kind, Seq: vr.chain.next, Segment: name, Offset: off, Reason: err.Error()}
		}
		switch body[0] {
		case kindEntry:
			if err := vr.entry(body, name, off); err != nil {
				var ve *VerifyError
				if errors.As(err, &ve) && ve.Kind == Gap {
					if at, ok := findEntry(sf.Path, fr.off, ve.Seq); ok {
						ve.Kind = Reorder
						ve.Reason = fmt.Sprintf("out of order: expected seq %d here, but it comes later in the segment (byte %d)", ve.Seq, at)
					}
				}
				return err
			}
		case kindCheckpoint:
			if err := vr.checkpoint(body, h.Origin, name, off); err != nil {
				return err
			}
		default:
			return &VerifyError{Kind: Malformed, Seq: vr.chain.next, Segment: name, Offset: off, Reason: fmt.Sprintf("unknown record kind %d", body[0])}
		}
	}
}

func (vr *verifyRun) entry(body []byte, seg string, off int64) error {
	rec, e, err := decodeEntryBody(body)
	if err == nil && !bytes.Equal(e.AppendCanonical(nil), rec.canonical) {
		err = errors.New("entry is not in canonical form")
	}
	if err != nil {
		return &VerifyError{Kind: Malformed, Seq: vr.chain.next, Segment: seg, Offset: off, Reason: err.Error()}
	}
	if err := vr.chain.add(e.Seq, rec.canonical, rec.hash); err != nil {
		var ce *chainError
		kind, seq := ChainBreak, e.Seq
		if errors.As(err, &ce) {
			switch ce.Kind {
			case "gap":
				kind, seq = Gap, vr.chain.next
			case "reorder":
				kind, seq = Reorder, vr.chain.next
			}
		}
		return &VerifyError{Kind: kind, Seq: seq, Segment: seg, Offset: off, Reason: err.Error()}
	}
	if p := vr.prune; p != nil && p.Seq == e.Seq {
		if p.Hash != rec.hash {
			return &VerifyError{Kind: ChainBreak, Seq: e.Seq, Segment: seg, Offset: off, Reason: "the prune record changed while the log was read"}
		}
		vr.pruneSeen = true
	}
	vr.queue(e.Seq, rec.hash, rec.sig, seg, off)
	r := vr.rep
	if r.Entries == 0 {
		r.FirstSeq, r.FirstTime = e.Seq, e.Time
	}
	r.Entries++
	r.LastSeq, r.LastTime = e.Seq, e.Time
	if c := vr.fileCkpt; c != nil && c.Size == vr.chain.size() {
		root, _ := vr.chain.root()
		if !bytes.Equal(root, c.Hash) {
			return &VerifyError{Kind: BadCheckpoint, Seq: e.Seq, Segment: CheckpointFile, Reason: "the checkpoint file's root does not match the entries"}
		}
	}
	return nil
}

// changedEntry returns a chain-break error when body, a frame that failed
// its CRC, is the entry expected next but no longer matches its chain hash;
// otherwise nil.
func (vr *verifyRun) changedEntry(body []byte, seg string, off int64) *VerifyError {
	rec, e, err := decodeEntryBody(body)
	if err != nil || e.Seq != vr.chain.next || ChainHash(vr.chain.prev, rec.canonical) == rec.hash {
		return nil
	}
	return &VerifyError{Kind: ChainBreak, Seq: e.Seq, Segment: seg, Offset: off,
		Reason: "chain hash mismatch and frame CRC mismatch: the entry was modified"}
}

// findEntry reports whether the segment at path holds, from byte off on, an
// entry with the given seq, and at which offset.
func findEntry(path string, off int64, seq uint64) (int64, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return 0, false
	}
	fr := newFrameReader(f, off)
	for {
		body, at, err := fr.next()
		if err != nil {
			return 0, false
		}
		if body[0] != kindEntry {
			continue
		}
		if _, e, err := decodeEntryBody(body); err == nil && e.Seq == seq {
			return at, true
		}
	}
}

func (vr *verifyRun) checkpoint(body []byte, origin, seg string, off int64) error {
	bad := func(reason string) error {
		return &VerifyError{Kind: BadCheckpoint, Seq: vr.chain.size(), Segment: seg, Offset: off, Reason: reason}
	}
	cr, err := parseCheckpointBody(body)
	if err != nil {
		return bad(err.Error())
	}
	c, err := vr.openCheckpoint(cr.note, origin)
	if err != nil {
		return bad(err.Error())
	}
	if c.Size != vr.chain.size() {
		return bad(fmt.Sprintf("checkpoint claims %d entries where the log has %d", c.Size, vr.chain.size()))
	}
	root, err := vr.chain.root()
	if err != nil {
		return bad(err.Error())
	}
	if !bytes.Equal(root, c.Hash) {
		return bad("checkpoint's Merkle root does not match the entries")
	}
	vr.rep.Checkpoints++
	vr.rep.LastCheckpoint = &CheckpointInfo{Origin: c.Origin, Size: c.Size, Root: hex.EncodeToString(c.Hash)}
	return nil
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}
