// Package testenv gates tests on what the machine offers. A test that needs
// root, BPF or a real server skips with the reason on a developer's laptop;
// CI runs as root and sets VIGIL_REQUIRE_PRIVILEGED=1, which turns every such
// skip into a failure, so a missing capability can never pass CI silently.
package testenv

import (
	"os"
	"testing"
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
