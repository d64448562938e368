// Package jsonl appends entries and checkpoints as JSON lines to a file,
// the simplest thing a SIEM agent (Filebeat, Vector, Fluent Bit) can tail.
package jsonl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/vigil-ebpf/vigil/pkg/ship"
)

// Config configures a Sink.
type Config struct {
	Name string // sink name (cursor file); default "jsonl"
	Path string // file to append to; created with mode 0600
}

// Sink appends one JSON object (a ship.Message) per line and syncs the
// file before Publish returns, so the cursor never moves past lines a
// crash could lose. After a crash, lines written after the last cursor
// update are written again: readers de-duplicate on (host, kind, seq/size).
type Sink struct {
	cfg Config
	mu  sync.Mutex
	f   *os.File
}

// New validates cfg; the file is opened by Check.
func New(cfg Config) (*Sink, error) {
	if cfg.Name == "" {
		cfg.Name = "jsonl"
	}
	if cfg.Path == "" {
		return nil, errors.New("jsonl: no path configured")
	}
	return &Sink{cfg: cfg}, nil
}

// Name implements ship.Sink.
func (s *Sink) Name() string { return s.cfg.Name }

// Kind implements ship.Sink.
func (s *Sink) Kind() string { return "jsonl" }

// Check opens (or creates) the file for appending.
func (s *Sink) Check(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open()
}

func (s *Sink) open() error {
	if s.f != nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.cfg.Path), 0o700); err != nil {
		return fmt.Errorf("jsonl: %w", err)
	}
	f, err := os.OpenFile(s.cfg.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("jsonl: open %s: %w", s.cfg.Path, err)
	}
	s.f = f
	return nil
}

// Publish implements ship.EntrySink.
func (s *Sink) Publish(_ context.Context, msgs []ship.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.open(); err != nil {
		return err
	}
	var buf []byte
	for _, m := range msgs {
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("jsonl: encode: %w", err)
		}
		buf = append(append(buf, b...), '\n')
	}
	if _, err := s.f.Write(buf); err != nil {
		s.reset()
		return fmt.Errorf("jsonl: write %s: %w", s.cfg.Path, err)
	}
	if err := s.f.Sync(); err != nil {
		s.reset()
		return fmt.Errorf("jsonl: sync %s: %w", s.cfg.Path, err)
	}
	return nil
}

// reset closes the file after a failed write so the next attempt reopens
// it (it may have been rotated or its disk replaced).
func (s *Sink) reset() {
	s.f.Close()
	s.f = nil
}

// Close implements ship.Sink.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
