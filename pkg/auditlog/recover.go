package auditlog

import (
	"bytes"
	"context"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/transparency-dev/formats/log"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// RecoveredDir holds bytes cut from a torn tail, kept for forensics.
const RecoveredDir = "recovered"

// CorruptError reports a log that cannot be recovered automatically because
// complete records are wrong (not merely a torn tail): history was changed or
// lost, and a person must look.
type CorruptError struct {
	Segment string
	Seq     uint64 // 0 when not known
	Reason  string
}

func (e *CorruptError) Error() string {
	at := ""
	if e.Seq != 0 {
		at = fmt.Sprintf(" at seq %d", e.Seq)
	}
	return fmt.Sprintf("auditlog: %s%s: %s: the log will not be modified; run `vigil verify` on it, then move the data directory aside to start a new log", e.Segment, at, e.Reason)
}

type recoveryResult struct {
	truncatedBytes   int64
	truncatedSegment string
	truncatedOffset  int64
	tornCopy         string
}

// splitNote returns the text of a signed note (everything up to the blank line).
func splitNote(signed []byte) ([]byte, error) {
	i := bytes.Index(signed, []byte("\n\n"))
	if i < 0 {
		return nil, errors.New("not a signed note")
	}
	return signed[:i+1], nil
}

// parseCheckpointText reads size and root from a checkpoint note without
// checking its signature.
func parseCheckpointText(signed []byte) (log.Checkpoint, error) {
	var c log.Checkpoint
	text, err := splitNote(signed)
	if err != nil {
		return c, err
	}
	if _, err := c.Unmarshal(text); err != nil {
		return c, err
	}
	return c, nil
}

// recover rebuilds the writer state from the directory: it resumes the
// Merkle tree at the newest checkpoint, replays and checks the entries after
// it, and cuts a torn tail off the last segment.
func (w *writer) recover(ctx context.Context, pub crypto.PublicKey) (recoveryResult, error) {
	var res recoveryResult
	dir := w.l.dir
	w.chain = newChainState()
	segs, err := listSegments(dir)
	if err != nil {
		return res, err
	}
	// A last segment whose header never reached the disk holds nothing.
	if n := len(segs); n > 0 {
		if _, err := readHeaderFile(segs[n-1].Path); errors.Is(err, errTorn) {
			torn, why, terr := tornTail(segs[n-1].Path, int64(preambleLength))
			if terr != nil {
				return res, terr
			}
			if !torn || errors.Is(err, errCRC) {
				if why == "" {
					why = "complete header fails its CRC"
				}
				return res, &CorruptError{Segment: filepath.Base(segs[n-1].Path), Reason: "damaged segment header: " + why}
			}
			copyPath, size, cerr := saveTorn(dir, segs[n-1].Path, 0)
			if cerr != nil {
				return res, cerr
			}
			if err := os.Remove(segs[n-1].Path); err != nil {
				return res, fmt.Errorf("auditlog: remove empty segment: %w", err)
			}
			res = recoveryResult{truncatedBytes: size, truncatedSegment: filepath.Base(segs[n-1].Path), tornCopy: copyPath}
			segs = segs[:n-1]
		}
	}
	if len(segs) == 0 {
		return res, nil
	}
	start, base, err := newestCheckpoint(segs)
	if err != nil {
		return res, err
	}
	verifier, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return res, fmt.Errorf("auditlog: %w", err)
	}
	var baseSize uint64
	if base != nil {
		c, err := parseCheckpointText(base.note)
		if err != nil {
			return res, &CorruptError{Segment: filepath.Base(segs[start].Path), Reason: "unreadable checkpoint: " + err.Error()}
		}
		// Resume from the checkpoint only if it is signed by the key that
		// signs now (when its segment says so): recovery must not build on
		// a tree state nobody signed.
		if h, herr := readHeaderFile(segs[start].Path); herr == nil && h.KeyID == w.l.keyID {
			if nv, nerr := keys.NoteVerifier(h.Origin, pub); nerr == nil {
				if _, _, _, verr := log.ParseCheckpoint(base.note, h.Origin, nv); verr != nil {
					return res, &CorruptError{Segment: filepath.Base(segs[start].Path), Seq: c.Size, Reason: "checkpoint signature does not verify with the current key"}
				}
			}
		}
		tree, err := rangeFactory.NewRange(0, c.Size, base.rng)
		if err == nil {
			var root []byte
			root, err = tree.GetRootHash(nil)
			if err == nil && !bytes.Equal(root, c.Hash) {
				err = errors.New("stored Merkle range does not match the signed root")
			}
		}
		if err != nil {
			return res, &CorruptError{Segment: filepath.Base(segs[start].Path), Seq: c.Size, Reason: "checkpoint: " + err.Error()}
		}
		w.chain.tree = tree
		baseSize = c.Size
		w.ckptSize = c.Size
	} else if segs[0].FirstSeq != 1 {
		// A pruned log without a checkpoint left: resume the tree from the
		// prune record (docs/FORMAT.md, 13.5); replay checks its signature.
		tree, size, err := prunedBase(ctx, segs)
		if err != nil {
			return res, err
		}
		w.chain.tree, baseSize = tree, size
	}
	for i := start; i < len(segs); i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		last := i == len(segs)-1
		r, err := w.replaySegment(segs[i], i == start, baseSize, last, verifier)
		if err != nil {
			return res, err
		}
		if r.truncatedBytes > 0 {
			res = r
		}
	}
	w.l.stats.durableSeq.Store(w.chain.size())
	w.l.stats.segments.Store(int64(len(segs)))
	w.l.stats.checkpointSize.Store(w.ckptSize)
	w.ckptTime = w.now()
	return res, nil
}

