package auditlog

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The writer reserves blocks past the end of the open segment (so appends
// need less metadata per fdatasync) without changing the file's size or
// content, and frees the reservation when the log closes.
func TestSegmentReservation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sv := testSigner(t)
	l, err := Open(ctx, dir, Options{Signer: sv})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := l.AppendSync(ctx, sampleEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	segs, err := filepath.Glob(filepath.Join(dir, "segment-*.vlog"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments = %v, %v; want one", segs, err)
	}
	size, allocated := sizes(t, segs[0])
	if allocated < size+reserveChunk/2 {
		t.Logf("segment: %d bytes, %d allocated: this filesystem did not reserve (fallocate unsupported?)", size, allocated)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	size2, allocated2 := sizes(t, segs[0])
	if size2 < size {
		t.Errorf("segment size after close = %d; want at least %d", size2, size)
	}
	if allocated2 > size2+64<<10 {
		t.Errorf("segment of %d bytes keeps %d bytes allocated after close; want the reservation freed", size2, allocated2)
	}
	if rep, err := Verify(ctx, dir, sv, VerifyOptions{}); err != nil || rep.Entries != 10 {
		t.Errorf("Verify after close = %+v, %v; want 10 entries, no error", rep, err)
	}
}

func sizes(t *testing.T, path string) (size, allocated int64) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fi.Size(), st.Blocks * 512
}
