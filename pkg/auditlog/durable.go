package auditlog

import (
	"sync/atomic"
	"time"
)

// durableBounds are the upper bounds of the time-to-durable histogram's
// buckets: 100 µs (one fdatasync on a fast disk) to 10 s (a stalled
// disk). Above the last one an observation counts in +Inf only.
var durableBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// DurableHistogram is a snapshot of how long entries took from Append to
// the fsync that made them durable, with fixed buckets.
type DurableHistogram struct {
	Bounds []time.Duration // upper bound of each bucket, ascending; +Inf is implied
	Counts []uint64        // entries per bucket (not cumulative); len(Bounds)+1, the last is above every bound
	Count  uint64          // entries observed: the sum of Counts
	Sum    time.Duration   // sum of all observed times
}

// durableHist counts time-to-durable, apart for Append ([0]) and
// AppendLazy ([1]) entries: lazy ones wait up to LazyDelay on purpose,
// and would hide the latency a waiting connection sees. Only the writer
// goroutine observes, once per flushed batch, so the atomics are never
// contended; they are atomics so that Stats can read them from anywhere.
type durableHist struct {
	counts [2][len(durableBounds) + 1]atomic.Uint64
	sum    [2]atomic.Int64 // nanoseconds
}

// observe records the jobs of one batch made durable at now (a reading of
// Log.sinceOpen): the loop adds into a local array, so a batch costs one
// atomic add per bucket it touched, not one per entry.
func (h *durableHist) observe(now time.Duration, jobs []*job) {
	var local [2][len(durableBounds) + 1]uint64
	var sum [2]time.Duration
	for _, j := range jobs {
		k := 0
		if j.lazy {
			k = 1
		}
		d := max(now-j.appended, 0)
		sum[k] += d
		i := 0
		for i < len(durableBounds) && d > durableBounds[i] {
			i++
		}
		local[k][i]++
	}
	for k := range local {
		for i, n := range local[k] {
			if n > 0 {
				h.counts[k][i].Add(n)
			}
		}
		if sum[k] > 0 {
			h.sum[k].Add(int64(sum[k]))
		}
	}
}

// snapshot returns the histogram of Append (lazy false) or AppendLazy
// entries as it is now. Buckets are read one by one while the writer may
// add to them; Count is their sum, so a snapshot is consistent with itself.
func (h *durableHist) snapshot(lazy bool) DurableHistogram {
	k := 0
	if lazy {
		k = 1
	}
	s := DurableHistogram{
		Bounds: append([]time.Duration(nil), durableBounds[:]...),
		Counts: make([]uint64, len(durableBounds)+1),
		Sum:    time.Duration(h.sum[k].Load()),
	}
	for i := range s.Counts {
		s.Counts[i] = h.counts[k][i].Load()
		s.Count += s.Counts[i]
	}
	return s
}

// sinceOpen is the time elapsed since the log was opened, on the monotonic
// clock: 8 bytes per job instead of a time.Time, and immune to wall-clock
// steps.
func (l *Log) sinceOpen() time.Duration { return time.Since(l.opened) }

// Sequenced is the number of entries sequenced in the log, in this run and
// earlier ones: NextSeq-1. It can go back when the log fails (entries in
// flight are voided and their seqs reused); DurableSeq never does.
func (s Stats) Sequenced() uint64 {
	if s.NextSeq == 0 {
		return 0
	}
	return s.NextSeq - 1
}

// DurableLag is the number of entries sequenced but not yet on disk.
func (s Stats) DurableLag() uint64 {
	if n := s.Sequenced(); n > s.DurableSeq {
		return n - s.DurableSeq
	}
	return 0
}
