// Package detect names the protocol of a connection from the destination
// port and its first bytes, so the proxy can pick a parser, or none: an
// unknown protocol is relayed untouched.
package detect

import (
	"bytes"
	"encoding/binary"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Protocol names, as parsers report them in l7.Request.Protocol.
const (
	TLS      = "tls"
	HTTP     = "http"
	Redis    = "redis"
	Postgres = "postgres"
	MySQL    = "mysql"
)

// maxProbe bounds how many bytes Detect wants before it gives up and
// answers "" (unknown).
const maxProbe = 1024

// Postgres message codes that open a connection (protocol 3.0 startup,
// SSLRequest, GSSENCRequest, CancelRequest).
const (
	pgProtocol3 = 196608
	pgSSL       = 80877103
	pgGSSENC    = 80877104
	pgCancel    = 80877102
)

// Detect names the protocol of a connection to port from the first bytes
// p that direction d sent. done is false while p is a prefix that could
// still go either way; call again with more bytes. A protocol in which
// the server speaks first (MySQL) is recognised from the server's bytes:
// when the client sends nothing and port is a MySQL port, the proxy waits
// for the server's greeting and asks with d == l7.FromServer. "" means
// unknown: relay the connection untouched.
func Detect(port uint16, d l7.Dir, p []byte) (proto string, done bool) {
	if d == l7.FromServer {
		return server(p)
	}
	if len(p) == 0 {
		return "", false
	}
	switch {
	case p[0] == 0x16:
		return tlsHello(p)
	case p[0] == '*':
		return resp(p)
	case p[0] == 0:
		return postgres(p)
	}
	return textual(port, p)
}

// ServerFirst reports ports whose protocol starts with the server, so the
// proxy knows to wait for the server's bytes rather than the client's.
func ServerFirst(port uint16) bool { return port == 3306 || port == 33060 }

// tlsHello: a handshake record (type 22, version 3.x) whose first message
// is a ClientHello (type 1).
func tlsHello(p []byte) (string, bool) {
	want := []byte{0x16, 0x03}
	if len(p) < 6 {
		if bytes.HasPrefix(want, p[:min(len(p), 2)]) {
			return "", false
		}
		return "", true
	}
	if p[1] == 3 && p[2] <= 4 && p[5] == 1 {
		return TLS, true
	}
	return "", true
}

// resp: "*<count>\r\n$" — a RESP array of bulk strings.
func resp(p []byte) (string, bool) {
	i := 1
	for ; i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
	}
	if i == len(p) {
		return "", i > 12
	}
	if i == 1 || i > 12 || p[i] != '\r' {
		return "", true
	}
	rest := p[i:]
	want := []byte("\r\n$")
	if len(rest) < len(want) {
		return "", !bytes.HasPrefix(want, rest)
	}
	if bytes.HasPrefix(rest, want) {
		return Redis, true
	}
	return "", true
}

// postgres: a length and a code that only a Postgres client sends first.
func postgres(p []byte) (string, bool) {
	if len(p) < 8 {
		return "", false
	}
	n := binary.BigEndian.Uint32(p[0:4])
	code := binary.BigEndian.Uint32(p[4:8])
	switch {
	case code == pgProtocol3 && n >= 8 && n <= 10000,
		(code == pgSSL || code == pgGSSENC) && n == 8,
		code == pgCancel && n == 16:
		return Postgres, true
	}
	return "", true
}

// server recognises a MySQL initial handshake: a packet with sequence 0
// and protocol version 10, then a NUL-terminated server version.
func server(p []byte) (string, bool) {
	if len(p) < 6 {
		return "", false
	}
	n := int(p[0]) | int(p[1])<<8 | int(p[2])<<16
	if p[3] != 0 || p[4] != 10 || n < 10 {
		return "", true
	}
	end := min(len(p), 4+n)
	if bytes.IndexByte(p[5:end], 0) > 0 {
		return MySQL, true
	}
	if len(p) >= 4+n || len(p) >= maxProbe {
		return "", true
	}
	return "", false
}

// textual tells an HTTP/1.x request line from a Redis inline command:
// both start with a word, but only HTTP ends its first line with
// " HTTP/1.x".
func textual(port uint16, p []byte) (string, bool) {
	i := bytes.IndexByte(p, '\n')
	line := p
	if i >= 0 {
		line = p[:i]
	}
	for _, c := range line {
		if c < ' ' && c != '\r' && c != '\t' || c >= 0x7f {
			return "", true // text protocols start with a printable line
		}
	}
	if len(line) >= maxProbe {
		return "", true
	}
	if i < 0 {
		return "", false
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if isHTTPLine(line) {
		return HTTP, true
	}
	word, _, _ := bytes.Cut(line, []byte(" "))
	if len(word) == 0 {
		return "", true
	}
	for _, c := range word {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '|') {
			return "", true
		}
	}
	if port == 6379 || port == 6380 || inlineCommand(string(bytes.ToUpper(word))) {
		return Redis, true
	}
	return "", true
}

// isHTTPLine matches "METHOD SP target SP HTTP/1.0|1.1".
func isHTTPLine(line []byte) bool {
	parts := bytes.Split(line, []byte(" "))
	if len(parts) != 3 || len(parts[0]) == 0 || len(parts[1]) == 0 {
		return false
	}
	for _, c := range parts[0] {
		if c < 'A' || c > 'Z' {
			if c != '-' && c != '_' {
				return false
			}
		}
	}
	v := string(parts[2])
	return v == "HTTP/1.1" || v == "HTTP/1.0"
}

// inlineCommand lists the commands people type at a Redis server by hand
// (telnet, nc) on a port that is not Redis's own.
func inlineCommand(w string) bool {
	switch w {
	case "PING", "AUTH", "HELLO", "INFO", "SELECT", "GET", "SET", "DEL", "KEYS",
		"SCAN", "EXISTS", "MONITOR", "CLIENT", "CONFIG", "FLUSHALL", "FLUSHDB", "QUIT":
		return true
	}
	return false
}
