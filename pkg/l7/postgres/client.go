package postgres

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/sql"
)

// frontendTypes are the message types a client may send after startup.
const frontendTypes = "BCcdDEfFHPpQSX"

func (p *Parser) parseClient(e *emitter, b []byte) error {
	c := &p.c
	if c.skip > 0 {
		n := int(min(c.skip, int64(len(b))))
		c.skip -= int64(n)
		if c.skip == 0 && c.req != nil {
			e.request(n, c.req)
			c.req = nil
		} else {
			e.plain(n)
		}
	}
	for e.off < len(b) {
		if p.outstanding() >= maxPending {
			return fmt.Errorf("postgres: %d requests without an answer: %w", maxPending, l7.ErrTooLarge)
		}
		if c.canceled {
			return errorf("bytes after a CancelRequest")
		}
		if !c.started {
			ok, err := p.startup(e, b[e.off:])
			if err != nil || !ok {
				return err
			}
			continue
		}
		ok, err := p.clientMessage(e, b)
		if err != nil || !ok {
			return err
		}
	}
	return nil
}

// startup reads the untyped first message. ok is false when it is not
// complete yet.
func (p *Parser) startup(e *emitter, b []byte) (bool, error) {
	if len(b) >= 2 && b[0] == 0x16 && b[1] == 0x03 {
		// A TLS ClientHello without SSLRequest (PostgreSQL 17 direct
		// SSL): the session is encrypted from the first byte.
		p.mu.Lock()
		p.encrypted = true
		p.mu.Unlock()
		e.plain(len(b))
		return true, nil
	}
	if len(b) < 8 {
		return false, nil
	}
	n := int(binary.BigEndian.Uint32(b))
	code := binary.BigEndian.Uint32(b[4:])
	if n < 8 || n > maxStartup {
		return false, errorf("startup message length %d", n)
	}
	if len(b) < n {
		return false, nil
	}
	msg := b[8:n]
	switch code {
	case codeSSL, codeGSSENC:
		if n != 8 {
			return false, errorf("encryption request of length %d", n)
		}
		p.mu.Lock()
		p.sslAsked = 'S'
		if code == codeGSSENC {
			p.sslAsked = 'G'
		}
		p.mu.Unlock()
		e.plain(n)
	case codeCancel:
		if n != 16 {
			return false, errorf("cancel request of length %d", n)
		}
		r := p.newRequest("CANCEL", "")
		r.Attrs["backend_pid"] = fmt.Sprint(binary.BigEndian.Uint32(msg))
		p.c.canceled = true
		e.request(n, r)
	default:
		if code>>16 != 3 {
			return false, errorf("unsupported protocol version %d.%d", code>>16, code&0xffff)
		}
		attrs := map[string]string{}
		for len(msg) > 1 {
			k, rest, ok := cstr(msg)
			if !ok {
				return false, errorf("startup parameter without terminator")
			}
			v, rest, ok := cstr(rest)
			if !ok {
				return false, errorf("startup parameter %q without value", k)
			}
			msg = rest
			switch k {
			case "user", "database", "application_name", "replication":
				attrs[k] = sql.Truncate(v, 256)
			}
		}
		if len(msg) != 1 || msg[0] != 0 {
			return false, errorf("startup message not terminated")
		}
		if attrs["user"] == "" {
			return false, errorf("startup message without user")
		}
		if attrs["database"] == "" {
			attrs["database"] = attrs["user"]
		}
		p.mu.Lock()
		p.session = attrs
		p.mu.Unlock()
		p.c.started = true
		r := p.newRequest("STARTUP", "")
		if code != codeV3 {
			r.Attrs["protocol_version"] = fmt.Sprintf("3.%d", code&0xffff)
		}
		p.push(&pending{req: r, startup: true})
		e.request(n, r)
	}
	return true, nil
}

