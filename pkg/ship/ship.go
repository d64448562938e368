// Package ship copies the audit log off the host, where whoever owns the
// host cannot rewrite it: sealed segments and signed checkpoints to
// S3-compatible storage with Object Lock, and entries and checkpoints to
// streaming sinks (NATS JetStream, JSON lines) for near-real-time
// consumers.
//
// The shipper only reads the log directory (auditlog.Scan and the
// checkpoint file); it never holds the writer, so a slow or dead sink can
// never block the data path. Each sink has its own durable cursor in
// DIR/ship/NAME.cursor, moved only after the sink confirmed a write:
// delivery is at least once, in order per sink, and resumes after a
// restart. Failures are retried with exponential backoff. With a
// retention budget, the shipper removes the oldest local segments once
// every sink holds them, each after a signed log.prune entry (and only
// if allowed, unshipped ones after a log.gap entry).
package ship

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// Sink is a destination off the host. Implementations are SegmentSink or
// EntrySink as well.
type Sink interface {
	Name() string // unique among the shipper's sinks: names the cursor file
	Kind() string // "s3", "nats", "jsonl"
	// Check makes sure the destination exists and keeps what it is sent
	// (Object Lock, a stream that denies deletes); an error refuses the sink.
	Check(ctx context.Context) error
	Close() error
}

// SegmentSink stores whole sealed segments and checkpoints (object storage).
type SegmentSink interface {
	Sink
	// PutSegment stores the sealed segment file at path holding seqs
	// first..last, the first written at t. It is called again for the
	// same segment after a failure or crash, so it must be idempotent.
	PutSegment(ctx context.Context, path string, first, last uint64, t time.Time) error
	// PutCheckpoint stores a signed checkpoint.
	PutCheckpoint(ctx context.Context, c Checkpoint) error
}

// EntrySink receives entries and checkpoints one message at a time, in log
// order (streaming).
type EntrySink interface {
	Sink
	// Publish delivers msgs in order and returns only once all of them are
	// confirmed durable by the destination.
	Publish(ctx context.Context, msgs []Message) error
}

// Config configures a Shipper.
type Config struct {
	Dir        string        // log directory (required)
	Host       string        // host name carried in messages (required)
	Interval   time.Duration // how often to look for new data; default 1s
	MinBackoff time.Duration // first retry delay after a failure; default 1s
	MaxBackoff time.Duration // retry delay cap; default 1m
	BatchSize  int           // messages per Publish for entry sinks; default 1000
	Logger     *slog.Logger  // default: discard
	Now        func() time.Time
	// Durable, when set, returns the newest seq the writer has synced
	// (auditlog.Log.Stats().DurableSeq). Entry sinks ship nothing beyond
	// it: a frame read before its fsync could vanish in a power loss and
	// its seq be reused by a different entry. Without it, every complete
	// frame on disk is shipped (right for a log no process writes).
	Durable func() uint64
	// Retention bounds the local log; the zero value keeps everything.
	Retention Retention
}

// SinkStatus is one sink's progress, for `vigil status` and metrics.
type SinkStatus struct {
	Name           string    `json:"name"`
	Kind           string    `json:"kind"`
	LastSeq        uint64    `json:"last_seq"`                  // last entry shipped (entry sinks) or covered by shipped segments
	LastSegment    string    `json:"last_segment,omitempty"`    // last segment shipped (segment sinks)
	LastCheckpoint uint64    `json:"last_checkpoint,omitempty"` // size of the last checkpoint shipped
	BacklogEntries uint64    `json:"backlog_entries"`           // entries written locally and not shipped yet
	BacklogBytes   int64     `json:"backlog_bytes"`             // local segment bytes not shipped yet
	LagSeconds     float64   `json:"lag_seconds"`               // age of the oldest data not shipped yet; 0 when caught up
	LastShipped    time.Time `json:"last_shipped,omitzero"`     // when the sink last confirmed a write
	LastError      string    `json:"last_error,omitempty"`      // the last failure, cleared by the next success
}

// Shipper runs one loop per sink.
type Shipper struct {
	cfg     Config
	runners []*runner
	retain  *retainer // nil without a retention budget
}

var sinkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// New checks the configuration and loads each sink's cursor. It does not
// contact the sinks: Check does.
func New(cfg Config, sinks ...Sink) (*Shipper, error) {
	if cfg.Dir == "" || cfg.Host == "" {
		return nil, errors.New("ship: log directory and host are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Minute
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Shipper{cfg: cfg}
	var err error
	if s.retain, err = newRetainer(s, cfg.Retention); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, k := range sinks {
		if !sinkName.MatchString(k.Name()) {
			return nil, fmt.Errorf("ship: sink name %q: use letters, digits, '.', '_' or '-'", k.Name())
		}
		if seen[k.Name()] {
			return nil, fmt.Errorf("ship: two sinks are named %q: give each its own name", k.Name())
		}
		seen[k.Name()] = true
		switch k.(type) {
		case SegmentSink, EntrySink:
		default:
			return nil, fmt.Errorf("ship: sink %s is neither a segment nor an entry sink", k.Name())
		}
		path := cursorFile(cfg.Dir, k.Name())
		cur, err := loadCursor(path)
		if err != nil {
			return nil, err
		}
		s.runners = append(s.runners, &runner{cfg: &s.cfg, sink: k, cursorPath: path, cur: cur,
			log: cfg.Logger.With("sink", k.Name(), "kind", k.Kind())})
	}
	return s, nil
}

// RefusedError is what a sink's Check returns for a destination that
// answers but would not keep what it is sent (a bucket without Object
// Lock, a stream that allows deletes): a configuration to fix, not a
// failure to retry.
type RefusedError struct{ Err error }

// Error returns the reason.
func (e *RefusedError) Error() string { return e.Err.Error() }

// Unwrap returns the wrapped reason.
func (e *RefusedError) Unwrap() error { return e.Err }

// Refuse wraps err as a RefusedError.
func Refuse(err error) error { return &RefusedError{Err: err} }

// Check asks every sink to validate its destination. The first refusal is
// returned, so the agent can refuse to start with a clear reason. A sink
// that cannot be reached now is not a refusal: auditing must not depend
// on the network. Its loop checks it again before shipping anything, and
// its status shows the error meanwhile.
func (s *Shipper) Check(ctx context.Context) error {
	for _, r := range s.runners {
		err := r.check(ctx)
		var re *RefusedError
		if errors.As(err, &re) {
			return err
		}
		if err != nil {
			r.setErr(err)
			r.log.Warn("sink unreachable at start; will keep trying", "err", err)
		}
	}
	return nil
}

// Run ships until ctx ends. Each sink runs independently, so one failing
// sink does not hold back the others.
func (s *Shipper) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range s.runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx)
		}()
	}
	if s.retain != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.retainLoop(ctx)
		}()
	}
	wg.Wait()
}

