package l7test

import (
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Bench measures a parser on a session: one op sends every step, in reads
// of at most read bytes, to a fresh parser the way the proxy does. As a
// baseline measured in the same run, it copies the same reads into a
// buffer (what relaying costs at least), alternating blocks of ops between
// the two so both see the same machine. It reports both rates and
// parse/copy, the ratio that holds up on a noisy machine.
func Bench(b *testing.B, newParser func() l7.Parser, steps []Step, read int) {
	var reads []Step
	total := 0
	for _, s := range steps {
		for _, p := range Chunks(read)(s.Data) {
			reads = append(reads, Step{Dir: s.Dir, Data: p})
			total += len(p)
		}
	}
	sink := make([]byte, 0, l7.MaxBuffer+read)
	var held [2][]byte
	held[0] = make([]byte, 0, l7.MaxBuffer+read)
	held[1] = make([]byte, 0, l7.MaxBuffer+read)
	copyAll := func() {
		for _, r := range reads {
			sink = append(sink[:0], r.Data...)
		}
	}
	parseAll := func() {
		p := newParser()
		held[0], held[1] = held[0][:0], held[1][:0]
		for _, r := range reads {
			d := r.Dir
			held[d] = append(held[d], r.Data...)
			msgs, err := p.Parse(d, held[d])
			if err != nil {
				b.Fatal(err)
			}
			used := 0
			for _, m := range msgs {
				used += m.Len
			}
			held[d] = append(held[d][:0], held[d][used:]...)
		}
	}
	b.SetBytes(int64(total))
	b.ReportAllocs()
	var ct, pt time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; {
		k := min(b.N-done, 256)
		start := time.Now()
		for range k {
			copyAll()
		}
		mid := time.Now()
		for range k {
			parseAll()
		}
		ct += mid.Sub(start)
		pt += time.Since(mid)
		done += k
	}
	b.StopTimer()
	mb := float64(b.N) * float64(total) / 1e6
	b.ReportMetric(mb/ct.Seconds(), "copy-MB/s")
	b.ReportMetric(mb/pt.Seconds(), "parse-MB/s")
	b.ReportMetric(float64(pt.Nanoseconds())/float64(b.N), "parse-ns/op")
	b.ReportMetric(pt.Seconds()/ct.Seconds(), "parse/copy")
}
