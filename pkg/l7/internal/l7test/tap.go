package l7test

import (
	"net"
	"sync"

	"github.com/vigil-ebpf/vigil/pkg/l7"
)

// Tap relays one connection the way the proxy does: client bytes go
// through Parse and a request deny says no to is answered with Deny and
// dropped, with the body messages after it; server bytes go through Parse
// and on to the client. It half-closes the server when the client is done,
// closes the client when the server is, and returns when both have ended.
// server must be a *net.TCPConn.
func Tap(client, server net.Conn, p l7.Parser, deny func(*l7.Request) bool) {
	var wmu sync.Mutex // both directions write to the client
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		var held []byte
		for {
			n, err := server.Read(buf)
			if n > 0 {
				held = append(held, buf[:n]...)
				msgs, perr := p.Parse(l7.FromServer, held)
				if perr != nil {
					return
				}
				used := 0
				for _, m := range msgs {
					used += m.Len
				}
				wmu.Lock()
				client.Write(held[:used])
				wmu.Unlock()
				held = append(held[:0], held[used:]...)
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 32<<10)
	var held []byte
	dropping := false
	for {
		n, err := client.Read(buf)
		if n > 0 {
			held = append(held, buf[:n]...)
			msgs, perr := p.Parse(l7.FromClient, held)
			if perr != nil {
				break
			}
			off := 0
			for _, m := range msgs {
				if m.Request != nil {
					dropping = deny(m.Request)
					if dropping {
						wmu.Lock()
						client.Write(p.Deny(m.Request, "test policy"))
						wmu.Unlock()
					}
				}
				if !dropping {
					server.Write(held[off : off+m.Len])
				}
				off += m.Len
			}
			held = append(held[:0], held[off:]...)
		}
		if err != nil {
			break
		}
	}
	server.(*net.TCPConn).CloseWrite()
	<-done
}
