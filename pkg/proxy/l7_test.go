//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/auditlog"
	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// lineParser is a test protocol: the client sends lines "VERB args\n",
// each a request; the server answers each with one line, "+..." for ok or
// "-..." for an error. "HOST name" names the destination; a line with a
// byte ≥ 0x80 is a protocol error.
type lineParser struct {
	maxSeen   *atomic.Int64 // the longest buffer Parse was given
	denyNil   bool          // Deny cannot refuse one request and go on
	encrypted atomic.Bool
	bodyLeft  int // client bytes still to come of an "UPLOAD n" body
}

func (p *lineParser) Parse(d l7.Dir, b []byte) ([]l7.Message, error) {
	if p.maxSeen != nil && int64(len(b)) > p.maxSeen.Load() {
		p.maxSeen.Store(int64(len(b)))
	}
	if p.encrypted.Load() {
		return []l7.Message{{Len: len(b)}}, nil
	}
	var msgs []l7.Message
	off := 0
	for {
		if d == l7.FromClient && p.bodyLeft > 0 {
			// The body streams through as messages without a request.
			k := min(p.bodyLeft, len(b)-off)
			if k == 0 {
				return msgs, nil
			}
			msgs = append(msgs, l7.Message{Len: k, Part: true})
			p.bodyLeft -= k
			off += k
			continue
		}
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			if len(b) >= l7.MaxBuffer && off == 0 {
				return nil, l7.ErrTooLarge
			}
			return msgs, nil
		}
		line := string(b[off : off+i])
		if strings.ContainsFunc(line, func(r rune) bool { return r >= 0x80 || r == 0xfffd }) {
			return nil, fmt.Errorf("line: not text: %w", l7.ErrProtocol)
		}
		m := l7.Message{Len: i + 1}
		if d == l7.FromClient && line == "SYNC" {
			// A message of its own that is no request: forwarded even
			// right after a denial.
			msgs = append(msgs, m)
			off += i + 1
			continue
		}
		if d == l7.FromClient {
			verb, arg, _ := strings.Cut(line, " ")
			m.Request = &l7.Request{Protocol: "line", Kind: strings.ToUpper(verb), Text: line, Target: arg,
				Attrs: map[string]string{"text": "collides"}}
			if verb == "STARTTLS" {
				p.encrypted.Store(true)
			}
			if verb == "UPLOAD" {
				fmt.Sscan(arg, &p.bodyLeft)
			}
		} else {
			st := "ok"
			if strings.HasPrefix(line, "-") {
				st = "error"
			}
			m.Response = &l7.Response{Status: st, Bytes: int64(i)}
		}
		msgs = append(msgs, m)
		off += i + 1
	}
}

func (p *lineParser) Deny(_ *l7.Request, reason string) []byte {
	if p.denyNil {
		return nil
	}
	return []byte("-DENIED " + reason + "\n")
}

func (p *lineParser) Encrypted() bool { return p.encrypted.Load() }

// lineDetect recognises the line protocol from an upper-case first byte
// (client) or "HELLO" (a server that speaks first). Lines starting with
// HOST are "http", to exercise destination names.
func lineDetect(_ uint16, d l7.Dir, p []byte) (string, bool) {
	switch {
	case d == l7.FromServer && bytes.HasPrefix(p, []byte("HELLO")):
		return "line", true
	case d == l7.FromClient && bytes.HasPrefix(p, []byte("HOST")):
		return "http", true
	case d == l7.FromClient && len(p) > 0 && p[0] >= 'A' && p[0] <= 'Z':
		return "line", true
	}
	return "", len(p) > 0
}

// verbGuard denies the verbs it holds.
type verbGuard map[string]bool

func (g verbGuard) Check(req *l7.Request) (bool, string) {
	if g[req.Kind] {
		return true, req.Kind + " is not allowed"
	}
	return false, ""
}

// l7Decider inspects every connection with rules.
type l7Decider struct {
	rules *L7Rules
	names bool
	seen  chan string // destination names, when not nil
}

func (d l7Decider) Decide(_ context.Context, c *Conn) Decision {
	if d.seen != nil {
		d.seen <- c.Name
	}
	return Decision{Verdict: auditlog.Allow, Rule: "inspect", L7: d.rules}
}

func (d l7Decider) UsesNames() bool { return d.names }

// lineServer answers each line with "+<line>", except NOREPLY (no answer)
// and ERR (an error); it sends HELLO first if greet. Every line it read
// goes to got.
func lineServer(t *testing.T, greet bool, got *syncLines) netip.AddrPort {
	return server(t, func(c *net.TCPConn) {
		if greet {
			c.Write([]byte("HELLO\n"))
		}
		r := bufio.NewReaderSize(c, 256<<10)
		for {
			line, err := r.ReadString('\n')
			if line != "" && got != nil {
				got.add(strings.TrimSuffix(line, "\n"))
			}
			if err != nil {
				c.CloseWrite()
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "NOREPLY":
			case line == "ERR":
				c.Write([]byte("-ERR failed\n"))
			default:
				c.Write([]byte("+" + truncate(line, 64) + "\n"))
			}
		}
	})
}

