package auditlog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// Environment of the crash child process.
const (
	crashEnvDir   = "VIGIL_CRASH_CHILD_DIR"
	crashEnvKey   = "VIGIL_CRASH_CHILD_KEY"
	crashEnvRound = "VIGIL_CRASH_CHILD_ROUND"
)

// crashOptions are the options both the child and the parent open the log
// with: small segments and frequent checkpoints, so that kills land in
// rotations and checkpoint writes too.
func crashOptions() Options {
	return Options{
		Host:               "crash-host",
		SegmentMaxBytes:    64 << 10,
		CheckpointEvery:    64,
		CheckpointInterval: 20 * time.Millisecond,
		RetryInterval:      10 * time.Millisecond,
		QueueSize:          512,
	}
}

// TestCrashChild is the process TestCrashRecovery kills. It opens the log,
// says "ready", then appends from 4 goroutines as fast as it can and prints
// "durable SEQ WORKER" for each entry once its Ack reports it durable.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		t.Skip("helper process for TestCrashRecovery")
	}
	// Never outlive a parent that failed to kill us.
	time.AfterFunc(30*time.Second, func() { os.Exit(3) })
	ctx := context.Background()
	sv, err := keys.LoadSigner(ctx, os.Getenv(crashEnvKey), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	opts := crashOptions()
	opts.Signer = sv
	l, err := Open(ctx, dir, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	say := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		// os.Stdout is unbuffered: one write per line, done before we go on.
		fmt.Fprintf(os.Stdout, format+"\n", a...)
	}
	say("ready")
	round := os.Getenv(crashEnvRound)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		// A few entries in flight per appender: group commit still batches,
		// and the log stays small enough to verify after every round.
		acks := make(chan *Ack, 4)
		wg.Add(2)
		go func() { // appender
			defer wg.Done()
			defer close(acks)
			for i := 0; ; i++ {
				e := sampleEntry(i)
				e.Attrs = map[string]string{"round": round, "worker": strconv.Itoa(w), "n": strconv.Itoa(i)}
				ack, err := l.Append(ctx, e)
				if err != nil {
					say("error %v", err)
					return
				}
				acks <- ack
			}
		}()
		go func() { // reports durability in append order
			defer wg.Done()
			for ack := range acks {
				if err := ack.Wait(ctx); err != nil {
					say("error %v", err)
					return
				}
				say("durable %d %d", ack.Seq, w)
			}
		}()
	}
	wg.Wait()
	os.Exit(1) // only reached after an error
}

// TestCrashRecovery kills a writing child process with SIGKILL at random
// moments, again and again on the same directory, and checks after each
// kill that recovery yields a log that verifies and that holds every entry
// the child saw acknowledged as durable.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes; skipped in -short mode")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	keyPath := filepath.Join(tmp, "signing.key")
	priv, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := keys.EncodePrivate(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, keyPath, pemBytes)
	sv, err := keys.LoadSigner(ctx, keyPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "log")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	const rounds = 12
	var totalDurable, recoveries int
	start := time.Now()
	for round := 1; round <= rounds; round++ {
		// Most rounds count the delay from the child's "ready", so the kill
		// lands while it appends; some count from process start, so the
		// kill may land in Open and recovery itself.
		delay := time.Duration(10+rng.IntN(291)) * time.Millisecond
		fromReady := round%4 != 0
		res := runCrashChild(t, keyPath, dir, round, delay, fromReady)
		from := "start"
		if fromReady {
			from = "ready"
		}
		t.Logf("round %d: killed %v after %s (ready %v): %d entries acknowledged durable", round, delay, from, res.ready, len(res.durable))
		totalDurable += len(res.durable)

		lock, err := os.ReadFile(filepath.Join(dir, lockFile))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		unclean := len(bytes.TrimSpace(lock)) > 0
		if res.ready && !unclean {
			t.Fatalf("round %d: the child held the log but the lock file %q does not say so", round, lock)
		}

		opts := crashOptions()
		opts.Signer = sv
		l, err := Open(ctx, dir, opts)
		if err != nil {
			t.Fatalf("round %d: Open after kill = %v", round, err)
		}
		recSeq := l.Stats().NextSeq - 1
		if err := l.Close(ctx); err != nil {
			t.Fatalf("round %d: Close = %v", round, err)
		}
		rep, err := Verify(ctx, dir, sv, VerifyOptions{})
		if err != nil {
			t.Fatalf("round %d: Verify after recovery = %v", round, err)
		}

		entries := map[uint64]Entry{}
		if err := Scan(ctx, dir, 1, func(r Record) error {
			e := r.Entry
			if e.Attr("round") == strconv.Itoa(round) || e.Type == LogRecovery && e.Seq == recSeq {
				entries[e.Seq] = e
			}
			return nil
		}); err != nil {
			t.Fatalf("round %d: Scan = %v", round, err)
		}
		for seq, worker := range res.durable {
			if seq > rep.LastSeq {
				t.Fatalf("round %d: seq %d was acknowledged durable but the log ends at %d", round, seq, rep.LastSeq)
			}
			e, ok := entries[seq]
			if !ok || e.Attr("worker") != worker {
				t.Fatalf("round %d: seq %d (worker %s) was acknowledged durable; the log holds %+v there", round, seq, worker, e)
			}
		}
		if unclean {
			e, ok := entries[recSeq]
			if !ok || e.Type != LogRecovery || e.Attr("previous_stop") != "unclean" {
				t.Fatalf("round %d: after an unclean stop, seq %d = %+v; want a log.recovery entry", round, recSeq, e)
			}
			recoveries++
			if n := e.Attr("truncated_bytes"); n != "0" {
				t.Logf("round %d: recovery cut a torn tail of %s bytes", round, n)
			}
		}
	}
	if totalDurable == 0 || recoveries < rounds/2 {
		t.Fatalf("%d entries acknowledged, %d recoveries in %d rounds: the children did not get to write", totalDurable, recoveries, rounds)
	}
	t.Logf("%d rounds in %s: %d entries acknowledged durable, %d recoveries", rounds, time.Since(start).Round(time.Millisecond), totalDurable, recoveries)
}

type crashResult struct {
	ready   bool
	durable map[uint64]string // seq → worker
}

// runCrashChild runs TestCrashChild in a new process on dir and kills it
// with SIGKILL delay after it starts (or after it is ready).
func runCrashChild(t *testing.T, keyPath, dir string, round int, delay time.Duration, fromReady bool) crashResult {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), crashEnvDir+"="+dir, crashEnvKey+"="+keyPath, crashEnvRound+"="+strconv.Itoa(round))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	res := crashResult{durable: map[uint64]string{}}
	ready := make(chan struct{})
	read := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 1 && f[0] == "ready":
				res.ready = true
				close(ready)
			case len(f) == 3 && f[0] == "durable":
				seq, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					read <- fmt.Errorf("bad line %q", sc.Text())
					return
				}
				res.durable[seq] = f[2]
			default:
				read <- fmt.Errorf("child said %q", sc.Text())
				return
			}
		}
		read <- sc.Err()
	}()
	if fromReady {
		select {
		case <-ready:
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
	time.Sleep(delay)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("round %d: kill: %v", round, err)
	}
	rerr := <-read // the pipe ends when the child is gone
	werr := cmd.Wait()
	if rerr != nil {
		t.Fatalf("round %d: %v\nstderr:\n%s", round, rerr, stderr.String())
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("round %d: child ended with %v before it was killed\nstderr:\n%s", round, werr, stderr.String())
	}
	return res
}
