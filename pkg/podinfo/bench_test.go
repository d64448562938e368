package podinfo

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/vigil-ebpf/vigil/pkg/identity"
)

// BenchmarkLookup measures what naming a connection's pod adds to it, next
// to parsing its cgroup path (which every connection already pays), on a
// node with 110 pods (kubelet's default maximum) of two containers each.
// lookup/parse is the ratio of the two, measured in the same run.
func BenchmarkLookup(b *testing.B) {
	c, err := New(fakeClient{}, node, nil)
	if err != nil {
		b.Fatal(err)
	}
	var uids, ctrs []string
	for i := range 110 {
		uid := fmt.Sprintf("7c3b4a1e-2f6d-4b8a-9c0e-%012x", i)
		a, s := fmt.Sprintf("%064x", 2*i), fmt.Sprintf("%064x", 2*i+1)
		p := testPod(uid, fmt.Sprintf("pod-%d", i), "ns", node, "", map[string]string{"app": "x"},
			[3]string{"app", "app:1", a}, [3]string{"sidecar", "envoy:1", s})
		p.UID = types.UID(uid)
		c.upsert(p)
		uids, ctrs = append(uids, uid), append(ctrs, a)
	}
	path := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7c3b4a1e_2f6d_4b8a_9c0e_000000000037.slice/cri-containerd-" + ctrs[55] + ".scope"
	// Baseline first, outside the timer, over at most 20000 iterations:
	// parsing is far slower than a lookup, and b.N is sized for the latter.
	n := min(b.N, 20000)
	start := time.Now()
	for range n {
		_ = identity.ParseCgroupPath(path)
	}
	base := time.Since(start) / time.Duration(n)
	b.ResetTimer()
	for i := range b.N {
		if c.Lookup(uids[i%110], ctrs[i%110]).Status != Found {
			b.Fatal("not found")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(base.Nanoseconds()), "parse-ns/op")
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(base.Nanoseconds()), "lookup/parse")
}
