package ship_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/shiptest"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/keys"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/ship/jsonl"
)

func TestObjectNames(t *testing.T) {
	day := time.Date(2026, 11, 27, 23, 59, 0, 0, time.FixedZone("x", -3600))
	tests := []struct {
		prefix, host string
		first, last  uint64
		want         string
	}{
		{"vigil", "host-a", 1, 10000, "vigil/host-a/segments/2026/11/28/00000000000000000001-00000000000000010000.seg"},
		{"", "h", 5, 4, "h/segments/2026/11/28/00000000000000000005-00000000000000000004.seg"},
		{"/a/b/", "h", 7, 9, "a/b/h/segments/2026/11/28/00000000000000000007-00000000000000000009.seg"},
	}
	for _, tc := range tests {
		got := ship.SegmentObject(tc.prefix, tc.host, tc.first, tc.last, day)
		if got != tc.want {
			t.Errorf("SegmentObject(%q, %q, %d, %d) = %q; want %q", tc.prefix, tc.host, tc.first, tc.last, got, tc.want)
		}
		r, ok := ship.ParseSegmentObject(got)
		if !ok || r.First != tc.first || r.Last != tc.last {
			t.Errorf("ParseSegmentObject(%q) = %+v, %v", got, r, ok)
		}
	}
	ck := ship.CheckpointObject("vigil", "host-a", 42)
	if ck != "vigil/host-a/checkpoints/00000000000000000042.ckpt" {
		t.Errorf("CheckpointObject = %q", ck)
	}
	if n, ok := ship.ParseCheckpointObject(ck); !ok || n != 42 {
		t.Errorf("ParseCheckpointObject(%q) = %d, %v", ck, n, ok)
	}
	for _, bad := range []string{"x/segments/1-2.seg", "x/segments/00000000000000000000-00000000000000000001.seg",
		"x/segments/00000000000000000009-00000000000000000001.seg", "x/other/00000000000000000001-00000000000000000002.seg"} {
		if _, ok := ship.ParseSegmentObject(bad); ok {
			t.Errorf("ParseSegmentObject(%q) accepted", bad)
		}
	}
}

func TestGaps(t *testing.T) {
	r := func(a, b uint64) ship.SegmentRange { return ship.SegmentRange{First: a, Last: b} }
	tests := []struct {
		segs []ship.SegmentRange
		want [][2]uint64
	}{
		{nil, nil},
		{[]ship.SegmentRange{r(1, 10), r(11, 20)}, nil},
		{[]ship.SegmentRange{r(1, 10), r(21, 30)}, [][2]uint64{{11, 20}}},
		{[]ship.SegmentRange{r(5, 10)}, [][2]uint64{{1, 4}}},
		{[]ship.SegmentRange{r(1, 10), r(11, 10), r(11, 12)}, nil}, // an empty segment
	}
	for _, tc := range tests {
		got := ship.Gaps(tc.segs)
		if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
			t.Errorf("Gaps(%v) = %v; want %v", tc.segs, got, tc.want)
		}
	}
}

