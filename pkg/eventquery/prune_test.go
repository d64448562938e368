package eventquery

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// TestQueryPrunedLog queries a log whose oldest segments were removed by
// local retention: results start after the prune point, every one is
// verified, and a seq filter below it returns nothing.
func TestQueryPrunedLog(t *testing.T) {
	ctx := context.Background()
	l, dir, sv := smallSegmentLog(t)
	var pruned uint64
	for range 2 {
		segs, _ := filepath.Glob(filepath.Join(dir, "segment-*.vlog"))
		res, err := l.Prune(ctx, auditlog.PruneRequest{Segment: filepath.Base(segs[0]), Shipped: map[string]string{"test": "kept"}})
		if err != nil {
			t.Fatal(err)
		}
		pruned = res.Last
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	want := allEntries(t, dir)
	if len(want) == 0 || want[0].Seq != pruned+1 {
		t.Fatalf("auditlog.Scan starts at seq %d; want %d", want[0].Seq, pruned+1)
	}
	for _, noIndex := range []bool{true, false} {
		src := &Source{Dir: dir, IndexDir: t.TempDir(), NoIndex: noIndex, Verifier: sv}
		f, err := ParseValues(url.Values{}, t0)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		if _, err := src.Query(ctx, f, func(e *auditlog.Entry) error { got = append(got, e.Seq); return nil }); err != nil {
			t.Fatalf("Query(pruned log, noIndex=%v) = %v", noIndex, err)
		}
		if len(got) == 0 || len(got) > len(want) {
			t.Fatalf("Query(pruned log, noIndex=%v) = %d entries; want 1..%d", noIndex, len(got), len(want))
		}
		for _, s := range got {
			if s <= pruned {
				t.Fatalf("Query returned pruned seq %d", s)
			}
		}
	}
}

// TestIndexPrunedWithLog: index files of segments that retention deleted
// are removed by the next query, and so are temporary files a dead query
// left long ago; an IndexDir given explicitly (maybe shared) is left alone.
func TestIndexPrunedWithLog(t *testing.T) {
	ctx := context.Background()
	l, dir, sv := smallSegmentLog(t)
	query := func(src *Source) {
		t.Helper()
		f, err := ParseValues(url.Values{}, t0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Query(ctx, f, func(*auditlog.Entry) error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	idxDir := filepath.Join(dir, "index")
	explicit := t.TempDir()
	query(&Source{Dir: dir, Verifier: sv})
	query(&Source{Dir: dir, IndexDir: explicit, Verifier: sv})
	before, _ := filepath.Glob(filepath.Join(idxDir, "*"+idxSuffix))
	if len(before) < 3 {
		t.Fatalf("%d index files after the first query; want one per sealed segment (≥ 3)", len(before))
	}
	oldTemp := filepath.Join(idxDir, ".segment-x"+idxSuffix+".tmp-123")
	newTemp := filepath.Join(idxDir, ".segment-y"+idxSuffix+".tmp-456")
	for _, p := range []string{oldTemp, newTemp} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(oldTemp, long, long); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "segment-*.vlog"))
	prunedSeg := filepath.Base(segs[0])
	if _, err := l.Prune(ctx, auditlog.PruneRequest{Segment: prunedSeg, Shipped: map[string]string{"test": "kept"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	query(&Source{Dir: dir, Verifier: sv})
	query(&Source{Dir: dir, IndexDir: explicit, Verifier: sv})
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	if exists(filepath.Join(idxDir, prunedSeg+idxSuffix)) {
		t.Errorf("index of the pruned segment %s is still there", prunedSeg)
	}
	if !exists(filepath.Join(explicit, prunedSeg+idxSuffix)) {
		t.Errorf("the explicit index directory was pruned")
	}
	if exists(oldTemp) || !exists(newTemp) {
		t.Errorf("temporary files: old one there %v (want removed), recent one there %v (want kept)", exists(oldTemp), exists(newTemp))
	}
	after, _ := filepath.Glob(filepath.Join(idxDir, "*"+idxSuffix))
	if len(after) != len(before)-1 {
		t.Errorf("%d index files after pruning one segment; want %d", len(after), len(before)-1)
	}
}

// smallSegmentLog returns an open log of 400 synthetic entries in 16 KiB
// segments, its directory and its signer.
func smallSegmentLog(t *testing.T) (*auditlog.Log, string, signature.SignerVerifier) {
	t.Helper()
	ctx := context.Background()
	sv := testenv.Signer(t)
	dir := t.TempDir()
	l, err := auditlog.Open(ctx, dir, auditlog.Options{Signer: sv, Host: "node-1", SegmentMaxBytes: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 400 {
		if _, err := l.AppendSync(ctx, SyntheticEntry(i, t0, testStep)); err != nil {
			t.Fatal(err)
		}
	}
	return l, dir, sv
}