// Drain makes one more pass per sink, e.g. after the log was closed, so
// that the final checkpoint leaves the host too. It returns the failures.
func (s *Shipper) Drain(ctx context.Context) error {
	var errs []error
	for _, r := range s.runners {
		if err := r.pass(ctx); err != nil {
			r.setErr(err)
			errs = append(errs, fmt.Errorf("ship: sink %s: %w", r.sink.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Close closes every sink.
func (s *Shipper) Close() error {
	var errs []error
	for _, r := range s.runners {
		errs = append(errs, r.sink.Close())
	}
	return errors.Join(errs...)
}

// Status reports every sink's progress and backlog.
func (s *Shipper) Status() []SinkStatus {
	out := make([]SinkStatus, 0, len(s.runners))
	segs, _ := listLocal(s.cfg.Dir)
	for _, r := range s.runners {
		out = append(out, r.status(segs))
	}
	return out
}

// runner ships to one sink. Only its loop (or Drain, which is not run
// beside it) writes cur; mu guards what Status reads.
type runner struct {
	cfg        *Config
	sink       Sink
	cursorPath string
	log        *slog.Logger

	checked bool // Check passed: only then is anything shipped (S3 retention depends on it)

	mu       sync.Mutex
	cur      Cursor
	lastErr  error
	head     uint64    // newest seq known locally
	pending  time.Time // time of the oldest entry or segment not shipped
	pendSeg  string    // segment holding the first unshipped byte
	pendOff  int64     // and its offset there
	lastShip time.Time
}

func (r *runner) loop(ctx context.Context) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = r.cfg.MinBackoff
	b.MaxInterval = r.cfg.MaxBackoff
	b.MaxElapsedTime = 0 // never give up: the log waits for the sink
	b.Reset()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := r.cfg.Interval
		if err := r.pass(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = b.NextBackOff()
			r.setErr(err)
			r.log.Warn("shipping failed; will retry", "err", err, "retry_in", wait)
		} else {
			b.Reset()
			r.setErr(nil)
		}
		t.Reset(wait)
	}
}

func (r *runner) setErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

func (r *runner) check(ctx context.Context) error {
	if err := r.sink.Check(ctx); err != nil {
		return fmt.Errorf("ship: sink %s (%s): %w", r.sink.Name(), r.sink.Kind(), err)
	}
	r.checked = true
	return nil
}

// ready checks the sink once before anything is sent to it.
func (r *runner) ready(ctx context.Context) error {
	if r.checked {
		return nil
	}
	return r.check(ctx)
}

func (r *runner) pass(ctx context.Context) error {
	switch k := r.sink.(type) {
	case SegmentSink:
		return r.passSegments(ctx, k)
	case EntrySink:
		return r.passEntries(ctx, k)
	}
	return nil
}

// advance saves the cursor and publishes it to Status.
func (r *runner) advance(c Cursor) error {
	c.Updated = r.cfg.Now().UTC()
	if err := saveCursor(r.cursorPath, c); err != nil {
		return err
	}
	r.mu.Lock()
	r.cur = c
	r.lastShip = c.Updated
	r.mu.Unlock()
	return nil
}

func (r *runner) cursor() Cursor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// passSegments ships the newest checkpoint first (it is small and is what
// makes a cut local tail detectable), then every sealed segment not
// shipped yet, oldest first.
func (r *runner) passSegments(ctx context.Context, k SegmentSink) error {
	dir := r.cfg.Dir
	cur := r.cursor()
	ck, haveCk, err := readCheckpoint(dir)
	if err != nil {
		return err
	}
	segs, err := listLocal(dir)
	if err != nil {
		return err
	}
	head := cur.Seq
	if haveCk && ck.Size > head {
		head = ck.Size
	}
	var todo []sealedSegment
	for _, s := range sealed(segs) {
		head = max(head, s.Last)
		if s.Name > cur.Segment {
			todo = append(todo, s)
		}
	}
	var oldest time.Time
	if len(todo) > 0 {
		if oldest, err = firstEntryTime(ctx, dir, todo[0]); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.head, r.pending = head, oldest
	r.pendSeg, r.pendOff = "", 0
	if len(todo) > 0 {
		r.pendSeg = todo[0].Name
	} else if len(segs) > 0 && segs[len(segs)-1].Name > cur.Segment {
		r.pendSeg = segs[len(segs)-1].Name
	}
	r.mu.Unlock()
	if (!haveCk || ck.Size == cur.Checkpoint) && len(todo) == 0 {
		return nil
	}
	if err := r.ready(ctx); err != nil {
		return err
	}
	if haveCk && ck.Size != cur.Checkpoint {
		if err := k.PutCheckpoint(ctx, ck); err != nil {
			return fmt.Errorf("checkpoint %d: %w", ck.Size, err)
		}
		cur.Checkpoint = ck.Size
		if err := r.advance(cur); err != nil {
			return err
		}
		r.log.Debug("shipped checkpoint", "size", ck.Size)
	}
	for i, s := range todo {
		t := oldest
		if i > 0 {
			if t, err = firstEntryTime(ctx, dir, s); err != nil {
				return err
			}
			r.mu.Lock()
			r.pending = t
			r.mu.Unlock()
		}
		if err := k.PutSegment(ctx, s.Path, s.First, s.Last, t); err != nil {
			return fmt.Errorf("segment %s: %w", s.Name, err)
		}
		cur.Segment, cur.Seq = s.Name, s.Last
		if err := r.advance(cur); err != nil {
			return err
		}
		r.log.Debug("shipped segment", "segment", s.Name, "first", s.First, "last", s.Last)
		r.mu.Lock()
		r.pending = time.Time{}
		if i+1 < len(todo) {
			r.pendSeg = todo[i+1].Name
		} else if last := segs[len(segs)-1]; last.Name > cur.Segment {
			r.pendSeg = last.Name
		} else {
			r.pendSeg = ""
		}
		r.mu.Unlock()
	}
	return nil
}

// errBatchDone ends a scan after a full batch so it can be published.
var errBatchDone = errors.New("ship: batch full")

// passEntries publishes every entry after the cursor in batches, each
// checkpoint right after the entry it covers up to, then advances the
// cursor past what the sink confirmed.
func (r *runner) passEntries(ctx context.Context, k EntrySink) error {
	dir := r.cfg.Dir
	for {
		cur := r.cursor()
		ck, haveCk, err := readCheckpoint(dir)
		if err != nil {
			return err
		}
		var (
			batch    []Message
			lastSeq  = cur.Seq
			lastCkpt = cur.Checkpoint
			firstT   time.Time
			firstSeg string
			firstOff int64
		)
		// A checkpoint already covered by what was shipped goes out first.
		if haveCk && ck.Size != cur.Checkpoint && ck.Size <= cur.Seq {
			batch = append(batch, checkpointMessage(r.cfg.Host, ck))
			lastCkpt = ck.Size
		}
		// Entries that retention dropped before this sink had them are
		// gone (a log.gap entry says so): continue after them.
		if segs, err := listLocal(dir); err == nil && len(segs) > 0 && segs[0].First > cur.Seq+1 {
			r.log.Error("entries were pruned locally before this sink had them", "first", cur.Seq+1, "last", segs[0].First-1)
			lastSeq = segs[0].First - 1
		}
		limit := uint64(math.MaxUint64)
		if r.cfg.Durable != nil {
			limit = r.cfg.Durable()
		}
		err = auditlog.Scan(ctx, dir, cur.Seq+1, func(rec auditlog.Record) error {
			if rec.Entry.Seq > limit {
				return auditlog.ErrStop
			}
			if rec.Entry.Seq != lastSeq+1 {
				return fmt.Errorf("local log skips from seq %d to %d: run vigil verify on %s", lastSeq, rec.Entry.Seq, dir)
			}
			if firstT.IsZero() {
				firstT, firstSeg, firstOff = rec.Entry.Time, rec.Segment, rec.Offset
			}
			batch = append(batch, entryMessage(r.cfg.Host, rec))
			lastSeq = rec.Entry.Seq
			if haveCk && ck.Size == lastSeq && ck.Size != lastCkpt {
				batch = append(batch, checkpointMessage(r.cfg.Host, ck))
				lastCkpt = ck.Size
			}
			if len(batch) >= r.cfg.BatchSize {
				return errBatchDone
			}
			return nil
		})
		full := errors.Is(err, errBatchDone)
		if err != nil && !full {
			return err
		}
		// The newest local seq, for the backlog: a batch stops early, so
		// also take what the writer and the checkpoint say.
		head := lastSeq
		if r.cfg.Durable != nil {
			head = max(head, limit)
		}
		if haveCk {
			head = max(head, ck.Size)
		}
		r.mu.Lock()
		r.head = max(r.head, head)
		r.pending, r.pendSeg, r.pendOff = firstT, firstSeg, firstOff
		r.mu.Unlock()
		if len(batch) == 0 {
			return nil
		}
		if err := r.ready(ctx); err != nil {
			return err
		}
		if err := k.Publish(ctx, batch); err != nil {
			return err
		}
		cur.Seq, cur.Checkpoint = lastSeq, lastCkpt
		if err := r.advance(cur); err != nil {
			return err
		}
		r.mu.Lock()
		r.pending, r.pendSeg, r.pendOff = time.Time{}, "", 0
		r.mu.Unlock()
		if !full {
			return nil
		}
	}
}

func (r *runner) status(segs []localSegment) SinkStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := SinkStatus{
		Name:           r.sink.Name(),
		Kind:           r.sink.Kind(),
		LastSeq:        r.cur.Seq,
		LastSegment:    r.cur.Segment,
		LastCheckpoint: r.cur.Checkpoint,
		LastShipped:    r.lastShip,
	}
	if r.lastErr != nil {
		st.LastError = r.lastErr.Error()
	}
	if r.head > r.cur.Seq {
		st.BacklogEntries = r.head - r.cur.Seq
	}
	if r.pendSeg != "" {
		for _, s := range segs {
			switch {
			case s.Name == r.pendSeg:
				st.BacklogBytes += max(s.Size-r.pendOff, 0)
			case s.Name > r.pendSeg:
				st.BacklogBytes += s.Size
			}
		}
	}
	if !r.pending.IsZero() {
		st.LagSeconds = max(r.cfg.Now().Sub(r.pending).Seconds(), 0)
	}
	return st
}
