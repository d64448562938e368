package auditlog

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
)

// fuzzHost is the host the seed segments under testdata/fuzz were written
// with; FuzzSegmentReader reopens them as that host.
const fuzzHost = "host-a"

// fuzzSigner returns a fixed Ed25519 key (derived from a constant, so no
// key file is committed): the seed segments under testdata/fuzz are signed
// with it and verify. Ed25519 signs deterministically, which keeps the
// coverage of each input stable for the fuzzing engine.
func fuzzSigner(t testing.TB) signature.SignerVerifier {
	t.Helper()
	seed := sha256.Sum256([]byte("vigil auditlog fuzz key"))
	sv, err := signature.LoadSignerVerifier(ed25519.NewKeyFromSeed(seed[:]), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return sv
}

// FuzzDecodeEntry checks that DecodeEntry never panics, rejects bad input
// with a *MalformedError, and accepts only canonical bytes: whatever it
// accepts re-encodes to exactly the input. Seeds: testdata/fuzz/FuzzDecodeEntry.
func FuzzDecodeEntry(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			var me *MalformedError
			if !errors.As(err, &me) {
				t.Fatalf("DecodeEntry(%q) = %v; want a *MalformedError", b, err)
			}
			return
		}
		if got := e.AppendCanonical(nil); !bytes.Equal(got, b) {
			t.Fatalf("DecodeEntry(%q) accepted it, but it re-encodes as %q", b, got)
		}
	})
}

// FuzzSegmentReader writes arbitrary bytes as the only segment of a log and
// runs Verify and Open (recovery) on it: both must return, with an error or
// not, and never panic or hang. A log that verifies must still verify, with
// no entry lost, after it has been reopened and closed. Seeds (signed with
// fuzzSigner): testdata/fuzz/FuzzSegmentReader.
//
// Each input opens a log (with fsyncs), so the engine's default 60 s
// minimization of every new input dominates a short run: fuzz it with
// -fuzzminimizetime=2s, and TMPDIR on a tmpfs for speed.
func FuzzSegmentReader(f *testing.F) {
	sv := fuzzSigner(f)
	// One fixed directory, emptied for every input: a new random name each
	// time would make the coverage of an input vary (the engine then keeps
	// chasing coverage that is not there).
	dir := filepath.Join(f.TempDir(), "log")
	f.Fuzz(func(t *testing.T, seg []byte) {
		hang := time.AfterFunc(30*time.Second, func() {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			panic(fmt.Sprintf("Verify or Open did not return within 30s:\n%s", buf))
		})
		defer hang.Stop()
		ctx := context.Background()
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segmentName(1)), seg, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, verr := Verify(ctx, dir, sv, VerifyOptions{Workers: 1})
		if verr != nil {
			var ve *VerifyError
			if !errors.As(verr, &ve) {
				t.Fatalf("Verify = %v; want a *VerifyError", verr)
			}
		}
		// A fixed clock keeps the coverage of an input stable.
		now := func() time.Time { return time.Unix(1700000000, 0) }
		l, oerr := Open(ctx, dir, Options{Signer: sv, Host: fuzzHost, Now: now})
		if oerr == nil {
			if err := l.Close(ctx); err != nil {
				t.Fatalf("Close after Open = %v", err)
			}
		}
		if verr != nil {
			return
		}
		if oerr != nil {
			t.Fatalf("Open of a log that verifies = %v", oerr)
		}
		rep2, err := Verify(ctx, dir, sv, VerifyOptions{Workers: 1})
		if err != nil {
			t.Fatalf("Verify after reopening a log that verified = %v", err)
		}
		if rep2.LastSeq < rep.LastSeq {
			t.Fatalf("reopening lost entries: last seq %d, was %d", rep2.LastSeq, rep.LastSeq)
		}
	})
}
