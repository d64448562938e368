//go:build linux

package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/internal/testenv"
	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/detect"
	l7http "github.com/vigil-ebpf/vigil/pkg/l7/http"
	"github.com/vigil-ebpf/vigil/pkg/l7/redis"
)

// hostDecider decides by destination name, as a policy with names rules
// does: allowed.example and alias.example under rule "web",
// other.example under rule "other" (both inspected), denied.example and
// every other name (or none) denied. It remembers what it was asked.
type hostDecider struct {
	rules *L7Rules
	mu    sync.Mutex
	asked []string // "name pid"
}

func (d *hostDecider) Decide(_ context.Context, c *Conn) Decision {
	d.mu.Lock()
	d.asked = append(d.asked, fmt.Sprintf("%s %d", c.Name, c.Identity.PID))
	d.mu.Unlock()
	switch c.Name {
	case "allowed.example", "alias.example":
		return Decision{Verdict: auditlog.Allow, Rule: "web", L7: d.rules}
	case "other.example":
		return Decision{Verdict: auditlog.Audit, Rule: "other", L7: d.rules}
	case "denied.example":
		return Decision{Verdict: auditlog.Deny, Rule: "no-denied"}
	}
	return Decision{Verdict: auditlog.Deny, Rule: "default"}
}

func (d *hostDecider) UsesNames() bool { return true }

func (d *hostDecider) names() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.asked...)
}

