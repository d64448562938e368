package auditlog

import (
	"context"
	"testing"
	"time"
)

// Lazy entries become durable on their own within LazyDelay, and share the
// flush of the next entry somebody waits on.
func TestAppendLazy(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, t.TempDir(), Options{Signer: testSigner(t), LazyDelay: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)

	start := time.Now()
	ack, err := l.AppendLazy(ctx, sampleEntry(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := ack.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("a lone lazy entry was durable after %v; want it held about LazyDelay (200ms)", waited)
	}

	before := l.Stats().Fsyncs
	var lazy []*Ack
	for i := 0; i < 5; i++ {
		a, err := l.AppendLazy(ctx, sampleEntry(i))
		if err != nil {
			t.Fatal(err)
		}
		lazy = append(lazy, a)
	}
	start = time.Now()
	if _, err := l.AppendSync(ctx, sampleEntry(9)); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited > 150*time.Millisecond {
		t.Errorf("a waited-on entry behind lazy ones took %v; want no lazy delay", waited)
	}
	for _, a := range lazy {
		select {
		case <-a.Done():
		default:
			t.Fatal("lazy entries before a durable one are not durable with it")
		}
	}
	if n := l.Stats().Fsyncs - before; n > 2 {
		t.Errorf("5 lazy entries and 1 waited-on entry took %d fsyncs; want them to share (at most 2)", n)
	}
}
