package detect

import (
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name string
		port uint16
		dir  l7.Dir
		in   string
		want string
		done bool
	}{
		{"tls", 443, l7.FromClient, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc", TLS, true},
		{"tls on any port", 9999, l7.FromClient, "\x16\x03\x01\x02\x00\x01", TLS, true},
		{"tls prefix", 443, l7.FromClient, "\x16\x03", "", false},
		{"tls record not hello", 443, l7.FromClient, "\x16\x03\x03\x00\x04\x02", "", true},
		{"http get", 80, l7.FromClient, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP, true},
		{"http on redis port", 6379, l7.FromClient, "GET /x HTTP/1.1\r\n", HTTP, true},
		{"http line incomplete", 8080, l7.FromClient, "POST /api HTT", "", false},
		{"http2 preface", 80, l7.FromClient, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "", true},
		{"resp array", 6379, l7.FromClient, "*1\r\n$4\r\nPING\r\n", Redis, true},
		{"resp array other port", 7000, l7.FromClient, "*3\r\n$", Redis, true},
		{"resp prefix", 7000, l7.FromClient, "*3", "", false},
		{"star not resp", 7000, l7.FromClient, "*hello\r\n", "", true},
		{"redis inline on redis port", 6379, l7.FromClient, "get foo\r\n", Redis, true},
		{"redis inline ping anywhere", 7000, l7.FromClient, "PING\r\n", Redis, true},
		{"inline word elsewhere", 7000, l7.FromClient, "HELO mail.test\r\n", "", true},
		{"postgres startup", 5432, l7.FromClient, "\x00\x00\x00\x29\x00\x03\x00\x00user\x00", Postgres, true},
		{"postgres ssl request", 5432, l7.FromClient, "\x00\x00\x00\x08\x04\xd2\x16\x2f", Postgres, true},
		{"postgres gssenc request", 5432, l7.FromClient, "\x00\x00\x00\x08\x04\xd2\x16\x30", Postgres, true},
		{"postgres cancel", 5432, l7.FromClient, "\x00\x00\x00\x10\x04\xd2\x16\x2e", Postgres, true},
		{"postgres prefix", 5432, l7.FromClient, "\x00\x00\x00", "", false},
		{"zero bytes not postgres", 5432, l7.FromClient, "\x00\x00\x00\x08\x00\x00\x00\x00", "", true},
		{"mysql greeting", 3306, l7.FromServer, "\x4a\x00\x00\x00\x0a8.0.36\x00\x08\x00\x00\x00", MySQL, true},
		{"mariadb greeting", 3306, l7.FromServer, "\x5b\x00\x00\x00\x0a5.5.5-10.11.6-MariaDB\x00", MySQL, true},
		{"server banner", 22, l7.FromServer, "SSH-2.0-OpenSSH_9.2\r\n", "", true},
		{"server prefix", 3306, l7.FromServer, "\x4a\x00", "", false},
		{"ssh client", 22, l7.FromClient, "SSH-2.0-OpenSSH_9.2\r\n", "", true},
		{"binary", 1234, l7.FromClient, "\x01\x02\x03", "", true},
		{"nothing yet", 80, l7.FromClient, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, done := Detect(tt.port, tt.dir, []byte(tt.in))
			if got != tt.want || done != tt.done {
				t.Errorf("Detect(%d, %v, %q) = %q, %v; want %q, %v", tt.port, tt.dir, tt.in, got, done, tt.want, tt.done)
			}
		})
	}
}

func TestServerFirst(t *testing.T) {
	if !ServerFirst(3306) || ServerFirst(5432) {
		t.Errorf("ServerFirst(3306), ServerFirst(5432) = %v, %v; want true, false", ServerFirst(3306), ServerFirst(5432))
	}
}

// FuzzDetect: no input panics, and an answer with done == false stays a
// prefix: adding bytes never changes a final answer.
func FuzzDetect(f *testing.F) {
	f.Add(uint16(443), false, []byte("\x16\x03\x01\x02\x00\x01"))
	f.Add(uint16(80), false, []byte("GET / HTTP/1.1\r\n"))
	f.Add(uint16(6379), false, []byte("*1\r\n$4\r\nPING\r\n"))
	f.Add(uint16(5432), false, []byte("\x00\x00\x00\x08\x04\xd2\x16\x2f"))
	f.Add(uint16(3306), true, []byte("\x4a\x00\x00\x00\x0a8.0.36\x00"))
	f.Fuzz(func(t *testing.T, port uint16, server bool, p []byte) {
		d := l7.FromClient
		if server {
			d = l7.FromServer
		}
		got, done := Detect(port, d, p)
		if !done && got != "" {
			t.Fatalf("Detect = %q but not done", got)
		}
		if done {
			more, _ := Detect(port, d, append(append([]byte{}, p...), "\r\nmore"...))
			if more != got {
				t.Fatalf("Detect(%q) = %q, but with more bytes %q", p, got, more)
			}
		}
	})
}
