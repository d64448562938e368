package postgres

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/sql"
)

// backendTypes are the message types a server may send.
const backendTypes = "RKSZCTDIEeNAGHWdcn123stVv"

func (p *Parser) parseServer(e *emitter, b []byte) error {
	s := &p.s
	if s.skip > 0 {
		n := int(min(s.skip, int64(len(b))))
		s.skip -= int64(n)
		p.account(int64(n))
		e.plain(n)
	}
	p.mu.Lock()
	asked := p.sslAsked
	p.mu.Unlock()
	if asked != 0 && e.off < len(b) {
		switch c := b[e.off]; {
		case c == asked:
			p.mu.Lock()
			p.encrypted, p.sslAsked = true, 0
			p.mu.Unlock()
			e.plain(len(b) - e.off)
			return nil
		case c == 'N':
			p.mu.Lock()
			p.sslAsked = 0
			p.mu.Unlock()
			e.plain(1)
		case c == 'E':
			// A server too old for the request answers with an error.
			p.mu.Lock()
			p.sslAsked = 0
			p.mu.Unlock()
		default:
			return errorf("answer %q to an encryption request", c)
		}
	}
	for e.off < len(b) {
		rest := b[e.off:]
		if len(rest) < 5 {
			return nil
		}
		t := rest[0]
		n := int64(binary.BigEndian.Uint32(rest[1:]))
		if strings.IndexByte(backendTypes, t) < 0 {
			return errorf("unknown backend message type %q", t)
		}
		if n < 4 || n > maxMsgLen {
			return errorf("message %q of length %d", t, n)
		}
		total := 1 + n
		if int64(len(rest)) < total {
			switch t {
			case 'R', 'K', 'S', 'Z', 'C', 'E':
				if total <= l7.MaxBuffer {
					return nil // wait for the rest
				}
				if t != 'E' && t != 'C' {
					return errorf("message %q of length %d", t, n)
				}
				if t == 'E' {
					p.noteError("", "error response too large to read")
				}
			}
			p.account(total)
			s.skip = total - int64(len(rest))
			e.plain(len(rest))
			return nil
		}
		body := rest[5:total]
		p.account(total)
		switch t {
		case 'Z':
			if len(body) != 1 {
				return errorf("ReadyForQuery of length %d", n)
			}
			p.ready(e, int(total), body[0])
			continue
		case 'C':
			tag, _, ok := cstr(body)
			if !ok {
				return errorf("CommandComplete without terminator")
			}
			p.mu.Lock()
			if h := p.target(); h != nil {
				h.done++
				h.tag = sql.Truncate(tag, 64)
				if r, ok := rowsOf(tag); ok {
					h.rows += r
					h.counted = true
				}
			}
			p.mu.Unlock()
		case 'E':
			f, err := fields(body)
			if err != nil {
				return err
			}
			sev := f['V']
			if sev == "" {
				sev = f['S']
			}
			p.noteError(f['C'], f['M'])
			if sev == "FATAL" || sev == "PANIC" {
				// No ReadyForQuery follows a fatal error.
				p.complete(e, int(total), false)
				continue
			}
		case 'I', 's':
			p.mu.Lock()
			if h := p.target(); h != nil {
				h.done++
			}
			p.mu.Unlock()
		case 'R':
			if len(body) < 4 {
				return errorf("Authentication message of length %d", n)
			}
		}
		e.plain(int(total))
	}
	return nil
}

// account adds server bytes to the oldest outstanding request.
func (p *Parser) account(n int64) {
	p.mu.Lock()
	if h := p.target(); h != nil {
		h.bytes += n
	}
	p.mu.Unlock()
}

// target is the outstanding item the server is answering: the oldest,
// unless it is a batch whose Executes are all answered and a batch joined
// to it is next. p.mu must be held.
func (p *Parser) target() *pending {
	for i, h := range p.pending {
		if h.execs == 0 || h.done < h.execs || !h.joined || i == len(p.pending)-1 {
			return h
		}
	}
	return nil
}

func (p *Parser) noteError(code, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.target()
	if h == nil || h.err != "" {
		return
	}
	h.done = h.execs // the server skips the rest of the batch
	h.err = sql.Truncate(msg, l7.MaxText)
	if h.err == "" {
		h.err = "error"
	}
	h.code = sql.Truncate(code, 5)
}

// fields reads the fields of an ErrorResponse or NoticeResponse.
func fields(body []byte) (map[byte]string, error) {
	f := map[byte]string{}
	for len(body) > 0 && body[0] != 0 {
		t := body[0]
		v, rest, ok := cstr(body[1:])
		if !ok {
			return nil, errorf("error field %q without terminator", t)
		}
		switch t {
		case 'S', 'V', 'C', 'M':
			f[t] = v
		}
		body = rest
	}
	if len(body) != 1 {
		return nil, errorf("error fields not terminated")
	}
	return f, nil
}

// ready handles ReadyForQuery: it ends the oldest outstanding item and
// those joined to it.
func (p *Parser) ready(e *emitter, n int, status byte) {
	p.mu.Lock()
	p.txStatus = status
	p.mu.Unlock()
	p.complete(e, n, true)
}

// complete ends the oldest outstanding item (and the ones joined to it when
// all is true), emitting a Response for each audited one; the last one
// rides on the n bytes of the message that ended them.
func (p *Parser) complete(e *emitter, n int, all bool) {
	p.mu.Lock()
	var done []*pending
	for len(p.pending) > 0 {
		h := p.pending[0]
		if h.more > 0 {
			h.more-- // one of the merged plain items
			break
		}
		p.pending = p.pending[1:]
		done = append(done, h)
		if !all || !h.joined {
			break
		}
	}
	p.mu.Unlock()
	var rs []*l7.Response
	for _, h := range done {
		if h.req == nil {
			continue
		}
		r := &l7.Response{Status: "ok", Bytes: h.bytes, Time: p.now()}
		if h.err != "" {
			r.Status, r.Error = "error", h.err
		}
		attrs := map[string]string{}
		if h.tag != "" {
			attrs["tag"] = h.tag
		}
		if h.counted {
			attrs["rows"] = fmt.Sprint(h.rows)
		}
		if h.code != "" {
			attrs["sqlstate"] = h.code
		}
		if len(attrs) > 0 {
			r.Attrs = attrs
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		e.plain(n)
		return
	}
	for _, r := range rs[:len(rs)-1] {
		e.response(0, r)
	}
	e.response(n, rs[len(rs)-1])
}
