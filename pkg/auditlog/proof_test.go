package auditlog

import (
	"bytes"
	"context"
	"testing"
)

func TestProofs(t *testing.T) {
	dir := t.TempDir()
	sv := testSigner(t)
	writeLog(t, dir, sv, 37, Options{SegmentMaxBytes: 4 << 10, CheckpointEvery: 10})
	ctx := context.Background()
	var canon [][]byte
	if err := Scan(ctx, dir, 1, func(r Record) error {
		canon = append(canon, bytes.Clone(r.Canonical))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(canon) != 37 {
		t.Fatalf("Scan found %d entries; want 37", len(canon))
	}
	for _, size := range []uint64{1, 2, 7, 16, 37} {
		root, err := TreeRoot(ctx, dir, size)
		if err != nil {
			t.Fatal(err)
		}
		for _, idx := range []uint64{0, size / 2, size - 1} {
			p, err := InclusionProof(ctx, dir, idx, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d) = %v", idx, size, err)
			}
			if err := VerifyInclusion(canon[idx], idx, size, p, root); err != nil {
				t.Errorf("VerifyInclusion(%d, %d) = %v; want nil", idx, size, err)
			}
			if err := VerifyInclusion(canon[(idx+1)%size], idx, size, p, root); err == nil && size > 1 {
				t.Errorf("VerifyInclusion of the wrong entry at %d/%d succeeded", idx, size)
			}
		}
		for _, size2 := range []uint64{size, size + 3, 37} {
			if size2 > 37 {
				continue
			}
			root2, err := TreeRoot(ctx, dir, size2)
			if err != nil {
				t.Fatal(err)
			}
			p, err := ConsistencyProof(ctx, dir, size, size2)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d) = %v", size, size2, err)
			}
			if err := VerifyConsistency(size, size2, p, root, root2); err != nil {
				t.Errorf("VerifyConsistency(%d, %d) = %v; want nil", size, size2, err)
			}
		}
	}
	// The final checkpoint's root equals the recomputed root.
	rep, err := Verify(ctx, dir, sv, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Root != rep.LastCheckpoint.Root {
		t.Errorf("report root %s != last checkpoint root %s", rep.Root, rep.LastCheckpoint.Root)
	}
}