type syncLines struct {
	mu    sync.Mutex
	lines []string
}

func (s *syncLines) add(l string) {
	s.mu.Lock()
	s.lines = append(s.lines, l)
	s.mu.Unlock()
}

func (s *syncLines) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.lines...)
}

// l7Env is a proxy whose connections are inspected with the line parser.
func l7Env(t *testing.T, d l7Decider, pr *lineParser) *env {
	return l7EnvWith(t, d, pr, nil)
}

// l7EnvWith is l7Env with its L7Config changed by set.
func l7EnvWith(t *testing.T, d l7Decider, pr *lineParser, set func(*L7Config)) *env {
	if pr == nil {
		pr = &lineParser{}
	}
	return newEnv(t, func(c *Config) {
		c.Decider = d
		c.L7 = L7Config{
			Parsers: map[string]NewParser{
				"line": func(l7.Options) l7.Parser { return pr },
				"http": func(l7.Options) l7.Parser { return &lineParser{} },
			},
			Detect:       lineDetect,
			ResponseWait: 300 * time.Millisecond,
		}
		if set != nil {
			set(&c.L7)
		}
	})
}

// readLines reads n lines from c.
func readLines(t *testing.T, c net.Conn, n int) []string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	var out []string
	for range n {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: read: %v", out, err)
		}
		out = append(out, strings.TrimSuffix(l, "\n"))
	}
	return out
}

func l7Entries(es []auditlog.Entry) []auditlog.Entry { return ofType(es, auditlog.L7Request) }

func TestL7RequestsRecorded(t *testing.T) {
	dst := lineServer(t, false, nil)
	e := l7Env(t, l7Decider{rules: &L7Rules{Redact: true}}, nil)
	c := e.dial(t, dst)
	c.Write([]byte("GET a\n"))
	readLines(t, c, 1)
	c.Write([]byte("ERR\n"))
	if got := readLines(t, c, 1); got[0] != "-ERR failed" {
		t.Errorf("reply = %q", got)
	}
	c.Close()
	e.waitIdle(t)
	es := e.entries(t)
	reqs := l7Entries(es)
	if len(reqs) != 2 {
		t.Fatalf("l7.request entries = %+v; want 2", reqs)
	}
	open := ofType(es, auditlog.ConnOpen)[0]
	want := []struct{ kind, text, status string }{{"GET", "GET a", "ok"}, {"ERR", "ERR", "error"}}
	for i, r := range reqs {
		if r.Attr("protocol") != "line" || r.Attr("kind") != want[i].kind || r.Attr("text") != want[i].text || r.Attr("status") != want[i].status {
			t.Errorf("l7.request %d attrs = %v; want kind %s text %q status %s", i, r.Attrs, want[i].kind, want[i].text, want[i].status)
		}
		if r.Decision != auditlog.Allow || r.Rule != "inspect" || r.Src != open.Src || r.Dst != open.Dst || r.Identity != open.Identity {
			t.Errorf("l7.request %d = %+v; want the connection's verdict, rule, addresses and identity", i, r)
		}
		if r.Attr("open_seq") != fmt.Sprint(open.Seq) || r.Attr("req_text") != "collides" || r.Attr("duration_us") == "" {
			t.Errorf("l7.request %d attrs = %v; want open_seq %d, req_text, duration_us", i, r.Attrs, open.Seq)
		}
	}
	cl := ofType(es, auditlog.ConnClose)[0]
	if cl.Attr("l7") != "line" || cl.Attr("l7_requests") != "2" || cl.Attr("l7_stopped") != "" {
		t.Errorf("conn.close attrs = %v; want l7=line, l7_requests=2", cl.Attrs)
	}
}

