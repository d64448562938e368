//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/detect"
	"github.com/vigil-ebpf/vigil/pkg/l7/redis"
)

// redisEnv is a proxy that parses Redis under rules.
func redisEnv(t *testing.T, rules *L7Rules) *env {
	return newEnv(t, func(c *Config) {
		c.Decider = l7Decider{rules: rules}
		c.L7 = L7Config{
			Parsers:      map[string]NewParser{"redis": func(o l7.Options) l7.Parser { return redis.New(o) }},
			Detect:       detect.Detect,
			ResponseWait: time.Minute,
		}
	})
}

// readCommandName reads one RESP command and returns its name.
func readCommandName(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return "", err
	}
	var name string
	for i := 0; i < n; i++ {
		if _, err := r.ReadString('\n'); err != nil {
			return "", err
		}
		a, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if i == 0 {
			name = strings.ToUpper(strings.TrimSpace(a))
		}
	}
	return name, nil
}

// TestL7RedisReplacedReplyKeepsPush: a push that arrives in the same read
// as the reply to the DISCARD sent in place of EXEC reaches the client;
// only the reply is replaced.
func TestL7RedisReplacedReplyKeepsPush(t *testing.T) {
	const push = ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"
	dst := server(t, func(c *net.TCPConn) {
		r := bufio.NewReader(c)
		for {
			name, err := readCommandName(r)
			if err != nil {
				return
			}
			switch name {
			case "HELLO":
				_, _ = c.Write([]byte("%1\r\n+proto\r\n:3\r\n"))
			case "MULTI":
				_, _ = c.Write([]byte("+OK\r\n"))
			case "DISCARD":
				_, _ = c.Write([]byte(push + "+OK\r\n")) // one segment
			default:
				_, _ = c.Write([]byte("+QUEUED\r\n"))
			}
		}
	})
	e := redisEnv(t, &L7Rules{Guard: verbGuard{"FLUSHALL": true}})
	c := e.dial(t, dst)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	_, _ = c.Write([]byte(redisCommand("HELLO", "3") + redisCommand("MULTI") + redisCommand("SET", "k", "v") +
		redisCommand("FLUSHALL") + redisCommand("EXEC")))
	var got []string
	for range 6 {
		got = append(got, redisValue(t, r))
	}
	want := []string{"[+proto :3]", "+OK", "+QUEUED", "-ERR denied by policy: FLUSHALL is not allowed",
		"[message ch x]", "-EXECABORT Transaction discarded because of previous errors."}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("client got %q; want %q", got, want)
	}
}

// TestL7RedisDeniedQueueBounded: denials queued behind a request that is
// never answered count against maxPending; past it the connection is
// reset instead of the queue growing.
func TestL7RedisDeniedQueueBounded(t *testing.T) {
	dst := server(t, func(c *net.TCPConn) { _, _ = io.Copy(io.Discard, c) }) // answers nothing
	e := redisEnv(t, &L7Rules{Guard: verbGuard{"FLUSHALL": true}})
	c := e.dial(t, dst)
	_, _ = c.Write([]byte(redisCommand("BLPOP", "k", "0")))
	flush := redisCommand("FLUSHALL")
	go func() {
		// More than the bound, in chunks: the writes end with the reset.
		chunk := []byte(strings.Repeat(flush, 1000))
		for i := 0; i < maxPending/1000+2; i++ {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	expectReset(t, c)
	c.Close()
	e.waitIdle(t)
	es := e.entries(t)
	cl := ofType(es, auditlog.ConnClose)[0]
	if cl.Attr("l7_stopped") != "too_many_pending" || cl.Attr("reason") != reasonL7Unparsed {
		t.Errorf("conn.close attrs = %v; want l7_stopped too_many_pending, reason %s", cl.Attrs, reasonL7Unparsed)
	}
	if n, _ := strconv.Atoi(cl.Attr("l7_denied")); n > maxPending+1 {
		t.Errorf("%d requests denied; want at most %d before the reset", n, maxPending+1)
	}
}

// redisAddr is the real Redis of scripts/e2e-env.sh.
func redisAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	port := "63799"
	if v := os.Getenv("VIGIL_E2E_REDIS_PORT"); v != "" {
		port = v
	}
	a := netip.MustParseAddrPort("127.0.0.1:" + port)
	c, err := net.DialTimeout("tcp", a.String(), 2*time.Second)
	if err != nil {
		testenv.Need(t, "Redis", fmt.Sprintf("not listening on %s: run scripts/e2e-env.sh start", a))
	} else {
		c.Close()
	}
	return a
}

// redisExchange sends cmds in one write after a PING has been answered,
// and returns what the client then receives until nothing more comes, or
// the connection ends (reset: the error).
func redisExchange(t *testing.T, c net.Conn, cmds [][]string) ([]byte, error) {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	_, _ = c.Write([]byte(redisCommand("PING")))
	if got := redisValue(t, r); got != "+PONG" {
		t.Fatalf("PING: %q", got)
	}
	var all strings.Builder
	for _, cm := range cmds {
		all.WriteString(redisCommand(cm...))
	}
	_, _ = c.Write([]byte(all.String()))
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		// Quiet for this long: the server has said all it will.
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		k, err := r.Read(buf)
		out.Write(buf[:k])
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return out.Bytes(), nil
		case errors.Is(err, io.EOF):
			return out.Bytes(), nil
		case err != nil:
			return out.Bytes(), err
		}
	}
}