// clientMessage takes one typed message from b at e.off (or, inside an
// extended batch, at the batch's scan position). ok is false when more
// bytes are needed.
func (p *Parser) clientMessage(e *emitter, b []byte) (bool, error) {
	c := &p.c
	at := e.off
	if c.batch {
		at = e.off + c.scanned
	}
	rest := b[at:]
	if len(rest) < 5 {
		return p.holdBatch(e, b, at)
	}
	t := rest[0]
	n := int64(binary.BigEndian.Uint32(rest[1:]))
	if strings.IndexByte(frontendTypes, t) < 0 {
		return false, errorf("unknown frontend message type %q", t)
	}
	if n < 4 || n > maxMsgLen {
		return false, errorf("message %q of length %d", t, n)
	}
	total := 1 + n
	complete := int64(len(rest)) >= total
	switch t {
	case 'P', 'B', 'E', 'D', 'C', 'H', 'S':
		if !complete {
			if t == 'B' && total > l7.MaxBuffer {
				return p.streamBind(e, b, at, total)
			}
			if total > l7.MaxBuffer {
				if t == 'P' {
					return false, fmt.Errorf("postgres: Parse message of %d bytes: %w", total, l7.ErrTooLarge)
				}
				return false, errorf("message %q of length %d", t, n)
			}
			return p.holdBatch(e, b, at)
		}
		if !c.batch {
			c.batch, c.scanned = true, 0
		}
		if err := p.extended(t, rest[5:total]); err != nil {
			return false, err
		}
		c.scanned += int(total)
		switch t {
		case 'S':
			p.endBatch(e, true)
		case 'H':
			p.endBatch(e, false)
		}
		return true, nil
	}
	// Any other message ends an open batch first.
	if c.batch {
		p.endBatch(e, false)
		return true, nil
	}
	switch t {
	case 'Q':
		if total > l7.MaxBuffer {
			return false, fmt.Errorf("postgres: Query message of %d bytes: %w", total, l7.ErrTooLarge)
		}
		if !complete {
			return false, nil
		}
		text, _, ok := cstr(rest[5:total])
		if !ok {
			return false, errorf("query text without terminator")
		}
		st := p.statement(text)
		r := p.newRequest(st.info.Kind(), st.text)
		sqlAttrs(r, st.info)
		p.push(&pending{req: r})
		e.request(int(total), r)
		return true, nil
	case 'F':
		if total < 9 {
			return false, errorf("FunctionCall of length %d", n)
		}
		if len(rest) < 9 || (!complete && total <= l7.MaxBuffer) {
			return false, nil
		}
		r := p.newRequest("FUNCTION_CALL", "")
		r.Attrs["function_oid"] = fmt.Sprint(binary.BigEndian.Uint32(rest[5:]))
		if complete {
			p.push(&pending{req: r})
			e.request(int(total), r)
			return true, nil
		}
		// Larger than the buffer: the arguments stream through and the
		// request rides on the last piece, so a deny keeps the call from
		// the server (and closes the connection: the server has part).
		p.push(&pending{req: r, partial: true})
		p.stream(e, rest, total, nil)
		c.req = r
		return true, nil
	}
	// CopyData, CopyDone, CopyFail, password and SASL messages,
	// Terminate: passed through, streamed when incomplete.
	return p.stream(e, rest, total, nil), nil
}

// stream passes a message through, as much of it as b holds.
func (p *Parser) stream(e *emitter, rest []byte, total int64, r *l7.Request) bool {
	n := int64(len(rest))
	if n > total {
		n = total
	}
	if r != nil {
		e.request(int(n), r)
	} else {
		e.plain(int(n))
	}
	p.c.skip = total - n
	return true
}

// holdBatch waits for the rest of a message. An open batch is held whole
// so a denied one can be dropped up to its Sync; one that grows past half
// the buffer is sent on in parts.
func (p *Parser) holdBatch(e *emitter, b []byte, at int) (bool, error) {
	c := &p.c
	if c.batch && c.scanned > 0 && len(b)-e.off >= l7.MaxBuffer/2 {
		p.endBatch(e, false)
		return true, nil
	}
	if len(b)-at >= l7.MaxBuffer {
		return false, fmt.Errorf("postgres: client message: %w", l7.ErrTooLarge)
	}
	return false, nil
}

