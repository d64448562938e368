// Package redis follows Redis connections (RESP2, RESP3 after HELLO 3,
// and inline commands): each command becomes a request, each reply
// completes the oldest command waiting for one, and push messages go by
// without completing anything.
package redis

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// maxPending bounds the commands a connection may have waiting for
// replies with their requests kept for pairing. A client may pipeline
// without reading (redis-cli --pipe sends everything first); commands past
// the bound are still reported, but their replies complete nothing until
// the server has caught up, so memory stays bounded.
const maxPending = 1024

// Parser follows one Redis connection. Create it with New.
type Parser struct {
	opts l7.Options
	now  func() time.Time

	// Client side, touched only by the client direction.
	cmd    command // scratch for the command being read; its args point into Parse's input
	tail   walker  // the rest of a command streamed after its request
	inTail bool
	multi  bool // between a MULTI the server accepts and EXEC/DISCARD

	// The transaction as the proxy forwards commands: Deny and Replace
	// are called in the order of the client's commands, after Parse has
	// run past them, so multi (which follows parsing) cannot say whether
	// a denied command was queued in a transaction.
	txOpen    bool   // a MULTI was forwarded and no EXEC, DISCARD or RESET since
	txAborted string // the kind of the first command denied while txOpen
	// rejected holds the MULTIs parsed that the server refuses for
	// certain (with arguments) until Replace or Deny sees them: they open
	// no transaction.
	rejected map[*l7.Request]struct{}

	// Server side, touched only by the server direction.
	reply   walker
	inReply bool
	cur     replyInfo // the reply being walked

	mu         sync.Mutex // guards what both directions share
	pending    []waiting  // commands sent, oldest first
	untracked  int        // commands sent after pending filled up, in order after it
	resp3      bool       // HELLO 3 succeeded: subscribe confirmations are pushes
	subscribed bool       // RESP2 subscribed mode: message arrays are pushes
}

// waiting is a command sent to the server and not yet answered.
type waiting struct {
	req   *l7.Request
	name  string
	left  int // confirmations still due for (un)subscribe; 0 = one ordinary reply
	proto string
}