// TestL7DenyInOrder: a denied request in a pipeline is answered with the
// protocol's error in its place among the responses, the server never
// sees it, and the connection goes on.
func TestL7DenyInOrder(t *testing.T) {
	var got syncLines
	dst := lineServer(t, false, &got)
	e := l7Env(t, l7Decider{rules: &L7Rules{Guard: verbGuard{"FLUSH": true}}}, nil)
	c := e.dial(t, dst)
	c.Write([]byte("GET a\nFLUSH\nGET b\n"))
	replies := readLines(t, c, 3)
	want := []string{"+GET a", "-DENIED FLUSH is not allowed", "+GET b"}
	if strings.Join(replies, "|") != strings.Join(want, "|") {
		t.Errorf("replies = %q; want %q", replies, want)
	}
	c.Write([]byte("FLUSH\n"))
	if r := readLines(t, c, 1); r[0] != want[1] {
		t.Errorf("reply to a lone FLUSH = %q", r)
	}
	c.Write([]byte("GET c\n"))
	if r := readLines(t, c, 1); r[0] != "+GET c" {
		t.Errorf("after the denial, reply = %q; want +GET c", r)
	}
	c.Close()
	e.waitIdle(t)
	if s := got.get(); strings.Join(s, "|") != "GET a|GET b|GET c" {
		t.Errorf("server read %q; want the allowed requests only", s)
	}
	es := e.entries(t)
	var denied int
	for _, r := range l7Entries(es) {
		if r.Attr("kind") == "FLUSH" {
			denied++
			if r.Decision != auditlog.Deny || r.Rule != "inspect" || r.Attr("deny_reason") != "FLUSH is not allowed" {
				t.Errorf("denied entry = %+v", r)
			}
		} else if r.Decision != auditlog.Allow {
			t.Errorf("allowed entry = %+v", r)
		}
	}
	if denied != 2 {
		t.Errorf("%d deny entries; want 2", denied)
	}
	if cl := ofType(es, auditlog.ConnClose)[0]; cl.Attr("l7_denied") != "2" || cl.Attr("l7_requests") != "5" {
		t.Errorf("conn.close attrs = %v; want l7_denied=2, l7_requests=5", cl.Attrs)
	}
}

// TestL7DenyDropsBody: the body of a denied request (its Part messages)
// never reaches the server, however it is split, so it cannot pass for a
// request of its own; a message that stands alone is forwarded.
func TestL7DenyDropsBody(t *testing.T) {
	var got syncLines
	dst := lineServer(t, false, &got)
	e := l7Env(t, l7Decider{rules: &L7Rules{Guard: verbGuard{"UPLOAD": true, "FLUSH": true}}}, nil)
	c := e.dial(t, dst)
	c.Write([]byte("UPLOAD 12\nFLU"))
	time.Sleep(20 * time.Millisecond)
	c.Write([]byte("SH\nFLUSH\nGET a\n"))
	if r := readLines(t, c, 2); r[0] != "-DENIED UPLOAD is not allowed" || r[1] != "+GET a" {
		t.Errorf("replies = %q", r)
	}
	// A message that is no part of the denied request still goes.
	c.Write([]byte("FLUSH\nSYNC\n"))
	if r := readLines(t, c, 2); r[0] != "-DENIED FLUSH is not allowed" || r[1] != "+SYNC" {
		t.Errorf("replies = %q", r)
	}
	c.Close()
	e.waitIdle(t)
	if s := got.get(); strings.Join(s, "|") != "GET a|SYNC" {
		t.Errorf("server read %q; want only GET a and SYNC", s)
	}
}

// TestL7PartialMessages: requests split across reads at every point are
// parsed whole.
func TestL7PartialMessages(t *testing.T) {
	var got syncLines
	dst := lineServer(t, false, &got)
	e := l7Env(t, l7Decider{rules: &L7Rules{Guard: verbGuard{"FLUSH": true}}}, nil)
	c := e.dial(t, dst)
	stream := "GET alpha\nFLUSH\nSET beta 1\n"
	for i := range len(stream) {
		c.Write([]byte(stream[i : i+1]))
		time.Sleep(time.Millisecond)
	}
	if r := readLines(t, c, 3); r[1] != "-DENIED FLUSH is not allowed" {
		t.Errorf("replies = %q", r)
	}
	c.Close()
	e.waitIdle(t)
	var kinds []string
	for _, r := range l7Entries(e.entries(t)) {
		kinds = append(kinds, r.Attr("text"))
	}
	// A denial is recorded at once, an allowed request when its response
	// completes it: the log orders them by completion, not by arrival.
	slices.Sort(kinds)
	if strings.Join(kinds, "|") != "FLUSH|GET alpha|SET beta 1" {
		t.Errorf("requests recorded = %q", kinds)
	}
}

