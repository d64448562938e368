package tls

import (
	gotls "crypto/tls"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// BenchmarkParse measures a ClientHello from crypto/tls and the server's
// first record, then 64 KiB of opaque records, against a plain copy of the
// same bytes (see l7test.Bench).
func BenchmarkParse(b *testing.B) {
	h := hello(b, &gotls.Config{ServerName: "api.example.test", NextProtos: []string{"h2", "http/1.1"}})
	cases := []struct {
		name  string
		steps []l7test.Step
	}{
		{"client-hello", []l7test.Step{c(h), s(serverHello)}},
		{"hello-then-64KiB", []l7test.Step{c(h), s(serverHello + strings.Repeat("\x17", 32<<10)), c([]byte(strings.Repeat("\x17", 32<<10)))}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			l7test.Bench(b, func() l7.Parser { return New(l7.DefaultOptions()) }, tc.steps, 16<<10)
		})
	}
}
