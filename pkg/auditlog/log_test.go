package auditlog

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/internal/testenv"
)

func testSigner(t testing.TB) signature.SignerVerifier { return testenv.Signer(t) }

func sampleEntry(i int) Entry {
	return Entry{
		Type:     ConnOpen,
		Identity: Identity{PID: uint64(1000 + i), UID: 1000, GID: 1000, Comm: "psql", Exe: "/usr/bin/psql", CgroupPath: "/system.slice/app.service", CgroupID: 4242},
		Proto:    "tcp",
		Src:      "10.0.0.7:" + strconv.Itoa(30000+i%30000),
		Dst:      "10.1.2.3:5432",
		Decision: Allow,
		Rule:     "default",
		Attrs:    map[string]string{"n": strconv.Itoa(i)},
	}
}

// writeLog appends n entries through the real writer and closes it.
func writeLog(t testing.TB, dir string, sv signature.SignerVerifier, n int, opts Options) {
	t.Helper()
	ctx := context.Background()
	opts.Signer = sv
	opts.Host = "host-a"
	l, err := Open(ctx, dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	per := n / 4
	for w := 0; w < 4; w++ {
		cnt := per
		if w == 3 {
			cnt = n - 3*per
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < cnt; i++ {
				if _, err := l.AppendSync(ctx, sampleEntry(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestAppendCloseReopenVerify(t *testing.T) {
	dir := t.TempDir()
	sv := testSigner(t)
	opts := Options{SegmentMaxBytes: 64 << 10, CheckpointEvery: 100}
	writeLog(t, dir, sv, 1000, opts)
	writeLog(t, dir, sv, 500, opts) // chain continues across restarts
	rep, err := Verify(context.Background(), dir, sv, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if rep.Entries != 1500 || rep.LastSeq != 1500 || rep.FirstSeq != 1 {
		t.Errorf("Verify entries = %d (seq %d..%d); want 1500 (1..1500)", rep.Entries, rep.FirstSeq, rep.LastSeq)
	}
	if rep.Segments < 3 {
		t.Errorf("Verify segments = %d; want rotation into several", rep.Segments)
	}
	if rep.Uncovered != 0 || rep.LastCheckpoint == nil || rep.LastCheckpoint.Size != 1500 {
		t.Errorf("last checkpoint = %+v, uncovered %d; want size 1500, 0 uncovered", rep.LastCheckpoint, rep.Uncovered)
	}
	fmt.Println(rep.Segments, rep.Checkpoints)
}

func TestAgeRotationAndTimedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	sv := testSigner(t)
	ctx := context.Background()
	l, err := Open(ctx, dir, Options{Signer: sv, SegmentMaxAge: 50 * time.Millisecond, CheckpointInterval: 20 * time.Millisecond, RetryInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := l.AppendSync(ctx, sampleEntry(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
	}
	st := l.Stats()
	if st.CheckpointSize < 4 {
		t.Errorf("checkpoint size = %d; want timed checkpoints to follow the entries", st.CheckpointSize)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, dir, sv, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Segments < 3 {
		t.Errorf("segments = %d; want age-based rotation", rep.Segments)
	}
}

func TestSecondWriterRefused(t *testing.T) {
	dir := t.TempDir()
	sv := testSigner(t)
	ctx := context.Background()
	l, err := Open(ctx, dir, Options{Signer: sv})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if _, err := Open(ctx, dir, Options{Signer: sv}); err == nil {
		t.Fatal("second Open succeeded; want an in-use error")
	}
}

// A Close that gave up can be repeated and then reports the real outcome.
func TestCloseRepeatable(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, t.TempDir(), Options{Signer: testSigner(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendSync(ctx, sampleEntry(1)); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	_ = l.Close(done) // may or may not finish in time
	if err := l.Close(ctx); err != nil {
		t.Errorf("second Close = %v; want nil once the writer finished", err)
	}
	if err := l.Close(ctx); err != nil {
		t.Errorf("third Close = %v; want nil", err)
	}
}
