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
	f   file
}

// file is the part of *os.File the sink uses; a test puts a failing
// writer in front of it.
type file interface {
	Write([]byte) (int, error)
	Sync() error
	Stat() (os.FileInfo, error)
	Truncate(int64) error
	Close() error
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
	info, err := s.f.Stat()
	if err != nil {
		s.reset(-1)
		return fmt.Errorf("jsonl: stat %s: %w", s.cfg.Path, err)
	}
	size := info.Size()
	if _, err := s.f.Write(buf); err != nil {
		return errors.Join(fmt.Errorf("jsonl: write %s: %w", s.cfg.Path, err), s.reset(size))
	}
	if err := s.f.Sync(); err != nil {
		return errors.Join(fmt.Errorf("jsonl: sync %s: %w", s.cfg.Path, err), s.reset(size))
	}
	return nil
}

// reset cuts the file back to size (when not negative) after a failed
// write, so a half-written line does not stay in front of the retried
// batch for a reader to choke on, then closes it so the next attempt
// reopens it (it may have been rotated or its disk replaced).
func (s *Sink) reset(size int64) error {
	var err error
	if size >= 0 {
		if terr := s.f.Truncate(size); terr != nil {
			err = fmt.Errorf("jsonl: cut %s back to %d bytes after a failed write: %w", s.cfg.Path, size, terr)
		}
	}
	s.f.Close()
	s.f = nil
	return err
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