// errorKinds replaces the text of RESP errors by their first word, so
// that a denial reads as an unknown command's error does.
func errorKinds(b []byte) string {
	lines := strings.SplitAfter(string(b), "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "-") {
			lines[i] = strings.Fields(l)[0] + "\r\n"
		}
	}
	return strings.Join(lines, "")
}

// TestL7RedisAsRedisAlone: what a client receives through the proxy is
// what Redis alone sends it, a denied FLUSHALL reading as the error of an
// unknown command. CLIENT REPLY OFF or SKIP stops parsing: a connection
// under a guardrail is reset there (nothing of the write that holds it
// goes), one that only audits is relayed as it is.
func TestL7RedisAsRedisAlone(t *testing.T) {
	addr := redisAddr(t)
	for _, tt := range []struct {
		name  string
		cmds  [][]string
		reset bool // under the guardrail
	}{
		{"rejected MULTI opens no transaction", [][]string{{"MULTI", "x"}, {"FLUSHALL"}, {"MULTI"}, {"ECHO", "a"}, {"EXEC"}}, false},
		{"denied in a transaction", [][]string{{"MULTI"}, {"ECHO", "a"}, {"FLUSHALL"}, {"EXEC"}, {"ECHO", "b"}}, false},
		{"RESET after REPLY OFF", [][]string{{"CLIENT", "REPLY", "OFF"}, {"RESET"}, {"ECHO", "a"}, {"FLUSHALL"}, {"ECHO", "b"}}, true},
		{"REPLY SKIP inside MULTI", [][]string{{"MULTI"}, {"CLIENT", "REPLY", "SKIP"}, {"ECHO", "a"}, {"EXEC"}, {"FLUSHALL"}, {"ECHO", "b"}}, true},
		{"REPLY SKIP before denied", [][]string{{"CLIENT", "REPLY", "SKIP"}, {"FLUSHALL"}, {"ECHO", "a"}, {"ECHO", "b"}}, true},
		{"REPLY ON", [][]string{{"CLIENT", "REPLY", "ON"}, {"FLUSHALL"}, {"ECHO", "a"}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Redis alone gets an unknown command where the proxy denies.
			alone := make([][]string, len(tt.cmds))
			for i, cm := range tt.cmds {
				if cm[0] == "FLUSHALL" {
					cm = []string{"VIGILNOSUCHCMD"}
				}
				alone[i] = cm
			}
			dc, err := net.Dial("tcp", addr.String())
			if err != nil {
				t.Fatal(err)
			}
			want, err := redisExchange(t, dc, alone)
			if err != nil {
				t.Fatalf("Redis alone: %v", err)
			}

			// Audit only: relayed byte for byte, parsed or not.
			e := redisEnv(t, &L7Rules{})
			got, err := redisExchange(t, e.dial(t, addr), alone)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("audit only: client got %q, %v; Redis alone sends %q", got, err, want)
			}
			e.waitIdle(t)
			stopped := ofType(e.entries(t), auditlog.ConnClose)[0].Attr("l7_stopped")
			if wantStop := map[bool]string{true: "parse_error"}[tt.reset]; stopped != wantStop {
				t.Errorf("audit only: l7_stopped = %q; want %q", stopped, wantStop)
			}

			// Under a guardrail that denies FLUSHALL.
			e = redisEnv(t, &L7Rules{Guard: verbGuard{"FLUSHALL": true}})
			got, err = redisExchange(t, e.dial(t, addr), tt.cmds)
			switch {
			case tt.reset:
				if !errors.Is(err, syscall.ECONNRESET) || len(got) != 0 {
					t.Errorf("guardrail: client got %q, %v; want a reset and nothing", got, err)
				}
			case err != nil || errorKinds(got) != errorKinds(want):
				t.Errorf("guardrail: client got %q, %v; Redis alone sends %q", got, err, want)
			}
			e.waitIdle(t)
			cl := ofType(e.entries(t), auditlog.ConnClose)[0]
			if tt.reset && (cl.Attr("l7_stopped") != "parse_error" || cl.Attr("reason") != reasonL7Unparsed) {
				t.Errorf("guardrail: conn.close attrs = %v", cl.Attrs)
			}
		})
	}
}

