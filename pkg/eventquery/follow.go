package eventquery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// Follow calls emit for every entry with seq ≥ from that matches f, first
// those already in the log and then each new one as it is appended, like
// tail -f. It moves on to the next segment when the writer rotates, and
// returns when ctx ends (with nil) or the log is damaged.
func (s *Source) Follow(ctx context.Context, f *Filter, from uint64, emit Emit) error {
	poll := s.Poll
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	wait := func() bool {
		t := time.NewTimer(poll)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	// Find the segment holding from (or the first one after it).
	var cur segment
	for {
		segs, err := listSegments(s.Dir)
		if err != nil {
			return err
		}
		for _, sg := range segs {
			if sg.firstSeq <= from || cur.name == "" {
				cur = sg
			}
		}
		if cur.name != "" {
			break
		}
		if !wait() {
			return nil
		}
	}
	t := &tailer{src: s, f: f, from: from, emit: emit}
	for {
		done, err := t.drain(ctx, cur)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if done {
			// The current segment is finished: a newer one exists and
			// everything in this one was read.
			next, ok, err := nextSegment(s.Dir, cur)
			if err != nil {
				return err
			}
			if ok {
				cur = next
				t.reset()
				continue
			}
		}
		if !wait() {
			return nil
		}
	}
}

// tailer reads one segment incrementally across polls.
type tailer struct {
	src  *Source
	f    *Filter
	from uint64
	emit Emit

	off      int64 // next frame to read; 0 before the header was read
	prev     [32]byte
	tornSeen bool // the last poll ended on a damaged frame
}

func (t *tailer) reset() {
	t.off, t.prev, t.tornSeen = 0, [32]byte{}, false
}

// drain reads what is new in seg. It reports done when a newer segment
// exists and seg was read to a clean end.
func (t *tailer) drain(ctx context.Context, seg segment) (bool, error) {
	file, err := os.Open(seg.path)
	if err != nil {
		return false, fmt.Errorf("eventquery: %w", err)
	}
	defer file.Close()
	if t.off == 0 {
		h, err := readSegHeader(file, seg.name)
		if errors.Is(err, errTorn) {
			return false, nil // the writer is creating it
		}
		if err != nil {
			return false, err
		}
		t.off, t.prev = h.end, h.prevHash
	}
	fs, err := newFrameScanner(file, t.off)
	if err != nil {
		return false, fmt.Errorf("eventquery: %w", err)
	}
	var rec record
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		body, off, err := fs.next()
		if err != nil {
			_, newer, lerr := nextSegment(t.src.Dir, seg)
			if lerr != nil {
				return false, lerr
			}
			if errors.Is(err, io.EOF) {
				return newer, nil
			}
			// A damaged frame is a write in progress, unless the writer
			// has moved on and it is still damaged one poll later.
			if newer && t.tornSeen {
				return false, &CorruptError{Segment: seg.name, Offset: off, Reason: err.Error()}
			}
			t.tornSeen = newer
			return false, nil
		}
		t.tornSeen = false
		switch body[0] {
		case kindEntry:
		case kindCheck:
			t.off = fs.off
			continue
		default:
			return false, &CorruptError{Segment: seg.name, Offset: off, Reason: fmt.Sprintf("unknown record kind %d", body[0])}
		}
		if err := parseEntryFrame(body, &rec); err != nil {
			return false, &CorruptError{Segment: seg.name, Offset: off, Reason: err.Error()}
		}
		rec.off = off
		e := &rec.entry
		if e.Seq >= t.from && t.f.Match(e) {
			if err := verifyRecord(t.src.Verifier, seg, &rec, t.prev); err != nil {
				return false, err
			}
			if err := t.emit(e); err != nil {
				return false, err
			}
		}
		t.prev = rec.hash
		t.off = fs.off
	}
}

// nextSegment returns the segment after cur, if the writer has created one.
func nextSegment(dir string, cur segment) (segment, bool, error) {
	segs, err := listSegments(dir)
	if err != nil {
		return segment{}, false, err
	}
	for _, sg := range segs {
		if sg.firstSeq > cur.firstSeq {
			return sg, true, nil
		}
	}
	return segment{}, false, nil
}

// DefaultFollowHistory is how many past events Run prints before following
// when the filter sets no starting point or limit (like tail -f).
const DefaultFollowHistory = 10

// Run answers a query the way `vigil events` and GET /v1/events do: without
// follow it is Query; with follow it emits the matching history in seq
// order (the last DefaultFollowHistory entries unless the filter has a
// limit, a since or a from-seq), then follows the log until ctx ends.
func (s *Source) Run(ctx context.Context, f *Filter, follow bool, emit Emit) error {
	if !follow {
		_, err := s.Query(ctx, f, emit)
		return err
	}
	if f.Reverse {
		return errors.New("eventquery: follow prints oldest first; it cannot be combined with reverse")
	}
	hist := *f
	hist.Reverse = true
	if hist.Limit == 0 && hist.Since.IsZero() && hist.FromSeq <= 1 {
		hist.Limit = DefaultFollowHistory
	}
	var past []auditlog.Entry
	st, err := s.Query(ctx, &hist, func(e *auditlog.Entry) error {
		past = append(past, *e)
		return nil
	})
	if err != nil && !errors.Is(err, ErrNoLog) {
		return err
	}
	for i := len(past) - 1; i >= 0; i-- {
		if err := emit(&past[i]); err != nil {
			return err
		}
	}
	live := *f
	live.Limit = 0
	from := max(st.EndSeq+1, f.FromSeq)
	if len(past) > 0 {
		from = max(from, past[0].Seq+1)
	}
	return s.Follow(ctx, &live, from, emit)
}
