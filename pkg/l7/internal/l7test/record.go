package l7test

import (
	"errors"
	"io"
	"net"
	"sync"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Recorder relays TCP connections from a loopback listener to a target
// and records what each side sent, in order. It exists to capture what
// real clients and servers say, for seed corpora and replay tests.
type Recorder struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns [][]Step // per connection, in the order they were accepted
}

// NewRecorder listens on 127.0.0.1 and relays to target.
func NewRecorder(target string) (*Recorder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Recorder{ln: ln, target: target}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the address clients connect to.
func (r *Recorder) Addr() string { return r.ln.Addr().String() }

// Port is the port of Addr.
func (r *Recorder) Port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// Close stops accepting, waits for the relayed connections to end, and
// returns the steps of each connection.
func (r *Recorder) Close() [][]Step {
	r.ln.Close()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns
}

func (r *Recorder) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		i := len(r.conns)
		r.conns = append(r.conns, nil)
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.relay(c.(*net.TCPConn), i)
		}()
	}
}

func (r *Recorder) relay(client *net.TCPConn, i int) {
	defer client.Close()
	c, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	server := c.(*net.TCPConn)
	defer server.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.copy(server, client, i, l7.FromClient) }()
	go func() { defer wg.Done(); r.copy(client, server, i, l7.FromServer) }()
	wg.Wait()
}

// copy relays src to dst, recording each read before writing it, so the
// recorded order is one the connection could have had.
func (r *Recorder) copy(dst, src *net.TCPConn, i int, d l7.Dir) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.conns[i] = append(r.conns[i], Step{Dir: d, Data: append([]byte(nil), buf[:n]...)})
			r.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				dst.CloseWrite()
			}
			return
		}
	}
}
