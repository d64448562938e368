// Package http follows HTTP/1.1 connections: each request head becomes a
// request, bodies (Content-Length or chunked) stream through without being
// held, pipelined responses complete requests in order, and after an
// accepted Upgrade or CONNECT the connection is a tunnel the parser no
// longer reads.
package http

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// maxPending bounds the requests waiting for responses. Real clients
// pipeline a handful at most; the parser needs each one to know how its
// response ends (HEAD, CONNECT), so past the bound it gives up with
// ErrTooLarge rather than hold an unbounded queue.
const maxPending = 1024

// Parser follows one HTTP/1.1 connection. Create it with New.
type Parser struct {
	opts l7.Options
	now  func() time.Time

	// Client direction only.
	reqBody    body
	reqScan    int         // bytes of an unfinished head already searched for its end
	clientDone atomic.Bool // the rest of the client's bytes belong to a tunnel
	// upgradeWait: an Upgrade or CONNECT waits for the server's answer.
	// Until it comes the client's next bytes could be the tunnel's or a
	// request: they are refused, never passed unchecked (a server that
	// ignores the Upgrade goes on with HTTP, and so must the parser).
	upgradeWait atomic.Bool

	// Server direction only.
	respBody   body
	respScan   int
	respFrom   *waiting // the request the response in progress answers
	respStatus int
	respReason string
	serverDone bool

	mu      sync.Mutex
	pending []*waiting  // requests sent, oldest first
	last    *l7.Request // the newest request; its body may still be coming
	lastIn  bool        // last's body has been read whole
	tunnel  bool        // the server accepted an Upgrade or a CONNECT
}

// waiting is a request whose response has not ended.
type waiting struct {
	req      *l7.Request
	head     bool // HEAD: the response has no body
	connect  bool
	upgrade  bool
	http10   bool
	tunneled bool // this request switched the client direction to opaque
}

// New returns a parser for one connection.
func New(opts l7.Options) *Parser { return &Parser{opts: opts, now: time.Now} }

// Parse implements l7.Parser.
func (p *Parser) Parse(d l7.Dir, b []byte) ([]l7.Message, error) {
	if d == l7.FromServer {
		return p.parseServer(b)
	}
	return p.parseClient(b)
}

// extend adds k bytes to the last message of this call, or starts one.
func extend(msgs []l7.Message, k int) []l7.Message {
	if len(msgs) > 0 && msgs[len(msgs)-1].Response == nil {
		msgs[len(msgs)-1].Len += k
		return msgs
	}
	return append(msgs, l7.Message{Len: k})
}

func (p *Parser) parseClient(b []byte) ([]l7.Message, error) {
	var msgs []l7.Message
	n := 0
	defer func() {
		p.mu.Lock()
		p.lastIn = !p.reqBody.active()
		p.mu.Unlock()
	}()
	for n < len(b) {
		if p.clientDone.Load() {
			return extend(msgs, len(b)-n), nil
		}
		if p.reqBody.active() {
			k, _, err := p.reqBody.advance(b[n:])
			if err != nil {
				return nil, err
			}
			if k == 0 {
				break
			}
			msgs = l7.AppendPart(msgs, k)
			n += k
			continue
		}
		if p.upgradeWait.Load() {
			return nil, fmt.Errorf("http: the client sent more before the server answered its Upgrade or CONNECT: %w", l7.ErrProtocol)
		}
		end, err := headEnd(b[n:], &p.reqScan, true)
		if err != nil {
			return nil, err
		}
		if end == 0 {
			break
		}
		w, err := p.request(b[n : n+end])
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		waiting := len(p.pending)
		p.mu.Unlock()
		if waiting >= maxPending {
			return nil, fmt.Errorf("http: more than %d pipelined requests wait for responses: %w", maxPending, l7.ErrTooLarge)
		}
		msgs = append(msgs, l7.Message{Len: end, Request: w.req})
		n += end
		if w.connect || w.upgrade {
			// What follows is the tunnel's if the server agrees, and
			// HTTP again if it does not; a client waits for the answer
			// before it sends more. Set before the request is pending,
			// where the server direction can see it.
			w.tunneled = true
			p.upgradeWait.Store(true)
		}
		p.mu.Lock()
		p.pending = append(p.pending, w)
		p.last = w.req
		p.mu.Unlock()
	}
	return msgs, nil
}

