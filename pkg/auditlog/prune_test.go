package auditlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/vigil-ebpf/vigil/pkg/atomicfile"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// pruneOptions rotate every few entries, so a test gets many segments.
func pruneOptions(sv signature.SignerVerifier) Options {
	return Options{Signer: sv, Host: "host-a", SegmentMaxBytes: 4 << 10}
}

func openPruneLog(t *testing.T, dir string, sv signature.SignerVerifier) *Log {
	t.Helper()
	l, err := Open(context.Background(), dir, pruneOptions(sv))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func appendN(t *testing.T, l *Log, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if _, err := l.AppendSync(context.Background(), sampleEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
}

func oldestSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("listSegments(%s) = %d segments, %v", dir, len(segs), err)
	}
	return filepath.Base(segs[0].Path)
}

func mustVerify(t *testing.T, dir string, sv signature.SignerVerifier) *Report {
	t.Helper()
	rep, err := Verify(context.Background(), dir, sv, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify(pruned log) = %v", err)
	}
	return rep
}

func TestPruneThenVerifyRecoverScan(t *testing.T) {
	ctx := context.Background()
	sv := testSigner(t)
	dir := t.TempDir()
	l := openPruneLog(t, dir, sv)
	appendN(t, l, 120)
	var last PruneResult
	for i := 0; i < 3; i++ {
		seg := oldestSegment(t, dir)
		res, err := l.Prune(ctx, PruneRequest{Segment: seg, Shipped: map[string]string{"s3": "vigil/host-a/segments/" + seg}})
		if err != nil {
			t.Fatalf("Prune(%s) = %v", seg, err)
		}
		if _, err := os.Stat(filepath.Join(dir, seg)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("pruned segment %s still there: %v", seg, err)
		}
		if i > 0 && res.First != last.Last+1 {
			t.Fatalf("Prune #%d removed %d..%d; want it to start at %d", i, res.First, res.Last, last.Last+1)
		}
		last = res
		appendN(t, l, 10) // later checkpoints are checked against the recorded range
	}
	// Only the oldest segment may go.
	segs, _ := listSegments(dir)
	if _, err := l.Prune(ctx, PruneRequest{Segment: filepath.Base(segs[1].Path)}); err == nil {
		t.Fatal("Prune(second segment) succeeded; want a refusal")
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, sv)
	if rep.PrunedThrough != last.Last || rep.FirstSeq != last.Last+1 || rep.PruneRecord != last.RecordSeq || rep.UnshippedPruned {
		t.Fatalf("report = pruned through %d, first %d, record %d, unshipped %v; want %d, %d, %d, false",
			rep.PrunedThrough, rep.FirstSeq, rep.PruneRecord, rep.UnshippedPruned, last.Last, last.Last+1, last.RecordSeq)
	}
	if rep.Checkpoints == 0 {
		t.Fatal("no checkpoint verified after the prune boundary")
	}
	// Recovery opens the pruned log and continues it.
	l = openPruneLog(t, dir, sv)
	appendN(t, l, 5)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep2 := mustVerify(t, dir, sv)
	if rep2.LastSeq != rep.LastSeq+5 || rep2.Root == "" {
		t.Fatalf("after reopen: last seq %d; want %d", rep2.LastSeq, rep.LastSeq+5)
	}
	// Scan from seq 1 starts at the first remaining entry.
	var first, n uint64
	if err := Scan(ctx, dir, 1, func(r Record) error {
		if first == 0 {
			first = r.Entry.Seq
		}
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if first != last.Last+1 || n != rep2.Entries {
		t.Fatalf("Scan = first %d, %d entries; want %d, %d", first, n, last.Last+1, rep2.Entries)
	}
}

func TestPruneUnshippedIsGap(t *testing.T) {
	ctx := context.Background()
	sv := testSigner(t)
	dir := t.TempDir()
	l := openPruneLog(t, dir, sv)
	appendN(t, l, 60)
	seg := oldestSegment(t, dir)
	if _, err := l.Prune(ctx, PruneRequest{Segment: seg, Unshipped: true}); err == nil {
		t.Fatal("Prune(unshipped, no reason) succeeded")
	}
	res, err := l.Prune(ctx, PruneRequest{Segment: seg, Unshipped: true, Reason: "over budget; s3 did not confirm"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	var rec Entry
	_ = Scan(ctx, dir, res.RecordSeq, func(r Record) error { rec = r.Entry; return ErrStop })
	want := fmt.Sprint(res.Last - res.First + 1)
	if rec.Type != LogGap || rec.Attr("unshipped") != "true" || rec.Attr("lost") != want || rec.Attr(PruneLast) != fmt.Sprint(res.Last) {
		t.Fatalf("record = %s %v; want log.gap with unshipped=true lost=%s", rec.Type, rec.Attrs, want)
	}
	if rep := mustVerify(t, dir, sv); !rep.UnshippedPruned {
		t.Fatal("report does not say the pruned entries were unshipped")
	}
}

func TestFrontCutWithoutPruneRecordFails(t *testing.T) {
	ctx := context.Background()
	sv := testSigner(t)
	dir := t.TempDir()
	l := openPruneLog(t, dir, sv)
	appendN(t, l, 60)
	if _, err := l.Prune(ctx, PruneRequest{Segment: oldestSegment(t, dir)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cut  func(t *testing.T, dir string)
	}{
		{"unpruned log cut by hand", nil},
		{"pruned log cut further by hand", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, oldestSegment(t, dir))); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			if tc.cut == nil {
				writeLog(t, d, sv, 60, pruneOptions(sv))
				tc.cut = func(t *testing.T, dir string) {
					for i := 0; i < 2; i++ {
						if err := os.Remove(filepath.Join(dir, oldestSegment(t, dir))); err != nil {
							t.Fatal(err)
						}
					}
				}
			} else {
				d = copyLogDir(t, dir)
			}
			tc.cut(t, d)
			_, err := Verify(ctx, d, sv, VerifyOptions{})
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Kind != Gap || !strings.Contains(ve.Reason, "no signed log.prune") {
				t.Fatalf("Verify(front cut) = %v; want a gap naming the missing prune record", err)
			}
		})
	}
}

// Environment of the prune crash child.
const (
	pruneEnvDir = "VIGIL_PRUNE_CHILD_DIR"
	pruneEnvKey = "VIGIL_PRUNE_CHILD_KEY"
)

// TestPruneCrashChild is the process TestPruneCrashBetweenRecordAndDelete
// kills: it writes a prune record durably and sends itself SIGKILL before
// deleting the segment.
func TestPruneCrashChild(t *testing.T) {
	dir := os.Getenv(pruneEnvDir)
	if dir == "" {
		t.Skip("helper process for TestPruneCrashBetweenRecordAndDelete")
	}
	ctx := context.Background()
	sv, err := keys.LoadSigner(ctx, os.Getenv(pruneEnvKey), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := openPruneLog(t, dir, sv)
	appendN(t, l, 60)
	req := PruneRequest{Segment: oldestSegment(t, dir), Shipped: map[string]string{"s3": "key"}}
	e, _, _, err := l.preparePrune(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(filepath.Join(dir, pruneMarker), []byte(req.Segment+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendSync(ctx, e); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func TestPruneCrashBetweenRecordAndDelete(t *testing.T) {
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestPruneCrashChild$", "-test.count=1", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), pruneEnvDir+"="+dir, pruneEnvKey+"="+keyPath)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child = %v; want killed by SIGKILL\n%s", err, out)
	}
	seg := oldestSegment(t, dir)
	if _, err := os.Stat(filepath.Join(dir, pruneMarker)); err != nil {
		t.Fatalf("marker after the kill: %v", err)
	}
	// Before the restart the record is in the log and the segment too:
	// still a valid log starting at seq 1.
	if rep := mustVerify(t, dir, sv); rep.FirstSeq != 1 {
		t.Fatalf("first seq = %d; want 1", rep.FirstSeq)
	}
	l := openPruneLog(t, dir, sv) // Open finishes the prune
	if _, err := os.Stat(filepath.Join(dir, seg)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("segment %s survived the restart: %v", seg, err)
	}
	if _, err := os.Stat(filepath.Join(dir, pruneMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("marker survived: %v", err)
	}
	appendN(t, l, 3)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, dir, sv); rep.FirstSeq == 1 || rep.PrunedThrough != rep.FirstSeq-1 {
		t.Fatalf("after restart: first seq %d, pruned through %d", rep.FirstSeq, rep.PrunedThrough)
	}
}

func TestFinishPruneKeepsSegmentWithoutRecord(t *testing.T) {
	ctx := context.Background()
	sv := testSigner(t)
	dir := t.TempDir()
	l := openPruneLog(t, dir, sv)
	defer l.Close(ctx)
	appendN(t, l, 60)
	seg := oldestSegment(t, dir)
	// A crash before the record was durable leaves only the marker.
	writeFile(t, filepath.Join(dir, pruneMarker), []byte(seg+"\n"))
	if err := l.FinishPrune(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, seg)); err != nil {
		t.Fatalf("segment without a prune record was deleted: %v", err)
	}
}

// TestRecoverPrunedLogWithoutCheckpoint: with no checkpoint left in a
// pruned log, recovery resumes the tree from the prune record.
func TestRecoverPrunedLogWithoutCheckpoint(t *testing.T) {
	ctx := context.Background()
	sv := testSigner(t)
	dir := t.TempDir()
	l := openPruneLog(t, dir, sv)
	appendN(t, l, 60)
	if _, err := l.Prune(ctx, PruneRequest{Segment: oldestSegment(t, dir)}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Drop every checkpoint record (they are optional to the chain).
	for _, p := range segmentPaths(t, dir) {
		data, frames := walkFrames(t, p)
		out := append([]byte(nil), data[:frames[0].off]...)
		for _, f := range frames {
			if f.kind != kindCheckpoint {
				out = append(out, data[f.off:f.end()]...)
			}
		}
		writeFile(t, p, out)
	}
	os.Remove(filepath.Join(dir, CheckpointFile))
	l = openPruneLog(t, dir, sv)
	appendN(t, l, 5)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := mustVerify(t, dir, sv); rep.Checkpoints == 0 || rep.PrunedThrough == 0 {
		t.Fatalf("report %+v; want a checkpoint after recovery and the prune point", rep)
	}
}

// TestPruneRangeIsChecked: a prune record whose compact range does not
// match the removed entries (signed, as a faulty writer would) makes the
// next checkpoint fail: the range is what later roots are computed from.
func TestPruneRangeIsChecked(t *testing.T) {
	ctx := context.Background()
	sv := testSigner(t)
	dir := t.TempDir()
	l := openPruneLog(t, dir, sv)
	appendN(t, l, 60)
	seg := oldestSegment(t, dir)
	e, path, _, err := l.preparePrune(ctx, PruneRequest{Segment: seg})
	if err != nil {
		t.Fatal(err)
	}
	hashes := strings.Split(e.Attrs[PruneRange], ",")
	hashes[0] = strings.Repeat("ab", 32)
	e.Attrs[PruneRange] = strings.Join(hashes, ",")
	if _, err := l.AppendSync(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, 5)
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = Verify(ctx, dir, sv, VerifyOptions{})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Kind != BadCheckpoint {
		t.Fatalf("Verify(wrong prune range) = %v; want bad-checkpoint", err)
	}
}

func FuzzParsePrunePoint(f *testing.F) {
	h := strings.Repeat("00", 32)
	f.Add("1", "3", h, h+","+h)
	f.Add("5", "4", h, h)
	f.Add("1", "18446744073709551615", "zz", "")
	f.Fuzz(func(t *testing.T, first, last, anchor, rng string) {
		e := Entry{Seq: 100, Type: LogPrune, Attrs: map[string]string{PruneFirst: first, PruneLast: last, PruneAnchor: anchor, PruneRange: rng}}
		p, ok, err := parsePrunePoint(&e)
		if !ok || err != nil {
			return
		}
		if p.Last == 0 || p.Last >= e.Seq || p.First > p.Last {
			t.Fatalf("accepted range %d..%d in record %d", p.First, p.Last, e.Seq)
		}
		if _, err := p.tree(); err != nil {
			t.Fatalf("accepted a range that does not make a tree: %v", err)
		}
	})
}
