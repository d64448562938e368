package agent

import (
	"context"
	"errors"
	"testing"

	"github.com/vigil-ebpf/vigil/internal/shiptest"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
)

// Each increase of the kernel's lost-event counter becomes one log.gap
// entry with the number lost since the last one; a failed read records
// nothing and loses nothing.
func TestLossWatchRecordsKernelLoss(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	readings := []struct {
		total uint64
		err   error
	}{
		{5, nil},                      // baseline: before the watch started
		{5, nil},                      // nothing new
		{12, nil},                     // 7 lost
		{0, errors.New("map closed")}, // unreadable: nothing recorded
		{15, nil},                     // 3 more
		{2, nil},                      // maps recreated: new baseline
		{4, nil},                      // 2 lost since
	}
	i := 0
	w := &lossWatch{log: l.Log, read: func() (uint64, error) {
		r := readings[i]
		i++
		return r.total, r.err
	}}
	for range readings {
		_ = w.check(ctx)
	}
	l.Close(t)
	type gap struct{ lost, total string }
	var got []gap
	err := auditlog.Scan(ctx, dir, 1, func(r auditlog.Record) error {
		if r.Entry.Type == auditlog.LogGap {
			if r.Entry.Attr("source") != "kernel" {
				t.Errorf("log.gap %d attrs %v; want source=kernel", r.Entry.Seq, r.Entry.Attrs)
			}
			got = append(got, gap{r.Entry.Attr("events_lost"), r.Entry.Attr("total")})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []gap{{"7", "12"}, {"3", "15"}, {"2", "4"}}
	if len(got) != len(want) {
		t.Fatalf("log.gap entries %v; want %v", got, want)
	}
	for j := range want {
		if got[j] != want[j] {
			t.Fatalf("log.gap entries %v; want %v", got, want)
		}
	}
}

// failingLog refuses every append, as a log on a full disk does.
type failingLog struct{}

func (failingLog) AppendSync(context.Context, auditlog.Entry) (uint64, error) {
	return 0, errors.New("no space left on device")
}

// A loss that could not be recorded is recorded in full by the next check
// that can write.
func TestLossWatchRetriesUnrecordedLoss(t *testing.T) {
	ctx := context.Background()
	total := uint64(1)
	w := &lossWatch{log: failingLog{}, read: func() (uint64, error) { return total, nil }}
	_ = w.check(ctx)
	total = 10
	if err := w.check(ctx); err == nil {
		t.Fatal("check with a failing log = nil; want the append error")
	}
	if w.base != 1 {
		t.Fatalf("base after a failed append = %d; want 1 (the loss still to record)", w.base)
	}
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	w.log = l.Log
	if err := w.check(ctx); err != nil {
		t.Fatal(err)
	}
	l.Close(t)
	var lost string
	_ = auditlog.Scan(ctx, dir, 1, func(r auditlog.Record) error {
		if r.Entry.Type == auditlog.LogGap {
			lost = r.Entry.Attr("events_lost")
		}
		return nil
	})
	if lost != "9" {
		t.Fatalf("recorded events_lost = %q; want 9", lost)
	}
}