// headEnd finds the empty line that ends a message head at the start of
// b and returns the head's length, or 0 if it is not all there yet. scan
// remembers how far an earlier call searched. It checks the start of the
// first line early, so bytes that are not HTTP fail fast.
func headEnd(b []byte, scan *int, request bool) (int, error) {
	if err := checkStart(b, request); err != nil {
		return 0, err
	}
	// Every LF must end a CRLF; the head ends at the first empty line.
	for i := *scan; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		i += j
		if i == 0 || b[i-1] != '\r' {
			*scan = 0
			return 0, fmt.Errorf("http: line not ended by CRLF: %w", l7.ErrProtocol)
		}
		if i >= 3 && b[i-3] == '\r' && b[i-2] == '\n' {
			*scan = 0
			return i + 1, nil
		}
		i++
	}
	if len(b) >= l7.MaxBuffer {
		*scan = 0
		return 0, fmt.Errorf("http: message head longer than %d bytes: %w", l7.MaxBuffer, l7.ErrTooLarge)
	}
	*scan = len(b)
	return 0, nil
}

// checkStart rejects a first line that cannot be HTTP/1.x as soon as
// enough of it is there: a method token (requests) or "HTTP/1."
// (responses).
func checkStart(b []byte, request bool) error {
	if !request {
		const v = "HTTP/1."
		k := min(len(b), len(v))
		if string(b[:k]) != v[:k] {
			return fmt.Errorf("http: response does not start with %q: %w", v, l7.ErrProtocol)
		}
		return nil
	}
	for i, c := range b {
		if c == ' ' && i > 0 {
			return nil
		}
		if !isTokenByte(c) || i >= 32 {
			return fmt.Errorf("http: request does not start with a method: %w", l7.ErrProtocol)
		}
	}
	return nil
}

