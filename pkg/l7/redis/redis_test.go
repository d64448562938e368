package redis

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/internal/l7test"
)

func c(s string) l7test.Step { return l7test.Step{Dir: l7.FromClient, Data: []byte(s)} }
func s(s string) l7test.Step { return l7test.Step{Dir: l7.FromServer, Data: []byte(s)} }

// cmd writes a command the way clients do: an array of bulk strings.
func cmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

func bulk(v string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(v), v) }

func TestParse(t *testing.T) {
	big := strings.Repeat("v", 200<<10)
	tests := []struct {
		name     string
		noRedact bool
		steps    []l7test.Step
		want     []string
	}{
		{
			name:  "set get",
			steps: []l7test.Step{c(cmd("SET", "k", "hello")), s("+OK\r\n"), c(cmd("get", "k")), s(bulk("hello"))},
			want: []string{
				`> redis SET "SET k ?" target="k"`, `< ok bytes=5`,
				`> redis GET "GET k" target="k"`, `< ok bytes=11`,
			},
		},
		{
			name:     "values in clear when not redacting",
			noRedact: true,
			steps:    []l7test.Step{c(cmd("SET", "k", "hello world")), s("+OK\r\n")},
			want:     []string{`> redis SET "SET k \"hello world\"" target="k"`, `< ok bytes=5`},
		},
		{
			name:     "credentials masked even in clear",
			noRedact: true,
			steps: []l7test.Step{
				c(cmd("AUTH", "alice", "s3cret")), s("+OK\r\n"),
				c(cmd("HELLO", "2", "AUTH", "alice", "s3cret", "SETNAME", "app")), s("*0\r\n"),
				c(cmd("CONFIG", "SET", "requirepass", "s3cret")), s("+OK\r\n"),
			},
			want: []string{
				`> redis AUTH "AUTH ? ?" target=""`, `< ok bytes=5`,
				`> redis HELLO "HELLO 2 AUTH ? ? SETNAME app" target=""`, `< ok bytes=4`,
				`> redis CONFIG "CONFIG SET requirepass ?" target="" subcommand="SET"`, `< ok bytes=5`,
			},
		},
		{
			name: "pipeline",
			steps: []l7test.Step{
				c(cmd("INCR", "n") + cmd("INCR", "n") + cmd("FLUSHALL")),
				s(":1\r\n:2\r\n+OK\r\n"),
			},
			want: []string{
				`> redis INCR "INCR n" target="n"`, `> redis INCR "INCR n" target="n"`, `> redis FLUSHALL "FLUSHALL" target=""`,
				`< ok bytes=4`, `< ok bytes=4`, `< ok bytes=5`,
			},
		},
		{
			name:  "inline",
			steps: []l7test.Step{c("PING\r\n\r\nset k \"a\\x41 b\" 'it\\'s'\r\n"), s("+PONG\r\n+OK\r\n")},
			want: []string{
				`> redis PING "PING" target=""`, `> redis SET "SET k ? ?" target="k"`,
				`< ok bytes=7`, `< ok bytes=5`,
			},
		},
		{
			name: "errors",
			steps: []l7test.Step{
				c(cmd("NOPE", "x")), s("-ERR unknown command 'NOPE'\r\n"),
				c(cmd("GET", "k")), s("!21\r\nSYNTAX invalid syntax\r\n"),
			},
			want: []string{
				`> redis NOPE "NOPE x" target="x"`, `< error bytes=29 error="ERR unknown command 'NOPE'"`,
				`> redis GET "GET k" target="k"`, `< error bytes=28 error="SYNTAX invalid syntax"`,
			},
		},
		{
			name: "subcommands and keys",
			steps: []l7test.Step{
				c(cmd("CONFIG", "GET", "maxmemory") + cmd("CLIENT", "SETNAME", "x") + cmd("OBJECT", "ENCODING", "k") +
					cmd("EVAL", "return 1", "1", "k1", "a") + cmd("XREAD", "COUNT", "1", "STREAMS", "s1", "0")),
				s("*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n+OK\r\n$8\r\nlistpack\r\n:1\r\n*-1\r\n"),
			},
			want: []string{
				`> redis CONFIG "CONFIG GET maxmemory" target="" subcommand="GET"`,
				`> redis CLIENT "CLIENT SETNAME ?" target="" subcommand="SETNAME"`,
				`> redis OBJECT "OBJECT ENCODING k" target="k" subcommand="ENCODING"`,
				`> redis EVAL "EVAL ? ? k1 ?" target="k1"`,
				`> redis XREAD "XREAD ? ? ? s1 ?" target="s1"`,
				`< ok bytes=26`, `< ok bytes=5`, `< ok bytes=14`, `< ok bytes=4`, `< ok bytes=5`,
			},
		},
		{
			name: "resp3 types",
			steps: []l7test.Step{
				c(cmd("HELLO", "3")),
				s("%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"),
				c(cmd("GET", "a") + cmd("GET", "b") + cmd("GET", "c") + cmd("GET", "d") + cmd("GET", "e") +
					cmd("GET", "f") + cmd("GET", "g") + cmd("GET", "h")),
				// A push before the first reply: client-side caching.
				s(">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n" +
					"_\r\n" + ",3.14\r\n" + "#t\r\n" + "(12345678901234567890\r\n" +
					"=15\r\ntxt:Some string\r\n" + "~2\r\n+a\r\n+b\r\n" +
					"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.1923\r\n*2\r\n:2039123\r\n:9543892\r\n" +
					"%1\r\n+m\r\n%1\r\n+n\r\n*0\r\n"),
			},
			want: []string{
				`> redis HELLO "HELLO 3" target=""`, `< ok bytes=42`,
				`> redis GET "GET a" target="a"`, `> redis GET "GET b" target="b"`, `> redis GET "GET c" target="c"`,
				`> redis GET "GET d" target="d"`, `> redis GET "GET e" target="e"`, `> redis GET "GET f" target="f"`,
				`> redis GET "GET g" target="g"`, `> redis GET "GET h" target="h"`,
				`< ok bytes=3`, `< ok bytes=7`, `< ok bytes=4`, `< ok bytes=23`, `< ok bytes=22`,
				`< ok bytes=12`, `< ok bytes=65`, `< ok bytes=20`,
			},
		},
		{
			name: "resp2 pubsub",
			steps: []l7test.Step{
				c(cmd("SUBSCRIBE", "a", "b")),
				s("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"),
				s("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"),
				c(cmd("PING")),
				s("*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$2\r\nho\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
				c(cmd("UNSUBSCRIBE")),
				s("*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n"),
				c(cmd("LRANGE", "l", "0", "-1")),
				s("*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n"),
			},
			want: []string{
				`> redis SUBSCRIBE "SUBSCRIBE a ?" target="a"`, `< ok bytes=30`,
				`> redis PING "PING" target=""`, `< ok bytes=20`,
				`> redis UNSUBSCRIBE "UNSUBSCRIBE" target=""`, `< ok bytes=33`,
				`> redis LRANGE "LRANGE l ? ?" target="l"`, `< ok bytes=31`,
			},
		},
		{
			name: "resp3 pubsub",
			steps: []l7test.Step{
				c(cmd("HELLO", "3")), s("%0\r\n"),
				c(cmd("SUBSCRIBE", "a")),
				s(">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n"),
				c(cmd("GET", "k")),
				s(">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nho\r\n_\r\n"),
			},
			want: []string{
				`> redis HELLO "HELLO 3" target=""`, `< ok bytes=4`,
				`> redis SUBSCRIBE "SUBSCRIBE a" target="a"`, `< ok bytes=30`,
				`> redis GET "GET k" target="k"`, `< ok bytes=3`,
			},
		},
		{
			name: "multi exec",
			steps: []l7test.Step{
				c(cmd("MULTI")), s("+OK\r\n"),
				c(cmd("SET", "a", "1")), s("+QUEUED\r\n"),
				c(cmd("INCR", "a")), s("+QUEUED\r\n"),
				c(cmd("EXEC")), s("*2\r\n+OK\r\n:2\r\n"),
			},
			want: []string{
				`> redis MULTI "MULTI" target=""`, `< ok bytes=5`,
				`> redis SET "SET a ?" target="a" multi="true"`, `< ok bytes=9`,
				`> redis INCR "INCR a" target="a" multi="true"`, `< ok bytes=9`,
				`> redis EXEC "EXEC" target=""`, `< ok bytes=13`,
			},
		},
		{
			name:  "big value streams",
			steps: []l7test.Step{c(cmd("SET", "k", big, "EX", "10")), s("+OK\r\n"), c(cmd("GET", "k")), s(bulk(big))},
			want: []string{
				`> redis SET "SET k ? ? ?" target="k" streamed="true"`, `< ok bytes=5`,
				`> redis GET "GET k" target="k"`, fmt.Sprintf(`< ok bytes=%d`, len(bulk(big))),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := l7.DefaultOptions()
			opts.Redact = !tt.noRedact
			newParser := func() l7.Parser { return New(opts) }
			got := l7test.CheckSplits(t, newParser, tt.steps)
			if got.String() != strings.Join(tt.want, "\n") {
				t.Errorf("events:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
			if got.Left != [2]int{} {
				t.Errorf("left %v bytes unconsumed", got.Left)
			}
		})
	}
}

// TestManySmallArguments: a command of many small arguments, larger than
// the buffer, is reported once its start is in and streams through.
func TestManySmallArguments(t *testing.T) {
	args := []string{"MSET"}
	for i := range 4000 {
		args = append(args, fmt.Sprintf("key:%04d", i), "value-of-some-length")
	}
	got := l7test.CheckSplits(t, func() l7.Parser { return New(l7.DefaultOptions()) },
		[]l7test.Step{c(cmd(args...)), s("+OK\r\n"), c(cmd("PING")), s("+PONG\r\n")})
	if len(got.Requests) != 2 || got.Left != [2]int{} {
		t.Fatalf("got %d requests, %v left; want 2, none", len(got.Requests), got.Left)
	}
	r := got.Requests[0]
	if r.Kind != "MSET" || r.Target != "key:0000" || r.Attrs["streamed"] != "true" ||
		!strings.HasPrefix(r.Text, "MSET key:0000 ? ? ?") || len(r.Text) > l7.MaxText {
		t.Errorf("request = %s", l7test.RenderRequest(r))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		steps []l7test.Step
		want  error
	}{
		{"binary garbage", []l7test.Step{c("\x00\x01\x02\r\n")}, l7.ErrProtocol},
		{"argument not bulk", []l7test.Step{c("*2\r\n$3\r\nGET\r\n:1\r\n")}, l7.ErrProtocol},
		{"bad length", []l7test.Step{c("*x\r\n")}, l7.ErrProtocol},
		{"missing CRLF after argument", []l7test.Step{c("*1\r\n$4\r\nPINGXX")}, l7.ErrProtocol},
		{"unbalanced quotes", []l7test.Step{c("SET k \"v\r\n")}, l7.ErrProtocol},
		{"bare LF in array", []l7test.Step{c("*1\n")}, l7.ErrProtocol},
		{"unknown reply type", []l7test.Step{c(cmd("PING")), s("?what\r\n")}, l7.ErrProtocol},
		{"nested too deep", []l7test.Step{c(cmd("PING")), s(strings.Repeat("*1\r\n", 100))}, l7.ErrProtocol},
		{"endless inline", []l7test.Step{c(strings.Repeat("a", l7.MaxBuffer+10))}, l7.ErrTooLarge},
		{"huge command name", []l7test.Step{c("*1\r\n$100000\r\n" + strings.Repeat("a", 70000))}, l7.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, split := range []l7test.Splitter{l7test.Whole, l7test.Chunks(7)} {
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
	msgs, err := p.Parse(l7.FromClient, []byte(cmd("FLUSHALL")+cmd("GET", "k")))
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Parse() = %v, %v; want 2 messages", msgs, err)
	}
	got := p.Deny(msgs[0].Request, "FLUSHALL is not allowed\r\nhere")
	if want := "-ERR denied by policy: FLUSHALL is not allowed  here\r\n"; string(got) != want {
		t.Errorf("Deny() = %q; want %q", got, want)
	}
	// The server never saw FLUSHALL: its first reply is GET's.
	msgs, err = p.Parse(l7.FromServer, []byte(bulk("v")))
	if err != nil || len(msgs) != 1 || msgs[0].Response == nil || msgs[0].Response.Bytes != 7 {
		t.Fatalf("Parse(reply) = %+v, %v; want GET's response", msgs, err)
	}
	if len(p.pending) != 0 {
		t.Errorf("%d commands still waiting", len(p.pending))
	}
	if p.Encrypted() {
		t.Errorf("Encrypted() = true")
	}
}

// TestMemoryBounded feeds a 1 MiB value in 4 KiB reads and checks the
// parser never asks the proxy to hold more than one read.
func TestMemoryBounded(t *testing.T) {
	p := New(l7.DefaultOptions())
	data := []byte(cmd("SET", "k", strings.Repeat("x", 1<<20)))
	var held []byte
	for chunk := range slices.Chunk(data, 4096) {
		held = append(held, chunk...)
		msgs, err := p.Parse(l7.FromClient, held)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			held = held[m.Len:]
		}
		if len(held) > 4096 {
			t.Fatalf("parser holds %d bytes", len(held))
		}
	}
	if len(held) != 0 {
		t.Fatalf("%d bytes left", len(held))
	}
}

// TestPendingBounded: a client that pipelines more commands than the
// parser keeps for pairing still has every command reported, replies
// complete the tracked ones, and the parser keeps no more than maxPending.
func TestPendingBounded(t *testing.T) {
	const n = maxPending + 500
	p := New(l7.DefaultOptions())
	msgs, err := p.Parse(l7.FromClient, []byte(strings.Repeat(cmd("INCR", "n"), n)))
	if err != nil || len(msgs) != n {
		t.Fatalf("Parse() = %d messages, %v; want %d", len(msgs), err, n)
	}
	if len(p.pending) != maxPending || p.untracked != n-maxPending {
		t.Fatalf("pending %d, untracked %d; want %d, %d", len(p.pending), p.untracked, maxPending, n-maxPending)
	}
	msgs, err = p.Parse(l7.FromServer, []byte(strings.Repeat(":1\r\n", n)))
	if err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, m := range msgs {
		if m.Response != nil {
			completed++
		}
	}
	if completed != maxPending || len(p.pending) != 0 || p.untracked != 0 {
		t.Errorf("completed %d, pending %d, untracked %d; want %d, 0, 0", completed, len(p.pending), p.untracked, maxPending)
	}
}

// TestClientReplyStops: CLIENT REPLY OFF or SKIP ends parsing with an
// error (the relay then stops following the connection); ON, which
// silences nothing, is an ordinary command.
func TestClientReplyStops(t *testing.T) {
	for _, tt := range []struct {
		in      string
		wantErr bool
		before  []int // lengths of the messages returned with the error
	}{
		{"CLIENT REPLY OFF\r\n", true, nil},
		{"client reply skip\r\n", true, nil},
		{"PING\r\n*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$4\r\nSkIp\r\n", true, []int{6}},
		{"ECHO a\r\nDEL k\r\nCLIENT REPLY OFF\r\nECHO b\r\n", true, []int{8, 7}},
		{"CLIENT REPLY ON\r\n", false, []int{17}},
		{"CLIENT REPLY\r\n", false, []int{14}},
		{"CLIENT LIST\r\n", false, []int{13}},
	} {
		p := New(l7.DefaultOptions())
		msgs, err := p.Parse(l7.FromClient, []byte(tt.in))
		if (err != nil) != tt.wantErr || err != nil && !strings.Contains(err.Error(), "CLIENT REPLY") {
			t.Errorf("Parse(%q) error = %v; want error %v", tt.in, err, tt.wantErr)
		}
		var lens []int
		for _, m := range msgs {
			lens = append(lens, m.Len)
		}
		if !slices.Equal(lens, tt.before) {
			t.Errorf("Parse(%q) messages of %v bytes; want %v (the commands before CLIENT REPLY)", tt.in, lens, tt.before)
		}
	}
}

// After RESET the connection is in RESP2 and subscribed to nothing: a
// reply that looks like a pub/sub message is a reply again.
func TestResetEndsSubscription(t *testing.T) {
	p := New(l7.DefaultOptions())
	steps := []struct {
		dir  l7.Dir
		data string
	}{
		{l7.FromClient, "SUBSCRIBE ch\r\n"},
		{l7.FromServer, "*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"},
		{l7.FromClient, "RESET\r\n"},
		{l7.FromServer, "+RESET\r\n"},
		{l7.FromClient, "LRANGE l 0 -1\r\n"},
		{l7.FromServer, "*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"},
	}
	var last []l7.Message
	for _, st := range steps {
		msgs, err := p.Parse(st.dir, []byte(st.data))
		if err != nil {
			t.Fatal(err)
		}
		last = msgs
	}
	if len(last) != 1 || last[0].Response == nil {
		t.Fatalf("the reply to LRANGE after RESET = %+v; want it to complete LRANGE", last)
	}
}
