package auditlog

import (
	"context"
	"errors"
	"os"
	"testing"
)

// Recovery cuts only what a crash can leave behind; damage to complete
// records makes Open refuse, so the agent never deletes acknowledged
// entries on its own.
func TestRecoveryCutsOnlyTornTails(t *testing.T) {
	sv := testSigner(t)
	base := t.TempDir()
	writeLog(t, base, sv, 40, Options{CheckpointEvery: 1000})
	tests := []struct {
		name   string
		tamper func(t *testing.T, path string, data []byte, frames []rawFrame) []byte
		ok     bool // recovers (a torn tail) rather than refusing
	}{
		{"cut mid-frame", func(t *testing.T, _ string, data []byte, fs []rawFrame) []byte {
			last := fs[len(fs)-1]
			return data[:last.off+frameOverhead+3]
		}, true},
		{"zeros after the last frame", func(t *testing.T, _ string, data []byte, _ []rawFrame) []byte {
			return append(data, make([]byte, 4096)...)
		}, true},
		{"header byte flipped", func(t *testing.T, _ string, data []byte, _ []rawFrame) []byte {
			data[preambleLength+frameOverhead+3] ^= 0xff
			return data
		}, false},
		{"length of a middle frame flipped", func(t *testing.T, _ string, data []byte, fs []rawFrame) []byte {
			mid := entryFrames(fs)[20]
			data[mid.off] ^= 0x40
			return data
		}, false},
		{"middle frame zeroed", func(t *testing.T, _ string, data []byte, fs []rawFrame) []byte {
			mid := entryFrames(fs)[20]
			clear(data[mid.off:mid.end()])
			return data
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyLogDir(t, base)
			os.Remove(dir + "/" + CheckpointFile) // only the segment itself decides here
			segs := segmentPaths(t, dir)
			path := segs[len(segs)-1]
			data, frames := walkFrames(t, path)
			writeFile(t, path, tt.tamper(t, path, data, frames))
			l, err := Open(context.Background(), dir, Options{Signer: sv})
			var ce *CorruptError
			switch {
			case tt.ok && err != nil:
				t.Fatalf("Open after %s = %v; want recovery", tt.name, err)
			case tt.ok:
				l.Close(context.Background())
				if _, err := Verify(context.Background(), dir, sv, VerifyOptions{}); err != nil {
					t.Errorf("Verify after recovery = %v", err)
				}
			case !errors.As(err, &ce):
				if err == nil {
					l.Close(context.Background())
				}
				t.Fatalf("Open after %s = %v; want a CorruptError and the log untouched", tt.name, err)
			}
		})
	}
}

// A damaged tail that the signed checkpoint file covers is not cut.
func TestRecoveryRespectsCheckpointFile(t *testing.T) {
	sv := testSigner(t)
	dir := t.TempDir()
	writeLog(t, dir, sv, 40, Options{CheckpointEvery: 1000})
	segs := segmentPaths(t, dir)
	path := segs[len(segs)-1]
	data, frames := walkFrames(t, path)
	mid := entryFrames(frames)[30]
	writeFile(t, path, data[:mid.off+5]) // looks torn, but the checkpoint file covers 40
	_, err := Open(context.Background(), dir, Options{Signer: sv})
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Open = %v; want a CorruptError citing the checkpoint file", err)
	}
}

// A crash while a segment is being created can leave a file shorter than
// its preamble: recovery removes it (keeping a copy) rather than failing.
func TestRecoveryShortSegmentFile(t *testing.T) {
	sv := testSigner(t)
	dir := t.TempDir()
	writeLog(t, dir, sv, 10, Options{})
	for _, n := range []int{0, 3, preambleLength, preambleLength + 5} {
		path := dir + "/" + segmentName(1000+uint64(n))
		writeFile(t, path, []byte(segmentMagic + "\x00\x01\x00\x00\x00\x00\x00")[:n])
		l, err := Open(context.Background(), dir, Options{Signer: sv})
		if err != nil {
			t.Fatalf("Open with a %d-byte last segment = %v", n, err)
		}
		l.Close(context.Background())
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("the %d-byte segment was not removed", n)
		}
	}
}
