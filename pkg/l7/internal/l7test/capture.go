package l7test

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Captures are the second on-disk form of a recorded conversation, used by
// the SQL parsers, whose fuzz targets take a whole conversation as one
// input: the two sides must keep their order (the server speaks first in
// MySQL), which the (client, server) seeds of Fuzz lose.
//
// A capture file (testdata/NAME.cap) is a sequence of steps, each a
// direction byte ('C' from the client, 'S' from the server), a 4-byte
// big-endian length and the bytes, in the order the recorder read them.

// WriteCapture stores steps as a capture file.
func WriteCapture(path string, steps []Step) error {
	return os.WriteFile(path, EncodeCapture(steps), 0o644)
}

// EncodeCapture returns steps in capture format.
func EncodeCapture(steps []Step) []byte {
	var b []byte
	for _, s := range steps {
		d := byte('C')
		if s.Dir == l7.FromServer {
			d = 'S'
		}
		b = append(b, d)
		b = binary.BigEndian.AppendUint32(b, uint32(len(s.Data)))
		b = append(b, s.Data...)
	}
	return b
}

// ReadCapture loads a capture file.
func ReadCapture(path string) ([]Step, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var out []Step
	for {
		var h [5]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("capture: %s: %w", path, err)
		}
		n := binary.BigEndian.Uint32(h[1:])
		if (h[0] != 'C' && h[0] != 'S') || n > 64<<20 {
			return nil, fmt.Errorf("capture: %s: bad step header", path)
		}
		s := Step{Dir: l7.FromClient, Data: make([]byte, n)}
		if h[0] == 'S' {
			s.Dir = l7.FromServer
		}
		if _, err := io.ReadFull(br, s.Data); err != nil {
			return nil, fmt.Errorf("capture: %s: %w", path, err)
		}
		out = append(out, s)
	}
}

// DecodeCapture reads steps from capture-format bytes, stopping quietly
// at the first malformed one: fuzz targets take captures as input, so
// mutations keep the order in which the two sides spoke.
func DecodeCapture(b []byte) []Step {
	var out []Step
	for len(b) >= 5 && (b[0] == 'C' || b[0] == 'S') {
		n := int(binary.BigEndian.Uint32(b[1:]))
		if n > len(b)-5 {
			n = len(b) - 5
		}
		d := l7.FromClient
		if b[0] == 'S' {
			d = l7.FromServer
		}
		out = append(out, Step{Dir: d, Data: b[5 : 5+n]})
		b = b[5+n:]
	}
	return out
}

// RecordCapture relays a session to target through a Recorder and stores
// what the connections carried as testdata/NAME.cap, with the capture as
// the fuzz seed testdata/fuzz/FuzzParse/NAME for FuzzConversation.
// session gets the address to connect to.
func RecordCapture(t testing.TB, name, target string, session func(addr string, port int) error) {
	t.Helper()
	rec, err := NewRecorder(target)
	if err != nil {
		t.Fatal(err)
	}
	serr := session(rec.Addr(), rec.Port())
	steps := slices.Concat(rec.Close()...)
	if serr != nil {
		t.Fatalf("session %s: %v", name, serr)
	}
	if len(steps) == 0 {
		t.Fatalf("session %s recorded nothing", name)
	}
	raw := EncodeCapture(steps)
	if err := os.WriteFile(filepath.Join("testdata", name+".cap"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join("testdata/fuzz/FuzzParse", name)
	if err := writeCorpus(seed, fmt.Sprintf("[]byte(%q)", raw), fmt.Sprintf("[]byte(%q)", []byte{byte(len(steps) % 7)})); err != nil {
		t.Fatal(err)
	}
}

// ReplayCaptures replays each testdata/NAME.cap whole, byte by byte and in
// reads of 3 and 1000 bytes, checks that every delivery reports the same,
// and compares what render makes of the whole one with testdata/NAME.want
// (with update, it writes NAME.want instead).
func ReplayCaptures(t *testing.T, names []string, newParser func() l7.Parser, render func(Result) []string, update bool) {
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			steps, err := ReadCapture(filepath.Join("testdata", name+".cap"))
			if err != nil {
				t.Fatal(err)
			}
			var first string
			for i, split := range []Splitter{Whole, Bytewise, Chunks(3), Chunks(1000)} {
				res, err := Run(newParser(), steps, split)
				if err != nil {
					t.Fatalf("delivery %d: %v", i, err)
				}
				got := strings.Join(render(res), "\n")
				if i == 0 {
					first = got
					Golden(t, filepath.Join("testdata", name+".want"), got+"\n", update)
				} else if got != first {
					t.Errorf("delivery %d: got\n%s\nwant\n%s", i, got, first)
				}
			}
		})
	}
}

// Golden compares got with the file at path, or writes it there when
// update is set.
func Golden(t testing.TB, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update, or the recording with %s=1, to create it)", err, CaptureEnv)
	}
	if got != string(want) {
		t.Errorf("got\n%s\nwant (%s)\n%s", got, path, want)
	}
}

// writeCorpus stores a go test fuzz corpus file with the given argument
// lines.
func writeCorpus(path string, args ...string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b := "go test fuzz v1\n" + strings.Join(args, "\n") + "\n"
	return os.WriteFile(path, []byte(b), 0o644)
}
