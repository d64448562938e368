package proxybench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/intercept"
)

// A short run of the real benchmark: it must attach, redirect its own
// connections, relay, audit them, and clean its cgroup up.
func TestMeasureShort(t *testing.T) {
	reason := ""
	if os.Geteuid() != 0 {
		reason = "not root"
	} else if _, err := intercept.CgroupRoot(); err != nil {
		reason = err.Error()
	}
	testenv.Need(t, "root, cgroup v2 and BPF", reason)
	res, err := Measure(context.Background(), Config{
		Dir: t.TempDir(), Signer: testenv.Signer(t),
		Duration: 200 * time.Millisecond, BulkMiB: 8, Clients: []int{1, 4},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.BulkRatio <= 0 || len(res.RateRatio) != 2 || res.Intercepted[1].PerSec <= 0 {
		t.Errorf("Measure = %+v; want positive rates for both client counts", res)
	}
	if res.Audit.Entries < 2 {
		t.Errorf("audit entries = %d; want the intercepted connections recorded", res.Audit.Entries)
	}
	t.Logf("bulk ratio %.2f, rate ratios %.2f, %d entries", res.BulkRatio, res.RateRatio, res.Audit.Entries)
}
