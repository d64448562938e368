package auditlog

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
)

func TestDurableHistogramBuckets(t *testing.T) {
	last := len(durableBounds) // the +Inf bucket
	tests := []struct {
		name string
		d    time.Duration
		lazy bool
		want int // bucket index
	}{
		{"zero", 0, false, 0},
		{"clock went back", -time.Millisecond, false, 0},
		{"on the first bound", 100 * time.Microsecond, false, 0},
		{"just above it", 100*time.Microsecond + 1, false, 1},
		{"one millisecond", time.Millisecond, false, 3},
		{"lazy, 5 ms", 5 * time.Millisecond, true, 5},
		{"on the last bound", 10 * time.Second, false, last - 1},
		{"above every bound", time.Minute, true, last},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h durableHist
			now := time.Hour
			h.observe(now, []*job{{appended: now - tt.d, lazy: tt.lazy}})
			s, other := h.snapshot(tt.lazy), h.snapshot(!tt.lazy)
			if s.Count != 1 || other.Count != 0 {
				t.Fatalf("counts = %d (lazy %v) and %d; want 1 and 0", s.Count, tt.lazy, other.Count)
			}
			if got := slices.Index(s.Counts, 1); got != tt.want {
				t.Errorf("observe(%v) went to bucket %d; want %d (bounds %v)", tt.d, got, tt.want, s.Bounds)
			}
			if want := max(tt.d, 0); s.Sum != want {
				t.Errorf("Sum = %v; want %v", s.Sum, want)
			}
		})
	}
}

func TestDurableHistogramBatch(t *testing.T) {
	var h durableHist
	now := time.Hour
	var batch []*job
	for i := range 1000 {
		batch = append(batch, &job{appended: now - time.Duration(i)*time.Microsecond, lazy: i%4 == 0})
	}
	h.observe(now, batch)
	h.observe(now, batch[:10])
	s, lazy := h.snapshot(false), h.snapshot(true)
	if s.Count != 750+7 || lazy.Count != 250+3 {
		t.Errorf("counts = %d, lazy %d; want 757, 253", s.Count, lazy.Count)
	}
	var sum uint64
	for _, n := range s.Counts {
		sum += n
	}
	if sum != s.Count || len(s.Counts) != len(s.Bounds)+1 || !slices.IsSorted(s.Bounds) {
		t.Errorf("snapshot %+v: want Count the sum of Counts, one more count than bounds, bounds ascending", s)
	}
	s.Bounds[0] = 0 // a caller's copy: the histogram's own bounds stay
	if h.snapshot(false).Bounds[0] != 100*time.Microsecond {
		t.Error("changing a snapshot's Bounds changed the histogram's")
	}
}

// TestDurableStats appends through a real log and checks that every
// entry it made durable is in the histogram of its kind.
func TestDurableStats(t *testing.T) {
	ctx := context.Background()
	l, err := Open(ctx, t.TempDir(), Options{Signer: testSigner(t), LazyDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	var acks []*Ack
	for i := range 30 {
		app := l.Append
		if i%3 == 0 {
			app = l.AppendLazy
		}
		ack, err := app(ctx, sampleEntry(i))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, ack)
	}
	for _, a := range acks {
		if err := a.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s := l.Stats()
	if s.Durable.Count != 20 || s.DurableLazy.Count != 10 {
		t.Errorf("Stats().Durable.Count = %d, DurableLazy.Count = %d; want 20, 10", s.Durable.Count, s.DurableLazy.Count)
	}
	if s.Durable.Sum <= 0 || s.DurableLazy.Sum <= 0 {
		t.Errorf("time-to-durable sums = %v, %v; want both > 0", s.Durable.Sum, s.DurableLazy.Sum)
	}
	if s.Sequenced() != 30 || s.DurableSeq != 30 || s.DurableLag() != 0 {
		t.Errorf("Sequenced() = %d, DurableSeq = %d, DurableLag() = %d; want 30, 30, 0", s.Sequenced(), s.DurableSeq, s.DurableLag())
	}
	if s.SignErrors != 0 {
		t.Errorf("SignErrors = %d with a working signer; want 0", s.SignErrors)
	}
}

func TestStatsLag(t *testing.T) {
	tests := []struct {
		s              Stats
		sequenced, lag uint64
	}{
		{Stats{}, 0, 0},
		{Stats{NextSeq: 1}, 0, 0},
		{Stats{NextSeq: 11, DurableSeq: 7}, 10, 3},
		{Stats{NextSeq: 11, DurableSeq: 10}, 10, 0},
		{Stats{NextSeq: 5, DurableSeq: 9}, 4, 0}, // rewound after a failure, read between two loads
	}
	for _, tt := range tests {
		if got, lag := tt.s.Sequenced(), tt.s.DurableLag(); got != tt.sequenced || lag != tt.lag {
			t.Errorf("Stats{NextSeq: %d, DurableSeq: %d}: Sequenced() = %d, DurableLag() = %d; want %d, %d",
				tt.s.NextSeq, tt.s.DurableSeq, got, lag, tt.sequenced, tt.lag)
		}
	}
}

// failingSigner fails every signature while fail is set, and counts the
// failures it returned.
type failingSigner struct {
	signature.SignerVerifier
	fail     atomic.Bool
	failures atomic.Uint64
}

func (s *failingSigner) SignMessage(msg io.Reader, opts ...signature.SignOption) ([]byte, error) {
	if s.fail.Load() {
		s.failures.Add(1)
		return nil, errors.New("signer unavailable")
	}
	return s.SignerVerifier.SignMessage(msg, opts...)
}

// TestSignErrors makes the signer fail for a while: every failed signature
// is counted, entries, the gap entry's retries and checkpoints alike, and
// the count stays once the signer works again.
func TestSignErrors(t *testing.T) {
	ctx := context.Background()
	sv := &failingSigner{SignerVerifier: testSigner(t)}
	l, err := Open(ctx, t.TempDir(), Options{Signer: sv, RetryInterval: 5 * time.Millisecond, CheckpointEvery: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	if _, err := l.AppendSync(ctx, sampleEntry(0)); err != nil {
		t.Fatal(err)
	}
	sv.fail.Store(true)
	if _, err := l.AppendSync(ctx, sampleEntry(1)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("AppendSync with a failing signer = %v; want ErrUnavailable", err)
	}
	time.Sleep(20 * time.Millisecond) // a few retries of the gap entry fail too
	sv.fail.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().Err != nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := l.AppendSync(ctx, sampleEntry(2)); err != nil {
		t.Fatalf("AppendSync after the signer recovered = %v", err)
	}
	got, want := l.Stats().SignErrors, sv.failures.Load()
	if want < 1 || got != want {
		t.Errorf("Stats().SignErrors = %d; want %d, the failures the signer returned", got, want)
	}
}
