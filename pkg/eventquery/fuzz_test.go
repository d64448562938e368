package eventquery

import (
	"bytes"
	"testing"
	"time"
)

// FuzzIndexFile feeds arbitrary bytes to the index reader: it must reject
// or read them, never panic or allocate without bound.
func FuzzIndexFile(f *testing.F) {
	b := newIndexBuilder()
	for i := range 50 {
		e := SyntheticEntry(i, t0, time.Second)
		e.Seq = uint64(i + 1)
		b.add(&e, int64(100+i*300))
	}
	valid := b.encode("segment-00000000000000000001.vlog", 15100, [32]byte{1})
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(idxMagic + "\x00\x01\x00\x00\x00\x00"))
	f.Add(newIndexBuilder().encode("segment-00000000000000000002.vlog", 10, [32]byte{}))
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := openIndex(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, id := range []uint16{secOffsets, secTimes, secSeqs} {
			_, _ = x.u64s(id)
		}
		for fl := field(0); fl < numFields; fl++ {
			if c, err := x.column(fl); err == nil {
				for _, id := range c.ids {
					_ = c.dict[id]
				}
			}
		}
	})
}

func TestIndexEncodeDecode(t *testing.T) {
	b := newIndexBuilder()
	var want []string
	for i := range 300 {
		e := SyntheticEntry(i, t0, time.Second)
		e.Seq = uint64(i + 7)
		b.add(&e, int64(i*10))
		want = append(want, fieldValue(&e, fPID))
	}
	data := b.encode("seg", 3000, [32]byte{9})
	x, err := openIndex(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if x.name != "seg" || x.size != 3000 || x.count != 300 || x.minSeq != 7 || x.maxSeq != 306 || x.hdrHash != [32]byte{9} {
		t.Fatalf("metadata = %+v", x)
	}
	c, err := x.column(fPID)
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if got := c.dict[c.ids[i]]; got != w {
			t.Fatalf("pid of entry %d = %q, want %q", i, got, w)
		}
	}
	offs, err := x.u64s(secOffsets)
	if err != nil || offs[299] != 2990 {
		t.Errorf("offsets: %v, %v", offs[299], err)
	}
}
