// Package tls follows the start of a TLS connection: it reads the
// ClientHello for the server name (SNI), the ALPN protocols and the highest
// version offered, and treats everything after it as opaque. It never
// decrypts anything.
package tls

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Record content types and handshake message types (RFC 8446, section 5.1
// and 4).
const (
	recordHeaderLen = 5
	typeAlert       = 21
	typeHandshake   = 22
	hsClientHello   = 1
	hsServerHello   = 2
	// maxRecord is the largest plaintext record (2^14) plus the expansion
	// TLS 1.2 allows for compressed records; anything above is not TLS.
	maxRecord = 1<<14 + 2048
)

// Alert descriptions used by Deny (RFC 8446, section 6).
const (
	alertAccessDenied = 49
)

// Parser follows one TLS connection. The zero value is not usable; call New.
type Parser struct {
	// now stamps responses; a field so tests can fix the clock.
	now func() time.Time

	mu       sync.Mutex
	hello    bool        // the ClientHello went by: the session is opaque
	pending  *l7.Request // the ClientHello, until the server answers it
	answered bool        // the server's first record was seen
}

// New returns a parser for one connection. TLS has nothing to redact in
// the ClientHello, so the options are accepted for symmetry only.
func New(l7.Options) *Parser { return &Parser{now: time.Now} }

// Parse implements l7.Parser.
func (p *Parser) Parse(d l7.Dir, b []byte) ([]l7.Message, error) {
	if d == l7.FromServer {
		return p.parseServer(b)
	}
	p.mu.Lock()
	done := p.hello
	p.mu.Unlock()
	if done {
		return opaque(b), nil
	}
	n, req, err := clientHello(b)
	if err != nil || req == nil {
		return nil, err
	}
	p.mu.Lock()
	p.hello = true
	p.pending = req
	p.mu.Unlock()
	msgs := []l7.Message{{Len: n, Request: req}}
	return append(msgs, opaque(b[n:])...), nil
}

func opaque(b []byte) []l7.Message {
	if len(b) == 0 {
		return nil
	}
	return []l7.Message{{Len: len(b)}}
}

// parseServer answers the ClientHello with the server's first record (a
// ServerHello or an alert) and passes everything else through.
func (p *Parser) parseServer(b []byte) ([]l7.Message, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.answered {
		return opaque(b), nil
	}
	if !p.hello {
		return nil, fmt.Errorf("tls: server spoke before the ClientHello: %w", l7.ErrProtocol)
	}
	if len(b) < recordHeaderLen+2 {
		return nil, nil
	}
	resp := &l7.Response{Status: "ok", Time: p.now()}
	switch {
	case b[0] == typeHandshake && b[1] == 3 && b[5] == hsServerHello:
	case b[0] == typeAlert && b[1] == 3:
		resp.Status = "error"
		resp.Error = "alert " + alertName(b[6])
	default:
		return nil, fmt.Errorf("tls: server's first record is not a ServerHello or an alert: %w", l7.ErrProtocol)
	}
	p.answered = true
	if p.pending == nil {
		// The ClientHello was denied; nothing waits for an answer.
		return opaque(b), nil
	}
	p.pending = nil
	return []l7.Message{{Len: len(b), Response: resp}}, nil
}

// clientHello finds a complete ClientHello at the start of b, which may
// span several handshake records. It returns the length of the records
// that carry it and the request, or a nil request if more bytes are
// needed.
func clientHello(b []byte) (int, *l7.Request, error) {
	var hs []byte // handshake bytes from the records seen so far
	off := 0
	for {
		if len(b)-off < recordHeaderLen {
			return 0, nil, need(len(b))
		}
		h := b[off : off+recordHeaderLen]
		if h[0] != typeHandshake || h[1] != 3 {
			return 0, nil, fmt.Errorf("tls: record type %d version %d.%d is not a handshake: %w", h[0], h[1], h[2], l7.ErrProtocol)
		}
		n := int(binary.BigEndian.Uint16(h[3:5]))
		if n == 0 || n > maxRecord {
			return 0, nil, fmt.Errorf("tls: record length %d: %w", n, l7.ErrProtocol)
		}
		end := off + recordHeaderLen + n
		if end > len(b) {
			return 0, nil, need(len(b))
		}
		frag := b[off+recordHeaderLen : end]
		if hs == nil {
			hs = frag // the common case: one record, no copy
		} else {
			hs = append(append([]byte(nil), hs...), frag...)
		}
		off = end
		if len(hs) < 4 {
			continue
		}
		if hs[0] != hsClientHello {
			return 0, nil, fmt.Errorf("tls: first handshake message is type %d, not a ClientHello: %w", hs[0], l7.ErrProtocol)
		}
		body := int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3])
		if body > l7.MaxBuffer {
			return 0, nil, fmt.Errorf("tls: ClientHello of %d bytes: %w", body, l7.ErrTooLarge)
		}
		if len(hs) < 4+body {
			continue
		}
		req, err := parseHello(hs[4 : 4+body])
		if err != nil {
			return 0, nil, err
		}
		return off, req, nil
	}
}

