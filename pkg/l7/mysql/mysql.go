// Package mysql follows the MySQL client/server protocol (also spoken by
// MariaDB) of one connection for the audit log and the SQL guardrails.
//
// Requests are the login (user, schema, program name), COM_QUERY,
// COM_STMT_EXECUTE (and MariaDB's COM_STMT_BULK_EXECUTE) with the text of
// the statement COM_STMT_PREPARE created under the id the server's
// prepare OK assigned, COM_INIT_DB and COM_CHANGE_USER. Every command the
// server answers is tracked so responses (OK, ERR, EOF, result sets, prepare
// OK with its definitions) are framed and each request is completed by the
// packet that ends its answer. Packets larger than l7.MaxBuffer, and 16 MiB
// continuation packets, stream through in pieces; only query text must fit
// the buffer.
package mysql

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/sql"
)

// Capability flags (https://dev.mysql.com/doc/dev/mysql-server/latest/group__group__cs__capabilities__flags.html).
const (
	capMySQL              = 1 << 0 // unset by MariaDB servers, which then send extended flags
	capConnectWithDB      = 1 << 3
	capCompress           = 1 << 5
	capProtocol41         = 1 << 9
	capSSL                = 1 << 11
	capSecureConnection   = 1 << 15
	capPluginAuth         = 1 << 19
	capConnectAttrs       = 1 << 20
	capPluginAuthLenenc   = 1 << 21
	capDeprecateEOF       = 1 << 24
	capOptionalMetadata   = 1 << 25
	capQueryAttributes    = 1 << 27
	capMariaCacheMetadata = 1 << (32 + 4)
)

// Server status flags.
const (
	statusMoreResults  = 0x0008
	statusCursorExists = 0x0040
)

// Commands.
const (
	comQuit             = 0x01
	comInitDB           = 0x02
	comQuery            = 0x03
	comFieldList        = 0x04
	comStatistics       = 0x09
	comProcessInfo      = 0x0a
	comChangeUser       = 0x11
	comBinlogDump       = 0x12
	comStmtPrepare      = 0x16
	comStmtExecute      = 0x17
	comStmtSendLongData = 0x18
	comStmtClose        = 0x19
	comStmtFetch        = 0x1c
	comBinlogDumpGTID   = 0x1e
	comStmtBulkExecute  = 0xfa
)

const maxPayload = 0xffffff // a packet this long continues in the next one

// maxPending bounds the commands waiting for the server's answer: a client
// that pipelines more is not followed further.
const maxPending = 1 << 14

// phase of the connection, shared by both directions.
type phase uint8

const (
	phGreeting  phase = iota // waiting for the server's greeting
	phHandshake              // waiting for the client's handshake response
	phAuth                   // authentication exchange
	phCommand                // command phase
	phClosed                 // login failed or client quit
)

// Parser follows one MySQL connection. Create it with New.
type Parser struct {
	opts l7.Options
	now  func() time.Time

	c dir    // client direction only
	s dir    // server direction only
	r answer // server direction only: where in the answer to the oldest command

	mu         sync.Mutex // guards the fields below
	ph         phase
	encrypted  bool
	compressed bool
	serverCaps uint64
	caps       uint64 // negotiated
	version    string
	session    map[string]string
	pending    []*pending
	stmts      map[uint32]stmt
	stmtBytes  int
}

// New returns a parser for one connection.
func New(opts l7.Options) *Parser {
	return &Parser{opts: opts, now: time.Now, session: map[string]string{}, stmts: map[uint32]stmt{}}
}

// dir is the packet framing state of one direction.
type dir struct {
	skip int64       // payload bytes of the current packet still to pass
	more bool        // the logical packet continues in the next physical one
	req  *l7.Request // to emit on the last piece of a streamed packet
}

type stmt struct {
	text string
	info sql.Info
}

// answer kinds: how the server answers a command.
type answerKind uint8

const (
	ansSimple    answerKind = iota // one OK, ERR or EOF packet
	ansOne                         // one packet of any kind (COM_STATISTICS)
	ansResult                      // OK, ERR, LOCAL INFILE or result sets
	ansPrepare                     // prepare OK and its definitions, or ERR
	ansFieldList                   // column definitions up to EOF, or ERR
	ansFetch                       // rows up to EOF, or ERR
	ansAuth                        // login or COM_CHANGE_USER: auth exchange up to OK or ERR
)

type pending struct {
	req     *l7.Request
	kind    answerKind
	seq     byte   // sequence id of the last packet of the command
	partial bool   // the command was streamed: a deny cannot drop it whole
	stmt    stmt   // for a prepare
	schema  string // COM_INIT_DB: the session's schema once the server says OK
	user    string // COM_CHANGE_USER: the session's user once the server says OK
	login   bool

	rows     int64
	affected int64
	counted  bool
	bytes    int64
	err      string
	errno    uint16
	sqlstate string
}

// answer is the server's position in the answer to the oldest command.
type answer struct {
	state    uint8 // one of the st* constants
	cols     int64 // definitions still to come
	params   int64 // prepare: parameter definitions still to come
	eofAfter bool  // prepare: an EOF follows the current definitions
}

const (
	stFirst  uint8 = iota // the answer's first packet
	stCols                // column definitions
	stColEOF              // the EOF after column definitions
	stRows                // rows up to EOF/OK or ERR
	stParams              // prepare: parameter definitions
	stInfile              // LOCAL INFILE: waiting for the server's OK after the client's data
)

// Encrypted implements l7.Parser.
func (p *Parser) Encrypted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.encrypted
}

func errorf(format string, a ...any) error {
	return fmt.Errorf("mysql: %w: "+format, append([]any{l7.ErrProtocol}, a...)...)
}