// isTokenByte reports the bytes of an RFC 9110 token.
func isTokenByte(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// header is what the parser needs from a message head.
type header struct {
	host       string
	length     int64 // -1: none
	chunked    bool
	te         bool // a Transfer-Encoding other than chunked last
	connection string
	upgrade    string
	expect     string
}

// parseHead splits a head into its first line and the headers the
// parser needs.
func parseHead(head []byte) (string, header, error) {
	h := header{length: -1}
	hostSeen := false
	lines := head[:len(head)-4] // the head ends with CRLF CRLF
	i := bytes.Index(lines, []byte("\r\n"))
	first := lines
	if i >= 0 {
		first, lines = lines[:i], lines[i+2:]
	} else {
		lines = nil
	}
	for len(lines) > 0 {
		var line []byte
		if i := bytes.Index(lines, []byte("\r\n")); i >= 0 {
			line, lines = lines[:i], lines[i+2:]
		} else {
			line, lines = lines, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return "", h, fmt.Errorf("http: header line %q has no name: %w", clipBytes(line), l7.ErrProtocol)
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenByte(c) {
				return "", h, fmt.Errorf("http: bad header name %q: %w", clipBytes(name), l7.ErrProtocol)
			}
		}
		raw := bytes.Trim(line[colon+1:], " \t")
		if bytes.ContainsAny(raw, "\r\n\x00") {
			return "", h, fmt.Errorf("http: bad header value: %w", l7.ErrProtocol)
		}
		// Only the headers the parser needs become strings.
		value := func() string { return string(raw) }
		switch {
		case equalFold(name, "host"):
			// Servers must refuse two (RFC 9112, 3.2), but one that
			// took the first while the proxy decided on the last would
			// serve a name the policy never saw.
			if hostSeen {
				return "", h, fmt.Errorf("http: more than one Host header: %w", l7.ErrProtocol)
			}
			h.host, hostSeen = value(), true
		case equalFold(name, "content-length"):
			v, err := strconv.ParseInt(value(), 10, 64)
			if err != nil || v < 0 || (h.length >= 0 && h.length != v) {
				return "", h, fmt.Errorf("http: bad Content-Length %q: %w", clipBytes(raw), l7.ErrProtocol)
			}
			h.length = v
		case equalFold(name, "transfer-encoding"):
			codings := strings.Split(value(), ",")
			last := strings.TrimSpace(codings[len(codings)-1])
			h.chunked = strings.EqualFold(last, "chunked")
			h.te = !h.chunked
		case equalFold(name, "connection"):
			h.connection += "," + value()
		case equalFold(name, "upgrade"):
			h.upgrade = value()
		case equalFold(name, "expect"):
			h.expect = strings.ToLower(value())
		}
	}
	return string(first), h, nil
}

func equalFold(b []byte, s string) bool { return len(b) == len(s) && strings.EqualFold(string(b), s) }

// hasToken reports whether a comma-separated header value holds token.
func hasToken(list, token string) bool {
	for f := range strings.SplitSeq(list, ",") {
		if strings.EqualFold(strings.TrimSpace(f), token) {
			return true
		}
	}
	return false
}

// request parses a request head and sets up its body.
func (p *Parser) request(head []byte) (*waiting, error) {
	first, h, err := parseHead(head)
	if err != nil {
		return nil, err
	}
	parts := strings.Split(first, " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("http: bad request line %q: %w", clip(first, 64), l7.ErrProtocol)
	}
	method, target, version := parts[0], parts[1], parts[2]
	if version != "HTTP/1.1" && version != "HTTP/1.0" {
		return nil, fmt.Errorf("http: version %q is not HTTP/1.x: %w", clip(version, 16), l7.ErrProtocol)
	}
	for _, c := range []byte(target) {
		if c <= ' ' || c == 0x7f {
			return nil, fmt.Errorf("http: bad request target: %w", l7.ErrProtocol)
		}
	}
	w := &waiting{head: method == "HEAD", connect: method == "CONNECT", http10: version == "HTTP/1.0"}
	attrs := map[string]string{"version": version}
	host := h.host
	path := target
	if w.connect {
		// The tunnel goes where the target says, whatever Host says.
		host = target
	} else if i := strings.Index(target, "://"); i > 0 && target[0] != '/' {
		// absolute-form: the authority is the host; the rest is the path.
		rest := target[i+3:]
		j := strings.IndexAny(rest, "/?")
		if j < 0 {
			host, path = rest, "/"
		} else {
			host, path = rest[:j], rest[j:]
		}
		if path[0] == '?' {
			path = "/" + path
		}
		// Servers differ on which of the two names they serve (RFC 9112
		// says the authority, many route by Host): the policy must see
		// the one the server uses, so the two must agree. Userinfo
		// ("a@b") is not allowed in a request target and is read
		// differently by different parsers.
		switch {
		case host == "" || strings.ContainsAny(host, "@\\"):
			return nil, fmt.Errorf("http: request target %q has no usable authority: %w", clip(target, 64), l7.ErrProtocol)
		case h.host != "" && l7.HostKey(host) != l7.HostKey(h.host):
			return nil, fmt.Errorf("http: request target names %q but Host names %q: %w", clip(host, 64), clip(h.host, 64), l7.ErrProtocol)
		}
	}
	// Parsers disagree on odd names ("a:80@b" is a to some, b to others):
	// the policy must never decide on another name than the server uses.
	// So the name decided on, and the Host header beside it in every
	// form, must be plain names.
	for _, name := range []string{host, h.host} {
		if name != "" && !validHost(name) {
			return nil, fmt.Errorf("http: host %q is not a host name or address with an optional port: %w", clip(name, 64), l7.ErrProtocol)
		}
	}
	if !w.connect {
		path = p.redactTarget(path)
		attrs["path"] = clip(path, l7.MaxText)
	}
	switch {
	case h.te && !w.connect:
		return nil, fmt.Errorf("http: request Transfer-Encoding is not chunked: %w", l7.ErrProtocol)
	case h.chunked:
		p.reqBody = body{mode: bodyChunked}
		attrs["body"] = "chunked"
	case h.length > 0:
		p.reqBody = body{mode: bodyLength, left: h.length}
		attrs["body"] = strconv.FormatInt(h.length, 10)
	}
	if h.expect != "" {
		attrs["expect"] = clip(h.expect, 64)
	}
	if h.upgrade != "" && hasToken(h.connection, "upgrade") {
		w.upgrade = true
		attrs["upgrade"] = clip(h.upgrade, 64)
	}
	text := method + " " + path
	if w.connect {
		text = method + " " + target
	}
	w.req = &l7.Request{
		Protocol: "http",
		Kind:     method,
		Text:     clip(text, l7.MaxText),
		Target:   clip(host, l7.MaxText),
		Attrs:    attrs,
	}
	return w, nil
}

// redactTarget masks every query value (and any query item without a
// name) when the options ask for it: "/s?q=secret&x" → "/s?q=?&?".
func (p *Parser) redactTarget(target string) string {
	path, query, ok := strings.Cut(target, "?")
	if !ok || !p.opts.Redact {
		return target
	}
	var b strings.Builder
	b.WriteString(path)
	b.WriteByte('?')
	for i, item := range strings.Split(query, "&") {
		if i > 0 {
			b.WriteByte('&')
		}
		if name, _, ok := strings.Cut(item, "="); ok {
			b.WriteString(name)
			b.WriteString("=?")
		} else if item != "" {
			b.WriteByte('?')
		}
	}
	return b.String()
}

func (p *Parser) parseServer(b []byte) ([]l7.Message, error) {
	var msgs []l7.Message
	n, from := 0, 0
	for n < len(b) {
		if p.serverDone {
			n = len(b)
			break
		}
		if p.respBody.active() {
			k, done, err := p.respBody.advance(b[n:])
			if err != nil {
				return nil, err
			}
			n += k
			if !done {
				break
			}
			msgs = append(msgs, l7.Message{Len: n - from, Response: p.finish()})
			from = n
			continue
		}
		end, err := headEnd(b[n:], &p.respScan, false)
		if err != nil {
			return nil, err
		}
		if end == 0 {
			break
		}
		resp, err := p.response(b[n : n+end])
		if err != nil {
			return nil, err
		}
		n += end
		if resp != nil {
			msgs = append(msgs, l7.Message{Len: n - from, Response: resp})
			from = n
		}
	}
	if n > from {
		msgs = extend(msgs, n-from)
	}
	return msgs, nil
}

// response parses a response head. It returns the response when the head
// ends it (no body, a tunnel, or a body that lasts until the connection
// closes), and nil when a body follows or the response is interim (1xx).
func (p *Parser) response(head []byte) (*l7.Response, error) {
	first, h, err := parseHead(head)
	if err != nil {
		return nil, err
	}
	// HTTP/1.1 200 OK
	if len(first) < 12 || first[8] != ' ' || (len(first) > 12 && first[12] != ' ') {
		return nil, fmt.Errorf("http: bad status line %q: %w", clip(first, 64), l7.ErrProtocol)
	}
	code, err := strconv.Atoi(first[9:12])
	if err != nil || code < 100 || code > 999 {
		return nil, fmt.Errorf("http: bad status code in %q: %w", clip(first, 64), l7.ErrProtocol)
	}
	reason := ""
	if len(first) > 13 {
		reason = first[13:]
	}
	p.mu.Lock()
	var w *waiting
	if len(p.pending) > 0 {
		w = p.pending[0]
	}
	p.mu.Unlock()
	if code >= 100 && code < 200 && code != 101 {
		return nil, nil // interim: 100 Continue, 103 Early Hints
	}
	if w != nil && w.tunneled {
		// The final answer to an Upgrade or CONNECT: a tunnel from now
		// on if the server agreed, HTTP as before if not. The client
		// sends more only once it has this answer, which the relay
		// forwards after this returns.
		if code == 101 && w.upgrade || w.connect && code >= 200 && code < 300 {
			p.clientDone.Store(true)
		}
		p.upgradeWait.Store(false)
	}
	p.respFrom, p.respStatus, p.respReason = w, code, reason
	p.respBody = body{}
	var reqHead, connect, upgrade bool
	if w != nil {
		reqHead, connect, upgrade = w.head, w.connect, w.upgrade
	}
	switch {
	case code == 101 && upgrade, connect && code >= 200 && code < 300:
		p.serverDone = true
		p.mu.Lock()
		p.tunnel = true
		p.mu.Unlock()
	case code == 101:
		return nil, fmt.Errorf("http: 101 Switching Protocols without an Upgrade request: %w", l7.ErrProtocol)
	case reqHead || code == 204 || code == 304:
	case h.chunked:
		p.respBody = body{mode: bodyChunked}
		return nil, nil
	case h.te:
		// A transfer coding other than chunked last: the body runs until
		// the server closes, whatever Content-Length says (RFC 9112, 6.3).
		p.serverDone = true
	case h.length >= 0:
		if h.length > 0 {
			p.respBody = body{mode: bodyLength, left: h.length}
			return nil, nil
		}
	default:
		// No length: the body runs until the server closes.
		p.serverDone = true
	}
	return p.finish(), nil
}

// finish completes the oldest request with the response just read.
func (p *Parser) finish() *l7.Response {
	w := p.respFrom
	resp := &l7.Response{Status: strconv.Itoa(p.respStatus), Bytes: p.respBody.total, Time: p.now()}
	if p.respStatus >= 400 {
		resp.Error = clip(strings.ToValidUTF8(p.respReason, "\uFFFD"), l7.MaxText)
	}
	p.respFrom = nil
	if w == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) == 0 || p.pending[0] != w {
		return nil
	}
	p.pending[0] = nil
	p.pending = p.pending[1:]
	return resp
}