// need reports ErrTooLarge when the proxy's buffer is full and no
// ClientHello fits, and nil (wait for more) otherwise.
func need(n int) error {
	if n >= l7.MaxBuffer {
		return fmt.Errorf("tls: no ClientHello in %d bytes: %w", n, l7.ErrTooLarge)
	}
	return nil
}

// parseHello decodes a ClientHello body (RFC 8446, section 4.1.2).
func parseHello(body []byte) (*l7.Request, error) {
	s := cryptobyte.String(body)
	var (
		legacy                         uint16
		random, session, suites, compr cryptobyte.String
		exts                           cryptobyte.String
	)
	if !s.ReadUint16(&legacy) || !s.ReadBytes((*[]byte)(&random), 32) ||
		!s.ReadUint8LengthPrefixed(&session) || !s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&compr) {
		return nil, fmt.Errorf("tls: malformed ClientHello: %w", l7.ErrProtocol)
	}
	best := legacy
	var sni string
	var alpn []string
	attrs := map[string]string{}
	if !s.Empty() {
		if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
			return nil, fmt.Errorf("tls: malformed ClientHello extensions: %w", l7.ErrProtocol)
		}
		for !exts.Empty() {
			var typ uint16
			var data cryptobyte.String
			if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
				return nil, fmt.Errorf("tls: malformed ClientHello extension: %w", l7.ErrProtocol)
			}
			var ok bool
			switch typ {
			case 0: // server_name
				sni, ok = serverName(data)
			case 16: // application_layer_protocol_negotiation
				alpn, ok = protocols(data)
			case 43: // supported_versions
				var v uint16
				if v, ok = versions(data); v != 0 {
					best = v
				}
			case 0xfe0d: // encrypted_client_hello: the SNI above is the outer one
				attrs["ech"] = "true"
				ok = true
			default:
				ok = true
			}
			if !ok {
				return nil, fmt.Errorf("tls: malformed ClientHello extension %d: %w", typ, l7.ErrProtocol)
			}
		}
	}
	attrs["version"] = versionName(best)
	if len(alpn) > 0 {
		attrs["alpn"] = clip(strings.Join(alpn, ","))
	}
	sni = clip(sni)
	text := "client_hello"
	if sni != "" {
		text += " " + sni
	}
	return &l7.Request{Protocol: "tls", Kind: "client_hello", Text: text, Target: sni, Attrs: attrs}, nil
}

func serverName(data cryptobyte.String) (string, bool) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() {
		return "", false
	}
	var name string
	for !list.Empty() {
		var typ uint8
		var host cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&host) {
			return "", false
		}
		if typ == 0 && name == "" {
			name = strings.ToValidUTF8(string(host), "\uFFFD")
		}
	}
	return name, true
}

func protocols(data cryptobyte.String) ([]string, bool) {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() {
		return nil, false
	}
	var out []string
	for !list.Empty() {
		var proto cryptobyte.String
		if !list.ReadUint8LengthPrefixed(&proto) {
			return nil, false
		}
		out = append(out, strings.ToValidUTF8(string(proto), "\uFFFD"))
	}
	return out, true
}

// versions returns the highest version in a supported_versions list,
// ignoring GREASE values (RFC 8701).
func versions(data cryptobyte.String) (uint16, bool) {
	var list cryptobyte.String
	if !data.ReadUint8LengthPrefixed(&list) || !data.Empty() {
		return 0, false
	}
	var best uint16
	for !list.Empty() {
		var v uint16
		if !list.ReadUint16(&v) {
			return 0, false
		}
		if v&0x0f0f == 0x0a0a && v>>8 == v&0xff {
			continue
		}
		best = max(best, v)
	}
	return best, true
}

func versionName(v uint16) string {
	switch v {
	case 0x0300:
		return "SSL3.0"
	case 0x0301:
		return "TLS1.0"
	case 0x0302:
		return "TLS1.1"
	case 0x0303:
		return "TLS1.2"
	case 0x0304:
		return "TLS1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

func alertName(d byte) string {
	switch d {
	case 0:
		return "close_notify"
	case 40:
		return "handshake_failure"
	case 42:
		return "bad_certificate"
	case 48:
		return "unknown_ca"
	case 49:
		return "access_denied"
	case 70:
		return "protocol_version"
	case 71:
		return "insufficient_security"
	case 80:
		return "internal_error"
	case 112:
		return "unrecognized_name"
	case 120:
		return "no_application_protocol"
	}
	return fmt.Sprintf("%d", d)
}

// clip bounds s to l7.MaxText bytes without splitting a UTF-8 sequence.
func clip(s string) string {
	if len(s) <= l7.MaxText {
		return s
	}
	return strings.ToValidUTF8(s[:l7.MaxText], "")
}

// Deny implements l7.Parser: a fatal access_denied alert in a plaintext
// record, which every TLS client reports as the server refusing the
// handshake. The server never sees the ClientHello.
func (p *Parser) Deny(req *l7.Request, _ string) []byte {
	p.mu.Lock()
	if p.pending == req {
		p.pending = nil
	}
	p.mu.Unlock()
	return []byte{typeAlert, 3, 3, 0, 2, 2, alertAccessDenied}
}

// Encrypted implements l7.Parser: true once the ClientHello went by.
func (p *Parser) Encrypted() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hello
}

var _ l7.Parser = (*Parser)(nil)
