package auditlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/vigil-ebpf/vigil/pkg/atomicfile"
	"golang.org/x/mod/sumdb/note"
)

// pendingGapFile holds a gap that a closing writer could not record; the
// next Open records it as a log.gap entry and empties the file. Its blocks
// are reserved in advance (pendingGapSize), so it can be written on a full
// disk.
const (
	pendingGapFile = "gap.pending"
	pendingGapSize = 4096
)

// savePendingGap writes the note into the reserved file.
func (w *writer) savePendingGap(note []byte) error {
	f := w.l.gapFile
	if f == nil {
		return errors.New("no reserved gap file")
	}
	if len(note) > pendingGapSize {
		note = note[:pendingGapSize]
	}
	if _, err := f.WriteAt(note, 0); err != nil {
		return err
	}
	return f.Sync()
}

// CheckpointFile is the newest signed checkpoint, rewritten atomically beside
// the segments for tools and shippers; the copy inside the segments is the
// record.
const CheckpointFile = "checkpoint"

// writer is the single goroutine that orders, writes, syncs and checkpoints.
// All of its fields are owned by that goroutine (and by Open before it starts).
type writer struct {
	l     *Log
	chain *chainState // durable state: next seq, last hash, Merkle tree
	epoch uint64

	seg        *os.File
	segPath    string
	segSize    int64 // bytes of seg known to be good
	segEntries int
	segCreated time.Time
	segAlloc   int64 // seg has blocks reserved up to here (see reserve); 0 = none known
	noReserve  bool  // the filesystem cannot reserve blocks: do not try again
	dirty      bool  // seg was closed with unknown bytes past segSize

	failErr  error
	lost     uint64 // entries voided in the current outage
	failedAt time.Time

	ckptSize uint64
	ckptTime time.Time

	buf, body []byte
	pending   []*job
	closeErr  error
}

func (w *writer) now() time.Time { return w.l.opts.Now() }

