package auditlog

import (
	"context"
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
