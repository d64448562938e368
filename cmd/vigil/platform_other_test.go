//go:build !linux

package main

import (
	"context"
	"runtime"
	"strings"
	"testing"
)

// Off Linux the commands that need the kernel refuse with one line, and
// the ones an auditor needs still run.
func TestLinuxOnlyCommands(t *testing.T) {
	for _, tc := range []struct {
		args []string
		name string // as the message names the command
	}{
		{[]string{"agent"}, "agent"},
		{[]string{"agent", "--no-intercept", "--data-dir", t.TempDir()}, "agent"},
		{[]string{"bench", "proxy"}, "bench proxy"},
	} {
		code, out, errs := vigil(t, context.Background(), tc.args...)
		want := "vigil: " + tc.name + " runs on Linux only (this is " + runtime.GOOS + ")\n"
		if code != exitInternal || errs != want || out != "" {
			t.Errorf("vigil %s = %d, %q, %q; want %d, %q", strings.Join(tc.args, " "), code, out, errs, exitInternal, want)
		}
	}
	if code, out, errs := vigil(t, context.Background(), "version"); code != 0 || out == "" {
		t.Errorf("vigil version = %d, %q, %q; want it to run", code, out, errs)
	}
}