func (w *writer) run() {
	defer close(w.l.done)
	o := &w.l.opts
	every := min(o.RetryInterval, o.CheckpointInterval, time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	batch := make([]*job, 0, o.MaxBatch)
	for {
		select {
		case j := <-w.l.order:
			batch = w.holdLazy(w.gather(append(batch[:0], j)))
			w.commit(batch)
		case <-tick.C:
			w.tick()
		case <-w.l.stop:
			for {
				select {
				case j := <-w.l.order:
					batch = w.gather(append(batch[:0], j))
					w.commit(batch)
					continue
				default:
				}
				break
			}
			w.finish()
			return
		}
	}
}

// gather adds whatever else is queued, up to MaxBatch: this is group commit.
// While it waits for the batch's signatures, more entries arrive; it takes
// those too, until a round brings nothing new or the batch has been open for
// maxGather. Under load batches grow and fsyncs get rarer, which matters
// because each fsync costs CPU that signing needs; with a single appender
// nothing waits.
func (w *writer) gather(batch []*job) []*job {
	const maxGather = 2 * time.Millisecond
	opened := time.Now()
	waited := 0
	for {
		n := len(batch)
	drain:
		for len(batch) < w.l.opts.MaxBatch {
			select {
			case j := <-w.l.order:
				batch = append(batch, j)
			default:
				break drain
			}
		}
		if len(batch) == n && n > 1 || len(batch) >= w.l.opts.MaxBatch || time.Since(opened) >= maxGather {
			return batch
		}
		for ; waited < len(batch); waited++ {
			<-batch[waited].signed
		}
		if len(batch) == n {
			return batch
		}
	}
}

// holdLazy delays a batch made only of lazy entries (ones nobody waits
// on, like conn.close) for up to LazyDelay, so they share the flush of the
// next entry somebody does wait on instead of costing an fsync of their own.
// The first waited-on entry ends the wait at once.
func (w *writer) holdLazy(batch []*job) []*job {
	for _, j := range batch {
		if !j.lazy {
			return batch
		}
	}
	timer := time.NewTimer(w.l.opts.LazyDelay)
	defer timer.Stop()
	for len(batch) < w.l.opts.MaxBatch {
		select {
		case j := <-w.l.order:
			batch = append(batch, j)
			if !j.lazy {
				return w.gather(batch)
			}
		case <-timer.C:
			return batch
		case <-w.l.stop:
			return batch
		}
	}
	return batch
}

func (w *writer) commit(batch []*job) {
	buf, pending := w.buf[:0], w.pending[:0]
	for _, j := range batch {
		if j.epoch != w.epoch {
			w.void(j)
			continue
		}
		<-j.signed
		if j.err != nil {
			w.flush(buf, pending)
			buf, pending = buf[:0], pending[:0]
			if j.epoch == w.epoch {
				w.fail(j.err)
			}
			w.void(j)
			continue
		}
		w.body = appendEntryBody(w.body[:0], j.canon, j.hash, j.sig)
		size := int64(frameOverhead + len(w.body))
		if w.seg != nil && w.segEntries+len(pending) > 0 && w.segSize+int64(len(buf))+size > w.l.opts.SegmentMaxBytes {
			w.flush(buf, pending)
			buf, pending = buf[:0], pending[:0]
			if j.epoch == w.epoch {
				w.seal()
			}
			if j.epoch != w.epoch {
				w.void(j)
				continue
			}
		}
		buf = appendFrame(buf, w.body)
		pending = append(pending, j)
	}
	w.flush(buf, pending)
	w.buf, w.pending = buf[:0], pending[:0]
	if w.failErr == nil && w.chain.size()-w.ckptSize >= w.l.opts.CheckpointEvery {
		w.checkpoint()
	}
}

// void fails a job that will never be written.
func (w *writer) void(j *job) {
	err := w.failErr
	if err == nil {
		err = errors.New("write failed")
	}
	j.ack.err = fmt.Errorf("%w: entry %d not recorded: %w", ErrUnavailable, j.seq, err)
	close(j.ack.done)
	<-w.l.slots
	w.lost++
	w.l.stats.lost.Add(1)
}

// flush writes and syncs one batch, then acknowledges it.
func (w *writer) flush(buf []byte, pending []*job) {
	if len(pending) == 0 {
		return
	}
	err := w.write(buf)
	if err != nil {
		w.fail(err)
		for _, j := range pending {
			w.void(j)
		}
		return
	}
	w.l.stats.durable.observe(w.l.sinceOpen(), pending)
	for _, j := range pending {
		if err := w.chain.add(j.seq, j.canon, j.hash); err != nil {
			panic(fmt.Sprintf("auditlog: writer broke its own chain at seq %d: %v", j.seq, err))
		}
	}
	w.segEntries += len(pending)
	// Publish the durable seq before any waiter wakes, so Stats read after
	// an Ack never shows the entry as not yet durable.
	w.l.stats.durableSeq.Store(w.chain.size())
	for _, j := range pending {
		close(j.ack.done)
		<-w.l.slots
	}
}

// write appends buf to the current segment and syncs it. On failure the
// segment is cut back to its last good size.
func (w *writer) write(buf []byte) error {
	if err := w.ensureSegment(); err != nil {
		return err
	}
	w.reserve(int64(len(buf)))
	n, err := w.seg.Write(buf)
	if err == nil {
		err = Datasync(w.seg)
		w.l.stats.fsyncs.Add(1)
	}
	if err != nil {
		w.cutBack()
		return fmt.Errorf("auditlog: write %s: %w", filepath.Base(w.segPath), err)
	}
	w.segSize += int64(n)
	w.l.stats.bytes.Add(int64(n))
	return nil
}

// reserveChunk is how far ahead of the data the writer reserves a
// segment's blocks.
const reserveChunk = 4 << 20

// reserve makes sure the blocks for the next n bytes of the segment are
// allocated, reserving reserveChunk more at a time beyond the end of the
// file (FALLOC_FL_KEEP_SIZE: the file's size, and so its content, stay
// exactly what was written). An append into blocks that already exist
// only changes the file size, so its fdatasync commits less metadata:
// ~210 µs instead of ~270-390 µs per flush on the reference machine,
// and a durable conn.open waits for one flush. Failure is harmless: the
// write then allocates as it goes.
func (w *writer) reserve(n int64) {
	end := w.segSize + n
	if w.noReserve || end <= w.segAlloc {
		return
	}
	from := max(w.segAlloc, w.segSize)
	to := end + min(int64(reserveChunk), w.l.opts.SegmentMaxBytes)
	err := reserveBlocks(w.seg, from, to-from)
	switch {
	case err == nil:
		w.segAlloc = to
	case errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS), errors.Is(err, errors.ErrUnsupported):
		w.noReserve = true
	}
}

