package auditlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/pkg/keys"
	"golang.org/x/mod/sumdb/note"
)

// Errors returned by Append.
var (
	// ErrClosed is returned by Append after Close.
	ErrClosed = errors.New("auditlog: log is closed")
	// ErrUnavailable is returned while the log cannot be written (full disk,
	// I/O error, signing failure). The entries refused meanwhile are counted
	// and recorded as a log.gap entry once writing works again.
	ErrUnavailable = errors.New("auditlog: log cannot be written")
)

// Options configures a Log. Zero values take the defaults shown.
type Options struct {
	Signer             signature.SignerVerifier // required: signs entries and checkpoints
	Host               string                   // default: os.Hostname()
	Origin             string                   // checkpoint origin; default "vigil/<host>"
	SegmentMaxBytes    int64                    // rotate after this size; default 64 MiB
	SegmentMaxAge      time.Duration            // rotate after this age; default 1h
	CheckpointEvery    uint64                   // checkpoint every N entries; default 10000
	CheckpointInterval time.Duration            // and at least this often while entries arrive; default 10s
	QueueSize          int                      // entries appended but not yet durable (Append blocks beyond); default 16384
	MaxBatch           int                      // entries per write+fsync at most; default 4096
	RetryInterval      time.Duration            // how often a failed log retries writing; default 1s
	LazyDelay          time.Duration            // how long AppendLazy entries may wait for company before a flush; default 5ms
	Logger             *slog.Logger             // default: discard
	Now                func() time.Time         // default: time.Now
}