// TestL7FallbackOnGarbage: a parser error stops parsing and is
// recorded. Where the rules only audit, the connection goes on as plain
// TCP with every byte delivered; where a guardrail needs every request
// seen, the connection is reset and nothing after the error is forwarded.
func TestL7FallbackOnGarbage(t *testing.T) {
	for _, tt := range []struct {
		name   string
		rules  *L7Rules
		strict bool
	}{
		{"audit only", &L7Rules{}, false},
		{"guardrail", &L7Rules{Guard: verbGuard{"FLUSH": true}}, true},
		{"guardrail that denies nothing", &L7Rules{Guard: deniesNothing{}}, false},
		{"audit required", &L7Rules{Durable: true}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got syncLines
			dst := lineServer(t, false, &got)
			e := l7Env(t, l7Decider{rules: tt.rules}, nil)
			c := e.dial(t, dst)
			c.Write([]byte("GET a\n"))
			readLines(t, c, 1)
			c.Write([]byte("BAD \xff\xfe\nFLUSH\n"))
			wantServer := "GET a|BAD \xff\xfe|FLUSH"
			if tt.strict {
				expectReset(t, c)
				wantServer = "GET a"
			} else if r := readLines(t, c, 2); r[1] != "+FLUSH" {
				t.Errorf("replies after garbage = %q; want FLUSH relayed untouched", r)
			}
			c.Close()
			e.waitIdle(t)
			if s := got.get(); strings.Join(s, "|") != wantServer {
				t.Errorf("server read %q; want %q", s, wantServer)
			}
			es := e.entries(t)
			var stopped []auditlog.Entry
			for _, r := range l7Entries(es) {
				if r.Attr("l7_stopped") != "" {
					stopped = append(stopped, r)
				}
			}
			if len(stopped) != 1 || stopped[0].Attr("l7_stopped") != "protocol_error" || !strings.Contains(stopped[0].Attr("error"), "not text") {
				t.Fatalf("stop entries = %+v; want one protocol_error", stopped)
			}
			wantDecision, wantReason := auditlog.Allow, "closed"
			if tt.strict {
				wantDecision, wantReason = auditlog.Deny, reasonL7Unparsed
			}
			if stopped[0].Decision != wantDecision {
				t.Errorf("stop entry decision = %v; want %v", stopped[0].Decision, wantDecision)
			}
			if cl := ofType(es, auditlog.ConnClose)[0]; cl.Attr("l7_stopped") != "protocol_error" || cl.Attr("reason") != wantReason {
				t.Errorf("conn.close attrs = %v; want reason %s", cl.Attrs, wantReason)
			}
		})
	}
}

// deniesNothing is a guardrail with no deny list (an l7 section that only
// audits).
type deniesNothing struct{}

func (deniesNothing) Check(*l7.Request) (bool, string) { return false, "" }
func (deniesNothing) Denies() bool                     { return false }

// TestL7TooLargeFailsClosed: a message padded past l7.MaxBuffer, then a
// denied verb. Under a guardrail the connection is reset, the server never
// sees the verb, and the stop is recorded as a denial; under rules that
// only audit the bytes go on unparsed, as before.
func TestL7TooLargeFailsClosed(t *testing.T) {
	for _, tt := range []struct {
		name   string
		rules  *L7Rules
		strict bool
	}{
		{"audit only", &L7Rules{}, false},
		{"guardrail", &L7Rules{Guard: verbGuard{"FLUSH": true}}, true},
		{"require tls", &L7Rules{RequireTLS: true}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got syncLines
			dst := lineServer(t, false, &got)
			e := l7Env(t, l7Decider{rules: tt.rules}, nil)
			c := e.dial(t, dst)
			padded := "SET " + strings.Repeat("x", 2*l7.MaxBuffer) + "\nFLUSH\n"
			go c.Write([]byte(padded))
			if tt.strict {
				expectReset(t, c)
			} else if r := readLines(t, c, 2); r[1] != "+FLUSH" {
				t.Errorf("replies = %q; want FLUSH relayed unparsed", r)
			}
			c.Close()
			e.waitIdle(t)
			s := got.get()
			if tt.strict && len(s) != 0 {
				t.Errorf("server read %d lines; want none", len(s))
			}
			if !tt.strict && (len(s) != 2 || s[1] != "FLUSH") {
				t.Errorf("server read %d lines; want the padded one and FLUSH", len(s))
			}
			es := e.entries(t)
			var stopped []auditlog.Entry
			for _, r := range l7Entries(es) {
				if r.Attr("l7_stopped") == "too_large" {
					stopped = append(stopped, r)
				}
			}
			if len(stopped) != 1 || (stopped[0].Decision == auditlog.Deny) != tt.strict {
				t.Errorf("too_large entries = %+v; want one, denied = %v", stopped, tt.strict)
			}
			cl := ofType(es, auditlog.ConnClose)[0]
			if tt.strict && cl.Attr("reason") != reasonL7Unparsed {
				t.Errorf("conn.close attrs = %v; want reason %s", cl.Attrs, reasonL7Unparsed)
			}
			if cl.Attr("l7_stopped") != "too_large" {
				t.Errorf("conn.close attrs = %v; want l7_stopped=too_large", cl.Attrs)
			}
		})
	}
}