// streamBind sends on a Bind too large to hold: the portal and statement
// names lead it, the parameter values that follow are not needed.
func (p *Parser) streamBind(e *emitter, b []byte, at int, total int64) (bool, error) {
	c := &p.c
	if c.batch && c.scanned > 0 {
		p.endBatch(e, false)
		return true, nil
	}
	portal, rest, ok := cstr(b[at+5:])
	var name string
	if ok {
		name, _, ok = cstr(rest)
	}
	if !ok {
		if len(b)-at >= l7.MaxBuffer {
			return false, fmt.Errorf("postgres: Bind names: %w", l7.ErrTooLarge)
		}
		return false, nil
	}
	params := ""
	if !p.opts.Redact {
		params = "(not recorded: larger than the buffer)"
	}
	c.bind(portal, name, params)
	c.batch = false
	p.stream(e, b[at:], total, nil)
	return true, nil
}

// extended applies one complete extended-protocol message body.
func (p *Parser) extended(t byte, body []byte) error {
	c := &p.c
	switch t {
	case 'P':
		name, rest, ok := cstr(body)
		if !ok {
			return errorf("Parse without statement name")
		}
		text, _, ok := cstr(rest)
		if !ok {
			return errorf("Parse without query text")
		}
		c.store(name, p.statement(text))
	case 'B':
		portal, rest, ok := cstr(body)
		if !ok {
			return errorf("Bind without portal name")
		}
		name, rest, ok := cstr(rest)
		if !ok {
			return errorf("Bind without statement name")
		}
		params := ""
		if !p.opts.Redact {
			var err error
			if params, err = bindParams(rest); err != nil {
				return err
			}
		}
		c.bind(portal, name, params)
	case 'E':
		portal, _, ok := cstr(body)
		if !ok {
			return errorf("Execute without portal name")
		}
		pt, ok := c.portals[portal]
		if !ok {
			pt.st = stmt{info: sql.Info{Statements: []sql.Statement{{Kind: "UNKNOWN"}}}}
		}
		c.execs = append(c.execs, pt)
	case 'C':
		if len(body) < 2 {
			return errorf("Close without target")
		}
		name, _, ok := cstr(body[1:])
		if !ok {
			return errorf("Close without name")
		}
		switch body[0] {
		case 'S':
			c.forget(name)
		case 'P':
			delete(c.portals, name)
		default:
			return errorf("Close of %q", body[0])
		}
	}
	return nil
}

// store keeps a parsed statement; the cache holds at most maxStmtText
// bytes of text, dropping the oldest named statements first.
func (c *client) store(name string, st stmt) {
	if c.stmts == nil {
		c.stmts = map[string]stmt{}
	}
	if old, ok := c.stmts[name]; ok {
		c.stmtBytes -= cost(name, old)
	} else if name != "" {
		c.stmtOrder = append(c.stmtOrder, name)
	}
	c.stmts[name] = st
	c.stmtBytes += cost(name, st)
	c.compact()
	for c.stmtBytes > maxStmtText && len(c.stmtOrder) > 0 {
		old := c.stmtOrder[0]
		c.stmtOrder = c.stmtOrder[1:]
		if o, ok := c.stmts[old]; ok {
			c.stmtBytes -= cost(old, o)
			delete(c.stmts, old)
		}
	}
}

// cost is what a cached statement counts against the cache's bound: its
// text, its name and the map entry.
func cost(name string, st stmt) int { return len(name) + len(st.text) + 64 }

// forget drops a closed statement.
func (c *client) forget(name string) {
	if st, ok := c.stmts[name]; ok {
		c.stmtBytes -= cost(name, st)
		delete(c.stmts, name)
	}
	c.compact()
}

// compact drops closed names from the eviction order once they make up
// most of it, so it stays bounded by the cache.
func (c *client) compact() {
	if len(c.stmtOrder) > 2*len(c.stmts)+16 {
		live := c.stmtOrder[:0]
		for _, n := range c.stmtOrder {
			if _, ok := c.stmts[n]; ok {
				live = append(live, n)
			}
		}
		c.stmtOrder = live
	}
}

