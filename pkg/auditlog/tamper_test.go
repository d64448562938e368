package auditlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
)

// rawFrame locates one frame inside a segment file.
type rawFrame struct {
	off  int64 // offset of the frame's length field
	size int   // body length
	kind byte

	// Entry frames only: where the canonical entry and the signature sit
	// in the file, and the entry's seq.
	seq      uint64
	canonOff int64
	canonLen int
	sigOff   int64
	sigLen   int

	// Checkpoint frames only: where the signed note sits in the file.
	noteOff int64
	noteLen int
}

func (f rawFrame) end() int64 { return f.off + frameOverhead + int64(f.size) }

// walkFrames parses a segment file independently of the package's reader
// and returns its bytes and frames (the header frame first).
func walkFrames(t *testing.T, path string) ([]byte, []rawFrame) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < preambleLength || string(data[:len(segmentMagic)]) != segmentMagic {
		t.Fatalf("%s: not a segment", path)
	}
	var frames []rawFrame
	for off := int64(preambleLength); off < int64(len(data)); {
		if int64(len(data))-off < frameOverhead {
			t.Fatalf("%s: torn frame header at %d", path, off)
		}
		size := int(binary.BigEndian.Uint32(data[off:]))
		body := data[off+frameOverhead:]
		if len(body) < size {
			t.Fatalf("%s: torn frame at %d", path, off)
		}
		body = body[:size]
		if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(data[off+4:]) {
			t.Fatalf("%s: CRC mismatch at %d", path, off)
		}
		f := rawFrame{off: off, size: size, kind: body[0]}
		bodyOff := off + frameOverhead
		switch f.kind {
		case kindEntry:
			rec, err := parseEntryBody(body)
			if err != nil {
				t.Fatalf("%s: frame at %d: %v", path, off, err)
			}
			e, err := DecodeEntry(rec.canonical)
			if err != nil {
				t.Fatalf("%s: frame at %d: %v", path, off, err)
			}
			f.seq = e.Seq
			f.canonOff, f.canonLen = bodyOff+5, len(rec.canonical)
			f.sigOff, f.sigLen = bodyOff+int64(size-len(rec.sig)), len(rec.sig)
		case kindCheckpoint:
			cr, err := parseCheckpointBody(body)
			if err != nil {
				t.Fatalf("%s: frame at %d: %v", path, off, err)
			}
			f.noteOff, f.noteLen = bodyOff+5, len(cr.note)
		}
		frames = append(frames, f)
		off = f.end()
	}
	return data, frames
}

// fixCRC recomputes the CRC of frame f in data, as an attacker who knows
// the format would.
func fixCRC(data []byte, f rawFrame) {
	body := data[f.off+frameOverhead : f.end()]
	binary.BigEndian.PutUint32(data[f.off+4:], crc32.Checksum(body, castagnoli))
}

// entryFrames returns the entry frames of frames.
func entryFrames(frames []rawFrame) []rawFrame {
	var out []rawFrame
	for _, f := range frames {
		if f.kind == kindEntry {
			out = append(out, f)
		}
	}
	return out
}

// segmentPaths returns the segment files of dir in chain order.
func segmentPaths(t *testing.T, dir string) []string {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(segs))
	for i, s := range segs {
		out[i] = s.Path
	}
	return out
}

// copyLogDir copies the regular files of src into a new temporary directory.
func copyLogDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
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

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// flipIn flips one bit of the byte at the first occurrence of needle inside
// data[off:off+n], keeping the bytes valid UTF-8 when needle is ASCII.
func flipIn(t *testing.T, data []byte, off int64, n int, needle string) {
	t.Helper()
	i := bytes.Index(data[off:off+int64(n)], []byte(needle))
	if i < 0 {
		t.Fatalf("%q not found in the %d bytes at %d", needle, n, off)
	}
	data[off+int64(i)] ^= 0x01
}