// replyInfo is what the start of a server value said about it.
type replyInfo struct {
	push    bool   // never completes a command
	confirm string // the (un)subscribe kind it confirms, if any
	count   int64  // subscriptions left after an (un)subscribe confirmation
	err     string // the error text of an error reply
	isErr   bool
	size    int64 // bytes of the reply so far
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

func (p *Parser) parseClient(b []byte) ([]l7.Message, error) {
	var msgs []l7.Message
	n := 0
	for n < len(b) {
		if p.inTail {
			k, done, err := p.tail.advance(b[n:])
			if err != nil {
				return nil, err
			}
			if k > 0 {
				msgs = l7.AppendPart(msgs, k)
				n += k
			}
			if !done {
				break
			}
			p.inTail = false
			continue
		}
		var (
			cmd *command
			k   int
			err error
		)
		if b[n] == '*' {
			cmd, k, err = p.readArray(b[n:])
		} else {
			cmd, k, err = readInline(b[n:])
		}
		if err != nil {
			return nil, err
		}
		if k == 0 {
			break
		}
		n += k
		if cmd == nil {
			msgs = appendBody(msgs, k) // an empty command, which Redis ignores
			continue
		}
		if mode := replyMode(cmd); mode != "" {
			clear(p.cmd.args[:cap(p.cmd.args)])
			// The commands before it in this read are handled (checked,
			// forwarded, recorded); parsing stops at it.
			return msgs, fmt.Errorf("redis: CLIENT REPLY %s: the server's replies can no longer be paired with commands", mode)
		}
		msgs = append(msgs, l7.Message{Len: k, Request: p.sent(cmd)})
	}
	clear(p.cmd.args[:cap(p.cmd.args)]) // keep no reference to the proxy's buffer
	if n == 0 && len(b) >= l7.MaxBuffer {
		return nil, fmt.Errorf("redis: no command in %d bytes: %w", len(b), l7.ErrTooLarge)
	}
	return msgs, nil
}

// replyMode returns OFF or SKIP for a CLIENT REPLY command that silences
// the server, and "" otherwise. Parsing stops there: which later commands
// are answered then depends on state only the server knows for sure (a
// RESET switches replies back on, a SKIP inside MULTI applies at EXEC, a
// SKIP before a denied command would fall on the next one), and a reply
// taken for the wrong command would pair every later one wrongly.
func replyMode(cmd *command) string {
	if len(cmd.args) < 3 || upperWord(cmd.args[0]) != "CLIENT" || upperWord(cmd.args[1]) != "REPLY" {
		return ""
	}
	switch mode := upperWord(cmd.args[2]); mode {
	case "OFF", "SKIP":
		return mode
	}
	return ""
}

// appendBody adds k bytes that carry no request or response, merged with
// the previous message when that one carries none either.
func appendBody(msgs []l7.Message, k int) []l7.Message {
	if i := len(msgs) - 1; i >= 0 && msgs[i].Request == nil && msgs[i].Response == nil {
		msgs[i].Len += k
		return msgs
	}
	return append(msgs, l7.Message{Len: k})
}

// sent records a command as waiting for its reply and returns its request.
func (p *Parser) sent(cmd *command) *l7.Request {
	req := cmd.request(p.opts.Redact, p.multi)
	if req.Kind == "EXEC" || req.Kind == "DISCARD" || req.Kind == "RESET" {
		delete(req.Attrs, "multi") // a no-op on a nil map
	}
	w := waiting{req: req, name: req.Kind}
	switch req.Kind {
	case "MULTI":
		// Only what the command itself says decides: whether the server
		// is in RESP2 subscribed mode is known only once the replies to
		// earlier commands (UNSUBSCRIBE, HELLO, RESET) are read, after
		// this one may already be parsed. Taking a MULTI Redis refuses
		// for an open transaction errs safe: a denial then aborts a
		// transaction that was never open (-EXECABORT).
		if cmd.argc != 1 {
			// Refused with an error; nor does it abort a transaction open.
			if p.rejected == nil {
				p.rejected = make(map[*l7.Request]struct{})
			}
			p.rejected[req] = struct{}{}
			break
		}
		p.multi = true
	case "EXEC", "DISCARD", "RESET":
		p.multi = false
	case "HELLO":
		if len(cmd.args) > 1 {
			w.proto = string(clipBytes(cmd.args[1]))
		}
	case "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE":
		// One confirmation per channel; with no channel, an unsubscribe
		// is answered once per subscription, which only the server
		// knows: the first confirmation completes it.
		w.left = int(max(1, min(cmd.argc-1, 1<<20)))
	}
	p.mu.Lock()
	if w.left > 0 && !p.resp3 && strings.HasSuffix(req.Kind, "SUBSCRIBE") && !strings.Contains(req.Kind, "UN") {
		p.subscribed = true
	}
	if len(p.pending) < maxPending && p.untracked == 0 {
		p.pending = append(p.pending, w)
	} else {
		p.untracked++
	}
	p.mu.Unlock()
	return req
}

// readArray reads a command in RESP form: an array of bulk strings. It
// returns k == 0 if more bytes are needed. A command too big for the
// buffer is returned as soon as its name and the arguments that fit are
// in, and the rest streams through as body.
func (p *Parser) readArray(b []byte) (*command, int, error) {
	line, n, err := readLine(b)
	if err != nil || n == 0 {
		return nil, 0, err
	}
	argc, ok := parseInt(line[1:])
	if !ok || argc > maxCount {
		return nil, 0, fmt.Errorf("redis: bad command length %q: %w", clipBytes(line), l7.ErrProtocol)
	}
	if argc <= 0 {
		return nil, n, nil
	}
	cmd := &p.cmd
	cmd.args, cmd.argc = cmd.args[:0], argc
	for i := int64(0); i < argc; i++ {
		line, k, err := readLine(b[n:])
		if err != nil {
			return nil, 0, err
		}
		if k == 0 {
			if len(b) >= l7.MaxBuffer && i > 0 {
				// The next argument's header does not even fit: stream.
				p.tail = walker{stack: []frame{{left: argc - i}}}
				p.inTail = true
				return cmd, n, nil
			}
			return nil, 0, nil
		}
		if line[0] != '$' {
			return nil, 0, fmt.Errorf("redis: command argument is %q, not a bulk string: %w", clipBytes(line), l7.ErrProtocol)
		}
		size, ok := parseInt(line[1:])
		if !ok || size < 0 || size > maxBulk {
			return nil, 0, fmt.Errorf("redis: bad argument length %q: %w", clipBytes(line), l7.ErrProtocol)
		}
		end := int64(n+k) + size + 2
		if end > int64(len(b)) {
			if i == 0 && end > l7.MaxBuffer {
				return nil, 0, fmt.Errorf("redis: command name of %d bytes: %w", size, l7.ErrTooLarge)
			}
			if i > 0 && (end > l7.MaxBuffer || len(b) >= l7.MaxBuffer) {
				// This argument cannot fit: return what is known and
				// stream from its payload on.
				// The stack counts this argument too: its end is an
				// element's end like the others'.
				p.tail = walker{bulk: size, crlf: size == 0, stack: []frame{{left: argc - i}}}
				p.inTail = true
				return cmd, n + k, nil
			}
			return nil, 0, nil
		}
		data := b[n+k : end-2]
		if b[end-2] != '\r' || b[end-1] != '\n' {
			return nil, 0, fmt.Errorf("redis: argument not followed by CRLF: %w", l7.ErrProtocol)
		}
		cmd.args = append(cmd.args, data)
		n = int(end)
	}
	return cmd, n, nil
}

// readInline reads a command in the inline form Redis accepts from
// telnet-like clients: one line of words, quoted like redis-cli quotes.
func readInline(b []byte) (*command, int, error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(b) >= l7.MaxBuffer {
			return nil, 0, fmt.Errorf("redis: inline command longer than %d bytes: %w", l7.MaxBuffer, l7.ErrTooLarge)
		}
		return nil, 0, nil
	}
	line := b[:i]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, err := splitArgs(line)
	if err != nil {
		return nil, 0, err
	}
	if len(args) == 0 {
		return nil, i + 1, nil
	}
	for _, c := range args[0] {
		if !isNameByte(c) {
			return nil, 0, fmt.Errorf("redis: inline command name %q: %w", clipBytes(args[0]), l7.ErrProtocol)
		}
	}
	return &command{args: args, argc: int64(len(args))}, i + 1, nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == '|' || c == ':'
}

