package s3_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/internal/shiptest"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/ship/jsonl"
	"github.com/vigil-ebpf/vigil/pkg/ship/s3"
)

// localSegments returns the segment file names in dir and their total size.
func localSegments(t *testing.T, dir string) ([]string, int64) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var total int64
	for _, de := range des {
		if strings.HasPrefix(de.Name(), "segment-") {
			info, err := de.Info()
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, de.Name())
			total += info.Size()
		}
	}
	return names, total
}

// records returns the prune records (log.prune and log.gap with a range) of the log.
func records(t *testing.T, dir string) []auditlog.Entry {
	t.Helper()
	var out []auditlog.Entry
	err := auditlog.Scan(context.Background(), dir, 1, func(r auditlog.Record) error {
		if r.Entry.Attr(auditlog.PruneLast) != "" {
			out = append(out, r.Entry)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newShipper(t *testing.T, dir string, ret ship.Retention, sinks ...ship.Sink) *ship.Shipper {
	t.Helper()
	sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a", Retention: ret}, sinks...)
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sh
}

func TestRetentionDeletesOnlyShippedSegments(t *testing.T) {
	srv, c, bucket := setup(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 150)
	const budget = 16 << 10
	sh := newShipper(t, dir, ship.Retention{MaxBytes: budget, Pruner: l.Log}, newSink(t, srv, bucket, s3.Governance, false))
	before, total := localSegments(t, dir)
	if total <= budget {
		t.Fatalf("test log holds %d bytes; want more than the %d budget", total, budget)
	}
	// Nothing is shipped yet: nothing may go, and the status says why.
	if err := sh.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if now, _ := localSegments(t, dir); len(now) != len(before) {
		t.Fatalf("retention removed %d unshipped segments", len(before)-len(now))
	}
	if st, _ := sh.RetentionStatus(); !strings.Contains(st.Blocked, "not confirmed by sink s3") {
		t.Fatalf("status blocked = %q; want the unshipped segment named", st.Blocked)
	}
	if err := sh.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sh.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	after, total := localSegments(t, dir)
	if total > budget {
		t.Fatalf("after retention the log holds %d bytes; want at most %d", total, budget)
	}
	st, _ := sh.RetentionStatus()
	if st.PrunedSegments == 0 || st.Blocked != "" || st.DroppedUnshipped != 0 {
		t.Fatalf("retention status %+v; want segments pruned, nothing blocked or dropped", st)
	}
	// Every removed segment is in the bucket under the name its record gives.
	ls, err := s3.List(ctx, c, bucket, "vigil/host-a", false)
	if err != nil {
		t.Fatal(err)
	}
	inBucket := map[string]bool{}
	for _, s := range ls.Segments {
		inBucket["s3://"+bucket+"/"+s.Name] = true
	}
	recs := records(t, dir)
	if uint64(len(recs)) != st.PrunedSegments || len(after) >= len(before) {
		t.Fatalf("%d prune records, %d segments pruned, %d segments before, %d after", len(recs), st.PrunedSegments, len(before), len(after))
	}
	for _, e := range recs {
		if e.Type != auditlog.LogPrune || !inBucket[e.Attr(auditlog.PruneShippedPrefix+"s3")] {
			t.Errorf("record %d: %s shipped.s3=%q; want log.prune naming an object in the bucket", e.Seq, e.Type, e.Attr("shipped.s3"))
		}
	}
	l.Write(t, 20)
	l.Close(t)
	rep, err := auditlog.Verify(ctx, dir, l.Signer, auditlog.VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify(pruned log) = %v", err)
	}
	if rep.PrunedThrough != st.PrunedThrough || rep.FirstSeq != st.PrunedThrough+1 {
		t.Fatalf("verify: pruned through %d, first seq %d; retention pruned through %d", rep.PrunedThrough, rep.FirstSeq, st.PrunedThrough)
	}
	// The pruned local log still proves it extends the newest checkpoint
	// that left the host.
	note, err := os.ReadFile(filepath.Join(dir, auditlog.CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := l.Signer.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	ck, err := ship.OpenCheckpoint(note, pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := ship.CheckExtends(ctx, dir, rep.LastSeq, ck); err != nil {
		t.Fatalf("CheckExtends(pruned log, its own checkpoint) = %v", err)
	}
}

func TestRetentionDropsUnshippedWithGapRecord(t *testing.T) {
	srv, _, bucket := setup(t, true)
	ctx := context.Background()
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 150)
	const budget = 16 << 10
	lines := filepath.Join(t.TempDir(), "audit.jsonl")
	js, err := jsonl.New(jsonl.Config{Path: lines})
	if err != nil {
		t.Fatal(err)
	}
	sh := newShipper(t, dir, ship.Retention{MaxBytes: budget, DropUnshipped: true, Pruner: l.Log},
		newSink(t, srv, bucket, s3.Governance, false), js)
	if err := sh.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	if _, total := localSegments(t, dir); total > budget {
		t.Fatalf("after a forced drop the log holds %d bytes; want at most %d", total, budget)
	}
	st, _ := sh.RetentionStatus()
	if st.DroppedUnshipped == 0 || st.DroppedUnshipped != st.PrunedThrough {
		t.Fatalf("retention status %+v; want seqs 1..%d dropped unshipped", st, st.PrunedThrough)
	}
	for _, e := range records(t, dir) {
		if e.Type != auditlog.LogGap || e.Attr("unshipped") != "true" || !strings.Contains(e.Attr("reason"), "not confirmed by sink s3, jsonl") {
			t.Fatalf("record %d = %s %v; want a log.gap naming the sinks that lack it", e.Seq, e.Type, e.Attrs)
		}
	}
	// The sinks continue after the dropped entries.
	if err := sh.Drain(ctx); err != nil {
		t.Fatalf("Drain after a forced drop = %v", err)
	}
	for _, s := range sh.Status() {
		if s.LastSeq <= st.PrunedThrough {
			t.Fatalf("sink %s shipped up to %d; want past the dropped seqs", s.Name, s.LastSeq)
		}
	}
	l.Close(t)
	rep, err := auditlog.Verify(ctx, dir, l.Signer, auditlog.VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify(log with dropped start) = %v", err)
	}
	if !rep.UnshippedPruned || rep.PrunedThrough != st.PrunedThrough {
		t.Fatalf("report: unshipped %v, pruned through %d; want true, %d", rep.UnshippedPruned, rep.PrunedThrough, st.PrunedThrough)
	}
}