func TestVerifyDetectsTampering(t *testing.T) {
	ctx := context.Background()
	sv := testSigner(t)
	other := testSigner(t)
	opts := Options{SegmentMaxBytes: 32 << 10, CheckpointEvery: 100}
	const total = 600
	base := t.TempDir()
	writeLog(t, base, sv, total, opts)
	rep, err := Verify(ctx, base, sv, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify(untouched log) = %v", err)
	}
	if rep.Segments < 4 || rep.LastSeq != total {
		t.Fatalf("base log has %d segments, last seq %d; want ≥ 4 segments and seq %d", rep.Segments, rep.LastSeq, total)
	}
	// A second log with the same history length, written by the real
	// writer under another key: an attacker who re-signs everything.
	resigned := t.TempDir()
	writeLog(t, resigned, other, total, opts)

	// middle picks an entry frame in the middle of segment i.
	middle := func(t *testing.T, dir string, i int) (string, []byte, rawFrame) {
		path := segmentPaths(t, dir)[i]
		data, frames := walkFrames(t, path)
		ents := entryFrames(frames)
		return path, data, ents[len(ents)/2]
	}

	cases := []struct {
		name   string
		dir    string             // log to copy; base when empty
		key    signature.Verifier // verifier; sv when nil
		tamper func(t *testing.T, dir string) (kind string, seq uint64)
	}{
		{
			name: "entry byte flipped, CRC left wrong",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				path, data, f := middle(t, dir, 1)
				flipIn(t, data, f.canonOff, f.canonLen, "psql")
				writeFile(t, path, data)
				return ChainBreak, f.seq
			},
		},
		{
			name: "entry byte flipped in last segment, CRC left wrong",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				segs := segmentPaths(t, dir)
				path, data, f := middle(t, dir, len(segs)-1)
				flipIn(t, data, f.canonOff, f.canonLen, "psql")
				writeFile(t, path, data)
				return ChainBreak, f.seq
			},
		},
		{
			name: "entry byte flipped, CRC recomputed",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				path, data, f := middle(t, dir, 1)
				flipIn(t, data, f.canonOff, f.canonLen, "10.1.2.3")
				fixCRC(data, f)
				writeFile(t, path, data)
				return ChainBreak, f.seq
			},
		},
		{
			name: "signature byte flipped, CRC recomputed",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				path, data, f := middle(t, dir, 2)
				data[f.sigOff+int64(f.sigLen)-1] ^= 0x01
				fixCRC(data, f)
				writeFile(t, path, data)
				return BadSignature, f.seq
			},
		},
		{
			name: "checkpoint note byte flipped, CRC recomputed",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				path := segmentPaths(t, dir)[1]
				data, frames := walkFrames(t, path)
				for _, f := range frames {
					if f.kind != kindCheckpoint {
						continue
					}
					// The size line follows the origin line; flip a
					// character of the root hash line after it.
					note := data[f.noteOff : f.noteOff+int64(f.noteLen)]
					lines := strings.SplitN(string(note), "\n", 4)
					var size uint64
					if _, err := fmt.Sscan(lines[1], &size); err != nil {
						t.Fatalf("checkpoint size line %q: %v", lines[1], err)
					}
					note[len(lines[0])+1+len(lines[1])+1+3] ^= 0x01
					fixCRC(data, f)
					writeFile(t, path, data)
					return BadCheckpoint, size
				}
				t.Fatal("no checkpoint in segment 1")
				return "", 0
			},
		},
		{
			name: "entry frame deleted",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				path, data, f := middle(t, dir, 1)
				out := append(bytes.Clone(data[:f.off]), data[f.end():]...)
				writeFile(t, path, out)
				return Gap, f.seq
			},
		},
		{
			name: "adjacent entry frames swapped",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				path := segmentPaths(t, dir)[2]
				data, frames := walkFrames(t, path)
				for i := 1; i+1 < len(frames); i++ {
					a, b := frames[i], frames[i+1]
					if a.kind != kindEntry || b.kind != kindEntry || i < len(frames)/2 {
						continue
					}
					out := bytes.Clone(data[:a.off])
					out = append(out, data[b.off:b.end()]...)
					out = append(out, data[a.off:a.end()]...)
					out = append(out, data[b.end():]...)
					writeFile(t, path, out)
					return Reorder, a.seq
				}
				t.Fatal("no adjacent entry frames")
				return "", 0
			},
		},
		{
			name: "middle segment removed",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				path := segmentPaths(t, dir)[2]
				_, frames := walkFrames(t, path)
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				return Gap, entryFrames(frames)[0].seq
			},
		},
		{
			name: "tail cut mid-frame",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				segs := segmentPaths(t, dir)
				path := segs[len(segs)-1]
				_, frames := walkFrames(t, path)
				ents := entryFrames(frames)
				f := ents[len(ents)-1]
				if err := os.Truncate(path, f.off+frameOverhead+int64(f.size)/2); err != nil {
					t.Fatal(err)
				}
				return Truncated, f.seq
			},
		},
		{
			name: "trailing frames removed at a frame boundary",
			tamper: func(t *testing.T, dir string) (string, uint64) {
				if _, err := os.Stat(filepath.Join(dir, CheckpointFile)); err != nil {
					t.Fatalf("checkpoint file: %v", err)
				}
				segs := segmentPaths(t, dir)
				path := segs[len(segs)-1]
				_, frames := walkFrames(t, path)
				ents := entryFrames(frames)
				f := ents[len(ents)-3]
				if err := os.Truncate(path, f.off); err != nil {
					t.Fatal(err)
				}
				return Truncated, f.seq
			},
		},
		{
			name:   "log re-signed with another key",
			dir:    resigned,
			tamper: func(t *testing.T, dir string) (string, uint64) { return WrongKey, 1 },
		},
		{
			name:   "good log, wrong public key",
			key:    other,
			tamper: func(t *testing.T, dir string) (string, uint64) { return WrongKey, 1 },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.dir
			if src == "" {
				src = base
			}
			dir := copyLogDir(t, src)
			wantKind, wantSeq := tc.tamper(t, dir)
			v := tc.key
			if v == nil {
				v = sv
			}
			_, err := Verify(ctx, dir, v, VerifyOptions{})
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v; want a *VerifyError of kind %s at seq %d", err, wantKind, wantSeq)
			}
			if ve.Kind != wantKind || ve.Seq != wantSeq {
				t.Fatalf("Verify = %v (kind %s, seq %d); want kind %s at seq %d", err, ve.Kind, ve.Seq, wantKind, wantSeq)
			}
			if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("seq %d", wantSeq)) || len(ve.Reason) < 10 {
				t.Errorf("Verify error %q does not name seq %d with a reason", msg, wantSeq)
			}
			t.Logf("%v", err)
		})
	}
}

// TestWalkFramesMatchesReader checks the test's frame walker against the
// package's own reader, so tampering lands where the cases think it does.
func TestWalkFramesMatchesReader(t *testing.T) {
	dir := t.TempDir()
	sv := testSigner(t)
	writeLog(t, dir, sv, 50, Options{CheckpointEvery: 20})
	path := segmentPaths(t, dir)[0]
	_, frames := walkFrames(t, path)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, fr, err := readHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; ; i++ {
		body, off, err := fr.next()
		if err == io.EOF {
			if i != len(frames) {
				t.Fatalf("reader saw %d frames; walker %d", i, len(frames))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if off != frames[i].off || len(body) != frames[i].size || body[0] != frames[i].kind {
			t.Fatalf("frame %d: reader (off %d, %d bytes, kind %d); walker %+v", i, off, len(body), body[0], frames[i])
		}
	}
}