// TestL7PendingOverflow: the request that finds the queue of requests
// waiting for responses full has an entry of its own; under a guardrail
// the connection is then reset.
func TestL7PendingOverflow(t *testing.T) {
	for _, tt := range []struct {
		name   string
		rules  *L7Rules
		strict bool
	}{
		{"audit only", &L7Rules{}, false},
		{"guardrail", &L7Rules{Guard: verbGuard{"FLUSH": true}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got syncLines
			dst := lineServer(t, false, &got)
			e := l7EnvWith(t, l7Decider{rules: tt.rules}, nil, func(c *L7Config) { c.ResponseWait = time.Minute })
			c := e.dial(t, dst)
			c.Write([]byte(strings.Repeat("NOREPLY\n", maxPending) + "OVER\nFLUSH\n"))
			if tt.strict {
				expectReset(t, c)
			} else if r := readLines(t, c, 2); r[0] != "+OVER" || r[1] != "+FLUSH" {
				t.Errorf("replies = %q; want OVER and FLUSH relayed unparsed", r)
			}
			c.Close()
			e.waitIdle(t)
			for _, l := range got.get() {
				if tt.strict && l == "FLUSH" {
					t.Errorf("server read FLUSH after parsing stopped under a guardrail")
				}
			}
			es := e.entries(t)
			var over []auditlog.Entry
			noreply := 0
			for _, r := range l7Entries(es) {
				switch r.Attr("kind") {
				case "OVER":
					over = append(over, r)
				case "NOREPLY":
					noreply++
				}
			}
			if len(over) != 1 || over[0].Attr("status") != "unknown" {
				t.Errorf("entries of the overflowing request = %+v; want one, status unknown", over)
			}
			if noreply != maxPending {
				t.Errorf("%d NOREPLY entries; want %d", noreply, maxPending)
			}
			if cl := ofType(es, auditlog.ConnClose)[0]; cl.Attr("l7_stopped") != "too_many_pending" {
				t.Errorf("conn.close attrs = %v", cl.Attrs)
			}
		})
	}
}

// TestL7BoundedMemory: a message larger than l7.MaxBuffer makes the
// parser give up; the proxy never hands it more than MaxBuffer, and the
// bytes still arrive.
func TestL7BoundedMemory(t *testing.T) {
	var got syncLines
	dst := lineServer(t, false, &got)
	var maxSeen atomic.Int64
	e := l7Env(t, l7Decider{rules: &L7Rules{}}, &lineParser{maxSeen: &maxSeen})
	c := e.dial(t, dst)
	big := "SET " + strings.Repeat("x", 3*l7.MaxBuffer) + "\n"
	go c.Write([]byte(big))
	readLines(t, c, 1)
	c.Close()
	e.waitIdle(t)
	if s := got.get(); len(s) != 1 || len(s[0]) != len(big)-1 {
		t.Errorf("server read %d lines; want the big one whole", len(s))
	}
	if m := maxSeen.Load(); m > l7.MaxBuffer {
		t.Errorf("Parse was given %d bytes; want at most %d", m, l7.MaxBuffer)
	}
	if cl := ofType(e.entries(t), auditlog.ConnClose)[0]; cl.Attr("l7_stopped") != "too_large" {
		t.Errorf("conn.close attrs = %v; want l7_stopped=too_large", cl.Attrs)
	}
}

// TestL7UnknownProtocol: a protocol the detector does not know, or does
// not know before FirstBytesWait passes, is relayed untouched where the
// rules only audit; under a guardrail or audit: required it is refused
// and recorded.
func TestL7UnknownProtocol(t *testing.T) {
	for _, tt := range []struct {
		name   string
		rules  *L7Rules
		slow   bool // the first bytes come in two parts, FirstBytesWait apart
		strict bool
	}{
		{"audit only", &L7Rules{}, false, false},
		{"audit only, slow", &L7Rules{}, true, false},
		{"guardrail", &L7Rules{Guard: verbGuard{"FLUSH": true}}, false, true},
		{"guardrail, slow", &L7Rules{Guard: verbGuard{"FLUSH": true}}, true, true},
		{"audit required, slow", &L7Rules{Durable: true}, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got syncLines
			dst := lineServer(t, false, &got)
			e := l7EnvWith(t, l7Decider{rules: tt.rules}, nil, func(c *L7Config) {
				c.FirstBytesWait = 100 * time.Millisecond
				c.Detect = slowDetect
			})
			c := e.dial(t, dst)
			msg := "flush \xff binary\nFLUSH\n"
			if tt.slow {
				// Upper case: the line protocol, once the detector has
				// seen enough of it, too late.
				msg = "FLUSH\n"
				c.Write([]byte("FL"))
				time.Sleep(300 * time.Millisecond)
				c.Write([]byte("USH\n"))
			} else {
				c.Write([]byte(msg))
			}
			if tt.strict {
				// The reset may come before the second write, which
				// then takes the error: the read sees EOF.
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if b, err := io.ReadAll(c); len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
					t.Errorf("read = %q, %v; want the connection reset", b, err)
				}
			} else if r := readLines(t, c, strings.Count(msg, "\n")); r[len(r)-1] != "+FLUSH" {
				t.Errorf("replies = %q; want FLUSH relayed untouched", r)
			}
			c.Close()
			e.waitIdle(t)
			if s := got.get(); tt.strict && len(s) != 0 {
				t.Errorf("server read %q; want nothing", s)
			}
			es := e.entries(t)
			reqs := l7Entries(es)
			cl := ofType(es, auditlog.ConnClose)[0]
			if tt.strict {
				if len(reqs) != 1 || reqs[0].Decision != auditlog.Deny || reqs[0].Attr("protocol") != "unknown" {
					t.Errorf("l7.request entries = %+v; want one denial", reqs)
				}
				if cl.Attr("reason") != reasonProtocolUnknown {
					t.Errorf("conn.close attrs = %v; want reason %s", cl.Attrs, reasonProtocolUnknown)
				}
				return
			}
			if len(reqs) != 0 {
				t.Errorf("%d l7.request entries; want none", len(reqs))
			}
			if cl.Attr("l7") != "none" {
				t.Errorf("conn.close attrs = %v; want l7=none", cl.Attrs)
			}
		})
	}
}