// release frees the blocks reserved past the end of the segment before it
// is closed. A truncate to the current size keeps every byte written and
// drops the blocks past the end.
func (w *writer) release() {
	if w.seg == nil || w.segAlloc <= w.segSize {
		return
	}
	if err := w.seg.Truncate(w.segSize); err != nil {
		w.l.log.Warn("cannot free the blocks reserved past the end of the segment", "segment", w.segPath, "err", err)
	}
	w.segAlloc = 0
}

// cutBack truncates the segment to its last good size after a failed write,
// so no partial frame stays behind. If even that fails, the segment is closed
// and cut again before the next write.
func (w *writer) cutBack() {
	if w.seg == nil {
		return
	}
	w.segAlloc = 0 // the truncate frees the reservation too
	if err := w.seg.Truncate(w.segSize); err != nil {
		w.l.log.Error("cannot cut back audit segment after a failed write", "segment", w.segPath, "err", err)
		w.seg.Close()
		w.seg = nil
		w.dirty = true
	}
}

// ensureSegment opens a new segment when none is open.
func (w *writer) ensureSegment() error {
	if w.dirty {
		if err := os.Truncate(w.segPath, w.segSize); err != nil {
			return fmt.Errorf("auditlog: cut back %s: %w", filepath.Base(w.segPath), err)
		}
		f, err := os.OpenFile(w.segPath, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("auditlog: reopen segment: %w", err)
		}
		w.seg, w.dirty, w.segAlloc = f, false, 0
	}
	if w.seg != nil {
		return nil
	}
	path := filepath.Join(w.l.dir, segmentName(w.chain.next))
	hdr := encodeHeader(SegmentHeader{
		FirstSeq:  w.chain.next,
		PrevHash:  w.chain.prev,
		KeyID:     w.l.keyID,
		Algorithm: w.l.alg,
		Host:      w.l.opts.Host,
		Origin:    w.l.opts.Origin,
		Created:   w.now(),
	})
	// O_TRUNC: a file of this name can only hold a header or entries that
	// were never acknowledged (seq ≥ the next durable seq).
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("auditlog: create segment: %w", err)
	}
	if _, err = f.Write(hdr); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = atomicfile.SyncDir(w.l.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("auditlog: create segment %s: %w", filepath.Base(path), err)
	}
	w.seg, w.segPath, w.segSize, w.segEntries, w.segCreated, w.segAlloc = f, path, int64(len(hdr)), 0, w.now(), 0
	w.l.stats.segments.Add(1)
	w.l.stats.bytes.Add(int64(len(hdr)))
	return nil
}

// fail puts the log into the failed state: the sequencer rewinds to the last
// durable entry and everything in flight is voided.
func (w *writer) fail(err error) {
	if w.failErr == nil {
		w.failedAt = w.now()
		w.l.log.Error("audit log cannot be written; refusing appends until it can", "dir", w.l.dir, "err", err)
	}
	w.failErr = err
	w.epoch++
	l := w.l
	l.mu.Lock()
	l.failErr = err
	l.epoch = w.epoch
	l.nextSeq = w.chain.next
	l.prevHash = w.chain.prev
	l.mu.Unlock()
}

func (w *writer) tick() {
	if w.failErr != nil {
		w.resume()
		return
	}
	now := w.now()
	if w.chain.size() > w.ckptSize && now.Sub(w.ckptTime) >= w.l.opts.CheckpointInterval {
		w.checkpoint()
	}
	if w.seg != nil && w.segEntries > 0 && now.Sub(w.segCreated) >= w.l.opts.SegmentMaxAge {
		w.seal()
	}
}

