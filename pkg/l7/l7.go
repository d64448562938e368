// Package l7 defines what the proxy needs from a protocol parser
// (pkg/l7/<proto>): message boundaries in each direction, the requests worth
// auditing, and the protocol's own way of refusing one.
//
// The proxy owns the bytes; a parser only looks at them. For each direction
// the proxy keeps a buffer of bytes not yet forwarded, calls Parse with all of
// it, forwards (or, for a denied request, drops and answers with Deny) the
// messages Parse returns, and keeps the rest for the next call. Parsers are
// therefore never on the path of bytes they do not understand: on an error
// the proxy stops parsing that connection, records why, and relays the rest
// as plain TCP.
package l7

import (
	"errors"
	"net"
	"strings"
	"time"
)

// Dir is the direction bytes travel.
type Dir uint8

const (
	FromClient Dir = iota // client to server
	FromServer            // server to client
)

func (d Dir) String() string {
	if d == FromServer {
		return "server"
	}
	return "client"
}

// MaxBuffer caps the bytes a parser may ask the proxy to hold for one
// unfinished message. A parser that cannot make progress within it returns
// ErrTooLarge, and the proxy falls back to plain TCP for that connection.
const MaxBuffer = 64 << 10

// ErrTooLarge means a message header or request text exceeds MaxBuffer.
var ErrTooLarge = errors.New("l7: message exceeds the parse buffer")

// ErrProtocol means the bytes do not follow the protocol (garbage, or a
// protocol the detector guessed wrong).
var ErrProtocol = errors.New("l7: protocol violation")

// Message is one unit of the byte stream, in order. Len bytes starting at
// the beginning of what Parse was given belong to it. A large body may be
// returned as several Messages with no Request, so the proxy never buffers
// more than MaxBuffer. Len may be 0 for a Message that only carries a
// Response, when one server message completes several requests (a Postgres
// ReadyForQuery ending an extended-protocol batch sent in parts).
type Message struct {
	Len      int
	Request  *Request  // set on the client message that carries a request
	Response *Response // set on the server message that completes one
	// Part marks bytes that continue the request of the last message with
	// a Request in the same direction (the rest of a streamed body or
	// command): they are dropped with it if it is denied. Request-less
	// messages without Part stand alone and are forwarded either way.
	Part bool
}

// Request is one auditable thing the client asked for.
type Request struct {
	Protocol string // "postgres", "mysql", "redis", "http", "tls"
	// Kind classifies the request within its protocol: for SQL the
	// statement kind ("SELECT", "DROP", ...), for Redis the command name in
	// upper case, for HTTP the method, for TLS "client_hello".
	Kind string
	// Text is the statement, command or request line as it will be
	// logged: SQL text (literals masked when Redact), Redis command and key
	// (values masked), "GET /path". Bounded to MaxText bytes.
	Text string
	// Target is what the request addresses, when the protocol says: the
	// database, Redis key, HTTP host, TLS server name.
	Target string
	// Attrs holds protocol details (user, database, application_name,
	// alpn, sql_where=false, ...), all strings, for the audit entry.
	Attrs map[string]string
	// NoReply marks a request the server answers with silence (Redis
	// under CLIENT REPLY OFF or SKIP): no Response completes it, so the
	// proxy waits for none.
	NoReply bool
}

// Response completes the oldest outstanding request of the connection.
type Response struct {
	Status string // "ok", "error", an HTTP status code, ...
	Error  string // the server's error message, if any (bounded)
	Bytes  int64  // response payload bytes, when the protocol says
	Time   time.Time
	// Attrs holds protocol details of the outcome (command tag, rows,
	// SQLSTATE, error number), all strings; nil when there are none.
	Attrs map[string]string
}

// MaxText bounds Request.Text and Response.Error.
const MaxText = 4096

// Options configure a parser.
type Options struct {
	// Redact masks literals (SQL), values (Redis) and query strings (HTTP)
	// before they reach Request.Text. Default true via DefaultOptions.
	Redact bool
}

// DefaultOptions are what the agent uses unless the policy says otherwise.
func DefaultOptions() Options { return Options{Redact: true} }

// Parser follows one connection. It is used by one goroutine per direction
// at most one call at a time per direction; implementations keep the state of
// each direction apart and guard state shared between directions.
type Parser interface {
	// Parse consumes a prefix of p, which holds every byte of direction d
	// not consumed before, and returns the complete messages in that
	// prefix. Bytes after the last message are an unfinished message: the
	// proxy passes them again, with more appended, on the next call. If
	// len(p) reaches MaxBuffer and no message fits, Parse returns
	// ErrTooLarge. With an error, Parse may also return the complete
	// messages before the point it cannot go past: the proxy handles
	// those (checks, forwards, records them) and stops parsing there.
	Parse(d Dir, p []byte) ([]Message, error)
	// Deny returns the bytes to send the client in place of the server's
	// answer to req, in the protocol's own error form (a Postgres
	// ErrorResponse + ReadyForQuery, a MySQL ERR packet, a Redis -ERR, an
	// HTTP 403). It returns nil if the protocol has no way to refuse one
	// request and keep the connection; the proxy then closes it.
	//
	// The proxy calls Deny instead of forwarding req's message, so the
	// parser stops expecting a server reply to req. The Part messages that
	// follow req's message (the rest of a streamed body or command) belong
	// to req and are dropped too; nothing else is.
	Deny(req *Request, reason string) []byte
	// Encrypted reports that the session switched to TLS after the
	// protocol's upgrade (Postgres SSLRequest, ...): from then on Parse
	// returns whole buffers as opaque messages.
	Encrypted() bool
}

// LastDenier is a Parser whose refusal can also tell the client that the
// connection ends after it (HTTP's Connection: close). The proxy calls
// DenyLast instead of Deny for a request after which it closes the
// connection, such as an HTTP request whose Host names a destination the
// connection may not reach; a Parser without it gets Deny.
type LastDenier interface {
	DenyLast(req *Request, reason string) []byte
}

// Replacement is what the proxy sends instead of a request it would
// otherwise forward as it is (see Replacer).
type Replacement struct {
	// Send goes to the server in place of the request's message and the
	// Part messages after it.
	Send []byte
	// Answer goes to the client, in the request's turn, in place of the
	// server's reply to Send, which is consumed. nil when the server does
	// not answer (Redis CLIENT REPLY OFF): nothing is sent then.
	Answer []byte
	// Reason is recorded as the request's deny_reason: the request is
	// recorded as denied.
	Reason string
}

// Replacer is a Parser whose protocol ties a request to the denials
// before it: in a Redis transaction, a command refused while it is queued
// makes EXEC fail, as the server makes it fail when it rejects a queued
// command itself. The proxy calls Replace for each request it is about to
// forward, in the order of the client's requests, after Deny for the
// denied ones before it. nil means forward the request as it is.
//
// Send must draw exactly one reply from the server (or none, with Answer
// nil) where the request would have drawn one, so that Parse keeps pairing
// replies with requests, and Parse must return that reply as a message
// holding it alone (no push or other bytes before it), since the whole
// message is replaced by Answer.
type Replacer interface {
	Replace(req *Request) *Replacement
}

// HostKey is a host name as policy compares names: no port, no brackets,
// lower case, no final dot. The parsers and the proxy both use it, so the
// name a request is checked against is the one the policy decided on.
func HostKey(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
}
