package redis

import (
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// BenchmarkParse measures typical traffic against a plain copy of the
// same bytes (see l7test.Bench): one SET and its reply, a pipeline of 100
// GETs and their replies, and a 1 MiB value streamed through.
func BenchmarkParse(b *testing.B) {
	var pipeC, pipeS strings.Builder
	for range 100 {
		pipeC.WriteString(cmd("GET", "user:1000:session"))
		pipeS.WriteString(bulk(strings.Repeat("s", 64)))
	}
	big := strings.Repeat("v", 1<<20)
	cases := []struct {
		name  string
		steps []l7test.Step
	}{
		{"set", []l7test.Step{c(cmd("SET", "user:1000:session", strings.Repeat("s", 64))), s("+OK\r\n")}},
		{"pipeline-100-get", []l7test.Step{c(pipeC.String()), s(pipeS.String())}},
		{"set-1MiB", []l7test.Step{c(cmd("SET", "blob", big)), s("+OK\r\n")}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			l7test.Bench(b, func() l7.Parser { return New(l7.DefaultOptions()) }, tc.steps, 16<<10)
		})
	}
}
