package jsonl

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/ship"
)

// halfWriter writes the first n bytes of a batch to the real file, then
// fails, as a full disk does in the middle of a write.
type halfWriter struct {
	*os.File
	n int
}

func (h *halfWriter) Write(b []byte) (int, error) {
	w, err := h.File.Write(b[:min(h.n, len(b))])
	if err != nil {
		return w, err
	}
	return w, errors.New("no space left on device")
}

// A failed write is cut back, so after the retry every line is whole.
func TestFailedWriteLeavesNoPartialLine(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := New(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(seq uint64) []ship.Message {
		return []ship.Message{{Kind: ship.KindEntry, Host: "h", Seq: seq}, {Kind: ship.KindEntry, Host: "h", Seq: seq + 1}}
	}
	if err := s.Publish(ctx, msg(1)); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.f.Close()
	s.f = &halfWriter{File: f, n: 30}
	s.mu.Unlock()
	if err := s.Publish(ctx, msg(3)); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Publish through a failing writer = %v; want the write error", err)
	}
	if err := s.Publish(ctx, msg(3)); err != nil {
		t.Fatalf("retry = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("file has %d lines; want 4:\n%s", len(lines), b)
	}
	for i, l := range lines {
		var m ship.Message
		if err := json.Unmarshal([]byte(l), &m); err != nil || m.Seq != uint64(i+1) {
			t.Fatalf("line %d = %q (%v); want the entry with seq %d", i+1, l, err, i+1)
		}
	}
}
