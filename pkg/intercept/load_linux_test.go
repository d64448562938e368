package intercept

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func TestClassifyLoad(t *testing.T) {
	rejected := fmt.Errorf("program vigil_connect4: %w", &ebpf.VerifierError{
		Cause: unix.EACCES,
		Log:   []string{"0: (61) r1 = *(u32 *)(r1 +200)", "invalid bpf_ctx access off=200 size=4", "processed 1 insns"},
	})
	missing := fmt.Errorf("program vigil_connect4: %w", &ebpf.VerifierError{
		Cause: unix.EINVAL,
		Log:   []string{"0: (85) call bpf_get_netns_cookie#122", "unknown func bpf_get_netns_cookie#122"},
	})
	tests := []struct {
		name    string
		err     error
		debug   bool
		kind    error
		mention string
	}{
		{"verifier", rejected, false, ErrVerifier, hintVerifier},
		{"verifier debug", rejected, true, ErrVerifier, "verifier log:\n"},
		{"unknown helper", missing, false, ErrKernelTooOld, hintKernel},
		{"eperm", fmt.Errorf("load program: %w", unix.EPERM), false, ErrPermission, hintPermission},
		{"not supported", fmt.Errorf("attach: %w", ebpf.ErrNotSupported), false, ErrKernelTooOld, hintKernel},
	}
	for _, tt := range tests {
		i := &Interceptor{cfg: Config{Debug: tt.debug}, log: slog.New(slog.DiscardHandler)}
		err := i.classifyLoad(tt.err)
		if !errors.Is(err, tt.kind) || !strings.Contains(err.Error(), tt.mention) {
			t.Errorf("%s: classifyLoad = %v; want %v mentioning %q", tt.name, err, tt.kind, tt.mention)
		}
		if !tt.debug && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: classifyLoad = %q; want one line without Debug", tt.name, err)
		}
	}
}
