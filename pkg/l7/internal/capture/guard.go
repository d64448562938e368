package capture

import (
	"errors"
	"net"
	"sync"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Guard is a minimal L7 relay for tests with real clients: it parses both
// directions with a fresh parser per connection, forwards messages, and
// answers requests that deny names with the parser's Deny bytes instead of
// forwarding them, as the proxy does. On a parse error it relays the rest
// unparsed.
type Guard struct {
	ln     net.Listener
	target string
	newP   func() l7.Parser
	deny   func(*l7.Request) string
	wg     sync.WaitGroup

	mu       sync.Mutex
	requests []*l7.Request
	errs     []error
}

// NewGuard starts a guard on a loopback port that relays to target.
// deny returns the reason to refuse a request, or "" to let it through.
func NewGuard(target string, newParser func() l7.Parser, deny func(*l7.Request) string) (*Guard, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &Guard{ln: ln, target: target, newP: newParser, deny: deny}
	g.wg.Add(1)
	go g.accept()
	return g, nil
}

// Addr is the address clients connect to.
func (g *Guard) Addr() *net.TCPAddr { return g.ln.Addr().(*net.TCPAddr) }

// Close stops the guard, waits for its connections to end, and returns the
// requests it saw and the parse errors it met.
func (g *Guard) Close() ([]*l7.Request, []error) {
	g.ln.Close()
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.requests, g.errs
}

func (g *Guard) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", g.target)
		if err != nil {
			c.Close()
			continue
		}
		p := g.newP()
		var wmu sync.Mutex // both directions may write to the client
		g.wg.Add(2)
		go g.relay(p, l7.FromClient, c, s, c, &wmu)
		go g.relay(p, l7.FromServer, s, c, c, &wmu)
	}
}

func (g *Guard) relay(p l7.Parser, d l7.Dir, src, dst, client net.Conn, wmu *sync.Mutex) {
	defer g.wg.Done()
	defer func() {
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	buf := make([]byte, 0, l7.MaxBuffer)
	plain := false
	write := func(w net.Conn, b []byte) bool {
		if w == client {
			wmu.Lock()
			defer wmu.Unlock()
		}
		_, err := w.Write(b)
		return err == nil
	}
	for {
		if len(buf) == cap(buf) {
			g.fail(errors.New("capture: guard buffer full"))
			return
		}
		n, err := src.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 && plain {
			if !write(dst, buf) {
				return
			}
			buf = buf[:0]
		} else if n > 0 {
			msgs, perr := p.Parse(d, buf)
			if perr != nil {
				g.fail(perr)
				plain = true
				if !write(dst, buf) {
					return
				}
				buf = buf[:0]
				continue
			}
			off := 0
			for _, m := range msgs {
				part := buf[off : off+m.Len]
				off += m.Len
				if m.Request != nil {
					g.mu.Lock()
					g.requests = append(g.requests, m.Request)
					g.mu.Unlock()
					if reason := g.deny(m.Request); reason != "" {
						if b := p.Deny(m.Request, reason); b != nil {
							if !write(client, b) {
								return
							}
							continue
						}
						src.Close()
						dst.Close()
						return
					}
				}
				if !write(dst, part) {
					return
				}
			}
			buf = append(buf[:0], buf[off:]...)
		}
		if err != nil {
			return
		}
	}
}

func (g *Guard) fail(err error) {
	g.mu.Lock()
	g.errs = append(g.errs, err)
	g.mu.Unlock()
}
