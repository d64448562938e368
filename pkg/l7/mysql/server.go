package mysql

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/sql"
)

// serverPacket handles one complete server packet.
func (p *Parser) serverPacket(e *emitter, total int, seq byte, b []byte) error {
	if len(b) == 0 {
		return errorf("empty server packet")
	}
	switch p.phase() {
	case phGreeting:
		return p.greeting(e, total, b)
	case phHandshake:
		if b[0] != 0xff {
			return errorf("server packet 0x%02x before the handshake response", b[0])
		}
		p.setPhase(phClosed)
		e.plain(total)
		return nil
	case phClosed:
		e.plain(total)
		return nil
	}
	return p.answer(e, total, b)
}

func (p *Parser) setPhase(ph phase) {
	p.mu.Lock()
	p.ph = ph
	p.mu.Unlock()
}

// greeting reads the server's initial handshake packet.
func (p *Parser) greeting(e *emitter, total int, b []byte) error {
	if b[0] == 0xff {
		// Refused before the handshake (too many connections, host
		// blocked).
		p.setPhase(phClosed)
		e.plain(total)
		return nil
	}
	if b[0] != 10 {
		return errorf("handshake protocol version %d", b[0])
	}
	version, rest, ok := cstr(b[1:])
	if !ok || len(rest) < 4+8+1+2 {
		return errorf("short server greeting")
	}
	rest = rest[4+8+1:]
	caps := uint64(binary.LittleEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) >= 1+2+2 {
		caps |= uint64(binary.LittleEndian.Uint16(rest[3:])) << 16
		rest = rest[5:]
		if len(rest) >= 1+10 && caps&capMySQL == 0 {
			caps |= uint64(binary.LittleEndian.Uint32(rest[1+6:])) << 32
		}
	}
	p.mu.Lock()
	// MariaDB prefixes its version with "5.5.5-" for old clients.
	p.version = sql.Truncate(strings.TrimPrefix(version, "5.5.5-"), 64)
	p.serverCaps = caps
	p.ph = phHandshake
	p.mu.Unlock()
	e.plain(total)
	return nil
}

// account adds server bytes to the oldest outstanding command.
func (p *Parser) account(n int64) {
	p.mu.Lock()
	if len(p.pending) > 0 {
		p.pending[0].bytes += n
	}
	p.mu.Unlock()
}

func (p *Parser) head() (*pending, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pending) == 0 {
		return nil, p.caps
	}
	return p.pending[0], p.caps
}

// answer advances through the answer to the oldest outstanding command.
func (p *Parser) answer(e *emitter, total int, b []byte) error {
	p.mu.Lock()
	var h *pending
	if len(p.pending) > 0 {
		h = p.pending[0]
		h.bytes += int64(total)
	}
	caps := p.caps
	p.mu.Unlock()
	if h == nil {
		e.plain(total) // unsolicited: an error before the server closes
		return nil
	}
	deprecate := caps&capDeprecateEOF != 0
	isEnd := b[0] == 0xfe && (len(b) < 9 || deprecate && len(b) < maxPayload)
	if b[0] == 0xff {
		if len(b) >= 3 && binary.LittleEndian.Uint16(b[1:]) == 0xffff {
			e.plain(total) // MariaDB progress report
			return nil
		}
		// No row, definition or auth packet starts with 0xff.
		p.errPacket(h, b)
		p.complete(e, total)
		return nil
	}
	switch h.kind {
	case ansAuth:
		switch b[0] {
		case 0x00:
			if h.login {
				p.setPhase(phCommand)
			}
			if h.user != "" {
				p.mu.Lock()
				p.session["user"] = h.user
				p.mu.Unlock()
			}
			p.complete(e, total)
			return nil
		}
		e.plain(total) // auth switch or more data
		return nil
	case ansOne, ansSimple:
		if b[0] == 0x00 {
			h.affected, _ = okStatus(b)
		}
		if h.schema != "" && b[0] == 0x00 {
			p.mu.Lock()
			p.session["database"] = h.schema
			p.mu.Unlock()
		}
		p.complete(e, total)
		return nil
	case ansFieldList:
		if isEnd {
			p.complete(e, total)
			return nil
		}
	case ansFetch:
		if isEnd {
			h.counted = true
			p.complete(e, total)
			return nil
		}
		h.rows++
	case ansPrepare:
		return p.prepare(e, total, h, b, deprecate)
	case ansResult:
		return p.result(e, total, h, b, caps, isEnd)
	}
	e.plain(total)
	return nil
}

