package auditlog

import (
	"context"
	"strings"
	"testing"
)

// Whatever bytes the kernel or /proc hand over, an appended entry must be
// writable, recoverable and verifiable.
func TestAppendSanitizes(t *testing.T) {
	dir := t.TempDir()
	sv := testSigner(t)
	ctx := context.Background()
	l, err := Open(ctx, dir, Options{Signer: sv})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", 3<<20)
	attrs := map[string]string{"bad\xff": "v\xfe", "big": huge}
	e := Entry{Type: ConnOpen, Identity: Identity{Comm: "ps\xffql", Cmdline: huge}, Attrs: attrs}
	if _, err := l.AppendSync(ctx, e); err != nil {
		t.Fatalf("AppendSync = %v", err)
	}
	if _, ok := attrs["bad\xff"]; !ok {
		t.Error("the caller's attribute map was modified")
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, dir, sv, VerifyOptions{}); err != nil {
		t.Fatalf("Verify = %v", err)
	}
	l, err = Open(ctx, dir, Options{Signer: sv})
	if err != nil {
		t.Fatalf("reopen = %v", err)
	}
	defer l.Close(ctx)
	var got Entry
	Scan(ctx, dir, 1, func(r Record) error { got = r.Entry; return ErrStop })
	if got.Identity.Comm != "ps\uFFFDql" || !strings.HasSuffix(got.Identity.Cmdline, truncMark) || len(got.Identity.Cmdline) > maxStringLen {
		t.Errorf("stored comm %q, cmdline of %d bytes; want U+FFFD and a marked cut", got.Identity.Comm, len(got.Identity.Cmdline))
	}
}

func TestOriginValidated(t *testing.T) {
	for _, host := range []string{"my host", "a+b"} {
		_, err := Open(context.Background(), t.TempDir(), Options{Signer: testSigner(t), Host: host})
		if err == nil || !strings.Contains(err.Error(), "origin") {
			t.Errorf("Open(host %q) = %v; want an origin error", host, err)
		}
	}
}