// TestL7RedisReplyOffKeepsEarlierCommands: CLIENT REPLY OFF at the end of
// a write stops parsing there, but the commands before it in the same
// write are still checked, forwarded and recorded: appending it cannot
// keep them out of the log.
func TestL7RedisReplyOffKeepsEarlierCommands(t *testing.T) {
	addr := redisAddr(t)
	e := redisEnv(t, &L7Rules{})
	got, err := redisExchange(t, e.dial(t, addr), [][]string{{"ECHO", "a"}, {"DEL", "vigil-test-key"}, {"CLIENT", "REPLY", "OFF"}, {"ECHO", "b"}})
	if err != nil || string(got) != "$1\r\na\r\n:0\r\n" {
		t.Fatalf("client got %q, %v; want the replies to ECHO a and DEL only", got, err)
	}
	e.waitIdle(t)
	var kinds []string
	for _, en := range e.entries(t) {
		if en.Type == auditlog.L7Request {
			kinds = append(kinds, en.Attr("kind"))
		}
	}
	for _, want := range []string{"ECHO", "DEL"} {
		if !slices.Contains(kinds, want) {
			t.Errorf("l7.request kinds %v; want %s recorded", kinds, want)
		}
	}
}

// TestL7RedisTransactionAfterReset: after SUBSCRIBE and RESET, one round
// trip each, Redis accepts a MULTI; a denial inside it must abort the
// transaction as Redis does, whatever the proxy thought of the
// connection's mode.
func TestL7RedisTransactionAfterReset(t *testing.T) {
	addr := redisAddr(t)
	for _, pre := range [][][]string{
		{{"SUBSCRIBE", "vigil-test-ch"}, {"RESET"}},
		{{"SUBSCRIBE", "vigil-test-ch"}, {"UNSUBSCRIBE"}},
		{{"HELLO", "3"}, {"RESET"}},
	} {
		e := redisEnv(t, &L7Rules{Guard: verbGuard{"FLUSHALL": true}})
		c := e.dial(t, addr)
		r := bufio.NewReader(c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		var all []byte
		for _, cm := range append(pre, []string{"MULTI"}, []string{"ECHO", "a"}, []string{"FLUSHALL"}, []string{"EXEC"}) {
			if _, err := c.Write([]byte(redisCommand(cm...))); err != nil {
				t.Fatal(err)
			}
			// One round trip each: wait for what the server says.
			buf := make([]byte, 4096)
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			k, _ := r.Read(buf)
			all = append(all, buf[:k]...)
		}
		c.Close()
		if !bytes.Contains(all, []byte("-EXECABORT")) {
			t.Errorf("after %v: client got %q; want the transaction aborted (-EXECABORT)", pre, all)
		}
	}
}