// Parse implements l7.Parser.
func (p *Parser) Parse(d l7.Dir, b []byte) ([]l7.Message, error) {
	p.mu.Lock()
	enc, comp := p.encrypted, p.compressed
	p.mu.Unlock()
	if enc {
		if len(b) == 0 {
			return nil, nil
		}
		return []l7.Message{{Len: len(b)}}, nil
	}
	if comp {
		return nil, errorf("compressed protocol is not parsed")
	}
	var e l7.Emitter
	st := &p.c
	if d == l7.FromServer {
		st = &p.s
	}
	for e.Off() < len(b) {
		if d == l7.FromClient && p.outstanding() >= maxPending {
			return nil, fmt.Errorf("mysql: %d commands without an answer: %w", maxPending, l7.ErrTooLarge)
		}
		if st.skip > 0 {
			n := int(min(st.skip, int64(len(b)-e.Off())))
			st.skip -= int64(n)
			if d == l7.FromServer {
				p.account(int64(n))
			}
			if st.skip == 0 && !st.more && st.req != nil {
				e.Request(n, st.req)
				st.req = nil
			} else {
				e.Plain(n)
			}
			continue
		}
		rest := b[e.Off():]
		if len(rest) < 4 {
			break
		}
		n := int64(rest[0]) | int64(rest[1])<<8 | int64(rest[2])<<16
		seq := rest[3]
		if st.more {
			// A continuation of a streamed logical packet.
			st.more = n == maxPayload
			st.skip = n
			if n == 0 && st.req != nil {
				e.Request(4, st.req)
				st.req = nil
			} else {
				e.Plain(4)
			}
			continue
		}
		total := 4 + n
		if total > l7.MaxBuffer {
			if len(rest) < 9 {
				break
			}
			var req *l7.Request
			var err error
			if d == l7.FromServer {
				err = p.serverLarge(rest[4:9], n)
			} else {
				req, err = p.clientLarge(seq, rest[4:9], n)
			}
			if err != nil {
				return nil, err
			}
			if d == l7.FromServer {
				p.account(4)
			}
			st.more, st.skip, st.req = n == maxPayload, n, req
			e.Plain(4)
			continue
		}
		if int64(len(rest)) < total {
			break
		}
		payload := rest[4:total]
		var err error
		var switched bool
		if d == l7.FromServer {
			err = p.serverPacket(&e, int(total), seq, payload)
		} else {
			switched, err = p.clientPacket(&e, int(total), seq, payload)
		}
		if err != nil {
			return nil, err
		}
		if switched {
			// The rest is TLS (or compressed): pass it through.
			e.Plain(len(b) - e.Off())
			break
		}
	}
	return e.Messages(), nil
}

// Deny implements l7.Parser: an ERR packet (errno 1142, SQLSTATE 42000)
// with the sequence id the server's answer would have had, so the client
// reads it as the answer and goes on. A denied login gets errno 1227 and
// the client closes. A command streamed in pieces cannot be dropped whole:
// Deny returns nil and the proxy closes the connection.
func (p *Parser) Deny(req *l7.Request, reason string) []byte {
	p.mu.Lock()
	var it *pending
	for i, q := range p.pending {
		if q.req == req {
			it = q
			p.pending = append(p.pending[:i:i], p.pending[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
	seq := byte(1)
	errno := uint16(1142)
	if it != nil {
		if it.partial {
			return nil
		}
		seq = it.seq + 1
		if it.login {
			errno = 1227
		}
	}
	msg := sql.Truncate("Access denied by policy: "+reason, 512)
	return ErrPacket(seq, errno, "42000", msg)
}

// ErrPacket encodes an ERR packet with the given sequence id.
func ErrPacket(seq byte, errno uint16, sqlstate, msg string) []byte {
	n := 1 + 2 + 1 + 5 + len(msg)
	b := []byte{byte(n), byte(n >> 8), byte(n >> 16), seq, 0xff}
	b = binary.LittleEndian.AppendUint16(b, errno)
	b = append(b, '#')
	b = append(b, (sqlstate + "     ")[:5]...)
	return append(b, msg...)
}

func (p *Parser) newRequest(kind, text string) *l7.Request {
	p.mu.Lock()
	attrs := make(map[string]string, len(p.session)+2)
	for k, v := range p.session {
		attrs[k] = v
	}
	p.mu.Unlock()
	return &l7.Request{Protocol: "mysql", Kind: kind, Text: text, Target: attrs["database"], Attrs: attrs}
}

func (p *Parser) statement(text string) stmt {
	return stmt{text: sql.Record(text, sql.MySQL, p.opts.Redact, l7.MaxText), info: sql.Classify(text, sql.MySQL)}
}

// outstanding counts the commands waiting for the server.
func (p *Parser) outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

func (p *Parser) push(it *pending) {
	p.mu.Lock()
	p.pending = append(p.pending, it)
	p.mu.Unlock()
}

// lenenc reads a length-encoded integer.
func lenenc(b []byte) (uint64, []byte, bool) {
	if len(b) == 0 {
		return 0, nil, false
	}
	switch c := b[0]; {
	case c < 0xfb:
		return uint64(c), b[1:], true
	case c == 0xfc && len(b) >= 3:
		return uint64(binary.LittleEndian.Uint16(b[1:])), b[3:], true
	case c == 0xfd && len(b) >= 4:
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, b[4:], true
	case c == 0xfe && len(b) >= 9:
		return binary.LittleEndian.Uint64(b[1:]), b[9:], true
	}
	return 0, nil, false
}

// cstr splits a NUL-terminated string off b.
func cstr(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}