// splitArgs splits an inline command the way Redis does (sdssplitargs):
// words separated by blanks, "double quoted" with \n \r \t \b \a \\ \"
// and \xHH escapes, or 'single quoted' with \'.
func splitArgs(line []byte) ([][]byte, error) {
	var args [][]byte
	i := 0
	for {
		for i < len(line) && isBlank(line[i]) {
			i++
		}
		if i == len(line) {
			return args, nil
		}
		var cur []byte
		switch line[i] {
		case '"':
			i++
			for {
				if i >= len(line) {
					return nil, fmt.Errorf("redis: unbalanced quotes in inline command: %w", l7.ErrProtocol)
				}
				c := line[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]) {
					cur = append(cur, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 4
					continue
				}
				if c == '\\' && i+1 < len(line) {
					i++
					c = unescape(line[i])
				}
				cur = append(cur, c)
				i++
			}
		case '\'':
			i++
			for {
				if i >= len(line) {
					return nil, fmt.Errorf("redis: unbalanced quotes in inline command: %w", l7.ErrProtocol)
				}
				c := line[i]
				if c == '\'' {
					i++
					break
				}
				if c == '\\' && i+1 < len(line) && line[i+1] == '\'' {
					i++
					c = '\''
				}
				cur = append(cur, c)
				i++
			}
		default:
			j := i
			for j < len(line) && !isBlank(line[j]) {
				j++
			}
			cur = line[i:j]
			i = j
		}
		if i < len(line) && !isBlank(line[i]) {
			return nil, fmt.Errorf("redis: closing quote not followed by a blank: %w", l7.ErrProtocol)
		}
		if cur == nil {
			cur = []byte{}
		}
		args = append(args, cur)
	}
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0
}
func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func (p *Parser) parseServer(b []byte) ([]l7.Message, error) {
	var msgs []l7.Message
	n, from := 0, 0 // from: start of bytes not yet in a message
	for n < len(b) {
		if !p.inReply {
			info, ok, err := p.classify(b[n:])
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			p.cur, p.inReply = info, true
		}
		k, done, err := p.reply.advance(b[n:])
		if err != nil {
			return nil, err
		}
		n += k
		p.cur.size += int64(k)
		if !done {
			break
		}
		p.inReply = false
		if resp := p.complete(); resp != nil {
			msgs = append(msgs, l7.Message{Len: n - from, Response: resp})
		} else {
			// A push (or a reply past maxPending) is a message of its
			// own, so that a reply's message holds that reply alone
			// (Replace: the proxy swaps a reply's bytes).
			msgs = appendBody(msgs, n-from)
		}
		from = n
	}
	if n > from {
		msgs = appendBody(msgs, n-from)
	}
	if n == 0 && len(b) >= l7.MaxBuffer {
		return nil, fmt.Errorf("redis: no reply in %d bytes: %w", len(b), l7.ErrTooLarge)
	}
	return msgs, nil
}