// slowDetect is lineDetect that needs three bytes to say.
func slowDetect(port uint16, d l7.Dir, p []byte) (string, bool) {
	if len(p) < 3 {
		return "", false
	}
	return lineDetect(port, d, p)
}

// TestL7ServerFirst: a protocol the server starts is detected from the
// server's bytes.
func TestL7ServerFirst(t *testing.T) {
	dst := lineServer(t, true, nil)
	e := l7Env(t, l7Decider{rules: &L7Rules{Guard: verbGuard{"FLUSH": true}}}, nil)
	c := e.dial(t, dst)
	if r := readLines(t, c, 1); r[0] != "HELLO" {
		t.Fatalf("greeting = %q", r)
	}
	c.Write([]byte("FLUSH\n"))
	if r := readLines(t, c, 1); r[0] != "-DENIED FLUSH is not allowed" {
		t.Errorf("reply = %q", r)
	}
	c.Close()
	e.waitIdle(t)
	if cl := ofType(e.entries(t), auditlog.ConnClose)[0]; cl.Attr("l7") != "line" || cl.Attr("l7_denied") != "1" {
		t.Errorf("conn.close attrs = %v", cl.Attrs)
	}
}

// TestL7RequireTLS: a plaintext request where TLS is required gets the
// protocol's error and the connection is closed; a session that upgrades
// first goes on.
func TestL7RequireTLS(t *testing.T) {
	var got syncLines
	dst := lineServer(t, false, &got)
	e := l7Env(t, l7Decider{rules: &L7Rules{RequireTLS: true}}, nil)
	c := e.dial(t, dst)
	c.Write([]byte("GET a\n"))
	b, _ := io.ReadAll(c)
	if string(b) != "-DENIED TLS is required\n" {
		t.Errorf("reply = %q; want the denial, then EOF", b)
	}
	c.Close()
	e.waitIdle(t)
	if s := got.get(); len(s) != 0 {
		t.Errorf("server read %q; want nothing", s)
	}
	es := e.entries(t)
	if r := l7Entries(es); len(r) != 1 || r[0].Decision != auditlog.Deny || r[0].Attr("deny_reason") != "TLS is required" {
		t.Errorf("l7.request entries = %+v", r)
	}
	if cl := ofType(es, auditlog.ConnClose)[0]; cl.Attr("reason") != reasonTLSRequired {
		t.Errorf("conn.close reason = %q; want %s", cl.Attr("reason"), reasonTLSRequired)
	}

	// An unknown protocol cannot be shown to be encrypted: refused.
	dst2 := server(t, echo)
	c2 := e.dial(t, dst2)
	c2.Write([]byte("lowercase"))
	expectReset(t, c2)
}

// TestL7DenyCloses: a protocol that cannot refuse one request and go on
// has its connection closed after the denial is recorded.
func TestL7DenyCloses(t *testing.T) {
	dst := lineServer(t, false, nil)
	e := l7Env(t, l7Decider{rules: &L7Rules{Guard: verbGuard{"FLUSH": true}}}, &lineParser{denyNil: true})
	c := e.dial(t, dst)
	c.Write([]byte("FLUSH\n"))
	b, err := io.ReadAll(c)
	if len(b) != 0 || err != nil {
		t.Errorf("read = %q, %v; want EOF", b, err)
	}
	c.Close()
	e.waitIdle(t)
	es := e.entries(t)
	if r := l7Entries(es); len(r) != 1 || r[0].Decision != auditlog.Deny {
		t.Errorf("l7.request entries = %+v", r)
	}
	if cl := ofType(es, auditlog.ConnClose)[0]; cl.Attr("reason") != reasonL7Denied {
		t.Errorf("conn.close reason = %q", cl.Attr("reason"))
	}
}