// hostServer is an HTTP server that answers every request with 200 and
// its Host and path, which it also remembers.
func hostServer(t *testing.T, seen *syncLines) netip.AddrPort {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.add(r.Host + r.URL.Path)
		fmt.Fprintf(w, "%s%s ok\n", r.Host, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(srv.Listener.Addr().String())
}

// TestL7HostChange: an HTTP request whose Host names another destination
// than the one its kept-alive connection was decided for is decided
// again: denied (or allowed by another rule), it gets a 403 with
// Connection: close, never reaches the server, is recorded as denied by
// the deciding rule, and the connection closes; a name the same rule
// allows goes on. Case and port do not make another name.
func TestL7HostChange(t *testing.T) {
	type step struct {
		host   string // "-" for no Host header
		status int    // 0: the connection is closed before an answer
	}
	tests := []struct {
		name    string
		steps   []step
		pipe    bool     // all requests in one write
		served  []string // what the server saw
		denied  string   // rule of the denied request, if one
		reason  string   // in its deny_reason
		closed  bool     // the proxy closed the connection (host_changed)
		decided int      // Decide calls: the connection's and the re-decisions
	}{
		{name: "same name, other case and port",
			steps:  []step{{"allowed.example", 200}, {"Allowed.Example:80", 200}, {"ALLOWED.EXAMPLE.", 200}},
			served: []string{"allowed.example/0", "Allowed.Example:80/1", "ALLOWED.EXAMPLE./2"}, decided: 1},
		{name: "denied name",
			steps:  []step{{"allowed.example", 200}, {"denied.example", 403}, {"allowed.example", 0}},
			served: []string{"allowed.example/0"}, denied: "no-denied",
			reason: `Host changed on a kept-alive connection to "denied.example", which rule no-denied denies`, closed: true, decided: 2},
		{name: "name of another rule",
			steps:  []step{{"allowed.example", 200}, {"other.example:8080", 403}},
			served: []string{"allowed.example/0"}, denied: "other",
			reason: `a name decided by another rule (other)`, closed: true, decided: 2},
		{name: "no Host after a Host",
			steps:  []step{{"allowed.example", 200}, {"-", 403}},
			served: []string{"allowed.example/0"}, denied: "default", reason: "to no name, which rule default denies", closed: true, decided: 2},
		{name: "an address is no name",
			steps:  []step{{"allowed.example", 200}, {"127.0.0.1:80", 403}},
			served: []string{"allowed.example/0"}, denied: "default", closed: true, decided: 2},
		{name: "another name of the same rule",
			steps:  []step{{"allowed.example", 200}, {"alias.example", 200}, {"alias.example", 200}, {"allowed.example", 200}},
			served: []string{"allowed.example/0", "alias.example/1", "alias.example/2", "allowed.example/3"}, decided: 3},
		{name: "pipelined",
			steps:  []step{{"allowed.example", 200}, {"allowed.example", 200}, {"denied.example", 403}, {"allowed.example", 0}},
			pipe:   true,
			served: []string{"allowed.example/0", "allowed.example/1"}, denied: "no-denied", closed: true, decided: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen syncLines
			dst := hostServer(t, &seen)
			d := &hostDecider{rules: &L7Rules{Guard: verbGuard{"DELETE": true}}}
			e := newEnv(t, func(c *Config) {
				c.Decider = d
				c.L7 = L7Config{
					Parsers:      map[string]NewParser{"http": func(o l7.Options) l7.Parser { return l7http.New(o) }},
					Detect:       detect.Detect,
					ResponseWait: time.Second,
				}
			})
			c := e.dial(t, dst)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			request := func(i int, s step) string {
				h := "Host: " + s.host + "\r\n"
				if s.host == "-" {
					h = ""
				}
				return fmt.Sprintf("GET /%d HTTP/1.1\r\n%s\r\n", i, h)
			}
			br := bufio.NewReader(c)
			if tt.pipe {
				var all strings.Builder
				for i, s := range tt.steps {
					all.WriteString(request(i, s))
				}
				c.Write([]byte(all.String()))
			}
			for i, s := range tt.steps {
				if !tt.pipe {
					if _, err := c.Write([]byte(request(i, s))); err != nil {
						if s.status == 0 {
							break
						}
						t.Fatalf("request %d: %v", i, err)
					}
				}
				resp, err := http.ReadResponse(br, nil)
				if s.status == 0 {
					if err == nil {
						t.Errorf("request %d (Host %s) answered %s; want the connection closed", i, s.host, resp.Status)
					}
					break
				}
				if err != nil {
					t.Fatalf("request %d (Host %s): %v", i, s.host, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != s.status {
					t.Errorf("request %d (Host %s) = %s %q; want %d", i, s.host, resp.Status, body, s.status)
				}
				if s.status == 403 && !resp.Close {
					t.Errorf("request %d: 403 without Connection: close", i)
				}
			}
			if tt.closed {
				// Nothing more comes: the proxy closed the connection.
				if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
					t.Errorf("read after the 403 = %v; want EOF", err)
				}
			}
			c.Close()
			e.waitIdle(t)
			if got := seen.get(); strings.Join(got, "|") != strings.Join(tt.served, "|") {
				t.Errorf("server saw %q; want %q", got, tt.served)
			}
			asked := d.names()
			if len(asked) != tt.decided {
				t.Errorf("Decide calls %q; want %d", asked, tt.decided)
			}
			for _, a := range asked {
				if !strings.HasSuffix(a, fmt.Sprint(" ", e.self.PID)) {
					t.Errorf("Decide asked %q; want the connection's identity (pid %d)", a, e.self.PID)
				}
			}
			es := e.entries(t)
			var denied []auditlog.Entry
			for _, r := range l7Entries(es) {
				if r.Decision == auditlog.Deny {
					denied = append(denied, r)
				} else if r.Rule != "web" {
					t.Errorf("allowed l7.request %+v; want rule web", r)
				}
			}
			if tt.denied == "" {
				if len(denied) != 0 {
					t.Errorf("denied entries %+v; want none", denied)
				}
			} else if len(denied) != 1 || denied[0].Rule != tt.denied || !strings.Contains(denied[0].Attr("deny_reason"), tt.reason) ||
				!strings.Contains(denied[0].Attr("deny_reason"), "Host changed") {
				t.Errorf("denied entries %+v; want one by rule %s, reason with %q", denied, tt.denied, tt.reason)
			}
			cl := ofType(es, auditlog.ConnClose)[0]
			if got := cl.Attr("reason") == reasonHostChanged; got != tt.closed {
				t.Errorf("conn.close reason = %s; want host_changed: %v", cl.Attr("reason"), tt.closed)
			}
		})
	}
}

// TestL7HostChangeSlowFirstRequest: a connection whose client said
// nothing within the wait is decided without a name; its first HTTP
// request's Host is then decided like any other.
func TestL7HostChangeSlowFirstRequest(t *testing.T) {
	var seen syncLines
	dst := hostServer(t, &seen)
	d := &hostDecider{rules: &L7Rules{}}
	allowNameless := deciderFunc(func(ctx context.Context, c *Conn) Decision {
		if c.Name == "" {
			d.Decide(ctx, c)
			return Decision{Verdict: auditlog.Allow, Rule: "web", L7: d.rules}
		}
		return d.Decide(ctx, c)
	})
	e := newEnv(t, func(c *Config) {
		c.Decider = allowNameless
		c.L7 = L7Config{
			Parsers:        map[string]NewParser{"http": func(o l7.Options) l7.Parser { return l7http.New(o) }},
			Detect:         detect.Detect,
			FirstBytesWait: 50 * time.Millisecond,
		}
	})
	c := e.dial(t, dst)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	time.Sleep(200 * time.Millisecond) // past FirstBytesWait
	c.Write([]byte("GET /x HTTP/1.1\r\nHost: denied.example\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("status = %s; want 403", resp.Status)
	}
	c.Close()
	e.waitIdle(t)
	if got := seen.get(); len(got) != 0 {
		t.Errorf("server saw %q; want nothing", got)
	}
}

// deciderFunc adapts a function to a Decider that uses names.
type deciderFunc func(ctx context.Context, c *Conn) Decision

func (f deciderFunc) Decide(ctx context.Context, c *Conn) Decision { return f(ctx, c) }
func (deciderFunc) UsesNames() bool                                { return true }

// txParser is the line protocol with transactions: a request denied
// after BEGIN makes the next COMMIT go as ROLLBACK, answered "-ABORTED".
type txParser struct {
	lineParser
	open    bool
	aborted bool
}

func (p *txParser) Deny(req *l7.Request, reason string) []byte {
	p.aborted = p.aborted || p.open
	return p.lineParser.Deny(req, reason)
}

func (p *txParser) Replace(req *l7.Request) *l7.Replacement {
	switch req.Kind {
	case "BEGIN":
		p.open, p.aborted = true, false
	case "COMMIT":
		aborted := p.aborted
		p.open, p.aborted = false, false
		if aborted {
			return &l7.Replacement{Send: []byte("ROLLBACK\n"), Answer: []byte("-ABORTED\n"), Reason: "aborted"}
		}
	}
	return nil
}

// TestL7Replace: a request the parser replaces goes to the server in its
// other form, the client gets the parser's answer in place of the
// server's reply, in its turn among pipelined replies (and denials), and
// it is recorded as denied.
func TestL7Replace(t *testing.T) {
	var got syncLines
	dst := lineServer(t, false, &got)
	pr := &txParser{}
	e := newEnv(t, func(c *Config) {
		c.Decider = l7Decider{rules: &L7Rules{Guard: verbGuard{"FLUSH": true}}}
		c.L7 = L7Config{
			Parsers:      map[string]NewParser{"line": func(l7.Options) l7.Parser { return pr }},
			Detect:       lineDetect,
			ResponseWait: time.Second,
		}
	})
	c := e.dial(t, dst)
	c.Write([]byte("BEGIN\nSET a\nFLUSH\nSET b\nCOMMIT\nFLUSH\nGET a\n"))
	want := []string{"+BEGIN", "+SET a", "-DENIED FLUSH is not allowed", "+SET b", "-ABORTED", "-DENIED FLUSH is not allowed", "+GET a"}
	if r := readLines(t, c, len(want)); strings.Join(r, "|") != strings.Join(want, "|") {
		t.Errorf("replies = %q; want %q", r, want)
	}
	// A transaction without a denial commits.
	c.Write([]byte("BEGIN\nCOMMIT\n"))
	if r := readLines(t, c, 2); strings.Join(r, "|") != "+BEGIN|+COMMIT" {
		t.Errorf("replies = %q; want +BEGIN, +COMMIT", r)
	}
	c.Close()
	e.waitIdle(t)
	if s := got.get(); strings.Join(s, "|") != "BEGIN|SET a|SET b|ROLLBACK|GET a|BEGIN|COMMIT" {
		t.Errorf("server read %q", s)
	}
	es := e.entries(t)
	var kinds []string
	for _, r := range l7Entries(es) {
		if r.Decision == auditlog.Deny {
			kinds = append(kinds, r.Attr("kind")+":"+r.Attr("deny_reason"))
		}
	}
	if strings.Join(kinds, "|") != "FLUSH:FLUSH is not allowed|COMMIT:aborted|FLUSH:FLUSH is not allowed" {
		t.Errorf("denied entries %q", kinds)
	}
	if cl := ofType(es, auditlog.ConnClose)[0]; cl.Attr("l7_denied") != "3" || cl.Attr("reason") != reasonClosed {
		t.Errorf("conn.close attrs = %v; want l7_denied=3, reason closed", cl.Attrs)
	}
}

// redisValue reads one RESP2 or RESP3 value from r and returns it in a
// short form: simple strings, errors and integers as their line, a bulk
// as its data, null as "nil", an aggregate as [a b ...].
func redisValue(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	line, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	line = strings.TrimSuffix(line, "\r\n")
	switch line[0] {
	case '$', '=', '!':
		var n int
		fmt.Sscan(line[1:], &n)
		if n < 0 {
			return "nil"
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(b[:n])
	case '*', '%', '~', '>':
		var n int
		fmt.Sscan(line[1:], &n)
		if n < 0 {
			return "nil"
		}
		if line[0] == '%' {
			n *= 2
		}
		parts := make([]string, n)
		for i := range parts {
			parts[i] = redisValue(t, r)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case '_':
		return "nil"
	}
	return line
}

// redisCommand is one command in RESP form.
func redisCommand(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// TestL7RedisTransactionAbort runs a transaction against the real Redis
// of scripts/e2e-env.sh through the proxy, pipelined on one connection
// in RESP2 and RESP3: a command the guardrail denies inside MULTI makes
// the EXEC fail with EXECABORT, as a command Redis rejects while queuing
// would, nothing of the transaction runs, and the connection goes on.
func TestL7RedisTransactionAbort(t *testing.T) {
	port := 63799
	if v := os.Getenv("VIGIL_E2E_REDIS_PORT"); v != "" {
		port, _ = strconv.Atoi(v)
	}
	dst := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	if c, err := net.DialTimeout("tcp", dst.String(), time.Second); err != nil {
		testenv.Need(t, "Redis", fmt.Sprintf("not listening on %s: run scripts/e2e-env.sh start", dst))
	} else {
		c.Close()
	}
	e := newEnv(t, func(c *Config) {
		c.Decider = l7Decider{rules: &L7Rules{Guard: verbGuard{"FLUSHALL": true}}}
		c.L7 = L7Config{
			Parsers:      map[string]NewParser{"redis": func(o l7.Options) l7.Parser { return redis.New(o) }},
			Detect:       detect.Detect,
			ResponseWait: time.Second,
		}
	})
	const abort = "-EXECABORT Transaction discarded because of previous errors."
	denied := "-ERR denied by policy: FLUSHALL is not allowed"
	key := func(test, n string) string {
		return fmt.Sprintf("vigil:tx:%d:%s:%s", os.Getpid(), strings.ReplaceAll(test, " ", "-"), n)
	}
	type exchange struct {
		cmd   []string
		reply string // "" for none
	}
	for _, tt := range []struct {
		name, proto string
		steps       []exchange
	}{
		{name: "RESP2", proto: "2"},
		{name: "RESP3", proto: "3"},
		{name: "after a rejected MULTI", proto: "2", steps: []exchange{
			// Redis refuses a MULTI with arguments: no transaction opens,
			// so the denial after it aborts none.
			{[]string{"MULTI", "x"}, "-ERR wrong number of arguments for 'multi' command"},
			{[]string{"FLUSHALL"}, denied}, {[]string{"PING"}, "+PONG"},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k1, k2 := key(tt.name, "1"), key(tt.name, "2")
			c := e.dial(t, dst)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			c.Write([]byte(redisCommand("HELLO", tt.proto)))
			redisValue(t, r)
			steps := append([]exchange{{[]string{"SELECT", "9"}, "+OK"}}, tt.steps...)
			steps = append(steps, []exchange{
				{[]string{"MULTI"}, "+OK"}, {[]string{"SET", k1, "v"}, "+QUEUED"},
				{[]string{"FLUSHALL"}, denied}, {[]string{"SET", k2, "v"}, "+QUEUED"}, {[]string{"EXEC"}, abort},
				{[]string{"GET", k1}, "nil"}, {[]string{"GET", k2}, "nil"}, {[]string{"PING"}, "+PONG"},
				// A transaction without a denial runs, on the same connection.
				{[]string{"MULTI"}, "+OK"}, {[]string{"SET", k1, "w"}, "+QUEUED"}, {[]string{"EXEC"}, "[+OK]"}, {[]string{"GETDEL", k1}, "w"},
			}...)
			var all strings.Builder
			for _, s := range steps {
				all.WriteString(redisCommand(s.cmd...))
			}
			c.Write([]byte(all.String()))
			for _, s := range steps {
				if s.reply == "" {
					continue
				}
				if got := redisValue(t, r); got != s.reply {
					t.Errorf("reply to %q = %q; want %q", s.cmd, got, s.reply)
				}
			}
			c.Close()
			e.waitIdle(t)
		})
	}
	var execs []auditlog.Entry
	for _, r := range l7Entries(e.entries(t)) {
		if r.Attr("kind") == "EXEC" {
			execs = append(execs, r)
		}
	}
	if len(execs) != 6 {
		t.Fatalf("EXEC entries %+v; want 6", execs)
	}
	for i, r := range execs {
		deny := i%2 == 0
		if deny && (r.Decision != auditlog.Deny || !strings.Contains(r.Attr("deny_reason"), "FLUSHALL was denied")) ||
			!deny && (r.Decision != auditlog.Allow || r.Attr("status") != "ok") {
			t.Errorf("EXEC entry %d = %s %v; want denied naming FLUSHALL: %v", i, r.Decision, r.Attrs, deny)
		}
	}
}