func TestParseRetention(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"400d", 400 * 24 * time.Hour, true},
		{"72h", 72 * time.Hour, true},
		{"0d", 0, false},
		{"-1h", 0, false},
		{"x", 0, false},
		{"d", 0, false},
	}
	for _, tc := range tests {
		got, err := ship.ParseRetention(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRetention(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// shippedCheckpoint returns the log's checkpoint file, as a sink ships it.
func shippedCheckpoint(t *testing.T, l *shiptest.Log) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.Dir, auditlog.CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckExtends(t *testing.T) {
	ctx := context.Background()
	sv := shiptest.OpenLog(t, t.TempDir(), nil).Signer
	pub, err := keys.PublicKey(sv)
	if err != nil {
		t.Fatal(err)
	}
	// The shipped checkpoint covers 150 entries of log a.
	a := shiptest.OpenLog(t, t.TempDir(), sv)
	a.Write(t, 150)
	a.Close(t)
	note := shippedCheckpoint(t, a)
	c, err := ship.OpenCheckpoint(note, pub)
	if err != nil {
		t.Fatal(err)
	}
	size := func(dir string) uint64 {
		rep, err := auditlog.Verify(ctx, dir, sv, auditlog.VerifyOptions{})
		if err != nil {
			t.Fatalf("local log does not verify by itself: %v", err)
		}
		return rep.LastSeq
	}
	if err := ship.CheckExtends(ctx, a.Dir, size(a.Dir), c); err != nil {
		t.Fatalf("CheckExtends(same log) = %v; want nil", err)
	}
	// a grows: still consistent.
	a2 := shiptest.OpenLog(t, a.Dir, sv)
	a2.Write(t, 30)
	a2.Close(t)
	if err := ship.CheckExtends(ctx, a.Dir, size(a.Dir), c); err != nil {
		t.Fatalf("CheckExtends(grown log) = %v; want nil", err)
	}
	// Truncated: the newest segments removed, as root on the host could,
	// leaving a log that verifies on its own.
	trunc := copyLog(t, a.Dir)
	segs, _ := filepath.Glob(filepath.Join(trunc, "segment-*.vlog"))
	sort.Strings(segs)
	for _, s := range segs[len(segs)/2:] {
		os.Remove(s)
	}
	os.Remove(filepath.Join(trunc, auditlog.CheckpointFile))
	var ve *auditlog.VerifyError
	err = ship.CheckExtends(ctx, trunc, size(trunc), c)
	if !errors.As(err, &ve) || ve.Kind != auditlog.Truncated {
		t.Fatalf("CheckExtends(truncated log) = %v; want %s", err, auditlog.Truncated)
	}
	// Rewritten: a different history of the same length, signed by the same key.
	b := shiptest.OpenLog(t, t.TempDir(), sv)
	b.Write(t, 200)
	b.Close(t)
	err = ship.CheckExtends(ctx, b.Dir, size(b.Dir), c)
	if !errors.As(err, &ve) || ve.Kind != ship.Diverged {
		t.Fatalf("CheckExtends(rewritten log) = %v; want %s", err, ship.Diverged)
	}
	// A note signed by another key is refused.
	other := shiptest.OpenLog(t, t.TempDir(), nil)
	other.Write(t, 1)
	other.Close(t)
	if _, err := ship.OpenCheckpoint(shippedCheckpoint(t, other), pub); err == nil {
		t.Fatal("OpenCheckpoint(note by another key) = nil error")
	}
}

func copyLog(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if de.IsDir() || de.Name() == "LOCK" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestCursorSurvivesAndDamagedCursorRefused(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ship"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ship", "x.cursor"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ship.New(ship.Config{Dir: dir, Host: "h"}, namedSink("x"))
	if err == nil || !strings.Contains(err.Error(), "remove it") {
		t.Fatalf("New with a damaged cursor = %v; want an error saying what to do", err)
	}
	if _, err := ship.New(ship.Config{Dir: dir, Host: "h"}, namedSink("a b")); err == nil {
		t.Fatal("New with a bad sink name = nil error")
	}
	if _, err := ship.New(ship.Config{Dir: dir, Host: "h"}, namedSink("y"), namedSink("y")); err == nil {
		t.Fatal("New with two sinks of one name = nil error")
	}
}

type namedSink string

func (n namedSink) Name() string                                { return string(n) }
func (namedSink) Kind() string                                  { return "test" }
func (namedSink) Check(context.Context) error                   { return nil }
func (namedSink) Close() error                                  { return nil }
func (namedSink) Publish(context.Context, []ship.Message) error { return nil }

func FuzzCheckpointSize(f *testing.F) {
	f.Add([]byte("vigil/host-a\n1\n1CEtXCejuBoGg7swEmGodm3gXaiam1ARMH3blbJV0g0=\n\n— vigil/host-a AvEA\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ship.CheckpointSize(b)
		_, _ = ship.ParseSegmentObject(string(b))
		_, _ = ship.ParseCheckpointObject(string(b))
	})
}

// TestRetriesUntilTheSinkWorks runs the loop against a JSON-lines sink
// whose directory cannot be created, then repairs it: the status shows
// the error, the backlog and the lag meanwhile, and the loop catches up
// by itself.
func TestRetriesUntilTheSinkWorks(t *testing.T) {
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 30)
	l.Close(t)
	block := filepath.Join(t.TempDir(), "blocked")
	if err := os.WriteFile(block, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := jsonl.New(jsonl.Config{Path: filepath.Join(block, "out.jsonl")})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a", Interval: 5 * time.Millisecond, BatchSize: 8,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}, k)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { sh.Run(ctx); close(done) }()
	want := l.Stats().NextSeq - 1
	wait := func(what string, ok func(ship.SinkStatus) bool) ship.SinkStatus {
		t.Helper()
		for {
			st := sh.Status()[0]
			if ok(st) {
				return st
			}
			if ctx.Err() != nil {
				t.Fatalf("waiting for %s: status %+v", what, st)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	st := wait("the error", func(s ship.SinkStatus) bool { return s.LastError != "" })
	if st.LastSeq != 0 || st.BacklogEntries != want || st.BacklogBytes == 0 {
		t.Fatalf("status while failing %+v; want nothing shipped, backlog %d entries", st, want)
	}
	if err := os.Remove(block); err != nil {
		t.Fatal(err)
	}
	st = wait("catching up", func(s ship.SinkStatus) bool { return s.LastSeq == want && s.LastError == "" })
	if st.BacklogEntries != 0 || st.BacklogBytes != 0 || st.LagSeconds != 0 {
		t.Fatalf("status after catching up %+v; want no backlog", st)
	}
	cancel()
	<-done
	sh.Close()
}

// TestDurableLimit: entries the writer has not synced are not shipped.
func TestDurableLimit(t *testing.T) {
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 20)
	l.Close(t)
	out := filepath.Join(t.TempDir(), "out.jsonl")
	k, err := jsonl.New(jsonl.Config{Path: out})
	if err != nil {
		t.Fatal(err)
	}
	durable := uint64(12)
	sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a", Durable: func() uint64 { return durable }}, k)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	for _, d := range []uint64{12, 20} {
		durable = d
		if err := sh.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := sh.Status()[0].LastSeq; got != d {
			t.Fatalf("with durable seq %d shipped up to %d", d, got)
		}
	}
}

// With no sink configured nothing is ever shipped, so every deletion the
// budget forces is a drop: a log.gap marked unshipped, counted as dropped.
func TestRetentionWithoutSinkRecordsDrops(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 150)
	const budget = 16 << 10
	sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a", Retention: ship.Retention{MaxBytes: budget, DropUnshipped: true, Pruner: l.Log}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Retain(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := sh.RetentionStatus()
	if st.PrunedSegments == 0 || st.DroppedUnshipped == 0 || st.DroppedUnshipped != st.PrunedThrough {
		t.Fatalf("retention status %+v; want seqs 1..%d counted as dropped unshipped", st, st.PrunedThrough)
	}
	var n int
	err = auditlog.Scan(ctx, dir, 1, func(r auditlog.Record) error {
		e := r.Entry
		if e.Attr(auditlog.PruneLast) == "" {
			return nil
		}
		n++
		if e.Type != auditlog.LogGap || e.Attr("unshipped") != "true" || !strings.Contains(e.Attr("reason"), "no sink configured") {
			t.Errorf("record %d = %s %v; want a log.gap, unshipped, saying no sink is configured", e.Seq, e.Type, e.Attrs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no prune record in the log")
	}
}
