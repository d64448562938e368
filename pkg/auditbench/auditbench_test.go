package auditbench

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// A short run through the real writer: both runs complete, the ratio is
// computed, and the log left behind verifies.
func TestMeasureShort(t *testing.T) {
	sv := testenv.Signer(t)
	dir := filepath.Join(t.TempDir(), "log")
	res, err := Measure(context.Background(), Config{Dir: dir, Entries: 2000, Workers: 8, Signer: sv, Verify: sv})
	if err != nil {
		t.Fatal(err)
	}
	if res.Audit.Entries != 2000 || res.Baseline.Entries != 2000 || res.Ratio <= 0 || res.VerifyPerSec <= 0 {
		t.Errorf("Measure = %+v", res)
	}
	rep, err := auditlog.Verify(context.Background(), dir, sv, auditlog.VerifyOptions{})
	if err != nil || rep.Entries != 2000 {
		t.Errorf("Verify = %v, %d entries; want 2000", err, rep.Entries)
	}
	if _, err := Measure(context.Background(), Config{Dir: dir, Entries: 10, Workers: 1, Signer: sv}); err == nil {
		t.Error("Measure into a used directory succeeded")
	}
}