// classify looks at the start of a reply: whether it is a push, confirms
// a subscription, or is an error. ok is false if more bytes are needed.
func (p *Parser) classify(b []byte) (replyInfo, bool, error) {
	var info replyInfo
	line, k, err := readLine(b)
	if err != nil || k == 0 {
		return info, false, err
	}
	if len(line) == 0 {
		return info, false, fmt.Errorf("redis: empty type line: %w", l7.ErrProtocol)
	}
	switch line[0] {
	case '-':
		info.isErr, info.err = true, clip(strings.ToValidUTF8(string(clipBytes64k(line[1:])), "\uFFFD"))
		return info, true, nil
	case '!':
		info.isErr = true
		size, ok := parseInt(line[1:])
		if ok && size > 0 && int64(k)+size > int64(len(b)) && len(b) < l7.MaxBuffer {
			return info, false, nil // wait for the text, if it fits
		}
		if ok && size > 0 && int64(k)+size <= int64(len(b)) {
			info.err = clip(strings.ToValidUTF8(string(clipBytes64k(b[k:int64(k)+size])), "\uFFFD"))
		}
		return info, true, nil
	case '>', '*':
	default:
		return info, true, nil
	}
	p.mu.Lock()
	resp3, subscribed := p.resp3, p.subscribed
	p.mu.Unlock()
	if line[0] == '*' && (resp3 || !subscribed) {
		return info, true, nil
	}
	info.push = true
	// A pubsub message: >3 or *3, then the kind, the channel and the
	// payload or the subscription count.
	kind, k2, ok := bulkAt(b[k:])
	if !ok {
		if len(b) >= l7.MaxBuffer {
			return info, true, nil
		}
		return info, false, nil
	}
	switch strings.ToLower(string(kind)) {
	case "message", "pmessage", "smessage":
	case "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe":
		info.confirm = strings.ToUpper(string(kind))
		// The channel (possibly null), then the count.
		rest := b[k+k2:]
		_, k3, ok := bulkAt(rest)
		if !ok {
			return info, len(b) >= l7.MaxBuffer, nil
		}
		cl, k4, err := readLine(rest[k3:])
		if err != nil || k4 == 0 {
			return info, len(b) >= l7.MaxBuffer, err
		}
		if len(cl) > 0 && cl[0] == ':' {
			info.count, _ = parseInt(cl[1:])
		}
	default:
		// In RESP2 subscribed mode other arrays are replies ("pong");
		// in RESP3 every push is a push.
		info.push = line[0] == '>'
	}
	return info, true, nil
}

// bulkAt reads a short bulk or simple string (or a null) at the start of
// b. ok is false if b does not hold all of it.
func bulkAt(b []byte) (data []byte, k int, ok bool) {
	line, n, err := readLine(b)
	if err != nil || n == 0 || len(line) == 0 {
		return nil, 0, false
	}
	switch line[0] {
	case '+':
		return line[1:], n, true
	case '_':
		return nil, n, true
	case '$':
		size, ok := parseInt(line[1:])
		if !ok {
			return nil, 0, false
		}
		if size < 0 {
			return nil, n, true
		}
		if int64(n)+size+2 > int64(len(b)) {
			return nil, 0, false
		}
		return b[n : int64(n)+size], n + int(size) + 2, true
	}
	return nil, 0, false
}

