package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Holder holds the policy in force and replaces it whole: a decision uses
// the policy Current returned, never half of an old one and half of a new
// one. It is safe for concurrent use.
type Holder struct {
	cur atomic.Pointer[Policy]
	mu  sync.Mutex // serializes replacements, so that Reload's old is the one it replaced
}

// NewHolder returns a Holder holding p, which must not be nil: an agent
// without a valid policy has nothing to fall back on.
func NewHolder(p *Policy) *Holder {
	if p == nil {
		panic("policy: NewHolder(nil)")
	}
	h := &Holder{}
	h.cur.Store(p)
	return h
}

// Current returns the policy in force.
func (h *Holder) Current() *Policy { return h.cur.Load() }

// Reload loads path and, if it is valid, puts it in force. On error the
// policy in force stays (old is it, new is nil) and err says why (a
// *ValidationError for a bad file).
func (h *Holder) Reload(path string) (old, new *Policy, err error) {
	data, err := readFile(path)
	if err != nil {
		return h.Current(), nil, err
	}
	return h.replace(path, data)
}

func (h *Holder) replace(path string, data []byte) (old, new *Policy, err error) {
	p, err := Parse(path, data)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		return h.cur.Load(), nil, err
	}
	return h.cur.Swap(p), p, nil
}

// rehashEvery is how many polls Watch lets pass between reading a file
// whose size and modification time did not change, in case a writer kept
// them (cp -p, coarse timestamps).
const rehashEvery = 30

// Watch polls path every interval (2s when interval ≤ 0) until ctx is
// done, and reloads it when its contents change. onChange, if not nil, is
// called from Watch's goroutine after each attempt: with the replaced and
// the new policy, or with the policy that stays in force and the error
// (once per distinct problem, not on every poll).
//
// Watch polls instead of using inotify on purpose. Kubernetes updates a
// mounted ConfigMap by writing a new directory and swapping a ..data
// symlink in the parent directory: the policy file itself is never
// written, so a watch on it sees nothing (or only IN_DELETE_SELF, after
// which it must be re-armed on the new target), and editors replace files
// by rename with the same effect. A stat every interval follows symlinks,
// costs next to nothing and sees every kind of update. A change is
// confirmed by the SHA-256 of the contents, so a touch or a rewrite with
// the same bytes reloads nothing.
//
// A file caught half-written is reported as invalid and keeps the old
// policy; the next poll sees the finished file and loads it.
func (h *Holder) Watch(ctx context.Context, path string, interval time.Duration, onChange func(old, new *Policy, err error)) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	w := watcher{h: h, path: path, onChange: onChange, sum: h.Current().SHA256()}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.poll()
		}
	}
}

// watcher is the state of one Watch.
type watcher struct {
	h        *Holder
	path     string
	onChange func(old, new *Policy, err error)
	info     os.FileInfo // at the last read; nil before the first
	sum      string      // SHA-256 of the contents last read
	polls    int         // since the last read
	lastErr  string      // last error reported
}

func (w *watcher) poll() {
	w.polls++
	fi, err := os.Stat(w.path)
	if err != nil {
		w.info = nil // read again once it is back
		w.fail(err)
		return
	}
	if w.info != nil && os.SameFile(w.info, fi) && fi.Size() == w.info.Size() &&
		fi.ModTime().Equal(w.info.ModTime()) && w.polls < rehashEvery {
		return
	}
	w.polls = 0
	data, err := readFile(w.path)
	if err != nil {
		w.info = nil
		w.fail(err)
		return
	}
	w.info = fi
	s := sha256.Sum256(data)
	sum := hex.EncodeToString(s[:])
	if sum == w.sum {
		if sum == w.h.Current().SHA256() {
			w.lastErr = "" // back to what is in force
		}
		return
	}
	w.sum = sum
	if sum == w.h.Current().SHA256() {
		w.lastErr = "" // already in force, e.g. by Reload
		return
	}
	old, p, err := w.h.replace(w.path, data)
	if err != nil {
		w.fail(err)
		return
	}
	w.lastErr = ""
	if w.onChange != nil {
		w.onChange(old, p, nil)
	}
}

// fail reports err unless it was the last thing reported.
func (w *watcher) fail(err error) {
	if err.Error() == w.lastErr {
		return
	}
	w.lastErr = err.Error()
	if w.onChange != nil {
		w.onChange(w.h.Current(), nil, err)
	}
}