// TestL7Durable: with audit required, a request's entry is durable before
// the request is forwarded, and its response is an l7.response entry.
func TestL7Durable(t *testing.T) {
	var e *env
	var onDiskBefore atomic.Bool
	dst := server(t, func(c *net.TCPConn) {
		r := bufio.NewReader(c)
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		for _, x := range l7Entries(onDisk(t, e.dir)) {
			if x.Attr("text") == "GET a" {
				onDiskBefore.Store(true)
			}
		}
		c.Write([]byte("+ok\n"))
		io.Copy(io.Discard, c)
	})
	e = l7Env(t, l7Decider{rules: &L7Rules{Durable: true}}, nil)
	c := e.dial(t, dst)
	c.Write([]byte("GET a\n"))
	readLines(t, c, 1)
	c.Close()
	e.waitIdle(t)
	if !onDiskBefore.Load() {
		t.Errorf("the request reached the server before its entry was on disk")
	}
	es := e.entries(t)
	req, resp := l7Entries(es), ofType(es, TypeL7Response)
	if len(req) != 1 || len(resp) != 1 || resp[0].Attr("request_seq") != fmt.Sprint(req[0].Seq) || resp[0].Attr("status") != "ok" {
		t.Errorf("entries = %+v / %+v; want a request and its response", req, resp)
	}
}

// TestL7NoResponse: a request whose response does not come in time is
// recorded without one, and the connection goes on.
func TestL7NoResponse(t *testing.T) {
	dst := lineServer(t, false, nil)
	e := l7Env(t, l7Decider{rules: &L7Rules{Guard: verbGuard{"FLUSH": true}}}, nil)
	c := e.dial(t, dst)
	c.Write([]byte("NOREPLY\n"))
	time.Sleep(500 * time.Millisecond) // ResponseWait is 300ms
	c.Write([]byte("FLUSH\n"))         // waits behind NOREPLY, which never gets an answer
	c.Close()
	e.waitIdle(t)
	var status []string
	for _, r := range l7Entries(e.entries(t)) {
		status = append(status, r.Attr("kind")+"="+r.Attr("status"))
	}
	if strings.Join(status, ",") != "NOREPLY=no_response,FLUSH=" {
		t.Errorf("requests = %q; want NOREPLY recorded without response, FLUSH denied", status)
	}
}

// TestL7Encrypted: once the parser reports the session encrypted, the
// relay stops parsing and relays plain bytes.
func TestL7Encrypted(t *testing.T) {
	var got syncLines
	dst := lineServer(t, false, &got)
	e := l7Env(t, l7Decider{rules: &L7Rules{Guard: verbGuard{"FLUSH": true}}}, nil)
	c := e.dial(t, dst)
	c.Write([]byte("STARTTLS\n"))
	readLines(t, c, 1)
	c.Write([]byte("FLUSH\n"))
	if r := readLines(t, c, 1); r[0] != "+FLUSH" {
		t.Errorf("reply = %q; want it relayed untouched", r)
	}
	c.Close()
	e.waitIdle(t)
	if cl := ofType(e.entries(t), auditlog.ConnClose)[0]; cl.Attr("l7_stopped") != "encrypted" {
		t.Errorf("conn.close attrs = %v", cl.Attrs)
	}
}

