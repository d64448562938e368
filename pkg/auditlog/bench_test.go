package auditlog

import (
	"context"
	"testing"
)

// BenchmarkAppendDurable measures signed, chained, durable appends from
// many concurrent appenders, each waiting for durability.
func BenchmarkAppendDurable(b *testing.B) {
	ctx := context.Background()
	l, err := Open(ctx, b.TempDir(), Options{Signer: testSigner(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close(ctx)
	b.SetParallelism(128)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := l.AppendSync(ctx, sampleEntry(i)); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkCanonical measures encoding one entry.
func BenchmarkCanonical(b *testing.B) {
	e := sampleEntry(7)
	e.Seq = 12345
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = e.AppendCanonical(buf[:0])
	}
}