func readHeaderFile(path string) (SegmentHeader, error) {
	f, err := os.Open(path)
	if err != nil {
		return SegmentHeader{}, fmt.Errorf("auditlog: %w", err)
	}
	defer f.Close()
	h, _, err := readHeader(f)
	return h, err
}

// newestCheckpoint finds the newest segment holding a checkpoint, scanning
// back from the last one, and returns its index and that checkpoint. With no
// checkpoint at all it returns segment 0 and nil.
func newestCheckpoint(segs []segmentFile) (int, *checkpointRecord, error) {
	for i := len(segs) - 1; i >= 0; i-- {
		f, err := os.Open(segs[i].Path)
		if err != nil {
			return 0, nil, fmt.Errorf("auditlog: %w", err)
		}
		var found *checkpointRecord
		_, fr, err := readHeader(f)
		for err == nil {
			var body []byte
			body, _, err = fr.next()
			if err == nil && body[0] == kindCheckpoint {
				if c, perr := parseCheckpointBody(body); perr == nil {
					c.note = bytes.Clone(c.note)
					for k := range c.rng {
						c.rng[k] = bytes.Clone(c.rng[k])
					}
					found = &c
				}
			}
		}
		f.Close()
		if found != nil {
			return i, found, nil
		}
	}
	return 0, nil, nil
}