// resume tries to leave the failed state by writing a log.gap entry that says
// how many entries were lost, when and why. The count is taken and the
// sequencer reopened behind the gap entry in one step, so every append is
// either refused before it (and counted in it) or ordered after it; if the
// gap entry cannot be written, the log fails again and keeps the count.
func (w *writer) resume() {
	l := w.l
	for { // everything still queued belongs to the outage
		select {
		case j := <-l.order:
			<-j.signed
			w.void(j)
			continue
		default:
		}
		break
	}
	now := w.now()
	l.mu.Lock()
	refused := l.refused
	e := Entry{
		Seq:  w.chain.next,
		Time: now,
		Type: LogGap,
		Host: l.opts.Host,
		Attrs: map[string]string{
			"lost":   strconv.FormatUint(w.lost+refused, 10),
			"reason": w.failErr.Error(),
			"since":  w.failedAt.UTC().Format(time.RFC3339Nano),
			"until":  now.UTC().Format(time.RFC3339Nano),
		},
	}
	canon := e.AppendCanonical(nil)
	hash := ChainHash(w.chain.prev, canon)
	l.failErr, l.refused, l.failedAt = nil, 0, time.Time{}
	l.nextSeq, l.prevHash = e.Seq+1, hash
	l.mu.Unlock()
	sig, err := signHash(l, hash)
	if err == nil {
		err = w.write(appendFrame(nil, appendEntryBody(nil, canon, hash, sig)))
	}
	if err != nil {
		l.mu.Lock()
		l.refused += refused // still to be recorded
		l.mu.Unlock()
		w.fail(err) // voids what was appended behind the gap entry meanwhile
		return
	}
	if err := w.chain.add(e.Seq, canon, hash); err != nil {
		panic(fmt.Sprintf("auditlog: writer broke its own chain at seq %d: %v", e.Seq, err))
	}
	w.segEntries++
	l.stats.durableSeq.Store(w.chain.size())
	l.log.Warn("audit log writable again; recorded the gap", "lost", w.lost+refused, "since", w.failedAt, "seq", e.Seq)
	w.failErr, w.lost, w.failedAt = nil, 0, time.Time{}
}

// checkpoint writes a signed checkpoint for the current tree into the
// segment and into CheckpointFile.
func (w *writer) checkpoint() {
	size := w.chain.size()
	if size == 0 || size == w.ckptSize {
		return
	}
	root, err := w.chain.root()
	if err != nil {
		w.fail(fmt.Errorf("auditlog: merkle root: %w", err))
		return
	}
	text := log.Checkpoint{Origin: w.l.opts.Origin, Size: size, Hash: root}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(text)}, w.l.notes)
	if err != nil {
		w.l.stats.signErrors.Add(1)
		w.fail(fmt.Errorf("auditlog: sign checkpoint: %w", err))
		return
	}
	frame := appendFrame(nil, appendCheckpointBody(nil, signed, w.chain.tree.Hashes()))
	if err := w.write(frame); err != nil {
		w.fail(err)
		return
	}
	w.ckptSize, w.ckptTime = size, w.now()
	w.l.stats.checkpointSize.Store(size)
	w.l.stats.checkpointTime.Store(w.ckptTime.UnixNano())
	if err := atomicfile.Write(filepath.Join(w.l.dir, CheckpointFile), signed, 0o644); err != nil {
		// The signed copy in the segment is what counts; this one is a convenience.
		w.l.log.Warn("cannot update checkpoint file", "err", err)
	}
}

// seal ends the current segment with a checkpoint; the next write opens a new one.
func (w *writer) seal() {
	w.checkpoint()
	if w.failErr != nil || w.seg == nil {
		return
	}
	w.release()
	if err := w.seg.Close(); err != nil {
		w.l.log.Warn("close sealed segment", "segment", w.segPath, "err", err)
	}
	w.seg = nil
	w.segEntries = 0
}

func (w *writer) finish() {
	if w.failErr != nil {
		w.resume() // one last try to record the gap
	}
	if w.failErr == nil {
		w.checkpoint()
	}
	if w.failErr != nil {
		w.l.mu.Lock()
		lost := w.lost + w.l.refused
		w.l.mu.Unlock()
		w.closeErr = fmt.Errorf("%w: closed while failing (%d entries not recorded): %w", ErrUnavailable, lost, w.failErr)
		// Leave the gap for the next Open to record, so it is said out loud
		// even when this process could not write it.
		pending := fmt.Sprintf("lost=%d\nsince=%s\nreason=%s\n", lost, w.failedAt.UTC().Format(time.RFC3339Nano), strings.ReplaceAll(w.failErr.Error(), "\n", " "))
		if err := w.savePendingGap([]byte(pending)); err != nil {
			w.l.log.Error("cannot save the unrecorded gap for the next start", "lost", lost, "err", err)
		}
	}
	if w.seg != nil {
		w.release()
		if err := w.seg.Close(); err != nil && w.closeErr == nil {
			w.closeErr = fmt.Errorf("auditlog: close segment: %w", err)
		}
		w.seg = nil
	}
}

func signHash(l *Log, hash [32]byte) ([]byte, error) {
	sig, err := l.opts.Signer.SignMessage(bytesReader(hash[:]))
	if err != nil {
		l.stats.signErrors.Add(1)
		return nil, fmt.Errorf("auditlog: sign: %w", err)
	}
	return sig, nil
}
