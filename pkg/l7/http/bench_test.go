package http

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// BenchmarkParse measures typical traffic against a plain copy of the
// same bytes (see l7test.Bench): a browser-like GET with a 1 KiB answer,
// 10 pipelined requests, and a 1 MiB chunked upload.
func BenchmarkParse(b *testing.B) {
	req := "GET /api/v1/items?id=42&sort=asc HTTP/1.1\r\nHost: api.example.test\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: application/json\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\nCookie: session=abcdef0123456789\r\n\r\n"
	resp := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Fri, 27 Nov 2026 02:00:00 GMT\r\n" +
		"Content-Length: 1024\r\n\r\n" + strings.Repeat("j", 1024)
	big := strings.Repeat("u", 1<<20)
	cases := []struct {
		name  string
		steps []l7test.Step
	}{
		{"get-1KiB", []l7test.Step{c(req), s(resp)}},
		{"pipeline-10", []l7test.Step{c(strings.Repeat(req, 10)), s(strings.Repeat(resp, 10))}},
		{"post-chunked-1MiB", []l7test.Step{
			c("POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
				strings.Repeat(fmt.Sprintf("%x\r\n%s\r\n", 16<<10, big[:16<<10]), 64) + "0\r\n\r\n"),
			s("HTTP/1.1 204 No Content\r\n\r\n"),
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			l7test.Bench(b, func() l7.Parser { return New(l7.DefaultOptions()) }, tc.steps, 16<<10)
		})
	}
}
