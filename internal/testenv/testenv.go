// Package testenv gates tests on what the machine offers. A test that needs
// root, BPF or a real server skips with the reason on a developer's laptop;
// CI runs as root and sets VIGIL_REQUIRE_PRIVILEGED=1, which turns every such
// skip into a failure, so a missing capability can never pass CI silently.
package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"testing"

	"github.com/sigstore/sigstore/pkg/signature"
)

// RequireEnv is the variable that turns skips into failures.
const RequireEnv = "VIGIL_REQUIRE_PRIVILEGED"

// Required reports whether skips must fail (CI).
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Need skips t with "needs WHAT: REASON" when reason is not empty, or fails
// it when Required.
func Need(t testing.TB, what, reason string) {
	t.Helper()
	if reason == "" {
		return
	}
	if Required() {
		t.Fatalf("needs %s: %s (%s=1 turns this skip into a failure)", what, reason, RequireEnv)
	}
	t.Skipf("needs %s: %s", what, reason)
}

// Signer returns a fresh ECDSA P-256 sigstore signer, the default key type,
// for tests that need a real audit log.
func Signer(t testing.TB) signature.SignerVerifier {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return sv
}
