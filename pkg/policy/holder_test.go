package policy

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	policyAllow = "apiVersion: vigil.dev/v1\ndefault: allow\n"
	policyDeny  = "apiVersion: vigil.dev/v1\ndefault: deny\nrules:\n  - {name: web, action: allow, match: {dst: {ports: [\"80\"]}}}\n"
	policyBad   = "apiVersion: vigil.dev/v1\ndefault: maybe\n"
)

// writeFile replaces path atomically, as editors and ConfigMap updates do,
// so the poller never reads a half-written file: one edit, one report.
func writeFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func mustLoad(t *testing.T, path string) *Policy {
	t.Helper()
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHolderReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyAllow)
	first := mustLoad(t, path)
	h := NewHolder(first)
	if h.Current() != first {
		t.Fatal("Current() is not the policy given to NewHolder")
	}

	writeFile(t, path, policyBad)
	old, p, err := h.Reload(path)
	var ve *ValidationError
	if !errors.As(err, &ve) || old != first || p != nil || h.Current() != first {
		t.Fatalf("Reload(bad) = %v, %v, %v; want the old policy kept and a *ValidationError", old, p, err)
	}
	if !strings.Contains(err.Error(), `policy.yaml:2:10: default: unknown action "maybe"`) {
		t.Errorf("Reload(bad) error = %v", err)
	}

	writeFile(t, path, policyDeny)
	old, p, err = h.Reload(path)
	if err != nil || old != first || p == nil || h.Current() != p {
		t.Fatalf("Reload(good) = %v, %v, %v", old, p, err)
	}
	if d := h.Current().Decide(Input{Dst: netip.MustParseAddrPort("10.0.0.1:81")}); d.Action != Deny {
		t.Errorf("new policy decided %+v", d)
	}

	os.Remove(path)
	if old, p, err := h.Reload(path); err == nil || old != h.Current() || p != nil {
		t.Errorf("Reload(missing) = %v, %v, %v", old, p, err)
	}
}

// event is one onChange call.
type event struct {
	old, new *Policy
	err      error
}

// watch starts Watch on path and returns its events.
func watch(t *testing.T, h *Holder, path string) <-chan event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan event, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Watch(ctx, path, 5*time.Millisecond, func(old, new *Policy, err error) { events <- event{old, new, err} })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return events
}

func next(t *testing.T, events <-chan event) event {
	t.Helper()
	select {
	case e := <-events:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported within 5s")
		return event{}
	}
}

func quiet(t *testing.T, events <-chan event) {
	t.Helper()
	select {
	case e := <-events:
		t.Fatalf("unexpected change reported: %+v", e)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyAllow)
	first := mustLoad(t, path)
	h := NewHolder(first)
	events := watch(t, h, path)
	quiet(t, events) // the file in force is not reloaded

	writeFile(t, path, policyDeny)
	e := next(t, events)
	if e.err != nil || e.old != first || e.new == nil || h.Current() != e.new || len(e.new.Rules()) != 1 {
		t.Fatalf("after an edit: %+v", e)
	}
	second := e.new

	// Same bytes again (a touch, a rewrite): nothing to reload.
	writeFile(t, path, policyDeny)
	future := time.Now().Add(time.Hour)
	os.Chtimes(path, future, future)
	quiet(t, events)

	// A bad file is reported once and the policy stays.
	writeFile(t, path, policyBad)
	e = next(t, events)
	var ve *ValidationError
	if !errors.As(e.err, &ve) || e.old != second || e.new != nil || h.Current() != second {
		t.Fatalf("after a bad edit: %+v", e)
	}
	quiet(t, events)

	// The file goes away, then comes back fixed.
	os.Remove(path)
	e = next(t, events)
	if !errors.Is(e.err, os.ErrNotExist) || h.Current() != second {
		t.Fatalf("after removal: %+v", e)
	}
	quiet(t, events)
	writeFile(t, path, policyAllow)
	e = next(t, events)
	if e.err != nil || e.old != second || h.Current() != e.new || e.new.Default().Action != Allow {
		t.Fatalf("after the fix: %+v", e)
	}
}

// TestWatchConfigMap replays how the kubelet updates a mounted ConfigMap:
// policy.yaml -> ..data/policy.yaml, ..data -> ..<timestamp>, and an update
// writes a new timestamped directory and renames a new ..data link over
// the old one. The policy file itself is never written.
func TestWatchConfigMap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, data string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "policy.yaml"), data)
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..2024_01_01_00_00_00.1", policyAllow)
	path := filepath.Join(dir, "policy.yaml")
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), path); err != nil {
		t.Fatal(err)
	}
	first := mustLoad(t, path)
	h := NewHolder(first)
	events := watch(t, h, path)
	quiet(t, events)

	version("..2024_01_01_00_00_01.2", policyDeny)
	e := next(t, events)
	if e.err != nil || e.old != first || h.Current() != e.new || e.new.Default().Action != Deny {
		t.Fatalf("after the ConfigMap update: %+v", e)
	}
	os.RemoveAll(filepath.Join(dir, "..2024_01_01_00_00_00.1"))
	quiet(t, events)
}

// TestHolderConcurrent reads the policy while it is replaced; run it with
// -race.
func TestHolderConcurrent(t *testing.T) {
	a, err := Parse("a", []byte(policyAllow))
	if err != nil {
		t.Fatal(err)
	}
	h := NewHolder(a)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := h.Current()
				d := p.Decide(Input{Dst: netip.MustParseAddrPort("10.0.0.1:80")})
				if d.Action != p.Default().Action && d.Rule != "web" {
					t.Errorf("decision %+v from policy with default %v", d, p.Default())
					return
				}
			}
		})
	}
	for i := range 50 {
		writeFile(t, path, []string{policyAllow, policyDeny}[i%2])
		if _, _, err := h.Reload(path); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestNewHolderNil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewHolder(nil) did not panic")
		}
	}()
	NewHolder(nil)
}
