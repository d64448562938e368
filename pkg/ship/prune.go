package ship

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// Pruner removes the oldest segment of the local log after recording it in
// a signed entry (*auditlog.Log does).
type Pruner interface {
	Prune(ctx context.Context, req auditlog.PruneRequest) (auditlog.PruneResult, error)
	FinishPrune(ctx context.Context) error
}

// Retention bounds the size of the local log (docs/SHIPPING.md, "Local
// retention").
type Retention struct {
	// MaxBytes is how many bytes of segment files the log directory may
	// hold; 0 keeps everything.
	MaxBytes int64
	// DropUnshipped lets retention delete segments that some sink has not
	// confirmed, recorded as a log.gap entry, when the log is over
	// MaxBytes. Off, retention stops at the first unshipped segment and
	// reports it.
	DropUnshipped bool
	Pruner        Pruner // required when MaxBytes > 0
}

// SegmentLocator is a SegmentSink that can name where it stores a
// segment, for the prune record.
type SegmentLocator interface {
	SegmentLocation(first, last uint64, t time.Time) string
}

// RetentionStatus reports local retention, for `vigil status` and metrics.
type RetentionStatus struct {
	MaxBytes         int64  `json:"max_bytes"`
	LocalBytes       int64  `json:"local_bytes"`              // segment bytes on the host at the last pass
	PrunedSegments   uint64 `json:"pruned_segments"`          // removed by this process
	PrunedThrough    uint64 `json:"pruned_through,omitempty"` // last seq removed by this process
	DroppedUnshipped uint64 `json:"dropped_unshipped"`        // entries removed without an off-host copy (each in a log.gap entry)
	Blocked          string `json:"blocked,omitempty"`        // why the log stays over budget
	LastError        string `json:"last_error,omitempty"`
}

// retainer enforces Retention; only Run's goroutine calls pass.
type retainer struct {
	s   *Shipper
	cfg Retention

	mu sync.Mutex
	st RetentionStatus
}

// RetentionStatus returns the state of local retention; ok=false when it
// is not configured.
func (s *Shipper) RetentionStatus() (RetentionStatus, bool) {
	if s.retain == nil {
		return RetentionStatus{}, false
	}
	s.retain.mu.Lock()
	defer s.retain.mu.Unlock()
	return s.retain.st, true
}

// Retain makes one retention pass: while the local segments are over the
// budget, it removes the oldest sealed segment that every sink confirmed
// (or, with DropUnshipped, the oldest one regardless). Run calls it after
// every interval.
func (s *Shipper) Retain(ctx context.Context) error {
	if s.retain == nil {
		return nil
	}
	err := s.retain.pass(ctx)
	s.retain.mu.Lock()
	s.retain.st.LastError = ""
	if err != nil {
		s.retain.st.LastError = err.Error()
	}
	s.retain.mu.Unlock()
	return err
}

func (rt *retainer) pass(ctx context.Context) error {
	if err := rt.cfg.Pruner.FinishPrune(ctx); err != nil {
		return fmt.Errorf("ship: retention: %w", err)
	}
	dir := rt.s.cfg.Dir
	for {
		segs, err := listLocal(dir)
		if err != nil {
			return err
		}
		var total int64
		for _, sg := range segs {
			total += sg.Size
		}
		rt.report(total, "")
		if total <= rt.cfg.MaxBytes {
			return nil
		}
		// The live segment and the newest sealed one (which ends with the
		// checkpoint recovery resumes from) always stay.
		if len(segs) < 3 {
			rt.report(total, fmt.Sprintf("the log holds %d bytes, over max_bytes %d, but only the live segment and the newest sealed one are left: raise max_bytes above two segments", total, rt.cfg.MaxBytes))
			return nil
		}
		seg := sealed(segs)[0]
		t, err := firstEntryTime(ctx, dir, seg)
		if err != nil {
			return err
		}
		shipped, missing := rt.s.shippedBy(seg, t)
		req := auditlog.PruneRequest{Segment: seg.Name, Shipped: shipped}
		if len(rt.s.runners) == 0 {
			// Nothing ships anything, so every deletion is a drop of
			// entries no sink holds, recorded as one.
			why := fmt.Sprintf("the log holds %d bytes, over max_bytes %d, and %s (seqs %d..%d) is not shipped: no sink configured",
				total, rt.cfg.MaxBytes, seg.Name, seg.First, seg.Last)
			if !rt.cfg.DropUnshipped {
				rt.report(total, why+": nothing is deleted (configure a sink, or drop_unshipped: true bounds the disk instead)")
				return nil
			}
			req.Unshipped, req.Reason = true, "local retention: "+why
		} else if len(missing) > 0 {
			why := fmt.Sprintf("the log holds %d bytes, over max_bytes %d, and %s (seqs %d..%d) is not confirmed by sink %s",
				total, rt.cfg.MaxBytes, seg.Name, seg.First, seg.Last, strings.Join(missing, ", "))
			if !rt.cfg.DropUnshipped {
				rt.report(total, why+": nothing is deleted until it is (drop_unshipped: true bounds the disk instead)")
				return nil
			}
			req.Unshipped, req.Reason = true, "local retention: "+why
		}
		res, err := rt.cfg.Pruner.Prune(ctx, req)
		if err != nil {
			return fmt.Errorf("ship: retention: %w", err)
		}
		rt.mu.Lock()
		rt.st.PrunedSegments++
		rt.st.PrunedThrough = res.Last
		if req.Unshipped {
			rt.st.DroppedUnshipped += res.Last - res.First + 1
		}
		rt.mu.Unlock()
		// auditlog logs each removal (an error for an unshipped one).
	}
}

// report publishes the size seen and why the log stays over budget.
func (rt *retainer) report(total int64, blocked string) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	// Once per episode: the message changes with every byte written.
	if blocked != "" && rt.st.Blocked == "" {
		rt.s.cfg.Logger.Warn("local log over its retention budget", "reason", blocked)
	}
	rt.st.LocalBytes, rt.st.Blocked = total, blocked
}

// shippedBy returns where each sink holds seg, and the sinks that have not
// confirmed it.
func (s *Shipper) shippedBy(seg sealedSegment, t time.Time) (map[string]string, []string) {
	shipped := map[string]string{}
	var missing []string
	for _, r := range s.runners {
		cur := r.cursor()
		name := r.sink.Name()
		switch k := r.sink.(type) {
		case SegmentSink:
			if cur.Segment == "" || cur.Segment < seg.Name {
				missing = append(missing, name)
				continue
			}
			loc := r.sink.Kind() + " segment " + seg.Name
			if l, ok := k.(SegmentLocator); ok {
				loc = l.SegmentLocation(seg.First, seg.Last, t)
			}
			shipped[name] = loc
		default:
			if cur.Seq < seg.Last {
				missing = append(missing, name)
				continue
			}
			shipped[name] = fmt.Sprintf("%s seqs %d..%d", r.sink.Kind(), seg.First, seg.Last)
		}
	}
	return shipped, missing
}

func newRetainer(s *Shipper, cfg Retention) (*retainer, error) {
	if cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("ship: retention max_bytes %d: want 0 (unbounded) or a positive size", cfg.MaxBytes)
	}
	if cfg.MaxBytes == 0 {
		return nil, nil
	}
	if cfg.Pruner == nil {
		return nil, errors.New("ship: retention needs the open log to record what it removes")
	}
	return &retainer{s: s, cfg: cfg, st: RetentionStatus{MaxBytes: cfg.MaxBytes}}, nil
}

// retainLoop runs retention passes until ctx ends.
func (s *Shipper) retainLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Retain(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("local retention failed; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
