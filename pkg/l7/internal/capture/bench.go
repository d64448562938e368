package capture

import (
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Bench measures a parser on a conversation against a plain copy of the
// same bytes, in the same run: each op copies the conversation chunk by
// chunk into a relay buffer (the baseline, what a proxy does anyway), then
// parses it as the proxy would with a fresh parser. It reports both rates
// and parse/copy, the time parsing adds per byte relayed.
func Bench(b *testing.B, newParser func() l7.Parser, chunks []Chunk) {
	total := 0
	for _, c := range chunks {
		total += len(c.Data)
	}
	relay := make([]byte, 64<<10)
	var pend [2][]byte
	pend[0] = make([]byte, 0, l7.MaxBuffer)
	pend[1] = make([]byte, 0, l7.MaxBuffer)
	b.SetBytes(int64(total))
	b.ReportAllocs()
	b.ResetTimer()
	var ct, pt time.Duration
	for range b.N {
		start := time.Now()
		for _, c := range chunks {
			for d := c.Data; len(d) > 0; {
				d = d[copy(relay, d):]
			}
		}
		mid := time.Now()
		p := newParser()
		pend[0], pend[1] = pend[0][:0], pend[1][:0]
		for _, c := range chunks {
			buf := &pend[c.Dir]
			for d := c.Data; len(d) > 0; {
				n := min(l7.MaxBuffer-len(*buf), len(d))
				*buf = append(*buf, d[:n]...)
				d = d[n:]
				msgs, err := p.Parse(c.Dir, *buf)
				if err != nil {
					b.Fatal(err)
				}
				used := 0
				for _, m := range msgs {
					used += m.Len
				}
				*buf = append((*buf)[:0], (*buf)[used:]...)
			}
		}
		ct += mid.Sub(start)
		pt += time.Since(mid)
	}
	b.StopTimer()
	mb := float64(b.N) * float64(total) / 1e6
	b.ReportMetric(mb/ct.Seconds(), "copy-MB/s")
	b.ReportMetric(mb/pt.Seconds(), "parse-MB/s")
	b.ReportMetric(pt.Seconds()/ct.Seconds(), "parse/copy")
}
