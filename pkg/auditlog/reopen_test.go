package auditlog

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// TestReopenWithNewHost reopens a log under another host name, and so
// another default checkpoint origin: the new checkpoints must not land in a
// segment whose header names the old origin, or the log stops verifying.
func TestReopenWithNewHost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	sv := testSigner(t)
	writeLog(t, dir, sv, 10, Options{}) // host-a
	l, err := Open(ctx, dir, Options{Signer: sv, Host: "host-b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendSync(ctx, sampleEntry(1)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(ctx, dir, sv, VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify after a host rename = %v", err)
	}
	if rep.LastSeq != 11 || rep.Segments != 2 {
		t.Errorf("Verify = %d entries in %d segments; want 11 in 2 (a new segment for the new origin)", rep.LastSeq, rep.Segments)
	}
}

// Recovery resumes the Merkle tree from the newest checkpoint only if that
// checkpoint's signature verifies: a forged one makes Open refuse.
func TestReopenRefusesForgedCheckpoint(t *testing.T) {
	dir := t.TempDir()
	sv := testSigner(t)
	writeLog(t, dir, sv, 50, Options{CheckpointEvery: 10})
	segs := segmentPaths(t, dir)
	last := segs[len(segs)-1]
	data, frames := walkFrames(t, last)
	var ck *rawFrame
	for i := range frames {
		if frames[i].kind == kindCheckpoint {
			ck = &frames[i]
		}
	}
	if ck == nil {
		t.Fatal("no checkpoint frame in the last segment")
	}
	// Change the size line's digit inside the signed note text.
	note := data[ck.noteOff : ck.noteOff+int64(ck.noteLen)]
	i := bytes.IndexByte(note, '\n') + 1
	note[i] ^= 0x01
	fixCRC(data, *ck)
	writeFile(t, last, data)
	_, err := Open(context.Background(), dir, Options{Signer: sv})
	var ce *CorruptError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "checkpoint signature") {
		t.Fatalf("Open with a forged checkpoint = %v; want a CorruptError about the checkpoint", err)
	}
}
