package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/atomicfile"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
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
	read   func(fresh bool) (lossReading, error) // the kernel's running total; fresh: not a cached reading
	log    gapRecorder
	base   uint64 // total already recorded (or present at start)
	primed bool
	last   uint64 // events the last check recorded as lost
	// statePath, when set, keeps the recorded total across restarts. A
	// fail-closed agent leaves its counters pinned, and the kernel keeps
	// counting while no agent reads the ring buffer; the next agent
	// records that loss instead of taking it as its baseline.
	statePath string
	// created: the counter was created at zero for this agent, so all it
	// counts is this agent's to record, from the first reading on.
	created bool
}

// lossReading is one reading of the kernel's lost-event counter.
type lossReading struct {
	total uint64
	// counter names the counter read (boot id and map id): a total is
	// only comparable with a total of the same counter. Empty: unknown.
	counter string
}

// lossState is what statePath holds.
type lossState struct {
	Counter  string `json:"counter"`
	Recorded uint64 `json:"recorded"`
}

// lossStateFile is the name of the state file in the data directory.
const lossStateFile = "kernel-events.state"

// check reads the counter once and records what was lost since the last
// recorded total. For a counter this agent created, that is everything
// since zero. For an adopted one the first reading is the baseline, unless
// the state file shows the same counter with less recorded: what was lost
// since then (while no agent ran) is recorded now. A failed read or append is
// tried again at the next check, with nothing skipped.
func (w *lossWatch) check(ctx context.Context, fresh bool) error {
	w.last = 0
	r, err := w.read(fresh)
	if err != nil {
		return err // status reports the counters' read error
	}
	total := r.total
	reason := "kernel event ring buffer full: events (kernel denies, bypasses, UDP) were dropped before the agent read them"
	if !w.primed && w.created {
		// Events may have been dropped before the first reading: the
		// programs run from the moment they are attached.
		w.primed = true
		w.saveState(r.counter)
	}
	if !w.primed {
		w.base, w.primed = total, true
		if st, ok := w.loadState(); ok && r.counter != "" && st.Counter == r.counter && st.Recorded <= total {
			w.base = st.Recorded
			reason = "kernel event ring buffer full while no agent read it (fail-closed, agent stopped): events (kernel denies, bypasses, UDP) were dropped"
		} else {
			w.saveState(r.counter)
			return nil
		}
	}
	if total < w.base {
		// The maps were recreated and count from zero.
		w.base = total
		w.saveState(r.counter)
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
		"reason":      reason,
	}})
	if err != nil {
		return err
	}
	w.base, w.last = total, delta
	w.saveState(r.counter)
	return nil
}

func (w *lossWatch) loadState() (lossState, bool) {
	if w.statePath == "" {
		return lossState{}, false
	}
	b, err := os.ReadFile(w.statePath)
	if err != nil {
		return lossState{}, false
	}
	var st lossState
	if json.Unmarshal(b, &st) != nil {
		return lossState{}, false
	}
	return st, true
}

// saveState records the total accounted for. A failure is harmless in
// one direction only: the next agent may record the same loss again,
// said twice rather than not at all.
func (w *lossWatch) saveState(counter string) {
	if w.statePath == "" || counter == "" {
		return
	}
	b, err := json.Marshal(lossState{Counter: counter, Recorded: w.base})
	if err != nil {
		return
	}
	_ = atomicfile.Write(w.statePath, append(b, '\n'), 0o600)
}

// bootID names this boot of the kernel; map ids restart with it.
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// watchEventLoss checks the kernel's lost-event counter every
// lossCheckInterval until ctx ends.
func (a *Agent) watchEventLoss(ctx context.Context) {
	boot := bootID()
	w := &lossWatch{log: a.audit, statePath: filepath.Join(a.cfg.DataDir, lossStateFile), created: !a.icpt.AdoptedCounters(), read: func(fresh bool) (lossReading, error) {
		var st intercept.Stats
		var err error
		if fresh {
			st, err = a.icpt.Stats()
		} else {
			ks := a.kernelStatus(time.Now())
			st, err = ks.stats, ks.statsErr
		}
		r := lossReading{total: st.EventsLost}
		if boot != "" && st.CountersID != 0 {
			r.counter = fmt.Sprintf("%s/%d", boot, st.CountersID)
		}
		return r, err
	}}
	report := func(err error) (failing bool) {
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.Error("cannot record lost kernel events", "err", err)
			return true
		case w.last > 0:
			a.log.Warn("kernel events lost: ring buffer full (recorded as log.gap)", "events_lost", w.last, "total", w.base)
		}
		return false
	}
	failing := report(w.check(ctx, true)) // baseline, or what was lost while no agent ran
	t := time.NewTicker(lossCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// One last look, so a loss in the final second is recorded
			// too. The agent keeps the maps open until this returns, and
			// a fail-open agent has detached the programs before, so
			// nothing is lost after it.
			report(w.check(context.WithoutCancel(ctx), true))
			return
		case <-t.C:
		}
		err := w.check(ctx, false)
		if err != nil && failing {
			continue // said once until it recovers
		}
		failing = report(err)
	}
}
