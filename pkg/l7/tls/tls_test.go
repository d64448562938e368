package tls

import (
	"bytes"
	"context"
	gotls "crypto/tls"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

// captureConn keeps what a TLS client writes and ends the handshake by
// returning EOF on the first read.
type captureConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *captureConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *captureConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// hello returns the ClientHello crypto/tls sends with cfg.
func hello(t testing.TB, cfg *gotls.Config) []byte {
	t.Helper()
	conn := &captureConn{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = gotls.Client(conn, cfg).HandshakeContext(ctx)
	if conn.out.Len() == 0 {
		t.Fatal("client wrote no ClientHello")
	}
	return conn.out.Bytes()
}

// reframe cuts the handshake messages of one record into records of at
// most n bytes each, as a client with small records (or a post-quantum key
// share) sends them.
func reframe(rec []byte, n int) []byte {
	body := rec[5:]
	var out []byte
	for len(body) > 0 {
		k := min(n, len(body))
		out = append(out, 0x16, 0x03, 0x01, byte(k>>8), byte(k))
		out = append(out, body[:k]...)
		body = body[k:]
	}
	return out
}

func c(b []byte) l7test.Step   { return l7test.Step{Dir: l7.FromClient, Data: b} }
func s(str string) l7test.Step { return l7test.Step{Dir: l7.FromServer, Data: []byte(str)} }

const serverHello = "\x16\x03\x03\x00\x04\x02\x00\x00\x00"

func TestParse(t *testing.T) {
	h13 := hello(t, &gotls.Config{ServerName: "example.test", NextProtos: []string{"h2", "http/1.1"}})
	h12 := hello(t, &gotls.Config{ServerName: "old.example.test", MaxVersion: gotls.VersionTLS12})
	noSNI := hello(t, &gotls.Config{InsecureSkipVerify: true})
	tests := []struct {
		name  string
		steps []l7test.Step
		want  []string
	}{
		{
			name:  "tls 1.3 with alpn",
			steps: []l7test.Step{c(h13), s(serverHello + "\x17\x03\x03\x00\x01x"), c([]byte("\x17\x03\x03\x00\x02ab"))},
			want:  []string{`> tls client_hello "client_hello example.test" target="example.test" alpn="h2,http/1.1" version="TLS1.3"`, `< ok bytes=0`},
		},
		{
			name:  "tls 1.2",
			steps: []l7test.Step{c(h12), s(serverHello)},
			want:  []string{`> tls client_hello "client_hello old.example.test" target="old.example.test" version="TLS1.2"`, `< ok bytes=0`},
		},
		{
			name:  "no server name",
			steps: []l7test.Step{c(noSNI), s("\x15\x03\x03\x00\x02\x02\x28")},
			want:  []string{`> tls client_hello "client_hello" target="" version="TLS1.3"`, `< error bytes=0 error="alert handshake_failure"`},
		},
		{
			name:  "hello over many records",
			steps: []l7test.Step{c(reframe(h13, 50)), s(serverHello)},
			want:  []string{`> tls client_hello "client_hello example.test" target="example.test" alpn="h2,http/1.1" version="TLS1.3"`, `< ok bytes=0`},
		},
		{
			name:  "change cipher spec after hello",
			steps: []l7test.Step{c(append(append([]byte{}, h13...), "\x14\x03\x03\x00\x01\x01"...)), s(serverHello)},
			want:  []string{`> tls client_hello "client_hello example.test" target="example.test" alpn="h2,http/1.1" version="TLS1.3"`, `< ok bytes=0`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var last *Parser
			got := l7test.CheckSplits(t, func() l7.Parser { last = New(l7.DefaultOptions()); return last }, tt.steps)
			if got.String() != strings.Join(tt.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
			if got.Left != [2]int{} {
				t.Errorf("left %v bytes unconsumed", got.Left)
			}
			if !last.Encrypted() {
				t.Errorf("Encrypted() = false after the ClientHello")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	h := hello(t, &gotls.Config{ServerName: "example.test"})
	tests := []struct {
		name  string
		steps []l7test.Step
		want  error
	}{
		{"http", []l7test.Step{c([]byte("GET / HTTP/1.1\r\n\r\n"))}, l7.ErrProtocol},
		{"application data first", []l7test.Step{c([]byte("\x17\x03\x03\x00\x01x"))}, l7.ErrProtocol},
		{"empty record", []l7test.Step{c([]byte("\x16\x03\x01\x00\x00"))}, l7.ErrProtocol},
		{"oversized record", []l7test.Step{c([]byte("\x16\x03\x01\xff\xff"))}, l7.ErrProtocol},
		{"server hello from client", []l7test.Step{c([]byte(serverHello))}, l7.ErrProtocol},
		{"hello body too short", []l7test.Step{c([]byte("\x16\x03\x01\x00\x0e\x01\x00\x00\x0a\x03\x03abcdefgh"))}, l7.ErrProtocol},
		{"server speaks first", []l7test.Step{s(serverHello)}, l7.ErrProtocol},
		{"server not tls", []l7test.Step{c(h), s("HTTP/1.1 400 Bad Request\r\n\r\n")}, l7.ErrProtocol},
		{"hello too large", []l7test.Step{c([]byte("\x16\x03\x01\x00\x04\x01\x10\x00\x00"))}, l7.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []l7test.Splitter{l7test.Whole, l7test.Bytewise} {
				_, err := l7test.Run(New(l7.DefaultOptions()), tt.steps, split)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Run() error = %v; want %v", err, tt.want)
				}
			}
		})
	}
}

func TestDeny(t *testing.T) {
	p := New(l7.DefaultOptions())
	msgs, err := p.Parse(l7.FromClient, hello(t, &gotls.Config{ServerName: "blocked.test"}))
	if err != nil || len(msgs) != 1 || msgs[0].Request == nil {
		t.Fatalf("Parse() = %+v, %v", msgs, err)
	}
	got := p.Deny(msgs[0].Request, "no")
	if want := []byte{21, 3, 3, 0, 2, 2, 49}; !bytes.Equal(got, want) {
		t.Errorf("Deny() = %v; want %v (fatal access_denied alert)", got, want)
	}
	// A client given that alert fails its handshake with it.
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		buf := make([]byte, 4096)
		server.Read(buf)
		server.Write(got)
	}()
	err = gotls.Client(client, &gotls.Config{ServerName: "blocked.test"}).Handshake()
	if err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("client handshake error = %v; want access denied", err)
	}
}

// TestDenyCurl: curl, given the Deny alert in place of a ServerHello,
// fails the handshake and says the server denied access.
func TestDenyCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		testenv.Need(t, "curl", "not installed (scripts/e2e-env.sh start installs it)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		p := New(l7.DefaultOptions())
		var held []byte
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			held = append(held, buf[:n]...)
			msgs, err := p.Parse(l7.FromClient, held)
			if err != nil {
				return
			}
			if len(msgs) > 0 && msgs[0].Request != nil {
				c.Write(p.Deny(msgs[0].Request, "test"))
				return
			}
		}
	}()
	host := "denied.example.test:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	out, err := exec.Command("curl", "-sS", "-k", "--resolve", host+":127.0.0.1", "https://"+host+"/").CombinedOutput()
	t.Logf("curl: %s", out)
	if err == nil || !strings.Contains(string(out), "access denied") {
		t.Errorf("curl = %v, %q; want a failure naming access denied", err, out)
	}
}
