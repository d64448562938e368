package l7test

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Recorder relays TCP connections from a loopback listener to a target
// and records what each side sent, in order. It exists to capture what
// real clients and servers say, for seed corpora and replay tests.
type Recorder struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	steps []Step
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
// returns the steps of all of them.
func (r *Recorder) Close() []Step {
	r.ln.Close()
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.steps
}

func (r *Recorder) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.relay(c.(*net.TCPConn))
		}()
	}
}

func (r *Recorder) relay(client *net.TCPConn) {
	defer client.Close()
	c, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	server := c.(*net.TCPConn)
	defer server.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.copy(server, client, 0) }()
	go func() { defer wg.Done(); r.copy(client, server, 1) }()
	wg.Wait()
}

// copy relays src to dst, recording each read before writing it, so the
// recorded order is one the connection could have had.
func (r *Recorder) copy(dst, src *net.TCPConn, d int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.steps = append(r.steps, Step{Dir: dirOf(d), Data: append([]byte(nil), buf[:n]...)})
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
