package agent

import (
	"context"
	"strconv"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// lossCheckInterval is how often the kernel's lost-event counter is read.
const lossCheckInterval = time.Second

// gapRecorder is where a loss is recorded: the audit log.
type gapRecorder interface {
	AppendSync(ctx context.Context, e auditlog.Entry) (uint64, error)
}

// lossWatch turns increases of the kernel's count of events dropped on a
// full ring buffer (bpf/connect.c, events_lost) into signed log.gap
// entries, so a loss is in the log itself and not only in a counter that
// status shows and a restart forgets.
type lossWatch struct {
	read   func() (uint64, error) // the kernel's running total
	log    gapRecorder
	base   uint64 // total already recorded (or present at start)
	primed bool
}

// check reads the counter once and records what was lost since the last
// recorded total. The first reading is the baseline: the agent start
// entry covers what came before. A failed read or append is tried again
// at the next check, with nothing skipped.
func (w *lossWatch) check(ctx context.Context) error {
	total, err := w.read()
	if err != nil {
		return err // status reports the counters' read error
	}
	if !w.primed || total < w.base {
		// First reading, or the maps were recreated and count from zero.
		w.base, w.primed = total, true
		return nil
	}
	if total == w.base {
		return nil
	}
	delta := total - w.base
	_, err = w.log.AppendSync(ctx, auditlog.Entry{Type: auditlog.LogGap, Attrs: map[string]string{
		"source":      "kernel",
		"events_lost": strconv.FormatUint(delta, 10),
		"total":       strconv.FormatUint(total, 10),
		"reason":      "kernel event ring buffer full: events (kernel denies, bypasses, UDP) were dropped before the agent read them",
	}})
	if err != nil {
		return err
	}
	w.base = total
	return nil
}

// watchEventLoss checks the kernel's lost-event counter every
// lossCheckInterval until ctx ends.
func (a *Agent) watchEventLoss(ctx context.Context) {
	w := &lossWatch{log: a.audit, read: func() (uint64, error) {
		ks := a.kernelStatus(time.Now())
		return ks.stats.EventsLost, ks.statsErr
	}}
	_ = w.check(ctx) // baseline
	t := time.NewTicker(lossCheckInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			// One last look, so a loss in the final second is recorded
			// too (best effort: the maps may be closing).
			_ = w.check(context.WithoutCancel(ctx))
			return
		case <-t.C:
		}
		before := w.base
		err := w.check(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			a.log.Error("cannot record lost kernel events", "err", err)
			failing = true
		case err == nil:
			failing = false
			if w.base > before {
				a.log.Warn("kernel events lost: ring buffer full (recorded as log.gap)", "events_lost", w.base-before, "total", w.base)
			}
		}
	}
}
