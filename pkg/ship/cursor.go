package ship

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/atomicfile"
)

// Cursor is how far one sink has shipped, kept in a small file per sink so
// that shipping resumes where it stopped after a restart. It only moves
// forward after the sink confirmed what it covers.
type Cursor struct {
	Seq        uint64    `json:"seq"`                  // last entry confirmed shipped (entry sinks) or the last seq of the last shipped segment
	Segment    string    `json:"segment,omitempty"`    // local file name of the last shipped segment (segment sinks)
	Checkpoint uint64    `json:"checkpoint,omitempty"` // tree size of the last shipped checkpoint
	Updated    time.Time `json:"updated"`
}

// cursorFile is where the cursor of sink name lives under dir.
func cursorFile(dir, name string) string {
	return filepath.Join(dir, "ship", name+".cursor")
}

// loadCursor reads a cursor; a missing file is the zero cursor (ship everything).
func loadCursor(path string) (Cursor, error) {
	var c Cursor
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("ship: read cursor: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("ship: cursor %s is damaged (%v): remove it to ship everything again (sinks tolerate duplicates)", path, err)
	}
	return c, nil
}

// saveCursor replaces the cursor file atomically: a crash leaves the old
// cursor or the new one, never a torn file.
func saveCursor(path string, c Cursor) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("ship: cursor directory: %w", err)
	}
	if err := atomicfile.Write(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("ship: write cursor: %w", err)
	}
	return nil
}
