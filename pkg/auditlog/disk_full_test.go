//go:build linux

package auditlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
)

// mountTmpfs mounts a tmpfs of the given size on a new directory and
// unmounts it when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Need(t, "root", "mounts a size-limited tmpfs to fill it")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		testenv.Need(t, "CAP_SYS_ADMIN", fmt.Sprintf("mount -t tmpfs -o size=%s tmpfs %s: %v", size, dir, err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("umount %s: %v", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// TestDiskFull fills the file system under a live log while appenders keep
// going, then frees space, and checks that the log refuses entries loudly
// while full, loses nothing it acknowledged, resumes by itself, and records
// exactly how many entries it lost in a log.gap entry.
func TestDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "2m")
	ctx := context.Background()
	sv := testSigner(t)
	dir := filepath.Join(mnt, "log")
	l, err := Open(ctx, dir, Options{
		Signer:          sv,
		Host:            "host-full",
		SegmentMaxBytes: 256 << 10,
		CheckpointEvery: 500,
		RetryInterval:   10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			l.Close(ctx)
		}
	}()

	var (
		refused, failed atomic.Int64 // Append errors, Ack errors
		okAfterResume   atomic.Int64
		resumed         atomic.Bool
		mu              sync.Mutex
		durable         = map[string]uint64{} // entry id → seq, once acknowledged
		badErr          error                 // first error that is not the expected kind
	)
	checkErr := func(err error) {
		if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no space left") {
			mu.Lock()
			if badErr == nil {
				badErr = err
			}
			mu.Unlock()
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		type pending struct {
			id  string
			ack *Ack
		}
		acks := make(chan pending, 64)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(acks)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("%d-%d", w, i)
				e := sampleEntry(i)
				e.Attrs = map[string]string{"id": id, "pad": strings.Repeat("x", 200)}
				ack, err := l.Append(ctx, e)
				if err != nil {
					refused.Add(1)
					checkErr(err)
					time.Sleep(100 * time.Microsecond)
					continue
				}
				acks <- pending{id, ack}
			}
		}()
		go func() {
			defer wg.Done()
			for p := range acks {
				id, ack := p.id, p.ack
				if err := ack.Wait(ctx); err != nil {
					failed.Add(1)
					checkErr(err)
					continue
				}
				mu.Lock()
				durable[id] = ack.Seq
				mu.Unlock()
				if resumed.Load() {
					okAfterResume.Add(1)
				}
			}
		}()
	}
	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("timed out after %s waiting for %s (stats %+v)", limit, what, l.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Fill the disk, and keep appending into the outage for a while. While
	// full, the log may resume briefly whenever cutting back a failed batch
	// left room for a log.gap entry; it fails again on the next batch.
	waitFor("appends to fail on a full disk", 20*time.Second, func() bool { return refused.Load()+failed.Load() > 0 })
	waitFor("more appends to fail", 5*time.Second, func() bool { return refused.Load()+failed.Load() > 500 })

	// Free space: the log must notice by itself and resume.
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT, "size=8m"); err != nil {
		t.Fatalf("mount -o remount,size=8m %s: %v", mnt, err)
	}
	waitFor("the log to resume", 5*time.Second, func() bool { return l.Stats().Err == nil })
	resumed.Store(true)
	waitFor("appends after resuming", 10*time.Second, func() bool { return okAfterResume.Load() >= 200 })
	close(stop)
	wg.Wait()
	st := l.Stats()
	if err := l.Close(ctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	closed = true
	if badErr != nil {
		t.Errorf("an append failed with %v; want errors wrapping ErrUnavailable that say no space is left", badErr)
	}
	lost := uint64(refused.Load() + failed.Load())
	t.Logf("%d acknowledged, %d refused by Append, %d failed after Append; stats: %d durable, %d lost",
		len(durable), refused.Load(), failed.Load(), st.DurableSeq, st.Lost)
	if st.Lost != lost {
		t.Errorf("Stats().Lost = %d; want %d (refused + failed)", st.Lost, lost)
	}

	rep, err := Verify(ctx, dir, sv, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	got := map[uint64]Entry{}
	var gapLost uint64
	gaps := 0
	if err := Scan(ctx, dir, 1, func(r Record) error {
		got[r.Entry.Seq] = r.Entry
		if r.Entry.Type == LogGap {
			n, err := strconv.ParseUint(r.Entry.Attr("lost"), 10, 64)
			if err != nil {
				return fmt.Errorf("log.gap seq %d: lost = %q: %w", r.Entry.Seq, r.Entry.Attr("lost"), err)
			}
			if !strings.Contains(r.Entry.Attr("reason"), "no space left") {
				t.Errorf("log.gap seq %d reason = %q; want it to say the disk was full", r.Entry.Seq, r.Entry.Attr("reason"))
			}
			gapLost += n
			gaps++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if uint64(len(got)) != rep.Entries {
		t.Errorf("Scan saw %d entries; Verify %d", len(got), rep.Entries)
	}
	if gaps == 0 || gapLost != lost {
		t.Errorf("%d log.gap entries record %d lost entries; want ≥ 1 recording %d (refused + failed)", gaps, gapLost, lost)
	}
	for id, seq := range durable {
		if e, ok := got[seq]; !ok || e.Attr("id") != id {
			t.Fatalf("entry %s was acknowledged durable at seq %d; the log holds %+v there", id, seq, e)
		}
	}
}

// TestCloseWhileFull closes a log that cannot be written: the entries lost
// meanwhile must still be said out loud, by the next Open, as a log.gap.
func TestCloseWhileFull(t *testing.T) {
	mnt := mountTmpfs(t, "1m")
	ctx := context.Background()
	sv := testSigner(t)
	dir := filepath.Join(mnt, "log")
	l, err := Open(ctx, dir, Options{Signer: sv, RetryInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Fill the file system from outside, leaving a few KiB.
	filler, err := os.Create(filepath.Join(mnt, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if _, err := filler.Write(buf); err != nil {
			break
		}
	}
	filler.Close()
	lost := 0
	for i := 0; i < 200 && lost < 20; i++ {
		if _, err := l.AppendSync(ctx, sampleEntry(i)); err != nil {
			lost++
		}
	}
	if lost == 0 {
		t.Fatal("no append failed on a full file system")
	}
	if err := l.Close(ctx); err == nil {
		t.Fatal("Close of a failing log returned nil")
	}
	os.Remove(filepath.Join(mnt, "filler"))
	l, err = Open(ctx, dir, Options{Signer: sv})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var gap *Entry
	Scan(ctx, dir, 1, func(r Record) error {
		if r.Entry.Type == LogGap {
			e := r.Entry
			gap = &e
		}
		return nil
	})
	if gap == nil {
		t.Fatal("no log.gap entry after reopening a log closed while full")
	}
	if n, _ := strconv.Atoi(gap.Attr("lost")); n < lost {
		t.Errorf("log.gap lost=%s; want at least the %d failed appends", gap.Attr("lost"), lost)
	}
	if _, err := Verify(ctx, dir, sv, VerifyOptions{}); err != nil {
		t.Errorf("Verify = %v", err)
	}
}
