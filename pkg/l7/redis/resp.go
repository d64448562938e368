package redis

import (
	"bytes"
	"fmt"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Bounds on what a well-formed peer sends. Redis itself caps a bulk string
// at 512 MiB by default (proto-max-bulk-len) and nests replies only a few
// levels deep.
const (
	maxBulk  = 1 << 32
	maxCount = 1<<31 - 1
	maxDepth = 64
)

// walker steps over RESP2/RESP3 values without holding them, so a reply or
// argument of any size streams through in pieces of whatever the proxy
// has. Its zero value is at the start of a value.
type walker struct {
	stack []frame // open aggregates, innermost last
	bulk  int64   // payload bytes of the current bulk string still to come
	crlf  bool    // the current bulk's payload is done; its CRLF is due
}

// frame is one open aggregate: elements left, and whether it is an
// attribute (RESP3 "|"), which precedes a value instead of being one.
type frame struct {
	left int64
	attr bool
}

// advance consumes as much of b as it can. It returns how many bytes it
// consumed and whether a whole top-level value ended there (it stops right
// after one, so the caller can mark the boundary).
func (w *walker) advance(b []byte) (int, bool, error) {
	n := 0
	for {
		if w.bulk > 0 {
			k := int64(len(b) - n)
			if k == 0 {
				return n, false, nil
			}
			k = min(k, w.bulk)
			n += int(k)
			w.bulk -= k
			if w.bulk > 0 {
				return n, false, nil
			}
			w.crlf = true
		}
		if w.crlf {
			if len(b)-n < 2 {
				return n, false, nil
			}
			if b[n] != '\r' || b[n+1] != '\n' {
				return n, false, fmt.Errorf("redis: bulk string not followed by CRLF: %w", l7.ErrProtocol)
			}
			n += 2
			w.crlf = false
			if w.elementDone() {
				return n, true, nil
			}
			continue
		}
		line, k, err := readLine(b[n:])
		if err != nil || k == 0 {
			return n, false, err
		}
		if len(line) == 0 {
			return n, false, fmt.Errorf("redis: empty type line: %w", l7.ErrProtocol)
		}
		n += k
		switch line[0] {
		case '+', '-', ':', '_', ',', '#', '(':
			// Simple values: the whole value is the line.
		case '$', '!', '=':
			size, ok := parseInt(line[1:])
			if !ok || size < -1 || size > maxBulk {
				return n, false, fmt.Errorf("redis: bad bulk length %q: %w", clipBytes(line), l7.ErrProtocol)
			}
			if size >= 0 {
				w.bulk = size
				w.crlf = size == 0
				continue
			}
		case '*', '%', '~', '>', '|':
			count, ok := parseInt(line[1:])
			if !ok || count < -1 || count > maxCount {
				return n, false, fmt.Errorf("redis: bad aggregate length %q: %w", clipBytes(line), l7.ErrProtocol)
			}
			if line[0] == '%' || line[0] == '|' {
				count *= 2
			}
			if count > 0 || line[0] == '|' {
				if len(w.stack) >= maxDepth {
					return n, false, fmt.Errorf("redis: values nested deeper than %d: %w", maxDepth, l7.ErrProtocol)
				}
				if count > 0 {
					w.stack = append(w.stack, frame{left: count, attr: line[0] == '|'})
					continue
				}
				// An empty attribute: the value it annotates follows.
				continue
			}
		default:
			return n, false, fmt.Errorf("redis: unknown type byte %q: %w", line[0], l7.ErrProtocol)
		}
		if w.elementDone() {
			return n, true, nil
		}
	}
}

// elementDone closes the aggregates the value just read completes, and
// reports whether a top-level value is now complete.
func (w *walker) elementDone() bool {
	for len(w.stack) > 0 {
		top := &w.stack[len(w.stack)-1]
		top.left--
		if top.left > 0 {
			return false
		}
		attr := top.attr
		w.stack = w.stack[:len(w.stack)-1]
		if attr {
			// An attribute annotates the next value, which is still to come.
			return false
		}
	}
	return true
}

// readLine returns the line at the start of b without its CRLF and the
// bytes it takes, or k == 0 if b holds no complete line yet.
func readLine(b []byte) (line []byte, k int, err error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		if len(b) >= l7.MaxBuffer {
			return nil, 0, fmt.Errorf("redis: line longer than %d bytes: %w", l7.MaxBuffer, l7.ErrTooLarge)
		}
		return nil, 0, nil
	}
	if i == 0 || b[i-1] != '\r' {
		return nil, 0, fmt.Errorf("redis: line not ended by CRLF: %w", l7.ErrProtocol)
	}
	return b[:i-1], i + 1, nil
}

// parseInt parses a decimal integer as RESP writes it, without allocating.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

func clipBytes(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}