// TestL7Names: when the decider uses names, the client's first message
// names the destination before the decision, without consuming it.
func TestL7Names(t *testing.T) {
	var got syncLines
	dst := lineServer(t, false, &got)
	seen := make(chan string, 4)
	e := l7Env(t, l7Decider{names: true, seen: seen, rules: &L7Rules{}}, nil)
	c := e.dial(t, dst)
	c.Write([]byte("HOST Db.Example:443\n"))
	readLines(t, c, 1)
	if n := <-seen; n != "db.example" {
		t.Errorf("Conn.Name = %q; want db.example", n)
	}
	c.Close()

	// A client that says nothing is decided without a name after the
	// wait, and relayed.
	c2 := e.dial(t, dst)
	if n := <-seen; n != "" {
		t.Errorf("Conn.Name = %q; want none", n)
	}
	c2.Write([]byte("GET x\n"))
	readLines(t, c2, 1)
	c2.Close()
	e.waitIdle(t)
	if s := got.get(); strings.Join(s, "|") != "HOST Db.Example:443|GET x" {
		t.Errorf("server read %q", s)
	}
	es := e.entries(t)
	open := ofType(es, auditlog.ConnOpen)
	if len(open) != 2 || open[0].Attr("name") != "db.example" || open[1].Attr("name") != "" {
		t.Errorf("conn.open entries = %+v; want the name on the first", open)
	}
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM": "example.com", "example.com:8080": "example.com", "example.com.": "example.com",
		"10.0.0.1": "", "10.0.0.1:80": "", "[::1]:443": "", "[fd00::1]": "", "": "",
	} {
		if got := hostName(in); got != want {
			t.Errorf("hostName(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestL7ParserPanic: a parser that panics is a parser error like any
// other: the connection goes on.
func TestL7ParserPanic(t *testing.T) {
	_, err := safeParse(panicParser{}, l7.FromClient, []byte("x"))
	if !errors.Is(err, l7.ErrProtocol) {
		t.Errorf("safeParse(panic) = %v; want ErrProtocol", err)
	}
	if _, err := safeParse(badLenParser{}, l7.FromClient, []byte("x")); !errors.Is(err, l7.ErrProtocol) {
		t.Errorf("safeParse(bad length) = %v; want ErrProtocol", err)
	}
}

type panicParser struct{}

func (panicParser) Parse(l7.Dir, []byte) ([]l7.Message, error) { panic("boom") }
func (panicParser) Deny(*l7.Request, string) []byte            { panic("boom") }
func (panicParser) Encrypted() bool                            { panic("boom") }

type badLenParser struct{ panicParser }

func (badLenParser) Parse(_ l7.Dir, b []byte) ([]l7.Message, error) {
	return []l7.Message{{Len: len(b) + 1}}, nil
}

// TestL7IdleBeforeFirstByte: a connection on which neither side speaks is
// closed by the idle timeout while the proxy waits to detect its protocol.
func TestL7IdleBeforeFirstByte(t *testing.T) {
	dst := server(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	e := newEnv(t, func(c *Config) {
		c.IdleTimeout = 200 * time.Millisecond
		c.Decider = l7Decider{rules: &L7Rules{}}
		c.L7 = L7Config{Parsers: map[string]NewParser{"line": func(l7.Options) l7.Parser { return &lineParser{} }}, Detect: lineDetect}
	})
	c := e.dial(t, dst)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("read = %v; want EOF from the idle close", err)
	}
	c.Close()
	e.waitIdle(t)
	if cl := ofType(e.entries(t), auditlog.ConnClose); len(cl) != 1 || cl[0].Attr("reason") != reasonIdle {
		t.Errorf("conn.close = %+v; want reason idle", cl)
	}
}

// TestL7Splices: with parsers configured, a connection no l7 rule applies
// to, one whose protocol is unknown, and one that turned encrypted are all
// relayed by splice: their bytes do not pass through the proxy's memory.
func TestL7Splices(t *testing.T) {
	const size = 32 << 20
	for _, tt := range []struct {
		name  string
		rules *L7Rules
		first string // sent (and answered) first
	}{
		{"no l7 rule", nil, ""},
		{"unknown protocol", &L7Rules{}, ""},
		{"encrypted", &L7Rules{}, "STARTTLS\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			received := make(chan int64, 1)
			dst := server(t, func(c *net.TCPConn) {
				if tt.first != "" {
					r := bufio.NewReader(c)
					l, _ := r.ReadString('\n')
					c.Write([]byte("+" + l))
					n, _ := io.Copy(io.Discard, r)
					received <- n
					return
				}
				n, _ := io.Copy(io.Discard, c)
				received <- n
			})
			e := l7Env(t, l7Decider{rules: tt.rules}, nil)
			c := e.dial(t, dst)
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if tt.first != "" {
				c.Write([]byte(tt.first))
				readLines(t, c, 1)
			}
			before := procIO(t)
			buf := make([]byte, 1<<20) // zeros: no protocol the detector knows
			for range size / len(buf) {
				if _, err := c.Write(buf); err != nil {
					t.Fatal(err)
				}
			}
			c.CloseWrite()
			if n := <-received; n != size {
				t.Fatalf("destination received %d bytes; want %d", n, size)
			}
			read := procIO(t)["rchar"] - before["rchar"]
			if read > size*5/4 {
				t.Errorf("bytes read by the process while relaying %d = %d; want about %d (the destination's reads only)", size, read, size)
			}
		})
	}
}

// TestL7RulesStrict: which rules fail closed when their requests cannot
// be parsed.
func TestL7RulesStrict(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rules *L7Rules
		want  bool
	}{
		{"none", nil, false},
		{"audit only", &L7Rules{}, false},
		{"audit only, redact", &L7Rules{Redact: true}, false},
		{"guard that denies nothing", &L7Rules{Guard: deniesNothing{}}, false},
		{"guard", &L7Rules{Guard: verbGuard{"FLUSH": true}}, true},
		{"require tls", &L7Rules{RequireTLS: true}, true},
		{"audit required", &L7Rules{Durable: true, Guard: deniesNothing{}}, true},
	} {
		if got := tt.rules.strict(); got != tt.want {
			t.Errorf("%s: strict() = %v; want %v", tt.name, got, tt.want)
		}
	}
}
