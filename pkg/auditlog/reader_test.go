package auditlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestReaderAPIAgreesWithScan reads a log through Segments,
// ReadSegmentStart, FrameReader and ReadEntryAt and checks that it sees
// what Scan sees, entry for entry and offset for offset.
func TestReaderAPIAgreesWithScan(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, testSigner(t), 200, Options{SegmentMaxBytes: 16 << 10, CheckpointEvery: 50})
	var want []Record
	err := Scan(context.Background(), dir, 0, func(r Record) error {
		r.Canonical = append([]byte(nil), r.Canonical...)
		r.Signature = append([]byte(nil), r.Signature...)
		want = append(want, r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	segs, err := Segments(dir)
	if err != nil || len(segs) < 2 {
		t.Fatalf("Segments = %d, %v; want several", len(segs), err)
	}
	var got []Record
	for _, sf := range segs {
		f, err := os.Open(sf.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		st, err := ReadSegmentStart(f)
		if err != nil {
			t.Fatalf("%s: %v", sf.Name, err)
		}
		if st.Header.FirstSeq != sf.FirstSeq || sf.Name != filepath.Base(sf.Path) {
			t.Fatalf("%s: header first seq %d, name says %d", sf.Name, st.Header.FirstSeq, sf.FirstSeq)
		}
		if _, err := f.Seek(st.End, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		fr := NewFrameReader(f, st.End)
		var buf []byte
		for {
			body, off, err := fr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", sf.Name, err)
			}
			if body[0] != KindEntry {
				continue
			}
			rec, err := DecodeEntryFrame(body, off)
			if err != nil {
				t.Fatal(err)
			}
			again, err := ReadEntryAt(f, off, &buf)
			if err != nil || again.Entry.Seq != rec.Entry.Seq || again.Hash != rec.Hash {
				t.Fatalf("ReadEntryAt(%d) = seq %d, %v; want seq %d", off, again.Entry.Seq, err, rec.Entry.Seq)
			}
			if fr.Offset() <= off {
				t.Fatalf("Offset %d not past frame at %d", fr.Offset(), off)
			}
			rec.Segment = sf.Name
			rec.Signature = append([]byte(nil), rec.Signature...) // body is reused
			got = append(got, rec)
		}
		if _, err := ReadEntryAt(f, st.End+1, &buf); err == nil {
			t.Errorf("%s: ReadEntryAt inside a frame succeeded", sf.Name)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("read %d entries, Scan %d", len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Entry.Seq != w.Entry.Seq || g.Offset != w.Offset || g.Segment != w.Segment || g.Hash != w.Hash || string(g.Signature) != string(w.Signature) {
			t.Fatalf("entry %d: got seq %d at %s:%d, Scan seq %d at %s:%d", i, g.Entry.Seq, g.Segment, g.Offset, w.Entry.Seq, w.Segment, w.Offset)
		}
	}
}

// TestReadSegmentStartErrors tells a start cut short (ErrTorn) from
// damage (*MalformedError).
func TestReadSegmentStartErrors(t *testing.T) {
	good := encodeHeader(SegmentHeader{FirstSeq: 1, KeyID: "k", Algorithm: "a"})
	flip := append([]byte(nil), good...)
	flip[len(flip)-1] ^= 1
	for _, tt := range []struct {
		name string
		b    []byte
		torn bool
	}{
		{"empty", nil, true},
		{"preamble only", good[:preambleLength], true},
		{"header cut", good[:len(good)-1], true},
		{"bad magic", append([]byte("NOTALOG!"), good[8:]...), false},
		{"bad crc", flip, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ReadSegmentStart(bytes.NewReader(tt.b))
			var me *MalformedError
			switch {
			case tt.torn && !errors.Is(err, ErrTorn):
				t.Errorf("err = %v; want ErrTorn", err)
			case !tt.torn && !errors.As(err, &me):
				t.Errorf("err = %v; want *MalformedError", err)
			}
			if err == nil {
				t.Errorf("start %+v read without error", st)
			}
		})
	}
	st, err := ReadSegmentStart(bytes.NewReader(good))
	if err != nil || st.End != int64(len(good)) || st.Header.FirstSeq != 1 {
		t.Errorf("good header: %+v, %v", st, err)
	}
}

// FuzzReaderAPI checks that no segment bytes make the reader API panic,
// and that ReadEntryAt agrees with FrameReader on every entry frame. New
// inputs are many and minimizing each dominates a short run: fuzz it with
// -fuzzminimizetime=1s.
func FuzzReaderAPI(f *testing.F) {
	dir := f.TempDir()
	writeLog(f, dir, testSigner(f), 6, Options{CheckpointEvery: 3})
	seg, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg, int64(0))
	f.Add(seg[:len(seg)-5], int64(100))
	f.Fuzz(func(t *testing.T, seg []byte, at int64) {
		r := bytes.NewReader(seg)
		var buf []byte
		ReadEntryAt(r, at&0xffff, &buf)
		st, err := ReadSegmentStart(r)
		if err != nil {
			return
		}
		if st.End > int64(len(seg)) {
			t.Fatalf("header ends at %d of %d bytes", st.End, len(seg))
		}
		fr := NewFrameReader(bytes.NewReader(seg[st.End:]), st.End)
		for {
			body, off, err := fr.Next()
			if err != nil {
				return
			}
			if body[0] != KindEntry {
				continue
			}
			rec, derr := DecodeEntryFrame(body, off)
			again, aerr := ReadEntryAt(r, off, &buf)
			if (derr == nil) != (aerr == nil) || derr == nil && (again.Hash != rec.Hash || again.Entry.Seq != rec.Entry.Seq) {
				t.Fatalf("frame at %d: FrameReader %v, ReadEntryAt %v", off, derr, aerr)
			}
		}
	})
}

func TestSegmentNames(t *testing.T) {
	if got := SegmentName(42); got != "segment-00000000000000000042.vlog" {
		t.Errorf("SegmentName(42) = %q", got)
	}
	for name, want := range map[string]uint64{
		SegmentName(1):                         1,
		SegmentName(1 << 63):                   1 << 63,
		"segment-00000000000000000000.vlog":    0, // seq 0 does not exist
		"segment-0000000000000000001.vlog":     0, // 19 digits
		"segment-0000000000000000000x.vlog":    0,
		"segment-00000000000000000001.vlog.gz": 0,
		"checkpoint":                           0,
	} {
		got, ok := ParseSegmentName(name)
		if got != want || ok != (want != 0) {
			t.Errorf("ParseSegmentName(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
}