// result follows a text or binary result: OK, LOCAL INFILE, or result
// sets (more of them while the status says more results exist).
func (p *Parser) result(e *emitter, total int, h *pending, b []byte, caps uint64, isEnd bool) error {
	r := &p.r
	deprecate := caps&capDeprecateEOF != 0
	switch r.state {
	case stFirst, stInfile:
		switch {
		case b[0] == 0x00 && len(b) >= 7:
			n, status := okStatus(b)
			h.affected += n
			return p.endResult(e, total, status)
		case b[0] == 0xfb && r.state == stFirst:
			r.state = stInfile
		case r.state == stInfile:
			return errorf("packet 0x%02x after LOCAL INFILE data", b[0])
		default:
			n, rest, ok := lenenc(b)
			if !ok || n == 0 || n > 4096 {
				return errorf("result column count")
			}
			r.cols = int64(n)
			r.state = stCols
			if caps&(capMariaCacheMetadata|capOptionalMetadata) != 0 && len(rest) == 1 && rest[0] == 0 {
				// No column definitions follow: the client has them
				// already (MariaDB) or asked for none (MySQL).
				r.cols = 0
				r.state = stRows
			}
		}
	case stCols:
		r.cols--
		if r.cols <= 0 {
			r.state = stColEOF
			if deprecate {
				r.state = stRows
			}
		}
	case stColEOF:
		if b[0] != 0xfe || len(b) >= 9 {
			return errorf("packet 0x%02x where EOF after column definitions", b[0])
		}
		_, status := eofStatus(b)
		if status&statusCursorExists != 0 {
			// Rows come with COM_STMT_FETCH.
			return p.endResult(e, total, status)
		}
		r.state = stRows
	case stRows:
		if isEnd {
			var status uint16
			if deprecate {
				_, status = okStatus(b)
			} else {
				_, status = eofStatus(b)
			}
			h.counted = true
			return p.endResult(e, total, status)
		}
		h.rows++
	}
	e.plain(total)
	return nil
}

// endResult ends one result; the answer goes on when more results exist.
func (p *Parser) endResult(e *emitter, total int, status uint16) error {
	if status&statusMoreResults != 0 {
		p.r = answer{}
		e.plain(total)
		return nil
	}
	p.complete(e, total)
	return nil
}

// prepare follows the answer to COM_STMT_PREPARE.
func (p *Parser) prepare(e *emitter, total int, h *pending, b []byte, deprecate bool) error {
	r := &p.r
	switch r.state {
	case stFirst:
		if b[0] != 0x00 || len(b) < 12 {
			return errorf("prepare answer 0x%02x", b[0])
		}
		id := binary.LittleEndian.Uint32(b[1:])
		r.cols = int64(binary.LittleEndian.Uint16(b[5:]))
		r.params = int64(binary.LittleEndian.Uint16(b[7:]))
		p.remember(id, h.stmt)
		if r.params > 0 {
			r.state, r.eofAfter = stParams, !deprecate
		} else if r.cols > 0 {
			r.state, r.eofAfter = stCols, !deprecate
		} else {
			p.complete(e, total)
			return nil
		}
	case stParams, stCols:
		left := &r.params
		if r.state == stCols {
			left = &r.cols
		}
		if *left > 0 {
			*left--
			if *left > 0 || r.eofAfter {
				break
			}
		} else {
			if b[0] != 0xfe || len(b) >= 9 {
				return errorf("packet 0x%02x where EOF after definitions", b[0])
			}
		}
		// This packet ends the definitions.
		if r.state == stParams && r.cols > 0 {
			r.state, r.eofAfter = stCols, !deprecate
			break
		}
		p.complete(e, total)
		return nil
	}
	e.plain(total)
	return nil
}

