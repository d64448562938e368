package http

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

func c(s string) l7test.Step { return l7test.Step{Dir: l7.FromClient, Data: []byte(s)} }
func s(s string) l7test.Step { return l7test.Step{Dir: l7.FromServer, Data: []byte(s)} }

func get(path string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: example.test\r\nUser-Agent: t\r\n\r\n"
}

func ok(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func chunked(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(p), p)
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

func TestParse(t *testing.T) {
	big := strings.Repeat("b", 1<<20)
	tests := []struct {
		name     string
		noRedact bool
		steps    []l7test.Step
		want     []string
		tunnel   bool
	}{
		{
			name:  "get",
			steps: []l7test.Step{c(get("/")), s(ok("hello"))},
			want:  []string{`> http GET "GET /" target="example.test" path="/" version="HTTP/1.1"`, `< 200 bytes=5`},
		},
		{
			name:  "query redacted",
			steps: []l7test.Step{c(get("/search?q=secret&flag&empty=")), s("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")},
			want: []string{
				`> http GET "GET /search?q=?&?&empty=?" target="example.test" path="/search?q=?&?&empty=?" version="HTTP/1.1"`,
				`< 404 bytes=0 error="Not Found"`,
			},
		},
		{
			name:     "query in clear",
			noRedact: true,
			steps:    []l7test.Step{c(get("/search?q=secret")), s(ok(""))},
			want: []string{
				`> http GET "GET /search?q=secret" target="example.test" path="/search?q=secret" version="HTTP/1.1"`,
				`< 200 bytes=0`,
			},
		},
		{
			name: "post with length, chunked response with trailer",
			steps: []l7test.Step{
				c("POST /api HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"),
				s("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
			},
			want: []string{`> http POST "POST /api" target="h" body="11" path="/api" version="HTTP/1.1"`, `< 201 bytes=11`},
		},
		{
			name: "chunked request",
			steps: []l7test.Step{
				c("PUT /f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + chunked("abc", "defg")),
				s("HTTP/1.1 204 No Content\r\n\r\n"),
			},
			want: []string{`> http PUT "PUT /f" target="h" body="chunked" path="/f" version="HTTP/1.1"`, `< 204 bytes=0`},
		},
		{
			name: "pipelining with HEAD",
			steps: []l7test.Step{
				c(get("/a") + "HEAD /b HTTP/1.1\r\nHost: example.test\r\n\r\n" + get("/c")),
				s(ok("aa") + "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + ok("cccc")),
			},
			want: []string{
				`> http GET "GET /a" target="example.test" path="/a" version="HTTP/1.1"`,
				`> http HEAD "HEAD /b" target="example.test" path="/b" version="HTTP/1.1"`,
				`> http GET "GET /c" target="example.test" path="/c" version="HTTP/1.1"`,
				`< 200 bytes=2`, `< 200 bytes=0`, `< 200 bytes=4`,
			},
		},
		{
			name: "expect 100-continue",
			steps: []l7test.Step{
				c("POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"),
				s("HTTP/1.1 100 Continue\r\n\r\n"),
				c("abc"),
				s(ok("done")),
			},
			want: []string{
				`> http POST "POST /up" target="h" body="3" expect="100-continue" path="/up" version="HTTP/1.1"`,
				`< 200 bytes=4`,
			},
		},
		{
			name: "websocket upgrade",
			steps: []l7test.Step{
				c("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n"),
				s("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
				c("\x81\x85\x00\x00\x00\x00hello"),
			},
			want: []string{
				`> http GET "GET /ws" target="h" path="/ws" upgrade="websocket" version="HTTP/1.1"`,
				`< 101 bytes=0`,
			},
			tunnel: true,
		},
		{
			name: "connect tunnel",
			steps: []l7test.Step{
				// The target names the tunnel's destination, not Host.
				c("CONNECT db.example.test:443 HTTP/1.1\r\nHost: allowed.example.test:443\r\n\r\n"),
				s("HTTP/1.1 200 Connection established\r\n\r\n"),
				c("\x16\x03\x01\x00\x05hello"), s("\x16\x03\x03\x00\x01x"),
			},
			want:   []string{`> http CONNECT "CONNECT db.example.test:443" target="db.example.test:443" version="HTTP/1.1"`, `< 200 bytes=0`},
			tunnel: true,
		},
		{
			name: "absolute form and body until close",
			steps: []l7test.Step{
				c("GET http://proxy.test:8080/x?a=b HTTP/1.0\r\n\r\n"),
				s("HTTP/1.0 200 OK\r\n\r\nall of this until close"),
			},
			want: []string{
				`> http GET "GET /x?a=?" target="proxy.test:8080" path="/x?a=?" version="HTTP/1.0"`,
				`< 200 bytes=0`,
			},
		},
		{
			name: "upgrade the server ignores: HTTP goes on, parsed",
			steps: []l7test.Step{
				c("GET /0 HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade\r\nUpgrade: nothing\r\n\r\n"),
				s(ok("plain")),
				c("DELETE /1 HTTP/1.1\r\nHost: b.example\r\n\r\n"),
				s(ok("")),
			},
			want: []string{
				`> http GET "GET /0" target="a.example" path="/0" upgrade="nothing" version="HTTP/1.1"`,
				`< 200 bytes=5`,
				`> http DELETE "DELETE /1" target="b.example" path="/1" version="HTTP/1.1"`,
				`< 200 bytes=0`,
			},
		},
		{
			name: "connect the server refuses: HTTP goes on, parsed",
			steps: []l7test.Step{
				c("CONNECT db.example.test:443 HTTP/1.1\r\nHost: db.example.test:443\r\n\r\n"),
				s("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"),
				c(get("/after")),
				s(ok("")),
			},
			want: []string{
				`> http CONNECT "CONNECT db.example.test:443" target="db.example.test:443" version="HTTP/1.1"`,
				`< 403 bytes=0 error="Forbidden"`,
				`> http GET "GET /after" target="example.test" path="/after" version="HTTP/1.1"`,
				`< 200 bytes=0`,
			},
		},
		{
			name: "absolute form and Host naming the same host",
			steps: []l7test.Step{
				c("GET http://Proxy.Test:80/x HTTP/1.1\r\nHost: proxy.test.\r\n\r\n"),
				s(ok("")),
			},
			want: []string{
				`> http GET "GET /x" target="Proxy.Test:80" path="/x" version="HTTP/1.1"`,
				`< 200 bytes=0`,
			},
		},
		{
			name: "response with a transfer coding other than chunked",
			steps: []l7test.Step{
				c(get("/gz")),
				s("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n\x1f\x8b..."),
			},
			want: []string{`> http GET "GET /gz" target="example.test" path="/gz" version="HTTP/1.1"`, `< 200 bytes=0`},
		},
		{
			name: "big bodies",
			steps: []l7test.Step{
				c(fmt.Sprintf("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", len(big), big)),
				s("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(big[:300000], big[:700000])),
				c(get("/after")),
				s(ok(big)),
			},
			want: []string{
				`> http POST "POST /big" target="h" body="1048576" path="/big" version="HTTP/1.1"`,
				`< 200 bytes=1000000`,
				`> http GET "GET /after" target="example.test" path="/after" version="HTTP/1.1"`,
				`< 200 bytes=1048576`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := l7.DefaultOptions()
			opts.Redact = !tt.noRedact
			var last *Parser
			newParser := func() l7.Parser { last = New(opts); return last }
			got := l7test.CheckSplits(t, newParser, tt.steps)
			if got.String() != strings.Join(tt.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
			if got.Left != [2]int{} {
				t.Errorf("left %v bytes unconsumed", got.Left)
			}
			if last.Encrypted() != tt.tunnel {
				t.Errorf("Encrypted() = %v; want %v", last.Encrypted(), tt.tunnel)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		steps []l7test.Step
		want  error
	}{
		{"binary", []l7test.Step{c("\x16\x03\x01\x02\x00")}, l7.ErrProtocol},
		{"no method", []l7test.Step{c(" / HTTP/1.1\r\n\r\n")}, l7.ErrProtocol},
		{"http2 preface", []l7test.Step{c("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")}, l7.ErrProtocol},
		{"two Hosts", []l7test.Step{c("GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n")}, l7.ErrProtocol},
		{"two lengths", []l7test.Step{c("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")}, l7.ErrProtocol},
		{"bad chunk size", []l7test.Step{c("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")}, l7.ErrProtocol},
		{"chunk without CRLF", []l7test.Step{c("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab")}, l7.ErrProtocol},
		{"bare LF", []l7test.Step{c("GET / HTTP/1.1\nHost: h\n\n")}, l7.ErrProtocol},
		{"header without colon", []l7test.Step{c("GET / HTTP/1.1\r\nHost\r\n\r\n")}, l7.ErrProtocol},
		{"response not http", []l7test.Step{c(get("/")), s("SSH-2.0-OpenSSH\r\n")}, l7.ErrProtocol},
		{"bad status", []l7test.Step{c(get("/")), s("HTTP/1.1 2x0 OK\r\n\r\n")}, l7.ErrProtocol},
		{"unrequested 101", []l7test.Step{c(get("/")), s("HTTP/1.1 101 Switching\r\n\r\n")}, l7.ErrProtocol},
		{"huge head", []l7test.Step{c("GET / HTTP/1.1\r\nX: " + strings.Repeat("a", l7.MaxBuffer))}, l7.ErrTooLarge},
		// Bytes after an Upgrade or CONNECT, before the server's answer,
		// could be the tunnel's or a request: refused, not passed.
		{"bytes before the upgrade's answer", []l7test.Step{
			c("GET / HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nGET /1 HTTP/1.1\r\nHost: b.example\r\n\r\n"),
		}, l7.ErrProtocol},
		{"bytes before the connect's answer", []l7test.Step{
			c("CONNECT db.example:443 HTTP/1.1\r\nHost: db.example:443\r\n\r\n\x16\x03\x01"),
		}, l7.ErrProtocol},
		// The policy must see the name the server serves.
		{"absolute form against another Host", []l7test.Step{c("GET http://allowed.example/1 HTTP/1.1\r\nHost: denied.example\r\n\r\n")}, l7.ErrProtocol},
		{"absolute form without authority", []l7test.Step{c("GET http:///x HTTP/1.1\r\nHost: denied.example\r\n\r\n")}, l7.ErrProtocol},
		{"absolute form with userinfo", []l7test.Step{c("GET http://allowed.example@denied.example/ HTTP/1.1\r\n\r\n")}, l7.ErrProtocol},
		{"host with userinfo", []l7test.Step{c("GET / HTTP/1.1\r\nHost: allowed.example:80@denied.example\r\n\r\n")}, l7.ErrProtocol},
		{"host with a port that is not a number", []l7test.Step{c("GET / HTTP/1.1\r\nHost: allowed.example:http\r\n\r\n")}, l7.ErrProtocol},
		// A name too long to be one would be clipped where it is recorded.
		{"host longer than a name", []l7test.Step{c("GET / HTTP/1.1\r\nHost: " + strings.Repeat("a", 4080) + ".allowed.example.denied.example\r\n\r\n")}, l7.ErrProtocol},
		// The Host beside an absolute-form target or a CONNECT is checked too.
		{"absolute form with an odd Host", []l7test.Step{c("GET http://allowed.example/ HTTP/1.1\r\nHost: allowed.example:80@denied.example\r\n\r\n")}, l7.ErrProtocol},
		{"connect with an odd Host", []l7test.Step{c("CONNECT allowed.example:443 HTTP/1.1\r\nHost: allowed.example:443 denied\r\n\r\n")}, l7.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []l7test.Splitter{l7test.Whole, l7test.Chunks(3)} {
				_, err := l7test.Run(New(l7.DefaultOptions()), tt.steps, split)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Run() error = %v; want %v", err, tt.want)
				}
			}
		})
	}
}

func TestDeny(t *testing.T) {
	tests := []struct {
		name    string
		request string
		close   bool
		body    bool
	}{
		{"no body", get("/admin"), false, true},
		{"body read whole", "POST /admin HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi", false, true},
		{"body still coming", "POST /admin HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\nhi", true, true},
		{"expect continue", "POST /admin HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n", true, true},
		{"http/1.0", "GET /admin HTTP/1.0\r\n\r\n", true, true},
		{"head has no body", "HEAD /admin HTTP/1.1\r\nHost: h\r\n\r\n", false, false},
	}
	// DenyLast is Deny with Connection: close in every case.
	for _, last := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s/last=%v", tt.name, last), func(t *testing.T) {
				p := New(l7.DefaultOptions())
				msgs, err := p.Parse(l7.FromClient, []byte(tt.request))
				if err != nil || len(msgs) == 0 || msgs[0].Request == nil {
					t.Fatalf("Parse() = %+v, %v", msgs, err)
				}
				deny := p.Deny
				if last {
					deny = p.DenyLast
				}
				got := string(deny(msgs[0].Request, "path /admin\r\nis denied"))
				if !strings.HasPrefix(got, "HTTP/1.1 403 Forbidden\r\n") {
					t.Fatalf("Deny() = %q", got)
				}
				if c := strings.Contains(got, "Connection: close\r\n"); c != (tt.close || last) {
					t.Errorf("Deny() = %q; Connection: close %v, want %v", got, c, tt.close || last)
				}
				head, body, _ := strings.Cut(got, "\r\n\r\n")
				want := "forbidden by policy: path /admin  is denied\n"
				if !strings.Contains(head+"\r\n", fmt.Sprintf("Content-Length: %d\r\n", len(want))) {
					t.Errorf("Deny() head %q lacks the body's length", head)
				}
				if (body == want) != tt.body || (!tt.body && body != "") {
					t.Errorf("Deny() body = %q", body)
				}
				if len(p.pending) != 0 {
					t.Errorf("denied request still waits for a response")
				}
			})
		}
	}
}

// TestDenyPipelined: after a denied request, the server's next response
// completes the next request, not the denied one.
func TestDenyPipelined(t *testing.T) {
	p := New(l7.DefaultOptions())
	msgs, err := p.Parse(l7.FromClient, []byte(get("/admin")+get("/ok")))
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Parse() = %+v, %v", msgs, err)
	}
	p.Deny(msgs[0].Request, "")
	msgs, err = p.Parse(l7.FromServer, []byte(ok("fine")))
	if err != nil || len(msgs) != 1 || msgs[0].Response == nil || msgs[0].Response.Status != "200" {
		t.Fatalf("Parse(response) = %+v, %v", msgs, err)
	}
	if len(p.pending) != 0 {
		t.Errorf("%d requests still wait", len(p.pending))
	}
}

// TestPendingBounded: past maxPending requests without responses, the
// parser gives up instead of queueing without bound.
func TestPendingBounded(t *testing.T) {
	p := New(l7.DefaultOptions())
	_, err := p.Parse(l7.FromClient, []byte(strings.Repeat("HEAD / HTTP/1.1\r\n\r\n", maxPending+1)))
	if !errors.Is(err, l7.ErrTooLarge) {
		t.Fatalf("Parse() error = %v; want ErrTooLarge", err)
	}
}

func TestValidHost(t *testing.T) {
	tests := []struct {
		host string
		want bool
	}{
		{"example.test", true},
		{"Example.Test.", true},
		{"example.test:8080", true},
		{"under_score.test", true},
		{"192.0.2.1", true},
		{"192.0.2.1:80", true},
		{"[2001:db8::1]", true},
		{"[2001:db8::1]:443", true},
		{"", false},
		{":80", false},
		{"example.test:", false},
		{"example.test:http", false},
		{"example.test:65536", false},
		{"example.test:+80", false},
		{"example.test:123456", false},
		{"a:80@b.example", false},
		{"a@b", false},
		{"a b", false},
		{"a/b", false},
		{"2001:db8::1", false},
		{"[2001:db8::1", false},
		{"[not-an-address]", false},
		{"[2001:db8::1]x", false},
		{"[2001:db8::1]:", false},
		{strings.Repeat("a", 254), true},
		{strings.Repeat("a", 254) + ":443", true},
		{strings.Repeat("a", 255), false},
	}
	for _, tt := range tests {
		if got := validHost(tt.host); got != tt.want {
			t.Errorf("validHost(%q) = %v; want %v", tt.host, got, tt.want)
		}
	}
}
