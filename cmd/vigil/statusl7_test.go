package main

import (
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/agent"
)

// TestPrintStatusL7: the proxy's L7 counters get a row of their own, with
// only the stop reasons that happened.
func TestPrintStatusL7(t *testing.T) {
	tests := []struct {
		name string
		l7   agent.L7Status
		want string
	}{
		{"none", agent.L7Status{Stopped: map[string]uint64{"encrypted": 0, "too_large": 0}},
			"l7         0 connections parsed, 0 unparsed (protocol unknown), 0 requests, 0 denied; parsing stopped: none\n"},
		{"some", agent.L7Status{Parsed: 7, Unparsed: 1, Requests: 4012, Denied: 3, Stopped: map[string]uint64{"too_large": 1, "encrypted": 2, "parse_error": 0}},
			"l7         7 connections parsed, 1 unparsed (protocol unknown), 4012 requests, 3 denied; parsing stopped: 2 encrypted, 1 too_large\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printStatus(&b, agent.StatusResponse{Intercept: true, Proxy: &agent.ProxyStatus{L7: tt.l7}})
			if !strings.Contains(b.String(), tt.want) {
				t.Errorf("printStatus L7 row:\n%s\nwant %q", b.String(), tt.want)
			}
		})
	}
}
