// Package capture records the bytes of real client/server conversations
// on loopback and replays them into an l7.Parser the way the proxy does,
// so parser tests run against what real clients and servers send.
//
// A capture file is a sequence of chunks, each a direction byte ('C' from
// the client, 'S' from the server), a 4-byte big-endian length and the
// bytes, in the order the recorder read them.
package capture

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Chunk is one read from one side of a connection.
type Chunk struct {
	Dir  l7.Dir
	Data []byte
}

// Recorder relays connections from a loopback listener to a target and
// keeps every chunk it relays.
type Recorder struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	chunks []Chunk
	wg     sync.WaitGroup
}

// Listen starts a recorder that relays to target. Connect clients to Addr.
func Listen(target string) (*Recorder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("capture: listen: %w", err)
	}
	r := &Recorder{ln: ln, target: target}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the address clients connect to.
func (r *Recorder) Addr() *net.TCPAddr { return r.ln.Addr().(*net.TCPAddr) }

func (r *Recorder) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", r.target)
		if err != nil {
			c.Close()
			continue
		}
		r.wg.Add(2)
		go r.copy(s, c, l7.FromClient)
		go r.copy(c, s, l7.FromServer)
	}
}

func (r *Recorder) copy(dst, src net.Conn, d l7.Dir) {
	defer r.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			// Record before forwarding, so the order of chunks is an
			// order the other side could have seen.
			r.mu.Lock()
			r.chunks = append(r.chunks, Chunk{Dir: d, Data: append([]byte(nil), buf[:n]...)})
			r.mu.Unlock()
			if _, err := dst.Write(buf[:n]); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	src.Close()
}

// Close stops the recorder, waits for relayed connections to end and
// returns what it recorded.
func (r *Recorder) Close() []Chunk {
	r.ln.Close()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chunks
}

// Write stores chunks in a capture file.
func Write(path string, chunks []Chunk) error {
	return os.WriteFile(path, Encode(chunks), 0o644)
}

// Encode returns chunks in capture format.
func Encode(chunks []Chunk) []byte {
	var b []byte
	for _, c := range chunks {
		d := byte('C')
		if c.Dir == l7.FromServer {
			d = 'S'
		}
		b = append(b, d)
		b = binary.BigEndian.AppendUint32(b, uint32(len(c.Data)))
		b = append(b, c.Data...)
	}
	return b
}

// Read loads a capture file.
func Read(path string) ([]Chunk, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var out []Chunk
	for {
		var h [5]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("capture: %s: %w", path, err)
		}
		n := binary.BigEndian.Uint32(h[1:])
		if (h[0] != 'C' && h[0] != 'S') || n > 64<<20 {
			return nil, fmt.Errorf("capture: %s: bad chunk header", path)
		}
		c := Chunk{Dir: l7.FromClient, Data: make([]byte, n)}
		if h[0] == 'S' {
			c.Dir = l7.FromServer
		}
		if _, err := io.ReadFull(br, c.Data); err != nil {
			return nil, fmt.Errorf("capture: %s: %w", path, err)
		}
		out = append(out, c)
	}
}

// Result is what a replay saw.
type Result struct {
	Requests  []*l7.Request
	Responses []*l7.Response
	Bytes     [2]int // bytes the parser accounted for, per direction
}

// Replay feeds chunks to p as the proxy would: each direction keeps its
// unconsumed bytes and passes them again with the next chunk. Each chunk is
// cut into pieces of at most step bytes (0: whole chunks). It checks the
// invariants of the contract and fails on the first broken one.
func Replay(p l7.Parser, chunks []Chunk, step int) (Result, error) {
	var res Result
	var pend [2][]byte
	for _, c := range chunks {
		data := c.Data
		for len(data) > 0 {
			n := len(data)
			if step > 0 && n > step {
				n = step
			}
			if err := Feed(p, c.Dir, &pend[c.Dir], data[:n], &res); err != nil {
				return res, err
			}
			data = data[n:]
		}
	}
	return res, nil
}

// Feed appends data to the direction's unconsumed bytes and parses them,
// never holding more than l7.MaxBuffer unconsumed bytes, as the proxy does.
func Feed(p l7.Parser, d l7.Dir, pend *[]byte, data []byte, res *Result) error {
	for {
		n := min(l7.MaxBuffer-len(*pend), len(data))
		*pend = append(*pend, data[:n]...)
		data = data[n:]
		used, err := parse(p, d, *pend, res)
		if err != nil {
			return err
		}
		*pend = append((*pend)[:0], (*pend)[used:]...)
		if len(data) == 0 {
			return nil
		}
		if used == 0 && len(*pend) >= l7.MaxBuffer {
			return fmt.Errorf("capture: parser holds a full buffer without returning ErrTooLarge")
		}
	}
}

func parse(p l7.Parser, d l7.Dir, b []byte, res *Result) (int, error) {
	msgs, err := p.Parse(d, b)
	if err != nil {
		return 0, err
	}
	used := 0
	for _, m := range msgs {
		if m.Len < 0 {
			return 0, fmt.Errorf("capture: message of length %d", m.Len)
		}
		used += m.Len
		if m.Request != nil {
			if d != l7.FromClient {
				return 0, fmt.Errorf("capture: request from the server")
			}
			res.Requests = append(res.Requests, m.Request)
		}
		if m.Response != nil {
			if d != l7.FromServer {
				return 0, fmt.Errorf("capture: response from the client")
			}
			res.Responses = append(res.Responses, m.Response)
		}
	}
	if used > len(b) {
		return 0, fmt.Errorf("capture: messages cover %d bytes of %d", used, len(b))
	}
	res.Bytes[d] += used
	return used, nil
}

// WriteSeed stores a fuzz seed with []byte arguments in the format of
// go test's corpus files (testdata/fuzz/FuzzName/name).
func WriteSeed(path string, args ...[]byte) error {
	b := []byte("go test fuzz v1\n")
	for _, a := range args {
		b = fmt.Appendf(b, "[]byte(%q)\n", a)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Decode reads chunks from capture-format bytes, stopping quietly at the
// first malformed one: fuzz targets take captures as input, so mutations
// keep the order in which the two sides spoke.
func Decode(b []byte) []Chunk {
	var out []Chunk
	for len(b) >= 5 && (b[0] == 'C' || b[0] == 'S') {
		n := int(binary.BigEndian.Uint32(b[1:]))
		if n > len(b)-5 {
			n = len(b) - 5
		}
		d := l7.FromClient
		if b[0] == 'S' {
			d = l7.FromServer
		}
		out = append(out, Chunk{Dir: d, Data: b[5 : 5+n]})
		b = b[5+n:]
	}
	return out
}