// Deny implements l7.Parser: 403 Forbidden with a one-line body. The
// connection stays usable when the request's body was read whole (or it
// had none); otherwise the client would send the body as the next request,
// so the answer says Connection: close.
func (p *Parser) Deny(req *l7.Request, reason string) []byte {
	return p.deny(req, reason, false)
}

// DenyLast implements l7.LastDenier: the 403 of Deny, with Connection:
// close whatever the request's body, for a connection the proxy closes
// after it.
func (p *Parser) DenyLast(req *l7.Request, reason string) []byte {
	return p.deny(req, reason, true)
}

func (p *Parser) deny(req *l7.Request, reason string, last bool) []byte {
	p.mu.Lock()
	keep := !last && (p.last != req || p.lastIn)
	var http10, head bool
	for i, w := range p.pending {
		if w.req != req {
			continue
		}
		http10, head = w.http10, w.head
		if w.tunneled {
			// The server never sees the Upgrade or CONNECT, so the client
			// direction goes on as HTTP.
			p.upgradeWait.Store(false)
		}
		p.pending = append(p.pending[:i], p.pending[i+1:]...)
		break
	}
	p.mu.Unlock()
	msg := "forbidden by policy"
	if reason != "" {
		msg += ": " + reason
	}
	msg = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, clip(msg, 512)) + "\n"
	var b strings.Builder
	b.WriteString("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n", len(msg))
	if !keep || http10 {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	if !head {
		b.WriteString(msg)
	}
	return []byte(b.String())
}

