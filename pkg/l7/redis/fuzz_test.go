package redis

import (
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// FuzzParse checks that no byte stream makes the parser panic or break
// the contract, and that how the stream is cut into reads changes nothing.
// Seeds in testdata/fuzz/FuzzParse are recorded from real clients.
func FuzzParse(f *testing.F) {
	seeds := [][2]string{
		{"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nPING\r\n", "+OK\r\n+PONG\r\n"},
		{"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n", "%1\r\n+a\r\n:1\r\n>2\r\n+x\r\n+y\r\n|1\r\n+k\r\n+v\r\n~1\r\n,1.5\r\n"},
		{"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n", "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nm\r\n"},
		{"set k \"a\\x41\" 'b'\r\n", "-ERR x\r\n!3\r\nerr\r\n=7\r\ntxt:abc\r\n"},
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
