package eventquery

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

func openLog(t *testing.T, dir string, maxBytes int64) *auditlog.Log {
	t.Helper()
	l, err := auditlog.Open(context.Background(), dir, auditlog.Options{Signer: testenv.Signer(t), Host: "node-1", SegmentMaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestFollowAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 8<<10) // a few dozen entries per segment
	ctx := context.Background()
	for i := range 30 {
		if _, err := l.AppendSync(ctx, SyntheticEntry(i, t0, time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan uint64, 1000)
	done := make(chan error, 1)
	src := &Source{Dir: dir, Poll: 10 * time.Millisecond, IndexDir: filepath.Join(t.TempDir(), "i")}
	f, err := ParseValues(url.Values{"type": {"conn.open"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		done <- src.Run(fctx, f, true, func(e *auditlog.Entry) error {
			got <- e.Seq
			return nil
		})
	}()
	const more = 300
	for i := 30; i < 30+more; i++ {
		if _, err := l.AppendSync(ctx, SyntheticEntry(i, t0, time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	all := allEntries(t, dir)
	var want []uint64
	for _, e := range all {
		if e.Type == auditlog.ConnOpen {
			want = append(want, e.Seq)
		}
	}
	segs, _ := listSegments(dir)
	if len(segs) < 4 {
		t.Fatalf("only %d segments: the test needs rotations", len(segs))
	}
	// The history part is the last DefaultFollowHistory matches at the
	// moment the query ran (appends race with it); from there on every
	// match must arrive, in order, across every rotation.
	var recv []uint64
	deadline := time.After(20 * time.Second)
	for len(recv) == 0 || recv[len(recv)-1] < want[len(want)-1] {
		select {
		case s := <-got:
			recv = append(recv, s)
		case <-deadline:
			t.Fatalf("got %d followed events, last %v; want up to seq %d", len(recv), recv[max(0, len(recv)-1):], want[len(want)-1])
		}
	}
	k := slices.Index(want, recv[0])
	if k < 0 || !slices.Equal(recv, want[k:]) {
		t.Fatalf("followed %v, want a suffix of %v", recv, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run(follow) = %v after cancel, want nil", err)
	}
}

func TestQueryWhileAppending(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir, 16<<10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil && i < 3000; i++ {
			if _, err := l.Append(ctx, SyntheticEntry(i, t0, time.Second)); err != nil {
				return
			}
		}
	}()
	src := &Source{Dir: dir, IndexDir: filepath.Join(t.TempDir(), "i")}
	for q := 0; q < 20; q++ {
		f, _ := ParseValues(url.Values{}, t0)
		var prev uint64
		_, err := src.Query(ctx, f, func(e *auditlog.Entry) error {
			if e.Seq != prev+1 {
				t.Errorf("query %d: seq %d after %d", q, e.Seq, prev)
			}
			prev = e.Seq
			return nil
		})
		if err != nil && !errors.Is(err, ErrNoLog) {
			t.Fatalf("query %d while appending: %v", q, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	l.Close(context.Background())
}

// corrupt flips a byte in the middle of the second segment.
func corrupt(t *testing.T, dir string) (string, int64) {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil || len(segs) < 3 {
		t.Fatalf("need ≥ 3 segments, have %d (%v)", len(segs), err)
	}
	p := segs[1].path
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	mid := int64(len(b) / 2)
	b[mid] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return segs[1].name, mid
}

func TestCorruptArchive(t *testing.T) {
	sv := testenv.Signer(t)
	for _, withIndex := range []bool{false, true} {
		dir := testLog(t, sv, 2000)
		src := &Source{Dir: dir, NoIndex: !withIndex, IndexDir: filepath.Join(t.TempDir(), "i")}
		if withIndex {
			runQuery(t, src, url.Values{}) // build indexes first
		}
		name, mid := corrupt(t, dir)
		for _, q := range []url.Values{{}, {"pid": {"3919"}}, {"type": {"conn.open", "conn.close"}}} {
			f, _ := ParseValues(q, t0)
			_, err := src.Query(context.Background(), f, func(*auditlog.Entry) error { return nil })
			var ce *CorruptError
			if q.Has("pid") && err == nil {
				continue // the index may rightly avoid the damaged frame
			}
			if !errors.As(err, &ce) || ce.Segment != name || ce.Offset > mid || ce.Offset < mid-1024 {
				t.Errorf("index=%v %v: error %v, want a CorruptError in %s near byte %d", withIndex, q, err, name, mid)
			}
			if err != nil && !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name the segment", err)
			}
		}
	}
	// Garbage instead of a segment.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "segment-00000000000000000001.vlog"), []byte("not a log at all, just some text"), 0o600)
	os.WriteFile(filepath.Join(dir, "segment-00000000000000000100.vlog"), []byte("VIGILLOG\x00\x01"), 0o600)
	_, err := (&Source{Dir: dir, NoIndex: true}).Query(context.Background(), &Filter{}, func(*auditlog.Entry) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "segment-00000000000000000001.vlog") {
		t.Errorf("garbage segment: %v", err)
	}
}

func TestIndexRebuild(t *testing.T) {
	sv := testenv.Signer(t)
	dir := testLog(t, sv, 2000)
	all := allEntries(t, dir)
	idxDir := filepath.Join(t.TempDir(), "i")
	src := &Source{Dir: dir, IndexDir: idxDir}
	before, _ := os.ReadDir(dir)
	_, st := runQuery(t, src, url.Values{})
	if st.Built != st.Segments-1 {
		t.Fatalf("built %d indexes, want %d", st.Built, st.Segments-1)
	}
	after, _ := os.ReadDir(dir)
	if len(before) != len(after) {
		t.Errorf("the query changed the log directory (%d → %d files)", len(before), len(after))
	}
	segs, _ := listSegments(dir)
	wantPID := all[500].Identity.PID
	check := func(what string, wantBuilt int) {
		t.Helper()
		got, st := runQuery(t, src, url.Values{"pid": {strconv.FormatUint(wantPID, 10)}})
		var want []uint64
		for _, e := range all {
			if e.Identity.PID == wantPID {
				want = append(want, e.Seq)
			}
		}
		if len(got) != len(want) || (len(want) > 0 && got[0] != want[0]) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
		if st.Built != wantBuilt {
			t.Errorf("%s: rebuilt %d indexes, want %d (stats %+v)", what, st.Built, wantBuilt, st)
		}
	}
	check("valid indexes", 0)
	idx := func(i int) string { return filepath.Join(idxDir, segs[i].name+idxSuffix) }
	// Corrupt: flip a byte in a section, truncate another, empty a third.
	b, _ := os.ReadFile(idx(0))
	x, err := openIndex(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	pidSec := x.secs[secField0+uint16(fPID)]
	b[pidSec.off+pidSec.n-1] ^= 0x55 // found bad only when the pid column is read
	os.WriteFile(idx(0), b, 0o600)
	b, _ = os.ReadFile(idx(1))
	os.WriteFile(idx(1), b[:len(b)/2], 0o600)
	os.WriteFile(idx(2), nil, 0o600)
	check("corrupt indexes", 3)
	// Stale: an index from another segment under this segment's name.
	b, _ = os.ReadFile(idx(4))
	os.WriteFile(idx(3), b, 0o600)
	check("index of another segment", 1)
	check("all rebuilt", 0)
}