func (o *Options) setDefaults() error {
	if o.Signer == nil {
		return errors.New("auditlog: no signer configured")
	}
	if o.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("auditlog: hostname: %w", err)
		}
		o.Host = h
	}
	if o.Origin == "" {
		o.Origin = "vigil/" + o.Host
	}
	// The origin is also the signed-note key name: no spaces or '+'.
	if o.Origin == "" || strings.ContainsAny(o.Origin, "+ \t\r\n") || !utf8.ValidString(o.Origin) {
		return fmt.Errorf("auditlog: checkpoint origin %q is not usable: it must be non-empty UTF-8 without spaces or '+' (set a simpler host name)", o.Origin)
	}
	if o.SegmentMaxBytes <= 0 {
		o.SegmentMaxBytes = 64 << 20
	}
	if o.SegmentMaxAge <= 0 {
		o.SegmentMaxAge = time.Hour
	}
	if o.CheckpointEvery == 0 {
		o.CheckpointEvery = 10000
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = 10 * time.Second
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 16384
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 4096
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	if o.LazyDelay <= 0 {
		o.LazyDelay = 5 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// Ack reports when an appended entry is durable.
type Ack struct {
	Seq  uint64
	done chan struct{}
	err  error
}

// Done is closed when the entry is durable on disk or has failed.
func (a *Ack) Done() <-chan struct{} { return a.done }

// Err is nil once the entry is durable; valid after Done is closed.
func (a *Ack) Err() error { return a.err }

// Wait blocks until the entry is durable (nil) or has failed, or ctx ends.
func (a *Ack) Wait(ctx context.Context) error {
	select {
	case <-a.done:
		return a.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// job is one entry between Append and disk.
type job struct {
	epoch  uint64
	seq    uint64
	canon  []byte
	hash   [32]byte
	sig    []byte
	err    error
	signed chan struct{}
	ack    *Ack
	lazy   bool // nobody waits for it: it may wait for the next flush

	appended time.Duration // Log.sinceOpen when Append was called (time-to-durable)
}

// Log is an open audit log directory. One process at a time may hold it.
type Log struct {
	dir   string
	opts  Options
	log   *slog.Logger
	keyID string
	alg   string
	notes note.Signer
	lock  *os.File
	slots chan struct{}
	order chan *job
	stop  chan struct{}
	done  chan struct{}

	release  sync.Once // releases the directory after the writer ended
	mu       sync.Mutex
	closed   bool
	failErr  error     // set while writes fail
	failedAt time.Time // first failure of the current outage
	refused  uint64    // appends refused during the outage
	epoch    uint64    // bumped at each failure; older jobs are void
	nextSeq  uint64
	prevHash [32]byte

	w       writer   // owned by the writer goroutine
	gapFile *os.File // reserved space for a gap note at close (see recordPendingGap)
	stats   stats

	opened time.Time // monotonic base of job.appended
}

// stats are published by the writer goroutine for Stats.
type stats struct {
	durableSeq     atomic.Uint64
	segments       atomic.Int64
	bytes          atomic.Int64
	checkpointSize atomic.Uint64
	checkpointTime atomic.Int64
	fsyncs         atomic.Uint64
	lost           atomic.Uint64

	signErrors atomic.Uint64 // failed signatures: entries, gap entries, checkpoints
	durable    durableHist   // time from Append to the fsync that made the entry durable
}

// Stats is a snapshot of the log's state.
type Stats struct {
	NextSeq        uint64 // seq the next Append gets
	DurableSeq     uint64 // highest seq on disk
	Segments       int64  // segment files written or found
	Bytes          int64  // bytes written by this process
	CheckpointSize uint64 // tree size of the last checkpoint
	CheckpointTime time.Time
	Fsyncs         uint64
	Lost           uint64 // entries that could not be recorded (each is in a log.gap entry)
	KeyID          string
	Err            error // non-nil while the log cannot be written

	SignErrors  uint64           // signatures the signer failed to make (each fails the log until it recovers)
	Durable     DurableHistogram // time-to-durable of Append entries, this process
	DurableLazy DurableHistogram // time-to-durable of AppendLazy entries, this process
}

// Stats returns a snapshot of the log's counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	next, ferr := l.nextSeq, l.failErr
	l.mu.Unlock()
	s := Stats{
		NextSeq:        next,
		DurableSeq:     l.stats.durableSeq.Load(),
		Segments:       l.stats.segments.Load(),
		Bytes:          l.stats.bytes.Load(),
		CheckpointSize: l.stats.checkpointSize.Load(),
		Fsyncs:         l.stats.fsyncs.Load(),
		Lost:           l.stats.lost.Load(),
		KeyID:          l.keyID,
		Err:            ferr,

		SignErrors:  l.stats.signErrors.Load(),
		Durable:     l.stats.durable.snapshot(false),
		DurableLazy: l.stats.durable.snapshot(true),
	}
	if t := l.stats.checkpointTime.Load(); t != 0 {
		s.CheckpointTime = time.Unix(0, t).UTC()
	}
	return s
}

// KeyID returns the id of the signing key.
func (l *Log) KeyID() string { return l.keyID }

// Dir returns the log directory.
func (l *Log) Dir() string { return l.dir }

// Open opens (creating if needed) the log in dir, recovers it after an
// unclean stop, and starts the writer. A second process opening the same
// dir gets an error.
func Open(ctx context.Context, dir string, opts Options) (*Log, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	pub, err := keys.PublicKey(opts.Signer)
	if err != nil {
		return nil, err
	}
	keyID, err := keys.ID(pub)
	if err != nil {
		return nil, err
	}
	alg, err := keys.Algorithm(pub)
	if err != nil {
		return nil, err
	}
	ns, err := keys.NoteSigner(opts.Origin, opts.Signer)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("auditlog: create log directory: %w", err)
	}
	lock, unclean, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	l := &Log{
		dir:   dir,
		opts:  opts,
		log:   opts.Logger,
		keyID: keyID,
		alg:   alg,
		notes: ns,
		lock:  lock,
		slots: make(chan struct{}, opts.QueueSize),
		order: make(chan *job, opts.QueueSize),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),

		opened: time.Now(),
	}
	l.w.l = l
	rec, err := l.w.recover(ctx, pub)
	if err != nil {
		unlockDir(lock, false)
		return nil, err
	}
	l.nextSeq = l.w.chain.next
	l.prevHash = l.w.chain.prev
	go l.w.run()
	if err := l.recordPendingGap(ctx); err != nil {
		_ = l.Close(ctx)
		return nil, err
	}
	if rec.truncatedBytes > 0 || unclean {
		attrs := map[string]string{
			"previous_stop":   "unclean",
			"resumed_at_seq":  strconv.FormatUint(l.nextSeq, 10),
			"truncated_bytes": strconv.FormatInt(rec.truncatedBytes, 10),
		}
		if rec.truncatedBytes > 0 {
			attrs["truncated_segment"] = rec.truncatedSegment
			attrs["truncated_offset"] = strconv.FormatInt(rec.truncatedOffset, 10)
			attrs["torn_copy"] = rec.tornCopy
		}
		l.log.Warn("audit log recovered after unclean stop", "dir", dir, "truncated_bytes", rec.truncatedBytes, "resumed_at_seq", l.nextSeq)
		ack, err := l.Append(ctx, Entry{Type: LogRecovery, Attrs: attrs})
		if err == nil {
			err = ack.Wait(ctx)
		}
		if err != nil {
			_ = l.Close(ctx)
			return nil, fmt.Errorf("auditlog: record recovery: %w", err)
		}
	}
	// A prune that a crash interrupted after its record was durable is
	// finished now; failing to is not a reason to stop auditing.
	if err := l.FinishPrune(ctx); err != nil {
		l.log.Warn("cannot finish an interrupted prune; retention retries", "err", err)
	}
	return l, nil
}

// Append adds e to the log and returns, once the entry is signed, with an
// Ack that reports when it is durable. Seq is assigned here; Time and Host
// are filled in when zero. Append blocks while QueueSize entries are in
// flight.
//
// The caller's goroutine signs its own entry after the order is fixed, so
// signing runs on as many cores as there are concurrent callers, and no
// dedicated signer goroutines hog the CPUs that the writer needs to commit.
func (l *Log) Append(ctx context.Context, e Entry) (*Ack, error) {
	return l.append(ctx, e, false)
}

// AppendLazy is Append for entries that nobody waits on (conn.close, for
// one): the writer may hold them up to Options.LazyDelay so they share the
// flush of the next entry that somebody does wait on. They are durable
// within LazyDelay plus one flush; their Ack still reports when.
func (l *Log) AppendLazy(ctx context.Context, e Entry) (*Ack, error) {
	return l.append(ctx, e, true)
}

func (l *Log) append(ctx context.Context, e Entry, lazy bool) (*Ack, error) {
	appended := l.sinceOpen()
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.stop:
		return nil, ErrClosed
	}
	// Encode outside the lock with a placeholder seq: seq is always the
	// first field, 8 bytes at a fixed offset, so the lock only has to patch
	// it in and extend the chain.
	if e.Time.IsZero() {
		e.Time = l.opts.Now()
	}
	if e.Host == "" {
		e.Host = l.opts.Host
	}
	e.Seq = 1
	e.sanitize()
	j := &job{
		canon:  e.AppendCanonical(make([]byte, 0, 384)),
		signed: make(chan struct{}),
		ack:    &Ack{done: make(chan struct{})},
		lazy:   lazy,

		appended: appended,
	}
	if len(j.canon) > maxFieldLen {
		<-l.slots
		return nil, fmt.Errorf("auditlog: entry of %d bytes exceeds the %d-byte limit: send fewer or shorter attributes", len(j.canon), maxFieldLen)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.slots
		return nil, ErrClosed
	}
	if l.failErr != nil {
		l.refused++
		l.stats.lost.Add(1)
		err := l.failErr
		l.mu.Unlock()
		<-l.slots
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	j.seq, j.ack.Seq, j.epoch = l.nextSeq, l.nextSeq, l.epoch
	binary.BigEndian.PutUint64(j.canon[seqValueOffset:], j.seq)
	j.hash = ChainHash(l.prevHash, j.canon)
	l.nextSeq++
	l.prevHash = j.hash
	// The channel has QueueSize capacity and slots bounds what is in
	// flight, so this send never blocks while the lock is held.
	l.order <- j
	l.mu.Unlock()
	j.sig, j.err = l.opts.Signer.SignMessage(bytesReader(j.hash[:]))
	if j.err != nil {
		l.stats.signErrors.Add(1)
		j.err = fmt.Errorf("auditlog: sign entry %d: %w", j.seq, j.err)
	}
	close(j.signed)
	return j.ack, nil
}

// AppendSync appends e and waits until it is durable.
func (l *Log) AppendSync(ctx context.Context, e Entry) (uint64, error) {
	ack, err := l.Append(ctx, e)
	if err != nil {
		return 0, err
	}
	return ack.Seq, ack.Wait(ctx)
}

// Close stops accepting entries, writes what is queued, writes a final
// checkpoint and releases the directory.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	l.mu.Unlock()
	if first {
		close(l.stop)
	}
	// A Close that timed out can be repeated: it waits again for the
	// writer, and only the one that sees it finish releases the directory.
	select {
	case <-l.done:
	case <-ctx.Done():
		return fmt.Errorf("auditlog: close: the writer is still flushing: %w", ctx.Err())
	}
	err := l.w.closeErr
	l.release.Do(func() {
		if l.gapFile != nil {
			l.gapFile.Close()
		}
		unlockDir(l.lock, err == nil)
	})
	return err
}

// recordPendingGap turns a gap left by a writer that closed while failing
// into a log.gap entry, then reserves space for the next such note: the
// file's blocks are allocated now, so it can be written even when the
// disk is full, which is exactly when it is needed.
func (l *Log) recordPendingGap(ctx context.Context) error {
	path := filepath.Join(l.dir, pendingGapFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("auditlog: open %s: %w", path, err)
	}
	b := make([]byte, pendingGapSize)
	n, _ := f.ReadAt(b, 0)
	if text := string(b[:n]); strings.TrimRight(text, "\x00") != "" {
		attrs := map[string]string{"recorded": "at next start"}
		for _, line := range strings.Split(strings.TrimRight(text, "\x00"), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				attrs[k] = v
			}
		}
		if _, err := l.AppendSync(ctx, Entry{Type: LogGap, Attrs: attrs}); err != nil {
			f.Close()
			return fmt.Errorf("auditlog: record the gap left by the last stop: %w", err)
		}
	}
	if err := f.Truncate(0); err == nil {
		// Best effort: without the reservation the note may not fit on a
		// full disk, and the loss is then only in the error Close returns.
		_ = reserveBlocks(f, 0, pendingGapSize)
		_ = f.Sync()
	}
	l.gapFile = f
	return nil
}
