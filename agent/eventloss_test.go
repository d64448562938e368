package agent

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	w := &lossWatch{log: l.Log, read: func(bool) (lossReading, error) {
		r := readings[i]
		i++
		return lossReading{total: r.total}, r.err
	}}
	for range readings {
		_ = w.check(ctx, false)
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
	w := &lossWatch{log: failingLog{}, read: func(bool) (lossReading, error) { return lossReading{total: total}, nil }}
	_ = w.check(ctx, false)
	total = 10
	if err := w.check(ctx, false); err == nil {
		t.Fatal("check with a failing log = nil; want the append error")
	}
	if w.base != 1 {
		t.Fatalf("base after a failed append = %d; want 1 (the loss still to record)", w.base)
	}
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	w.log = l.Log
	if err := w.check(ctx, false); err != nil {
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

// A fail-closed agent leaves its counters pinned and the kernel keeps
// counting while no agent runs. The next agent records that loss when
// the state file shows the same counter; otherwise the first reading is
// its baseline.
func TestLossWatchRecordsLossWhileDown(t *testing.T) {
	tests := []struct {
		name    string
		state   string // state file content; "" = none
		counter string // the counter the new agent reads
		total   uint64
		want    string // events_lost recorded at start; "" = none
	}{
		{name: "same counter, more lost while down", state: `{"counter":"boot-a/7","recorded":5}`, counter: "boot-a/7", total: 12, want: "7"},
		{name: "same counter, nothing lost", state: `{"counter":"boot-a/7","recorded":5}`, counter: "boot-a/7", total: 5},
		{name: "counters recreated", state: `{"counter":"boot-a/7","recorded":5}`, counter: "boot-a/9", total: 12},
		{name: "another boot", state: `{"counter":"boot-a/7","recorded":5}`, counter: "boot-b/7", total: 12},
		{name: "total below what was recorded", state: `{"counter":"boot-a/7","recorded":50}`, counter: "boot-a/7", total: 12},
		{name: "no state file", counter: "boot-a/7", total: 12},
		{name: "corrupt state file", state: `{"counter":`, counter: "boot-a/7", total: 12},
		{name: "counter unknown", state: `{"counter":"","recorded":5}`, total: 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			statePath := filepath.Join(t.TempDir(), lossStateFile)
			if tt.state != "" {
				if err := os.WriteFile(statePath, []byte(tt.state), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			l := shiptest.OpenLog(t, dir, nil)
			total := tt.total
			w := &lossWatch{log: l.Log, statePath: statePath, read: func(bool) (lossReading, error) {
				return lossReading{total: total, counter: tt.counter}, nil
			}}
			if err := w.check(ctx, true); err != nil {
				t.Fatal(err)
			}
			// The next loss counts from what is now recorded.
			total += 3
			if err := w.check(ctx, false); err != nil {
				t.Fatal(err)
			}
			l.Close(t)
			var got []string
			_ = auditlog.Scan(ctx, dir, 1, func(r auditlog.Record) error {
				if r.Entry.Type == auditlog.LogGap {
					got = append(got, r.Entry.Attr("events_lost"))
				}
				return nil
			})
			want := []string{"3"}
			if tt.want != "" {
				want = []string{tt.want, "3"}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("log.gap events_lost %v; want %v", got, want)
			}
			if tt.counter == "" {
				return
			}
			b, err := os.ReadFile(statePath)
			if err != nil {
				t.Fatal(err)
			}
			var st lossState
			if err := json.Unmarshal(b, &st); err != nil {
				t.Fatalf("state file %q: %v", b, err)
			}
			if st.Counter != tt.counter || st.Recorded != total {
				t.Errorf("state %+v; want counter %s, recorded %d", st, tt.counter, total)
			}
		})
	}
}

// A counter the agent created counts from zero: what it dropped before
// the first reading (the programs run from the moment they attach) is
// recorded too, and the state file names the counter from the start.
func TestLossWatchCreatedCounter(t *testing.T) {
	for _, total := range []uint64{0, 9} {
		ctx := context.Background()
		dir := t.TempDir()
		statePath := filepath.Join(t.TempDir(), lossStateFile)
		l := shiptest.OpenLog(t, dir, nil)
		w := &lossWatch{log: l.Log, statePath: statePath, created: true, read: func(bool) (lossReading, error) {
			return lossReading{total: total, counter: "boot-a/3"}, nil
		}}
		if err := w.check(ctx, true); err != nil {
			t.Fatal(err)
		}
		l.Close(t)
		var got []string
		_ = auditlog.Scan(ctx, dir, 1, func(r auditlog.Record) error {
			if r.Entry.Type == auditlog.LogGap {
				got = append(got, r.Entry.Attr("events_lost"))
			}
			return nil
		})
		var want []string
		if total > 0 {
			want = []string{strconv.FormatUint(total, 10)}
		}
		if !slices.Equal(got, want) {
			t.Errorf("total %d at the first reading: log.gap events_lost %v; want %v", total, got, want)
		}
		b, err := os.ReadFile(statePath)
		if err != nil {
			t.Fatalf("total %d: no state file after the first reading: %v", total, err)
		}
		var st lossState
		if err := json.Unmarshal(b, &st); err != nil || st.Counter != "boot-a/3" || st.Recorded != total {
			t.Errorf("total %d: state %s (%v); want counter boot-a/3, recorded %d", total, b, err, total)
		}
	}
}
