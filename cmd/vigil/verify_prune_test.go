package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// TestVerifyPrunedLog: a log pruned by retention verifies and says so; the
// same log with one more segment deleted by hand fails with a gap.
func TestVerifyPrunedLog(t *testing.T) {
	ctx := context.Background()
	kd := t.TempDir()
	if code, _, errs := vigil(t, ctx, "keys", "generate", "--out-dir", kd, "--no-password"); code != 0 {
		t.Fatalf("keys generate: %s", errs)
	}
	sv, err := keys.LoadSigner(ctx, filepath.Join(kd, "signing.key"), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := auditlog.Open(ctx, dir, auditlog.Options{Signer: sv, Host: "host-a", SegmentMaxBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for range 80 {
		if _, err := l.AppendSync(ctx, auditlog.Entry{Type: auditlog.ConnOpen, Dst: "10.1.2.3:5432"}); err != nil {
			t.Fatal(err)
		}
	}
	oldest := func() string {
		segs, _ := filepath.Glob(filepath.Join(dir, "segment-*.vlog"))
		return segs[0]
	}
	for range 2 {
		if _, err := l.Prune(ctx, auditlog.PruneRequest{Segment: filepath.Base(oldest()), Shipped: map[string]string{"s3": "s3://b/k"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	pub := filepath.Join(kd, "signing.pub")
	code, out, errs := vigil(t, ctx, "verify", "--pubkey", pub, dir)
	if code != 0 || !strings.Contains(out, "pruned       seqs 1..") || !strings.Contains(out, "log.prune") {
		t.Fatalf("verify(pruned) = %d, %q, %q; want OK naming the pruned seqs", code, out, errs)
	}
	if err := os.Remove(oldest()); err != nil {
		t.Fatal(err)
	}
	code, out, _ = vigil(t, ctx, "verify", "--pubkey", pub, dir)
	if code != exitFailure || !strings.Contains(out, "gap") || !strings.Contains(out, "no signed log.prune") {
		t.Fatalf("verify(front cut by hand) = %d, %q; want exit 1 with a gap", code, out)
	}
}
