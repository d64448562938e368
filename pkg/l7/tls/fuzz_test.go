package tls

import (
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// FuzzParse checks that no byte stream makes the parser panic or break
// the contract, and that how the stream is cut into reads changes nothing.
// Seeds in testdata/fuzz/FuzzParse are recorded from real clients.
func FuzzParse(f *testing.F) {
	seeds := [][2]string{
		{"\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x03" + strings.Repeat("r", 32) + "\x00\x00\x02\x13\x01\x01\x00", serverHello},
		{"\x16\x03\x01\x00\x02\x01\x00\x16\x03\x01\x00\x02\x00\x10", "\x15\x03\x03\x00\x02\x02\x28"},
	}
	for _, tt := range seeds {
		f.Add([]byte(tt[0]), []byte(tt[1]), uint8(7))
	}
	f.Fuzz(func(t *testing.T, client, server []byte, split uint8) {
		for _, redact := range []bool{true, false} {
			opts := l7.Options{Redact: redact}
			l7test.Fuzz(t, func() l7.Parser { return New(opts) }, client, server, split)
		}
	})
}
