package mysql

import (
	"encoding/binary"
	"fmt"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/sql"
)

func (p *Parser) phase() phase {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ph
}

// clientPacket handles one complete client packet. switched reports that
// the handshake turned on TLS or compression: the rest is not parsed.
func (p *Parser) clientPacket(e *emitter, total int, seq byte, b []byte) (switched bool, err error) {
	switch p.phase() {
	case phGreeting:
		return false, errorf("client sent %d bytes before the server's greeting", total)
	case phHandshake:
		if err := p.handshake(e, total, seq, b); err != nil {
			return false, err
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.encrypted || p.compressed, nil
	case phAuth, phClosed:
		e.plain(total) // authentication data, or bytes the server will refuse
		return false, nil
	}
	return false, p.command(e, total, seq, b)
}

// command handles a client packet of the command phase.
func (p *Parser) command(e *emitter, total int, seq byte, b []byte) error {
	if seq != 0 {
		// LOCAL INFILE data, or authentication data after
		// COM_CHANGE_USER.
		e.plain(total)
		return nil
	}
	if len(b) == 0 {
		return errorf("empty command packet")
	}
	body := b[1:]
	switch cmd := b[0]; cmd {
	case comQuery:
		p.mu.Lock()
		qattrs := p.caps&capQueryAttributes != 0
		p.mu.Unlock()
		if qattrs {
			// Query attributes lead the text (MySQL 8.0.23+).
			rest, ok := skipQueryAttributes(body)
			if !ok {
				return errorf("COM_QUERY attributes")
			}
			body = rest
		}
		st := p.statement(string(body))
		r := p.newRequest(st.info.Kind(), st.text)
		sqlAttrs(r, st.info)
		p.push(&pending{req: r, kind: ansResult, seq: seq})
		e.request(total, r)
	case comInitDB:
		db := sql.Truncate(string(body), 256)
		r := p.newRequest("USE", "USE "+db)
		r.Target = db
		p.push(&pending{req: r, kind: ansSimple, seq: seq, schema: db})
		e.request(total, r)
	case comStmtPrepare:
		p.push(&pending{kind: ansPrepare, seq: seq, stmt: p.statement(string(body))})
		e.plain(total)
	case comStmtExecute, comStmtBulkExecute:
		if len(body) < 4 {
			return errorf("COM_STMT_EXECUTE without statement id")
		}
		r := p.execRequest(binary.LittleEndian.Uint32(body))
		p.push(&pending{req: r, kind: ansResult, seq: seq})
		e.request(total, r)
	case comStmtClose:
		if len(body) < 4 {
			return errorf("COM_STMT_CLOSE without statement id")
		}
		p.mu.Lock()
		id := binary.LittleEndian.Uint32(body)
		p.stmtBytes -= len(p.stmts[id].text)
		delete(p.stmts, id)
		p.mu.Unlock()
		e.plain(total)
	case comStmtSendLongData, comQuit:
		e.plain(total) // no answer
	case comChangeUser:
		user, _, ok := cstr(body)
		if !ok {
			return errorf("COM_CHANGE_USER without user")
		}
		r := p.newRequest("CHANGE_USER", "")
		r.Attrs["user"] = sql.Truncate(user, 256)
		p.push(&pending{req: r, kind: ansAuth, seq: seq, user: r.Attrs["user"]})
		e.request(total, r)
	case comBinlogDump, comBinlogDumpGTID:
		return errorf("replication stream is not parsed")
	case comFieldList:
		p.push(&pending{kind: ansFieldList, seq: seq})
		e.plain(total)
	case comStatistics:
		p.push(&pending{kind: ansOne, seq: seq})
		e.plain(total)
	case comProcessInfo:
		p.push(&pending{kind: ansResult, seq: seq})
		e.plain(total)
	case comStmtFetch:
		p.push(&pending{kind: ansFetch, seq: seq})
		e.plain(total)
	default:
		if cmd > 0x1f {
			return errorf("unknown command 0x%02x", cmd)
		}
		// Ping, reset, set option, kill, ...: one OK, EOF or ERR.
		p.push(&pending{kind: ansSimple, seq: seq})
		e.plain(total)
	}
	return nil
}

// execRequest builds the request for executing a prepared statement.
func (p *Parser) execRequest(id uint32) *l7.Request {
	p.mu.Lock()
	st, ok := p.stmts[id]
	p.mu.Unlock()
	if !ok {
		st = stmt{info: sql.Info{Statements: []sql.Statement{{Kind: "UNKNOWN"}}}}
	}
	r := p.newRequest(st.info.Kind(), st.text)
	sqlAttrs(r, st.info)
	r.Attrs["statement_id"] = fmt.Sprint(id)
	return r
}

// clientLarge classifies a packet too large to hold from its first bytes.
func (p *Parser) clientLarge(seq byte, head []byte, n int64) (*l7.Request, error) {
	ph := p.phase()
	if ph == phAuth || ph == phClosed || (ph == phCommand && seq != 0) {
		return nil, nil
	}
	if ph != phCommand {
		return nil, fmt.Errorf("mysql: handshake packet of %d bytes: %w", n, l7.ErrTooLarge)
	}
	switch head[0] {
	case comStmtSendLongData:
		return nil, nil
	case comStmtExecute, comStmtBulkExecute:
		// Parameter values stream through; the request rides on the
		// packet's last piece, so a deny keeps all of it from the server.
		r := p.execRequest(binary.LittleEndian.Uint32(head[1:]))
		p.push(&pending{req: r, kind: ansResult, seq: seq, partial: true})
		return r, nil
	}
	return nil, fmt.Errorf("mysql: command 0x%02x of %d bytes: %w", head[0], n, l7.ErrTooLarge)
}

// handshake reads the client's handshake response, or its SSL request.
func (p *Parser) handshake(e *emitter, total int, seq byte, b []byte) error {
	if len(b) < 32 {
		return errorf("handshake response of %d bytes", len(b))
	}
	caps := uint64(binary.LittleEndian.Uint32(b))
	if caps&capProtocol41 == 0 {
		return errorf("pre-4.1 handshake is not supported")
	}
	p.mu.Lock()
	if p.serverCaps&capMySQL == 0 {
		// MariaDB: extended capabilities in the last 4 filler bytes.
		caps |= uint64(binary.LittleEndian.Uint32(b[28:])) << 32
	}
	p.caps = caps & p.serverCaps
	negotiated := p.caps
	p.mu.Unlock()
	if len(b) == 32 {
		if caps&capSSL == 0 {
			return errorf("short handshake response without SSL")
		}
		p.mu.Lock()
		p.encrypted = true
		p.mu.Unlock()
		e.plain(total)
		return nil
	}
	rest := b[32:]
	user, rest, ok := cstr(rest)
	if !ok {
		return errorf("handshake response without user")
	}
	switch {
	case caps&capPluginAuthLenenc != 0:
		var n uint64
		n, rest, ok = lenenc(rest)
		if !ok || n > uint64(len(rest)) {
			return errorf("handshake auth response")
		}
		rest = rest[n:]
	case caps&capSecureConnection != 0:
		if len(rest) < 1 || int(rest[0]) > len(rest)-1 {
			return errorf("handshake auth response")
		}
		rest = rest[1+int(rest[0]):]
	default:
		if _, rest, ok = cstr(rest); !ok {
			return errorf("handshake auth response")
		}
	}
	attrs := map[string]string{"user": sql.Truncate(user, 256)}
	var plugin string
	if caps&capConnectWithDB != 0 && len(rest) > 0 {
		var db string
		if db, rest, ok = cstr(rest); !ok {
			return errorf("handshake schema")
		}
		if db != "" {
			attrs["database"] = sql.Truncate(db, 256)
		}
	}
	if caps&capPluginAuth != 0 && len(rest) > 0 {
		plugin, rest, ok = cstr(rest)
	}
	if caps&capConnectAttrs != 0 && ok && len(rest) > 0 {
		connectAttrs(attrs, rest)
	}
	p.mu.Lock()
	p.session = attrs
	p.ph = phAuth
	if negotiated&capCompress != 0 {
		p.compressed = true
	}
	version := p.version
	p.mu.Unlock()
	r := p.newRequest("STARTUP", "")
	if version != "" {
		r.Attrs["server_version"] = version
	}
	if plugin != "" {
		r.Attrs["auth_plugin"] = sql.Truncate(plugin, 64)
	}
	p.push(&pending{req: r, kind: ansAuth, seq: seq, login: true})
	e.request(total, r)
	return nil
}

// connectAttrs picks the program name from the connection attributes.
func connectAttrs(attrs map[string]string, b []byte) {
	n, b, ok := lenenc(b)
	if !ok || n > uint64(len(b)) {
		return
	}
	b = b[:n]
	for len(b) > 0 {
		var k, v uint64
		if k, b, ok = lenenc(b); !ok || k > uint64(len(b)) {
			return
		}
		key := string(b[:k])
		b = b[k:]
		if v, b, ok = lenenc(b); !ok || v > uint64(len(b)) {
			return
		}
		if key == "program_name" {
			attrs["application_name"] = sql.Truncate(string(b[:v]), 256)
		}
		b = b[v:]
	}
}

// skipQueryAttributes returns the text of a COM_QUERY sent with
// CLIENT_QUERY_ATTRIBUTES: a parameter count, a parameter set count (1),
// and for each attribute a type, a name and a value in binary form.
func skipQueryAttributes(b []byte) ([]byte, bool) {
	n, b, ok := lenenc(b)
	if !ok {
		return nil, false
	}
	if _, b, ok = lenenc(b); !ok {
		return nil, false
	}
	if n == 0 {
		return b, true
	}
	if n > 1<<16 {
		return nil, false
	}
	nullMap := int(n+7) / 8
	if len(b) < nullMap+1 || b[nullMap] != 1 {
		return nil, false // values without types cannot be skipped
	}
	nulls := b[:nullMap]
	b = b[nullMap+1:]
	types := make([]byte, n)
	for i := range types {
		if len(b) < 2 {
			return nil, false
		}
		types[i] = b[0]
		var name uint64
		if name, b, ok = lenenc(b[2:]); !ok || name > uint64(len(b)) {
			return nil, false
		}
		b = b[name:]
	}
	for i, t := range types {
		if nulls[i/8]&(1<<(i%8)) != 0 {
			continue
		}
		var size uint64
		switch t {
		case 1: // TINY
			size = 1
		case 2, 13: // SHORT, YEAR
			size = 2
		case 3, 4, 9: // LONG, FLOAT, INT24
			size = 4
		case 5, 8: // DOUBLE, LONGLONG
			size = 8
		case 6: // NULL
		case 7, 10, 11, 12: // TIMESTAMP, DATE, TIME, DATETIME: 1-byte length
			if len(b) < 1 {
				return nil, false
			}
			size = 1 + uint64(b[0])
		default: // strings, decimals, blobs, JSON: length-encoded
			l, rest, ok := lenenc(b)
			if !ok {
				return nil, false
			}
			size = l + uint64(len(b)-len(rest))
		}
		if size > uint64(len(b)) {
			return nil, false
		}
		b = b[size:]
	}
	return b, true
}