// complete ends the reply just walked and returns the response it gives
// the oldest waiting command, or nil if it answers none.
func (p *Parser) complete() *l7.Response {
	info := p.cur
	p.mu.Lock()
	defer p.mu.Unlock()
	if info.confirm != "" {
		if !p.resp3 && strings.Contains(info.confirm, "UNSUBSCRIBE") && info.count == 0 {
			p.subscribed = false
		}
		if len(p.pending) == 0 || p.pending[0].name != info.confirm {
			return nil
		}
		w := &p.pending[0]
		if w.left--; w.left > 0 && info.count != 0 {
			return nil
		}
	} else if info.push {
		return nil
	} else if len(p.pending) == 0 {
		if p.untracked > 0 {
			p.untracked--
		}
		return nil
	}
	w := p.pending[0]
	p.pending[0] = waiting{}
	p.pending = p.pending[1:]
	if len(p.pending) == 0 {
		p.pending = nil // let the backing array go
	}
	resp := &l7.Response{Status: "ok", Bytes: info.size, Time: p.now()}
	if info.isErr {
		resp.Status, resp.Error = "error", info.err
	}
	if w.name == "HELLO" && !info.isErr && w.proto != "" {
		p.resp3 = w.proto == "3"
		if p.resp3 {
			p.subscribed = false
		}
	}
	if w.name == "RESET" && !info.isErr {
		// RESET ends subscriptions and goes back to RESP2.
		p.resp3, p.subscribed = false, false
	}
	return resp
}

// Deny implements l7.Parser: a RESP error in place of the server's reply.
// The denied command never reaches the server, so it no longer waits for
// a reply. Denied inside a transaction, it aborts the transaction (see
// Replace).
func (p *Parser) Deny(req *l7.Request, reason string) []byte {
	delete(p.rejected, req)
	if p.txOpen && p.txAborted == "" {
		p.txAborted = req.Kind
	}
	p.mu.Lock()
	found := false
	for i := range p.pending {
		if p.pending[i].req == req {
			p.pending = append(p.pending[:i], p.pending[i+1:]...)
			found = true
			break
		}
	}
	if !found && p.untracked > 0 {
		p.untracked-- // req was one of them: no reply will come for it
	}
	p.mu.Unlock()
	msg := "denied by policy"
	if reason != "" {
		msg += ": " + reason
	}
	msg = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, msg)
	if len(msg) > 512 {
		msg = strings.ToValidUTF8(msg[:512], "")
	}
	return []byte("-ERR " + msg + "\r\n")
}

// Commands the proxy sends in place of an EXEC, and the client's answer.
var (
	discardCommand = []byte("*1\r\n$7\r\nDISCARD\r\n")
	execAbortReply = []byte("-EXECABORT Transaction discarded because of previous errors.\r\n")
)

// Replace implements l7.Replacer. Redis refuses EXEC with EXECABORT, and
// runs nothing, when it rejected a command while queuing the transaction;
// a command the proxy denies inside MULTI must do the same, or the rest of
// the transaction would run without it. So the EXEC of a transaction in
// which a command was denied becomes a DISCARD (the server drops its
// queue, and the WATCHes as EXEC would), and the client gets EXECABORT
// in place of DISCARD's +OK. A nested MULTI is left to the server, which
// refuses it without aborting the transaction.
func (p *Parser) Replace(req *l7.Request) *l7.Replacement {
	if _, ok := p.rejected[req]; ok {
		delete(p.rejected, req)
		return nil
	}
	switch req.Kind {
	case "MULTI":
		if !p.txOpen {
			p.txOpen, p.txAborted = true, ""
		}
	case "DISCARD", "RESET":
		p.txOpen, p.txAborted = false, ""
	case "EXEC":
		aborted := p.txAborted
		p.txOpen, p.txAborted = false, ""
		if aborted == "" {
			return nil
		}
		return &l7.Replacement{
			Send:   discardCommand,
			Answer: execAbortReply,
			Reason: "transaction discarded: " + aborted + " was denied while the transaction was queued",
		}
	}
	return nil
}

// Encrypted implements l7.Parser. Redis over TLS is seen as TLS, never
// here, so a Redis session never switches.
func (p *Parser) Encrypted() bool { return false }

var (
	_ l7.Parser   = (*Parser)(nil)
	_ l7.Replacer = (*Parser)(nil)
)