// replaySegment checks one segment against the chain and appends its entries
// above baseSize to the tree. In the last segment a torn tail is cut off; in
// any other, damage is corruption.
func (w *writer) replaySegment(sf segmentFile, first bool, baseSize uint64, last bool, v signature.Verifier) (recoveryResult, error) {
	var res recoveryResult
	name := filepath.Base(sf.Path)
	f, err := os.OpenFile(sf.Path, os.O_RDWR, 0)
	if err != nil {
		return res, fmt.Errorf("auditlog: open segment: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	h, fr, err := readHeader(f)
	if err != nil {
		return res, &CorruptError{Segment: name, Reason: err.Error()}
	}
	if h.FirstSeq != sf.FirstSeq {
		return res, &CorruptError{Segment: name, Reason: fmt.Sprintf("header says first seq %d, file name says %d", h.FirstSeq, sf.FirstSeq)}
	}
	if first {
		if h.FirstSeq != 1 && baseSize < h.FirstSeq-1 {
			return res, &CorruptError{Segment: name, Seq: h.FirstSeq, Reason: "the log does not start at seq 1 and no checkpoint covers the missing start"}
		}
		w.chain.next, w.chain.prev = h.FirstSeq, h.PrevHash
	} else if h.FirstSeq != w.chain.next || h.PrevHash != w.chain.prev {
		return res, &CorruptError{Segment: name, Seq: w.chain.next, Reason: fmt.Sprintf("segment starts at seq %d but the chain continues at %d (a segment is missing or was replaced)", h.FirstSeq, w.chain.next)}
	}
	checkSigs := h.KeyID == w.l.keyID
	entries := 0
	end := fr.off
	for {
		body, off, err := fr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if !last {
				return res, &CorruptError{Segment: name, Seq: w.chain.next, Reason: fmt.Sprintf("damaged frame at byte %d: %v", off, err)}
			}
			// A complete frame with a bad CRC and more bytes after it was
			// changed, not torn by a crash: refuse rather than cut history.
			if errors.Is(err, errCRC) {
				if st, serr := f.Stat(); serr == nil && off+frameOverhead+int64(len(body)) < st.Size() {
					return res, &CorruptError{Segment: name, Seq: w.chain.next, Reason: fmt.Sprintf("frame at byte %d fails its CRC but more records follow it", off)}
				}
			}
			torn, why, terr := tornTail(sf.Path, off)
			if terr != nil {
				return res, terr
			}
			if !torn {
				return res, &CorruptError{Segment: name, Seq: w.chain.next, Reason: why}
			}
			pub, perr := v.PublicKey()
			if perr != nil {
				return res, fmt.Errorf("auditlog: %w", perr)
			}
			if err := w.checkCut(pub, name); err != nil {
				return res, err
			}
			copyPath, size, cerr := saveTorn(w.l.dir, sf.Path, off)
			if cerr != nil {
				return res, cerr
			}
			if err := f.Truncate(off); err != nil {
				return res, fmt.Errorf("auditlog: truncate torn tail of %s: %w", name, err)
			}
			if err := f.Sync(); err != nil {
				return res, fmt.Errorf("auditlog: sync %s: %w", name, err)
			}
			res = recoveryResult{truncatedBytes: size, truncatedSegment: name, truncatedOffset: off, tornCopy: copyPath}
			w.l.log.Warn("cut torn tail off audit segment", "segment", name, "offset", off, "bytes", size, "copy", copyPath)
			break
		}
		end = off + frameOverhead + int64(len(body))
		switch body[0] {
		case kindEntry:
			rec, e, err := decodeEntryBody(body)
			if err != nil {
				return res, &CorruptError{Segment: name, Seq: w.chain.next, Reason: err.Error()}
			}
			if e.Seq <= baseSize {
				if err := w.chain.follow(e.Seq, rec.canonical, rec.hash); err != nil {
					return res, &CorruptError{Segment: name, Seq: e.Seq, Reason: err.Error()}
				}
			} else {
				if checkSigs {
					if err := v.VerifySignature(bytes.NewReader(rec.sig), bytes.NewReader(rec.hash[:])); err != nil {
						return res, &CorruptError{Segment: name, Seq: e.Seq, Reason: "signature does not verify with the current key"}
					}
				}
				if err := w.chain.add(e.Seq, rec.canonical, rec.hash); err != nil {
					return res, &CorruptError{Segment: name, Seq: e.Seq, Reason: err.Error()}
				}
			}
			entries++
		case kindCheckpoint:
			cr, err := parseCheckpointBody(body)
			if err != nil {
				return res, &CorruptError{Segment: name, Seq: w.chain.next, Reason: err.Error()}
			}
			c, err := parseCheckpointText(cr.note)
			if err != nil || c.Size != w.chain.size() {
				return res, &CorruptError{Segment: name, Seq: w.chain.next, Reason: "checkpoint does not match the entries before it"}
			}
			if c.Size > baseSize {
				root, err := w.chain.root()
				if err != nil || !bytes.Equal(root, c.Hash) {
					return res, &CorruptError{Segment: name, Seq: c.Size, Reason: "checkpoint root does not match the entries"}
				}
			}
			w.ckptSize = c.Size
		default:
			return res, &CorruptError{Segment: name, Seq: w.chain.next, Reason: fmt.Sprintf("unknown record kind %d", body[0])}
		}
	}
	if last {
		w.segPath, w.segSize, w.segEntries, w.segCreated = sf.Path, end, entries, h.Created
		// Continue in this segment only if it is signed by the current key
		// under the current checkpoint origin (which the segment's
		// checkpoints are verified against) and has room; otherwise the
		// next write opens a new one.
		if h.KeyID == w.l.keyID && h.Origin == w.l.opts.Origin && end < w.l.opts.SegmentMaxBytes {
			if _, err := f.Seek(0, io.SeekEnd); err != nil {
				return res, fmt.Errorf("auditlog: seek: %w", err)
			}
			af, err := os.OpenFile(sf.Path, os.O_WRONLY|os.O_APPEND, 0o600)
			if err != nil {
				return res, fmt.Errorf("auditlog: reopen segment: %w", err)
			}
			w.seg = af
		} else if h.KeyID != w.l.keyID {
			w.l.log.Info("signing key changed; starting a new segment", "old_key", h.KeyID, "new_key", w.l.keyID)
		} else if h.Origin != w.l.opts.Origin {
			w.l.log.Info("checkpoint origin changed; starting a new segment", "old_origin", h.Origin, "new_origin", w.l.opts.Origin)
		}
	}
	return res, nil
}

// saveTorn copies the bytes of path from off to its end into RecoveredDir,
// so nothing cut from a log is destroyed unseen.
func saveTorn(dir, path string, off int64) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("auditlog: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, fmt.Errorf("auditlog: %w", err)
	}
	size := st.Size() - off
	if err := os.MkdirAll(filepath.Join(dir, RecoveredDir), 0o700); err != nil {
		return "", 0, fmt.Errorf("auditlog: %w", err)
	}
	dst := filepath.Join(dir, RecoveredDir, fmt.Sprintf("%s.%d.%s.torn", filepath.Base(path), off, strconv.FormatInt(time.Now().UnixNano(), 10)))
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("auditlog: save torn tail: %w", err)
	}
	if _, err = io.Copy(out, io.NewSectionReader(f, off, size)); err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("auditlog: save torn tail: %w", err)
	}
	return dst, size, nil
}

