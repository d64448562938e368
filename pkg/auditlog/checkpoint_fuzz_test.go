package auditlog

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"

	"github.com/vigil-ebpf/vigil/pkg/keys"
)

// signedFuzzCheckpoint returns a checkpoint note signed by fuzzSigner, as
// the writer puts it in a segment and in CheckpointFile.
func signedFuzzCheckpoint(t testing.TB, origin string, size uint64) []byte {
	t.Helper()
	ns, err := keys.NoteSigner(origin, fuzzSigner(t))
	if err != nil {
		t.Fatal(err)
	}
	root := sha256.Sum256([]byte("root"))
	text := log.Checkpoint{Origin: origin, Size: size, Hash: root[:]}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(text)}, ns)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// FuzzCheckpointNote feeds arbitrary bytes as a checkpoint: the signed
// note in the checkpoint file `vigil verify` and recovery read, and the
// checkpoint record of a segment. Reading and verifying must not panic; a
// note that verifies names the origin it was verified for and a root of
// SHA-256 size; a record either reads back to its note or is rejected.
func FuzzCheckpointNote(f *testing.F) {
	valid := signedFuzzCheckpoint(f, "vigil/"+fuzzHost, 42)
	f.Add(valid)
	f.Add(valid[:len(valid)-5])
	f.Add(bytes.Replace(valid, []byte("\n42\n"), []byte("\n43\n"), 1))
	f.Add(bytes.Replace(valid, []byte("\n42\n"), []byte("\n-1\n"), 1))
	f.Add(signedFuzzCheckpoint(f, "vigil/"+strings.Repeat("h", 300), 1))
	f.Add([]byte("vigil/host-a\n18446744073709551615\nAAAA\n\n— vigil/host-a AAAAAAAA\n"))
	f.Add([]byte("\n\n"))
	f.Add([]byte{kindCheckpoint, 0, 0, 0, 2, '\n', '\n', 1})
	f.Add([]byte{kindCheckpoint, 0xff, 0xff, 0xff, 0xff})
	pub, err := fuzzSigner(f).PublicKey()
	if err != nil {
		f.Fatal(err)
	}
	if _, err := (&verifyRun{pub: pub}).openCheckpoint(valid, ""); err != nil {
		f.Fatalf("the valid seed does not verify: %v", err)
	}
	rng := [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)}
	f.Fuzz(func(t *testing.T, data []byte) {
		vr := &verifyRun{pub: pub}
		_, _ = parseCheckpointText(data)
		for _, origin := range []string{"", "vigil/" + fuzzHost} {
			c, err := vr.openCheckpoint(data, origin)
			if err != nil {
				if err.Error() == "" {
					t.Fatal("empty error")
				}
				continue
			}
			if origin != "" && c.Origin != origin {
				t.Fatalf("openCheckpoint(%q) verified a checkpoint of origin %q", origin, c.Origin)
			}
			if len(c.Hash) != sha256.Size {
				t.Fatalf("openCheckpoint verified a root of %d bytes", len(c.Hash))
			}
		}
		// The same bytes as a segment's checkpoint record, raw and framed.
		_, _ = parseCheckpointBody(data)
		r, err := parseCheckpointBody(appendCheckpointBody(nil, data, rng))
		if err != nil {
			t.Fatalf("checkpoint record of a %d-byte note does not read back: %v", len(data), err)
		}
		if !bytes.Equal(r.note, data) || len(r.rng) != len(rng) {
			t.Fatalf("checkpoint record read back as note %q, %d hashes", r.note, len(r.rng))
		}
	})
}