// remember keeps a prepared statement's text under the server's id; the
// cache holds at most l7.MaxBuffer bytes of text.
func (p *Parser) remember(id uint32, st stmt) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stmtBytes -= len(p.stmts[id].text)
	for k, old := range p.stmts {
		if p.stmtBytes+len(st.text) <= l7.MaxBuffer && len(p.stmts) < 4096 {
			break
		}
		p.stmtBytes -= len(old.text)
		delete(p.stmts, k)
	}
	p.stmts[id] = st
	p.stmtBytes += len(st.text)
}

// serverLarge classifies a server packet too large to hold: a row or a
// column definition.
func (p *Parser) serverLarge(head []byte, n int64) error {
	h, _ := p.head()
	if h == nil {
		return errorf("unsolicited server packet of %d bytes", n)
	}
	r := &p.r
	switch {
	case h.kind == ansFetch || h.kind == ansResult && r.state == stRows:
		h.rows++
	case h.kind == ansFieldList:
	case h.kind == ansResult && r.state == stCols && r.cols > 1:
		r.cols--
	default:
		return errorf("server packet 0x%02x of %d bytes", head[0], n)
	}
	return nil
}

// errPacket records an ERR packet's contents on h.
func (p *Parser) errPacket(h *pending, b []byte) {
	if len(b) < 3 {
		h.err = "error"
		return
	}
	h.errno = binary.LittleEndian.Uint16(b[1:])
	msg := b[3:]
	if len(msg) >= 6 && msg[0] == '#' {
		h.sqlstate = sql.Truncate(string(msg[1:6]), 5)
		msg = msg[6:]
	}
	h.err = sql.Truncate(string(msg), l7.MaxText)
	if h.err == "" {
		h.err = "error"
	}
}

// complete ends the oldest outstanding command on this packet.
func (p *Parser) complete(e *emitter, total int) {
	p.mu.Lock()
	var h *pending
	if len(p.pending) > 0 {
		h = p.pending[0]
		p.pending = p.pending[1:]
		if h.login && h.err != "" {
			p.ph = phClosed
		}
	}
	p.mu.Unlock()
	p.r = answer{}
	if h == nil || h.req == nil {
		e.plain(total)
		return
	}
	resp := &l7.Response{Status: "ok", Bytes: h.bytes, Time: p.now(), Attrs: map[string]string{}}
	if h.err != "" {
		resp.Status, resp.Error = "error", h.err
		resp.Attrs["errno"] = fmt.Sprint(h.errno)
		if h.sqlstate != "" {
			resp.Attrs["sqlstate"] = h.sqlstate
		}
	} else if h.counted {
		resp.Attrs["rows"] = fmt.Sprint(h.rows)
	} else if h.kind == ansResult {
		resp.Attrs["affected_rows"] = fmt.Sprint(h.affected)
	}
	if len(resp.Attrs) == 0 {
		resp.Attrs = nil
	}
	e.response(total, resp)
}

// okStatus reads the affected rows and status flags of an OK packet.
func okStatus(b []byte) (int64, uint16) {
	n, rest, ok := lenenc(b[1:])
	if !ok {
		return 0, 0
	}
	if _, rest, ok = lenenc(rest); !ok || len(rest) < 2 {
		return int64(n), 0
	}
	return int64(n), binary.LittleEndian.Uint16(rest)
}

// eofStatus reads the warnings and status flags of an EOF packet.
func eofStatus(b []byte) (uint16, uint16) {
	if len(b) < 5 {
		return 0, 0
	}
	return binary.LittleEndian.Uint16(b[1:]), binary.LittleEndian.Uint16(b[3:])
}
