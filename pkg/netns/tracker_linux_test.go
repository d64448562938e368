package netns

import (
	"context"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"
)

// sleeper runs sleep inside the named namespace and returns its pid.
func sleeper(t *testing.T, name string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", name, "sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func TestTrackerAdoptRelease(t *testing.T) {
	name := testNetns(t)
	proc := sleeper(t, name)
	var mu sync.Mutex
	pids := []int{proc.Process.Pid}
	var events []string
	tr := NewTracker(TrackerConfig{
		Scanner: Scanner{BindDirs: []string{}, Pids: func() ([]int, error) {
			mu.Lock()
			defer mu.Unlock()
			return append([]int(nil), pids...), nil
		}},
		Max: 4,
	}, func(ctx context.Context, h *Handle) (func(string), error) {
		ln, err := h.Listen(ctx, nil, "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		mu.Lock()
		events = append(events, "adopt "+h.ID().String())
		mu.Unlock()
		return func(reason string) {
			ln.Close()
			mu.Lock()
			events = append(events, reason+" "+h.ID().String())
			mu.Unlock()
		}, nil
	})

	// The sleeper is the namespace's only process once ip has exec'd it.
	var ch Change
	var err error
	for i := 0; i < 50; i++ {
		if ch, err = tr.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(tr.Served()) == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(tr.Served()) != 1 {
		t.Fatalf("Served() after Sync = %v (last change %+v); want the namespace", tr.Served(), ch)
	}
	id := tr.Served()[0]
	if ch, _ := tr.Sync(context.Background()); len(ch.Adopted)+len(ch.Released) != 0 {
		t.Errorf("second Sync = %+v; want no change", ch)
	}

	mu.Lock()
	pids = nil
	mu.Unlock()
	ch, err = tr.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Released) != 1 || ch.Released[0] != id || len(tr.Served()) != 0 {
		t.Fatalf("Sync after the process left = %+v, served %v; want %v released", ch, tr.Served(), id)
	}
	mu.Lock()
	want := []string{"adopt " + id.String(), ReasonGone + " " + id.String()}
	if len(events) != 2 || events[0] != want[0] || events[1] != want[1] {
		t.Errorf("events = %v; want %v", events, want)
	}
	mu.Unlock()
}

func TestTrackerRunKickAndStop(t *testing.T) {
	name := testNetns(t)
	proc := sleeper(t, name)
	adopted := make(chan ID, 4)
	released := make(chan string, 4)
	tr := NewTracker(TrackerConfig{
		Scanner:  Scanner{BindDirs: []string{}, Pids: func() ([]int, error) { return []int{proc.Process.Pid}, nil }},
		Interval: time.Hour, // only kicks and link events rescan
	}, func(ctx context.Context, h *Handle) (func(string), error) {
		adopted <- h.ID()
		return func(reason string) { released <- reason }, nil
	})
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	deadline := time.After(10 * time.Second)
	for got := false; !got; {
		tr.Kick()
		select {
		case <-adopted:
			got = true
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("Run did not adopt after Kick")
		}
	}
	cancel()
	<-done
	select {
	case r := <-released:
		if r != ReasonShutdown {
			t.Errorf("release reason at stop = %q; want %q", r, ReasonShutdown)
		}
	default:
		t.Error("Run returned without releasing")
	}
	if _, err := tr.Sync(context.Background()); err == nil {
		t.Error("Sync after Run ended = nil error; want closed")
	}
	// The link watch and timers are gone (allow the runtime a moment).
	for i := 0; i < 50 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines after Run = %d; want ≤ %d (before)", n, before)
	}
}
