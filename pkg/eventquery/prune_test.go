package eventquery

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// TestQueryPrunedLog queries a log whose oldest segments were removed by
// local retention: results start after the prune point, every one is
// verified, and a seq filter below it returns nothing.
func TestQueryPrunedLog(t *testing.T) {
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
