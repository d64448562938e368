package jsonl_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/vigil-ebpf/vigil/internal/shiptest"
	"github.com/vigil-ebpf/vigil/pkg/ship"
	"github.com/vigil-ebpf/vigil/pkg/ship/jsonl"
)

func TestLinesInOrderAndResume(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "siem", "vigil.jsonl")
	l := shiptest.OpenLog(t, dir, nil)
	drain := func() ship.SinkStatus {
		k, err := jsonl.New(jsonl.Config{Path: out})
		if err != nil {
			t.Fatal(err)
		}
		sh, err := ship.New(ship.Config{Dir: dir, Host: "host-a", BatchSize: 16}, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Check(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := sh.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer sh.Close()
		return sh.Status()[0]
	}
	l.Write(t, 50)
	l.WaitCheckpoint(t, 50)
	drain()
	l.Write(t, 50)
	l.Close(t)
	st := drain()
	want := l.Stats().NextSeq - 1
	if st.LastSeq != want || st.BacklogEntries != 0 {
		t.Fatalf("Status() = %+v; want caught up at %d", st, want)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var next uint64 = 1
	ckpts := 0
	for sc.Scan() {
		var m ship.Message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		switch m.Kind {
		case ship.KindEntry:
			if m.Seq != next {
				t.Fatalf("entry seq %d; want %d (no duplicates or gaps after a clean restart)", m.Seq, next)
			}
			next++
		case ship.KindCheckpoint:
			if m.Size != next-1 {
				t.Fatalf("checkpoint %d after entry %d", m.Size, next-1)
			}
			ckpts++
		}
	}
	if next-1 != want || ckpts < 2 {
		t.Fatalf("file holds entries up to %d and %d checkpoints; want %d and at least 2", next-1, ckpts, want)
	}
}
