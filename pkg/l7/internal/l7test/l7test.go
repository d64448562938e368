// Package l7test plays the proxy's part for parser tests: it feeds a
// parser bytes in pieces of any size, holds what the parser leaves
// unconsumed the way the proxy does (never more than l7.MaxBuffer), checks
// the contract on every call, and renders what the parser reported so two
// runs can be compared. It also records real client sessions over
// loopback for seed corpora.
package l7test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Step is bytes one side sent, in the order the connection carried them.
type Step struct {
	Dir  l7.Dir
	Data []byte
}

// Result is what a parser reported for a whole session.
type Result struct {
	// Events renders each request and response in the order the parser
	// returned them, without times.
	Events []string
	// Requests are the requests, in order.
	Requests []*l7.Request
	// Consumed counts the bytes the parser consumed per direction.
	Consumed [2]int
	// Left counts the bytes left unconsumed per direction at the end.
	Left [2]int
}

// String renders the events one per line.
func (r Result) String() string { return strings.Join(r.Events, "\n") }

// Splitter cuts one step's bytes into the pieces the proxy reads.
type Splitter func(data []byte) [][]byte

// Whole delivers each step in one read.
func Whole(data []byte) [][]byte { return [][]byte{data} }

// Bytewise delivers each step one byte at a time.
func Bytewise(data []byte) [][]byte {
	out := make([][]byte, len(data))
	for i := range data {
		out[i] = data[i : i+1]
	}
	return out
}

// SplitAt delivers each step in two reads, cut at k (or whole if shorter).
func SplitAt(k int) Splitter {
	return func(data []byte) [][]byte {
		if k <= 0 || k >= len(data) {
			return [][]byte{data}
		}
		return [][]byte{data[:k], data[k:]}
	}
}

// Chunks delivers each step in reads of n bytes.
func Chunks(n int) Splitter {
	return func(data []byte) [][]byte {
		var out [][]byte
		for len(data) > n {
			out = append(out, data[:n])
			data = data[n:]
		}
		return append(out, data)
	}
}

// Run feeds steps to p as the proxy would and checks, on every call, that
// messages are non-empty and within the bytes given, that errors are
// ErrProtocol or ErrTooLarge, and that a full buffer is never left
// unconsumed without ErrTooLarge. It stops at the first error and returns
// it with what was reported up to then.
func Run(p l7.Parser, steps []Step, split Splitter) (Result, error) {
	var res Result
	var buf [2][]byte
	for _, s := range steps {
		for _, piece := range split(s.Data) {
			for len(piece) > 0 {
				d := s.Dir
				room := l7.MaxBuffer - len(buf[d])
				k := min(room, len(piece))
				buf[d] = append(buf[d], piece[:k]...)
				piece = piece[k:]
				msgs, err := p.Parse(d, buf[d])
				if err != nil {
					if !errors.Is(err, l7.ErrProtocol) && !errors.Is(err, l7.ErrTooLarge) {
						return res, fmt.Errorf("Parse(%v) error %v is neither ErrProtocol nor ErrTooLarge", d, err)
					}
					return res, err
				}
				used := 0
				for _, m := range msgs {
					if m.Len <= 0 {
						return res, fmt.Errorf("Parse(%v) returned a message of %d bytes", d, m.Len)
					}
					used += m.Len
					if m.Request != nil {
						if d != l7.FromClient {
							return res, fmt.Errorf("Parse(%v) returned a request", d)
						}
						if len(m.Request.Text) > l7.MaxText {
							return res, fmt.Errorf("request text of %d bytes", len(m.Request.Text))
						}
						res.Requests = append(res.Requests, m.Request)
						res.Events = append(res.Events, RenderRequest(m.Request))
					}
					if m.Response != nil {
						if d != l7.FromServer {
							return res, fmt.Errorf("Parse(%v) returned a response", d)
						}
						res.Events = append(res.Events, RenderResponse(m.Response))
					}
				}
				if used > len(buf[d]) {
					return res, fmt.Errorf("Parse(%v) messages cover %d bytes of %d", d, used, len(buf[d]))
				}
				if used == 0 && len(buf[d]) >= l7.MaxBuffer {
					return res, fmt.Errorf("Parse(%v) holds a full buffer of %d bytes without ErrTooLarge", d, len(buf[d]))
				}
				res.Consumed[d] += used
				buf[d] = append(buf[d][:0], buf[d][used:]...)
			}
		}
	}
	res.Left = [2]int{len(buf[0]), len(buf[1])}
	return res, nil
}

// RenderRequest is a one-line, deterministic form of a request.
func RenderRequest(r *l7.Request) string {
	return fmt.Sprintf("> %s %s %q target=%q%s", r.Protocol, r.Kind, r.Text, r.Target, attrs(r.Attrs))
}

// RenderResponse is a one-line form of a response, without its time.
func RenderResponse(r *l7.Response) string {
	s := fmt.Sprintf("< %s bytes=%d", r.Status, r.Bytes)
	if r.Error != "" {
		s += fmt.Sprintf(" error=%q", r.Error)
	}
	return s
}

func attrs(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, " %s=%q", k, m[k])
	}
	return b.String()
}

// Join concatenates the bytes each direction sent, for fuzz seeds.
func Join(steps []Step) (client, server []byte) {
	for _, s := range steps {
		if s.Dir == l7.FromClient {
			client = append(client, s.Data...)
		} else {
			server = append(server, s.Data...)
		}
	}
	return client, server
}

// WriteSession stores steps as a readable file: for each step a line
// "client N" or "server N", then N bytes, then a newline.
func WriteSession(path string, steps []Step) error {
	var b bytes.Buffer
	for _, s := range steps {
		fmt.Fprintf(&b, "%s %d\n", s.Dir, len(s.Data))
		b.Write(s.Data)
		b.WriteByte('\n')
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// ReadSession reads a file WriteSession wrote.
func ReadSession(path string) ([]Step, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var steps []Step
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return steps, nil
		}
		if err != nil {
			return nil, fmt.Errorf("session %s: %w", path, err)
		}
		dir, size, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		n, err := strconv.Atoi(size)
		if !ok || err != nil || n < 0 || (dir != "client" && dir != "server") {
			return nil, fmt.Errorf("session %s: bad step line %q", path, line)
		}
		data := make([]byte, n+1)
		if _, err := io.ReadFull(r, data); err != nil || data[n] != '\n' {
			return nil, fmt.Errorf("session %s: truncated step", path)
		}
		d := l7.FromClient
		if dir == "server" {
			d = l7.FromServer
		}
		steps = append(steps, Step{Dir: d, Data: data[:n]})
	}
}

// WriteFuzzSeed stores a seed in the go test fuzz corpus format for a
// target taking (client, server []byte, split uint8), as Fuzz does.
func WriteFuzzSeed(path string, client, server []byte) error {
	s := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\nuint8(7)\n", client, server)
	return os.WriteFile(path, []byte(s), 0o644)
}