// Encrypted implements l7.Parser: true once the server accepted an
// Upgrade or a CONNECT, after which the connection is a tunnel (most often
// TLS) whose bytes the parser returns whole.
func (p *Parser) Encrypted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tunnel
}

// clip bounds s to n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

var (
	_ l7.Parser     = (*Parser)(nil)
	_ l7.LastDenier = (*Parser)(nil)
)

// maxHostName bounds a host name (RFC 1035: 253 bytes, one more for a
// final dot). A longer one is refused, never clipped: the policy would
// decide on a name the server does not use.
const maxHostName = 254

// validHost reports whether h is a host name, an IPv4 address or a
// bracketed IPv6 address, with an optional numeric port.
func validHost(h string) bool {
	if len(h) > maxHostName+len(":65535") {
		return false
	}
	host, port, hasPort := h, "", false
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		if _, err := netip.ParseAddr(h[1:end]); err != nil {
			return false
		}
		rest := h[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return false
			}
			port, hasPort = rest[1:], true
		}
	} else {
		if i := strings.LastIndexByte(h, ':'); i >= 0 {
			host, port, hasPort = h[:i], h[i+1:], true
		}
		if host == "" || len(host) > maxHostName {
			return false
		}
		for _, c := range []byte(host) {
			if !isHostByte(c) {
				return false
			}
		}
	}
	if !hasPort {
		return true
	}
	if port == "" || len(port) > 5 {
		return false
	}
	for _, c := range []byte(port) {
		if c < '0' || c > '9' {
			return false
		}
	}
	n, _ := strconv.Atoi(port)
	return n <= 65535
}

// isHostByte: letters, digits, '-', '.', '_' (seen in real host names).
func isHostByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
}