// maxTornScan bounds how much of a segment's tail recovery reads to decide
// whether it is torn.
const maxTornScan = 256 << 20

// tornTail reports whether the bytes of path from off to the end look like
// an append that a crash interrupted, and if not, why. A crash leaves a
// frame that runs past the end of the file, or zeros where nothing was
// written yet. A damaged length or CRC with a complete, valid frame
// anywhere after it is not a crash but a change, and recovery must not cut
// it away.
func tornTail(path string, off int64) (bool, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, "", fmt.Errorf("auditlog: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return false, "", fmt.Errorf("auditlog: %w", err)
	}
	if st.Size() <= off {
		return true, "", nil // the file ends before the damaged point: nothing follows
	}
	if st.Size()-off > maxTornScan {
		return false, fmt.Sprintf("%d damaged bytes at the end: too many to be one interrupted write", st.Size()-off), nil
	}
	tail := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(tail, off); err != nil && !errors.Is(err, io.EOF) {
		return false, "", fmt.Errorf("auditlog: %w", err)
	}
	// Any complete, CRC-valid entry or checkpoint frame after the damage
	// means records follow it. Position 0 is the damaged frame itself.
	for p := 1; p+frameOverhead < len(tail); p++ {
		n := int(binary.BigEndian.Uint32(tail[p:]))
		if n < 1 || n > maxFrameLen || p+frameOverhead+n > len(tail) {
			continue
		}
		body := tail[p+frameOverhead : p+frameOverhead+n]
		if body[0] != kindEntry && body[0] != kindCheckpoint {
			continue
		}
		if crc32.Checksum(body, castagnoli) == binary.BigEndian.Uint32(tail[p+4:]) {
			return false, fmt.Sprintf("a valid record at byte %d follows the damage at byte %d", off+int64(p), off), nil
		}
	}
	return true, "", nil
}

// checkCut refuses to cut the log below the size that the signed
// checkpoint file (written only after its entries were durable) covers.
func (w *writer) checkCut(pub crypto.PublicKey, segment string) error {
	b, err := os.ReadFile(filepath.Join(w.l.dir, CheckpointFile))
	if err != nil {
		return nil // no checkpoint file: nothing to hold the cut against
	}
	c, err := parseCheckpointText(b)
	if err != nil {
		return nil
	}
	if nv, err := keys.NoteVerifier(c.Origin, pub); err == nil {
		if _, _, _, err := log.ParseCheckpoint(b, c.Origin, nv); err != nil {
			return nil // signed by another key or forged: it proves nothing
		}
	}
	if c.Size > w.chain.size() {
		return &CorruptError{Segment: segment, Seq: w.chain.next, Reason: fmt.Sprintf("cutting the damaged tail would drop entries up to seq %d, which the signed checkpoint file covers", c.Size)}
	}
	return nil
}
