package nats_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vigil-ebpf/vigil/internal/shiptest"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	vnats "github.com/vigil-ebpf/vigil/pkg/ship/nats"
)

type fixture struct {
	url, stream, subject string
	js                   jetstream.JetStream
}

func setup(t *testing.T) fixture {
	t.Helper()
	url := shiptest.NeedNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n := strings.ReplaceAll(shiptest.Name(t, "vigil"), "-", "_")
	f := fixture{url: url, stream: strings.ToUpper(n), subject: n, js: js}
	// Streams can be deleted whole (deny_delete covers messages), so the
	// shared server does not keep what each run made.
	t.Cleanup(func() {
		ctx := context.Background()
		names := js.StreamNames(ctx)
		for name := range names.Name() {
			if strings.HasPrefix(name, f.stream) {
				_ = js.DeleteStream(ctx, name)
			}
		}
	})
	return f
}

func (f fixture) sink(t *testing.T, create, allowLimits bool) *vnats.Sink {
	t.Helper()
	k, err := vnats.New(vnats.Config{URL: f.url, Stream: f.stream, Subject: f.subject, Host: "host-a", Create: create, AllowLimits: allowLimits})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// read returns every message in the stream, in stream order.
func (f fixture) read(t *testing.T) []ship.Message {
	t.Helper()
	ctx := context.Background()
	st, err := f.js.Stream(ctx, f.stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []ship.Message
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get stream seq %d: %v", seq, err)
		}
		var m ship.Message
		if err := json.Unmarshal(raw.Data, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// checkOrder checks that entries arrive as 1..n with no gap, each
// checkpoint after the entry it covers up to, and returns n.
func checkOrder(t *testing.T, msgs []ship.Message) uint64 {
	t.Helper()
	var next uint64 = 1
	ckpts := 0
	for i, m := range msgs {
		switch m.Kind {
		case ship.KindEntry:
			if m.Seq != next {
				t.Fatalf("message %d: entry seq %d; want %d", i, m.Seq, next)
			}
			if m.Entry == nil || m.Entry.Seq != m.Seq || len(m.Canonical) == 0 || len(m.Signature) == 0 {
				t.Fatalf("message %d: incomplete entry %+v", i, m)
			}
			next++
		case ship.KindCheckpoint:
			if m.Size != next-1 {
				t.Fatalf("message %d: checkpoint size %d arrives after entry %d; want right after the entry it covers", i, m.Size, next-1)
			}
			ckpts++
		default:
			t.Fatalf("message %d: kind %q", i, m.Kind)
		}
	}
	if ckpts == 0 {
		t.Fatal("no checkpoint streamed")
	}
	return next - 1
}

func TestOrderedDeliveryToDenyDeleteStream(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	l.Write(t, 250)
	l.Close(t)
	sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a", BatchSize: 64}, f.sink(t, true, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sh.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	want := l.Stats().NextSeq - 1
	if got := checkOrder(t, f.read(t)); got != want {
		t.Fatalf("streamed %d entries; want %d", got, want)
	}
	st := sh.Status()[0]
	if st.LastSeq != want || st.BacklogEntries != 0 || st.LastError != "" {
		t.Fatalf("Status() = %+v; want caught up at %d", st, want)
	}
	// The server refuses to delete from the stream.
	s, err := f.js.Stream(ctx, f.stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(ctx, 1); err == nil {
		t.Fatal("DeleteMsg on a deny_delete stream succeeded; want refused")
	}
	if err := s.Purge(ctx); err == nil {
		t.Fatal("Purge on a deny_purge stream succeeded; want refused")
	}
}

func TestStreamThatCanLoseMessagesRefused(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		cfg   jetstream.StreamConfig
		allow bool // allow_limits
		ok    bool
	}{
		{"max age", jetstream.StreamConfig{MaxAge: time.Hour, DenyDelete: true, DenyPurge: true}, false, false},
		{"max msgs", jetstream.StreamConfig{MaxMsgs: 1000, DenyDelete: true, DenyPurge: true}, false, false},
		{"max bytes", jetstream.StreamConfig{MaxBytes: 1 << 20, DenyDelete: true, DenyPurge: true}, false, false},
		{"deletes allowed", jetstream.StreamConfig{DenyPurge: true}, false, false},
		{"purge allowed", jetstream.StreamConfig{DenyDelete: true}, false, false},
		{"work queue", jetstream.StreamConfig{Retention: jetstream.WorkQueuePolicy, DenyDelete: true, DenyPurge: true}, false, false},
		{"max age allowed", jetstream.StreamConfig{MaxAge: time.Hour, DenyDelete: true, DenyPurge: true}, true, true},
		{"append only", jetstream.StreamConfig{DenyDelete: true, DenyPurge: true}, false, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := f
			g.stream = f.stream + "_" + string(rune('A'+i))
			g.subject = f.subject + "_" + string(rune('a'+i))
			cfg := tc.cfg
			cfg.Name, cfg.Subjects = g.stream, []string{g.subject + ".>"}
			if _, err := f.js.CreateStream(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			err := g.sink(t, false, tc.allow).Check(ctx)
			if tc.ok != (err == nil) {
				t.Fatalf("Check(%s) = %v; want ok=%v", tc.name, err, tc.ok)
			}
		})
	}
}

func TestResumeAfterKill(t *testing.T) {
	f := setup(t)
	dir := t.TempDir()
	l := shiptest.OpenLog(t, dir, nil)
	run := func(d time.Duration) {
		sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a", Interval: 5 * time.Millisecond, BatchSize: 7}, f.sink(t, true, false))
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		sh.Run(ctx) // cut off wherever it is, as a kill would
		sh.Close()
	}
	for round := 0; round < 4; round++ {
		l.Write(t, 40)
		run(30 * time.Millisecond)
	}
	l.Close(t)
	// The last start runs to completion.
	sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a", BatchSize: 7}, f.sink(t, true, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sh.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := f.read(t)
	// At least once: a message sent again after a cut may appear twice
	// (JetStream drops it within its duplicate window); in order, no gaps.
	var seen []ship.Message
	last := map[string]bool{}
	for _, m := range msgs {
		if last[m.ID()] {
			continue
		}
		last[m.ID()] = true
		seen = append(seen, m)
	}
	if got, want := checkOrder(t, seen), l.Stats().NextSeq-1; got != want {
		t.Fatalf("streamed %d entries; want %d", got, want)
	}
	if len(msgs) != len(seen) {
		t.Logf("%d duplicates dropped by the reader", len(msgs)-len(seen))
	}
}
