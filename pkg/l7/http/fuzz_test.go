package http

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
		{"GET /a?b=c HTTP/1.1\r\nHost: h\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\nHEAD / HTTP/1.1\r\n\r\n",
			"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"},
		{"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00", "HTTP/1.1 101 Switching Protocols\r\n\r\n\x81\x00"},
		{"CONNECT h:443 HTTP/1.1\r\n\r\n\x16\x03\x01", "HTTP/1.0 200 OK\r\n\r\n\x16\x03\x03"},
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
