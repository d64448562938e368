// Package postgres follows the PostgreSQL frontend/backend protocol (version
// 3) of one connection for the audit log and the SQL guardrails.
//
// Requests are the startup message (user, database, application_name), each
// simple Query, each extended-protocol batch (the Parse/Bind/Execute
// messages up to a Sync or Flush that contain at least one Execute; the
// statement text comes from the Parse named by the Bind the Execute runs),
// each FunctionCall and each CancelRequest. A request completes at the
// ReadyForQuery that ends it, carrying the last command tag, the rows the
// tags counted and the first error. Parameter values are recorded only
// with Redact off.
// See docs/L7.md for the deny behaviour.
//
// The parser holds at most one extended batch, one Query or Parse message
// (each at most l7.MaxBuffer), and a bounded statement cache; COPY data,
// data rows and large Bind messages stream through in pieces.
package postgres

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-ebpf/vigil/pkg/l7"
	"github.com/vigil-ebpf/vigil/pkg/l7/sql"
)

// Protocol codes of the untyped first message.
const (
	codeSSL     = 80877103
	codeGSSENC  = 80877104
	codeCancel  = 80877102
	codeV3      = 3 << 16
	maxStartup  = 10000 // the server refuses longer startup packets
	maxMsgLen   = 1 << 30
	maxStmtText = l7.MaxBuffer // bytes of statement text the cache keeps
	maxPending  = 1 << 14      // requests waiting for the server's answer
)

// Parser follows one PostgreSQL connection. Create it with New.
type Parser struct {
	opts l7.Options
	now  func() time.Time

	c client // client direction only
	s server // server direction only

	mu        sync.Mutex // guards the fields below
	encrypted bool
	sslAsked  byte // 'S' or 'G' while the server's one-byte answer is due
	session   map[string]string
	pending   []*pending
	txStatus  byte // from the last ReadyForQuery
}

// New returns a parser for one connection.
func New(opts l7.Options) *Parser {
	return &Parser{opts: opts, now: time.Now, txStatus: 'I', session: map[string]string{}}
}

// pending is a client message the server will end with ReadyForQuery (or
// a fatal error): a Query, a batch ended by Sync, a FunctionCall, startup.
type pending struct {
	req     *l7.Request // nil when nothing is audited (a batch with no Execute)
	open    bool        // a batch ended by Flush: its Sync is still to come
	joined  bool        // ends at the same ReadyForQuery as the next one
	more    int         // further plain items merged into this one
	execs   int         // Executes in a batch; 0 for other items
	done    int         // Executes the server has answered
	startup bool
	partial bool // streamed in pieces: a deny cannot answer it cleanly
	tag     string
	rows    int64
	counted bool
	err     string
	code    string
	bytes   int64
}

type stmt struct {
	text string // redacted and truncated as it will be logged
	info sql.Info
}

type client struct {
	started  bool        // startup message seen
	canceled bool        // a CancelRequest: nothing may follow
	skip     int64       // bytes of a streamed message still to pass through
	req      *l7.Request // to emit on the last piece of the streamed message

	// The open extended batch starts at the beginning of the buffer;
	// scanned bytes of it were already taken apart.
	batch     bool
	scanned   int
	execs     []portal
	stmts     map[string]stmt
	stmtOrder []string // named statements, oldest first, for eviction
	stmtBytes int
	portals   map[string]portal
}

// portal is what a Bind created: the statement it runs, by name and text,
// and its parameter values when they are recorded.
type portal struct {
	st     stmt
	name   string
	params string
}

type server struct {
	skip int64
}

// Encrypted implements l7.Parser.
func (p *Parser) Encrypted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.encrypted
}

// Parse implements l7.Parser.
func (p *Parser) Parse(d l7.Dir, b []byte) ([]l7.Message, error) {
	if p.Encrypted() {
		if len(b) == 0 {
			return nil, nil
		}
		return []l7.Message{{Len: len(b)}}, nil
	}
	var e l7.Emitter
	var err error
	if d == l7.FromServer {
		err = p.parseServer(&e, b)
	} else {
		err = p.parseClient(&e, b)
	}
	if err != nil {
		return nil, err
	}
	return e.Messages(), nil
}

func errorf(format string, a ...any) error {
	return fmt.Errorf("postgres: %w: "+format, append([]any{l7.ErrProtocol}, a...)...)
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

func (p *Parser) newRequest(kind, text string) *l7.Request {
	p.mu.Lock()
	attrs := make(map[string]string, len(p.session)+2)
	for k, v := range p.session {
		attrs[k] = v
	}
	p.mu.Unlock()
	return &l7.Request{Protocol: "postgres", Kind: kind, Text: text, Target: attrs["database"], Attrs: attrs}
}

func (p *Parser) push(it *pending) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k := len(p.pending); k > 0 && it.plain() && p.pending[k-1].plain() {
		// Syncs with nothing audited (a driver preparing statements)
		// share one item, so they cost no memory each.
		p.pending[k-1].more++
		return
	}
	p.pending = append(p.pending, it)
}

// outstanding counts the items waiting for the server.
func (p *Parser) outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending)
}

// plain reports an item that only waits for a ReadyForQuery.
func (it *pending) plain() bool {
	return it.req == nil && !it.open && !it.joined && !it.startup && it.execs == 0
}

// statement classifies and, when the options say so, redacts SQL text.
func (p *Parser) statement(text string) stmt {
	return stmt{text: sql.Record(text, sql.Postgres, p.opts.Redact, l7.MaxText), info: sql.Classify(text, sql.Postgres)}
}

// Deny implements l7.Parser: an ErrorResponse with SQLSTATE 42501
// (insufficient_privilege) and, when the server would have sent one, a
// ReadyForQuery with the transaction status the server last reported, so
// the client can go on. A denied startup gets a FATAL error and no more.
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
	tx := p.txStatus
	p.mu.Unlock()
	if req != nil && req.Kind == "CANCEL" || it != nil && it.partial {
		return nil
	}
	sev := "ERROR"
	if it != nil && it.startup {
		sev = "FATAL"
	}
	msg := "permission denied by policy: " + reason
	out := ErrorResponse(sev, "42501", sql.Truncate(msg, l7.MaxText))
	if sev == "FATAL" || (it != nil && it.open) {
		// After a FATAL the server would close; after a batch ended by
		// Flush, the client's own Sync reaches the server, which answers
		// it with the ReadyForQuery.
		return out
	}
	return append(out, 'Z', 0, 0, 0, 5, tx)
}

// ErrorResponse encodes a backend ErrorResponse message.
func ErrorResponse(severity, code, message string) []byte {
	var body []byte
	for _, f := range []struct {
		t byte
		v string
	}{{'S', severity}, {'V', severity}, {'C', code}, {'M', message}} {
		body = append(body, f.t)
		body = append(body, f.v...)
		body = append(body, 0)
	}
	body = append(body, 0)
	out := make([]byte, 5, 5+len(body))
	out[0] = 'E'
	binary.BigEndian.PutUint32(out[1:], uint32(4+len(body)))
	return append(out, body...)
}

// rowsOf reads the row count a command tag reports ("INSERT 0 5",
// "SELECT 3", "COPY 10").
func rowsOf(tag string) (int64, bool) {
	i := strings.LastIndexByte(tag, ' ')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(tag[i+1:], 10, 64)
	return n, err == nil
}
