package eventquery

import (
	"context"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// BenchmarkIndexedPID times a selective query answered from the index
// against the same query by full scan (vigil bench query does the same at
// scale and prints the ratio).
func BenchmarkIndexedPID(b *testing.B) {
	dir := b.TempDir()
	opts := auditlog.Options{Signer: testenv.Signer(b), SegmentMaxBytes: 1 << 20}
	if err := WriteSynthetic(context.Background(), dir, opts, 100000, t0, 24*time.Hour); err != nil {
		b.Fatal(err)
	}
	f, _ := ParseValues(url.Values{"pid": {"3919"}}, t0)
	for _, tc := range []struct {
		name string
		src  *Source
	}{{"index", &Source{Dir: dir, IndexDir: filepath.Join(dir, "index")}}, {"scan", &Source{Dir: dir, NoIndex: true}}} {
		tc.src.Query(context.Background(), f, func(*auditlog.Entry) error { return nil }) // builds the index
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := tc.src.Query(context.Background(), f, func(*auditlog.Entry) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
