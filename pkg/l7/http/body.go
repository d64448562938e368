package http

import (
	"bytes"
	"fmt"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// How a message body ends (RFC 9112, section 6).
type bodyMode uint8

const (
	bodyNone    bodyMode = iota // no body, or the body is done
	bodyLength                  // Content-Length bytes
	bodyChunked                 // chunked transfer coding
	bodyClose                   // until the connection closes (responses only)
)

// Where a chunked body is.
type chunkState uint8

const (
	chunkSize    chunkState = iota // a chunk-size line is due
	chunkData                      // chunk payload
	chunkDataEnd                   // the CRLF after a chunk's payload
	chunkTrailer                   // trailer lines, ended by an empty line
)

// maxChunkLine bounds a chunk-size line with its extensions, and a trailer
// line; real peers send a few bytes.
const maxChunkLine = 4096

// body streams one message body, holding no payload.
type body struct {
	mode  bodyMode
	left  int64 // payload bytes left: of the body (length) or of the chunk
	state chunkState
	total int64 // payload bytes seen
}

func (b *body) active() bool { return b.mode != bodyNone }

// advance consumes what it can of p and reports whether the body ended.
func (b *body) advance(p []byte) (int, bool, error) {
	switch b.mode {
	case bodyNone:
		return 0, true, nil
	case bodyClose:
		b.total += int64(len(p))
		return len(p), false, nil
	case bodyLength:
		k := min(int64(len(p)), b.left)
		b.left -= k
		b.total += k
		if b.left == 0 {
			b.mode = bodyNone
			return int(k), true, nil
		}
		return int(k), false, nil
	}
	n := 0
	for {
		switch b.state {
		case chunkData:
			k := min(int64(len(p)-n), b.left)
			n += int(k)
			b.left -= k
			b.total += k
			if b.left > 0 {
				return n, false, nil
			}
			b.state = chunkDataEnd
		case chunkDataEnd:
			if len(p)-n < 2 {
				if len(p) > n && p[n] != '\r' {
					return n, false, fmt.Errorf("http: chunk not followed by CRLF: %w", l7.ErrProtocol)
				}
				return n, false, nil
			}
			if p[n] != '\r' || p[n+1] != '\n' {
				return n, false, fmt.Errorf("http: chunk not followed by CRLF: %w", l7.ErrProtocol)
			}
			n += 2
			b.state = chunkSize
		case chunkSize, chunkTrailer:
			line, k, err := chunkLine(p[n:])
			if err != nil || k == 0 {
				return n, false, err
			}
			n += k
			if b.state == chunkTrailer {
				if len(line) == 0 {
					b.mode = bodyNone
					return n, true, nil
				}
				continue
			}
			size, err := chunkLen(line)
			if err != nil {
				return n, false, err
			}
			if size == 0 {
				b.state = chunkTrailer
				continue
			}
			b.left, b.state = size, chunkData
		}
	}
}

// chunkLine returns a CRLF-ended line at the start of p, or k == 0 if it
// is not all there yet.
func chunkLine(p []byte) ([]byte, int, error) {
	i := bytes.IndexByte(p[:min(len(p), maxChunkLine)], '\n')
	if i < 0 {
		if len(p) >= maxChunkLine {
			return nil, 0, fmt.Errorf("http: chunk line longer than %d bytes: %w", maxChunkLine, l7.ErrProtocol)
		}
		return nil, 0, nil
	}
	if i == 0 || p[i-1] != '\r' {
		return nil, 0, fmt.Errorf("http: chunk line not ended by CRLF: %w", l7.ErrProtocol)
	}
	return p[:i-1], i + 1, nil
}

// chunkLen parses a chunk-size line: hex digits, then optional extensions.
func chunkLen(line []byte) (int64, error) {
	var v int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, fmt.Errorf("http: chunk size too large: %w", l7.ErrProtocol)
		}
		v = v<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, fmt.Errorf("http: bad chunk size %q: %w", clipBytes(line), l7.ErrProtocol)
	}
	rest := bytes.TrimLeft(line[i:], " \t")
	if len(rest) > 0 && rest[0] != ';' {
		return 0, fmt.Errorf("http: bad chunk size %q: %w", clipBytes(line), l7.ErrProtocol)
	}
	return v, nil
}

func clipBytes(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}
