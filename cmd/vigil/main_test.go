package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// vigil runs the CLI in-process and returns exit code, stdout and stderr.
func vigil(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, newApp(strings.NewReader(""), &out, &errb), append([]string{"vigil"}, args...))
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := vigil(t, context.Background(), "version")
	if code != 0 || !strings.Contains(out, "vigil ") || !strings.Contains(out, "go1.") {
		t.Errorf("vigil version = %d, %q; want version and Go version", code, out)
	}
	code, out, _ = vigil(t, context.Background(), "version", "-o", "json")
	var v map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["commit"] == "" {
		t.Errorf("vigil version -o json = %d, %q", code, out)
	}
}

func TestKeysGenerate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	t.Setenv("VIGIL_KEY_PASSWORD", "")
	code, _, errs := vigil(t, ctx, "keys", "generate", "--out-dir", dir)
	if code != exitUsage || !strings.Contains(errs, "--no-password") {
		t.Errorf("keys generate without password = %d, %q; want usage error mentioning --no-password", code, errs)
	}
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	code, out, errs := vigil(t, ctx, "keys", "generate", "--out-dir", dir, "--type", "ed25519", "--password-file", pwFile)
	if code != 0 || !strings.Contains(out, "fingerprint: ") || !strings.Contains(out, "encrypted") {
		t.Fatalf("keys generate = %d, %q, %q", code, out, errs)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "signing.key"))
	if !bytes.Contains(b, []byte("ENCRYPTED SIGSTORE PRIVATE KEY")) {
		t.Errorf("signing.key is not encrypted:\n%s", b)
	}
	code, _, errs = vigil(t, ctx, "keys", "generate", "--out-dir", dir, "--no-password")
	if code != exitInternal || !strings.Contains(errs, "refusing to overwrite") {
		t.Errorf("keys generate over an existing key = %d, %q; want refusal", code, errs)
	}
	code, _, errs = vigil(t, ctx, "keys", "generate", "--out-dir", t.TempDir(), "--no-password", "--type", "dsa")
	if code != exitInternal || !strings.Contains(errs, "unknown key type") {
		t.Errorf("keys generate --type dsa = %d, %q", code, errs)
	}
}

func TestBenchThenVerify(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "log")
	code, out, errs := vigil(t, ctx, "bench", "audit", "--dir", dir, "--entries", "3000", "--workers", "16")
	if code != 0 || !strings.Contains(out, "ratio audit/baseline") {
		t.Fatalf("bench audit = %d, %q, %q", code, out, errs)
	}
	pub := filepath.Join(dir, "signing.pub")
	code, out, errs = vigil(t, ctx, "verify", "--pubkey", pub, dir)
	if code != 0 || !strings.Contains(out, "OK ") || !strings.Contains(out, "3000 (seq 1..3000)") {
		t.Fatalf("verify = %d, %q, %q", code, out, errs)
	}
	code, out, _ = vigil(t, ctx, "verify", "--pubkey", pub, "-o", "json", dir)
	var res struct {
		OK     bool
		Report struct{ Entries int }
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.OK || res.Report.Entries != 3000 {
		t.Errorf("verify -o json = %d, %q", code, out)
	}
	// A different key: exit 1 with the reason.
	other := t.TempDir()
	vigil(t, ctx, "keys", "generate", "--out-dir", other, "--no-password")
	code, out, _ = vigil(t, ctx, "verify", "--pubkey", filepath.Join(other, "signing.pub"), dir)
	if code != exitFailure || !strings.Contains(out, "wrong-key") || !strings.Contains(out, "first bad seq  1") {
		t.Errorf("verify with another key = %d, %q; want exit 1 naming wrong-key at seq 1", code, out)
	}
	code, _, errs = vigil(t, ctx, "verify", dir)
	if code != exitUsage || !strings.Contains(errs, "pubkey") {
		t.Errorf("verify without --pubkey = %d, %q; want usage error", code, errs)
	}
	code, _, errs = vigil(t, ctx, "verify", "--pubkey", filepath.Join(dir, "nope.pub"), dir)
	if code != exitInternal || !strings.Contains(errs, "read public key") {
		t.Errorf("verify with a missing key file = %d, %q", code, errs)
	}
	code, _, errs = vigil(t, ctx, "bench", "audit", "--dir", dir, "--entries", "10")
	if code == 0 || !strings.Contains(errs, "refusing to overwrite") && !strings.Contains(errs, "already holds") {
		t.Errorf("bench audit into a used dir = %d, %q; want a refusal", code, errs)
	}
}

func TestAgentZeroConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for round := 0; round < 2; round++ {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		code, _, errs := vigil(t, ctx, "agent", "--no-intercept", "--data-dir", dir, "--socket", filepath.Join(dir, "vigil.sock"))
		cancel()
		if code != 0 {
			t.Fatalf("agent round %d = %d, %q", round, code, errs)
		}
		if round == 0 && !strings.Contains(errs, "generated a signing key") {
			t.Errorf("first start did not report the generated key: %q", errs)
		}
	}
	code, out, errs := vigil(t, context.Background(), "verify", "--pubkey", filepath.Join(dir, "signing.pub"), dir)
	if code != 0 || !strings.Contains(out, "6 (seq 1..6)") {
		t.Errorf("verify agent log = %d, %q, %q; want 6 entries (start, policy.load, stop; twice)", code, out, errs)
	}
	code, _, errs = vigil(t, context.Background(), "agent", "--data-dir", dir, "extra")
	if code != exitUsage {
		t.Errorf("agent with an argument = %d, %q; want usage error", code, errs)
	}
}