func (c *client) bind(name, stmtName, params string) {
	if c.portals == nil {
		c.portals = map[string]portal{}
	}
	if len(c.portals) > 64 {
		// Drivers use the unnamed portal or a few named ones; a
		// client that leaves many open loses their texts, not memory.
		clear(c.portals)
	}
	st, ok := c.stmts[stmtName]
	if !ok {
		st = stmt{info: sql.Info{Statements: []sql.Statement{{Kind: "UNKNOWN"}}}}
	}
	c.portals[name] = portal{st: st, name: stmtName, params: params}
}

// bindParams renders the parameter values of a Bind (the part after the
// names) for the log: text values quoted, binary ones by size, NULL.
func bindParams(b []byte) (string, error) {
	bad := errorf("Bind parameters")
	if len(b) < 2 {
		return "", bad
	}
	nf := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+2*nf+2 {
		return "", bad
	}
	formats := b[2 : 2+2*nf]
	b = b[2+2*nf:]
	np := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	var out strings.Builder
	for i := range np {
		if len(b) < 4 {
			return "", bad
		}
		n := int32(binary.BigEndian.Uint32(b))
		b = b[4:]
		if i > 0 {
			out.WriteString(", ")
		}
		if n < 0 {
			out.WriteString("NULL")
			continue
		}
		if int(n) > len(b) {
			return "", bad
		}
		binaryFormat := nf == 1 && formats[1] == 1 || nf > i && formats[2*i+1] == 1
		if binaryFormat {
			fmt.Fprintf(&out, "<%d bytes>", n)
		} else if out.Len() < l7.MaxText {
			out.WriteString(strconv.Quote(sql.Truncate(string(b[:n]), 256)))
		}
		b = b[n:]
	}
	return sql.Truncate(out.String(), 1024), nil
}

// endBatch emits the scanned part of the open batch as one message, with
// a request when it holds an Execute. synced says it ended with Sync.
func (p *Parser) endBatch(e *emitter, synced bool) {
	c := &p.c
	n := c.scanned
	execs := c.execs
	c.batch, c.scanned, c.execs = false, 0, nil
	p.mu.Lock()
	var tail *pending
	if k := len(p.pending); k > 0 && p.pending[k-1].open {
		tail = p.pending[k-1]
	}
	p.mu.Unlock()
	if len(execs) == 0 {
		if synced {
			if tail != nil {
				p.mu.Lock()
				tail.open = false
				p.mu.Unlock()
			} else {
				p.push(&pending{})
			}
		}
		e.plain(n)
		return
	}
	var info sql.Info
	texts := make([]string, len(execs))
	var params []string
	for i, pt := range execs {
		info.Statements = append(info.Statements, pt.st.info.Statements...)
		texts[i] = pt.st.text
		if pt.params != "" {
			params = append(params, pt.params)
		}
	}
	r := p.newRequest(info.Kind(), sql.Truncate(strings.Join(texts, "; "), l7.MaxText))
	sqlAttrs(r, info)
	r.Attrs["extended"] = "true"
	if len(execs) > 1 {
		r.Attrs["executes"] = fmt.Sprint(len(execs))
	} else if execs[0].name != "" {
		r.Attrs["statement"] = sql.Truncate(execs[0].name, 64)
	}
	if len(params) > 0 {
		// Only with Redact off: values are data, and data is what
		// redaction keeps out of the log.
		r.Attrs["params"] = sql.Truncate(strings.Join(params, "; "), l7.MaxText)
	}
	if tail != nil {
		// A batch sent after a Flush without Sync: one ReadyForQuery
		// will end both.
		p.mu.Lock()
		tail.open, tail.joined = false, true
		p.mu.Unlock()
	}
	p.push(&pending{req: r, open: !synced, execs: len(execs)})
	e.request(n, r)
}
