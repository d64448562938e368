package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// DefaultInterval is how often Run rescans when nothing else prompts it.
const DefaultInterval = 5 * time.Second

// minSyncGap is the least time between two rescans of Run.
const minSyncGap = 100 * time.Millisecond

// Reasons passed to a release function.
const (
	ReasonGone     = "gone"     // no process and no bind mount holds the namespace any more
	ReasonShutdown = "shutdown" // the tracker is closing
)

// AdoptFunc serves a namespace that appeared: it binds what it needs
// inside h and returns how to undo it. h stays open until release has
// returned; release must let go of everything that holds the namespace
// (listeners), or the namespace never goes away.
type AdoptFunc func(ctx context.Context, h *Handle) (release func(reason string), err error)

// TrackerConfig configures a Tracker.
type TrackerConfig struct {
	Scanner  Scanner
	Exclude  []ID          // never adopted (the agent's own namespace)
	Max      int           // namespaces adopted at once; 0 means no limit
	Interval time.Duration // rescan period of Run; default DefaultInterval
	Logger   *slog.Logger  // default: discard
}

// Tracker adopts every namespace a scan finds and releases the ones a
// later scan no longer finds. Its methods are safe for concurrent use.
type Tracker struct {
	cfg   TrackerConfig
	adopt AdoptFunc
	log   *slog.Logger
	kick  chan struct{}

	syncMu sync.Mutex // one Sync at a time
	mu     sync.Mutex // guards served
	served map[ID]*tracked
	failed map[ID]bool // adoption failed once: logged, retried quietly; guarded by syncMu
	closed bool
}

type tracked struct {
	h       *Handle
	release func(reason string)
}

// Change is what one Sync did.
type Change struct {
	Adopted  []ID
	Released []ID
	Failed   int // namespaces that could not be adopted (retried on the next Sync)
	Skipped  int // namespaces not adopted because Max was reached
}

// NewTracker returns a Tracker that calls adopt for each new namespace.
func NewTracker(cfg TrackerConfig, adopt AdoptFunc) *Tracker {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tracker{cfg: cfg, adopt: adopt, log: cfg.Logger, kick: make(chan struct{}, 1),
		served: make(map[ID]*tracked), failed: make(map[ID]bool)}
}

// Kick asks Run for a rescan soon; it never blocks, and kicks that
// arrive before the rescan starts share it.
func (t *Tracker) Kick() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Served returns the IDs of the namespaces adopted now.
func (t *Tracker) Served() []ID {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := make([]ID, 0, len(t.served))
	for id := range t.served {
		ids = append(ids, id)
	}
	return ids
}

// plan decides, from what is served and what a scan found, which
// namespaces to adopt (in scan order, up to max served in all) and which
// to release. skipped counts those left out by max.
func plan(served map[ID]bool, found []Found, exclude []ID, max int) (adopt []Found, release []ID, skipped int) {
	present := make(map[ID]bool, len(found))
	for _, f := range found {
		present[f.ID] = true
	}
	for id := range served {
		if !present[id] || slices.Contains(exclude, id) {
			release = append(release, id)
		}
	}
	slices.SortFunc(release, func(a, b ID) int {
		if a.Dev != b.Dev {
			return cmpU64(a.Dev, b.Dev)
		}
		return cmpU64(a.Ino, b.Ino)
	})
	n := len(served) - len(release)
	for _, f := range found {
		if served[f.ID] || slices.Contains(exclude, f.ID) {
			continue
		}
		if max > 0 && n >= max {
			skipped++
			continue
		}
		adopt = append(adopt, f)
		n++
	}
	return adopt, release, skipped
}

// Sync scans once, releases the namespaces that are gone and adopts the
// new ones. Releases come first, so that a full table makes room.
func (t *Tracker) Sync(ctx context.Context) (Change, error) {
	t.syncMu.Lock()
	defer t.syncMu.Unlock()
	found, err := t.cfg.Scanner.Scan()
	if err != nil {
		return Change{}, err
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return Change{}, errors.New("netns: tracker closed")
	}
	served := make(map[ID]bool, len(t.served))
	for id := range t.served {
		served[id] = true
	}
	t.mu.Unlock()

	toAdopt, toRelease, skipped := plan(served, found, t.cfg.Exclude, t.cfg.Max)
	ch := Change{Skipped: skipped}
	for _, id := range toRelease {
		t.releaseOne(id, ReasonGone)
		ch.Released = append(ch.Released, id)
	}
	present := make(map[ID]bool, len(found))
	for _, f := range found {
		present[f.ID] = true
	}
	for id := range t.failed {
		if !present[id] {
			delete(t.failed, id)
		}
	}
	for _, f := range toAdopt {
		if err := ctx.Err(); err != nil {
			return ch, err
		}
		if err := t.adoptOne(ctx, f); err != nil {
			ch.Failed++
			if !t.failed[f.ID] {
				t.failed[f.ID] = true
				t.log.Warn("network namespace not served", "netns", f.ID.String(), "path", f.Path, "err", err)
			}
			continue
		}
		delete(t.failed, f.ID)
		ch.Adopted = append(ch.Adopted, f.ID)
	}
	if skipped > 0 {
		t.log.Warn("network namespaces not served: limit reached", "max", t.cfg.Max, "skipped", skipped)
	}
	return ch, nil
}

func (t *Tracker) adoptOne(ctx context.Context, f Found) error {
	h, err := Open(f.Path, f.ID)
	if err != nil {
		return err
	}
	release, err := t.adopt(ctx, h)
	if err != nil {
		_ = h.Close()
		return fmt.Errorf("netns: adopt %s: %w", f.ID, err)
	}
	t.mu.Lock()
	t.served[f.ID] = &tracked{h: h, release: release}
	t.mu.Unlock()
	return nil
}

func (t *Tracker) releaseOne(id ID, reason string) {
	t.mu.Lock()
	tr := t.served[id]
	delete(t.served, id)
	t.mu.Unlock()
	if tr == nil {
		return
	}
	if tr.release != nil {
		tr.release(reason)
	}
	_ = tr.h.Close()
}

// Run rescans on every Kick, on every network link that appears in or
// leaves the calling thread's namespace (a pod's veth) and every
// Interval, until ctx ends; then it releases every namespace. A link
// watch that cannot start is logged; the periodic rescan still runs.
func (t *Tracker) Run(ctx context.Context) {
	defer t.Close()
	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone, err := WatchLinks(watchCtx, t.Kick)
	if err != nil {
		t.log.Warn("network link watch unavailable: namespaces are found by periodic rescan only", "interval", t.cfg.Interval, "err", err)
	}
	defer func() {
		stopWatch()
		if watchDone != nil {
			<-watchDone
		}
	}()
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.kick:
		}
		if _, err := t.Sync(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("network namespace scan failed", "err", err)
		}
		// A stream of kicks (reports from a namespace that cannot be
		// served) rescans at most this often.
		select {
		case <-ctx.Done():
			return
		case <-time.After(minSyncGap):
		}
	}
}

// Close releases every adopted namespace (reason ReasonShutdown); Sync
// fails afterwards.
func (t *Tracker) Close() {
	t.syncMu.Lock()
	defer t.syncMu.Unlock()
	t.mu.Lock()
	t.closed = true
	ids := make([]ID, 0, len(t.served))
	for id := range t.served {
		ids = append(ids, id)
	}
	t.mu.Unlock()
	for _, id := range ids {
		t.releaseOne(id, ReasonShutdown)
	}
}
